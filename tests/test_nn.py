"""Differential tests: needle.nn and needle.scipy.special against numpy
formulas (computed in float64, cast to the result dtype), eagerly and under
needle.jit: relu, relu6, gelu (tanh and erf forms), sigmoid, silu, softplus,
leaky_relu, elu, softmax, log_softmax, logsumexp, standardize, one_hot, and
scipy.special's logsumexp, erf, expit, logit.

Integer inputs give float32 (the default float, as jax.nn does).
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import needle
import needle.nn as nn
import needle.numpy as nnp
import needle.scipy.special as special
from helpers import MODES, jit, arrays, assert_close, reference, run, shapes

pytestmark = pytest.mark.on_device      # also run on $NEEDLE_TEST_DEVICE (conftest.py)

F32, F64, I32, I64 = (np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64))
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _lse(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis=-1):
    s = x - np.max(x, axis=axis, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def _standardize(x, axis=-1, eps=1e-5):
    return (x - x.mean(axis, keepdims=True)) / np.sqrt(x.var(axis, keepdims=True) + eps)


# name: (needle fn, numpy formula); both take (x) only
ELEMENTWISE = {
    "relu": (nn.relu, lambda x: np.maximum(x, 0)),
    "relu6": (nn.relu6, lambda x: np.minimum(np.maximum(x, 0), 6)),
    "gelu_tanh": (lambda x: nn.gelu(x, approximate=True),
                  lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))),
    "gelu_erf": (lambda x: nn.gelu(x, approximate=False),
                 lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2)))),
    "sigmoid": (nn.sigmoid, _sigmoid),
    "silu": (nn.silu, lambda x: x * _sigmoid(x)),
    "softplus": (nn.softplus, lambda x: np.logaddexp(x, 0)),
    "leaky_relu": (nn.leaky_relu, lambda x: np.where(x >= 0, x, 0.01 * x)),
    "elu": (nn.elu, lambda x: np.where(x > 0, x, np.expm1(x))),
    "erf": (special.erf, _erf),
    "expit": (special.expit, _sigmoid),
}
# relu / relu6 / leaky_relu keep integer dtypes (jax.nn.relu(int) is int).
_KEEPS_INT = {"relu", "relu6"}


def _out_dtype(name, dt):
    if name in _KEEPS_INT and dt.kind == "i":
        return dt
    return dt if dt.kind == "f" else F32


def _check_each(got, wants):
    for name, (want, dt) in wants.items():
        try:
            assert_close(got[name], want, dt)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


def _dtypes(mode):
    return [F32, F64, I32] if mode == "eager" else [F32, I32]


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_elementwise_activations(mode, data):
    dt = data.draw(st.sampled_from(_dtypes(mode)), label="dtype")
    x = data.draw(arrays(dt, shapes(), -4, 4), label="x")
    names = [n for n in ELEMENTWISE if not (n == "leaky_relu" and dt.kind == "i")]
    got = run(lambda a: {n: ELEMENTWISE[n][0](a) for n in names}, (x,), mode)
    _check_each(got, {n: (reference(ELEMENTWISE[n][1], x, dtype=_out_dtype(n, dt)),
                          _out_dtype(n, dt)) for n in names})


@pytest.mark.parametrize("mode", MODES)
def test_logit(mode):
    x = np.array([0.01, 0.25, 0.5, 0.75, 0.99], np.float32)
    assert_close(run(special.logit, (x,), mode),
                 reference(lambda p: np.log(p / (1 - p)), x, dtype=F32), F32)


@st.composite
def _axis_case(draw, dt):
    """(x, axis, keepdims): axis None (the only choice for 0-d), an int or a tuple."""
    x = draw(arrays(dt, shapes(max_side=4), -5, 5), label="x")
    nd = x.ndim
    choices = [st.none()]
    if nd:
        choices += [st.integers(-nd, nd - 1), hnp.valid_tuple_axes(nd, min_size=1)]
    return x, draw(st.one_of(*choices), label="axis"), draw(st.booleans(), label="keepdims")


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_softmax_log_softmax_logsumexp(mode, data):
    dt = data.draw(st.sampled_from(_dtypes(mode)), label="dtype")
    x, axis, keepdims = data.draw(_axis_case(dt))
    out = dt if dt.kind == "f" else F32
    got = run(lambda a: {"softmax": nn.softmax(a, axis=axis),
                         "log_softmax": nn.log_softmax(a, axis=axis),
                         "logsumexp": nn.logsumexp(a, axis=axis, keepdims=keepdims),
                         "special.logsumexp": special.logsumexp(a, axis=axis, keepdims=keepdims),
                         "standardize": nn.standardize(a, axis=axis)}, (x,), mode)
    xf = x.astype(np.float64)
    wants = {"softmax": _softmax(xf, axis), "log_softmax": _log_softmax(xf, axis),
             "logsumexp": _lse(xf, axis, keepdims), "special.logsumexp": _lse(xf, axis, keepdims),
             "standardize": _standardize(xf, axis)}
    for n, w in wants.items():
        try:
            assert_close(got[n], w.astype(out), out)
        except AssertionError as e:
            raise AssertionError(f"{n}: {e}") from None


@pytest.mark.parametrize("mode", MODES)
def test_softmax_logsumexp_infinities(mode):
    """Masked entries (-inf) get probability 0; an all -inf row has logsumexp
    -inf, not NaN; a +inf entry gives logsumexp +inf."""
    ninf = -np.inf
    x = np.array([[0.0, ninf, 1.0, ninf],
                  [ninf, ninf, ninf, ninf],
                  [np.inf, 0.0, 1.0, 2.0],
                  [1e30, -1e30, 0.0, 1e30]], np.float32)
    got = run(lambda a: [nn.softmax(a[:1]), nn.logsumexp(a, axis=1), nn.log_softmax(a[:1])],
              (x,), mode)
    xf = x.astype(np.float64)
    with np.errstate(all="ignore"):
        assert_close(got[0], _softmax(xf[:1]).astype(F32), F32)
        assert_close(got[1], _lse(xf, 1).astype(F32), F32)
        assert_close(got[2], _log_softmax(xf[:1]).astype(F32), F32)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_one_hot(mode, data):
    """A new axis of num_classes with 1 at each label; labels outside
    [0, num_classes) give all zeros (as jax.nn.one_hot)."""
    k = data.draw(st.integers(1, 5), label="num_classes")
    ldt = data.draw(st.sampled_from([I32, I64]), label="label_dtype")
    labels = data.draw(hnp.arrays(ldt, shapes(max_dims=2), elements=st.integers(-2, k + 1)),
                       label="labels")
    axis = data.draw(st.integers(-labels.ndim - 1, labels.ndim), label="axis")
    dt = data.draw(st.sampled_from([None, F64, I32, np.bool_]), label="dtype")
    got = run(lambda l: nn.one_hot(l, k, dtype=dt, axis=axis), (labels,), mode)
    want = np.moveaxis(labels[..., None] == np.arange(k), -1, axis).astype(dt or F32)
    assert_close(got, want, want.dtype)


@pytest.mark.parametrize("mode", MODES)
def test_one_hot_float_labels(mode):
    """Float labels compare as floats: 1.0 is class 1, 1.5 no class (as JAX)."""
    labels = np.array([0.0, 1.5, 2.0, -1.0], np.float32)
    want = (labels[:, None] == np.arange(3)).astype(np.float32)
    assert_close(run(lambda l: nn.one_hot(l, 3), (labels,), mode), want, F32)


def test_activations_on_python_scalars_and_lists():
    assert_close(nn.relu(np.float32(-2.0)), np.float32(0.0), F32)
    assert_close(nn.softmax([1.0, 2.0, 3.0]), _softmax(np.array([1.0, 2.0, 3.0])).astype(F32),
                 F32)
    assert_close(jit(lambda x: nn.gelu(x))(np.float32(1.0)),
                 np.float32(0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * 1.044715))), F32)
    assert_close(nnp.asarray(special.logsumexp(np.zeros(4, np.float32))), np.float32(np.log(4)),
                 F32)
