"""needle.random: JAX's functional keys, bit for bit.

- the JAX 0.10.2 reference file (../shared/data/jax_random_reference.json):
  keys, bits, randint, bernoulli, permutation, categorical and uniform
  exactly, normal within 2 ulp; the Threefry-2x32 known-answer vector;
- more JAX 0.10.2 outputs, written out below (64-bit bits, int64 randint,
  seeds beyond 32 bits, uniform whose multiply-add XLA fuses, ...);
- statistical sanity at small sizes, shapes and dtypes (hypothesis);
- jit == eager, vmap over split keys == one call per key, gradients in the
  float parameters (normal(k) * sigma + mu), not in the key;
- a jitted dropout forward + backward is one kernel, its bits made there
  (no random array among the constants);
- typed keys, Generator streams, the global generator.

Tests marked `on_device` also run with their jitted calls compiled for CUDA
(NEEDLE_TEST_DEVICE=cuda, in the simulator).
"""
import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, strategies as st

import needle
import needle.numpy as nnp
from needle import random as R
from helpers import DEVICE, MODES, jit, run

F32, F64 = np.float32, np.float64
HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, "..", "..", "shared", "data", "jax_random_reference.json")


def _reference():
    if not os.path.exists(REFERENCE):
        return None
    with open(REFERENCE) as f:
        return json.load(f)


REF = _reference()
needs_ref = pytest.mark.skipif(REF is None, reason=f"no JAX reference file at {REFERENCE}")


