"""What one CPU kernel launch costs, and a training step's launches (issue 13,
"Cheaper launches").

Run: OPENBLAS_NUM_THREADS=1 python benchmarks/bench_launch.py [--models mlp,lstm,transformer]
     [--repeats N] [--no-models]

Input: nothing (random data of a fixed seed). Output: tables on stdout, every
ratio measured side by side in this one process, interleaved.

1. Per launch, as a function of the kernel's array arguments (0..64 arrays of
   2x2 float32, a kernel that writes one element: the launch is all there
   is), the best of 5 rounds of many calls, in microseconds:
   - dispatcher: `fn(*arrays, dims)`, Numba's dispatcher (types every argument,
     picks the overload, calls its entry);
   - entry: the overload's compiled entry point called directly
     (runtime/cpu_device.entry_point: unboxes each array, checks its itemsize);
   - step v0: the runtime's kernel step as it was before (a copy below: the
     input list built per call, `fn(*[env[i] for i in ins], r, *tail)`);
   - step dispatcher / step entry: runtime/cpu_device.kernel_step (a step
     generated per arity) with LAUNCH mode 'dispatcher' / 'entry';
   and a least-squares fit `fixed + per_array * n` of each column.
2. The Executable's plan runner: the loop over (step, release) pairs (before)
   vs runtime/executable.run_plan's generated function, per step, for 200
   steps that do nothing.
3. Model steps (benchmarks/bench_models.py's functional models at --small
   sizes: launches dominate there): each built twice in this process, as
   before (the v0 step, the dispatcher, the loop runner) and as now, timed
   interleaved (one call of each per round, median of --repeats rounds).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _kernel(n, numba):
    """A kernel in needle's CPU signature style: n arrays (2x2 float32,
    C-contiguous) and dims; it writes one element of its first array."""
    params = [f"a{k}" for k in range(n)] + ["dims"]
    sig = "void(" + ", ".join(["float32[:, ::1]"] * n + ["int64[::1]"]) + ")"
    body = "    a0[0, 0] = dims[0]\n" if n else "    pass\n"
    ns = {}
    exec(f"def kernel({', '.join(params)}):\n{body}", ns)
    return numba.njit(sig, nogil=True, error_model="numpy")(ns["kernel"])


def kernel_step_v0(fn, ins, outs, out_specs, dims, inplace=None, lits=None, rows=()):
    """The runtime's kernel step before this change (runtime/cpu_device.py),
    kept here to time against."""
    from needle.runtime import memory
    inplace = inplace or {}
    allocs = [memory.allocator(shape, dt) for shape, dt in out_specs]
    tail = ((dims,) if lits is None else (dims, lits)) + tuple(rows)
    if len(outs) == 1 and not inplace:
        (o,), (alloc,) = outs, allocs
        if len(ins) == 1:
            (i0,) = ins

            def step(env):
                r = alloc()
                fn(env[i0], r, *tail)
                env[o] = r
            return step

        def step(env):
            r = alloc()
            fn(*[env[i] for i in ins], r, *tail)
            env[o] = r
        return step
    if len(outs) == 1 and len(ins) > 1 and list(inplace) == [0]:
        import operator
        (o,), src, get = outs, inplace[0], operator.itemgetter(*ins)

        def step(env):
            r = env[src]
            fn(*get(env), r, *tail)
            env[o] = r
        return step

    def step(env):
        rs = [env[inplace[k]] if k in inplace else alloc()
              for k, alloc in enumerate(allocs)]
        fn(*[env[i] for i in ins], *rs, *tail)
        for o, r in zip(outs, rs):
            env[o] = r
    return step


def run_plan_v0(plan):
    """The Executable's loop before run_plan (runtime/executable.py)."""
    def run(env):
        for step, release in plan:
            step(env)
            for s in release:
                env[s] = None
    return run


def _best(f, arg, reps):
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            f(arg)
        best = min(best, (time.perf_counter() - t) / reps)
    return best * 1e6


