"""needle.lax's non-loop names against numpy references written with JAX's
rules (a negative start counts from the end, then every start is clamped so
the window fits): eagerly and under jit with traced starts, and gradients by
float64 central differences."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import needle
import needle.numpy as nnp
from needle import lax

from helpers import jit, shapes

rng = np.random.default_rng(0)


def _clamp(starts, sizes, shape):
    return [min(max(s + d if s < 0 else s, 0), d - n) for s, n, d in zip(starts, sizes, shape)]


def ref_slice(x, starts, sizes):
    st_ = _clamp(starts, sizes, x.shape)
    return x[tuple(slice(s, s + n) for s, n in zip(st_, sizes))]


def ref_update(x, u, starts):
    st_ = _clamp(starts, u.shape, x.shape)
    out = x.copy()
    out[tuple(slice(s, s + n) for s, n in zip(st_, u.shape))] = u
    return out


@st.composite
def windows(draw):
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=5))
    sizes = [draw(st.integers(0, d)) for d in shape]
    starts = [draw(st.integers(-d - 2, d + 2)) for d in shape]
    return shape, sizes, starts


@pytest.mark.on_device
@given(windows())
def test_dynamic_slice_and_update_match_numpy(w):
    shape, sizes, starts = w
    x = rng.standard_normal(shape)
    u = rng.standard_normal(sizes)
    want_s, want_u = ref_slice(x, starts, sizes), ref_update(x, u, starts)
    np.testing.assert_array_equal(lax.dynamic_slice(x, starts, sizes), want_s)
    np.testing.assert_array_equal(lax.dynamic_update_slice(x, u, starts), want_u)
    ds = jit(lambda x, *s: lax.dynamic_slice(x, s, sizes))
    du = jit(lambda x, u, *s: lax.dynamic_update_slice(x, u, s))
    traced = [np.int32(s) for s in starts]          # traced starts under jit
    np.testing.assert_array_equal(ds(x, *traced), want_s)
    np.testing.assert_array_equal(du(x, u, *traced), want_u)


@pytest.mark.on_device
def test_index_and_in_dim_helpers():
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(lax.dynamic_index_in_dim(x, 1, axis=1, keepdims=False),
                                  x[:, 1])
    np.testing.assert_array_equal(lax.dynamic_index_in_dim(x, -1), x[2:3])
    f = jit(lambda x, i: lax.dynamic_index_in_dim(x, i, axis=0, keepdims=False))
    np.testing.assert_array_equal(f(x, np.int64(5)), x[2])      # clamped
    np.testing.assert_array_equal(lax.dynamic_slice_in_dim(np.arange(5), 4, 3), [2, 3, 4])
    np.testing.assert_array_equal(
        lax.dynamic_update_slice_in_dim(np.zeros(6), np.ones(3), 5, axis=0),
        [0, 0, 0, 1, 1, 1])


def test_gradients_by_finite_differences():
    x = rng.standard_normal((4, 5))
    u = rng.standard_normal((2, 3))
    w = rng.standard_normal((4, 5))

    def loss(x, u, i, j):
        y = lax.dynamic_update_slice(x * x, nnp.sin(u), (i, j))
        return nnp.sum(y * w) + nnp.sum(lax.dynamic_slice(y, (j, i), (2, 2)) ** 2)
    i, j = np.int32(1), np.int32(3)
    gx, gu = needle.jit(needle.grad(loss, argnums=(0, 1)))(x, u, i, j)
    eps = 1e-6
    for arr, g, k in ((x, gx, 0), (u, gu, 1)):
        for idx in np.ndindex(arr.shape):
            args = [x.copy(), u.copy()]
            args[k][idx] += eps
            plus = float(loss(*args, int(i), int(j)))
            args[k][idx] -= 2 * eps
            minus = float(loss(*args, int(i), int(j)))
            np.testing.assert_allclose(g[idx], (plus - minus) / (2 * eps), rtol=1e-5,
                                       atol=1e-7)


def test_select_and_stop_gradient():
    p = np.array([True, False, True])
    a, b = np.arange(3.0), -np.arange(3.0)
    np.testing.assert_array_equal(lax.select(p, a, b), np.where(p, a, b))
    np.testing.assert_array_equal(needle.jit(lax.select)(p, a, b), np.where(p, a, b))
    with pytest.raises(TypeError, match="pred must be boolean"):
        lax.select(a, a, b)
    with pytest.raises(TypeError, match="one shape and dtype"):
        lax.select(p, a, b.astype(np.float32))
    g = needle.grad(lambda x: nnp.sum(x * lax.stop_gradient(x)))(a)
    np.testing.assert_array_equal(g, a)


def test_errors_name_the_function_and_shapes():
    x = np.zeros((3, 4))
    with pytest.raises(TypeError, match=r"lax.dynamic_slice: size 5 of axis 1 must be in \[0, 4\]"):
        lax.dynamic_slice(x, (0, 0), (1, 5))
    with pytest.raises(TypeError, match="needs 2 start indices"):
        lax.dynamic_slice(x, (0,), (1,))
    with pytest.raises(TypeError, match="scalar integer"):
        lax.dynamic_slice(x, (0.5, 0), (1, 1))
    with pytest.raises(TypeError, match="rank and dtype"):
        lax.dynamic_update_slice(x, np.zeros((1, 1), np.float32), (0, 0))


def test_vmap_over_start_indices():
    x = np.arange(10.0)
    got = needle.vmap(lambda i: lax.dynamic_slice(x, (i,), (3,)))(np.array([0, 4, 9, -2]))
    np.testing.assert_array_equal(got, [ref_slice(x, [i], [3]) for i in (0, 4, 9, -2)])
    upd = needle.jit(needle.vmap(lambda u, i: lax.dynamic_update_slice(x, u, (i,))))
    u = np.array([[10.0, 11.0], [12.0, 13.0]])
    np.testing.assert_array_equal(upd(u, np.array([1, 8])),
                                  [ref_update(x, u[0], [1]), ref_update(x, u[1], [8])])
