"""Train an MLP classifier on scikit-learn's 8x8 digits with the course's
library on needle: `nn.Sequential` of `nn.Linear` / `nn.ReLU`,
`nn.SoftmaxLoss`, `needle.optim.SGD` with momentum, `needle.data.DataLoader`.

One training step is `needle.jit` of a function that takes the model, the
optimizer and a batch, computes `needle.value_and_grad` of the loss with
respect to the model and calls `opt.step(grads)`: the whole step (forward,
backward, update, momentum) is one compiled program, and the new parameters
and momentum buffers are written back into the Module and the optimizer
after each call. The data (`needle.data.load_digits`: a fixed 80/20 split,
standardised with the training set's statistics) comes in shuffled
minibatches of Tensors, the last partial one dropped so the step compiles
once; `needle.random.seed(seed)` fixes the initial weights and the order.

Run:  pip install -e ".[examples]" && python examples/mlp.py
      python examples/mlp.py --epochs 20 --hidden 256 128 --lr 0.5 --plot loss.png
      mpiexec -n 2 python examples/mlp.py --distributed   (pip install -e ".[distributed]")

--distributed: data-parallel over the ranks mpiexec starts (needle.distributed):
each rank reads its shard of every batch (DistributedSampler), the gradients
are averaged across ranks before each SGD step (DistributedOptimizer), and
only rank 0 prints, draws the progress bar and writes files.

With tqdm installed each epoch shows a progress bar; with matplotlib, the
loss curve is written to a PNG (--plot). The first epoch includes tracing
the step and compiling (or loading from the kernel cache on disk) its
kernels; its time is reported separately.
"""
import argparse
import os
import sys
import time

import numpy as np

import needle
import needle.distributed as dist
import needle.nn as nn
import needle.numpy as nnp
from needle.data import DataLoader, load_digits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # examples/_common.py
from _common import pyplot  # noqa: E402

try:
    from tqdm import tqdm
except ImportError:            # optional: pip install tqdm (needle's "examples" extra)
    tqdm = None


def build_model(sizes):
    """Linear layers of the given sizes with ReLU between them."""
    layers = []
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def make_train_step(distributed=False):
    """A jitted step: (model, opt, x, labels) -> mean softmax loss of the
    batch; the model's parameters and the optimizer's momentum are updated
    (written back after the call). distributed: the gradients leave the
    compiled program, `opt` (a DistributedOptimizer) averages them across the
    ranks with MPI and takes its (compiled) step."""
    loss_fn = nn.SoftmaxLoss()
    if distributed:
        grads_of = needle.jit(lambda model, x, labels: needle.value_and_grad(
            lambda m: loss_fn(m(x), labels))(model))

        def dp_step(model, opt, x, labels):
            loss, grads = grads_of(model, x, labels)
            opt.step(grads)
            return loss
        return dp_step

    def step(model, opt, x, labels):
        loss, grads = needle.value_and_grad(lambda m: loss_fn(m(x), labels))(model)
        opt.step(grads)
        return loss
    return needle.jit(step)


@needle.jit
def predict(model, x):
    return nnp.argmax(model(x), axis=1)


