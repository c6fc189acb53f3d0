"""Differential tests: needle.numpy's elementwise functions against numpy,
eagerly and under needle.jit, on hypothesis-drawn shapes (0-d, size-1 and
broadcast dims) and dtypes.

Expected dtypes follow JAX's lattice (helpers.expected_dtype); expected values
are numpy's, computed in float64 and cast to that dtype.
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import needle
import needle.numpy as nnp
from helpers import (MODES, arrays, assert_close, expected_dtype, jit, mode_cases, reference,
                     run, shapes)

pytestmark = pytest.mark.on_device      # also run on $NEEDLE_TEST_DEVICE (conftest.py)

F32, F64, I32, I64, B = (np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64,
                                               np.bool_))
ALL5 = [F32, F64, I32, I64, B]
NUMERIC = [F32, F64, I32, I64]


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _erfinv_one(v):
    # bisection on math.erf: slow, independent of needle's polynomial
    if abs(v) >= 1:
        return math.copysign(math.inf, v) if abs(v) == 1 else math.nan
    lo, hi = -6.0, 6.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erf(mid) < v else (lo, mid)
    return (lo + hi) / 2


_erfinv = np.vectorize(_erfinv_one, otypes=[np.float64])


def _xla_shift(op, x, y):
    """XLA's shifts, one Python int at a time: the amount read as unsigned
    (negative: huge), and past the width every bit shifted out."""
    bits = x.dtype.itemsize * 8

    def one(a, b):
        a, b = int(a), int(b)
        if not 0 <= b < bits:
            r = -1 if op == "sra" and a < 0 else 0
        elif op == "shl":
            r = a << b
        elif op == "srl":
            r = (a % (1 << bits)) >> b
        else:
            r = a >> b
        r %= 1 << bits
        return r - (1 << bits) if x.dtype.kind == "i" and r >> (bits - 1) else r
    return np.vectorize(one, otypes=[x.dtype])(x, y)


# name: (needle fn, numpy fn, eager dtypes, (lo, hi) of the drawn values, to_float)
UNARY = {
    "negative": (nnp.negative, np.negative, NUMERIC, (-3, 3), False),
    "positive": (nnp.positive, np.positive, NUMERIC, (-3, 3), False),
    "absolute": (nnp.absolute, np.absolute, ALL5, (-3, 3), False),
    "sign": (nnp.sign, np.sign, NUMERIC, (-3, 3), False),
    "square": (nnp.square, np.square, NUMERIC, (-3, 3), False),
    "exp": (nnp.exp, np.exp, ALL5, (-3, 3), True),
    "exp2": (nnp.exp2, np.exp2, NUMERIC, (-3, 3), True),
    "expm1": (nnp.expm1, np.expm1, NUMERIC, (-3, 3), True),
    "log": (nnp.log, np.log, NUMERIC, (0.125, 5), True),
    "log1p": (nnp.log1p, np.log1p, NUMERIC, (0, 5), True),
    "log2": (nnp.log2, np.log2, NUMERIC, (0.125, 5), True),
    "log10": (nnp.log10, np.log10, NUMERIC, (0.125, 5), True),
    "sin": (nnp.sin, np.sin, NUMERIC, (-3, 3), True),
    "cos": (nnp.cos, np.cos, NUMERIC, (-3, 3), True),
    "tan": (nnp.tan, np.tan, [F32, F64, I32], (-1.25, 1.25), True),
    "tanh": (nnp.tanh, np.tanh, ALL5, (-3, 3), True),
    "sinh": (nnp.sinh, np.sinh, NUMERIC, (-3, 3), True),
    "cosh": (nnp.cosh, np.cosh, NUMERIC, (-3, 3), True),
    "sqrt": (nnp.sqrt, np.sqrt, NUMERIC, (0, 5), True),
    "rsqrt": (nnp.rsqrt, lambda x: 1 / np.sqrt(x), NUMERIC, (0.125, 5), True),
    "reciprocal": (nnp.reciprocal, lambda x: 1 / np.asarray(x, np.float64), [F32, F64],
                   (0.5, 3), True),
    "sigmoid": (nnp.sigmoid, _sigmoid, ALL5, (-3, 3), True),
    "erf": (nnp.erf, _erf, NUMERIC, (-3, 3), True),
    "floor": (nnp.floor, np.floor, [F32, F64], (-3, 3), True),
    "ceil": (nnp.ceil, np.ceil, [F32, F64], (-3, 3), True),
    "rint": (nnp.rint, np.rint, NUMERIC, (-3, 3), True),
    "isnan": (nnp.isnan, np.isnan, ALL5, (-3, 3), False),
    "isinf": (nnp.isinf, np.isinf, ALL5, (-3, 3), False),
    "isfinite": (nnp.isfinite, np.isfinite, ALL5, (-3, 3), False),
    "logical_not": (nnp.logical_not, np.logical_not, ALL5, (-3, 3), False),
    "invert": (nnp.invert, np.invert, [I32, I64, B], (-3, 3), False),
}
_BOOL_OUT = {"isnan", "isinf", "isfinite", "logical_not"}


def _unary_dtype(name, dt):
    if name in _BOOL_OUT:
        return B
    if name == "absolute" and dt == B:
        return B
    return expected_dtype(np.zeros((), dt), to_float=UNARY[name][4])


def _jit_dtypes(dts):
    """Under jit: float32 and one int dtype (each is another set of kernels)."""
    return [d for d in (F32, I32) if d in dts] or dts[:1]


@pytest.mark.parametrize("name,dt", [pytest.param(name, dt, id=f"{name}-{dt.name}")
                                     for name, (_, _, dts, _, _) in UNARY.items()
                                     for dt in dts])
@given(data=st.data())
def test_unary(name, dt, data):
    fn, np_fn, _, (lo, hi), _ = UNARY[name]
    x = data.draw(arrays(dt, shapes(), lo, hi), label="x")
    want_dt = _unary_dtype(name, dt)
    assert_close(fn(x), reference(np_fn, x, dtype=want_dt), want_dt)


def _domain(name):
    return "pos" if UNARY[name][3][0] > 0 or name in ("sqrt", "log1p") else "any"


def _check_each(got, wants):
    for name, (want, want_dt) in wants.items():
        try:
            assert_close(got[name], want, want_dt)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


@pytest.mark.parametrize("dt", _jit_dtypes(ALL5), ids=lambda d: d.name)
@given(data=st.data())
def test_unary_jit(dt, data):
    """Every unary function under jit, all in one jitted function per dtype: one
    compiled kernel per shape class instead of one per function."""
    names = [n for n, spec in UNARY.items() if dt in spec[2]]
    x = data.draw(arrays(dt, shapes(), -3, 3), label="x")
    # Positive-domain functions (log, sqrt, ...) read |x| + 1/8, computed in the
    # jitted function too, so every function reads x: one kernel per example.
    shift = dt.type(0.125) if dt.kind == "f" else 0

    def f(a):
        xs = {"any": a, "pos": nnp.absolute(a) + shift}
        return {n: UNARY[n][0](xs[_domain(n)]) for n in names}

    got = jit(f)(x)
    xs = {"any": x, "pos": np.abs(x) + shift}
    _check_each(got, {n: (reference(UNARY[n][1], xs[_domain(n)], dtype=_unary_dtype(n, dt)),
                          _unary_dtype(n, dt)) for n in names})


# ----------------------------------------------------------------------------
# binary


BINARY = {
    "add": (nnp.add, np.add, False),
    "subtract": (nnp.subtract, np.subtract, False),
    "multiply": (nnp.multiply, np.multiply, False),
    "true_divide": (nnp.true_divide, np.true_divide, True),
    "floor_divide": (nnp.floor_divide, np.floor_divide, False),
    "remainder": (nnp.remainder, np.remainder, False),
    "maximum": (nnp.maximum, np.maximum, False),
    "minimum": (nnp.minimum, np.minimum, False),
    "arctan2": (nnp.arctan2, np.arctan2, True),
    "logaddexp": (nnp.logaddexp, np.logaddexp, True),
    "equal": (nnp.equal, np.equal, False),
    "not_equal": (nnp.not_equal, np.not_equal, False),
    "less": (nnp.less, np.less, False),
    "less_equal": (nnp.less_equal, np.less_equal, False),
    "greater": (nnp.greater, np.greater, False),
    "greater_equal": (nnp.greater_equal, np.greater_equal, False),
    "bitwise_and": (nnp.bitwise_and, np.bitwise_and, False),
    "bitwise_or": (nnp.bitwise_or, np.bitwise_or, False),
    "bitwise_xor": (nnp.bitwise_xor, np.bitwise_xor, False),
    "logical_and": (nnp.logical_and, np.logical_and, False),
    "logical_or": (nnp.logical_or, np.logical_or, False),
    "logical_xor": (nnp.logical_xor, np.logical_xor, False),
}
_CMP = {"equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
        "logical_and", "logical_or", "logical_xor"}
_INT_ONLY = {"bitwise_and", "bitwise_or", "bitwise_xor"}
_NO_BOOL = {"subtract", "true_divide", "floor_divide", "remainder", "arctan2", "logaddexp"}
_DIVIDES = {"true_divide", "floor_divide", "remainder"}


def _binary_dtypes(name):
    if name in _INT_ONLY:
        return [I32, I64, B]
    return [d for d in ALL5 if not (d == B and name in _NO_BOOL)]


def _nonzero(x):
    """Replace zeros (kept away from division; division by zero is tested below)."""
    return np.where(x == 0, np.ones_like(x), x)


def _draw_pair(data, dx, dy=None, max_dims=3):
    sx, sy = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=max_dims,
                                                         max_side=3), label="shapes").input_shapes
    return data.draw(arrays(dx, sx), label="x"), data.draw(arrays(dy or dx, sy), label="y")


def _binary_want(name, x, y):
    np_fn, to_float = BINARY[name][1:]
    want_dt = B if name in _CMP else expected_dtype(x, y, to_float=to_float)
    return reference(np_fn, x, y, dtype=want_dt), want_dt


@pytest.mark.parametrize("name,dt", [pytest.param(name, dt, id=f"{name}-{dt.name}")
                                     for name in BINARY for dt in _binary_dtypes(name)])
@given(data=st.data())
def test_binary(name, dt, data):
    x, y = _draw_pair(data, dt)
    if name in _DIVIDES:
        y = _nonzero(y)
    want, want_dt = _binary_want(name, x, y)
    assert_close(BINARY[name][0](x, y), want, want_dt)


@pytest.mark.parametrize("dt", _jit_dtypes(ALL5), ids=lambda d: d.name)
@given(data=st.data())
def test_binary_jit(dt, data):
    """Every binary function under jit, all in one jitted function per dtype."""
    names = [n for n in BINARY if dt in _binary_dtypes(n)]
    x, y = _draw_pair(data, dt)
    y = _nonzero(y)
    got = jit(lambda x, y: {n: BINARY[n][0](x, y) for n in names})(x, y)
    _check_each(got, {n: _binary_want(n, x, y) for n in names})


MIXED = [(I32, F32), (I64, F32), (I32, I64), (B, I32), (F32, F64), (B, F32), (I32, F64)]
MIXED_OPS = ["add", "multiply", "true_divide", "maximum", "less"]


@pytest.mark.parametrize("mode,dx,dy", mode_cases(MIXED, [(I32, F32), (B, I32)]))
@given(data=st.data())
def test_binary_mixed_dtypes(dx, dy, mode, data):
    """Mixed operands promote on JAX's lattice (int32 + float32 -> float32)."""
    x, y = _draw_pair(data, dx, dy, max_dims=2)
    y = _nonzero(y)
    got = run(lambda x, y: {n: BINARY[n][0](x, y) for n in MIXED_OPS}, (x, y), mode)
    _check_each(got, {n: _binary_want(n, x, y) for n in MIXED_OPS})


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scalar", [2, -1.5, True], ids=["int", "float", "bool"])
@pytest.mark.parametrize("dt", [F32, I32, B], ids=lambda d: d.name)
def test_binary_python_scalars(dt, scalar, mode):
    """Python scalars are weak: they take the array's dtype where they fit."""
    x = np.arange(-3, 3).reshape(2, 3).astype(dt)
    fns = [(nnp.add, np.add), (nnp.multiply, np.multiply), (nnp.maximum, np.maximum)]
    got = run(lambda a: [(fn(a, scalar), fn(scalar, a)) for fn, _ in fns], (x,), mode)
    want_dt = expected_dtype(x, scalar)
    for (left, right), (_, np_fn) in zip(got, fns):
        assert_close(left, reference(np_fn, x, scalar, dtype=want_dt), want_dt)
        assert_close(right, reference(np_fn, scalar, x, dtype=want_dt), want_dt)


