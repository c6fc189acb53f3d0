"""Core CPU benchmarks: needle's jit against numpy (and JAX / PyTorch when
installed) on the workloads of the spine issue, and a 3x3 convolution
(needle.nn.conv: im2col + BLAS).

Run: python benchmarks/bench_core.py [--small]
Prints one table; the ratio columns are peer time / needle time (above 1:
needle is faster), all measured in one run, interleaved.
"""
import sys

import numpy as np

import needle
import needle.numpy as nnp
import needle.nn as nnn

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import (bench_args, print_table, timeit_side_by_side, try_jax,  # noqa: E402
                    try_torch)


def chain(x):
    return nnp.tanh(x * 0.7 + 0.1) * 0.5 + x * x


def chain_np(x):
    return np.tanh(x * np.float32(0.7) + np.float32(0.1)) * np.float32(0.5) + x * x


def softmax_np(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def conv_np(x, w):
    """3x3, padding 1, stride 1, NHWC: numpy's im2col (sliding windows) and a
    tensordot, the way a numpy user would write it."""
    from numpy.lib.stride_tricks import sliding_window_view
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    win = sliding_window_view(xp, (3, 3), axis=(1, 2))            # (B, H, W, C, 3, 3)
    return np.tensordot(win, w, axes=([4, 5, 3], [0, 1, 2]))


def layernorm(x, g, b):
    m = nnp.mean(x, axis=-1, keepdims=True)
    v = nnp.mean((x - m) ** 2, axis=-1, keepdims=True)
    return (x - m) * nnp.rsqrt(v + 1e-5) * g + b


def layernorm_np(x, g, b):
    m = x.mean(axis=-1, keepdims=True)
    v = ((x - m) ** 2).mean(axis=-1, keepdims=True)
    return (x - m) / np.sqrt(v + np.float32(1e-5)) * g + b


def main():
    args = bench_args()
    s = 16 if args.small else 1
    rng = np.random.default_rng(0)
    jax, torch = try_jax(), try_torch()
    rows = []

    def add(name, needle_fn, np_fn, jax_fn, torch_fn, *arrays):
        fns = {"needle": lambda: needle_fn(*arrays), "numpy": lambda: np_fn(*arrays)}
        if jax is not None and jax_fn is not None:
            ja = [jax.device_put(a) for a in arrays]
            jf = jax.jit(jax_fn)
            fns["jax"] = lambda: jf(*ja)
        if torch is not None and torch_fn is not None:
            ta = [torch.from_numpy(a) for a in arrays]
            fns["torch"] = lambda: torch_fn(*ta)
        rows.append((name, timeit_side_by_side(fns, repeats=args.repeats)))

    n = (1 << 24) // s
    x = rng.standard_normal(n).astype(np.float32)
    jnp = jax.numpy if jax else None
    add(f"chain {n} f32", needle.jit(chain), chain_np,
        (lambda x: jnp.tanh(x * 0.7 + 0.1) * 0.5 + x * x) if jax else None,
        (lambda x: torch.tanh(x * 0.7 + 0.1) * 0.5 + x * x) if torch else None, x)

    r = 4096 // s
    xs = rng.standard_normal((r, 4096 // s)).astype(np.float32)
    add(f"softmax {r}x{4096 // s} f32", needle.jit(lambda x: nnn.softmax(x, axis=1)), softmax_np,
        (lambda x: jax.nn.softmax(x, axis=1)) if jax else None,
        (lambda x: torch.softmax(x, dim=1)) if torch else None, xs)

    rl = 8192 // s
    xl = rng.standard_normal((rl, 1024)).astype(np.float32)
    g = rng.standard_normal(1024).astype(np.float32)
    b = rng.standard_normal(1024).astype(np.float32)
    add(f"layernorm {rl}x1024 f32", needle.jit(layernorm), layernorm_np,
        (lambda x, g, b: layernorm_jax(jnp, x, g, b)) if jax else None,
        (lambda x, g, b: torch.nn.functional.layer_norm(x, (1024,), g, b)) if torch else None,
        xl, g, b)

    m = 1024 // s
    a = rng.standard_normal((m, m)).astype(np.float32)
    bb = rng.standard_normal((m, m)).astype(np.float32)
    add(f"matmul {m}^3 f32", needle.jit(lambda a, b: a @ b), lambda a, b: a @ b,
        (lambda a, b: a @ b) if jax else None, (lambda a, b: a @ b) if torch else None, a, bb)

    nb = 64 // s
    xc = rng.standard_normal((nb, 32, 32, 64)).astype(np.float32)
    wc = rng.standard_normal((3, 3, 64, 64)).astype(np.float32)
    add(f"conv 3x3 {nb}x32x32x64 NHWC f32", needle.jit(lambda x, w: nnn.conv(x, w, 1, 1)),
        conv_np,
        (lambda x, w: jax.lax.conv_general_dilated(
            x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")))
        if jax else None,
        (lambda x, w: torch.nn.functional.conv2d(
            x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1), padding=1).permute(0, 2, 3, 1))
        if torch else None, xc, wc)

    print_table(rows)
    chain_jit = needle.jit(chain)
    t, copy = _against_copy(lambda: chain_jit(x), x, args.repeats)
    print(f"\nchain: reads x and writes the result, {2 * 4 * n / t / 1e9:.1f} GB/s; a 2-thread "
          f"prange copy of x: {2 * 4 * n / copy / 1e9:.1f} GB/s (timed interleaved with it) -> "
          f"chain at {100 * copy / t:.0f}% of copy bandwidth")
    print(needle.cache_info())


def _against_copy(fn, x, repeats):
    """Median times of fn() and of a parallel Numba copy of x into a reused
    buffer (the memory bandwidth a fused elementwise kernel can hope for),
    interleaved so that both see the same machine."""
    import numba

    @numba.njit(parallel=True)
    def copy(a, out):
        for i in numba.prange(a.shape[0]):
            out[i] = a[i]
    out = np.empty_like(x)
    t = timeit_side_by_side({"fn": fn, "copy": lambda: copy(x, out)}, repeats=repeats)
    return t["fn"], t["copy"]


def layernorm_jax(jnp, x, g, b):
    m = x.mean(axis=-1, keepdims=True)
    v = ((x - m) ** 2).mean(axis=-1, keepdims=True)
    return (x - m) / jnp.sqrt(v + 1e-5) * g + b


if __name__ == "__main__":
    main()
