"""Autodiff CPU benchmarks: needle's jit of differentiated programs against
hand-written numpy forward + backward passes (and JAX's CPU jit when
installed).

Workloads:
- gelu forward+backward over 16M float32 (tanh approximation). needle:
  `jit` of a function returning gelu(x) and its vjp with a cotangent of ones
  (`needle.vjp`); JAX: `jax.jit` of the same through `jax.vjp`; numpy: the
  forward and the hand-derived backward written out.
- one MLP training step, 784-512-512-10, batch 256, relu, softmax
  cross-entropy, SGD on all six parameters. needle: `jit(step)` where step
  calls `needle.grad(loss)` and returns the updated params; JAX: `jax.jit`
  with `jax.grad`; numpy: the forward and backward written out. Each call
  feeds the new params back in, as a training loop does. A second row
  donates the params (needle and JAX `donate_argnums=0`; numpy updates in
  place).

- a 3x3 convolution, 32x32x32x64 NHWC: the gradients of sum(relu(conv(x, w)))
  in x and w (needle.nn.conv: im2col + matmul; JAX's conv_general_dilated;
  numpy: im2col, matmuls and col2im written out).

Before timing, the needle results are checked against numpy (gradients of
the MLP loss to 1e-4 relative on a small batch). Run:
    python benchmarks/bench_autodiff.py [--small] [--repeats N]
Prints one table; the ratio columns are peer time / needle time (above 1:
needle is faster), all measured in one run, interleaved.
"""
import sys

import numpy as np

import needle
import needle.nn as nnn
import needle.numpy as nnp
from needle.tree_util import tree_leaves, tree_map

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import bench_args, print_table, timeit_side_by_side, try_jax  # noqa: E402

LR = 0.01
GELU_C = float(np.sqrt(2 / np.pi))


# --- gelu ------------------------------------------------------------------------

def gelu_fwd_bwd(x):
    y, vjp = needle.vjp(nnn.gelu, x)
    return y, vjp(nnp.ones_like(x))[0]


def gelu_fwd_bwd_np(x):
    c, a = np.float32(GELU_C), np.float32(0.044715)
    half, one = np.float32(0.5), np.float32(1)
    x2 = x * x
    t = np.tanh(c * x * (one + a * x2))
    y = half * x * (one + t)
    dx = half * (one + t) + half * x * (one - t * t) * c * (one + np.float32(3) * a * x2)
    return y, dx


def gelu_fwd_bwd_jax(jax):
    def f(x):
        y, vjp = jax.vjp(lambda v: jax.nn.gelu(v, approximate=True), x)
        return y, vjp(jax.numpy.ones_like(x))[0]
    return jax.jit(f)


# --- MLP training step -------------------------------------------------------------

def mlp_loss(params, x, y):
    h = x
    for w, b in params[:-1]:
        h = nnn.relu(h @ w + b)
    w, b = params[-1]
    logits = h @ w + b
    return -nnp.mean(nnp.sum(nnn.log_softmax(logits) * y, axis=1))


def mlp_step(params, x, y):
    g = needle.grad(mlp_loss)(params, x, y)
    return tree_map(lambda p, d: p - LR * d, params, g)


def mlp_grad_np(params, x, y):
    """Loss and gradients of mlp_loss, written out (y one-hot rows)."""
    hs, zs = [x], []
    for w, b in params[:-1]:
        z = hs[-1] @ w + b
        zs.append(z)
        hs.append(np.maximum(z, 0))
    w, b = params[-1]
    logits = hs[-1] @ w + b
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    logp = logits - m - np.log(s)
    n = np.float32(x.shape[0])
    loss = -(logp * y).sum() / n
    d = (e / s * y.sum(axis=1, keepdims=True) - y) / n       # dloss/dlogits
    grads = []
    for i in range(len(params) - 1, -1, -1):
        w, _ = params[i]
        grads.append((hs[i].T @ d, d.sum(axis=0)))
        if i > 0:
            d = (d @ w.T) * (zs[i - 1] > 0)
    return loss, grads[::-1]