def save_loss_plot(history, path):
    """The per-step training loss and the per-epoch test accuracy, as a PNG
    (needs matplotlib); returns the path, or None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    steps = np.arange(1, len(history["step_loss"]) + 1) / history["steps_per_epoch"]
    ax1.plot(steps, history["step_loss"], lw=0.6, alpha=0.5, label="step")
    ax1.plot(np.arange(1, len(history["loss"]) + 1), history["loss"], "o-", label="epoch mean")
    ax1.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    ax1.legend()
    ax2.plot(np.arange(1, len(history["accuracy"]) + 1),
             100 * np.asarray(history["accuracy"]), "o-")
    ax2.set(xlabel="epoch", ylabel="test accuracy (%)", title="accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(epochs=20, batch_size=32, hidden=(128, 64), lr=0.5, momentum=0.9, seed=0,
         limit=None, verbose=True, plot=None, num_workers=0, distributed=False, save=None):
    """Train and evaluate; returns a dict with the final test accuracy, the
    history (per-epoch loss, accuracy and time, per-step loss), the times,
    and the trained model. `lr`, `momentum`: the course's SGD (momentum an
    average, u = m u + (1 - m) g; lr 0.5 with m 0.9 is PyTorch's lr 0.05).
    `limit`: use only the first `limit` samples (for tests). `plot`: a PNG
    path for the loss curve (with matplotlib)."""
    t_start = time.perf_counter()
    if distributed:
        dist.init()
        verbose = verbose and dist.is_main()     # one log, one progress bar: rank 0's
        plot = plot if dist.is_main() else None
    needle.random.seed(seed)
    train, test = load_digits(("train", "test"), seed=seed, limit=limit)
    x_test, y_test = test.arrays
    t_data = time.perf_counter() - t_start
    sizes = [x_test.shape[1], *hidden, 10]
    model = build_model(sizes)
    opt = needle.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    sampler = None
    if distributed:
        opt = dist.DistributedOptimizer(opt)
        dist.broadcast((model, opt))             # every rank starts from rank 0's weights
        sampler = dist.DistributedSampler(train, seed=seed)
        batch_size = batch_size // dist.world_size()     # the global batch stays batch_size
    step = make_train_step(distributed)
    loader = DataLoader(train, batch_size=min(batch_size, len(train)), shuffle=sampler is None,
                        sampler=sampler, drop_last=True, num_workers=num_workers)

    def say(*a):
        if verbose:
            print(*a, flush=True)

    say(f"digits: {len(train)} train / {len(test)} test, MLP {'-'.join(map(str, sizes))}, "
        f"batch {loader.batch_size}, SGD lr {lr} momentum {momentum}")
    history = {"loss": [], "accuracy": [], "epoch_time": [], "step_loss": [],
               "steps_per_epoch": len(loader)}
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        batches = loader
        if verbose and tqdm is not None:
            batches = tqdm(loader, desc=f"epoch {epoch:2d}/{epochs}", leave=False)
        total = 0.0
        for i, (x, y) in enumerate(batches):
            value = float(step(model, opt, x, y))
            history["step_loss"].append(value)
            total += value
            if batches is not loader and i % 8 == 0:
                batches.set_postfix(loss=f"{total / (i + 1):.4f}", refresh=False)
        acc = float(np.mean(np.asarray(predict(model, x_test)) == y_test))
        dt = time.perf_counter() - t0
        history["loss"].append(total / len(loader))
        history["accuracy"].append(acc)
        history["epoch_time"].append(dt)
        say(f"epoch {epoch:2d}  train loss {history['loss'][-1]:.4f}  "
            f"test accuracy {acc * 100:6.2f}%  ({dt:.2f} s)")
    total_time = time.perf_counter() - t_start
    say(f"final test accuracy {history['accuracy'][-1] * 100:.2f}% "
        f"({int(round(history['accuracy'][-1] * len(test)))}/{len(test)})")
    say(f"run time {total_time:.2f} s: loading data {t_data:.2f} s, first epoch (trace + "
        f"compile or load kernels) {history['epoch_time'][0]:.2f} s, other epochs "
        f"{sum(history['epoch_time'][1:]):.2f} s")
    if save and distributed:
        dist.save_checkpoint(model, save)        # rank 0 writes; the others wait for it
    elif save:
        model.save(save)                         # an .npz of the state_dict
    if save:
        say(f"checkpoint: {save}")
    if plot:
        saved = save_loss_plot(history, plot)
        say(f"loss curve: {saved}" if saved else "no loss curve: matplotlib is not installed")
    return {"accuracy": history["accuracy"][-1], "history": history,
            "first_epoch_time": history["epoch_time"][0], "total_time": total_time,
            "data_time": t_data, "model": model}


def _cli():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 64])
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    ap.add_argument("--distributed", action="store_true",
                    help="data-parallel over the ranks of mpiexec -n N (needle.distributed)")
    ap.add_argument("--save", default=None, help="write the trained model's state_dict (.npz)")
    ap.add_argument("--plot", default="mlp_loss.png",
                    help="PNG for the loss curve (needs matplotlib; '' for none)")
    a = ap.parse_args()
    main(a.epochs, a.batch_size, tuple(a.hidden), a.lr, a.momentum, a.seed, plot=a.plot,
         num_workers=a.workers, distributed=a.distributed, save=a.save)


if __name__ == "__main__":
    _cli()