def ulps(a, b):
    """Distance in units in the last place (float32 or float64)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    it = np.int32 if a.dtype == np.float32 else np.int64
    top = np.iinfo(it).max

    def ordered(x):
        i = x.view(it).astype(np.int64)
        return np.where(i < 0, -(i & top), i)
    return np.abs(ordered(a) - ordered(b))


def h32(*hexes):
    return np.array([float.fromhex(h) for h in hexes], F32)


# --- the reference file -----------------------------------------------------------------

class _Keys:
    """`random` for the reference expressions under jit: PRNGKey(n) / key(n)
    are the traced keys passed in (the bits must come from kernels, not be
    folded from constants at trace time)."""

    def __init__(self, raw, typed):
        self.raw, self.typed = raw, typed

    def __getattr__(self, name):
        return getattr(R, name)

    def PRNGKey(self, seed):  # noqa: N802
        return self.raw[str(seed)]

    def key(self, seed):
        return self.typed[str(seed)]


def _namespace(rand):
    return {"random": rand, "uint32": np.uint32, "float32": F32, "int32": np.int32,
            "log": lambda v: nnp.log(np.asarray(v, F32))}


def _expr(case):
    return case["expr"].replace(" (float32)", "")


def _check_case(case, got, max_ulp=2):
    want = np.asarray(case["value"], dtype=case["dtype"])
    got = np.asarray(got)
    assert got.shape == want.shape, case["expr"]
    if want.dtype.kind == "f" and "normal" in case["expr"]:
        assert ulps(got.astype(want.dtype), want).max() <= max_ulp, (case["expr"], got, want)
    else:       # exactly; int64 where JAX without x64 gives int32 (same values)
        np.testing.assert_array_equal(got.astype(want.dtype), want, err_msg=case["expr"])


@needs_ref
@pytest.mark.on_device
@pytest.mark.parametrize("mode", MODES)
def test_reference_file(mode):
    assert REF["threefry_partitionable"] is True
    if mode == "eager":
        for case in REF["cases"]:
            _check_case(case, eval(_expr(case), _namespace(R)))
        return

    def program(raw, typed):
        ns = _namespace(_Keys(raw, typed))
        return [eval(_expr(case), ns) for case in REF["cases"]]
    raw = {str(s): R.PRNGKey(s) for s in (0, 42)}
    got = jit(program)(raw, {"7": R.key(7)})
    for case, g in zip(REF["cases"], got):
        _check_case(case, R.key_data(g) if isinstance(g, R.PRNGKeyArray) else g)


@needs_ref
@pytest.mark.on_device
@pytest.mark.parametrize("mode", MODES)
def test_threefry_known_answer(mode):
    """Random123's known-answer vector for Threefry-2x32, 20 rounds: through
    threefry_2x32 (JAX's) and the primitive itself."""
    ka = REF["threefry2x32_known_answer"]
    key = np.array([int(h, 16) for h in ka["key"]], np.uint32)
    count = np.array([int(h, 16) for h in ka["counter"]], np.uint32)
    want = [int(h, 16) for h in ka["output"]]

    def f(key, count):
        words = needle.ir.primitives.threefry2x32_p.bind(key[0], key[1], count[:1], count[1:],
                                                           output="concat")
        return R.threefry_2x32(key, count), words
    out, words = run(f, (key, count), mode)
    assert np.asarray(out).tolist() == want
    assert int(np.asarray(words)[0]) == (want[0] << 32) | want[1]


# --- more JAX 0.10.2 outputs: 64-bit paths, seeds, fused multiply-add ------------------
# Produced with jax 0.10.2 (CPU), jax_enable_x64 where the dtype needs it.
JAX = {
    "bits64": (lambda: R.bits(R.PRNGKey(32), (4,), np.uint64),
               np.array([13870720217464029122, 2133886060321034227, 6013786203973611510,
                         14008035666266386746], np.uint64)),
    "randint64": (lambda: R.randint(R.PRNGKey(33), (5,), -5, 10 ** 12, np.int64),
                  np.array([561386643733, 934271389491, 689589815455, 254190792622,
                            138657283230])),
    "randint_u8": (lambda: R.randint(R.PRNGKey(11), (6,), 0, 256, np.uint8),   # span wraps to 0
                   np.array([85, 211, 144, 0, 247, 20], np.uint8)),
    "uniform64": (lambda: R.uniform(R.PRNGKey(30), (3,), F64),
                  np.array([float.fromhex(h) for h in ("0x1.d901bcc33fef4p-1",
                                                        "0x1.81f1c4998a998p-1",
                                                        "0x1.0f149b12cbc58p-1")])),
    # minval / maxval: XLA fuses u * (max - min) + min, rounding once
    "uniform_range": (lambda: R.uniform(R.PRNGKey(5), (8,), F32, -1.5, 2.25),
                      h32("0x1.fdcc28p-3", "0x1.f40bb8p+0", "0x1.4260b4p+0", "-0x1.24b8c8p+0",
                          "0x1.ede8f8p+0", "0x1.0a9ebep+0", "-0x1.6fd506p+0",
                          "-0x1.4c03dep+0")),
    "seed_2**40+5": (lambda: R.PRNGKey(2 ** 40 + 5), np.array([256, 5], np.uint32)),
    "seed_-1": (lambda: R.PRNGKey(-1), np.array([4294967295, 4294967295], np.uint32)),
    "seed_int32_-1": (lambda: R.PRNGKey(np.int32(-1)), np.array([0, 4294967295], np.uint32)),
    "split_shape": (lambda: R.split(R.PRNGKey(19), (2, 3))[1],
                    np.array([[3326621810, 472529222], [1530423663, 3776685663],
                              [951320770, 3951787590]], np.uint32)),
    "fold_in_big": (lambda: R.fold_in(R.PRNGKey(20), 4000000000),
                    np.array([2392754741, 2056901773], np.uint32)),
    "bits8": (lambda: R.bits(R.PRNGKey(18), (6,), np.uint8),
              np.array([101, 29, 65, 143, 132, 5], np.uint8)),
    "bits16": (lambda: R.bits(R.PRNGKey(18), (4, 25), np.uint16)[0, :4],
               np.array([13925, 541, 54849, 46991], np.uint16)),
    "perm_10000": (lambda: R.permutation(R.PRNGKey(12), 10000)[:6],      # two sorting rounds
                   np.array([3077, 6342, 961, 8297, 6469, 520])),
    "perm_rows": (lambda: R.permutation(R.PRNGKey(13), nnp.arange(12.0).reshape(6, 2))[:, 0],
                  np.array([2.0, 0.0, 8.0, 4.0, 10.0, 6.0], F32)),
    "choice": (lambda: R.choice(R.PRNGKey(14), 50, (7,), replace=False),
               np.array([19, 40, 2, 30, 16, 10, 46])),
    "choice_replace": (lambda: R.choice(R.PRNGKey(15), 50, (7,)),          # int64 draws (x64)
                       np.array([44, 9, 34, 0, 38, 35, 23])),
    "choice_p": (lambda: R.choice(R.PRNGKey(16), 5, (8,),
                                  p=np.array([.1, .2, .3, .15, .25], F32)),
                 np.array([0, 4, 2, 2, 1, 3, 2, 3])),
    "choice_p_noreplace": (lambda: R.choice(R.PRNGKey(17), 5, (3,), replace=False,
                                            p=np.array([.1, .2, .3, .15, .25], F32)),
                           np.array([1, 2, 4])),
    "bernoulli_p_array": (lambda: R.bernoulli(R.PRNGKey(21), np.array([0.1, 0.5, 0.9], F32),
                                              (4, 3)),
                          np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1], [1, 1, 1]], bool)),
    "typed_split": (lambda: R.key_data(R.split(R.key(22), 4))[3],
                    np.array([2005026595, 481512567], np.uint32)),
    "categorical": (lambda: R.categorical(R.PRNGKey(9), nnp.log(nnp.arange(1, 11, dtype=F32)),
                                          shape=(10,)),
                    np.array([1, 7, 3, 1, 8, 6, 7, 8, 9, 9])),
    "randint32": (lambda: R.randint(R.PRNGKey(10), (6,), -7, 1000, np.int32),
                  np.array([686, 174, 535, 232, 481, 905], np.int32)),
}
JAX_NORMAL = h32("-0x1.723de6p+0", "0x1.8a14e0p+0", "0x1.87afb8p-2", "0x1.f87feap+0",
                 "-0x1.2ce2bep-1", "0x1.ace21ap-3", "-0x1.3ecddap+0", "-0x1.349a6ap-2")


