"""Compile-time and call-overhead benchmark.

Run: python benchmarks/bench_compile.py
     python benchmarks/bench_compile.py --warm-start [--small] [--models mlp,...] [--repeats N]
Measures, each in a fresh Python process: the first call of a jitted
function with an empty kernel cache (trace + codegen + Numba compile), the
first call in a new process with the cache warm (kernels loaded from disk),
and the per-call overhead of a cached one-kernel call on a 16-element input
(against jax.jit when JAX is installed, and a numpy one-liner).

--warm-start: where a warm start's first call goes, per model of
benchmarks/bench_models.py (functional training steps): one process fills
a fresh cache, then new processes take turns with the plan cache off
(NEEDLE_PLAN_CACHE=0: trace, passes, fusion, emission, kernel loads) and on
(the fused graph read from disk); each column is the median over --repeats
processes of each kind, in seconds: trace, passes (fold ... dce), fusion,
plan (key + load + store), emit (kernel source), numba (kernel modules
loaded from Numba's disk cache, the first including Numba's one-time
start), rest (planning buffers and the first run), first call. One thread
for BLAS and kernels, as bench_models.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import needle, needle.numpy as nnp
t_import = time.perf_counter() - t0

@needle.jit
def layer(x, w, b):
    return nnp.tanh(x @ w + b).sum(axis=1)

@needle.jit
def tiny(x):
    return x * 2.0 + 1.0

rng = np.random.default_rng(0)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0.0)   # the script's own work
x = rng.standard_normal((128, 784)).astype(np.float32)
w = rng.standard_normal((784, 64)).astype(np.float32)
b = np.zeros(64, np.float32)
t0 = time.perf_counter(); layer(x, w, b); t_layer = time.perf_counter() - t0
s = np.ones(16, np.float32)
t0 = time.perf_counter(); tiny(s); t_tiny = time.perf_counter() - t0
n = 100000
best = 1e9
for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(n):
        tiny(s)
    best = min(best, (time.perf_counter() - t0) / n)
np_best = 1e9
for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(n):
        s * np.float32(2.0) + np.float32(1.0)
    np_best = min(np_best, (time.perf_counter() - t0) / n)
out = dict(import_s=t_import, first_layer_s=t_layer, first_tiny_s=t_tiny,
           call_us=best * 1e6, numpy_us=np_best * 1e6, info=needle.cache_info()._asdict())
try:
    import jax
    jt = jax.jit(lambda x: x * 2.0 + 1.0)
    js = jax.numpy.ones(16, dtype="float32")
    jt(js).block_until_ready()
    jb = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n // 10):
            jt(js)
        jb = min(jb, (time.perf_counter() - t0) / (n // 10))
    out["jax_us"] = jb * 1e6
except Exception:
    pass
print(json.dumps(out))
"""