@pytest.mark.parametrize("mode", MODES)
def test_operators_under_jit(mode):
    """The operators of traced values (and of numpy arrays, eagerly, via nnp)."""
    x = np.array([[1.5, -2.0, 3.0]], np.float32)
    y = np.array([[2], [-3]], np.int32)

    def f(a, b):
        if mode == "eager":
            return [nnp.add(a, b), nnp.subtract(b, a), nnp.multiply(a, 2), nnp.true_divide(a, b),
                    nnp.floor_divide(b, 2), nnp.remainder(a, b), nnp.power(a, 2),
                    nnp.negative(a), nnp.less(a, b)]
        return [a + b, b - a, a * 2, a / b, b // 2, a % b, a ** 2, -a, a < b]

    want = [x + y, y - x, x * 2, x / y, y // 2, np.remainder(x, y), x ** 2, -x, x < y]
    got = run(f, (x, y), mode)
    for g, w in zip(got, want):
        w = np.asarray(w)
        w = w.astype(np.float32) if w.dtype == np.float64 else w
        assert_close(g, w, w.dtype)


# ----------------------------------------------------------------------------
# integer division, remainder and power


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dt", [I32, I64], ids=lambda d: d.name)
def test_int_floor_divide_remainder(dt, mode):
    """Floor division rounds toward -inf, the remainder takes the divisor's sign,
    and division by zero gives 0 (numpy's integer semantics)."""
    x = np.array([-7, -6, -1, 0, 1, 5, 7, 9], dt)[:, None]
    y = np.array([-3, -2, -1, 0, 1, 2, 3], dt)[None, :]
    with np.errstate(all="ignore"):
        want_q, want_r = np.floor_divide(x, y), np.remainder(x, y)
    assert_close(run(nnp.floor_divide, (x, y), mode), want_q, dt)
    assert_close(run(nnp.remainder, (x, y), mode), want_r, dt)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dt", [I32, I64], ids=lambda d: d.name)
def test_int_division_at_the_extremes(dt, mode):
    """The most negative integer divided by -1 wraps to itself (numpy)."""
    lo, hi = np.iinfo(dt).min, np.iinfo(dt).max
    x = np.array([lo, lo, lo, hi, hi, lo + 1, 0], dt)
    y = np.array([-1, 1, 2, -1, -2, -1, -1], dt)
    with np.errstate(all="ignore"):
        want_q, want_r = np.floor_divide(x, y), np.remainder(x, y)
    assert_close(run(nnp.floor_divide, (x, y), mode), want_q, dt)
    assert_close(run(nnp.remainder, (x, y), mode), want_r, dt)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dt", [F32, F64], ids=lambda d: d.name)
def test_float_floor_divide_remainder(dt, mode):
    """Float floor_divide and remainder agree with numpy's divmod, including the
    cases where floor(x / y) would round the quotient up (1 // 0.1 is 9) and
    division by zero (inf / nan, as numpy)."""
    x = np.array([1.0, -1.0, 7.5, -7.5, 0.0, 3.0, 1e-3, 5.0, np.inf, -np.inf, np.nan],
                 dt)[:, None]
    y = np.array([0.1, -0.1, 2.0, -2.0, 0.0, 0.7, 1.0, -0.3, np.inf, -np.inf, np.nan],
                 dt)[None, :]
    with np.errstate(all="ignore"):
        want_q, want_r = np.floor_divide(x, y), np.remainder(x, y)
    assert_close(run(nnp.floor_divide, (x, y), mode), want_q, dt)
    assert_close(run(nnp.remainder, (x, y), mode), want_r, dt)


@pytest.mark.parametrize("mode,dt", mode_cases(ALL5, [F32, I32]))
def test_integer_power(dt, mode):
    """x ** n for a Python int n keeps the dtype (bool becomes the default int);
    integers to negative powers raise, as in numpy and JAX."""
    ns = [0, 1, 2, 3, 5, 9] + ([-1, -2] if dt.kind == "f" else [])
    x = _nonzero((np.arange(-3, 4) * (0.75 if dt.kind == "f" else 1)).astype(dt))
    got = run(lambda a: [nnp.power(a, n) for n in ns], (x,), mode)
    for n, g in zip(ns, got):
        want_dt = expected_dtype(x, n)
        assert_close(g, reference(lambda a: np.power(a, float(n)), x, dtype=want_dt), want_dt)
    if dt.kind != "f":
        with pytest.raises(ValueError):
            run(lambda a: nnp.power(a, -1), (x,), mode)


POWER_PAIRS = [(F32, F32), (F64, F64), (I32, I32), (I64, I64), (I32, F32), (F32, I32)]


@pytest.mark.parametrize("mode,dx,dy", mode_cases(POWER_PAIRS,
                                                  [(F32, F32), (I32, I32), (I32, F32), (F32, I32)]))
def test_power_arrays(dx, dy, mode):
    """power with an array exponent: floats take any exponent; integers to
    non-negative integer powers stay integers (numpy and JAX agree)."""
    x = np.array([[0.5, 1.0, 2.0, 3.0]]).astype(dx)
    y = np.array([[0], [1], [2], [3]]).astype(dy)
    want_dt = expected_dtype(x, y)
    got = run(nnp.power, (x, y), mode)
    assert_close(got, reference(np.power, x, y, dtype=want_dt), want_dt)
    if dx.kind == "f":
        assert_close(run(lambda a: nnp.power(a, 0.5), (x,), mode),
                     reference(np.sqrt, x, dtype=dx), dx)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dt", [F32, F64, I32], ids=lambda d: d.name)
def test_round_mod_bitwise_not_aliases(dt, mode):
    """round / around with decimals (half to even, as numpy), integers unchanged;
    mod is remainder; bitwise_not is invert."""
    x = np.array([-2.5, -1.25, -0.5, 0.5, 1.5, 2.675, 12.5, 125.0]).astype(dt)
    y = np.array([3, -3, 2, -2, 3, 3, -4, 7]).astype(dt)
    fns = {"round": lambda a, b: nnp.round(a), "round1": lambda a, b: nnp.round(a, 1),
           "around-1": lambda a, b: nnp.around(a, -1), "mod": nnp.mod}
    wants = {"round": np.round(x), "round1": np.round(x, 1), "around-1": np.around(x, -1),
             "mod": np.mod(x, y)}
    if dt.kind == "i":
        fns["bitwise_not"] = lambda a, b: nnp.bitwise_not(a)
        wants["bitwise_not"] = np.bitwise_not(x)
        wants["round1"] = x                 # integers: unchanged for decimals >= 0
        wants["around-1"] = np.around(x, -1)        # integers keep their dtype (numpy)
    got = run(lambda a, b: {n: f(a, b) for n, f in fns.items()}, (x, y), mode)
    _check_each(got, {n: (w, np.asarray(w).dtype) for n, w in wants.items()})


# ----------------------------------------------------------------------------
# where, clip, maximum / minimum with NaN


@pytest.mark.parametrize("mode,dx,dy", mode_cases(
    [(F32, F32), (I32, I32), (I32, F32), (B, B), (F64, I64)], [(F32, F32), (I32, F32)]))
@given(data=st.data())
def test_where(dx, dy, mode, data):
    sc, sx, sy = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3,
                                                             max_side=3), label="s").input_shapes
    c = data.draw(arrays(B, sc), label="c")
    x = data.draw(arrays(dx, sx), label="x")
    y = data.draw(arrays(dy, sy), label="y")
    want_dt = expected_dtype(x, y)
    assert_close(run(nnp.where, (c, x, y), mode), reference(np.where, c, x, y, dtype=want_dt),
                 want_dt)


