"""needle.random CPU benchmarks: random bits made inside the kernel that
uses them, against numpy's generator (and JAX's CPU jit when installed).

Workloads (float32, 16M elements; --small: 64K):
- dropout forward + backward, p = 0.1: needle `jit` of a function returning
  dropout(x) and its vjp for a cotangent g (`needle.vjp`), the mask
  `bernoulli(fold_in(key, step), 0.9)` drawn in the one kernel that applies
  it to x and g; numpy: `mask = rng.random(n, dtype=float32) < 0.9`, then
  `where(mask, x / 0.9, 0)` and `where(mask, g / 0.9, 0)`; JAX: `jax.jit` of
  the same as needle's, through jax.random and `jax.vjp`.
- uniform floats: needle `jit(uniform)` against `rng.random(n, float32)`.
- normal floats: needle `jit(normal)` against `rng.standard_normal(n,
  float32)` (numpy's ziggurat; needle's is erf_inv of a uniform, as JAX's).

Before timing, the compiled dropout is checked against the eager one (the
same mask, bit for bit) and its kept fraction against 0.9. Run:
    python benchmarks/bench_random.py [--small] [--repeats N]
Prints one table; the ratio columns are peer time / needle time (above 1:
needle is faster), all measured in one run, interleaved.
"""
import sys

import numpy as np

import needle
import needle.numpy as nnp
from needle import random as nr

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import bench_args, print_table, timeit_side_by_side, try_jax  # noqa: E402

KEEP = 0.9


def dropout(x, key):
    return nnp.where(nr.bernoulli(key, KEEP, x.shape), x / KEEP, 0.0)


def dropout_fwd_bwd(x, g, key, step):
    y, vjp = needle.vjp(lambda x: dropout(x, nr.fold_in(key, step)), x)
    return y, vjp(g)[0]


def dropout_fwd_bwd_np(x, g, rng):
    keep = rng.random(x.shape[0], dtype=np.float32) < np.float32(KEEP)
    scale = np.float32(1 / KEEP)
    return np.where(keep, x * scale, np.float32(0)), np.where(keep, g * scale, np.float32(0))


def dropout_fwd_bwd_jax(jax):
    jnp = jax.numpy

    def f(x, g, key, step):
        k = jax.random.fold_in(key, step)
        y, vjp = jax.vjp(lambda x: jnp.where(jax.random.bernoulli(k, KEEP, x.shape),
                                             x / KEEP, 0.0), x)
        return y, vjp(g)[0]
    return jax.jit(f)


def check(n):
    x = np.linspace(-1, 1, n).astype(np.float32)
    key = nr.PRNGKey(0)
    y, dx = needle.jit(dropout_fwd_bwd)(x, np.ones_like(x), key, np.uint32(3))
    keep = nr.bernoulli(nr.fold_in(key, 3), KEEP, x.shape)      # eager: numpy
    assert np.array_equal(dx != 0, keep), "the compiled mask differs from the eager one"
    np.testing.assert_allclose(y, np.where(keep, x / np.float32(KEEP), 0), rtol=1e-6)
    assert abs(float(keep.mean()) - KEEP) < 0.02, ("kept fraction", float(keep.mean()))
    lo = needle.jit(dropout_fwd_bwd).lower(x, np.ones_like(x), key, np.uint32(3))
    return lo.kernel_count


def main():
    args = bench_args(__doc__.splitlines()[0])
    n = 1 << 16 if args.small else 1 << 24
    rng = np.random.default_rng(0)
    kernels = check(4099)
    x = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    key = nr.PRNGKey(0)
    steps = iter(range(1 << 30))

    drop = needle.jit(dropout_fwd_bwd)
    uni = needle.jit(lambda k: nr.uniform(k, (n,)))
    nor = needle.jit(lambda k: nr.normal(k, (n,)))
    rows = [
        (f"dropout fwd+bwd {n // (1 << 20) or n}{'M' if n >= 1 << 20 else ''} f32",
         {"needle": lambda: drop(x, g, key, np.uint32(next(steps))),
          "numpy": lambda: dropout_fwd_bwd_np(x, g, rng)}),
        ("uniform", {"needle": lambda: uni(key), "numpy": lambda: rng.random(n, np.float32)}),
        ("normal", {"needle": lambda: nor(key),
                    "numpy": lambda: rng.standard_normal(n, np.float32)}),
    ]
    jax = try_jax()
    if jax is not None:
        jdrop = dropout_fwd_bwd_jax(jax)
        jkey = jax.random.PRNGKey(0)
        rows[0][1]["jax"] = lambda: jdrop(x, g, jkey, next(steps))
        ju = jax.jit(lambda k: jax.random.uniform(k, (n,), jax.numpy.float32))
        jn = jax.jit(lambda k: jax.random.normal(k, (n,), jax.numpy.float32))
        rows[1][1]["jax"] = lambda: ju(jkey)
        rows[2][1]["jax"] = lambda: jn(jkey)
    table = [(name, timeit_side_by_side(fns, repeats=args.repeats)) for name, fns in rows]
    print(f"needle.random, {n} float32 elements; the dropout is {kernels} kernel(s), its mask "
          f"drawn inside")
    print_table(table)


if __name__ == "__main__":
    main()
