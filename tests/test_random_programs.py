"""Random programs built around reductions, values and gradients, eager and
jit, against the numpy interpreter and central finite differences.

The shapes drawn are the ones fused reduction kernels get wrong when they
get anything wrong: size-1 axes (a broadcast reads them as index 0), reduced
size-1 axes, keepdims, a reduction broadcast back over the axis it reduced
(x - max(x)), and a row sum of a transcendental that the output also uses
(softmax's exp: the CPU kernel keeps it in the output buffer, the "output
cache"). Float32 and float64. tests/test_fusion.py draws 2-d programs with
more structural ops; this file goes deeper into reductions and gradients.
Transposes are mixed in (simplify sinks them below elementwise operations
and reductions, passes/layout.py): alone, and as a layer working in another
layout (transpose, elementwise work with broadcasts and a reduction, the
inverse transpose), as the course's NCHW layers around channels-last
convolutions. Products by a constant matrix (BLAS, or the CPU's blocked
small-product kernel for N = 8, 16) and 1-d convolutions of (batch, length,
channels) values (the conv primitive: direct kernels on the CPU, im2col on
CUDA) join them.
"""
import itertools
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import needle
import needle.nn as nnn
import needle.numpy as nnp
from needle.ir.interpreter import run_numpy

from helpers import broadcastable, jit

# Examples per test (NEEDLE_RANDOM_PROGRAMS=200 for a longer hunt; with the
# 'dev' hypothesis profile each run draws new programs).
EXAMPLES = int(os.environ.get("NEEDLE_RANDOM_PROGRAMS", 14))

UNARY = [
    nnp.tanh,
    lambda x: nnp.sqrt(nnp.abs(x) + 0.25),
    lambda x: nnp.exp(nnp.tanh(x)),
    nnp.sin,
    nnp.square,
    lambda x: nnp.log1p(nnp.abs(x)),
]
BINARY = [nnp.add, nnp.subtract, nnp.multiply, nnp.maximum,
          lambda x, y: x / (nnp.abs(y) + 1.0)]
REDUCE = [nnp.sum, nnp.max, nnp.mean, nnp.min]


def _axis(x, k):
    """A reduction axis of x drawn from k: an axis, two axes, or all (None)."""
    nd = nnp.ndim(x)
    if k % 5 == 4 or nd == 1:
        return None
    if k % 5 == 3 and nd >= 2:
        return (k % nd, (k + 1) % nd)
    return k % nd


def _perm(nd, k):
    """A permutation of nd axes other than the identity, drawn from k."""
    perms = list(itertools.permutations(range(nd)))[1:]
    return perms[k % len(perms)]


def build(ops, n_out):
    """A function of the inputs applying `ops` to a growing pool of values;
    it returns the last `n_out` values."""
    def f(*xs):
        pool = list(xs)
        for kind, i, j in ops:
            x, y = pool[i % len(pool)], pool[j % len(pool)]
            nd = nnp.ndim(x)
            if kind == "unary":
                pool.append(UNARY[j % len(UNARY)](x))
            elif kind == "binary" and broadcastable(x, y):
                pool.append(BINARY[(i + j) % len(BINARY)](x, y))
            elif kind == "reduce" and nd:
                pool.append(REDUCE[j % 4](x, axis=_axis(x, j), keepdims=bool(i % 2)))
            elif kind == "center" and nd:          # broadcast back over the reduced axes
                ax = _axis(x, j)
                pool.append(x - REDUCE[j % 4](x, axis=ax, keepdims=True))
            elif kind == "normalize" and nd:       # a row sum of exp beside its rows
                e = nnp.exp(nnp.tanh(x))
                pool.append(e / nnp.sum(e, axis=-1, keepdims=True))
            elif kind == "softmax" and nd:
                pool.append(nnn.softmax(x, axis=j % nd))
            elif kind == "expand":
                pool.append(nnp.expand_dims(x, j % (nd + 1)) * 0.5)
            elif kind == "transpose" and nd >= 2:
                pool.append(nnp.transpose(x, _perm(nd, j)))
            elif kind == "layout" and nd >= 2:     # a layer in another layout, then back
                p = _perm(nd, j)
                t = nnp.transpose(x, p)
                u = nnp.maximum(t, 0.0) * UNARY[i % len(UNARY)](t) + 0.5
                if broadcastable(u, y) and np.broadcast_shapes(nnp.shape(u), nnp.shape(y)) \
                        == nnp.shape(u):
                    u = BINARY[i % len(BINARY)](u, y)
                u = u - REDUCE[(i + j) % 4](t, axis=_axis(t, i), keepdims=True)
                pool.append(nnp.transpose(u, tuple(np.argsort(p))))
            elif kind == "matmul" and nd:          # by a constant (K, N): BLAS or the small-
                k, n = nnp.shape(x)[-1], 8 + 8 * (j % 2)    # product kernel (gemm.py)
                w = ((np.arange(k * n).reshape(k, n) * (i % 5 + 1)) % 7 - 3) * 0.2
                pool.append(nnp.matmul(x, w.astype(np.dtype(x.dtype))))
            elif kind == "conv" and nd == 3:       # (batch, length, channels): a 1-d conv
                c, n, kk = nnp.shape(x)[-1], 1 + j % 9, 1 + i % 3
                w = ((np.arange(kk * c * n).reshape(kk, c, n) * (j % 5 + 1)) % 5 - 2) * 0.3
                pool.append(nnn.conv(x, w.astype(np.dtype(x.dtype)), padding="SAME"))
            elif kind == "sumsq" and nd:           # reduce, then square, then reduce again
                v = nnp.sum(nnp.sqrt(nnp.abs(x) + 0.25), axis=-1)
                pool.append(nnp.sum(v * v) * 0.96 + nnp.mean(v))
        return tuple(pool[-1 - k] for k in range(min(n_out, len(pool) - len(xs)) or 1))
    return f