def mlp_step_np(params, x, y):
    _, g = mlp_grad_np(params, x, y)
    lr = np.float32(LR)
    return [(w - lr * dw, b - lr * db) for (w, b), (dw, db) in zip(params, g)]


def mlp_step_np_inplace(params, x, y):
    _, g = mlp_grad_np(params, x, y)
    lr = np.float32(LR)
    for (w, b), (dw, db) in zip(params, g):
        dw *= lr
        w -= dw
        db *= lr
        b -= db
    return params


def mlp_step_jax(jax, donate):
    jnp = jax.numpy

    def loss(params, x, y):
        h = x
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        w, b = params[-1]
        logits = h @ w + b
        return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * y, axis=1))

    def step(params, x, y):
        g = jax.grad(loss)(params, x, y)
        return jax.tree_util.tree_map(lambda p, d: p - LR * d, params, g)
    return jax.jit(step, donate_argnums=(0,) if donate else ())


def init_mlp(sizes, rng):
    return [((rng.standard_normal((i, o)) * np.sqrt(2 / i)).astype(np.float32),
             (rng.standard_normal(o) * 0.1).astype(np.float32))
            for i, o in zip(sizes[:-1], sizes[1:])]


def copy_params(params):
    return [(w.copy(), b.copy()) for w, b in params]


def batch(rng, n, d, k):
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = np.eye(k, dtype=np.float32)[rng.integers(0, k, n)]
    return x, y


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# --- checks ------------------------------------------------------------------------

def check(sizes, rng):
    """needle against the numpy-written programs, before any timing."""
    x = rng.standard_normal(4099).astype(np.float32) * 3
    y, dx = needle.jit(gelu_fwd_bwd)(x)
    y_np, dx_np = gelu_fwd_bwd_np(x.astype(np.float64))
    assert rel_err(y, y_np) < 1e-5 and rel_err(dx, dx_np) < 1e-5, \
        ("gelu fwd+bwd differs from numpy", rel_err(y, y_np), rel_err(dx, dx_np))

    params = init_mlp(sizes, rng)
    xb, yb = batch(rng, 16, sizes[0], sizes[-1])
    loss, g = needle.jit(needle.value_and_grad(mlp_loss))(params, xb, yb)
    p64 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in params]
    loss_np, g_np = mlp_grad_np(p64, xb.astype(np.float64), yb.astype(np.float64))
    assert rel_err(loss, loss_np) < 1e-4, ("MLP loss", float(loss), loss_np)
    for i, (a, b) in enumerate(zip(tree_leaves(g), tree_leaves(g_np))):
        assert a.shape == b.shape and rel_err(a, b) < 1e-4, \
            (f"MLP gradient leaf {i} differs from numpy", a.shape, b.shape, rel_err(a, b))
    new = needle.jit(mlp_step)(copy_params(params), xb, yb)
    new_np = mlp_step_np(params, xb, yb)
    for a, b in zip(tree_leaves(new), tree_leaves(new_np)):
        assert rel_err(a, b) < 1e-4, ("MLP step differs from numpy", rel_err(a, b))


# --- main --------------------------------------------------------------------------

