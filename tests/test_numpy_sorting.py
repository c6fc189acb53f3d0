"""Differential tests: sorting and searching (needle.numpy sort, argsort,
partition, argpartition, searchsorted, cumprod; needle.lax top_k, sort,
sort_key_val, cumsum / cumprod / cummax / cummin), the functions with
data-dependent shapes (nonzero, flatnonzero, argwhere, unique, where(cond),
with JAX's size= / fill_value=) and the callable scalar types
(`nnp.float32(x)`), against numpy, eagerly and under needle.jit, on
hypothesis-drawn shapes, axes and dtypes with ties and NaNs (NaN sorts
last, equal elements keep their order); gradients against float64 central
differences; vmap.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import needle
import needle.numpy as nnp
from needle import lax
from helpers import MODES, arrays, assert_close, jit, run, shapes

pytestmark = pytest.mark.on_device      # also run on $NEEDLE_TEST_DEVICE (conftest.py)

F32, F64, I32, I64, B = (np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64,
                                               np.bool_))
rng = np.random.default_rng(0)


def tied(data, dt, shape, nan=False):
    """Values in a small range (many ties), with NaNs and -0.0 among floats."""
    x = data.draw(arrays(I64, shape, -2, 2)).astype(dt)
    if dt.kind == "f" and x.size:
        flags = data.draw(arrays(I64, shape, 0, 5))
        x = np.where(flags == 0, -0.0, x).astype(dt)
        if nan:
            x = np.where(flags == 1, np.nan, x).astype(dt)
    return x


def _axis(data, nd):
    return data.draw(st.one_of(st.none(), st.integers(-nd, nd - 1)))


# --- sort / argsort ----------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_sort_argsort(mode, data):
    """Values as np.sort, indices as np.argsort(kind='stable') (int64), any
    axis (None: flattened), ties kept in order, NaN last."""
    # (fewer dtypes and ranks under jit: each new one compiles kernels)
    dt = data.draw(st.sampled_from([F32, F64, I32, I64, B] if mode == "eager" else [F32, B]))
    shape = data.draw(shapes(min_dims=1, max_dims=3 if mode == "eager" else 2, max_side=5))
    x = tied(data, dt, shape, nan=True)
    axis = _axis(data, len(shape))
    s, a = run(lambda x: (nnp.sort(x, axis=axis), nnp.argsort(x, axis=axis)), (x,), mode)
    assert_close(s, np.sort(x, axis=axis), dt)
    assert np.asarray(a).dtype == I64
    np.testing.assert_array_equal(a, np.argsort(x, axis=axis, kind="stable"))


SPECIAL = np.array([[2.0, np.nan, -0.0, 0.0, np.inf, -np.inf, 2.0, np.nan, -1.0, 0.0],
                    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]], F32)


@pytest.mark.parametrize("mode", MODES)
def test_special_values_and_descending(mode):
    """NaN last (first when descending), -0.0 and 0.0 equal (kept in order),
    infinities in place; descending keeps equal elements in order (JAX)."""
    x = SPECIAL
    s, a, sd, ad = run(lambda x: (nnp.sort(x), nnp.argsort(x), nnp.sort(x, descending=True),
                                  nnp.argsort(x, descending=True)), (x,), mode)
    assert_close(s, np.sort(x), F32)
    np.testing.assert_array_equal(a, np.argsort(x, kind="stable"))
    assert_close(sd, np.sort(x)[:, ::-1], F32)
    key = np.where(np.isnan(x), -np.inf, -x)        # no +inf to tie with NaN in row 1
    np.testing.assert_array_equal(ad[1], np.argsort(key[1], kind="stable"))
    want0 = [1, 7, 4, 0, 6, 2, 3, 9, 8, 5]             # NaN, NaN, inf, 2, 2, -0, 0, 0, -1, -inf
    np.testing.assert_array_equal(ad[0], want0)


def test_sort_of_a_fused_producer_is_one_kernel():
    """The sort's operand is computed in the sort's own kernel (its row
    buffer), and argsort's iota is the permutation itself."""
    x = rng.standard_normal((3, 8)).astype(F32)
    f = needle.jit(lambda x: nnp.argsort(x * 2.0 + 1.0))
    assert f.lower(x).kernel_count == 1
    np.testing.assert_array_equal(f(x), np.argsort(x, kind="stable"))


