"""Compile-time and call-overhead benchmark.

Run: python benchmarks/bench_compile.py
Measures, each in a fresh Python process: the first call of a jitted
function with an empty kernel cache (trace + codegen + Numba compile), the
first call in a new process with the cache warm (kernels loaded from disk),
and the per-call overhead of a cached one-kernel call on a 16-element input
(against jax.jit when JAX is installed, and a numpy one-liner).
"""
import json
import os
import subprocess
import sys
import tempfile

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


def main():
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
