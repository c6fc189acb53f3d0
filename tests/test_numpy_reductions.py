"""Differential tests: needle.numpy's reductions and scans against numpy,
eagerly and under needle.jit: sum, mean, max, min, prod, var, std, all, any,
argmax, argmin and cumsum, with axis None / int / negative / tuple and
keepdims, on hypothesis-drawn shapes and dtypes.

Expected dtypes follow JAX with x64 (sums and products of bool and int32
accumulate in int64, mean / var / std of integers are float32); expected
values are numpy's, computed in float64 and cast to that dtype.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import needle
import needle.numpy as nnp
from helpers import MODES, jit, arrays, mode_cases, reference, run, shapes

pytestmark = pytest.mark.on_device      # also run on $NEEDLE_TEST_DEVICE (conftest.py)

F32, F64, I32, I64, B = (np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64,
                                               np.bool_))
ALL5 = [F32, F64, I32, I64, B]


def _acc(dt):
    """sum / prod accumulate bool and int32 in int64 (numpy, and JAX with x64)."""
    return I64 if dt.kind in "bi" else dt


def _float(dt):
    return dt if dt.kind == "f" else F32


# name: (needle fn, numpy fn, dtypes, result dtype as a function of the input's)
REDUCTIONS = {
    "sum": (nnp.sum, np.sum, ALL5, _acc),
    "prod": (nnp.prod, np.prod, [F32, F64, I32, I64], _acc),
    "max": (nnp.max, np.max, ALL5, lambda dt: dt),
    "min": (nnp.min, np.min, ALL5, lambda dt: dt),
    "amax": (nnp.amax, np.amax, [F32, I64], lambda dt: dt),
    "amin": (nnp.amin, np.amin, [F32, I64], lambda dt: dt),
    "mean": (nnp.mean, np.mean, ALL5, _float),
    "var": (nnp.var, np.var, [F32, F64, I32, I64], _float),
    "std": (nnp.std, np.std, [F32, F64, I32, I64], _float),
    "all": (nnp.all, np.all, ALL5, lambda dt: B),
    "any": (nnp.any, np.any, ALL5, lambda dt: B),
}


def _tol(dt, n):
    """Accumulating n float32 values of magnitude <= 3 in float32 (in any order,
    fast-math may reassociate) errs by up to about n * 3 * eps absolutely."""
    if dt == F32:
        return dict(rtol=2e-5, atol=max(2e-6, n * 3 * 1.2e-7))
    if dt == F64:
        return dict(rtol=1e-12, atol=1e-13 * max(n, 1) * 3)
    return None


def _close(got, want, dt, n=1):
    got = np.asarray(got)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    assert got.dtype == dt, f"dtype {got.dtype} != {dt}"
    t = _tol(dt, n)
    if t is None:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, equal_nan=True, **t)


@st.composite
def _reduction_case(draw, dt):
    """(x, axis, keepdims) with axis None, an int (maybe negative) or a tuple."""
    x = draw(arrays(dt, shapes(max_side=4)), label="x")
    nd = x.ndim
    choices = [st.none(), hnp.valid_tuple_axes(nd)]
    if nd:
        choices.append(st.integers(-nd, nd - 1))
    axis = draw(st.one_of(*choices), label="axis")
    return x, axis, draw(st.booleans(), label="keepdims")


def _count(x, axis):
    if axis is None:
        return x.size
    axes = (axis,) if isinstance(axis, int) else axis
    return int(np.prod([x.shape[a] for a in axes]))


def _want(name, x, axis, keepdims):
    np_fn, out_dt = REDUCTIONS[name][1], REDUCTIONS[name][3](x.dtype)
    if name in ("sum", "prod"):
        return reference(lambda a: np_fn(a, axis=axis, keepdims=keepdims,
                                         dtype=np.float64 if out_dt.kind == "f" else out_dt),
                         x, dtype=out_dt), out_dt
    return reference(lambda a: np_fn(a, axis=axis, keepdims=keepdims), x, dtype=out_dt), out_dt


@pytest.mark.parametrize("name,dt", [pytest.param(n, dt, id=f"{n}-{dt.name}")
                                     for n, spec in REDUCTIONS.items() for dt in spec[2]])
@given(data=st.data())
def test_reduction(name, dt, data):
    x, axis, keepdims = data.draw(_reduction_case(dt))
    want, out_dt = _want(name, x, axis, keepdims)
    got = REDUCTIONS[name][0](x, axis=axis, keepdims=keepdims)
    _close(got, want, out_dt, _count(x, axis))


@pytest.mark.parametrize("dt", [F32, I32], ids=lambda d: d.name)
@given(data=st.data())
def test_reduction_jit(dt, data):
    """Every reduction under jit, in one jitted function per dtype (reductions
    over the same axes share kernels)."""
    x, axis, keepdims = data.draw(_reduction_case(dt))
    names = [n for n, spec in REDUCTIONS.items() if dt in spec[2]]
    got = jit(lambda a: {n: REDUCTIONS[n][0](a, axis=axis, keepdims=keepdims)
                                for n in names})(x)
    for n in names:
        want, out_dt = _want(n, x, axis, keepdims)
        try:
            _close(got[n], want, out_dt, _count(x, axis))
        except AssertionError as e:
            raise AssertionError(f"{n}: {e}") from None


@pytest.mark.filterwarnings("ignore:Degrees of freedom <= 0")     # numpy's, on purpose
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dt", [F32, I64], ids=lambda d: d.name)
def test_var_std_ddof(dt, mode):
    x = (np.arange(24).reshape(2, 3, 4) % 5).astype(dt)
    got = run(lambda a: [nnp.var(a, axis=(0, 2), ddof=1),
                         nnp.std(a, axis=-1, ddof=1, keepdims=True),
                         nnp.var(a, axis=0, ddof=2), nnp.var(a[:1, :1, :1], ddof=1)], (x,), mode)
    out = _float(dt)
    with np.errstate(all="ignore"):     # n - ddof <= 0: divide by 0 (inf, or nan for 0 / 0)
        _close(got[0], np.var(x, axis=(0, 2), ddof=1).astype(out), out, 8)
        _close(got[1], np.std(x, axis=-1, ddof=1, keepdims=True).astype(out), out, 4)
        _close(got[2], np.var(x, axis=0, ddof=2).astype(out), out, 2)
        _close(got[3], np.var(x[:1, :1, :1], ddof=1).astype(out), out, 1)


# ----------------------------------------------------------------------------
# argmax / argmin


@st.composite
def _arg_case(draw, dt):
    x = draw(arrays(dt, shapes(max_side=4)), label="x")
    nd = x.ndim
    axis = draw(st.none() | st.integers(-nd, nd - 1) if nd else st.none(), label="axis")
    return x, axis, draw(st.booleans(), label="keepdims")


ARGS = {"argmax": (nnp.argmax, np.argmax), "argmin": (nnp.argmin, np.argmin)}


@pytest.mark.parametrize("dt", ALL5, ids=lambda d: d.name)
@pytest.mark.parametrize("name", list(ARGS))
@given(data=st.data())
def test_argmax_argmin(name, dt, data):
    """Indices are int64; ties give the first index, as numpy."""
    x, axis, keepdims = data.draw(_arg_case(dt))
    want = ARGS[name][1](x, axis=axis, keepdims=keepdims)
    _close(ARGS[name][0](x, axis=axis, keepdims=keepdims), np.asarray(want, I64), I64)


@pytest.mark.parametrize("dt", [F32, I32], ids=lambda d: d.name)
@given(data=st.data())
def test_argmax_argmin_jit(dt, data):
    x, axis, keepdims = data.draw(_arg_case(dt))
    got = jit(lambda a: {n: ARGS[n][0](a, axis=axis, keepdims=keepdims)
                                for n in ARGS})(x)
    for n in ARGS:
        _close(got[n], np.asarray(ARGS[n][1](x, axis=axis, keepdims=keepdims), I64), I64)


# ----------------------------------------------------------------------------
# cumsum


@pytest.mark.parametrize("mode,dt", mode_cases(ALL5, [F32, I32]))
@given(data=st.data())
def test_cumsum(dt, mode, data):
    """cumsum over axis None (flattened), an int or a negative int; bool and
    int32 accumulate in int64."""
    x = data.draw(arrays(dt, shapes(max_side=4)), label="x")
    nd = x.ndim
    axis = data.draw(st.none() | st.integers(-nd, nd - 1) if nd else st.none(), label="axis")
    out_dt = _acc(dt)
    want = reference(lambda a: np.cumsum(a, axis=axis, dtype=np.float64 if out_dt.kind == "f"
                                         else out_dt), x, dtype=out_dt)
    got = run(lambda a: nnp.cumsum(a, axis=axis), (x,), mode)
    _close(got, want, out_dt, x.shape[axis] if axis is not None else x.size)


# ----------------------------------------------------------------------------
# special values


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dt", [F32, F64], ids=lambda d: d.name)
def test_special_values(dt, mode):
    """NaN propagates through max / min / sum (either sign of NaN: the CPU
    compares floats as ordered integers); argmax / argmin return the first
    NaN, as numpy; infinities compare as numbers."""
    nan, inf = np.nan, np.inf
    x = np.array([[1.0, nan, 3.0, nan],
                  [-inf, -inf, -inf, -inf],
                  [inf, 2.0, inf, -1.0],
                  [0.0, -0.0, 5.0, -inf],
                  [inf, inf, inf, inf],
                  [2.0, -nan, -inf, 1.0]], dt)     # a NaN with its sign bit set
    assert np.signbit(x[5, 1])
    fns = {"max": (nnp.max, np.max), "min": (nnp.min, np.min), "sum": (nnp.sum, np.sum),
           "argmax": (nnp.argmax, np.argmax), "argmin": (nnp.argmin, np.argmin)}
    got = run(lambda a: {n: (f(a, axis=1), f(a, axis=0), f(a)) for n, (f, _) in fns.items()},
              (x,), mode)
    for n, (_, np_fn) in fns.items():
        for g, axis in zip(got[n], (1, 0, None)):
            with np.errstate(invalid="ignore"):       # numpy's inf + -inf
                want = np.asarray(np_fn(x, axis=axis))
            want = want.astype(I64 if n.startswith("arg") else dt)
            try:
                _close(g, want, want.dtype)
            except AssertionError as e:
                raise AssertionError(f"{n} axis={axis}: {e}") from None


# ----------------------------------------------------------------------------
# the reduction primitives themselves (no accumulator promotion, int32 indices,
# reverse cumsum), against numpy


def test_every_reduction_primitive_is_tested_here():
    from needle.ir import PRIMITIVES
    sorting = {"sort", "cumprod", "cummax", "cummin"}       # tests/test_numpy_sorting.py
    assert {n for n, p in PRIMITIVES.items() if p.kind == "reduction"} - sorting == {
        "reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin", "cumsum"}


@pytest.mark.parametrize("mode,dt", mode_cases([F32, I32, I64, B], [F32, I32]))
@given(data=st.data())
def test_reduction_primitives(dt, mode, data):
    from needle.ir.primitives import (argmax_p, argmin_p, cumsum_p, reduce_max_p, reduce_min_p,
                                      reduce_prod_p, reduce_sum_p)
    x = data.draw(arrays(dt, shapes(min_dims=1, max_side=4)), label="x")
    axes = tuple(sorted(a % x.ndim for a in data.draw(hnp.valid_tuple_axes(x.ndim),
                                                      label="axes")))
    axis = data.draw(st.integers(0, x.ndim - 1), label="axis")
    idt = data.draw(st.sampled_from([I32, I64]), label="index_dtype")

    def f(a):
        out = {"reduce_max": reduce_max_p.bind(a, axes=axes),
               "reduce_min": reduce_min_p.bind(a, axes=axes),
               "argmax": argmax_p.bind(a, axis=axis, index_dtype=idt),
               "argmin": argmin_p.bind(a, axis=axis, index_dtype=idt)}
        if dt != B:
            out.update(reduce_sum=reduce_sum_p.bind(a, axes=axes),
                       reduce_prod=reduce_prod_p.bind(a, axes=axes),
                       cumsum=cumsum_p.bind(a, axis=axis),
                       cumsum_reverse=cumsum_p.bind(a, axis=axis, reverse=True))
        return out

    got = run(f, (x,), mode)
    want = {"reduce_max": (np.max(x, axis=axes), dt), "reduce_min": (np.min(x, axis=axes), dt),
            "argmax": (np.argmax(x, axis=axis), idt), "argmin": (np.argmin(x, axis=axis), idt)}
    if dt != B:
        acc = np.float64 if dt.kind == "f" else dt      # integers wrap in their own dtype
        want.update(reduce_sum=(np.sum(x, axis=axes, dtype=acc), dt),
                    reduce_prod=(np.prod(x, axis=axes, dtype=acc), dt),
                    cumsum=(np.cumsum(x, axis=axis, dtype=acc), dt),
                    cumsum_reverse=(np.flip(np.cumsum(np.flip(x, axis), axis=axis, dtype=acc),
                                            axis), dt))
    for n, (w, wdt) in want.items():
        try:
            _close(got[n], np.asarray(w).astype(wdt), wdt, x.size)
        except AssertionError as e:
            raise AssertionError(f"{n}: {e}") from None