def test_partition_loosely():
    """partition puts the kth element in its sorted place, nothing larger
    before it, nothing smaller after; argpartition indexes such an order."""
    x = rng.integers(-3, 4, (4, 9)).astype(F32)
    for kth in (0, 4, -1):
        for fn in (lambda x: nnp.partition(x, kth), lambda x: nnp.take_along_axis(
                x, nnp.argpartition(x, kth), axis=-1)):
            p = np.asarray(fn(x))
            k = kth % 9
            np.testing.assert_array_equal(p[:, k], np.sort(x)[:, k])
            assert np.all(p[:, :k] <= p[:, k:k + 1]) and np.all(p[:, k + 1:] >= p[:, k:k + 1])
    with pytest.raises(ValueError, match="kth"):
        nnp.partition(x, 9)


# --- lax: top_k, sort, sort_key_val ----------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_top_k(mode, data):
    """The k largest along the last axis, descending, int32 indices, ties by
    lower index (a stable argsort of -x)."""
    dt = data.draw(st.sampled_from([F32, F64, I32] if mode == "eager" else [F32, I32]))
    shape = data.draw(shapes(min_dims=1, max_dims=3 if mode == "eager" else 2, max_side=6))
    x = tied(data, dt, shape)
    k = data.draw(st.integers(0, shape[-1]))
    v, i = run(lambda x: lax.top_k(x, k), (x,), mode)
    want_i = np.argsort(-x.astype(F64), axis=-1, kind="stable")[..., :k]
    assert np.asarray(i).dtype == I32
    np.testing.assert_array_equal(i, want_i)
    assert_close(v, np.take_along_axis(x, want_i, axis=-1), dt)


def test_top_k_nan_first_and_errors():
    x = np.array([1.0, np.nan, 3.0, 3.0], F32)
    v, i = lax.top_k(x, 3)
    np.testing.assert_array_equal(i, [1, 2, 3])
    assert np.isnan(v[0]) and list(v[1:]) == [3.0, 3.0]
    with pytest.raises(ValueError, match="k=5"):
        lax.top_k(x, 5)


@pytest.mark.parametrize("mode", MODES)
def test_lax_sort_and_sort_key_val(mode):
    k = np.array([[3, 1, 2, 1], [0, 0, -1, 5]], I32)
    v = rng.standard_normal((2, 4)).astype(F32)
    sk, sv = run(lambda k, v: lax.sort_key_val(k, v), (k, v), mode)
    perm = np.argsort(k, axis=-1, kind="stable")
    np.testing.assert_array_equal(sk, np.sort(k))
    assert_close(sv, np.take_along_axis(v, perm, -1), F32)
    s0 = run(lambda v: lax.sort(v, dimension=0), (v,), mode)
    assert_close(s0, np.sort(v, axis=0), F32)


# --- searchsorted --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_searchsorted(mode, data):
    dt = data.draw(st.sampled_from([F32, F64, I32, I64] if mode == "eager" else [F32, I64]))
    n = data.draw(st.integers(0, 9))
    a = np.sort(tied(data, dt, (n,), nan=True))
    v = tied(data, dt, data.draw(shapes(min_dims=0, max_dims=2, max_side=4)), nan=True)
    side = data.draw(st.sampled_from(["left", "right"]))
    got = run(lambda a, v: nnp.searchsorted(a, v, side=side), (a, v), mode)
    assert np.asarray(got).dtype == I64
    np.testing.assert_array_equal(got, np.searchsorted(a, v, side=side))


def test_searchsorted_sorter():
    a = np.array([5.0, 1.0, 3.0, 3.0], F32)
    s = np.argsort(a)
    v = np.array([0.0, 3.0, 4.0, 6.0], F32)
    np.testing.assert_array_equal(jit(lambda a, v, s: nnp.searchsorted(a, v, "right", s))(
        a, v, s), np.searchsorted(a, v, "right", s))


# --- scans ------------------------------------------------------------------------------------

