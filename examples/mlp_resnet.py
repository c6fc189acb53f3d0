"""Train the course's MLPResNet (hw2: residual blocks of Linear, BatchNorm1d,
ReLU, Dropout) on scikit-learn's 8x8 digits with needle's module library.

The model is `needle.models.MLPResNet`, the optimizer `needle.optim.Adam`, the
batches come from `needle.data.DataLoader` (shuffled, seeded), and one
training step is `needle.jit` of a function that takes the model and the
optimizer as arguments: `needle.value_and_grad` gives a gradient Module,
`opt.step(grads)` updates the parameters and moments, and the BatchNorm
statistics, dropout counters and optimizer state written inside the step
are written back to the Modules after each call. Evaluation switches the
model to eval() (BatchNorm uses its running statistics, Dropout is the
identity), which compiles a second variant of the jitted predict once.

Run:  pip install -e ".[examples]" && python examples/mlp_resnet.py
      python examples/mlp_resnet.py --epochs 30 --save mlp_resnet.npz
      python examples/mlp_resnet.py --load mlp_resnet.npz      # evaluate a checkpoint
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
from needle.models import MLPResNet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # examples/_common.py
from _common import plot_curves, progress_bar  # noqa: E402


def make_step(loss_fn):
    def step(model, opt, x, y):
        loss, grads = needle.value_and_grad(lambda m: loss_fn(m(x), y))(model)
        opt.step(grads)
        return loss
    return needle.jit(step)


@needle.jit
def predict(model, x):
    return nnp.argmax(model(x), axis=1)


def accuracy(model, dataset):
    x, y = dataset[np.arange(len(dataset))]
    model.eval()
    acc = float(np.mean(np.asarray(predict(model, x)) == y))
    model.train()
    return acc


def main(epochs=20, batch_size=32, hidden_dim=100, num_blocks=3, drop_prob=0.1, lr=1e-3,
         weight_decay=1e-3, seed=0, limit=None, verbose=True, save=None, plot=None):
    """Train and evaluate; returns a dict with the final test accuracy, the
    per-epoch losses / accuracies / times, and the model."""
    t_start = time.perf_counter()
    needle.random.seed(seed)
    train, test = data.load_digits(("train", "test"), seed=seed, limit=limit)
    t_data = time.perf_counter() - t_start
    loader = data.DataLoader(train, batch_size=min(batch_size, len(train)), shuffle=True,
                             drop_last=True, seed=seed)
    model = MLPResNet(64, hidden_dim, num_blocks, 10, nn.BatchNorm1d, drop_prob)
    opt = optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    step = make_step(nn.SoftmaxLoss())

    def say(*a):
        if verbose:
            print(*a, flush=True)

    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    say(f"digits: {len(train)} train / {len(test)} test; MLPResNet(64, hidden_dim={hidden_dim}, "
        f"num_blocks={num_blocks}, drop_prob={drop_prob}): {n_params:,} parameters; batch "
        f"{loader.batch_size}, Adam lr {lr} weight_decay {weight_decay}")
    history = {"loss": [], "accuracy": [], "epoch_time": []}
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        total = 0.0
        for i, (x, y) in enumerate(loader):
            total += float(step(model, opt, x, y))
            if i % 8 == 0 or i == len(loader) - 1:
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


def evaluate(path, hidden_dim=100, num_blocks=3, seed=0):
    """Load a checkpoint written by --save and return its test accuracy."""
    test = data.load_digits("test", seed=seed)
    model = MLPResNet(64, hidden_dim, num_blocks, 10)
    model.load(path)
    return accuracy(model, test)


def _cli():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden-dim", type=int, default=100)
    ap.add_argument("--num-blocks", type=int, default=3)
    ap.add_argument("--drop-prob", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", help="write the trained model's state_dict here (.npz)")
    ap.add_argument("--load", help="evaluate this checkpoint instead of training")
    ap.add_argument("--plot", help="write the loss curve here (.png; needs matplotlib)")
    a = ap.parse_args()
    if a.load:
        t0 = time.perf_counter()
        acc = evaluate(a.load, a.hidden_dim, a.num_blocks, a.seed)
        print(f"{a.load}: test accuracy {acc * 100:.2f}% ({time.perf_counter() - t0:.2f} s)")
        return
    main(a.epochs, a.batch_size, a.hidden_dim, a.num_blocks, a.drop_prob, a.lr,
         a.weight_decay, a.seed, save=a.save, plot=a.plot)


if __name__ == "__main__":
    _cli()
