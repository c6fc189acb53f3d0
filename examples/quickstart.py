"""needle quickstart: jit a numpy-style function, print its program at every
stage, and time the first (compiling) call against cached calls.

Run: python examples/quickstart.py
"""
import time

import numpy as np

import needle
import needle.numpy as nnp


@needle.jit
def layer(x, w, b):
    return nnp.tanh(x @ w + b).sum(axis=1)


def main():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 784)).astype(np.float32)
    w = (rng.standard_normal((784, 64)) / 28).astype(np.float32)
    b = np.zeros(64, np.float32)

    t0 = time.perf_counter()
    out = layer(x, w, b)
    first = time.perf_counter() - t0
    ref = np.tanh(x @ w + b).sum(axis=1)
    print(f"max |needle - numpy| = {np.abs(out - ref).max():.2e}")

    print("\n== the traced program (needle.make_ir) ==")
    print(needle.make_ir(layer)(x, w, b))

    lo = layer.lower(x, w, b)
    print("\n== stages ==", lo.stages)
    print(f"{lo.kernel_count} generated kernels, {lo.library_call_count} library (BLAS) calls")
    print("\n== kernel groups ==")
    print(lo.as_text("fused"))
    print("\n== generated Numba source ==")
    print(lo.as_text("kernels"))

    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        layer(x, w, b)
    cached = (time.perf_counter() - t0) / n
    print(f"first call (trace + compile or load from disk): {first * 1e3:8.1f} ms")
    print(f"cached call:                                   {cached * 1e3:8.3f} ms")

    # A new batch size retraces but reuses every compiled kernel.
    before = needle.cache_info()
    layer(x[:64], w, b)
    after = needle.cache_info()
    print(f"new batch size: {after.traces - before.traces} trace, "
          f"{after.kernels_compiled - before.kernels_compiled} kernels compiled")
    print("\n", needle.cache_info())


if __name__ == "__main__":
    main()