SCANS = {"cumprod": (lambda x, ax, rev: lax.cumprod(x, ax, rev), np.multiply),
         "cummax": (lambda x, ax, rev: lax.cummax(x, ax, rev), np.maximum),
         "cummin": (lambda x, ax, rev: lax.cummin(x, ax, rev), np.minimum),
         "cumsum": (lambda x, ax, rev: lax.cumsum(x, ax, rev), np.add)}


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_lax_scans(mode, data):
    """lax.cum* against numpy's ufunc.accumulate (reverse: on the flipped
    array), in the operand's dtype; NaN propagates through max / min."""
    name = data.draw(st.sampled_from(sorted(SCANS)))
    dt = data.draw(st.sampled_from([F32, F64, I32, I64]))
    shape = data.draw(shapes(min_dims=1, max_dims=3, max_side=5))
    x = tied(data, dt, shape, nan=name in ("cummax", "cummin"))
    ax = data.draw(st.integers(0, len(shape) - 1))
    rev = data.draw(st.booleans())
    fn, uf = SCANS[name]
    got = run(lambda x: fn(x, ax, rev), (x,), mode)
    want = np.flip(uf.accumulate(np.flip(x, ax), axis=ax), ax) if rev else \
        uf.accumulate(x, axis=ax)
    assert_close(got, want.astype(dt), dt)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dt,axis", [(F32, None), (I32, 1), (B, 0), (F64, -1)])
def test_numpy_cumprod(mode, dt, axis):
    x = (rng.integers(-2, 3, (3, 5)) if dt != B else rng.random((3, 5)) < 0.7).astype(dt)
    got = run(lambda x: nnp.cumprod(x, axis=axis), (x,), mode)
    want = np.cumprod(x, axis=axis)
    assert_close(got, want, want.dtype if dt.kind != "i" else I64)
    assert_close(run(lambda x: lax.cummax(x, axis=0), (x > 0,), mode),
                 np.maximum.accumulate(x > 0, axis=0), B)


# --- gradients ------------------------------------------------------------------------------

EPS = 1e-6


def check_grad(f, x, seed=0, compiled=True):
    """vjp of f at float64 x against central differences along a random
    direction; the jitted gradient agrees with the eager one."""
    r = np.random.default_rng(seed)
    out, vjp = needle.vjp(f, x)
    ct = r.standard_normal(np.shape(out))
    (g,) = vjp(ct)
    t = r.standard_normal(x.shape)
    fd = (np.asarray(f(x + EPS * t)) - np.asarray(f(x - EPS * t))) / (2 * EPS)
    np.testing.assert_allclose(np.sum(g * t), np.sum(ct * fd), rtol=1e-6, atol=1e-8)
    _, tout = needle.jvp(f, (x,), (t,))
    np.testing.assert_allclose(tout, fd, rtol=1e-6, atol=1e-7)
    if compiled:
        got = jit(lambda x, ct: needle.vjp(f, x)[1](ct)[0])(x, ct)
        np.testing.assert_allclose(got, g, rtol=1e-10, atol=1e-12)


def _distinct(*shape):
    return rng.permutation(np.arange(np.prod(shape), dtype=F64)).reshape(shape) * 0.37 + \
        rng.uniform(-0.01, 0.01, shape)


@pytest.mark.parametrize("name,f", [
    ("sort", lambda x: nnp.sort(x, axis=0)),
    ("sort_desc", lambda x: nnp.sort(x, axis=None, descending=True)),
    ("top_k", lambda x: lax.top_k(x, 2)[0]),
    ("sort_key_val", lambda x: lax.sort_key_val(nnp.sin(x), x * x)[1]),
    ("cumprod", lambda x: nnp.cumprod(x, axis=1)),
    ("cumprod_rev", lambda x: lax.cumprod(x, 0, reverse=True)),
    ("cummax", lambda x: lax.cummax(x, 1)),
    ("cummin_rev", lambda x: lax.cummin(x, 1, reverse=True)),
])
def test_gradients(name, f):
    """sort / top_k scatter the cotangent back through the permutation; the
    scans' derivatives (JAX's associative-scan JVP) are exact with zeros."""
    x = _distinct(3, 5)
    if name.startswith("cumprod"):
        x = x / 3.0
        x[1, 2] = 0.0                   # a zero in the product: no division
    check_grad(f, x, compiled=name in ("sort", "cumprod", "cummax"))


