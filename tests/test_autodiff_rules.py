"""Autodiff rules: the derivative of every differentiable primitive and of the
needle.numpy / needle.nn functions, against central finite differences in
float64 on hypothesis-drawn shapes, and JVP / VJP agreement
(<vjp(ct), t> == <ct, jvp(t)>). Inputs are drawn away from kinks.

Everything runs eagerly (the transformations trace, differentiate and run
the result with numpy), so no kernel is compiled here.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import needle
import needle.numpy as nnp
from needle import nn
from needle.ir import check_graph
from needle.passes.autodiff import linearize
from needle.ir.primitives import (BINARY, UNARY, broadcast_in_dim_p, concatenate_p,
                                  convert_element_type_p, cumsum_p, dot_general_p, gather_p,
                                  integer_pow_p, pad_p, reduce_max_p, reduce_min_p,
                                  reduce_prod_p, reduce_sum_p, reshape_p, rev_p, scatter_add_p,
                                  scatter_max_p, scatter_min_p, scatter_mul_p, scatter_p,
                                  select_p, slice_p, transpose_p)

from helpers import jit, shapes

pytestmark = pytest.mark.on_device      # also run on $NEEDLE_TEST_DEVICE (conftest.py)

EPS = 1e-6


def _vdot(a, b):
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


def check_grads(f, *args, rtol=1e-6, atol=1e-8, seed=0):
    """vjp and jvp of f at args (float64 arrays) against central differences
    along a random direction, plus <vjp(ct), t> == <ct, jvp(t)>."""
    rng = np.random.default_rng(seed)
    args = [np.asarray(a, np.float64) for a in args]
    out, vjp_fn = needle.vjp(f, *args)
    out = np.asarray(out)
    ct = rng.standard_normal(out.shape)
    cts = vjp_fn(ct)
    assert len(cts) == len(args)
    ts = [rng.standard_normal(a.shape) for a in args]
    plus = np.asarray(f(*[a + EPS * t for a, t in zip(args, ts)]), np.float64)
    minus = np.asarray(f(*[a - EPS * t for a, t in zip(args, ts)]), np.float64)
    fd = (plus - minus) / (2 * EPS)
    out2, tout = needle.jvp(f, tuple(args), tuple(ts))
    np.testing.assert_allclose(out2, out, rtol=1e-12, atol=1e-12)
    scale = 1 + np.max(np.abs(fd), initial=0)
    np.testing.assert_allclose(tout, fd, rtol=rtol * 10, atol=atol + 1e-6 * scale)
    lhs = sum(_vdot(c, t) for c, t in zip(cts, ts))
    np.testing.assert_allclose(lhs, _vdot(ct, fd), rtol=1e-5, atol=1e-6 * scale * (1 + ct.size))
    np.testing.assert_allclose(lhs, _vdot(ct, tout), rtol=1e-10, atol=1e-10 * (1 + ct.size))
    for c, a in zip(cts, args):
        assert np.shape(c) == a.shape and np.asarray(c).dtype == np.float64
    # the same VJP compiled for the test device (helpers.DEVICE) agrees
    compiled = jit(lambda ct, *a: needle.vjp(f, *a)[1](ct))(ct, *args)
    for c, got in zip(cts, compiled):
        np.testing.assert_allclose(got, c, rtol=1e-9, atol=1e-12 * scale * (1 + ct.size))


# Inputs: "any" in [-2, 2]; "pos" in [0.5, 2]; "nz" away from 0; "unit" in (-0.9, 0.9).
def _draw(rng, shape, kind="any"):
    if kind == "pos":
        return rng.uniform(0.5, 2.0, shape)
    if kind == "nz":
        return rng.choice([-1, 1], shape) * rng.uniform(0.3, 2.0, shape)
    if kind == "unit":
        return rng.uniform(-0.9, 0.9, shape)
    return rng.uniform(-2.0, 2.0, shape)


U, B = UNARY, BINARY
UNARY_CASES = {"neg": "any", "exp": "any", "log": "pos", "log1p": "pos", "expm1": "any",
               "sin": "any", "cos": "any", "tan": "unit", "tanh": "any", "logistic": "any",
               "sqrt": "pos", "rsqrt": "pos", "abs": "nz", "erf": "any"}


@pytest.mark.parametrize("name", sorted(UNARY_CASES))
@given(shape=shapes(max_dims=2), seed=st.integers(0, 2**16))
def test_unary(name, shape, seed):
    x = _draw(np.random.default_rng(seed), shape, UNARY_CASES[name])
    check_grads(lambda x: U[name].bind(x), x, seed=seed)


@pytest.mark.parametrize("y", [0, 1, 2, 3, -2])
@given(shape=shapes(max_dims=2), seed=st.integers(0, 2**16))
def test_integer_pow(y, shape, seed):
    x = _draw(np.random.default_rng(seed), shape, "nz")
    check_grads(lambda x: integer_pow_p.bind(x, y=y), x, seed=seed)


def _binary_inputs(name, rng, shape):
    if name == "div":
        return _draw(rng, shape), _draw(rng, shape, "nz")
    if name == "pow":
        return _draw(rng, shape, "pos"), _draw(rng, shape)
    if name == "rem":
        y = _draw(rng, shape, "nz")
        k = rng.integers(-2, 3, shape)
        return (k + rng.uniform(0.1, 0.9, shape)) * y, y
    if name in ("max", "min"):
        x = _draw(rng, shape)
        return x, x + rng.choice([-1, 1], shape) * rng.uniform(0.2, 1.0, shape)
    if name == "atan2":
        return _draw(rng, shape, "nz"), _draw(rng, shape, "nz")
    return _draw(rng, shape), _draw(rng, shape)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "rem", "pow", "max", "min",
                                  "atan2"])
@given(shape=shapes(max_dims=2), seed=st.integers(0, 2**16), scalar=st.sampled_from(
    [None, 0, 1]))
def test_binary(name, shape, seed, scalar):
    x, y = _binary_inputs(name, np.random.default_rng(seed), shape)
    if scalar is not None:              # a 0-d operand beside a full one (lax-style)
        if scalar == 0:
            x = x.reshape(-1)[:1].reshape(())
        else:
            y = y.reshape(-1)[:1].reshape(())
        if name in ("max", "min") and np.any(np.abs(x - y) < 0.1):
            return
        if name == "rem" and np.any(np.abs(x / y - np.round(x / y)) < 0.05):
            return
    check_grads(lambda x, y: B[name].bind(x, y), x, y, seed=seed)


def test_max_min_ties_split_evenly():
    x = np.array([1.0, 2.0, 3.0])
    gx, gy = needle.grad(lambda x, y: nnp.sum(nnp.maximum(x, y)), argnums=(0, 1))(x, x)
    np.testing.assert_array_equal(gx, [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(gy, [0.5, 0.5, 0.5])
    g = needle.grad(lambda x: nnp.max(x))(np.array([1.0, 3.0, 3.0]))
    np.testing.assert_array_equal(g, [0.0, 0.5, 0.5])
    g = needle.grad(lambda x: nnp.min(x))(np.array([1.0, 3.0, 1.0]))
    np.testing.assert_array_equal(g, [0.5, 0.0, 0.5])


@given(shape=shapes(max_dims=2), seed=st.integers(0, 2**16))
def test_select(shape, seed):
    rng = np.random.default_rng(seed)
    p = rng.random(shape) < 0.5
    check_grads(lambda x, y: select_p.bind(p, x, y), _draw(rng, shape), _draw(rng, shape))


def test_convert_element_type():
    f = lambda x: nnp.sum(convert_element_type_p.bind(x, new_dtype=np.dtype(np.float32)) * 3)
    g = needle.grad(f)(np.arange(3.0))
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, [3.0, 3.0, 3.0])
    check_grads(lambda x: convert_element_type_p.bind(x, new_dtype=np.dtype(np.float64)),
                np.arange(3.0))
    # Through an integer the derivative is zero.
    g = needle.grad(lambda x: nnp.sum(nnp.astype(nnp.astype(x, np.int32), np.float64)))(
        np.array([1.5, 2.5]))
    np.testing.assert_array_equal(g, [0.0, 0.0])


def test_not_differentiable_primitives_give_zero():
    x = np.array([0.3, -1.7, 2.2])
    for f in [nnp.sign, nnp.floor, nnp.ceil, nnp.round]:
        np.testing.assert_array_equal(needle.grad(lambda x: nnp.sum(f(x) * x))(x), f(x))
    g = needle.grad(lambda x: nnp.sum(nnp.where(x > 0, x, 0.0) + nnp.argmax(x)))(x)
    np.testing.assert_array_equal(g, [1.0, 0.0, 1.0])


# --- structural ----------------------------------------------------------------------

@given(shape=shapes(max_dims=3), seed=st.integers(0, 2**16))
def test_structural(shape, seed):
    rng = np.random.default_rng(seed)
    x = _draw(rng, shape)
    nd = len(shape)
    perm = tuple(rng.permutation(nd))
    check_grads(lambda x: transpose_p.bind(x, permutation=perm), x, seed=seed)
    check_grads(lambda x: reshape_p.bind(x, new_sizes=(x.size,)), x, seed=seed)
    target = (2,) + tuple(n if rng.random() < 0.5 else n for n in shape)
    check_grads(lambda x: broadcast_in_dim_p.bind(
        x, shape=target, broadcast_dimensions=tuple(range(1, nd + 1))), x, seed=seed)
    ones = tuple(1 if rng.random() < 0.5 else n for n in shape)
    check_grads(lambda x: nnp.broadcast_to(x, shape), _draw(rng, ones), seed=seed)
    dims = tuple(d for d in range(nd) if rng.random() < 0.5)
    check_grads(lambda x: rev_p.bind(x, dimensions=dims), x, seed=seed)
    if nd:
        start = tuple(int(rng.integers(0, n)) for n in shape)
        limit = tuple(int(rng.integers(s + 1, n + 1)) for s, n in zip(start, shape))
        strides = tuple(int(rng.integers(1, 3)) for _ in shape)
        check_grads(lambda x: slice_p.bind(x, start_indices=start, limit_indices=limit,
                                           strides=strides), x, seed=seed)
        config = tuple((int(rng.integers(0, 2)), int(rng.integers(0, 2)),
                        int(rng.integers(0, 2))) for _ in shape)
        check_grads(lambda x, v: pad_p.bind(x, v, padding_config=config), x,
                    np.array(0.7), seed=seed)
        ax = int(rng.integers(0, nd))
        other = list(shape)
        other[ax] = int(rng.integers(1, 3))
        check_grads(lambda x, y: concatenate_p.bind(x, y, x, dimension=ax), x,
                    _draw(rng, tuple(other)), seed=seed)
        check_grads(lambda x: cumsum_p.bind(x, axis=ax, reverse=False), x, seed=seed)
        check_grads(lambda x: cumsum_p.bind(x, axis=ax, reverse=True), x, seed=seed)


@given(shape=shapes(min_dims=1, max_dims=3), seed=st.integers(0, 2**16))
def test_reductions(shape, seed):
    rng = np.random.default_rng(seed)
    nd = len(shape)
    axes = tuple(d for d in range(nd) if rng.random() < 0.6) or (0,)
    x = _draw(rng, shape)
    check_grads(lambda x: reduce_sum_p.bind(x, axes=axes), x, seed=seed)
    check_grads(lambda x: reduce_max_p.bind(x, axes=axes), x, seed=seed)   # distinct values
    check_grads(lambda x: reduce_min_p.bind(x, axes=axes), x, seed=seed)
    check_grads(lambda x: reduce_prod_p.bind(x, axes=axes), _draw(rng, shape, "nz"), seed=seed)


def test_reduce_prod_with_zeros():
    f = lambda x: nnp.prod(x, axis=1)
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.0, 2.0, 4.0]])
    _, vjp_fn = needle.vjp(f, x)
    (g,) = vjp_fn(np.ones(3))
    np.testing.assert_array_equal(g, [[0.0, 6.0, 0.0], [0.0, 0.0, 0.0], [8.0, 4.0, 2.0]])


DOT_CASES = [
    ((3, 4), (4, 5), (((1,), (0,)), ((), ()))),             # matmul
    ((4,), (4,), (((0,), (0,)), ((), ()))),                  # inner
    ((3,), (2,), (((), ()), ((), ()))),                      # outer
    ((2, 3, 4), (2, 4, 5), (((2,), (1,)), ((0,), (0,)))),    # batched matmul
    ((2, 3, 4), (4, 2, 3), (((1, 2), (2, 0)), ((0,), (1,)))),  # permuted contraction
    ((4, 3), (5, 4), (((0,), (1,)), ((), ()))),              # x^T y^T
]


@pytest.mark.parametrize("sa,sb,dn", DOT_CASES)
def test_dot_general(sa, sb, dn):
    rng = np.random.default_rng(0)
    check_grads(lambda a, b: dot_general_p.bind(a, b, dimension_numbers=dn),
                _draw(rng, sa), _draw(rng, sb))


@given(shape=shapes(min_dims=1, max_dims=3), seed=st.integers(0, 2**16))
def test_gather_scatter(shape, seed):
    rng = np.random.default_rng(seed)
    nd = len(shape)
    ax = int(rng.integers(0, nd))
    n = shape[ax]
    # (0-d indices are left out: gather's numpy impl returns shape (1,) for them.)
    idx = rng.integers(-n, n, size=tuple(rng.integers(1, 4, size=int(rng.integers(1, 3)))))
    x = _draw(rng, shape)
    check_grads(lambda x: gather_p.bind(x, idx, axis=ax), x, seed=seed)
    ushape = shape[:ax] + idx.shape + shape[ax + 1:]
    u = _draw(rng, ushape)
    check_grads(lambda x, u: scatter_add_p.bind(x, idx, u, axis=ax), x, u, seed=seed)
    # scatter with repeated indices: only the last write to a position counts.
    check_grads(lambda x, u: scatter_p.bind(x, idx, u, axis=ax), x, u, seed=seed)
    # every update of a repeated index counts (products of the others, ties
    # of min / max are away: the values are distinct almost surely)
    check_grads(lambda x, u: scatter_mul_p.bind(x, idx, u, axis=ax), x, u, seed=seed)
    check_grads(lambda x, u: scatter_min_p.bind(x, idx, u, axis=ax), x, u, seed=seed)
    check_grads(lambda x, u: scatter_max_p.bind(x, idx, u, axis=ax), x, u, seed=seed)


def test_scatter_mul_with_zero_updates_and_extremum_ties():
    # d/du_j of x * prod(u) is x times the product of the others, also when
    # some updates are 0 (one zero: only it has a derivative; two: none has)
    x = np.array([2.0, 3.0, -1.5])
    idx = np.array([0, 0, 0, 1, 1, 2])
    u = np.array([0.0, 1.5, -2.0, 0.0, 0.0, 0.7])
    _, vjp_fn = needle.vjp(lambda x, u: scatter_mul_p.bind(x, idx, u, axis=0), x, u)
    ct_x, ct_u = vjp_fn(np.array([1.0, 10.0, 100.0]))
    np.testing.assert_allclose(ct_x, [0.0, 0.0, 70.0])
    np.testing.assert_allclose(ct_u, [2 * 1.5 * -2.0, 0, 0, 0, 0, 100 * -1.5])
    check_grads(lambda x, u: scatter_mul_p.bind(x, idx, u, axis=0), x, u)
    # a tie between the operand and an update of max splits the derivative
    _, vjp_fn = needle.vjp(lambda x, u: scatter_max_p.bind(x, np.array([0, 0]), u, axis=0),
                           np.array([1.0, 5.0]), np.array([1.0, 0.5]))
    ct_x, ct_u = vjp_fn(np.array([1.0, 1.0]))
    np.testing.assert_allclose(ct_x, [0.5, 1.0])
    np.testing.assert_allclose(ct_u, [0.5, 0.0])


def test_scatter_duplicate_indices_last_write_wins():
    idx = np.array([1, 1, 0])
    f = lambda u: scatter_p.bind(np.zeros(3), idx, u, axis=0)
    _, vjp_fn = needle.vjp(f, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(vjp_fn(np.array([10.0, 20.0, 30.0]))[0], [0.0, 20.0, 10.0])


# --- needle.numpy and needle.nn functions ----------------------------------------------

NNP_UNARY = {
    "square": (nnp.square, "any"), "reciprocal": (nnp.reciprocal, "nz"),
    "sinh": (nnp.sinh, "any"), "cosh": (nnp.cosh, "any"), "log2": (nnp.log2, "pos"),
    "log10": (nnp.log10, "pos"), "exp2": (nnp.exp2, "any"), "sigmoid": (nnp.sigmoid, "any"),
    "mean": (lambda x: nnp.mean(x, axis=-1), "any"), "var": (lambda x: nnp.var(x), "any"),
    "std": (lambda x: nnp.std(x, axis=0), "any"),
    "sum_keepdims": (lambda x: nnp.sum(x, axis=0, keepdims=True), "any"),
    "max": (lambda x: nnp.max(x, axis=-1), "any"), "min": (lambda x: nnp.amin(x), "any"),
    "prod": (lambda x: nnp.prod(x, axis=0), "nz"), "cumsum": (nnp.cumsum, "any"),
    "clip": (lambda x: nnp.clip(x, -1.0, 1.0), "any"), "abs": (nnp.abs, "nz"),
    "power": (lambda x: nnp.power(x, 2.5), "pos"), "flip": (nnp.flip, "any"),
    "transpose": (nnp.transpose, "any"), "ravel": (nnp.ravel, "any"),
    "expand_squeeze": (lambda x: nnp.squeeze(nnp.expand_dims(x, 0), 0), "any"),
    "tile": (lambda x: nnp.tile(x, 2), "any"), "repeat": (lambda x: nnp.repeat(x, 2), "any"),
    "stack": (lambda x: nnp.stack([x, 2 * x]), "any"),
    "pad": (lambda x: nnp.pad(x, 1, constant_values=1.5), "any"),
    "getitem": (lambda x: x[..., ::-1][..., :2], "any"),
    "at_set": (lambda x: nnp.at(x)[..., :1].set(3.0) * x, "any"),
    "at_add": (lambda x: nnp.at(x)[..., :1].add(x[..., -1:]), "any"),
    "at_mul": (lambda x: nnp.at(x)[..., 1:].mul(x[..., :-1]), "any"),
    "take": (lambda x: nnp.take(x, np.array([0, 0, -1])), "any"),
    "relu": (nn.relu, "nz"), "relu6": (lambda x: nn.relu6(3 * x), "nz"),
    "gelu_tanh": (nn.gelu, "any"), "gelu_erf": (lambda x: nn.gelu(x, approximate=False), "any"),
    "silu": (nn.silu, "any"), "softplus": (nn.softplus, "any"),
    "leaky_relu": (nn.leaky_relu, "nz"), "elu": (nn.elu, "nz"),
    "logsumexp": (nn.logsumexp, "any"),
    "logsumexp_axis": (lambda x: nn.logsumexp(x, axis=-1, keepdims=True), "any"),
    "softmax": (nn.softmax, "any"), "log_softmax": (nn.log_softmax, "any"),
    "standardize": (nn.standardize, "any"),
}


@pytest.mark.parametrize("name", sorted(NNP_UNARY))
@given(shape=shapes(min_dims=1, max_dims=2, min_side=2), seed=st.integers(0, 2**16))
def test_numpy_and_nn_functions(name, shape, seed):
    fn, kind = NNP_UNARY[name]
    x = _draw(np.random.default_rng(seed), shape, kind)
    if name == "relu6" and np.any(np.abs(3 * x - 6) < 0.1):
        return
    check_grads(fn, x, seed=seed, rtol=1e-5)


@given(seed=st.integers(0, 2**16), n=st.integers(1, 4))
def test_numpy_binary_functions(seed, n):
    rng = np.random.default_rng(seed)
    a, b = _draw(rng, (n, 3)), _draw(rng, (3, 2))
    check_grads(nnp.matmul, a, b)
    check_grads(lambda a, b: nnp.einsum("ij,jk->ik", a, b), a, b)
    check_grads(lambda a, v: nnp.dot(a, v), a, _draw(rng, (3,)))
    check_grads(nnp.outer, _draw(rng, (n,)), _draw(rng, (3,)))
    check_grads(nnp.logaddexp, _draw(rng, (n,)), _draw(rng, (n,)))
    check_grads(nnp.arctan2, _draw(rng, (n,), "nz"), _draw(rng, (n,), "nz"))
    check_grads(lambda x, y: nnp.where(x > 0, x * y, y), _draw(rng, (n, 3), "nz"),
                _draw(rng, (n, 3)))
    check_grads(lambda x, y: x / y + x * 2.0 - y ** 2, _draw(rng, (n, 3)),
                _draw(rng, (3,), "nz"))       # numpy broadcasting inserts broadcast_in_dim
    idx = rng.integers(0, 3, size=(n, 1))
    check_grads(lambda x: nnp.take_along_axis(x, idx, axis=1), _draw(rng, (n, 3)))
    labels = nn.one_hot(rng.integers(0, 3, size=n), 3, dtype=np.float64)
    check_grads(lambda w, x: -nnp.mean(nn.log_softmax(x @ w) * labels), _draw(rng, (4, 3)),
                _draw(rng, (n, 4)))


def test_backward_graphs_check():
    """The programs the transformations build pass check_graph."""
    x = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    fns = [lambda x: nnp.sum(nn.softmax(x) * x), lambda x: nnp.sum(nnp.tanh(x @ x.T)),
           lambda x: nnp.max(x) * nnp.prod(x[0])]
    for f in fns:
        check_graph(needle.make_ir(needle.grad(f))(x).graph)
        check_graph(needle.make_ir(needle.hessian(f))(x).graph)
        traced = needle.make_ir(f)(x)
        lin = linearize(traced, [True])
        for part in (lin.primal, lin.forward, lin.backward):
            check_graph(part.graph)
