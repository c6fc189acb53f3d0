"""The float32 approximations in generated kernels (codegen/cpu/fastmath.py),
swept over the float32 range against numpy in float64, plus special values."""
import math

import numpy as np
import pytest

import needle
import needle.numpy as nnp
import needle.nn as nnn

# (needle function, float64 reference, domain, max error in ulp of the result)
CASES = {
    "exp": (nnp.exp, np.exp, (-110.0, 95.0), 2.0),
    "log": (nnp.log, np.log, (0.0, 3.4e38), 2.0),
    "tanh": (nnp.tanh, np.tanh, (-12.0, 12.0), 5.0),
    "logistic": (nnn.sigmoid, lambda x: 1 / (1 + np.exp(-x)), (-110.0, 110.0), 3.0),
    "expm1": (nnp.expm1, np.expm1, (-20.0, 89.0), 2.0),
    "log1p": (nnp.log1p, np.log1p, (-0.999999, 3.0e38), 2.0),
    "erf": (nnp.erf, np.vectorize(math.erf), (-8.0, 8.0), 5.0),
}


def _sweep(lo, hi):
    """Dense linear sweep plus log-spaced magnitudes of both signs (denormals
    included), clipped to the domain."""
    lin = np.linspace(lo, hi, 1_000_003, dtype=np.float64)
    mags = 10.0 ** np.linspace(-45, 38.5, 300_001)
    x = np.concatenate([lin, mags, -mags, [0.0, -0.0, 1e-40, -1e-40]])
    x = x[(x >= lo) & (x <= hi)]
    return x.astype(np.float32)


def ulp_error(got, want64):
    with np.errstate(over="ignore"):
        want32 = want64.astype(np.float32)
    ok = np.isfinite(want32) & np.isfinite(want64)
    spacing = np.spacing(np.abs(want32[ok])).astype(np.float64)
    err = np.abs(got[ok].astype(np.float64) - want64[ok]) / spacing
    # Results far below the smallest normal are judged against the denormal
    # spacing, which np.spacing already gives.
    return float(err.max()) if err.size else 0.0, got[~ok], want32[~ok]


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_accuracy_sweep(name):
    fn, ref, (lo, hi), bound = CASES[name]
    x = _sweep(lo, hi)
    got = needle.jit(fn)(x)
    assert got.dtype == np.float32
    with np.errstate(all="ignore"):
        want = ref(x.astype(np.float64))
    err, got_bad, want_bad = ulp_error(got, want)
    assert err <= bound, f"{name}: max error {err:.2f} ulp > {bound}"
    # Where the exact result is not a finite float32 (overflow), we must agree.
    np.testing.assert_array_equal(got_bad, want_bad)


SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.17549435e-38,
                    88.72283, 88.72284, -87.33654, -103.97208, -103.97209, 1.0, -1.0],
                   np.float32)


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_special_values(name):
    fn, ref, _, bound = CASES[name]
    got = needle.jit(fn)(SPECIAL)
    with np.errstate(all="ignore"):
        want = ref(SPECIAL.astype(np.float64)).astype(np.float32)
    for x, g, w in zip(SPECIAL, got, want):
        if np.isnan(w) or np.isinf(w) or w == 0:
            assert (np.isnan(g) and np.isnan(w)) or g == w, f"{name}({x}) = {g}, want {w}"
        else:
            assert abs(float(g) - float(w)) <= bound * float(np.spacing(np.float32(abs(w)))), \
                f"{name}({x}) = {g}, want {w}"


def test_float64_keeps_exact_math():
    x = np.linspace(-30, 30, 10001)
    for fn, ref in [(nnp.exp, np.exp), (nnp.tanh, np.tanh), (nnp.log1p, np.log1p)]:
        xs = x if fn is not nnp.log1p else np.abs(x)
        np.testing.assert_allclose(needle.jit(fn)(xs), ref(xs), rtol=1e-14, atol=0)
