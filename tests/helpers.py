"""Shared test helpers: hypothesis strategies for shapes and arrays, and
comparison against numpy with dtype-aware tolerances."""
import os

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


def broadcastable(x, y):
    """Whether the shapes of x and y broadcast together (numpy's rule)."""
    import needle.numpy as nnp
    try:
        np.broadcast_shapes(nnp.shape(x), nnp.shape(y))
        return True
    except ValueError:
        return False


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


# --- differential testing against numpy (eager and under needle.jit) --------
MODES = ["eager", "jit"]

# The dtypes tests draw, lowest to highest on JAX's lattice restricted to them:
# for these five the join is simply the higher rank (int64 + float32 is float32).
_RANK = [np.dtype(np.bool_), np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.float32),
         np.dtype(np.float64)]


def expected_dtype(*operands, to_float=False):
    """The dtype JAX (x64 on) gives an op on `operands`: numpy arrays and numpy
    scalars are strong, Python scalars weak. Written independently of needle."""
    strong = [np.dtype(x.dtype) for x in operands if isinstance(x, (np.ndarray, np.generic))]
    weak = [type(x) for x in operands if isinstance(x, (bool, int, float))]
    if strong:
        dt = max(strong, key=_RANK.index)
        if float in weak and dt.kind != "f":
            dt = np.dtype(np.float32)
        elif int in weak and dt == np.bool_:
            dt = np.dtype(np.int64)
    elif float in weak:
        dt = np.dtype(np.float32)
    elif int in weak:
        dt = np.dtype(np.int64)
    else:
        dt = np.dtype(np.bool_)
    if to_float and dt.kind != "f":
        dt = np.dtype(np.float32)
    return dt


# The device the "jit" mode compiles for: $NEEDLE_TEST_DEVICE, "cpu" unless set.
# .ci/run sets it to "cuda" (in Numba's CUDA simulator) for a second run of the
# differential tests, so every CPU test case also runs on the CUDA backend.
DEVICE = os.environ.get("NEEDLE_TEST_DEVICE", "cpu")


def to_host(tree):
    """Device arrays in `tree` copied back to numpy (numpy values unchanged)."""
    import needle
    return needle.tree_util.tree_map(
        lambda v: np.asarray(v) if isinstance(v, needle.Array) else v, tree)


def jit(fn, **kw):
    """needle.jit(fn) for the test device; its results come back as numpy
    (unless it is called under a transformation, where they are tracers)."""
    import needle
    from needle.tracer.core import Tracer
    f = needle.jit(fn, device=DEVICE, **kw)

    def call(*args, **kwargs):
        out = f(*args, **kwargs)
        leaves = needle.tree_util.tree_leaves(out)
        if any(isinstance(v, Tracer) and not isinstance(v, needle.Array) for v in leaves):
            return out              # called under a transformation (grad(jit(f))): traced
        if DEVICE == "cuda":        # really ran there: results are device arrays
            assert all(isinstance(v, needle.Array) for v in leaves), \
                [type(v) for v in leaves]
        return to_host(out)
    call.jitted = f
    return call


def run(fn, args, mode):
    """fn(*args), eagerly on numpy arrays or compiled with needle.jit."""
    if mode == "jit":
        return jit(fn)(*args)
    return fn(*args)


def reference(np_fn, *args, dtype):
    """numpy's answer computed in float64 (int64 for integer results), then
    cast to `dtype`."""
    dtype = np.dtype(dtype)
    wide = [np.asarray(a, np.float64) if dtype.kind == "f" and not isinstance(a, bool)
            else a for a in args]
    with np.errstate(all="ignore"):
        out = np.asarray(np_fn(*wide))
        return out.astype(dtype)


def mode_cases(eager, jit):
    """pytest params (mode, *case): every case eagerly, the subset `jit` under
    jit (each jitted case compiles kernels, the slow part of the suite)."""
    import pytest
    out = []
    for mode, cases in (("eager", eager), ("jit", jit)):
        for c in cases:
            c = c if isinstance(c, tuple) else (c,)
            out.append(pytest.param(mode, *c, id="-".join(
                [mode] + [getattr(v, "name", str(v)) for v in c])))
    return out


def conv_pads(spatial, k, stride, padding, dilation):
    """(lo, hi) zero padding per spatial axis of a convolution, written out
    as JAX's conv_general_dilated reads `padding`: "VALID", "SAME" (out =
    ceil(in / stride), the extra on the high side), an int, or per-axis ints
    or pairs."""
    n = len(k)
    if padding == "VALID":
        return [(0, 0)] * n
    if padding == "SAME":
        out = []
        for size, kk, s, d in zip(spatial, k, stride, dilation):
            total = max((-(-size // s) - 1) * s + (kk - 1) * d + 1 - size, 0)
            out.append((total // 2, total - total // 2))
        return out
    if isinstance(padding, int):
        return [(padding, padding)] * n
    return [tuple(p) if not isinstance(p, int) else (p, p) for p in padding]
