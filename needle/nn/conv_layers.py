"""needle.nn.conv_layers: the course library's convolutional layers as
Modules: `Conv` (the course's), `MaxPool2d` and `AvgPool2d` (PyTorch's
signatures).

Stage: the public package (needle/). Input: NCHW arrays (numpy, device
Arrays, tracers) or Tensors. Output: NCHW, the kind given (an array for an
array, a Tensor for a Tensor).

Each wraps the channels-last functions of needle.nn.functional (`conv`,
`max_pool`, `avg_pool`) between two transposes, NCHW -> NHWC -> NCHW, as
the course's Conv does. Those transposes cost no kernel of their own: they
are index maps inside the fused kernels around them, and where two meet
(a Conv's output transpose and the next layer's input transpose: BatchNorm2d
computes channels-last too, norm_layers.py) simplify composes them into the
identity. The NCHW work between layers (ReLU, residual adds, and all their
gradients) is moved into the channels-last layout by simplify's layout
rules (passes/layout.py), so the transposes of neighbouring layers meet:
a network of these layers stores its activations and their gradients NHWC
and runs as fast as one written channels-last (tests/test_layout.py and
tests/test_conv_layers.py pin it; benchmarks/bench_layout.py times it).
"""
import math

from .. import init
from .. import numpy as nnp
from ..tensor import Parameter, Tensor
from . import functional as F
from .module import Module

__all__ = ["Conv", "MaxPool2d", "AvgPool2d"]

TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def _val(x):
    return x.value if isinstance(x, Tensor) else x


def _like(x, y):
    """y as the kind x is: a Tensor for a Tensor input."""
    return Tensor._make(y, True) if isinstance(x, Tensor) else y


def _nchw(layer, v, channels=None):
    shape = tuple(nnp.shape(v))
    if len(shape) != 4 or (channels is not None and shape[1] != channels):
        want = f"(B, {channels}, H, W)" if channels is not None else "(B, C, H, W)"
        raise ValueError(f"{layer}: the input must be NCHW {want}, got shape {shape}")
    return shape


def _pair(v):
    return tuple(int(e) for e in v) if isinstance(v, (tuple, list)) else (int(v),) * 2


def _first(v):
    """The course takes an int; a (k, k) tuple means its first entry."""
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


class Conv(Module):
    """2-d convolution of NCHW input (the course's Conv): weight
    (k, k, in_channels, out_channels) Kaiming-uniform with fan_in =
    in_channels * k * k, fan_out = out_channels * k * k; bias
    (out_channels,) uniform in +-1 / sqrt(in_channels * k * k); padding
    k // 2 ("same" for odd k at stride 1); output (B, out_channels,
    (H + 2 * (k // 2) - k) // stride + 1, likewise W)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, bias=True,
                 device=None, dtype="float32"):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride = _first(kernel_size), _first(stride)
        self.padding = self.kernel_size // 2
        k, cin, cout = self.kernel_size, self.in_channels, self.out_channels
        self.weight = Parameter(init.kaiming_uniform(cin * k * k, cout * k * k,
                                                     shape=(k, k, cin, cout),
                                                     device=device, dtype=dtype))
        if bias:
            bound = 1.0 / math.sqrt(cin * k * k)
            self.bias = Parameter(init.rand(cout, low=-bound, high=bound, device=device,
                                            dtype=dtype))
        else:
            self.bias = None

    def forward(self, x):
        v = _val(x)
        _nchw("Conv", v, self.in_channels)
        y = F.conv(nnp.transpose(v, TO_NHWC), self.weight.value, self.stride, self.padding)
        if self.bias is not None:
            y = nnp.add(y, self.bias.value)          # (C,) broadcasts over the last axis
        return _like(x, nnp.transpose(y, TO_NCHW))

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, bias={self.bias is not None}")


class _Pool2d(Module):
    _fn, _name = None, None

    def __init__(self, kernel_size, stride=None, padding=0, device=None, dtype="float32"):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = self.kernel_size if stride is None else _pair(stride)
        self.padding = _pair(padding)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{self._name}: padding {self.padding} must be at most half the "
                             f"kernel_size {self.kernel_size} (PyTorch's rule)")

    def forward(self, x):
        v = _val(x)
        _nchw(self._name, v)
        pads = [(p, p) for p in self.padding]
        y = type(self)._fn(nnp.transpose(v, TO_NHWC), self.kernel_size, self.stride, pads)
        return _like(x, nnp.transpose(y, TO_NCHW))

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """The maximum over kernel_size windows of NCHW input (PyTorch's
    MaxPool2d(kernel_size, stride=None, padding=0): stride defaults to the
    kernel size; padded positions never win)."""
    _fn, _name = staticmethod(F.max_pool), "MaxPool2d"


class AvgPool2d(_Pool2d):
    """The mean over kernel_size windows of NCHW input (PyTorch's
    AvgPool2d(kernel_size, stride=None, padding=0) with its default
    count_include_pad=True: a window is divided by its full size)."""
    _fn, _name = staticmethod(F.avg_pool), "AvgPool2d"
