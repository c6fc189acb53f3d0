"""needle.nn.layers: the course library's layers as Modules.

Input: arrays (numpy, device Arrays, tracers) or Tensors. Output: the kind
given: a layer called on an array returns an array, on a Tensor a Tensor.
Each computes with needle.numpy / needle.nn.functional on the values of its
cells, so the same code runs eagerly, under jit, grad and vmap, and in loop
bodies. Signatures and layouts are the course's: Linear weight (in, out),
bias (1, out); BatchNorm1d and LayerNorm1d weight and bias (dim,); every
constructor also takes device=None, dtype="float32".
"""
import numpy as np

from .. import init
from .. import numpy as nnp
from ..tensor import Parameter, Tensor
from . import functional as F
from .module import GeneratorCell, Module

__all__ = ["Identity", "Flatten", "ReLU", "Tanh", "Sigmoid", "GELU", "Linear", "Sequential",
           "Residual", "SoftmaxLoss", "CrossEntropyLoss", "MSELoss", "BatchNorm1d",
           "LayerNorm1d", "Dropout"]   # BatchNorm2d, LayerNorm: norm_layers.py


def _val(x):
    return x.value if isinstance(x, Tensor) else x


def _like(x, y):
    """y as the kind x is: a Tensor for a Tensor input."""
    return Tensor._make(y, True) if isinstance(x, Tensor) else y


class Identity(Module):
    def forward(self, x):
        return x


class Flatten(Module):
    """(B, ...) -> (B, prod(...))."""

    def forward(self, x):
        v = _val(x)
        shape = tuple(v.shape)
        return _like(x, nnp.reshape(v, (shape[0], int(np.prod(shape[1:], dtype=np.int64)))))


class ReLU(Module):
    def forward(self, x):
        return _like(x, F.relu(_val(x)))


class Tanh(Module):
    def forward(self, x):
        return _like(x, nnp.tanh(_val(x)))


class Sigmoid(Module):
    def forward(self, x):
        return _like(x, F.sigmoid(_val(x)))


class GELU(Module):
    """GELU; approximate=False (PyTorch's default) uses erf, True the tanh form."""

    def __init__(self, approximate=False):
        super().__init__()
        self.approximate = bool(approximate)

    def forward(self, x):
        return _like(x, F.gelu(_val(x), approximate=self.approximate))


class Linear(Module):
    """y = x @ weight + bias; weight (in_features, out_features) and bias
    (1, out_features), both Kaiming-uniform as in the course (the bias with
    fan_in = out_features, the course's choice)."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype="float32"):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(init.kaiming_uniform(self.in_features, self.out_features,
                                                     device=device, dtype=dtype))
        if bias:
            b = init.kaiming_uniform(self.out_features, 1, device=device, dtype=dtype)
            self.bias = Parameter(b.reshape((1, self.out_features)))
        else:
            self.bias = None

    def forward(self, x):
        y = nnp.matmul(_val(x), self.weight.value)
        if self.bias is not None:
            y = nnp.add(y, self.bias.value)
        return _like(x, y)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Sequential(Module):
    def __init__(self, *modules):
        super().__init__()
        self.modules = modules

    def forward(self, x):
        for m in self.modules:
            x = m(x)
        return x


class Residual(Module):
    """fn(x) + x."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        y = self.fn(x)
        return _like(x, nnp.add(_val(y), _val(x)))


def _labels(y):
    return _val(y)


class SoftmaxLoss(Module):
    """Mean over the batch of logsumexp(logits) - logits[y] (integer labels y)."""

    def forward(self, logits, y):
        z = _val(logits)
        k = z.shape[-1]
        lse = F.logsumexp(z, axis=-1)
        picked = nnp.sum(nnp.multiply(z, F.one_hot(_labels(y), k, dtype=z.dtype)), axis=-1)
        return _like(logits, nnp.mean(nnp.subtract(lse, picked)))


class CrossEntropyLoss(Module):
    """SoftmaxLoss with label smoothing: (1 - s) * nll + s * the mean over
    classes of -log softmax."""

    def __init__(self, label_smoothing=0.0):
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits, y):
        z = _val(logits)
        k = z.shape[-1]
        logp = F.log_softmax(z, axis=-1)
        nll = nnp.negative(nnp.sum(nnp.multiply(logp, F.one_hot(_labels(y), k, dtype=z.dtype)),
                                   axis=-1))
        s = self.label_smoothing
        if s:
            nll = nnp.add(nnp.multiply(1.0 - s, nll),
                          nnp.multiply(-s / k, nnp.sum(logp, axis=-1)))
        return _like(logits, nnp.mean(nll))


