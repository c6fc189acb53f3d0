"""Stage runtime: a per-step profile of an Executable.

Input: an Executable (runtime/executable.py) and a function that calls it
(the jitted function with its arguments, state and donation handled as in
any call). Output: a `Profile`: for each step of the plan (one per equation
of the fused graph: a kernel, a library call such as BLAS, a view, a host
step, a loop), its median time per call over the profiled calls, what it
is (the kernel group's name and primitives, the library primitive), its
operand and result shapes; printed as a table, slowest first, with totals
per kind.

How: for the profiled calls the Executable's generated plan runner is
replaced by a loop that times each step with perf_counter (on CUDA after a
synchronize, so a step's time is its kernels' device time plus launch);
the runner is restored afterwards. A loop (scan, while, cond) is one step:
its body's steps are not broken down. The timing loop adds about a
microsecond per step, so `total` is a little above an unprofiled call.
"""
import collections
import time

import numpy as np

Row = collections.namedtuple("Row", "index kind name what ins outs seconds")


class Profile:
    """rows: one Row per step, in plan order; wall: the median seconds per
    profiled call (timing included); calls: how many were timed."""

    def __init__(self, name, rows, wall, calls):
        self.name, self.rows, self.wall, self.calls = name, rows, wall, calls

    @property
    def total(self):
        """Seconds per call spent in the steps themselves."""
        return sum(r.seconds for r in self.rows)

    def by_kind(self):
        """{kind: seconds per call}: kernel, library call, loop, view, host."""
        out = collections.defaultdict(float)
        for r in self.rows:
            out[r.kind] += r.seconds
        return dict(out)

    def top(self, n=20):
        return sorted(self.rows, key=lambda r: -r.seconds)[:n]

    def __str__(self):
        return self.table()

    def table(self, n=25):
        ms = 1e3
        kinds = ", ".join(f"{k} {v * ms:.3f} ms" for k, v in
                          sorted(self.by_kind().items(), key=lambda kv: -kv[1]))
        lines = [f"profile of {self.name}: {self.calls} calls, median {self.wall * ms:.3f} ms "
                 f"per call, steps {self.total * ms:.3f} ms ({kinds})",
                 f"{'ms':>9} {'%':>5}  {'#':>4}  {'kind':8} {'step':44} shapes"]
        total = self.total or 1.0
        for r in self.top(n):
            shapes = f"{' '.join(r.ins)} -> {' '.join(r.outs)}"
            lines.append(f"{r.seconds * ms:9.3f} {100 * r.seconds / total:5.1f}  {r.index:4d}  "
                         f"{r.kind:8} {(r.name + ' ' + r.what)[:44]:44} {shapes[:100]}")
        if len(self.rows) > n:
            rest = sum(r.seconds for r in sorted(self.rows, key=lambda r: -r.seconds)[n:])
            lines.append(f"{rest * ms:9.3f} {100 * rest / total:5.1f}  ({len(self.rows) - n} "
                         f"more steps)")
        return "\n".join(lines)


def _kind(e, backend):
    if e.prim.name == "kernel":
        return "kernel"
    if backend.is_library(e):
        return "library"
    if backend.is_view(e):
        return "view"
    if backend.is_control(e):
        return "loop"
    return "host"


def _describe(e):
    if e.prim.name == "kernel":
        sub = e.params["graph"]
        sub = getattr(sub, "graph", sub)
        prims = collections.Counter(q.prim.name for q in sub.eqns)
        return e.params["name"], ",".join(p if c == 1 else f"{p}x{c}"
                                          for p, c in prims.most_common(4))
    return e.prim.name, ""


def _shape(v):
    aval = getattr(v, "aval", None)
    return "x".join(map(str, aval.shape)) or "()" if aval is not None else "lit"


def profile(exe, backend, call, repeats=10, warmup=1):
    """Profile of `exe` over `repeats` calls of `call()` (after `warmup`
    untimed ones); `backend` (codegen's) tells the kinds of steps apart."""
    if repeats < 1:
        raise ValueError(f"profile: repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        call()
    plan = exe._plan
    eqns = exe.fused.graph.eqns
    if len(plan) != len(eqns):      # pragma: no cover - one step per equation
        raise AssertionError("profile: the plan and the fused graph differ in length")
    sync = None
    if exe.device == "cuda":
        from numba import cuda
        sync = cuda.synchronize
    times = [[] for _ in plan]
    clock = time.perf_counter

    def timed(env):
        for k, (step, release) in enumerate(plan):
            if sync is not None:
                sync()
            t = clock()
            step(env)
            if sync is not None:
                sync()
            times[k].append(clock() - t)
            for s in release:
                env[s] = None

    saved = exe._run_steps
    walls = []
    try:
        exe._run_steps = timed
        for _ in range(repeats):
            t = clock()
            call()
            if sync is not None:
                sync()
            walls.append(clock() - t)
    finally:
        exe._run_steps = saved
    rows = []
    for k, e in enumerate(eqns):
        name, what = _describe(e)
        rows.append(Row(k, _kind(e, backend), name, what, [_shape(x) for x in e.inputs],
                        [_shape(v) for v in e.outs],
                        float(np.median(times[k])) if times[k] else 0.0))
    return Profile(exe.name, rows, float(np.median(walls)), repeats)
