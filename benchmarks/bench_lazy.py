"""The course's lazy Tensor API (issue 16): an eager course-style MLP
training step against the same step under `needle.jit`, and PyTorch eager
when installed; and the Python cost of recording and looking up a graph.

Run: python benchmarks/bench_lazy.py [--small] [--repeats N]

The step (the issue's example): `opt.reset_grad(); loss =
SoftmaxLoss()(model(X), y); loss.backward(); opt.step()`, an MLP
784-100-10 (--small: 64-32-10), batch 64, SGD with momentum, float32.
- lazy: the step as written (records, realizes forward + backward as one
  cached program, updates the parameters).
- jit: `needle.jit(step)(model, opt, X, y)`, the same function (one
  program for the whole step, state written back).
- torch: the same model and step in PyTorch eager (CPU), when importable.
Targets (issue 16): lazy / jit <= 1.5, lazy <= torch.

Breakdown of the lazy step: recording the forward (per recorded equation),
backward (building the structure key, the cache lookup, the program), the
backward program alone (its Executable called on the same inputs), and
opt.step(). "per-op Python cost" = (forward recording + backward - the
program alone) / equations in the step's forward graph (aim: <= 10 us);
a Module call is recorded as one node holding its traced equations
(needle/lazy_module.py), so the graph has far fewer nodes than equations.

Each number is the best of --repeats runs of several calls, the
contestants interleaved so the machine's noise hits them alike; BLAS runs
one thread (set OPENBLAS_NUM_THREADS to change it).
"""
import os
import sys
import time

# One BLAS thread for every contestant (PyTorch too: set_num_threads(1)): on a
# shared machine a threaded BLAS makes a 64x784 @ 784x100 product vary 100x.
for _v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import needle as ndl                # noqa: E402
from needle import lazy             # noqa: E402

try:
    from common import bench_args, per_call, try_torch
except ImportError:                 # imported as benchmarks.bench_lazy
    from benchmarks.common import bench_args, per_call, try_torch


def make(sizes):
    ndl.random.seed(0)
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [ndl.nn.Linear(a, b), ndl.nn.ReLU()]
    model = ndl.nn.Sequential(*layers, ndl.nn.Linear(sizes[-2], sizes[-1]))
    return model, ndl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def torch_step(torch, sizes, X, y):
    torch.set_num_threads(1)
    mods = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        mods += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*mods, torch.nn.Linear(sizes[-2], sizes[-1]))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))

    def step():
        opt.zero_grad()
        loss = loss_fn(model(tx), ty)
        loss.backward()
        opt.step()
        return loss
    return step


def main():
    args = bench_args(__doc__.split("\n\n")[0])
    sizes = [64, 32, 10] if args.small else [784, 100, 10]
    batch = 64
    rng = np.random.default_rng(0)
    Xa = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    ya = rng.integers(0, sizes[-1], batch).astype(np.int32)
    X, y = ndl.Tensor(Xa, requires_grad=False), ndl.Tensor(ya, requires_grad=False)
    loss_fn = ndl.nn.SoftmaxLoss()

    def body(model, opt, X, y):
        opt.reset_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
        return loss

    m1, o1 = make(sizes)
    m2, o2 = make(sizes)
    jitted = ndl.jit(body)
    fns = {"lazy": lambda: body(m1, o1, X, y), "jit": lambda: jitted(m2, o2, X, y)}
    torch = try_torch()
    if torch is not None:
        fns["torch"] = torch_step(torch, sizes, Xa, ya)
    for f in fns.values():                      # compile, warm up
        for _ in range(3):
            f()
    compiles = lazy.cache_info()["compiles"]
    calls = 10 if args.small else 20
    best = per_call(fns, calls, args.repeats)
    assert lazy.cache_info()["compiles"] == compiles, "a lazy step compiled again"

    # breakdown of the lazy step
    o1.reset_grad()
    loss = loss_fn(m1(X), y)
    nodes = lazy._collect([loss._value], True)[0]
    # equations of the step's forward graph (a Module call is one node: its equations)
    n_eqns = sum(n.prim.length if type(n.prim) is lazy.GraphCall else 1 for n in nodes)
    inputs = lazy._collect([loss._value], True)[1]
    key_wrt = lazy._wrt(inputs)
    key = ("bwd", lazy._collect([loss._value], True, lambda pos: [])[2], key_wrt)
    exe = lazy._cache.get(key)
    vals = [x._val for x in inputs]
    ct = np.ones((), np.float32)

    def record():
        o1.reset_grad()
        return loss_fn(m1(X), y)

    def record_backward():
        record().backward()

    def collect():
        lazy._collect([loss._value], True, lambda pos: [])

    from needle.ir.primitives import add_p
    a = lazy.leaf(np.ones((64, 100), np.float32))

    parts = {"record": record, "record+backward": record_backward, "step": lambda: o1.step(),
             "collect": collect, "bind": lambda: add_p.bind(a, a)}
    if exe is not None:
        parts["program"] = lambda: exe(*vals, ct)
    part = per_call(parts, calls, args.repeats)

    us = 1e6
    print(f"MLP {'-'.join(map(str, sizes))}, batch {batch}, SGD momentum, float32 "
          f"(best of {args.repeats} x {calls} calls, per step)")
    for k, v in best.items():
        print(f"  {k:6s} {v * us:9.1f} us")
    print(f"  lazy / jit   = {best['lazy'] / best['jit']:.2f}x   (target <= 1.5x)")
    if "torch" in best:
        print(f"  lazy / torch = {best['lazy'] / best['torch']:.2f}x   (target <= 1.0x)")
    else:
        print("  torch: not installed")
    print(f"lazy step breakdown: {n_eqns} equations in the forward graph, recorded as "
          f"{len(nodes)} nodes")
    print(f"  record forward        {part['record'] * us:9.1f} us "
          f"({part['record'] / n_eqns * us:.1f} us per equation, needle.numpy included)")
    print(f"  record + backward     {part['record+backward'] * us:9.1f} us")
    print(f"  opt.step()            {part['step'] * us:9.1f} us")
    if "program" in part:
        py = part["record+backward"] - part["program"]
        print(f"  backward program only {part['program'] * us:9.1f} us")
        print(f"  per-op Python cost    {py / n_eqns * us:9.1f} us per recorded equation "
              f"(record + key + lookup; aim <= 10 us)")
    print(f"the lazy trace's own share: {part['bind'] * us:.1f} us to record one equation "
          f"(add_p.bind on lazy tracers: no needle.numpy), "
          f"{part['collect'] * us:.1f} us to walk the step's graph and build its structure key")


if __name__ == "__main__":
    main()
