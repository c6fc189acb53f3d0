"""needle.nn: neural-network functions with JAX's names (jax.nn): relu, gelu,
sigmoid, silu, softmax, log_softmax, logsumexp, one_hot, ...

Input: arrays or tracers. Output: arrays or tracers; numerically stable forms
(softmax and logsumexp subtract the maximum first, under stop_gradient as in
JAX: it cancels out, so differentiating through it would be wasted work).
"""
import numpy as np

from . import numpy as nnp
from .autodiff import stop_gradient
from .numpy._core import asarray, cast, promote, typeof


def relu(x):
    return nnp.maximum(x, 0)


def relu6(x):
    return nnp.minimum(nnp.maximum(x, 0), 6)


def sigmoid(x):
    return nnp.sigmoid(x)


def silu(x):
    x = promote(x, to_float=True)[0]
    return nnp.multiply(x, nnp.sigmoid(x))


swish = silu


def gelu(x, approximate=True):
    """GELU; approximate=True (JAX's default) uses the tanh form."""
    x = promote(x, to_float=True)[0]
    if approximate:
        c = float(np.sqrt(2 / np.pi))
        inner = nnp.multiply(c, nnp.add(x, nnp.multiply(0.044715, nnp.power(x, 3))))
        return nnp.multiply(nnp.multiply(0.5, x), nnp.add(1.0, nnp.tanh(inner)))
    return nnp.multiply(nnp.multiply(0.5, x),
                        nnp.add(1.0, nnp.erf(nnp.multiply(x, float(1 / np.sqrt(2))))))


def softplus(x):
    x = promote(x, to_float=True)[0]
    return nnp.logaddexp(x, 0.0)


def leaky_relu(x, negative_slope=0.01):
    return nnp.where(nnp.greater_equal(x, 0), x, nnp.multiply(negative_slope, x))


def elu(x, alpha=1.0):
    x = promote(x, to_float=True)[0]
    return nnp.where(nnp.greater(x, 0), x, nnp.multiply(alpha, nnp.expm1(nnp.minimum(x, 0))))


def logsumexp(a, axis=None, keepdims=False):
    a = promote(asarray(a), to_float=True)[0]
    m = stop_gradient(nnp.max(a, axis=axis, keepdims=True))   # cancels out: no gradient
    m = nnp.where(nnp.isfinite(m), m, 0.0)      # all -inf rows give -inf, not NaN
    s = nnp.sum(nnp.exp(nnp.subtract(a, m)), axis=axis, keepdims=True)
    out = nnp.add(nnp.log(s), m)
    if not keepdims:
        axes = tuple(range(len(np.shape(out)) if not hasattr(out, "shape") else out.ndim)) \
            if axis is None else axis
        out = nnp.squeeze(out, axis=axes)
    return out


def log_softmax(x, axis=-1):
    x = promote(asarray(x), to_float=True)[0]
    shifted = nnp.subtract(x, stop_gradient(nnp.max(x, axis=axis, keepdims=True)))
    return nnp.subtract(shifted, nnp.log(nnp.sum(nnp.exp(shifted), axis=axis, keepdims=True)))


def softmax(x, axis=-1):
    x = promote(asarray(x), to_float=True)[0]
    e = nnp.exp(nnp.subtract(x, stop_gradient(nnp.max(x, axis=axis, keepdims=True))))
    return nnp.divide(e, nnp.sum(e, axis=axis, keepdims=True))


def one_hot(x, num_classes, dtype=None, axis=-1):
    """one_hot(labels, k): a new axis of size k with 1 at each label (0 for a
    label outside [0, k), as JAX). Float labels compare as floats (1.5 matches
    no class), as in JAX."""
    x = asarray(x)
    kind = typeof(x)[0].kind
    if kind not in "iuf":
        raise TypeError(f"one_hot: labels must be integers or floats, got {typeof(x)[0].name}")
    nd = len(nnp.shape(x)) + 1
    ax = axis % nd
    shape = list(nnp.shape(x))
    shape.insert(ax, int(num_classes))
    cmp_dt = typeof(x)[0] if kind == "f" else np.int64
    classes = nnp.iota(cmp_dt, shape, ax)
    labels = nnp.expand_dims(cast(x, cmp_dt), ax)
    return cast(nnp.equal(labels, classes), dtype or nnp.float32)


def standardize(x, axis=-1, epsilon=1e-5):
    x = promote(asarray(x), to_float=True)[0]
    mean = nnp.mean(x, axis=axis, keepdims=True)
    var = nnp.var(x, axis=axis, keepdims=True)
    return nnp.multiply(nnp.subtract(x, mean), nnp.rsqrt(nnp.add(var, epsilon)))
