"""Shared test helpers: hypothesis strategies for shapes and arrays, and
comparison against numpy with dtype-aware tolerances."""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FLOATS = [np.float32, np.float64]
INTS = [np.int32, np.int64]
ALL = FLOATS + INTS + [np.bool_]


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    """Shapes with 0-d, size-1 and small dims."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def arrays(dtype, shape, lo=-3.0, hi=3.0):
    """Arrays of `dtype` and `shape` with finite values in [lo, hi]."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        elems = st.booleans()
    elif dtype.kind in "iu":
        elems = st.integers(int(lo), int(hi))
    else:
        elems = st.floats(lo, hi, width=32 if dtype == np.float32 else 64,
                          allow_nan=False, allow_infinity=False)
    return hnp.arrays(dtype, shape, elements=elems)


def tol(dtype):
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return dict(rtol=2e-5, atol=2e-6)
    if dtype == np.float64:
        return dict(rtol=1e-12, atol=1e-13)
    return dict(rtol=0, atol=0)


def assert_close(got, want, dtype=None):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    if dtype is not None:
        assert got.dtype == np.dtype(dtype), f"dtype {got.dtype} != {np.dtype(dtype)}"
    t = tol(got.dtype if dtype is None else dtype)
    if got.dtype.kind in "fc":
        np.testing.assert_allclose(got, want, equal_nan=True, **t)
    else:
        np.testing.assert_array_equal(got, want)