def test_more_jax_outputs_eager():
    for name, (fn, want) in JAX.items():
        got = np.asarray(fn())
        assert got.dtype == want.dtype or want.dtype == np.int64, (name, got.dtype)
        np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=name)
    assert ulps(R.normal(R.PRNGKey(3), (8,)), JAX_NORMAL).max() <= 2


@pytest.mark.on_device
def test_more_jax_outputs_jit():
    """The 64-bit draws and the fused multiply-add compiled (the other draws
    are compiled by test_jit_equals_eager, which matches them to the eager
    ones checked above)."""
    names = ["bits64", "randint64", "uniform_range", "uniform64", "bits8"]
    got = jit(lambda: [JAX[n][0]() for n in names] + [R.normal(R.PRNGKey(3), (8,))])()
    for name, g in zip(names, got):
        want = JAX[name][1]
        if name == "uniform_range" and DEVICE != "cpu":
            # the CUDA simulator rounds u * (max - min) + min twice (a GPU fuses it):
            # off by the last bit of the product, half an ulp of 2.25
            np.testing.assert_allclose(np.asarray(g), want, rtol=0, atol=2.4e-7)
            continue
        np.testing.assert_array_equal(np.asarray(g), want.astype(np.asarray(g).dtype),
                                      err_msg=name)
    assert ulps(got[-1], JAX_NORMAL).max() <= 2