def test_cummax_gradient_at_a_tie_is_split():
    """Ties of the running maximum split the derivative as max's own JVP
    does (JAX's rule): d cummax([1, 1])[1] = 1/2 for each."""
    g = needle.grad(lambda x: lax.cummax(x)[1])(np.array([1.0, 1.0]))
    np.testing.assert_allclose(g, [0.5, 0.5])


def test_gradient_of_sort_under_vmap_and_jit():
    x = _distinct(4, 6)
    loss = lambda r: (nnp.sort(r) * np.arange(6.0)).sum()         # noqa: E731
    g = jit(needle.vmap(needle.grad(loss)))(x)
    want = np.zeros_like(x)
    np.put_along_axis(want, np.argsort(x, axis=1), np.arange(6.0)[None], axis=1)
    np.testing.assert_allclose(g, want)


# --- vmap -----------------------------------------------------------------------------------

def test_vmap():
    x = rng.integers(-3, 4, (4, 3, 6)).astype(F32)
    np.testing.assert_array_equal(needle.vmap(nnp.sort)(x), np.sort(x))
    np.testing.assert_array_equal(needle.vmap(lambda r: nnp.argsort(r, axis=0), in_axes=1)(x),
                                  np.stack([np.argsort(x[:, j], axis=0, kind="stable")
                                            for j in range(3)]))
    v, i = needle.vmap(lambda r: lax.top_k(r, 2))(x)
    np.testing.assert_array_equal(i, np.argsort(-x, axis=-1, kind="stable")[..., :2])
    np.testing.assert_array_equal(needle.vmap(lambda r: lax.cummax(r, 1))(x),
                                  np.maximum.accumulate(x, axis=2))
    a = np.sort(rng.integers(0, 9, (4, 7)).astype(F32), axis=1)
    vs = rng.integers(-1, 10, (4, 5)).astype(F32)
    got = jit(needle.vmap(nnp.searchsorted))(a, vs)
    np.testing.assert_array_equal(got, [np.searchsorted(a[k], vs[k]) for k in range(4)])
    got = needle.vmap(lambda r: nnp.nonzero(r > 0, size=5, fill_value=-1)[0])(x[:, 0])
    want = np.full((4, 5), -1)
    for k in range(4):
        nz = np.nonzero(x[k, 0] > 0)[0][:5]
        want[k, :len(nz)] = nz
    np.testing.assert_array_equal(got, want)


# --- data-dependent shapes: nonzero, flatnonzero, argwhere, where, unique -------------------

def _padded(idx, size, fill):
    out = np.full((size,) + idx.shape[1:], fill, np.int64)
    out[:min(size, len(idx))] = idx[:size]
    return out


@pytest.mark.parametrize("size", [None, 0, 3, 12])
def test_nonzero_family(size):
    """Eagerly as numpy; with size= (eagerly and under jit) the first `size`
    entries, padded with fill_value (per axis for nonzero)."""
    x = np.array([[0.0, 1.5, 0.0, np.nan], [2.0, 0.0, -1.0, 0.0]], F32)
    fill = (-1, -2)
    fns = {
        "nonzero": (lambda x: nnp.nonzero(x, size=size, fill_value=fill), np.nonzero),
        "where": (lambda x: nnp.where(x, size=size, fill_value=fill), np.nonzero),
        "flatnonzero": (lambda x: nnp.flatnonzero(x, size=size, fill_value=7), np.flatnonzero),
        "argwhere": (lambda x: nnp.argwhere(x, size=size), np.argwhere),
    }
    for name, (fn, ref) in fns.items():
        want = ref(x)
        for got in ([fn(x)] if size is None else [fn(x), jit(fn)(x)]):
            if size is None:
                np.testing.assert_equal(got, want)
            elif name in ("nonzero", "where"):
                for d in range(2):
                    np.testing.assert_array_equal(got[d], _padded(want[d], size, fill[d]))
            elif name == "flatnonzero":
                np.testing.assert_array_equal(got, _padded(want, size, 7))
            else:
                np.testing.assert_array_equal(got, _padded(want, size, 0))
            assert all(np.asarray(g).dtype == I64 for g in
                       (got if isinstance(got, tuple) else (got,)))


