"""Train an MLP on scikit-learn's 8x8 digits in the course's own style (hw2):
no `jit`, no `grad` transform; `loss.backward()` and `opt.step()` on lazy
Tensors, every step compiled.

Each operation on Tensors records an equation; `loss.backward()` compiles
the forward and backward graph of the step into one program the first time
(needle's lowering, as `jit`) and afterwards only finds it in a cache keyed
by the graph's structure; `opt.step()` writes the new parameters (concrete
arrays), so every step starts from the same kind of graph. Evaluation runs
under `needle.no_grad()`. Compare examples/mlp.py, the same model trained
with one jitted step.

Run:  pip install -e ".[examples]" && python examples/course_mlp.py
      python examples/course_mlp.py --epochs 10 --hidden 128 64 --lr 0.5
"""
import argparse
import time

import needle as ndl
import needle.nn as nn
from needle.data import DataLoader, load_digits


def build_model(sizes):
    """Linear layers of the given sizes with ReLU between them."""
    layers = []
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def epoch(loader, model, loss_fn, opt=None):
    """The course's `epoch`: train (with opt) or evaluate (without) over the
    loader; returns (error rate, mean loss)."""
    model.train() if opt is not None else model.eval()
    errors, total, n = 0, 0.0, 0
    for x, y in loader:
        if opt is not None:
            opt.reset_grad()
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
            opt.step()
        else:
            with ndl.no_grad():
                logits = model(x)
                loss = loss_fn(logits, y)
        errors += int((logits.numpy().argmax(axis=1) != y.numpy()).sum())
        total += float(loss.numpy()) * y.shape[0]
        n += y.shape[0]
    return errors / n, total / n


def main(epochs=10, limit=None, verbose=True, batch_size=32, hidden=(128, 64), lr=0.5,
         momentum=0.9, seed=0):
    """Train and evaluate; returns {'accuracy', 'history', 'total_time',
    'programs_compiled', 'model'}. `limit`: only the first `limit` samples
    (tests)."""
    t0 = time.perf_counter()
    ndl.random.seed(seed)
    train, test = load_digits(("train", "test"), seed=seed, limit=limit)
    sizes = [train.arrays[0].shape[1], *hidden, 10]
    model = build_model(sizes)
    opt = ndl.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = nn.SoftmaxLoss()
    train_loader = DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=True)
    test_loader = DataLoader(test, batch_size=len(test))
    compiled = ndl.lazy.cache_info()["compiles"]
    history = {"train_loss": [], "train_err": [], "test_err": [], "epoch_time": []}
    for e in range(1, epochs + 1):
        t = time.perf_counter()
        err, loss = epoch(train_loader, model, loss_fn, opt)
        test_err, _ = epoch(test_loader, model, loss_fn)
        history["train_loss"].append(loss)
        history["train_err"].append(err)
        history["test_err"].append(test_err)
        history["epoch_time"].append(time.perf_counter() - t)
        if verbose:
            print(f"epoch {e:2d}  train loss {loss:.4f}  train error {err:.4f}  "
                  f"test accuracy {100 * (1 - test_err):6.2f}%  "
                  f"({history['epoch_time'][-1]:.2f} s)", flush=True)
    programs = ndl.lazy.cache_info()["compiles"] - compiled
    total = time.perf_counter() - t0
    accuracy = 1 - history["test_err"][-1]
    if verbose:
        print(f"final test accuracy {100 * accuracy:.2f}%; {programs} programs compiled for "
              f"{epochs} epochs; run time {total:.2f} s")
    return {"accuracy": accuracy, "history": history, "total_time": total,
            "programs_compiled": programs, "model": model}


def _cli():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 64])
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.epochs, batch_size=a.batch_size, hidden=tuple(a.hidden), lr=a.lr,
         momentum=a.momentum, seed=a.seed)


if __name__ == "__main__":
    _cli()
