"""Benchmark helpers: timing side by side, optional JAX / PyTorch peers.

Input: callables and their arguments. Output: median wall times and a table
of ratios. Each callable is called as a user calls it: a fresh result per
call, the previous one released. Runs are interleaved (round robin) so the
machine's noise hits every contestant alike.
"""
import argparse
import time

import numpy as np


def bench_args(description=None):
    """The flags every benchmark script takes: --small, --repeats."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--small", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--repeats", type=int, default=15)
    return ap.parse_args()


def timeit_side_by_side(fns, repeats=15, warmup=2, min_time=0.0):
    """fns: {name: zero-arg callable}. Returns {name: median seconds}."""
    for f in fns.values():
        for _ in range(warmup):
            r = f()
            del r
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            r = f()
            _block(r)
            times[k].append(time.perf_counter() - t0)
            del r
    return {k: float(np.median(v)) for k, v in times.items()}


def per_call(fns, calls, repeats):
    """{name: best seconds per call over `repeats` rounds of `calls` calls},
    the contestants interleaved (for calls of microseconds: no per-call
    timer)."""
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            best[k] = min(best[k], (time.perf_counter() - t0) / calls)
    return best


def _block(r):
    if hasattr(r, "block_until_ready"):
        r.block_until_ready()


def try_jax():
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        return jax
    except Exception:
        return None


def try_torch():
    try:
        import torch
        return torch
    except Exception:
        return None


def print_table(rows, baseline="numpy"):
    """rows: [(workload, {name: seconds})]."""
    names = []
    for _, t in rows:
        for k in t:
            if k not in names:
                names.append(k)
    head = f"{'workload':34s}" + "".join(f"{n:>12s}" for n in names) + \
        "".join(f"{n + '/needle':>16s}" for n in names if n != "needle")
    print(head)
    print("-" * len(head))
    for wl, t in rows:
        line = f"{wl:34s}" + "".join(f"{t[n] * 1e3:10.2f}ms" if n in t else f"{'-':>12s}"
                                     for n in names)
        for n in names:
            if n != "needle":
                line += f"{t[n] / t['needle']:15.2f}x" if n in t and "needle" in t else \
                    f"{'-':>16s}"
        print(line)
