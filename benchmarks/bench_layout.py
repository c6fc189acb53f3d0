"""Layout assignment (passes/layout.py) on the course's NCHW ConvNet: the
module step with and without it, beside the channels-last functional step
and PyTorch eager, timed side by side in one process.

Run: python benchmarks/bench_layout.py [--small] [--repeats N] [--cold]

The model is bench_models.py's residual ConvNet (3x3 convolutions 16-32-64,
32x32x3, batch 32, SGD momentum): `functional` is its channels-last
functional step, `module` the same net built from nn.Conv / nn.Residual /
nn.MaxPool2d (NCHW, bench_models_peers.py), `module, no relayout` that
module step compiled with simplify's layout rules switched off (as the
tree was before them), `torch` PyTorch eager (when installed). Every
contestant starts from the same weights; after each one's first call,
--repeats rounds of one step of each in turn (medians). Prints per
contestant: first call, step, kernels per step, standalone transpose
kernels (a kernel that only moves data), stored NCHW activations (kernel
results of a 4-d NCHW activation's shape), and ratios to the functional
step and to PyTorch. One thread for BLAS, Numba and torch.

--cold: instead, the first call of the module step with an empty kernel
cache, with and without the layout rules, each in its own fresh process
(trace, passes, fusion and every compile).
"""
import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NEEDLE_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
LAYOUT_ONLY = {"transpose", "reshape", "broadcast_in_dim", "convert_element_type"}


@contextlib.contextmanager
def no_relayout():
    """simplify without passes/layout.py's rules (as before them)."""
    import importlib
    layout = importlib.import_module("needle.passes.layout")
    simplify = importlib.import_module("needle.passes.simplify")   # the module, not the pass
    ours = (layout.relayout_elementwise, layout.relayout_reduce, layout.transpose_as_reshape)
    saved = {k: list(v) for k, v in simplify.RULES.items()}
    for k in simplify.RULES:
        simplify.RULES[k] = [r for r in simplify.RULES[k] if r not in ours]
    try:
        yield
    finally:
        simplify.RULES.update(saved)


def _counts(lowered, nchw_shapes):
    eqns = [e for e in lowered._graphs["fused"].eqns if e.prim.name == "kernel"]
    moves = sum(1 for e in eqns
                if {q.prim.name for q in e.params["graph"].eqns} <= LAYOUT_ONLY)
    stored = sum(1 for e in eqns for v in e.outs if tuple(v.aval.shape) in nchw_shapes)
    return lowered.kernel_count, moves, stored


def build(small):
    import bench_models as bm
    import bench_models_peers as peers
    F = bm.NeedleOps()
    step, state, batch = bm._build("convnet", small, F)
    runs = {"functional": [step, bm._copy_tree(state), batch, None]}
    for name in ("module, no relayout", "module"):
        F.needle.random.seed(0)
        s, st, b = peers.MODULE["convnet"](bm._copy_tree(state), batch, small)
        runs[name] = [s, st, b, no_relayout if "no" in name else contextlib.nullcontext]
    try:
        import torch
        torch.manual_seed(0)
        torch.set_num_threads(1)
        s, b = peers.TORCH["convnet"](torch, bm._copy_tree(state), batch, small)
        runs["torch"] = [s, (), b, None]
    except ImportError:
        print("torch: not installed, skipped", file=sys.stderr)
    return runs


def nchw_activation_shapes(batch_x):
    """The NCHW shapes of the module net's activations (stage by stage)."""
    b, c, h, w = batch_x.shape
    chans = (4, 8) if h == 8 else (16, 32, 64)
    return {(b, ch, h >> k, w >> k) for k, ch in enumerate(chans)}


def side_by_side(small, repeats):
    runs = build(small)
    first, counts = {}, {}
    for k, run in runs.items():
        fn, st, b, ctx = run
        t0 = time.perf_counter()
        with (ctx or contextlib.nullcontext)():
            out = fn(*st, *b)
            float(out[0])
            first[k] = time.perf_counter() - t0
            run[1] = out[1:]
            if ctx is not None:
                counts[k] = _counts(fn.lower(*run[1], *b), nchw_activation_shapes(b[0]))
        if k == "functional":
            counts[k] = _counts(fn.lower(*run[1], *b), set())
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, run in runs.items():
            fn, st, b, _ = run
            t0 = time.perf_counter()
            out = fn(*st, *b)
            float(out[0])
            times[k].append(time.perf_counter() - t0)
            run[1] = out[1:]
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"ConvNet training step, {'small' if small else '16-32-64, 32x32x3, b32'}, "
          f"median of {repeats} interleaved rounds, load {os.getloadavg()[0]:.1f}")
    print(f"{'':>20s}{'first call':>12s}{'step':>11s}{'/functional':>13s}{'/torch':>8s}"
          f"{'kernels':>9s}{'transposes':>12s}{'NCHW stored':>13s}")
    for k in runs:
        kc, moves, stored = counts.get(k, ("-", "-", "-"))
        rt = f"{med[k] / med['torch']:.2f}" if "torch" in med else "-"
        print(f"{k:>20s}{first[k]:>10.2f} s{med[k] * 1e3:>8.1f} ms"
              f"{med[k] / med['functional']:>13.2f}{rt:>8s}{kc!s:>9s}{moves!s:>12s}{stored!s:>13s}")


def cold_child(small, relayout):
    import bench_models as bm
    import bench_models_peers as peers
    F = bm.NeedleOps()
    _, state, batch = bm._build("convnet", small, F)
    F.needle.random.seed(0)
    s, st, b = peers.MODULE["convnet"](bm._copy_tree(state), batch, small)
    with (contextlib.nullcontext if relayout else no_relayout)():
        t0 = time.perf_counter()
        out = s(*st, *b)
        float(out[0])
        t = time.perf_counter() - t0
        kc = s.lower(*out[1:], *b).kernel_count
    print(f"RESULT {t:.3f} {kc} {F.needle.cache_info().kernels_compiled}")


def cold(small):
    print("ConvNet module step, first call with an empty kernel cache (own process each):")
    for relayout in (False, True):
        with tempfile.TemporaryDirectory(prefix="needle-bench-layout-") as d:
            env = dict(os.environ, NEEDLE_CACHE_DIR=d)
            cmd = [sys.executable, __file__, "--cold-child", "1" if relayout else "0"] + \
                (["--small"] if small else [])
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                print(r.stderr)
                sys.exit(1)
            t, kc, compiled = line[0].split()[1:]
            print(f"{'module' if relayout else 'module, no relayout':>20s}  {float(t):7.2f} s  "
                  f"{kc} kernels per step, {compiled} compiled   "
                  f"load {os.getloadavg()[0]:.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="tiny sizes (a smoke run)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--cold", action="store_true", help="cold first calls, own processes")
    ap.add_argument("--cold-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.cold_child is not None:
        return cold_child(a.small, a.cold_child == "1")
    if a.cold:
        return cold(a.small)
    side_by_side(a.small, a.repeats)


if __name__ == "__main__":
    main()
