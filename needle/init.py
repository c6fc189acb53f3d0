"""The public package: `needle.init`, the course library's initializers.

Input: shapes (the course's signatures: `rand(*shape, low, high)`,
`kaiming_uniform(fan_in, fan_out, shape=None, nonlinearity="relu")`, ...)
plus `device`, `dtype`, `requires_grad`, and `rng=`. Output: Tensors.

Random numbers come from needle.random: `rng=None` takes a fresh key from
the global generator (`needle.random.seed(n)` makes a run reproducible),
`rng=` a key (needle.random.PRNGKey / key) draws from that key, or a
needle.nn.GeneratorCell, which advances. Initializers run eagerly, outside
traced functions (a model is built before it is trained).
"""
import math

import numpy as np

from . import random as _random
from .tensor import Tensor

__all__ = ["rand", "randn", "randb", "constant", "ones", "zeros", "one_hot", "zeros_like",
           "ones_like", "xavier_uniform", "xavier_normal", "kaiming_uniform",
           "kaiming_normal"]


def _key(rng):
    if rng is None:
        return _random.next_key()
    if isinstance(rng, _random.Generator):
        raise TypeError("needle.init: rng= takes a key (needle.random.PRNGKey(n)) or a "
                        "needle.nn.GeneratorCell; a needle.random.Generator is a value that "
                        "cannot advance in place: pass g.next_key()[1] and keep the new g")
    if hasattr(rng, "next_key"):
        return rng.next_key()
    return rng


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(int(s) for s in shape)


def _tensor(v, device, dtype, requires_grad):
    return Tensor(v, device=device, dtype=dtype, requires_grad=requires_grad)


def rand(*shape, low=0.0, high=1.0, device=None, dtype="float32", requires_grad=False,
         rng=None):
    """Uniform in [low, high)."""
    u = np.asarray(_random.uniform(_key(rng), _shape(shape), np.dtype(dtype)))
    return _tensor(u * np.asarray(high - low, dtype) + np.asarray(low, dtype), device, dtype,
                   requires_grad)


def randn(*shape, mean=0.0, std=1.0, device=None, dtype="float32", requires_grad=False,
          rng=None):
    """Normal with `mean` and `std`."""
    n = np.asarray(_random.normal(_key(rng), _shape(shape), np.dtype(dtype)))
    return _tensor(n * np.asarray(std, dtype) + np.asarray(mean, dtype), device, dtype,
                   requires_grad)


def randb(*shape, p=0.5, device=None, dtype="bool", requires_grad=False, rng=None):
    """Booleans, True with probability p."""
    b = np.asarray(_random.bernoulli(_key(rng), np.float32(p), _shape(shape)))
    return _tensor(b, device, dtype, requires_grad)


def constant(*shape, c=1.0, device=None, dtype="float32", requires_grad=False):
    return _tensor(np.full(_shape(shape), c, dtype=np.dtype(dtype)), device, dtype,
                   requires_grad)


def ones(*shape, device=None, dtype="float32", requires_grad=False):
    return constant(*shape, c=1.0, device=device, dtype=dtype, requires_grad=requires_grad)


def zeros(*shape, device=None, dtype="float32", requires_grad=False):
    return constant(*shape, c=0.0, device=device, dtype=dtype, requires_grad=requires_grad)


def one_hot(n, i, device=None, dtype="float32", requires_grad=False):
    """Rows of the n x n identity picked by the integer labels i."""
    i = np.asarray(i.numpy() if isinstance(i, Tensor) else i).astype(np.int64)
    return _tensor(np.eye(n, dtype=np.dtype(dtype))[i], device, dtype, requires_grad)


def zeros_like(array, *, device=None, requires_grad=False):
    device = device or getattr(array, "device", None)
    return zeros(*array.shape, dtype=array.dtype, device=device, requires_grad=requires_grad)


def ones_like(array, *, device=None, requires_grad=False):
    device = device or getattr(array, "device", None)
    return ones(*array.shape, dtype=array.dtype, device=device, requires_grad=requires_grad)


def xavier_uniform(fan_in, fan_out, gain=1.0, **kwargs):
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rand(fan_in, fan_out, low=-a, high=a, **kwargs)


def xavier_normal(fan_in, fan_out, gain=1.0, **kwargs):
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return randn(fan_in, fan_out, mean=0.0, std=std, **kwargs)


def _gain(nonlinearity):
    if nonlinearity != "relu":
        raise ValueError(f"needle.init: only nonlinearity='relu' is supported (the course's), "
                         f"got {nonlinearity!r}")
    return math.sqrt(2.0)


def kaiming_uniform(fan_in, fan_out, shape=None, nonlinearity="relu", **kwargs):
    """Uniform in [-b, b], b = sqrt(2) * sqrt(3 / fan_in); `shape` defaults
    to (fan_in, fan_out) (a Conv passes its (k, k, in, out))."""
    bound = _gain(nonlinearity) * math.sqrt(3.0 / fan_in)
    shape = (fan_in, fan_out) if shape is None else tuple(shape)
    return rand(*shape, low=-bound, high=bound, **kwargs)


def kaiming_normal(fan_in, fan_out, shape=None, nonlinearity="relu", **kwargs):
    """Normal with std sqrt(2) / sqrt(fan_in)."""
    std = _gain(nonlinearity) / math.sqrt(fan_in)
    shape = (fan_in, fan_out) if shape is None else tuple(shape)
    return randn(*shape, mean=0.0, std=std, **kwargs)