@pytest.mark.parametrize("mode", MODES)
def test_where_scalars_and_nonbool_condition(mode):
    c = np.array([[0, 2, -1]], np.int32)       # non-bool conditions mean != 0
    x = np.array([1.5, 2.5, 3.5], np.float32)
    got = run(lambda c, x: nnp.where(c, x, 0), (c, x), mode)
    assert_close(got, np.where(c, x, 0).astype(np.float32), F32)
    got = run(lambda c: nnp.where(c, 1, 2), (c,), mode)
    assert_close(got, np.where(c, 1, 2), I64)
    got = run(lambda c: nnp.where(c, 1.0, 2), (c,), mode)
    assert_close(got, np.where(c, 1.0, 2).astype(np.float32), F32)


@pytest.mark.parametrize("mode,dt", mode_cases(NUMERIC, [F32, I32]))
@given(data=st.data())
def test_clip(dt, mode, data):
    x = data.draw(arrays(dt, shapes()), label="x")
    lo = data.draw(st.integers(-3, 0), label="lo")
    hi = data.draw(st.integers(0, 3), label="hi")
    bounds = data.draw(arrays(dt, x.shape[-1:]), label="bounds")
    got = run(lambda a, b: [nnp.clip(a, lo, hi), nnp.clip(a, None, hi), nnp.clip(a, b, None)],
              (x, bounds), mode)
    assert_close(got[0], np.clip(x, lo, hi), dt)
    assert_close(got[1], np.clip(x, None, hi), dt)
    assert_close(got[2], np.maximum(x, bounds), dt)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dt", [F32, F64], ids=lambda d: d.name)