class MSELoss(Module):
    """The mean of (prediction - target)**2 over all elements."""

    def forward(self, pred, target):
        d = nnp.subtract(_val(pred), _val(target))
        return _like(pred, nnp.mean(nnp.multiply(d, d)))


class _Norm(Module):
    def _affine(self, dim, device, dtype):
        self.weight = Parameter(init.ones(dim, device=device, dtype=dtype))
        self.bias = Parameter(init.zeros(dim, device=device, dtype=dtype))


class BatchNorm1d(_Norm):
    """Batch normalization over axis 0 of (B, dim) (the course's): in
    training, normalizes with the batch mean and biased variance and
    updates running_mean / running_var (buffers) as
    (1 - momentum) * running + momentum * batch statistic; in eval, uses the
    running statistics."""

    def __init__(self, dim, eps=1e-5, momentum=0.1, device=None, dtype="float32"):
        super().__init__()
        self.dim, self.eps, self.momentum = int(dim), float(eps), float(momentum)
        self._affine(self.dim, device, dtype)
        self.running_mean = init.zeros(self.dim, device=device, dtype=dtype)
        self.running_var = init.ones(self.dim, device=device, dtype=dtype)

    _axes = (0,)

    def _shape(self, v):
        return (1, self.dim)

    def forward(self, x):
        v = _val(x)
        shape = self._shape(v)
        if self.training:
            mean = nnp.mean(v, axis=self._axes)
            d = nnp.subtract(v, nnp.reshape(mean, shape))
            var = nnp.mean(nnp.multiply(d, d), axis=self._axes)
            m = self.momentum
            self.running_mean = nnp.add(nnp.multiply(1.0 - m, self.running_mean.value),
                                        nnp.multiply(m, mean))
            self.running_var = nnp.add(nnp.multiply(1.0 - m, self.running_var.value),
                                       nnp.multiply(m, var))
        else:
            mean, var = self.running_mean.value, self.running_var.value
            d = nnp.subtract(v, nnp.reshape(mean, shape))
        y = nnp.multiply(d, nnp.reshape(nnp.rsqrt(nnp.add(var, self.eps)), shape))
        y = nnp.add(nnp.multiply(y, nnp.reshape(self.weight.value, shape)),
                    nnp.reshape(self.bias.value, shape))
        return _like(x, y)

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}, momentum={self.momentum}"


class LayerNorm1d(_Norm):
    """Normalization over the last axis (biased variance), then weight * x + bias."""

    def __init__(self, dim, eps=1e-5, device=None, dtype="float32"):
        super().__init__()
        self.dim, self.eps = int(dim), float(eps)
        self._affine(self.dim, device, dtype)

    _nd = 1

    def forward(self, x):
        v = _val(x)
        axes = tuple(range(len(v.shape) - self._nd, len(v.shape)))
        mean = nnp.mean(v, axis=axes, keepdims=True)
        d = nnp.subtract(v, mean)
        var = nnp.mean(nnp.multiply(d, d), axis=axes, keepdims=True)
        y = nnp.multiply(d, nnp.rsqrt(nnp.add(var, self.eps)))
        return _like(x, nnp.add(nnp.multiply(y, self.weight.value), self.bias.value))

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}"


class Dropout(Module):
    """Inverted dropout: in training, zeroes each element with probability
    p and scales the rest by 1 / (1 - p); the identity in eval. The mask
    comes from a GeneratorCell (rng=: a seed, a needle.random.Generator or
    a GeneratorCell; None draws a key from the global generator), so a
    jitted step draws a fresh mask at every call, inside its kernels."""

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = float(p)
        self.rng = rng if isinstance(rng, GeneratorCell) else GeneratorCell(rng)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        v = _val(x)
        if self.p >= 1.0:
            return _like(x, nnp.zeros_like(v))
        keep = self.rng.bernoulli(np.float32(1.0 - self.p), tuple(v.shape))
        return _like(x, nnp.where(keep, nnp.multiply(v, 1.0 / (1.0 - self.p)), 0.0))

    def extra_repr(self):
        return f"p={self.p}"
