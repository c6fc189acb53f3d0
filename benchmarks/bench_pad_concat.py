"""The pads -> concatenate simplify rule (passes/pad_concat.py) on the LSTM
language model of bench_models.py: its training step compiled with and without
the rule, and PyTorch eager's step if installed, timed side by side in one
process (interleaved rounds).

Run: python benchmarks/bench_pad_concat.py [--small] [--repeats N] [--T T]
Stage: benchmarks. Input: bench_models.py's functional LSTM (vocab 64, E 64,
H 128, T 32, batch 16). Output: per variant the first call's seconds, the
median step time, kernels of one step, concatenates and pads left in the
simplified program, the first loss (equal across variants).
"""
import argparse
import os
import sys
import time

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
           "NEEDLE_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _count(graph, name):
    n = 0
    for e in graph.eqns:
        n += e.prim.name == name
        for v in e.params.values():
            g = getattr(v, "graph", None)
            if g is not None and hasattr(g, "eqns"):
                n += _count(g, name)
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--T", type=int, default=None)
    a = ap.parse_args()
    import bench_models as bm
    import needle
    needle.config.update("plan_cache", False)   # its key does not see the rule table: plan afresh
    import importlib
    S = importlib.import_module("needle.passes.simplify")   # the module (the package exports the function)
    from needle.passes.pad_concat import pads_to_concatenate
    runs = {}
    for label, keep in (("without rule", False), ("with rule", True)):
        step, state, batch = bm.lstm(bm.NeedleOps(), np.random.default_rng(0), a.small, T=a.T)
        saved = list(S.RULES["add"])
        if not keep:
            S.RULES["add"][:] = [r for r in saved if r is not pads_to_concatenate]
        try:
            state = bm._copy_tree(state)
            t0 = time.perf_counter()
            out = step(*state, *batch)
            first = time.perf_counter() - t0
            lo = step.lower(*out[1:], *batch)
            g = lo._graphs["simplified"]
        finally:
            S.RULES["add"][:] = saved
        runs[label] = dict(fn=step, state=out[1:], batch=batch, first=first,
                           loss0=float(out[0]), kernels=lo.kernel_count,
                           concat=_count(g, "concatenate"), pad=_count(g, "pad"))
    from bench_scan_accumulate import time_interleaved, torch_lstm_run
    torch_run = torch_lstm_run(bm, a.small, a.T)
    if torch_run is not None:
        runs["torch eager"] = dict(torch_run, kernels="-", concat="-", pad="-")
    times = time_interleaved(runs, a.repeats)
    sizes = "small" if a.small else f"vocab 64, E 64, H 128, T {a.T or 32}, b16"
    print(f"LSTM LM step ({sizes}), median of {a.repeats} interleaved rounds, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'':>14s}{'first call':>12s}{'step':>10s}{'kernels':>9s}{'concat':>8s}"
          f"{'pad':>5s}{'first loss':>12s}")
    for k, r in runs.items():
        s = float(np.median(times[k]))
        print(f"{k:>14s}{r['first']:>10.2f} s{s * 1e3:>7.2f} ms{r['kernels']!s:>9s}"
              f"{r['concat']!s:>8s}{r['pad']!s:>5s}{r['loss0']:>12.5f}")


if __name__ == "__main__":
    main()
