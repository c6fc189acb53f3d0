"""needle.nn.norm_layers: `BatchNorm2d` (the course's, NCHW) and `LayerNorm`
(PyTorch's signature: normalization over the trailing `normalized_shape`).

Stage: the public package (needle/). Input: arrays (numpy, device Arrays,
tracers) or Tensors; NCHW for BatchNorm2d. Output: the same shape, the kind
given (an array for an array, a Tensor for a Tensor).

BatchNorm2d computes channels-last: it transposes its NCHW input to NHWC,
normalizes over the leading three axes, and transposes back. After a Conv
(which computes NHWC and transposes to NCHW) the first transpose composes
with the Conv's into the identity (simplify), so the statistics read the
convolution's output in its own layout; the transposes are index maps
inside fused kernels, never kernels of their own.
"""
import math

from .. import init
from .. import numpy as nnp
from ..tensor import Parameter, Tensor
from .layers import BatchNorm1d
from .module import Module

__all__ = ["BatchNorm2d", "LayerNorm"]

TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def _val(x):
    return x.value if isinstance(x, Tensor) else x


def _like(x, y):
    return Tensor._make(y, True) if isinstance(x, Tensor) else y


class BatchNorm2d(BatchNorm1d):
    """Batch normalization of NCHW input per channel, statistics over N, H,
    W (the course's): in training, normalizes with the batch mean and the
    biased batch variance and updates the buffers running_mean / running_var
    as (1 - momentum) * running + momentum * batch statistic (the biased
    variance, as the course's BatchNorm1d); in eval, normalizes with the
    running statistics. weight and bias are (dim,)."""

    def forward(self, x):
        v = _val(x)
        shape = tuple(nnp.shape(v))
        if len(shape) != 4 or shape[1] != self.dim:
            raise ValueError(f"BatchNorm2d: the input must be NCHW (B, {self.dim}, H, W), "
                             f"got shape {shape}")
        h = nnp.transpose(v, TO_NHWC)                # channels last: (C,) broadcasts
        if self.training:
            mean = nnp.mean(h, axis=(0, 1, 2))
            d = nnp.subtract(h, mean)
            var = nnp.mean(nnp.multiply(d, d), axis=(0, 1, 2))
            m = self.momentum
            self.running_mean = nnp.add(nnp.multiply(1.0 - m, self.running_mean.value),
                                        nnp.multiply(m, mean))
            self.running_var = nnp.add(nnp.multiply(1.0 - m, self.running_var.value),
                                       nnp.multiply(m, var))
        else:
            mean, var = self.running_mean.value, self.running_var.value
            d = nnp.subtract(h, mean)
        y = nnp.multiply(d, nnp.rsqrt(nnp.add(var, self.eps)))
        y = nnp.add(nnp.multiply(y, self.weight.value), self.bias.value)
        return _like(x, nnp.transpose(y, TO_NCHW))


class LayerNorm(Module):
    """Normalization over the trailing `normalized_shape` (an int or a
    tuple; biased variance), then weight * x + bias with weight and bias of
    shape normalized_shape when elementwise_affine (PyTorch's LayerNorm)."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, device=None,
                 dtype="float32"):
        super().__init__()
        shape = (int(normalized_shape),) if not isinstance(normalized_shape, (tuple, list)) \
            else tuple(int(s) for s in normalized_shape)
        self.normalized_shape, self.eps = shape, float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        self.dim = int(math.prod(shape))
        if self.elementwise_affine:
            self.weight = Parameter(init.ones(shape, device=device, dtype=dtype))
            self.bias = Parameter(init.zeros(shape, device=device, dtype=dtype))
        else:
            self.weight = self.bias = None

    def forward(self, x):
        v = _val(x)
        shape, n = tuple(nnp.shape(v)), len(self.normalized_shape)
        if shape[len(shape) - n:] != self.normalized_shape or len(shape) < n:
            raise ValueError(f"LayerNorm: the input's trailing axes must be normalized_shape "
                             f"{self.normalized_shape}, got shape {shape}")
        axes = tuple(range(len(shape) - n, len(shape)))
        mean = nnp.mean(v, axis=axes, keepdims=True)
        d = nnp.subtract(v, mean)
        var = nnp.mean(nnp.multiply(d, d), axis=axes, keepdims=True)
        y = nnp.multiply(d, nnp.rsqrt(nnp.add(var, self.eps)))
        if self.elementwise_affine:
            y = nnp.add(nnp.multiply(y, self.weight.value), self.bias.value)
        return _like(x, y)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")