def test_seeds():
    assert R.PRNGKey(np.uint64(2 ** 64 - 1)).tolist() == [2 ** 32 - 1] * 2
    assert R.PRNGKey(np.int8(-1)).tolist() == [0, 2 ** 32 - 1]
    with pytest.raises(OverflowError):
        R.PRNGKey(2 ** 64)
    with pytest.raises(TypeError, match="integer"):
        R.PRNGKey(1.5)
    with pytest.raises(TypeError, match="scalar"):
        R.PRNGKey(np.arange(2))
    # a traced seed: vmap over seeds, and jit
    seeds = np.array([0, 42, -1, 2 ** 40 + 5])
    want = np.stack([R.PRNGKey(int(s)) for s in seeds])
    np.testing.assert_array_equal(needle.vmap(R.PRNGKey)(seeds), want)
    np.testing.assert_array_equal(needle.jit(needle.vmap(R.PRNGKey))(seeds), want)


# --- statistics (generous bounds, small sizes) ------------------------------------------

def test_statistics():
    ks = R.split(R.PRNGKey(2024), 12)
    n = 20000
    u = R.uniform(ks[0], (n,))
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.01
    z = R.normal(ks[1], (n,))
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03
    assert 0.25 < np.mean(z < -0.67) < 0.26 + 0.01     # the lower quartile
    b = R.bernoulli(ks[2], 0.3, (n,))
    assert abs(b.mean() - 0.3) < 0.015
    r = R.randint(ks[3], (n,), -3, 7)
    assert r.min() == -3 and r.max() == 6
    assert np.all(np.abs(np.bincount(r + 3) / n - 0.1) < 0.015)
    e = R.exponential(ks[4], (n,))
    assert e.min() >= 0 and abs(e.mean() - 1) < 0.03
    g = R.gumbel(ks[5], (n,))
    assert abs(g.mean() - np.euler_gamma) < 0.04
    t = R.truncated_normal(ks[6], -0.5, 1.5, (n,))
    assert -0.5 < t.min() and t.max() < 1.5 and 0.3 < t.mean() < 0.4     # 0.353
    p = R.permutation(ks[7], 1000)
    assert sorted(p.tolist()) == list(range(1000)) and not np.array_equal(p, np.arange(1000))
    c = R.choice(ks[8], 20, (20,), replace=False)
    assert sorted(c.tolist()) == list(range(20))
    probs = np.array([0.1, 0.6, 0.3], F32)
    cat = R.categorical(ks[9], np.log(probs), shape=(n,))
    assert np.all(np.abs(np.bincount(cat, minlength=3) / n - probs) < 0.015)
    cp = R.choice(ks[10], 3, (n,), p=probs)
    assert np.all(np.abs(np.bincount(cp, minlength=3) / n - probs) < 0.015)
    # split keys are independent streams: no correlation between two of them
    a, b = R.normal(ks[11], (2, n))
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.03


# --- shapes and dtypes ---------------------------------------------------------------------

SHAPES = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)


@given(shape=SHAPES, dtype=st.sampled_from([F32, F64]), seed=st.integers(0, 2 ** 31))
def test_float_samplers_shapes_dtypes(shape, dtype, seed):
    k = R.PRNGKey(seed)
    for fn in (R.uniform, R.normal, R.gumbel, R.exponential):
        x = fn(k, shape, dtype)
        assert x.shape == shape and x.dtype == dtype, fn.__name__
        assert np.all(np.isfinite(x)), fn.__name__
    u = R.uniform(k, shape, dtype, minval=-2.0, maxval=-1.0)
    assert np.all((u >= -2.0) & (u < -1.0))
    t = R.truncated_normal(k, -1.0, 0.5, shape, dtype)
    assert t.shape == shape and t.dtype == dtype and np.all((t > -1.0) & (t < 0.5))


@given(shape=SHAPES, dtype=st.sampled_from([np.int8, np.uint8, np.int16, np.int32, np.int64,
                                            np.uint32, np.uint64]),
       seed=st.integers(0, 2 ** 31), lo=st.integers(-100, 100), span=st.integers(1, 50))