def test_maximum_minimum_nan(dt, mode):
    """NaN in either operand gives NaN, as numpy's maximum / minimum."""
    nan, inf = np.nan, np.inf
    x = np.array([nan, 1.0, nan, -inf, inf, 2.0, -0.0], dt)
    y = np.array([1.0, nan, nan, 0.0, 3.0, -inf, 0.0], dt)
    for fn, np_fn in [(nnp.maximum, np.maximum), (nnp.minimum, np.minimum)]:
        assert_close(run(fn, (x, y), mode), np_fn(x, y), dt)
        assert_close(run(fn, (y, x), mode), np_fn(y, x), dt)
    assert_close(run(lambda a: nnp.clip(a, -1, 1), (x,), mode), np.clip(x, -1, 1), dt)


# ----------------------------------------------------------------------------
# astype / convert


CONVERSIONS = [(F32, I32), (F64, I64), (F32, F64), (F64, F32), (F32, B), (I32, F32),
               (I64, I32), (B, I32), (B, F32), (I32, B), (I64, F64)]


@pytest.mark.parametrize("mode,src,dst", mode_cases(
    CONVERSIONS, [(F32, I32), (F64, I64), (F32, B), (I32, F32), (B, I32), (F64, F32)]))
@given(data=st.data())
def test_astype(src, dst, mode, data):
    """Floats convert to integers by truncation toward zero, as numpy."""
    x = data.draw(arrays(src, shapes(), -100, 100), label="x")
    got = run(lambda a: a.astype(dst) if mode == "jit" else nnp.astype(a, dst), (x,), mode)
    assert_close(got, x.astype(dst), dst)


