"""Differential tests of needle/numpy/more.py (functions composed from the
other needle.numpy functions) against numpy, eagerly and under needle.jit:
elementwise functions on drawn values and special values (NaN, +-inf, +-0,
domain edges), NaN-aware reductions with drawn shapes and axes, shape
functions; a few gradients (central differences) and one vmap.

Jitted cases are batched into few programs (each compiles Numba kernels).
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import needle
import needle.numpy as nnp
from helpers import MODES, arrays, assert_close, run, shapes

pytestmark = pytest.mark.on_device      # also run on $NEEDLE_TEST_DEVICE (conftest.py)

F32, F64, I32 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32)

SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1 - 2 ** -20, -1 + 2 ** -20,
           1 + 2 ** -20, 0.5, -0.5, 2.0, -2.0, 1e-30, -1e-30, 1e8, -1e8, 3e30, -3e30, 1e38]

# name: (numpy fn, tolerance scale): unary float functions, any real input
UNARY = ["arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh", "cbrt", "fabs",
         "trunc", "fix", "deg2rad", "radians", "rad2deg", "degrees", "sinc"]
BOOL_UNARY = ["isneginf", "isposinf"]
BINARY = ["hypot", "fmax", "fmin", "fmod", "heaviside", "logaddexp2"]


def _ref(name, *args, dtype):
    with np.errstate(all="ignore"):
        wide = [np.asarray(a, np.float64) for a in args]
        return np.asarray(getattr(np, name)(*wide)).astype(dtype)


def _check(got, want, dtype, name, rtol=None):
    got = np.asarray(got)
    assert got.dtype == dtype, f"{name}: dtype {got.dtype} != {dtype}"
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    if rtol is None:
        rtol = 2e-5 if dtype == F32 else 1e-12
    # values at float32's tiniest scale: absolute tolerance of the dtype's tiny
    atol = 1e-37 if dtype == F32 else 1e-300
    if name == "sinc":      # sin(pi x) near integers: absolute error of pi x's rounding
        atol = 1e-7 if dtype == F32 else 1e-15
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True, err_msg=name)


def _unary_all(x):
    return {n: getattr(nnp, n)(x) for n in UNARY + BOOL_UNARY}


def _binary_all(x, y):
    return {n: getattr(nnp, n)(x, y) for n in BINARY}


def _sinc_ok(x):
    # sin(pi x) of large float32 x depends on the rounding of pi x: compare
    # sinc only where |x| is moderate
    return np.abs(x) < 1e4


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("mode", MODES)
def test_unary_special_values(mode, dtype):
    x = np.array(SPECIAL, dtype)
    got = run(_unary_all, (x,), mode)
    for n in UNARY + BOOL_UNARY:
        want = _ref(n, x, dtype=dtype if n not in BOOL_UNARY else np.bool_)
        g = np.asarray(got[n])
        if n == "sinc":
            g, want = g[_sinc_ok(x)], want[_sinc_ok(x)]
        _check(g, want, want.dtype, n)


@pytest.mark.parametrize("dtype", [F32, F64])
@given(data=st.data())
def test_unary_drawn_eager(dtype, data):
    x = data.draw(arrays(dtype, data.draw(shapes()), lo=-4, hi=4))
    for n in UNARY:
        want = _ref(n, x, dtype=dtype)
        _check(getattr(nnp, n)(x), want, dtype, n)


def test_unary_domain_sweep():
    """float32 over the whole domain: accurate near +-1, at tiny and huge |x|."""
    mag = np.logspace(-30, 30, 400)
    xs = np.float32(np.concatenate([-mag, mag]))
    ones = np.float32(np.linspace(-1, 1, 4001))
    above = np.float32(1 + np.logspace(-7, 30, 400))
    for n, x in [("arcsinh", xs), ("arctan", xs), ("cbrt", xs), ("arcsin", ones),
                 ("arccos", ones), ("arctanh", ones), ("arccosh", above)]:
        _check(getattr(nnp, n)(x), _ref(n, x, dtype=F32), F32, n, rtol=5e-7 * 8)


def test_unary_int_inputs():
    x = np.array([-2, -1, 0, 1, 2], np.int32)
    for n in ["arcsin", "arctan", "arcsinh", "cbrt", "fabs", "deg2rad", "sinc"]:
        _check(getattr(nnp, n)(x), _ref(n, x, dtype=F32), F32, n)
    z = np.float32([-0.0, 0.0])
    for n in ["arcsinh", "cbrt", "arcsin", "arctan", "arctanh", "trunc"]:
        np.testing.assert_array_equal(np.signbit(getattr(nnp, n)(z)), [True, False], err_msg=n)
    for n in ["trunc", "fix"]:
        got = getattr(nnp, n)(x)
        assert got.dtype == I32
        np.testing.assert_array_equal(got, x)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("mode", MODES)
def test_binary_special_values(mode, dtype):
    v = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -2.5, 3.0, 1e30, -1e30], dtype)
    x, y = (a.ravel() for a in np.meshgrid(v, v))
    got = run(_binary_all, (x, y), mode)
    for n in BINARY:
        _check(got[n], _ref(n, x, y, dtype=dtype), dtype, n)


@given(data=st.data())
def test_binary_drawn_broadcast(data):
    dtype = data.draw(st.sampled_from([F32, F64]))
    sx = data.draw(shapes(max_dims=2))
    x = data.draw(arrays(dtype, sx, lo=-5, hi=5))
    y = data.draw(arrays(dtype, sx[-1:] if sx else (), lo=-5, hi=5))
    for n in BINARY:
        _check(getattr(nnp, n)(x, y), _ref(n, x, y, dtype=dtype), dtype, n)


def test_binary_misc():
    # hypot does not overflow; fmod keeps the dividend's sign; ints
    big = np.float32([3e30, 1e38])
    _check(nnp.hypot(big, big), np.hypot(big.astype(F64), big.astype(F64)).astype(F32),
           F32, "hypot")
    a, b = np.int32([7, -7, 7, -7]), np.int32([3, 3, -3, -3])
    got = nnp.fmod(a, b)
    assert got.dtype == I32
    np.testing.assert_array_equal(got, np.fmod(a, b))
    assert nnp.hypot(np.int32([3]), 4).dtype == F32
    assert nnp.fmax(np.float32([1.0]), 2.0).dtype == F32
    assert nnp.fmax(a, b).dtype == I32
    assert nnp.heaviside(a, b).dtype == F32          # as jnp.heaviside
    np.testing.assert_array_equal(nnp.heaviside(a, b), np.heaviside(a, b))
    q, r = nnp.divmod(np.float32([7.5, -7.5]), np.float32([2.0, 2.0]))
    wq, wr = np.divmod(np.float32([7.5, -7.5]), np.float32([2.0, 2.0]))
    assert_close(q, wq, F32)
    assert_close(r, wr, F32)


@pytest.mark.parametrize("mode", MODES)
def test_misc_elementwise(mode):
    x = np.array([np.nan, np.inf, -np.inf, 1.5, -2.0], np.float32)
    n = np.array([3, -2, 0, 100, -140], np.int32)

    def f(x, n):
        return dict(n2n=nnp.nan_to_num(x), n2n_kw=nnp.nan_to_num(x, nan=1.0, posinf=2.0,
                                                                neginf=-3.0),
                    ldexp=nnp.ldexp(x, n), fp=nnp.float_power(x, 2))
    got = run(f, (x, n), mode)
    assert_close(got["n2n"], np.nan_to_num(x), F32)
    assert_close(got["n2n_kw"], np.nan_to_num(x, nan=1.0, posinf=2.0, neginf=-3.0), F32)
    assert_close(got["ldexp"], np.ldexp(x, n), F32)
    assert_close(got["fp"], np.float_power(x, 2), F64)


GRAD_POINTS = {"arcsin": 0.3, "arccos": -0.4, "arctan": 1.7, "arcsinh": -2.2,
               "arccosh": 1.9, "arctanh": 0.6, "cbrt": 2.5, "sinc": 0.7, "deg2rad": 1.1,
               "fabs": -1.3}


@pytest.mark.parametrize("name", sorted(GRAD_POINTS))
def test_grad(name):
    fn = getattr(nnp, name)
    x0 = np.float64(GRAD_POINTS[name])
    g = needle.grad(lambda x: fn(x))(x0)
    h = 1e-6
    fd = (float(fn(np.float64(x0 + h))) - float(fn(np.float64(x0 - h)))) / (2 * h)
    np.testing.assert_allclose(float(g), fd, rtol=1e-6)


def test_grad_binary():
    x0, y0 = np.float64(1.2), np.float64(-0.7)
    for name in ["hypot", "logaddexp2", "fmax"]:
        fn = getattr(nnp, name)
        gx, gy = needle.grad(lambda x, y: fn(x, y), argnums=(0, 1))(x0, y0)
        h = 1e-6
        fx = (float(fn(x0 + h, y0)) - float(fn(x0 - h, y0))) / (2 * h)
        fy = (float(fn(x0, y0 + h)) - float(fn(x0, y0 - h))) / (2 * h)
        np.testing.assert_allclose([float(gx), float(gy)], [fx, fy], rtol=1e-6, atol=1e-9,
                                   err_msg=name)


# --- reductions ---------------------------------------------------------------

NANRED = ["nansum", "nanmean", "nanmax", "nanmin", "nanprod", "nanvar", "nanstd"]


def _with_nans(data, dtype, shape):
    x = data.draw(arrays(dtype, shape, lo=-3, hi=3))
    if x.size:
        mask = data.draw(arrays(np.bool_, shape))
        x = np.where(mask, np.nan, x).astype(dtype)
    return x


def _axis(data, ndim):
    return data.draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1) if ndim else st.none(),
                               st.lists(st.integers(0, max(ndim - 1, 0)), unique=True,
                                        max_size=ndim).map(tuple)))


@given(data=st.data())
def test_nan_reductions_drawn(data):
    dtype = data.draw(st.sampled_from([F32, F64]))
    shape = data.draw(shapes())
    x = _with_nans(data, dtype, shape)
    axis = _axis(data, len(shape))
    keepdims = data.draw(st.booleans())
    with np.errstate(all="ignore"), _nowarn():
        for n in NANRED + ["count_nonzero", "ptp"]:
            want = np.asarray(getattr(np, n)(x.astype(F64), axis=axis, keepdims=keepdims))
            got = np.asarray(getattr(nnp, n)(x, axis=axis, keepdims=keepdims))
            wdt = np.int64 if n == "count_nonzero" else dtype
            _check(got, want.astype(wdt), np.dtype(wdt), n,
                   rtol=1e-4 if dtype == F32 else 1e-10)
        if axis is None or isinstance(axis, int):
            for n in ["nanargmax", "nanargmin"]:
                # numpy raises on an all-NaN slice; needle cannot: compare elsewhere
                full = np.all(np.isnan(x), axis=axis, keepdims=keepdims)
                if x.size == 0 or np.any(full):
                    continue
                want = getattr(np, n)(x, axis=axis, keepdims=keepdims)
                got = getattr(nnp, n)(x, axis=axis, keepdims=keepdims)
                np.testing.assert_array_equal(got, want, err_msg=n)


class _nowarn:
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *a):
        self._w.__exit__(*a)


@pytest.mark.parametrize("mode", MODES)
def test_reductions_jit(mode):
    x = np.array([[1.0, np.nan, 3.0, -2.0], [np.nan, np.nan, np.nan, np.nan],
                  [0.5, 4.0, np.nan, 0.0]], np.float32)
    w = np.array([1.0, 2.0, 0.5, 1.5], np.float32)

    def f(x, w):
        out = {n: getattr(nnp, n)(x, axis=1) for n in NANRED}
        out.update(nanmean0=nnp.nanmean(x, axis=0, keepdims=True),
                   nanargmax=nnp.nanargmax(x[0]), nanargmin=nnp.nanargmin(x[2]),
                   count=nnp.count_nonzero(x, axis=0), ptp=nnp.ptp(x[2:], axis=1),
                   avg=nnp.average(nnp.nan_to_num(x), axis=1, weights=w),
                   avg_all=nnp.average(nnp.nan_to_num(x)),
                   isclose=nnp.isclose(x, x + 1e-6, equal_nan=True),
                   isclose_nonan=nnp.isclose(x, x), allclose=nnp.allclose(x[0], x[0] * 1.0000001,
                                                                          equal_nan=True),
                   array_equal=nnp.array_equal(x[2], x[2]),
                   array_equal_nan=nnp.array_equal(x[0], x[0], equal_nan=True))
        return out
    with _nowarn():
        got = run(f, (x, w), mode)
        x64 = x.astype(F64)
        for n in NANRED:
            _check(got[n], getattr(np, n)(x64, axis=1).astype(F32), F32, n, rtol=1e-5)
        _check(got["nanmean0"], np.nanmean(x64, axis=0, keepdims=True).astype(F32), F32, "m0")
    assert int(got["nanargmax"]) == np.nanargmax(x[0])
    assert int(got["nanargmin"]) == np.nanargmin(x[2])
    np.testing.assert_array_equal(got["count"], np.count_nonzero(x, axis=0))
    _check(got["ptp"], np.ptp(x[2:], axis=1), F32, "ptp")
    _check(got["avg"], np.average(np.nan_to_num(x), axis=1, weights=w), F32, "avg")
    _check(got["avg_all"], np.average(np.nan_to_num(x)), F32, "avg_all")
    np.testing.assert_array_equal(got["isclose"], np.isclose(x, x + np.float32(1e-6),
                                                             equal_nan=True))
    np.testing.assert_array_equal(got["isclose_nonan"], np.isclose(x, x))
    assert bool(got["allclose"]) and bool(got["array_equal_nan"])
    assert bool(got["array_equal"]) == np.array_equal(x[2], x[2])     # a NaN: False


def test_isclose_inf_and_ints():
    a = np.array([np.inf, -np.inf, np.inf, 1.0, np.nan, 1e10], np.float64)
    b = np.array([np.inf, np.inf, 1e308, 1.0 + 1e-9, np.nan, 1.00001e10], np.float64)
    for en in (False, True):
        np.testing.assert_array_equal(nnp.isclose(a, b, equal_nan=en),
                                      np.isclose(a, b, equal_nan=en))
    np.testing.assert_array_equal(nnp.isclose(np.int32([1, 2]), np.int32([1, 3])),
                                  [True, False])
    assert not bool(nnp.array_equal(np.zeros(3), np.zeros(4)))
    assert not bool(nnp.array_equal(np.float32([1, np.nan]), np.float32([1, np.nan])))


def test_reduction_dtypes():
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert nnp.nansum(x).dtype == np.int64
    assert nnp.nanmean(x).dtype == F32
    assert nnp.nanvar(x, axis=0).dtype == F32
    assert nnp.nanmax(x, axis=1).dtype == I32
    assert nnp.count_nonzero(x).dtype == np.int64
    _check(nnp.nanvar(x, axis=1, ddof=1), np.nanvar(x, axis=1, ddof=1).astype(F32), F32, "v")


def test_vmap_nanmean():
    x = np.array([[1.0, np.nan, 3.0], [np.nan, 2.0, 4.0]], np.float32)
    got = needle.vmap(lambda r: nnp.nanmean(r), in_axes=1)(x)
    _check(got, np.nanmean(x.astype(F64), axis=0).astype(F32), F32, "vmap nanmean")


# --- shape ----------------------------------------------------------------------

@given(data=st.data())
def test_diff_roll_drawn(data):
    shape = data.draw(shapes(min_dims=1))
    x = data.draw(arrays(F32, shape))
    ax = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = data.draw(st.integers(0, 3))
    assert_close(nnp.diff(x, n=n, axis=ax), np.diff(x, n=n, axis=ax), F32)
    sh = data.draw(st.integers(-7, 7))
    assert_close(nnp.roll(x, sh), np.roll(x, sh), F32)
    assert_close(nnp.roll(x, sh, axis=ax), np.roll(x, sh, axis=ax), F32)
    axes = tuple(range(len(shape)))
    shifts = tuple(data.draw(st.integers(-5, 5)) for _ in axes)
    assert_close(nnp.roll(x, shifts, axis=axes), np.roll(x, shifts, axis=axes), F32)


@pytest.mark.parametrize("mode", MODES)
def test_shape_jit(mode):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    v = np.arange(3, dtype=np.float32)

    def f(x, v):
        return dict(diff=nnp.diff(x, axis=0), diff2=nnp.diff(x, 2),
                    roll=nnp.roll(x, (1, -1), axis=(0, 1)), rolln=nnp.roll(x, 5),
                    a2=nnp.atleast_2d(v), a3=nnp.atleast_3d(x), a3s=nnp.atleast_3d(v),
                    app=nnp.append(x, v), app0=nnp.append(x, x[:1], axis=0))
    got = run(f, (x, v), mode)
    assert_close(got["diff"], np.diff(x, axis=0), F32)
    assert_close(got["diff2"], np.diff(x, 2), F32)
    assert_close(got["roll"], np.roll(x, (1, -1), axis=(0, 1)), F32)
    assert_close(got["rolln"], np.roll(x, 5), F32)
    assert_close(got["a2"], np.atleast_2d(v), F32)
    assert_close(got["a3"], np.atleast_3d(x), F32)
    assert_close(got["a3s"], np.atleast_3d(v), F32)
    assert_close(got["app"], np.append(x, v), F32)
    assert_close(got["app0"], np.append(x, x[:1], axis=0), F32)


def test_diff_bool_and_errors():
    b = np.array([True, False, False, True])
    np.testing.assert_array_equal(nnp.diff(b), np.diff(b))
    with pytest.raises(ValueError, match="diff"):
        nnp.diff(np.float32(1.0))
    with pytest.raises(ValueError, match="diff"):
        nnp.diff(np.zeros(3), n=-1)


def test_all_is_public():
    import needle.numpy.more as more
    for n in more.__all__:
        f = getattr(nnp, n)                  # wrapped to accept Tensors (needle/tensor.py)
        assert getattr(f, "__wrapped_accepts_tensors__", f) is getattr(more, n)
    assert not hasattr(nnp, "_f")
    import needle.numpy.linalg as la
    assert nnp.linalg is la and "norm" in la.__all__       # + test_numpy_linalg_decomp.py's
    assert all(hasattr(la, n) for n in la.__all__)


@given(data=st.data())
def test_diagonal_trace_drawn(data):
    shape = data.draw(shapes(min_dims=2, max_side=5))
    x = data.draw(arrays(F64, shape))
    nd = len(shape)
    a1 = data.draw(st.integers(0, nd - 1))
    a2 = data.draw(st.integers(0, nd - 1).filter(lambda v: v != a1))
    k = data.draw(st.integers(-5, 5))
    assert_close(nnp.diagonal(x, k, a1, a2), np.diagonal(x, k, a1, a2), F64)
    assert_close(nnp.trace(x, k, a1, a2), np.trace(x, k, a1, a2), F64)
    r = data.draw(st.integers(-1, 4))
    assert_close(nnp.rot90(x, r, (a1, a2)), np.rot90(x, r, (a1, a2)), F64)


@given(data=st.data())
def test_norm_drawn(data):
    dtype = data.draw(st.sampled_from([F32, F64]))
    shape = data.draw(shapes(min_dims=1))
    x = data.draw(arrays(dtype, shape))
    ax = data.draw(st.integers(-len(shape), len(shape) - 1))
    keep = data.draw(st.booleans())
    rt = dict(rtol=1e-5) if dtype == F32 else dict(rtol=1e-12)
    for o in [None, 1, 2, np.inf, -np.inf, 0, 3]:
        got = nnp.linalg.norm(x, o, axis=ax, keepdims=keep)
        want = np.linalg.norm(x.astype(F64), o, axis=ax, keepdims=keep)
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=str(o), **rt)
    # sqrt(sum(x*x)) in float32: squares of values below sqrt(tiny) (1.1e-19) are
    # subnormal or 0, so a norm of such values is off by up to about
    # sqrt(size * tiny) (1e-45 gives 0 against float64's 1.4e-45).
    sub = float(np.sqrt(x.size * np.finfo(dtype).tiny))
    np.testing.assert_allclose(nnp.linalg.norm(x), np.linalg.norm(x.astype(F64)), atol=sub,
                               **rt)
    if len(shape) >= 2:
        for o in [None, "fro", 1, -1, np.inf, -np.inf]:
            got = nnp.linalg.norm(x, o, axis=(0, -1), keepdims=keep)
            want = np.linalg.norm(x.astype(F64), o, axis=(0, -1), keepdims=keep)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=1e-6, err_msg=str(o), **rt)


@pytest.mark.parametrize("mode", MODES)
def test_shape2_jit(mode):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    v = np.array([1.0, np.nan, 3.0], np.float32)
    t = np.array([0.0, 0.5, 2.0, 3.0], np.float32)

    def f(x, v, t):
        return dict(diag=nnp.diag(v, -1), diag2=nnp.diag(x, 1), trace=nnp.trace(x),
                    cs=nnp.column_stack([v, x[0]]), ds=nnp.dstack([x, x]),
                    hs=nnp.hsplit(x, 3), vs=nnp.vsplit(x, [1, 3]), dsp=nnp.dsplit(x[None], 3),
                    mg=nnp.meshgrid(v, t), mgij=nnp.meshgrid(v, t, indexing="ij"),
                    kron=nnp.kron(x[:2, :2], x[2:, 1:]), cross=nnp.cross(x, x[::-1]),
                    trap=nnp.trapezoid(x, axis=0), trapx=nnp.trapezoid(x, t, axis=0),
                    sel=nnp.select([x < -0.5, x > 0.5], [x, 2 * x], -1.0),
                    unr=nnp.unravel_index(nnp.arange(12) * 3 % 12, (3, 4)),
                    cov=nnp.cov(x), covT=nnp.cov(x, rowvar=False, ddof=0),
                    corr=nnp.corrcoef(x), corrxy=nnp.corrcoef(x[0], x[1]),
                    rot=nnp.rot90(x), rot3=nnp.rot90(x, 3),
                    norm=nnp.linalg.norm(x, axis=1), fro=nnp.linalg.norm(x, "fro"))
    got = run(f, (x, v, t), mode)
    want = dict(diag=np.diag(v, -1), diag2=np.diag(x, 1), trace=np.trace(x),
                cs=np.column_stack([v, x[0]]), ds=np.dstack([x, x]),
                hs=np.hsplit(x, 3), vs=np.vsplit(x, [1, 3]), dsp=np.dsplit(x[None], 3),
                mg=np.meshgrid(v, t), mgij=np.meshgrid(v, t, indexing="ij"),
                kron=np.kron(x[:2, :2], x[2:, 1:]), cross=np.cross(x, x[::-1]),
                trap=np.trapezoid(x, axis=0), trapx=np.trapezoid(x, t, axis=0),
                sel=np.select([x < -0.5, x > 0.5], [x, 2 * x], np.float32(-1.0)),
                unr=np.unravel_index(np.arange(12) * 3 % 12, (3, 4)),
                cov=np.cov(x), covT=np.cov(x, rowvar=False, ddof=0),
                corr=np.corrcoef(x), corrxy=np.corrcoef(x[0], x[1]),
                rot=np.rot90(x), rot3=np.rot90(x, 3),
                norm=np.linalg.norm(x, axis=1), fro=np.linalg.norm(x, "fro"))
    for k, w in want.items():
        g = got[k]
        if isinstance(w, (list, tuple)):
            assert len(g) == len(w), k
            for gi, wi in zip(g, w):
                np.testing.assert_array_equal(np.asarray(gi).shape, np.shape(wi), err_msg=k)
                np.testing.assert_allclose(gi, wi, rtol=1e-5, atol=1e-6, err_msg=k)
        else:
            w = np.asarray(w)
            g = np.asarray(g)
            assert g.shape == w.shape, (k, g.shape, w.shape)
            if w.dtype.kind == "f":
                assert g.dtype == F32, (k, g.dtype)
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=k)


def test_creation_and_errors():
    assert_close(nnp.logspace(0, 3, 4), np.logspace(0, 3, 4).astype(F32), F32)
    assert_close(nnp.logspace(0, 3, 4, base=2.0, endpoint=False, dtype=F64),
                 np.logspace(0, 3, 4, base=2.0, endpoint=False), F64)
    assert_close(nnp.geomspace(1, 1000, 4), np.geomspace(1, 1000, 4).astype(F32), F32)
    assert_close(nnp.geomspace(-1, -1000, 5, dtype=F64), np.geomspace(-1, -1000, 5), F64)
    with pytest.raises(ValueError, match="cross"):
        nnp.cross(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="diag"):
        nnp.diag(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="select"):
        nnp.select([np.array(True)], [1, 2])
    # the matrix 2-norm from the singular values (tests/test_numpy_linalg_decomp.py)
    assert_close(nnp.linalg.norm(np.eye(2) * 3.0, 2), np.float64(3.0))
    x = np.arange(6.0).reshape(2, 3)
    assert_close(nnp.average(x, axis=0, weights=np.array([1.0, 3.0])),
                 np.average(x, axis=0, weights=np.array([1.0, 3.0])), F64)
    assert_close(nnp.average(x, weights=x), np.average(x, weights=x), F64)