def launches(counts=(0, 1, 2, 4, 8, 16, 32, 64), reps=20000):
    import numba

    from needle.runtime import cpu_device
    dims = np.array([2, 2], np.int64)
    cols = ["dispatcher", "entry", "step v0", "step dispatcher", "step entry"]
    rows = []
    for n in counts:
        fn = _kernel(n, numba)
        arrays = tuple(np.zeros((2, 2), np.float32) for _ in range(n)) + (dims,)
        entry = fn.overloads[fn.signatures[0]].entry_point
        env = [np.zeros((2, 2), np.float32) for _ in range(n + 1)]
        ins, outs = list(range(max(n - 1, 0))), [n] if n else []
        specs = [((2, 2), np.dtype(np.float32))] if n else []
        steps = [kernel_step_v0(fn, ins, outs, specs, dims)]
        for mode in ("dispatcher", "entry"):
            cpu_device.LAUNCH["mode"] = mode
            steps.append(cpu_device.kernel_step(fn, ins, outs, specs, dims))
        cpu_device.LAUNCH["mode"] = "entry"
        for s in steps:
            s(env)                                  # the entry step's first call
        row = [_best(lambda a: fn(*a), arrays, reps), _best(lambda a: entry(*a), arrays, reps)]
        row += [_best(s, env, reps) for s in steps]
        rows.append(row)
    print(f"\n1. One launch (us) vs array arguments (kernel of n arrays + dims; "
          f"steps: n-1 inputs, 1 output)")
    print(f"{'arrays':>6} " + " ".join(f"{c:>15}" for c in cols))
    for n, row in zip(counts, rows):
        print(f"{n:>6} " + " ".join(f"{v:>15.3f}" for v in row))
    a = np.stack([np.ones(len(counts)), np.array(counts, float)], 1)
    fit = np.linalg.lstsq(a, np.array(rows), rcond=None)[0]
    print(f"{'fixed':>6} " + " ".join(f"{v:>15.3f}" for v in fit[0]))
    print(f"{'/array':>6} " + " ".join(f"{v:>15.3f}" for v in fit[1]))
    return counts, cols, rows


def runners(n_steps=200, reps=5000):
    from needle.runtime.executable import run_plan

    def noop(env):
        pass
    plan = [(noop, (k,) if k % 3 == 0 else ()) for k in range(n_steps)]
    env = [None] * n_steps
    old, new = run_plan_v0(plan), run_plan(plan)
    t_old, t_new = _best(old, env, reps), _best(new, env, reps)
    print(f"\n2. Plan runner, per step (ns): loop {t_old / n_steps * 1e3:.0f}, "
          f"generated {t_new / n_steps * 1e3:.0f} ({t_old / t_new:.2f}x)")


def models(names, repeats):
    import bench_models as bm

    from needle.runtime import cpu_device
    print(f"\n3. Training steps at --small sizes, before vs now, interleaved "
          f"(median of {repeats} rounds, us)")
    print(f"{'model':>12} {'launches':>9} {'before':>10} {'now':>10} {'ratio':>7}")
    for name in names:
        built = []
        for before in (True, False):
            step, state, batch = bm._build(name, True)
            state = bm._copy_tree(state)
            saved = cpu_device.kernel_step
            if before:
                cpu_device.kernel_step = kernel_step_v0
            try:
                out = step(*state, *batch)
            finally:
                cpu_device.kernel_step = saved
            state = out[1:]
            exe = step.lower(*state, *batch).executable
            if before:
                exe._run_steps = run_plan_v0(exe._plan)
            built.append([step, state, batch, exe])
        if built[0][3] is built[1][3]:
            raise RuntimeError(f"{name}: both builds share one executable; nothing to compare")
        times = [[], []]
        for _ in range(repeats):
            for k, b in enumerate(built):
                t = time.perf_counter()
                out = b[0](*b[1], *b[2])
                times[k].append(time.perf_counter() - t)
                b[1] = out[1:]
        exe = built[1][3]
        before, now = (float(np.median(t)) * 1e6 for t in times)
        print(f"{name:>12} {exe.kernel_count:>9} {before:>10.1f} {now:>10.1f} "
              f"{before / now:>7.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mlp,lstm,transformer")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--no-models", action="store_true")
    a = ap.parse_args()
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
          f"load average {os.getloadavg()[0]:.2f}")
    launches()
    runners()
    if not a.no_models:
        import warnings
        warnings.simplefilter("ignore")         # the donation warning
        models(a.models.split(","), a.repeats)
    print(f"\nload average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