def conv_fwd_bwd_np(x, w):
    """numpy: im2col by sliding windows, the forward matmul, the relu mask,
    the two gradient matmuls and col2im by adding shifted slices."""
    from numpy.lib.stride_tricks import sliding_window_view
    b, h, wd, c = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = sliding_window_view(xp, (3, 3), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
    cols = cols.reshape(b * h * wd, 9 * c)
    y = cols @ w.reshape(9 * c, -1)
    g = (y > 0).astype(x.dtype)
    gw = (cols.T @ g).reshape(w.shape)
    gcols = (g @ w.reshape(9 * c, -1).T).reshape(b, h, wd, 3, 3, c)
    gx = np.zeros_like(xp)
    for i in range(3):
        for j in range(3):
            gx[:, i:i + h, j:j + wd] += gcols[:, :, :, i, j]
    return gx[:, 1:-1, 1:-1], gw


def main():
    args = bench_args()
    s = 16 if args.small else 1
    rng = np.random.default_rng(0)
    jax = try_jax()
    rows = []

    sizes = [784, 512 // s, 512 // s, 10]
    check(sizes, rng)

    # gelu forward + backward
    n = (1 << 24) // s
    x = rng.standard_normal(n).astype(np.float32)
    f = needle.jit(gelu_fwd_bwd)
    fns = {"needle": lambda: f(x), "numpy": lambda: gelu_fwd_bwd_np(x)}
    if jax is not None:
        jf, jx = gelu_fwd_bwd_jax(jax), jax.device_put(x)
        fns["jax"] = lambda: jax.block_until_ready(jf(jx))
    rows.append((f"gelu fwd+bwd {n} f32 (vjp)",
                 timeit_side_by_side(fns, repeats=args.repeats)))

    # MLP training step: every call feeds the new params back in
    bs = 256 // s
    params = init_mlp(sizes, rng)
    xb, yb = batch(rng, bs, sizes[0], sizes[-1])
    name = f"mlp {'-'.join(map(str, sizes))} b{bs}"
    for donate in (False, True):
        state = {}
        step = needle.jit(mlp_step, donate_argnums=(0,) if donate else ())
        np_step = mlp_step_np_inplace if donate else mlp_step_np
        state["needle"], state["numpy"] = copy_params(params), copy_params(params)

        def run(key, fn, *data):
            def call():
                state[key] = fn(state[key], *data)
                return state[key]
            return call
        fns = {"needle": run("needle", step, xb, yb), "numpy": run("numpy", np_step, xb, yb)}
        if jax is not None:
            jstep = mlp_step_jax(jax, donate)
            state["jax"] = jax.device_put(copy_params(params))
            fns["jax"] = run("jax", lambda *a: jax.block_until_ready(jstep(*a)),
                             jax.device_put(xb), jax.device_put(yb))
        rows.append((name + (" donated" if donate else ""),
                     timeit_side_by_side(fns, repeats=args.repeats)))
        state.clear()

    # conv 3x3 forward + backward (both gradients) of sum(relu(conv(x, w)))
    nb = 32 // s
    xc = rng.standard_normal((nb, 32, 32, 64)).astype(np.float32)
    wc = (rng.standard_normal((3, 3, 64, 64)) * 0.05).astype(np.float32)
    cg = needle.jit(needle.grad(lambda x, w: nnp.sum(nnn.relu(nnn.conv(x, w, 1, 1))),
                                argnums=(0, 1)))
    fns = {"needle": lambda: cg(xc, wc), "numpy": lambda: conv_fwd_bwd_np(xc, wc)}
    if jax is not None:
        def jconv(x, w):
            return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))
        jcg = jax.jit(jax.grad(lambda x, w: jax.numpy.sum(jax.nn.relu(jconv(x, w))),
                               argnums=(0, 1)))
        jxc, jwc = jax.device_put(xc), jax.device_put(wc)
        fns["jax"] = lambda: jax.block_until_ready(jcg(jxc, jwc))
    rows.append((f"conv 3x3 {nb}x32x32x64 fwd+bwd", timeit_side_by_side(fns,
                                                                         repeats=args.repeats)))

    print_table(rows)
    t = rows[0][1]["needle"]
    print(f"\ngelu fwd+bwd: {3 * 4 * n / t / 1e9:.1f} GB/s of compulsory traffic "
          f"(read x, write y and dx)")
    lo = needle.jit(mlp_step).lower(params, xb, yb)
    print(f"mlp step: {lo.kernel_count} generated kernels, {lo.library_call_count} "
          f"library (BLAS) calls; gelu fwd+bwd: {f.lower(x).kernel_count} kernel(s)")
    print(needle.cache_info())


if __name__ == "__main__":
    main()
