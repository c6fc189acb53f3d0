"""The `accumulated` pass (passes/scan_accumulate.py) on the LSTM language
model of bench_models.py: its training step compiled with and without the
pass, and PyTorch eager's step, timed side by side in one process.

Run: python benchmarks/bench_scan_accumulate.py [--small] [--repeats N] [--T T]
(one thread for BLAS, Numba, needle and torch unless the environment sets
OPENBLAS_NUM_THREADS, NEEDLE_NUM_THREADS, ...)

Stage: benchmarks. Input: the functional LSTM of bench_models.py (vocab 64,
embedding 64, hidden 128, 32 steps, batch 16; --small: tiny sizes) and the
same weights in PyTorch (bench_models_peers.py's nn.LSTM), if installed.
Output: per contestant, the first call's seconds, the median step time of
--repeats interleaved rounds (one step of each per round), the first loss
(equal across contestants), and per variant the kernels and BLAS calls of
one step and the matrix products run per reverse step.
"""
import argparse
import os
import sys
import time

# one thread for BLAS, Numba, needle's kernel pool and torch (bench_models.py's
# setting), unless the environment says otherwise: set before numpy loads BLAS
for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
           "NEEDLE_NUM_THREADS"):
    os.environ.setdefault(_k, "1")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _reverse_body_dots(lo):
    """dot_generals in the body of the program's reverse scan (per step)."""
    for e in lo._graphs["fused"].eqns:
        if e.prim.name == "scan" and e.params["reverse"]:
            return sum(x.prim.name == "dot_general" for x in e.params["body"].graph.eqns)
    return None


def torch_lstm_run(bm, small, T):
    """PyTorch eager's step of bench_models' LSTM LM from the same initial
    weights and data, as a run of `time_interleaved`, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    import bench_models_peers as peers
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    _, state, batch = bm.lstm(bm.NeedleOps(), np.random.default_rng(0), small, T=T)
    fn, b = peers.TORCH["lstm"](torch, bm._copy_tree(state), batch, small)
    t0 = time.perf_counter()
    out = fn(*b)
    return dict(fn=fn, state=(), batch=b, first=time.perf_counter() - t0, loss0=float(out[0]),
                stateless=True)


def time_interleaved(runs, repeats):
    """{label: [seconds per step]}: one step of each run per round, each
    needle run fed the state its last step returned."""
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, r in runs.items():
            t0 = time.perf_counter()
            out = r["fn"](*r["state"], *r["batch"])
            float(out[0])
            times[k].append(time.perf_counter() - t0)
            if not r.get("stateless"):
                r["state"] = out[1:]
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--T", type=int, default=None)
    a = ap.parse_args()
    import bench_models as bm
    from needle.passes import pipeline
    runs = {}
    for label, keep in (("without pass", False), ("with pass", True)):
        step, state, batch = bm.lstm(bm.NeedleOps(), np.random.default_rng(0), a.small, T=a.T)
        saved = list(pipeline.PIPELINE)
        if not keep:
            pipeline.PIPELINE[:] = [p for p in saved if p[0] != "accumulated"]
        try:
            state = bm._copy_tree(state)
            t0 = time.perf_counter()
            out = step(*state, *batch)
            first = time.perf_counter() - t0
            lo = step.lower(*out[1:], *batch)
        finally:
            pipeline.PIPELINE[:] = saved
        runs[label] = dict(fn=step, state=out[1:], batch=batch, first=first,
                           loss0=float(out[0]), kernels=lo.kernel_count,
                           blas=lo.library_call_count, rev_dots=_reverse_body_dots(lo))
    torch_run = torch_lstm_run(bm, a.small, a.T)
    if torch_run is None:
        print("torch is not installed: no PyTorch column", file=sys.stderr)
    else:
        runs["torch eager"] = torch_run
    times = time_interleaved(runs, a.repeats)
    base = float(np.median(times["torch eager"])) if "torch eager" in runs else None
    sizes = "small" if a.small else f"vocab 64, E 64, H 128, T {a.T or 32}, b16"
    print(f"LSTM LM step ({sizes}), median of {a.repeats} interleaved rounds, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'':>14s}{'first call':>12s}{'step':>10s}{'/ torch':>9s}{'kernels':>9s}"
          f"{'BLAS':>6s}{'dots per reverse step':>23s}{'first loss':>12s}")
    for k, r in runs.items():
        s = float(np.median(times[k]))
        ratio = f"{s / base:.2f}" if base else "-"
        print(f"{k:>14s}{r['first']:>10.2f} s{s * 1e3:>7.2f} ms{ratio:>9s}"
              f"{r.get('kernels', '-'):>9}{r.get('blas', '-'):>6}"
              f"{r.get('rev_dots', '-'):>23}{r['loss0']:>12.5f}")


if __name__ == "__main__":
    main()
