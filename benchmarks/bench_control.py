"""Control-flow benchmark: what a loop costs compiled with `needle.lax.scan`.

Run: python benchmarks/bench_control.py [--small]

1. Trace + compile time of an LSTM language model's training step
   (examples/lstm_scan.py: value_and_grad + SGD, jitted) at T=10 and T=1000
   with `scan`, beside the same model with a Python loop over time (the
   unrolled trace grows with T; it is measured at smaller T). Each number is
   a fresh Python process with a fresh kernel cache: the first call's time.
   Also the equation and kernel counts of each program.
2. Per-step overhead on CPU of a scan over T steps: `h = tanh(a*h + x)` on
   16 floats (no library call in the body: one generated Numba loop, and for
   comparison the Python loop over the body's plan), and `h = tanh(h @ W +
   x)` with a 16x16 W (one BLAS call per step: the Python loop), in
   microseconds per step, beside a numpy Python loop doing the same.
3. Allocations: every numpy allocation one call of each scan makes
   (runtime/memory.count_allocations, a counting numpy memory handler), at
   T=100 and at T=1000: equal counts mean no allocation per step.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import bench_args  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[3])
import numpy as np, needle
import lstm_scan as L
T, kind = int(sys.argv[1]), sys.argv[2]
ids, vocab = L.corpus()
p = L.init_params(len(vocab), 32)
step = L.make_step(L.loss if kind == "scan" else L.loss_unrolled)
tokens = L.batches(ids, T, 8, np.random.default_rng(0))
t1 = time.perf_counter()
lo = step.lower(p, tokens)
t2 = time.perf_counter()
val, _ = step(p, tokens)
t3 = time.perf_counter()
def count(g):
    n = 0
    for e in g.eqns:
        n += 1
        for v in e.params.values():
            for s in (v if isinstance(v, tuple) else (v,)):
                if hasattr(s, "graph") and hasattr(s.graph, "eqns"):
                    n += count(s.graph)
    return n
print(json.dumps({"lower_s": t2 - t1, "first_call_s": t3 - t1,
                  "eqns": count(lo._graphs["traced"]), "kernels": lo.kernel_count,
                  "loss": float(val)}))
"""


def fresh(T, kind):
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NEEDLE_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", CHILD, str(T), kind,
                              os.path.join(ROOT, "examples")], env=env, capture_output=True,
                             text=True, timeout=1800)
        if out.returncode:
            raise RuntimeError(out.stderr[-2000:])
        return json.loads(out.stdout.strip().splitlines()[-1])


def compile_times(small):
    rows = []
    for kind, Ts in (("scan", (10, 100) if small else (10, 1000)),
                     ("unrolled", (10, 20) if small else (10, 50, 100))):
        for T in Ts:
            r = fresh(T, kind)
            rows.append((kind, T, r))
            print(f"  {kind:9s} T={T:5d}: first call {r['first_call_s']:6.2f} s "
                  f"(lower {r['lower_s']:6.2f} s), traced eqns {r['eqns']:6d}, "
                  f"kernels {r['kernels']:4d}", flush=True)
    return rows


def per_step(T, repeats):
    """{case: {contestant: us per step, 'allocs': {contestant: [count at T=100,
    count at T=1000]}}}. Contestants: needle's generated loop (one Numba
    function for all steps: a body without library calls), needle's Python
    loop over the body's plan (CpuDevice.generate_loops off; what a body with a
    BLAS call always runs), a numpy Python loop. Interleaved, CPU time of
    this process (time.process_time: the machine is shared, and every
    contestant is single-threaded), medians."""
    import needle
    import needle.numpy as nnp
    from needle import lax
    from needle.runtime.cpu_device import CpuDevice
    from needle.runtime.memory import count_allocations
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((T, 16)).astype(np.float32)
    W = (rng.standard_normal((16, 16)) / 4).astype(np.float32)
    a = np.float32(0.5)

    def elementwise(a, xs):
        return lax.scan(lambda h, x: (nnp.tanh(a * h + x),) * 2, np.zeros(16, np.float32),
                        xs)

    def blas(W, xs):
        return lax.scan(lambda h, x: (nnp.tanh(h @ W + x),) * 2, np.zeros(16, np.float32),
                        xs)

    def np_elementwise(a, xs):
        h, ys = np.zeros(16, np.float32), np.empty_like(xs)
        for t in range(len(xs)):
            h = np.tanh(a * h + xs[t])
            ys[t] = h
        return h, ys

    def np_blas(W, xs):
        h, ys = np.zeros(16, np.float32), np.empty_like(xs)
        for t in range(len(xs)):
            h = np.tanh(h @ W + xs[t])
            ys[t] = h
        return h, ys

    def compiled(f, generate):
        jf = needle.jit(f)

        def call(*args):        # each length compiles under this contestant's setting
            CpuDevice.generate_loops = generate
            try:
                return jf(*args)
            finally:
                CpuDevice.generate_loops = True
        return call

    cases = {
        "elementwise": ({"needle generated loop": compiled(elementwise, True),
                         "needle Python loop": compiled(elementwise, False),
                         "numpy loop": np_elementwise}, a),
        "one BLAS call": ({"needle (Python loop)": compiled(blas, True),
                           "numpy loop": np_blas}, W),
    }
    out = {}
    for name, (fns, arg) in cases.items():
        want = np_elementwise(arg, xs) if name == "elementwise" else np_blas(arg, xs)
        for f in fns.values():
            assert np.allclose(f(arg, xs)[1], want[1], atol=1e-4), name
        ts = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                t0 = time.process_time()
                fn(arg, xs)
                ts[k].append(time.process_time() - t0)
        out[name] = {k: float(np.median(v)) / T * 1e6 for k, v in ts.items()}
        # every numpy allocation of one call, at two lengths
        out[name]["allocs"] = allocs = {}
        for k, fn in fns.items():
            if k.startswith("numpy"):
                continue
            counts = []
            for n in (100, 1000):
                x = xs[:n].copy()
                fn(arg, x)
                with count_allocations() as c:
                    fn(arg, x)
                counts.append(c.arrays)
            allocs[k] = counts
    return out


def main():
    args = bench_args(__doc__)
    print("1. LSTM-LM training step, trace + compile (fresh process, fresh cache):")
    compile_times(args.small)
    T = 1000 if args.small else 10000
    print(f"2. per-step overhead, scan over T={T} (median of {args.repeats}, CPU time):")
    res = per_step(T, args.repeats)
    for name, r in res.items():
        ref = r["numpy loop"]
        print(f"  {name}:")
        for k, v in r.items():
            if k != "allocs":
                print(f"    {k:22s} {v:7.3f} us/step   ({v / ref:5.2f}x the numpy loop)")
    print("3. numpy allocations in one call, T=100 vs T=1000 (equal: none per step):")
    for name, r in res.items():
        for k, (n100, n1000) in r["allocs"].items():
            print(f"  {name:14s} {k:22s}: {n100} vs {n1000}")


if __name__ == "__main__":
    main()