@st.composite
def programs(draw):
    nd = draw(st.integers(1, 3))
    shape = tuple(draw(st.sampled_from([1, 1, 2, 3])) for _ in range(nd))
    # the second input broadcasts against the first: some axes squeezed to 1
    second = tuple(1 if draw(st.booleans()) else n for n in shape)
    in_shapes = [shape] + ([second] if draw(st.booleans()) else [])
    kinds = ["unary", "binary", "reduce", "center", "normalize", "softmax", "expand", "sumsq",
             "transpose", "layout", "matmul", "conv"]
    ops = [(draw(st.sampled_from(kinds)), draw(st.integers(0, 1000)), draw(st.integers(0, 1000)))
           for _ in range(draw(st.integers(1, 6)))]
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return in_shapes, ops, draw(st.integers(1, 2)), dtype


def _args(in_shapes, dtype, seed):
    r = np.random.default_rng(seed)
    return [r.standard_normal(s).astype(dtype) for s in in_shapes]


def _tol(dtype):
    return dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)


def _check(got, want, dtype):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.shape(g) == np.shape(w)
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), **_tol(dtype))


@pytest.mark.on_device
@settings(max_examples=EXAMPLES)
@given(programs(), st.integers(0, 2**31 - 1))
def test_values_match_interpreter(prog, seed):
    in_shapes, ops, n_out, dtype = prog
    args = _args(in_shapes, dtype, seed)
    f = build(ops, n_out)
    cg = needle.make_ir(f)(*args)
    want = run_numpy(cg.graph, cg.consts, args)
    _check(jit(f)(*args), want, dtype)
    _check(f(*args), want, dtype)


def _loss(f):
    """A scalar of all of f's results, each weighted differently."""
    def loss(*xs):
        return sum(nnp.sum(o * (0.5 + 0.25 * k)) for k, o in enumerate(f(*xs)))
    return loss


@pytest.mark.on_device
@settings(max_examples=EXAMPLES)
@given(programs(), st.integers(0, 2**31 - 1))
def test_gradients_match_interpreter_and_finite_differences(prog, seed):
    in_shapes, ops, n_out, dtype = prog
    args = _args(in_shapes, dtype, seed)
    loss = _loss(build(ops, n_out))
    argnums = tuple(range(len(args)))
    g = needle.grad(loss, argnums=argnums)
    cg = needle.make_ir(g)(*args)
    want = run_numpy(cg.graph, cg.consts, args)
    _check(jit(g)(*args), want, dtype)
    _check(g(*args), want, dtype)
    # The gradient itself, in float64, by central differences on the first input.
    wide = [a.astype(np.float64) for a in args]
    cl = needle.make_ir(loss)(*wide)
    cg64 = needle.make_ir(g)(*wide)
    g64 = run_numpy(cg64.graph, cg64.consts, wide)

    def value(xs):
        return float(run_numpy(cl.graph, cl.consts, xs)[0])
    eps = 1e-6
    x0 = wide[0]
    for k in range(min(x0.size, 6)):
        plus, minus = [w.copy() for w in wide], [w.copy() for w in wide]
        plus[0].flat[k] += eps
        minus[0].flat[k] -= eps
        fd = (value(plus) - value(minus)) / (2 * eps)
        np.testing.assert_allclose(g64[0].flat[k], fd, rtol=1e-4, atol=1e-6)


def test_reduced_size1_axis_output_cache_regression():
    """Issue 9.1: a fused backward kernel read the output cache (sqrt(...)
    left in its output by the row sum's loop) when the store had not been
    emitted: the row sum read the size-1 axis as index 0. [inf, -inf, inf]."""
    b = np.array([[[0.3], [-1.2], [0.7]]])

    def f(b):
        v2 = nnp.sqrt(nnp.abs(b) + 0.25)
        v4 = nnp.sum(v2, axis=2)
        return nnp.sum(v4 * v4) * 0.96 + nnp.mean(v4)
    v = np.sqrt(np.abs(b) + 0.25)
    want = np.sign(b) / (2 * v) * (2 * 0.96 * v + 1 / 3)
    np.testing.assert_allclose(needle.jit(needle.grad(f))(b), want, rtol=1e-12)
    np.testing.assert_allclose(needle.grad(f)(b), want, rtol=1e-12)


def test_min_gradient_mask_sees_the_bits_the_reduction_saw():
    # Regression (found by the random-program hunt): reduce_min's gradient
    # mask eq(q, broadcast(min(q))) with q = x / sum(x) recomputed in four
    # loop nests of one fastmath kernel; LLVM rounded one copy differently,
    # the mask missed the minimum and the first row's gradient was wrong.
    # Now q is stored once (passes/exact_compare.py).
    prog = ([(1, 2, 3), (1, 2, 3)],
            [("normalize", 0, 0), ("unary", 0, 0), ("unary", 0, 0), ("layout", 202, 1)],
            1, np.float32)
    in_shapes, ops, n_out, dtype = prog
    args = _args(in_shapes, dtype, 0)
    g = needle.grad(_loss(build(ops, n_out)), argnums=(0, 1))
    cg = needle.make_ir(g)(*args)
    want = run_numpy(cg.graph, cg.consts, args)
    _check(needle.jit(g)(*args), want, dtype)