def test_argwhere_0d_and_nonzero_errors():
    assert np.asarray(nnp.argwhere(np.array(3.0))).shape == np.argwhere(np.array(3.0)).shape
    assert np.asarray(nnp.argwhere(np.array(3.0), size=2)).shape == (2, 0)
    with pytest.raises(ValueError, match="0-d"):
        nnp.nonzero(np.array(1.0))


@pytest.mark.parametrize("name", ["nonzero", "flatnonzero", "argwhere", "unique", "where"])
def test_without_size_under_a_trace_asks_for_size(name):
    fn = getattr(nnp, name)
    with pytest.raises(TypeError, match=rf"{name if name != 'where' else 'nonzero'}.*size="):
        needle.jit(lambda x: fn(x))(np.ones(3, F32))


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_unique(mode, data):
    """unique with size= against numpy's unique, padded (values: fill_value,
    or the smallest; index: first occurrence; counts 0), NaNs collapsed."""
    dt = data.draw(st.sampled_from([F32, I32] if mode == "eager" else [F32]))
    x = tied(data, dt, data.draw(shapes(min_dims=1, max_dims=2 if mode == "eager" else 1,
                                        max_side=5)), nan=True)
    size = data.draw(st.integers(1, 8))
    fill = data.draw(st.sampled_from([None, 9]))
    u, i, inv, c = run(lambda x: nnp.unique(x, True, True, True, size=size, fill_value=fill),
                       (x,), mode)
    wu, wi, winv, wc = np.unique(x, True, True, True, equal_nan=True)
    m = min(size, len(wu))
    pad = wu[0] if fill is None else fill
    assert_close(u, np.concatenate([wu[:m], np.full(size - m, pad, dt)]), dt)
    np.testing.assert_array_equal(i[:m], wi[:m])
    np.testing.assert_array_equal(c, np.concatenate([wc[:m], np.zeros(size - m, int)]))
    np.testing.assert_array_equal(inv, winv)
    eager = nnp.unique(x)
    assert_close(eager, np.unique(x), dt)


# --- nnp.float32(x) and the other scalar types ---------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_scalar_types_are_callable(mode):
    x = np.array([-1.5, 0.0, 2.7, 300.0], F64)
    got = run(lambda x: (nnp.float32(x), nnp.int32(x), nnp.uint8(nnp.abs(x)), nnp.bool_(x),
                         nnp.float64(x * 2.0), x.astype(nnp.float32)), (x,), mode)
    want = (x.astype(F32), x.astype(I32), np.abs(x).astype(np.uint8), x.astype(B), x * 2,
            x.astype(F32))
    for g, w in zip(got, want):
        assert np.asarray(g).dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def test_scalar_types_are_still_dtypes():
    assert np.dtype(nnp.float32) == F32 and nnp.zeros(3, nnp.float32).dtype == F32
    assert np.zeros(2, nnp.uint8).dtype == np.uint8
    assert np.arange(3).astype(nnp.int16).dtype == np.int16
    assert nnp.float32 == np.float32 and nnp.float32 == F32 and F32 == nnp.float32
    assert nnp.float32 != nnp.float64 and nnp.float64 != None       # noqa: E711
    assert {F32: "f"}[nnp.float32] == "f"
    assert isinstance(np.float32(1.0), nnp.float32)
    assert np.asarray(nnp.float64(0.1)).item() == 0.1           # not through float32
    assert nnp.array([1, 2], dtype=nnp.int8).dtype == np.int8


# --- CUDA: rows past the sort kernel's limit ------------------------------------------------

def test_cuda_sort_rejects_rows_past_its_limit():
    from needle.codegen import backend_for
    from needle.codegen.cuda.sort import MAX_ROW
    from needle.ir import Eqn, Graph, ShapedArray, Var
    from needle.ir.primitives import sort_p
    x = Var(ShapedArray((2, MAX_ROW + 1), F32))
    out = Var(x.aval)
    g = Graph([], [x], [Eqn(sort_p, [x], {"dimension": 1}, [out])], [out])
    with pytest.raises(NotImplementedError, match=rf"sort.*{MAX_ROW + 1}.*f32\[2,{MAX_ROW + 1}\]"
                                                  r".*cuda"):
        backend_for("cuda").emit(g, "k")
