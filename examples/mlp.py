"""Train an MLP classifier on scikit-learn's 8x8 digits with needle.

One training step is `needle.jit` of a function that calls
`needle.value_and_grad(loss)` and applies SGD with momentum to every
parameter; the parameters and the momentum buffers are pytrees (a list of
(w, b) pairs), donated to the step (`donate_argnums`) so their buffers are
updated in place. Everything is float32; the data is split 80/20 with a fixed
seed, standardised with the training set's statistics, and fed in shuffled
minibatches of a fixed size (the last, partial one is dropped so the step
compiles once).

Run:  pip install -e ".[examples]" && python examples/mlp.py
      python examples/mlp.py --epochs 20 --hidden 256 128 --lr 0.05

The first epoch includes tracing the step and compiling (or loading from the
kernel cache on disk) its kernels; its time is reported separately.
"""
import argparse
import sys
import time

import numpy as np

import needle
import needle.nn as nnn
import needle.numpy as nnp
from needle.tree_util import tree_map


# --- the model -------------------------------------------------------------------

def init_params(sizes, rng):
    """[(w, b), ...] with He-normal weights, float32."""
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
        params.append((w.astype(np.float32), np.zeros(n_out, np.float32)))
    return params


def forward(params, x):
    """Logits of the MLP: relu hidden layers, a linear output layer."""
    for w, b in params[:-1]:
        x = nnn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def loss(params, x, labels):
    """Mean softmax cross-entropy; labels are int32 class indices."""
    logits = forward(params, x)
    y = nnn.one_hot(labels, logits.shape[-1], dtype=nnp.float32)
    return -nnp.mean(nnp.sum(nnn.log_softmax(logits) * y, axis=1))


def make_train_step(lr, momentum):
    """A jitted step: (params, velocity, x, labels) -> (loss, params, velocity).
    SGD with momentum: v <- momentum * v + g, p <- p - lr * v."""
    def step(params, velocity, x, labels):
        value, grads = needle.value_and_grad(loss)(params, x, labels)
        velocity = tree_map(lambda v, g: momentum * v + g, velocity, grads)
        params = tree_map(lambda p, v: p - lr * v, params, velocity)
        return value, params, velocity
    return needle.jit(step, donate_argnums=(0, 1))


@needle.jit
def predict(params, x):
    return nnp.argmax(forward(params, x), axis=1)


# --- data and reporting -------------------------------------------------------------

def load_data(seed=0, limit=None, test_fraction=0.2):
    """Digits as float32 features (standardised) and int32 labels, split with
    a fixed seed. limit: use only the first `limit` samples (for tests)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("examples/mlp.py needs scikit-learn for its data set: "
                 "pip install -e \".[examples]\"")
    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int32)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = perm[:n_test], perm[n_test:]
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0) + 1e-3          # some border pixels are always 0
    x = ((x - mean) / std).astype(np.float32)
    return x[train], y[train], x[test], y[test]


class ProgressBar:
    """A one-line progress bar on stderr, redrawn with '\\r'."""

    def __init__(self, total, prefix="", width=30, stream=sys.stderr, enabled=True):
        self.total, self.prefix, self.width, self.stream = total, prefix, width, stream
        self.enabled = enabled
        self.t0 = time.perf_counter()

    def update(self, done, suffix=""):
        if not self.enabled:
            return
        filled = int(self.width * done / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self.t0
        self.stream.write(f"\r{self.prefix} [{bar}] {done}/{self.total} "
                          f"{elapsed:5.1f}s {suffix}")
        self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\r\033[K")       # clear the line for the epoch summary
            self.stream.flush()


# --- training ---------------------------------------------------------------------

def main(epochs=20, batch_size=32, hidden=(128, 64), lr=0.05, momentum=0.9, seed=0,
         limit=None, verbose=True):
    """Train and evaluate; returns a dict with the final test accuracy, the
    per-epoch losses and accuracies, the first-epoch and total times."""
    t_start = time.perf_counter()
    x_train, y_train, x_test, y_test = load_data(seed, limit)
    t_data = time.perf_counter() - t_start
    n_classes = 10
    rng = np.random.default_rng(seed)
    params = init_params([x_train.shape[1], *hidden, n_classes], rng)
    velocity = tree_map(np.zeros_like, params)
    step = make_train_step(np.float32(lr), np.float32(momentum))
    batch_size = min(batch_size, len(x_train))
    n_batches = len(x_train) // batch_size

    def say(*a):
        if verbose:
            print(*a, flush=True)

    say(f"digits: {len(x_train)} train / {len(x_test)} test, MLP "
        f"{'-'.join(str(s) for s in [x_train.shape[1], *hidden, n_classes])}, "
        f"batch {batch_size}, SGD lr {lr} momentum {momentum}")
    history = {"loss": [], "accuracy": [], "epoch_time": []}
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(len(x_train))
        bar = ProgressBar(n_batches, f"epoch {epoch:2d}/{epochs}", enabled=verbose)
        total = 0.0
        for i in range(n_batches):
            idx = order[i * batch_size:(i + 1) * batch_size]
            value, params, velocity = step(params, velocity, x_train[idx], y_train[idx])
            total += float(value)
            if i % 8 == 0 or i == n_batches - 1:
                bar.update(i + 1, f"loss {total / (i + 1):.4f}")
        bar.close()
        acc = float(np.mean(predict(params, x_test) == y_test))
        dt = time.perf_counter() - t0
        history["loss"].append(total / n_batches)
        history["accuracy"].append(acc)
        history["epoch_time"].append(dt)
        say(f"epoch {epoch:2d}  train loss {total / n_batches:.4f}  "
            f"test accuracy {acc * 100:6.2f}%  ({dt:.2f} s)")
    total_time = time.perf_counter() - t_start
    say(f"final test accuracy {history['accuracy'][-1] * 100:.2f}%")
    say(f"run time {total_time:.2f} s: loading data {t_data:.2f} s, first epoch (trace + "
        f"compile or load kernels) {history['epoch_time'][0]:.2f} s, other epochs "
        f"{sum(history['epoch_time'][1:]):.2f} s")
    return {"accuracy": history["accuracy"][-1], "history": history,
            "first_epoch_time": history["epoch_time"][0], "total_time": total_time,
            "data_time": t_data,
            "params": params}


def _cli():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 64])
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.epochs, a.batch_size, tuple(a.hidden), a.lr, a.momentum, a.seed)


if __name__ == "__main__":
    _cli()