def run_child(cache, work_s=0.0):
    env = dict(os.environ, NEEDLE_CACHE_DIR=cache)
    r = subprocess.run([sys.executable, "-c", CHILD, str(work_s)], env=env, capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


# A warm start's phases, timed by wrapping the functions that do each (the
# outermost call only: passes and fusion recurse into loop bodies).
WARM_CHILD = r"""
import collections, json, sys, time
sys.path.insert(0, sys.argv[3])
import needle
import bench_models as bm
from needle import lowering, api
from needle.codegen import backend_for
from needle.runtime import kernel_cache, plan_cache

T, depth = collections.Counter(), collections.Counter()
def wrap(obj, attr, phase):
    fn = getattr(obj, attr)
    def timed(*a, **k):
        if depth[phase]:
            return fn(*a, **k)
        depth[phase] += 1
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            T[phase] += time.perf_counter() - t
            depth[phase] -= 1
    setattr(obj, attr, timed)

wrap(api.Jitted, "_trace_state", "trace")
stages = lowering.stages
def timed_stages(backend):
    out = []
    for name, fn in stages(backend):
        box = type("Box", (), {})()
        box.fn = fn
        wrap(box, "fn", "fusion" if name == "fused" else "passes")
        out.append((name, box.fn))
    return out
lowering.stages = timed_stages
backend = type(backend_for("cpu"))
wrap(backend, "emit", "emit")
wrap(backend, "emit_loop", "emit")
for fn in ("key", "load", "save"):
    wrap(plan_cache, fn, "plan")
wrap(kernel_cache, "import_kernel_module", "numba")
step, state, batch = bm._build(sys.argv[1], sys.argv[2] == "small")
state = bm._copy_tree(state)
t = time.perf_counter()
step(*state, *batch)
first = time.perf_counter() - t
r = dict(T, first=first, hits=plan_cache.stats["hits"],
         loaded=needle.cache_info().kernels_loaded, compiled=needle.cache_info().kernels_compiled)
r["rest"] = first - sum(T[k] for k in ("trace", "passes", "fusion", "plan", "emit", "numba"))
print("RESULT " + json.dumps(r))
"""
PHASES = ("trace", "passes", "fusion", "plan", "emit", "numba", "rest", "first")


def warm_child(model, small, cache, plan):
    env = dict(os.environ, NEEDLE_CACHE_DIR=cache, NEEDLE_PLAN_CACHE=str(int(plan)),
               **{k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                   "NUMBA_NUM_THREADS", "NEEDLE_NUM_THREADS")})
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, "-c", WARM_CHILD, model, "small" if small else "full",
                        here], env=env, capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{model}: {(r.stderr or r.stdout).strip()[-2000:]}")


def warm_start(models, small, repeats):
    print(f"warm first call, seconds (median of {repeats} processes each; "
          f"{'small' if small else 'full'} sizes)")
    print(f"{'model':12s} {'plan cache':10s} " + " ".join(f"{p:>7s}" for p in PHASES) +
          "  kernels loaded")
    for model in models:
        cache = tempfile.mkdtemp(prefix="needle-bench-warm-")
        try:
            warm_child(model, small, cache, True)           # cold: kernels and plan stored
            runs = {False: [], True: []}
            for _ in range(repeats):
                for plan in (False, True):
                    runs[plan].append(warm_child(model, small, cache, plan))
            for plan in (False, True):
                med = {p: float(np.median([r.get(p, 0.0) for r in runs[plan]])) for p in PHASES}
                hit = all(r["hits"] for r in runs[plan])
                print(f"{model:12s} {('on (hit)' if hit else 'on') if plan else 'off':10s} " +
                      " ".join(f"{med[p]:7.3f}" for p in PHASES) +
                      f"  {runs[plan][-1]['loaded']}")
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        print(f"  (load average {os.getloadavg()[0]:.1f} at {time.strftime('%H:%M:%S')})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warm-start", action="store_true",
                    help="break a warm start down per model, plan cache off and on")
    ap.add_argument("--small", action="store_true", help="tiny model sizes (--warm-start)")
    ap.add_argument("--models", default="mlp,convnet,lstm,transformer")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if a.warm_start:
        return warm_start(a.models.split(","), a.small, a.repeats)
    with tempfile.TemporaryDirectory() as cache:
        cold = run_child(cache)
        warm = run_child(cache)
        # a script that loads data for 0.5 s after `import needle`: Numba warms
        # up meanwhile (runtime/prewarm.py), so its first call only loads
        busy = run_child(cache, 0.5)
    for name, r in (("cold cache", cold), ("warm cache (new process)", warm),
                    ("warm, after 0.5 s of work", busy)):
        i = r["info"]
        print(f"{name:26s} import {r['import_s'] * 1e3:6.0f} ms | first call of layer "
              f"{r['first_layer_s'] * 1e3:7.1f} ms, of tiny {r['first_tiny_s'] * 1e3:6.1f} ms | "
              f"kernels compiled {i['kernels_compiled']}, loaded from disk {i['kernels_loaded']}")
    r = warm
    line = (f"cached call of a one-kernel function on 16 floats: needle {r['call_us']:.2f} us, "
            f"numpy expression {r['numpy_us']:.2f} us")
    if "jax_us" in r:
        line += f", jax.jit {r['jax_us']:.2f} us"
    print(line)


if __name__ == "__main__":
    main()