def test_integer_samplers_shapes_dtypes(shape, dtype, seed, lo, span):
    k = R.PRNGKey(seed)
    if np.dtype(dtype).kind == "u":
        lo = abs(lo)
        b = R.bits(k, shape, dtype)
        assert b.shape == shape and b.dtype == dtype
    r = R.randint(k, shape, lo, lo + span, dtype)
    assert r.shape == shape and r.dtype == dtype
    assert np.all((r >= lo) & (r < lo + span))
    assert np.all(R.randint(k, shape, lo, lo, dtype) == lo)          # an empty range: minval
    m = R.bernoulli(k, 0.5, shape)
    assert m.shape == shape and m.dtype == np.bool_


def test_parameter_shapes_and_errors():
    k = R.PRNGKey(0)
    assert R.uniform(k, (2, 3), minval=np.zeros(3, F32), maxval=np.arange(1, 4, dtype=F32)
                     ).shape == (2, 3)
    assert R.bernoulli(k, np.array([0.2, 0.8], F32)).shape == (2,)
    assert R.truncated_normal(k, np.zeros((2, 1), F32), np.ones(3, F32)).shape == (2, 3)
    assert R.categorical(k, np.zeros((4, 5), F32)).shape == (4,)
    assert R.categorical(k, np.zeros((4, 5), F32), axis=0, shape=(2, 5)).shape == (2, 5)
    assert R.choice(k, np.arange(12.0).reshape(3, 4), (2,), axis=1).shape == (3, 2)
    assert R.permutation(k, np.arange(12).reshape(3, 4), axis=1, independent=True
                         ).shape == (3, 4)
    with pytest.raises(ValueError, match="single key"):
        R.uniform(R.split(k, 3), (2,))
    with pytest.raises(ValueError, match="single key"):
        R.normal(R.split(R.key(0), 3))
    with pytest.raises(TypeError, match="uint32"):
        R.uniform(np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="float dtype"):
        R.uniform(k, (2,), np.int32)
    with pytest.raises(ValueError, match="broadcast"):
        R.uniform(k, (2,), minval=np.zeros(3, F32))
    with pytest.raises(ValueError, match="population"):
        R.choice(k, 3, (4,), replace=False)
    with pytest.raises(NotImplementedError, match="2\\*\\*32"):
        R.bits(k, (2 ** 16, 2 ** 16))


# --- compiled == eager, vmap, grad ----------------------------------------------------------

def _samplers(k):
    """The samplers the reference tests do not compile, from split keys of k
    (the reference file and test_more_jax_outputs_jit compile the others)."""
    ks = R.split(k, 7)
    return {
        "normal64": R.normal(ks[0], (5,), F64), "gumbel": R.gumbel(ks[1], (4,)),
        "exponential": R.exponential(ks[2], (4,)),
        "truncated_normal": R.truncated_normal(ks[3], -1.0, 2.0, (4,)),
        "choice": R.choice(ks[4], 9, (4,), replace=False),
        "choice_p": R.choice(ks[5], 3, (6,), p=np.array([0.2, 0.3, 0.5], F32)),
        "permutation_rows": R.permutation(ks[6], np.arange(8.0, dtype=F32).reshape(4, 2)),
    }


def _assert_same(got, want, name):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, want.dtype)
    if want.dtype.kind == "f" and name not in ("uniform", "uniform64"):
        # transcendental functions: the kernels' approximations, within a few ulp
        np.testing.assert_allclose(got, want, rtol=4e-6, atol=1e-6, err_msg=name)
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.on_device
def test_jit_equals_eager():
    k = R.PRNGKey(123)
    want = _samplers(k)
    got = jit(_samplers)(k)
    for name in want:
        _assert_same(got[name], want[name], name)


@pytest.mark.on_device
@pytest.mark.parametrize("mode", MODES)
def test_vmap_over_keys(mode):
    keys = R.split(R.PRNGKey(7), 3)

    def draws(k):
        return R.normal(k, (4,)), R.randint(k, (3,), 0, 100), R.split(k), R.permutation(k, 5)
    got = run(needle.vmap(draws), (keys,), mode)
    for i, k in enumerate(keys):
        for name, g, w in zip(("normal", "randint", "split", "permutation"), got, draws(k)):
            _assert_same(np.asarray(g)[i], w, name)


