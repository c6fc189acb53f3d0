"""Fusion + kernel emission of model-sized programs: the emission the cost
model made of each accepted group rendered again at compile time
(codegen/emissions.py) against emitting every group afresh (issue 10).

Run: python benchmarks/bench_emit.py [--small] [--repeats N]

For the four functional models of bench_models.py (mlp, convnet, lstm,
transformer: their training steps), the traced program goes through the
Graph -> Graph pipeline once; then each round times (CPU time of this
process: the machine may be shared), interleaved, `fuse` for the CPU
backend and then `emit` of every kernel group (loop bodies' included), as
the compile loop does:
- reuse: the backend keeps its judged emitters (the default);
- fresh: the same with nothing kept (every group emitted again).
Numba compiles nothing here: this is the Python part of a cold compile
that the hand-off changes. Prints the medians of each part, the ratio of
the totals, and how many groups were rendered from a kept emitter.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_models import _build          # noqa: E402
from common import bench_args   # noqa: E402

from needle.codegen import backend_for   # noqa: E402
from needle.codegen.emissions import Emissions   # noqa: E402
from needle.ir.core import ClosedGraph   # noqa: E402
from needle.passes.fusion import fuse    # noqa: E402
from needle.passes.pipeline import PIPELINE   # noqa: E402


def _groups(g):
    for e in g.eqns:
        if e.prim.name == "kernel":
            yield e.params["graph"]
        for v in e.params.values():
            for s in (v if isinstance(v, (list, tuple)) else [v]):
                if isinstance(s, ClosedGraph):
                    yield from _groups(s.graph)


class _KeepNothing(Emissions):
    def keep(self, sub, emitter):
        pass


def _optimised(model, small):
    step, state, batch = _build(model, small)
    cg = step.trace(*state, *batch)
    for _, fn in PIPELINE:
        cg = fn(cg)
    return cg


def main():
    args = bench_args(__doc__)
    backend = backend_for("cpu")
    print(f"CPU ms per round (process time), median of {args.repeats}, interleaved")
    print(f"{'model':12} {'groups':>6} {'kept':>5} | {'fuse':>7} {'emit':>6} {'total':>7} fresh "
          f"| {'fuse':>7} {'emit':>6} {'total':>7} reuse | fresh/reuse")
    for model in ("mlp", "convnet", "lstm", "transformer"):
        cg = _optimised(model, args.small)
        times = {"fresh": [], "reuse": []}
        for r in range(args.repeats + 1):          # the first round warms up
            for name, kind in (("fresh", _KeepNothing), ("reuse", Emissions)):
                backend.emissions = kind()
                t0 = time.process_time()
                fused = fuse(cg, backend)
                t1 = time.process_time()
                for sub in _groups(fused.graph):
                    backend.emit(sub, "kernel")
                t2 = time.process_time()
                if r:
                    times[name].append((t1 - t0, t2 - t1))
                del fused
        em = backend.emissions
        med = {k: [float(np.median([t[i] for t in v])) * 1e3 for i in (0, 1)] for k, v in times.items()}
        total = {k: float(np.median([sum(t) for t in v])) * 1e3 for k, v in times.items()}
        print(f"{model:12} {em.hits + em.misses:6d} {em.hits:5d} | {med['fresh'][0]:7.1f} "
              f"{med['fresh'][1]:6.1f} {total['fresh']:7.1f}       | {med['reuse'][0]:7.1f} "
              f"{med['reuse'][1]:6.1f} {total['reuse']:7.1f}       | "
              f"{total['fresh'] / total['reuse']:11.2f}")
    backend.emissions = Emissions()


if __name__ == "__main__":
    main()
