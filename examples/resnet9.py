"""Train the course's ResNet9 (hw4: Conv -> BatchNorm2d -> ReLU blocks with two
residual pairs, 431,946 parameters) on a 32x32x3 image data set that needs no
download: scikit-learn's 8x8 digits upsampled 4x (nearest neighbour) and tiled
to 3 channels, with the course's RandomCrop(padding=3) augmentation.

The model is `needle.models.ResNet9` (NCHW, as the course's); the data set
keeps its images H x W x C, as the course's transforms want them, and the
jitted step transposes each batch to NCHW: that transpose composes with the
first Conv's own NCHW -> NHWC transpose into nothing (simplify), so the
images go straight into the im2col kernel. `needle.optim.Adam` updates the
parameters inside the same jitted step; BatchNorm2d's running statistics are
written back after each call.

Run:  pip install -e ".[examples]" && python examples/resnet9.py
      python examples/resnet9.py --epochs 10 --save resnet9.npz
      python examples/resnet9.py --load resnet9.npz             # evaluate a checkpoint

The first epoch includes tracing the step and compiling (or loading from the
kernel cache on disk) its kernels, reported separately.
"""
import argparse
import os
import sys
import time

import numpy as np

import needle
import needle.nn as nn
import needle.numpy as nnp
from needle import data, optim
from needle.models import ResNet9

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # examples/_common.py
from _common import plot_curves, progress_bar  # noqa: E402

TO_NCHW = (0, 3, 1, 2)


def load_images(seed=0, limit=None, crop=3):
    """(train, test) NDArrayDatasets of (32, 32, 3) float32 images (HWC,
    standardized with the training set's mean and std) and int32 labels; the
    training set randomly crops (RandomCrop(crop)) every image it returns."""
    train, test = data.load_digits(("train", "test"), seed=seed, limit=limit,
                                   standardize=False, flatten=False)
    xs = []
    for ds in (train, test):
        x = ds.arrays[0]                                         # (N, 8, 8, 1) in [0, 1]
        x = np.repeat(np.repeat(x, 4, axis=1), 4, axis=2)        # (N, 32, 32, 1)
        xs.append(np.repeat(x, 3, axis=3))                       # (N, 32, 32, 3)
    mean, std = xs[0].mean(), xs[0].std()
    xs = [((x - mean) / std).astype(np.float32) for x in xs]
    transforms = [data.RandomCrop(crop)] if crop else None
    return (data.NDArrayDataset(xs[0], train.arrays[1], transforms=transforms),
            data.NDArrayDataset(xs[1], test.arrays[1]))


def make_step(loss_fn):
    def step(model, opt, x, y):
        x = nnp.transpose(x, TO_NCHW)
        loss, grads = needle.value_and_grad(lambda m: loss_fn(m(x), y))(model)
        opt.step(grads)
        return loss
    return needle.jit(step)


@needle.jit
def predict(model, x):
    return nnp.argmax(model(nnp.transpose(x, TO_NCHW)), axis=1)


def accuracy(model, dataset, batch_size=512):
    model.eval()
    hits = 0
    for start in range(0, len(dataset), batch_size):
        x, y = dataset[np.arange(start, min(start + batch_size, len(dataset)))]
        hits += int(np.sum(np.asarray(predict(model, x)) == y))
    model.train()
    return hits / len(dataset)


def main(epochs=10, batch_size=32, lr=1e-3, weight_decay=1e-3, seed=0, limit=None,
         verbose=True, save=None, plot=None):
    """Train and evaluate; returns a dict with the final test accuracy, the
    per-epoch losses / accuracies / times, and the model."""
    t_start = time.perf_counter()
    needle.random.seed(seed)
    train, test = load_images(seed, limit)
    t_data = time.perf_counter() - t_start
    loader = data.DataLoader(train, batch_size=min(batch_size, len(train)), shuffle=True,
                             drop_last=True, seed=seed)
    model = ResNet9()
    opt = optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    step = make_step(nn.SoftmaxLoss())

    def say(*a):
        if verbose:
            print(*a, flush=True)

    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    say(f"digits at 32x32x3: {len(train)} train / {len(test)} test; ResNet9: {n_params:,} "
        f"parameters; batch {loader.batch_size}, Adam lr {lr} weight_decay {weight_decay}, "
        f"RandomCrop(3)")
    history = {"loss": [], "accuracy": [], "epoch_time": []}
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        total = 0.0
        for i, (x, y) in enumerate(loader):
            total += float(step(model, opt, x, y))
            if i % 4 == 0 or i == len(loader) - 1:
                progress_bar(verbose, epoch, epochs, i + 1, len(loader), total / (i + 1), t0)
        if verbose:
            sys.stderr.write("\r\033[K")
        acc = accuracy(model, test)
        dt = time.perf_counter() - t0
        history["loss"].append(total / len(loader))
        history["accuracy"].append(acc)
        history["epoch_time"].append(dt)
        say(f"epoch {epoch:2d}  train loss {total / len(loader):.4f}  "
            f"test accuracy {acc * 100:6.2f}%  ({dt:.2f} s)")
    total_time = time.perf_counter() - t_start
    say(f"final test accuracy {history['accuracy'][-1] * 100:.2f}%")
    say(f"run time {total_time:.2f} s: loading data {t_data:.2f} s, first epoch (trace + "
        f"compile or load kernels) {history['epoch_time'][0]:.2f} s, other epochs "
        f"{sum(history['epoch_time'][1:]):.2f} s")
    if save:
        model.save(save)
        say(f"checkpoint written to {save}")
    if plot:
        plot_curves(plot, say, [(range(1, len(history["loss"]) + 1), history["loss"],
                                 "train loss", "-")], "epoch")
    return {"accuracy": history["accuracy"][-1], "history": history, "model": model,
            "total_time": total_time, "first_epoch_time": history["epoch_time"][0]}


def evaluate(path, seed=0):
    """Load a checkpoint written by --save and return its test accuracy."""
    _, test = load_images(seed)
    model = ResNet9()
    model.load(path)
    return accuracy(model, test)


def _cli():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", help="write the trained model's state_dict here (.npz)")
    ap.add_argument("--load", help="evaluate this checkpoint instead of training")
    ap.add_argument("--plot", help="write the loss curve here (.png; needs matplotlib)")
    a = ap.parse_args()
    if a.load:
        t0 = time.perf_counter()
        acc = evaluate(a.load, a.seed)
        print(f"{a.load}: test accuracy {acc * 100:.2f}% ({time.perf_counter() - t0:.2f} s)")
        return
    main(a.epochs, a.batch_size, a.lr, a.weight_decay, a.seed, save=a.save, plot=a.plot)


if __name__ == "__main__":
    _cli()