def test_astype_values():
    x = np.array([-2.7, -1.5, -0.5, 0.0, 0.5, 1.5, 2.7], np.float32)
    want = np.array([-2, -1, 0, 0, 0, 1, 2], np.int32)
    assert_close(nnp.astype(x, np.int32), want, I32)
    assert_close(jit(lambda a: a.astype(np.int32))(x), want, I32)
    assert_close(jit(lambda a: a.astype(np.bool_))(x), x != 0, B)


# ----------------------------------------------------------------------------
# special values (inf, -inf, nan), not drawn by hypothesis


SPECIAL = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0, -1.0, 1e30, -1e30])


SPECIAL_OPS = ["exp", "log", "tanh", "sigmoid", "sqrt", "rsqrt", "isnan", "isinf", "isfinite",
               "absolute", "sign", "floor", "expm1", "log1p", "erf", "sin"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dt", [F32, F64], ids=lambda d: d.name)
def test_unary_special_values(dt, mode):
    x = SPECIAL.astype(dt)
    got = run(lambda a: {n: UNARY[n][0](a) for n in SPECIAL_OPS}, (x,), mode)
    for name in SPECIAL_OPS:
        want_dt = _unary_dtype(name, dt)
        want = reference(UNARY[name][1], x, dtype=want_dt)
        _check_each(got, {name: (want, want_dt)})
        if want_dt.kind == "f":    # infinities exactly, NaN exactly where numpy's are
            g = np.asarray(got[name])
            np.testing.assert_array_equal(np.isnan(g), np.isnan(want), err_msg=name)
            np.testing.assert_array_equal(g[np.isinf(want)], want[np.isinf(want)],
                                          err_msg=name)


# ----------------------------------------------------------------------------
# the elementwise primitives themselves (strict: equal dtypes, equal shapes or
# a 0-d operand), against numpy


def _np_not(x):
    return np.logical_not(x) if x.dtype == np.bool_ else np.invert(x)


def _np_int_pow(x, y):
    # needle: an integer to a negative power truncates 1 / x**-y toward zero
    with np.errstate(all="ignore"):
        r = np.power(x, np.where(y < 0, 0, y))
    inv = np.where(x == 1, 1, np.where(x == -1, np.where(y % 2 == 0, 1, -1), 0))
    return np.where(y < 0, inv, r)


# primitive name: (numpy reference, dtypes, (lo, hi) of the values)
PRIM_UNARY = {
    "neg": (np.negative, NUMERIC, (-3, 3)),
    "exp": (np.exp, [F32, F64], (-3, 3)),
    "log": (np.log, [F32, F64], (0.125, 5)),
    "log1p": (np.log1p, [F32, F64], (0, 5)),
    "expm1": (np.expm1, [F32, F64], (-3, 3)),
    "sin": (np.sin, [F32, F64], (-3, 3)),
    "cos": (np.cos, [F32, F64], (-3, 3)),
    "tan": (np.tan, [F32, F64], (-1.25, 1.25)),
    "tanh": (np.tanh, [F32, F64], (-3, 3)),
    "logistic": (_sigmoid, [F32, F64], (-3, 3)),
    "sqrt": (np.sqrt, [F32, F64], (0, 5)),
    "rsqrt": (lambda x: 1 / np.sqrt(x), [F32, F64], (0.125, 5)),
    "abs": (np.abs, NUMERIC, (-3, 3)),
    "sign": (np.sign, NUMERIC, (-3, 3)),
    "floor": (np.floor, [F32, F64], (-3, 3)),
    "ceil": (np.ceil, [F32, F64], (-3, 3)),
    "round": (np.rint, [F32, F64], (-3, 3)),       # half to even
    "erf": (_erf, [F32, F64], (-3, 3)),
    "erf_inv": (_erfinv, [F32, F64], (-0.9375, 0.9375)),
    "not": (_np_not, [I32, I64, B], (-3, 3)),
    "isnan": (np.isnan, [F32, F64], (-3, 3)),
    "isinf": (np.isinf, [F32, F64], (-3, 3)),
}
PRIM_BINARY = {
    "add": (np.add, NUMERIC), "sub": (np.subtract, NUMERIC), "mul": (np.multiply, NUMERIC),
    "div": (lambda x, y: np.true_divide(x, y) if x.dtype.kind == "f"   # floor division on ints
            else np.floor_divide(x, y), NUMERIC),
    "rem": (np.remainder, NUMERIC), "pow": (lambda x, y: np.power(x, y) if x.dtype.kind == "f"
                                            else _np_int_pow(x, y), NUMERIC),
    "max": (np.maximum, NUMERIC), "min": (np.minimum, NUMERIC),
    "atan2": (np.arctan2, [F32, F64]),
    "and": (np.bitwise_and, [I32, I64, B]), "or": (np.bitwise_or, [I32, I64, B]),
    "xor": (np.bitwise_xor, [I32, I64, B]),
    "shift_left": (lambda x, y: _xla_shift("shl", x, y), [I32, I64]),
    "shift_right_logical": (lambda x, y: _xla_shift("srl", x, y), [I32, I64]),
    "shift_right_arithmetic": (lambda x, y: _xla_shift("sra", x, y), [I32, I64]),
    "eq": (np.equal, ALL5), "ne": (np.not_equal, ALL5), "lt": (np.less, ALL5),
    "le": (np.less_equal, ALL5), "gt": (np.greater, ALL5), "ge": (np.greater_equal, ALL5),
}
_PRIM_OTHER = {"select", "convert_element_type", "integer_pow",    # tested below
               "bitcast_convert_type", "threefry2x32"}               # tests/test_random.py


def test_every_elementwise_primitive_is_tested_here():
    from needle.ir import PRIMITIVES
    elementwise = {n for n, p in PRIMITIVES.items() if p.kind == "elementwise"}
    assert elementwise == set(PRIM_UNARY) | set(PRIM_BINARY) | _PRIM_OTHER


def _prim_cases(table):
    return [pytest.param(n, dt, id=f"{n}-{dt.name}") for n, spec in table.items()
            for dt in spec[1]]


def _prim_out(name, dt):
    return B if name in ("isnan", "isinf", "eq", "ne", "lt", "le", "gt", "ge") else dt


@pytest.mark.parametrize("name,dt", _prim_cases(PRIM_UNARY))
@given(data=st.data())
def test_unary_primitive(name, dt, data):
    from needle.ir.primitives import UNARY as P
    np_fn, _, (lo, hi) = PRIM_UNARY[name]
    x = data.draw(arrays(dt, shapes(), lo, hi), label="x")
    out = _prim_out(name, dt)
    assert_close(P[name].bind(x), reference(np_fn, x, dtype=out), out)


@pytest.mark.parametrize("name,dt", _prim_cases(PRIM_BINARY))
@given(data=st.data())
def test_binary_primitive(name, dt, data):
    """Equal shapes, or a 0-d operand beside any shape."""
    from needle.ir.primitives import BINARY, COMPARE
    shape = data.draw(shapes(), label="shape")
    sx, sy = data.draw(st.sampled_from([(shape, shape), ((), shape), (shape, ())]), label="s")
    x = data.draw(arrays(dt, sx), label="x")
    y = data.draw(arrays(dt, sy), label="y")
    if name in ("div", "rem") or (name == "pow" and dt.kind == "f"):
        y = _nonzero(y)
    if name == "pow" and dt.kind == "f":
        x = np.abs(x) + dt.type(0.5)
    out = _prim_out(name, dt)
    got = {**BINARY, **COMPARE}[name].bind(x, y)
    assert_close(got, reference(PRIM_BINARY[name][0], x, y, dtype=out), out)


@pytest.mark.parametrize("dt", [F32, I32, B], ids=lambda d: d.name)
@given(data=st.data())
def test_binary_primitives_jit(dt, data):
    """Every binary primitive (and select, integer_pow) of one dtype in one
    jitted function. The unary primitives run under jit in test_unary_jit:
    each needle.numpy unary function binds its primitive directly."""
    from needle.ir.primitives import BINARY, COMPARE, integer_pow_p, select_p
    prims = {**BINARY, **COMPARE}
    shape = data.draw(shapes(), label="shape")
    x = data.draw(arrays(dt, shape), label="x")
    y = _nonzero(data.draw(arrays(dt, shape), label="y"))
    c = data.draw(arrays(B, shape), label="c")
    pos = np.abs(x) + dt.type(0.5) if dt.kind == "f" else x
    names = [n for n, spec in PRIM_BINARY.items() if dt in spec[1]]

    def f(c, x, y, pos):         # each array passed once: the kernels share inputs
        out = {n: prims[n].bind(pos if n == "pow" else x, y) for n in names}
        out["select"] = select_p.bind(c, x, y)
        if dt != B:
            out["integer_pow"] = integer_pow_p.bind(x, y=3)
        return out

    got = jit(f)(c, x, y, pos)
    wants = {n: (reference(PRIM_BINARY[n][0], pos if n == "pow" else x, y,
                           dtype=_prim_out(n, dt)), _prim_out(n, dt)) for n in names}
    wants["select"] = (np.where(c, x, y), dt)
    if dt != B:
        wants["integer_pow"] = (reference(lambda v: v ** 3, x, dtype=dt), dt)
    _check_each(got, wants)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("src,dst", [(F32, I32), (F64, I64), (F32, B), (I64, F32), (B, F64),
                                     (I32, I64), (F64, F32)], ids=str)
def test_convert_element_type_primitive(src, dst, mode):
    from needle.ir.primitives import convert_element_type_p
    x = np.array([-2.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.75, 100.25]).astype(src)
    got = run(lambda a: convert_element_type_p.bind(a, new_dtype=dst, weak_type=False), (x,),
              mode)
    assert_close(got, x.astype(dst), dst)