@pytest.mark.on_device
@pytest.mark.parametrize("mode", MODES)
def test_gradients_in_parameters(mode):
    """d/dsigma sum(normal(k) * sigma + mu) = sum(normal(k)); d/dmu = n."""
    k = R.PRNGKey(5)
    z = R.normal(k, (6,))

    def loss(sigma, mu, k):
        return nnp.sum(R.normal(k, (6,)) * sigma + mu)
    gs, gm = run(needle.grad(loss, argnums=(0, 1)), (np.float32(2.0), np.float32(1.0), k), mode)
    np.testing.assert_allclose(gs, z.sum(), rtol=1e-5)
    assert float(gm) == 6.0


def test_gradient_in_uniform_bounds():
    """d/dmaxval of sum(uniform(k, minval=0, maxval=b)) = sum(u)."""
    k = R.PRNGKey(5)
    gb = needle.grad(lambda b: nnp.sum(R.uniform(k, (6,), minval=0.0, maxval=b)))(F32(2.0))
    np.testing.assert_allclose(gb, R.uniform(k, (6,)).sum(), rtol=1e-5)


def test_not_differentiable_in_the_key():
    with pytest.raises(TypeError):
        needle.grad(lambda k: nnp.sum(R.normal(k, (3,))))(R.PRNGKey(0))


def _erfinv64(v):
    lo, hi = -6.0, 6.0                      # bisection on math.erf: independent of needle
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erf(mid) < v else (lo, mid)
    return (lo + hi) / 2


def test_erf_inv():
    x = np.array([-0.999, -0.5, 0.0, 0.3, 0.9, 0.99999], F32)
    want = np.array([_erfinv64(float(v)) for v in x])
    got = needle.lax.erf_inv(x)         # XLA's float32 polynomial: within ~1e-6 relative
    assert got.dtype == F32
    np.testing.assert_allclose(got, want, rtol=3e-6, atol=1e-7)
    got64 = needle.lax.erf_inv(x.astype(F64))      # (bisection is good to ~1e-12 near 1)
    np.testing.assert_allclose(got64, want, rtol=1e-11, atol=1e-15)
    np.testing.assert_array_equal(needle.lax.erf_inv(np.array([-1, 1, 2], F32)),
                                  [-np.inf, np.inf, np.nan])
    np.testing.assert_allclose(needle.scipy.special.erfinv(0.3), want[3], rtol=1e-6)
    g = needle.grad(lambda v: needle.lax.erf_inv(v))(np.float32(0.3))
    np.testing.assert_allclose(g, np.sqrt(np.pi) / 2 * np.exp(want[3] ** 2), rtol=1e-5)


# --- one kernel, bits made in it ---------------------------------------------------------------

def _dropout(x, key, p=0.1):
    keep = R.bernoulli(key, 1.0 - p, x.shape)
    return nnp.where(keep, x / (1.0 - p), 0.0)


def _dropout_fwd_bwd(x, key, g):
    y, vjp = needle.vjp(lambda x: _dropout(x, key), x)
    return y, vjp(g)[0]


@pytest.mark.on_device
def test_dropout_is_one_kernel_with_its_bits():
    x = np.linspace(-1, 1, 40).astype(F32).reshape(5, 8)
    g = np.ones_like(x)
    key = R.PRNGKey(3)
    lo = needle.jit(_dropout_fwd_bwd, device=DEVICE).lower(x, key, g)
    assert lo.kernel_count == 1 and lo.library_call_count == 0
    fused = lo.as_text("fused")
    assert fused.count("threefry2x32[output=xor]") == 1 and "iota" in fused
    assert not needle.make_ir(_dropout_fwd_bwd)(x, key, g).consts     # no host random array
    y, dx = jit(_dropout_fwd_bwd)(x, key, g)
    keep = R.bernoulli(key, 0.9, x.shape)
    np.testing.assert_allclose(y, np.where(keep, x / F32(0.9), 0), rtol=1e-6)
    np.testing.assert_allclose(dx, np.where(keep, 1 / F32(0.9), 0), rtol=1e-6)
    assert 0 < keep.sum() < keep.size


# --- typed keys, Generator, the global generator ------------------------------------------------

def test_typed_keys():
    k = R.key(7)
    assert k.shape == () and str(k.dtype) == "key<fry>"
    np.testing.assert_array_equal(R.key_data(k), [0, 7])
    ks = R.split(k, 4)
    assert isinstance(ks, R.PRNGKeyArray) and ks.shape == (4,) and len(ks) == 4
    np.testing.assert_array_equal(R.key_data(ks), R.split(R.PRNGKey(7), 4))
    np.testing.assert_array_equal(R.key_data(ks[2]), R.split(R.PRNGKey(7), 4)[2])
    assert [R.key_data(c).tolist() for c in ks] == R.split(R.PRNGKey(7), 4).tolist()
    w = R.wrap_key_data(R.key_data(ks))
    np.testing.assert_array_equal(R.uniform(w[1], (3,)), R.uniform(R.key_data(ks)[1], (3,)))
    # through jit (a pytree of one leaf) and vmap (over its key axis)
    out = needle.jit(lambda k: R.split(k, 2))(k)
    assert isinstance(out, R.PRNGKeyArray) and out.shape == (2,)
    v = needle.vmap(lambda k: R.normal(k, (2,)))(ks)
    np.testing.assert_array_equal(v[3], R.normal(ks[3], (2,)))
    assert "key<fry>" in repr(k)
    with pytest.raises(TypeError, match="uint32"):
        R.wrap_key_data(np.zeros((3,), np.uint32))


def test_generator():
    g = R.Generator(0)
    g1, a = g.normal((3,))
    g2, b = g1.normal((3,))
    np.testing.assert_array_equal(a, R.normal(R.fold_in(R.PRNGKey(0), 0), (3,)))
    np.testing.assert_array_equal(b, R.normal(R.fold_in(R.PRNGKey(0), 1), (3,)))
    assert int(g2.counter) == 2 and int(g.counter) == 0          # g itself is unchanged
    _, again = g.normal((3,))
    np.testing.assert_array_equal(again, a)
    # a pytree: under jit the counter is an argument, so a new draw does not retrace
    step = needle.jit(lambda g, x: g.uniform(x.shape))
    x = np.zeros(4, F32)
    g1, u1 = step(g, x)
    g2, u2 = step(g1, x)
    assert isinstance(g2, R.Generator) and int(g2.counter) == 2
    np.testing.assert_array_equal(u1, R.uniform(R.fold_in(R.PRNGKey(0), 0), (4,)))
    np.testing.assert_array_equal(u2, R.uniform(R.fold_in(R.PRNGKey(0), 1), (4,)))
    gk, k = g.next_key()
    np.testing.assert_array_equal(k, R.fold_in(R.PRNGKey(0), 0))
    for name in ("bits", "randint", "permutation", "choice", "bernoulli", "categorical",
                 "gumbel", "exponential", "truncated_normal"):
        assert callable(getattr(g, name))
    _, p = g.permutation(5)
    assert sorted(p.tolist()) == list(range(5))


def test_global_generator():
    saved = R.default_generator()
    try:
        R.seed(11)
        assert isinstance(R.default_generator(), R.Generator)
        k1, k2 = R.next_key(), R.next_key()
        np.testing.assert_array_equal(k1, R.fold_in(R.PRNGKey(11), 0))
        np.testing.assert_array_equal(k2, R.fold_in(R.PRNGKey(11), 1))
        R.seed(11)
        np.testing.assert_array_equal(R.next_key(), k1)
        with pytest.raises(RuntimeError, match="pass it in"):
            needle.jit(lambda x: R.normal(R.next_key(), (2,)) + x)(np.zeros(2, F32))
    finally:
        R._GLOBAL["generator"] = saved
