"""The public package: `needle.ops`, the course library's operations on
Tensors (issue 16), lazy outside transforms.

Input: Tensors (and the scalars / axes / shapes each op takes). Output:
Tensors whose `op` and `inputs` record how they were made (the course's
`Tensor.op`, `Tensor.inputs`).

Each op is a class with the course's name (`EWiseAdd()(a, b)`), a
`compute` written with needle.numpy on the inputs' values, and the
course's `gradient(out_grad, node)` written with these ops (for code that
calls it; `Tensor.backward()` differentiates the recorded graph with
needle's autodiff pass, so the derivative of every primitive is written
once, in passes/autodiff). Outside transforms the values are lazy tracers,
so `compute` records equations; under `jit` / `grad` / `vmap` they are
the transform's tracers. Layouts are the course's: conv is NHWC with an
HWIO kernel; `transpose(a, axes=None)` swaps two axes (the last two by
default); `logsumexp` reduces `axes`; `logsoftmax` is over the last axis.
"""
import numpy as np

from . import numpy as nnp
from .nn import functional as F
from .tensor import Tensor, TensorTuple

__all__ = ["Op", "TensorOp", "TensorTupleOp", "EWiseAdd", "AddScalar", "EWiseMul",
           "MulScalar", "EWisePow", "PowerScalar", "EWiseDiv", "DivScalar", "Negate",
           "Transpose", "Reshape", "BroadcastTo", "Summation", "MatMul", "Log", "Exp",
           "ReLU", "Tanh", "Sigmoid", "LogSumExp", "LogSoftmax", "Stack", "Split", "Flip",
           "Dilate", "UnDilate", "Conv", "add", "add_scalar", "multiply", "mul_scalar",
           "power", "power_scalar", "divide", "divide_scalar", "negate", "transpose",
           "reshape", "broadcast_to", "summation", "matmul", "log", "exp", "relu", "tanh",
           "sigmoid", "logsumexp", "logsoftmax", "stack", "split", "flip", "dilate",
           "undilate", "conv", "make_tuple", "tuple_get_item"]


class Op:
    """The course's operator base: `compute(*values)`, `gradient(out_grad,
    node)` (one Tensor per input, or a tuple)."""

    def __call__(self, *args):
        raise NotImplementedError

    def compute(self, *args):
        raise NotImplementedError

    def gradient(self, out_grad, node):
        raise NotImplementedError(f"needle.ops.{type(self).__name__}: no gradient "
                                  f"formula (Tensor.backward() differentiates it)")

    def gradient_as_tuple(self, out_grad, node):
        out = self.gradient(out_grad, node)
        if isinstance(out, tuple):
            return out
        if isinstance(out, list):
            return tuple(out)
        return (out,)

    def __repr__(self):
        return f"{type(self).__name__}()"


class TensorOp(Op):
    """An op with one Tensor result."""

    def __call__(self, *args):
        return Tensor.make_from_op(self, args)


class TensorTupleOp(Op):
    """An op with a tuple of results (`split`): a TensorTuple of Tensors,
    each made by `_TupleItem(op, i)` from the op's inputs."""

    def __call__(self, *args):
        from .tensor import in_transform
        from .lazy import STATE
        vals = [x.value for x in args] if in_transform() else [x._lazy() for x in args]
        rg = STATE.no_grad == 0 and any(x.requires_grad for x in args)
        items = []
        for i, v in enumerate(self.compute(*vals)):
            t = Tensor._make(v, rg)
            if rg:
                t.op, t.inputs = _TupleItem(self, i), list(args)
            items.append(t)
        return TensorTuple(items)


def _of(x):
    return x.realize_cached_data() if isinstance(x, Tensor) else x


# --- elementwise ----------------------------------------------------------------------

class EWiseAdd(TensorOp):
    def compute(self, a, b):
        return nnp.add(a, b)

    def gradient(self, out_grad, node):
        return out_grad, out_grad


class AddScalar(TensorOp):
    def __init__(self, scalar):
        self.scalar = scalar

    def compute(self, a):
        return nnp.add(a, self.scalar)

    def gradient(self, out_grad, node):
        return out_grad


class EWiseMul(TensorOp):
    def compute(self, a, b):
        return nnp.multiply(a, b)

    def gradient(self, out_grad, node):
        a, b = node.inputs
        return out_grad * b, out_grad * a


class MulScalar(TensorOp):
    def __init__(self, scalar):
        self.scalar = scalar

    def compute(self, a):
        return nnp.multiply(a, self.scalar)

    def gradient(self, out_grad, node):
        return out_grad * self.scalar


class EWisePow(TensorOp):
    """a ** b elementwise."""

    def compute(self, a, b):
        return nnp.power(a, b)

    def gradient(self, out_grad, node):
        a, b = node.inputs
        return out_grad * b * a ** (b - 1), out_grad * node * log(a)


class PowerScalar(TensorOp):
    """a ** scalar (an integer scalar: repeated multiplication)."""

    def __init__(self, scalar):
        self.scalar = scalar

    def compute(self, a):
        return nnp.power(a, self.scalar)

    def gradient(self, out_grad, node):
        a = node.inputs[0]
        return out_grad * self.scalar * a ** (self.scalar - 1)


class EWiseDiv(TensorOp):
    def compute(self, a, b):
        return nnp.true_divide(a, b)

    def gradient(self, out_grad, node):
        a, b = node.inputs
        return out_grad / b, -out_grad * a / (b * b)


class DivScalar(TensorOp):
    def __init__(self, scalar):
        self.scalar = scalar

    def compute(self, a):
        return nnp.true_divide(a, self.scalar)

    def gradient(self, out_grad, node):
        return out_grad / self.scalar


class Negate(TensorOp):
    def compute(self, a):
        return nnp.negative(a)

    def gradient(self, out_grad, node):
        return -out_grad


class Log(TensorOp):
    def compute(self, a):
        return nnp.log(a)

    def gradient(self, out_grad, node):
        return out_grad / node.inputs[0]


class Exp(TensorOp):
    def compute(self, a):
        return nnp.exp(a)

    def gradient(self, out_grad, node):
        return out_grad * node


class ReLU(TensorOp):
    def compute(self, a):
        return F.relu(a)

    def gradient(self, out_grad, node):
        a = node.inputs[0]
        mask = ElementWise(lambda v: nnp.astype(nnp.greater(v, 0), v.dtype), "relu_mask")
        return out_grad * mask(a.detach())


class Tanh(TensorOp):
    def compute(self, a):
        return nnp.tanh(a)

    def gradient(self, out_grad, node):
        return out_grad * (1 - node.detach() ** 2)


class Sigmoid(TensorOp):
    def compute(self, a):
        return F.sigmoid(a)

    def gradient(self, out_grad, node):
        s = node.detach()
        return out_grad * s * (1 - s)


class ElementWise(TensorOp):
    """A needle.numpy function of one Tensor that the course has no op
    class for (reflected operators, masks); no gradient formula."""

    def __init__(self, fn, name):
        self.fn, self.name = fn, name

    def compute(self, a):
        return self.fn(a)

    def __repr__(self):
        return f"ElementWise({self.name})"


class GetItem(TensorOp):
    """The course's element access `a[idx]` (basic and integer-array indexing)."""

    def __init__(self, idx):
        self.idx = tuple(_of(i) for i in idx) if isinstance(idx, tuple) else _of(idx)

    def compute(self, a):
        return a[self.idx]


def compare(a, b, fn):
    """A comparison of Tensors (or a Tensor and a scalar / array): a bool Tensor."""
    if isinstance(b, Tensor):
        return _Compare(fn)(a, b)
    return ElementWise(lambda v: fn(v, b), fn.__name__)(a)


class _Compare(TensorOp):
    def __init__(self, fn):
        self.fn = fn

    def compute(self, a, b):
        return self.fn(a, b)


# --- shapes ------------------------------------------------------------------------

def _course_perm(axes, nd):
    if axes is None:
        axes = (nd - 2, nd - 1) if nd >= 2 else ()
    axes = tuple(int(a) % nd for a in axes) if nd else ()
    if len(axes) == 2:
        perm = list(range(nd))
        perm[axes[0]], perm[axes[1]] = perm[axes[1]], perm[axes[0]]
        return tuple(perm)
    if len(axes) == nd:
        return axes
    raise ValueError(f"needle.ops.transpose: axes {axes} must be two axes to swap or a "
                     f"permutation of all {nd} axes")


class Transpose(TensorOp):
    """Swap two axes (the last two when axes is None), or permute all axes."""

    def __init__(self, axes=None):
        self.axes = None if axes is None else tuple(axes)

    def compute(self, a):
        nd = len(a.shape)
        if nd < 2 and self.axes is None:
            return a
        return nnp.transpose(a, _course_perm(self.axes, nd))

    def gradient(self, out_grad, node):
        nd = len(node.shape)
        if nd < 2 and self.axes is None:
            return out_grad
        perm = _course_perm(self.axes, nd)
        return transpose(out_grad, tuple(int(i) for i in np.argsort(perm)))


class Reshape(TensorOp):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def compute(self, a):
        return nnp.reshape(a, self.shape)

    def gradient(self, out_grad, node):
        return reshape(out_grad, node.inputs[0].shape)


class BroadcastTo(TensorOp):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def compute(self, a):
        return nnp.broadcast_to(a, self.shape)

    def gradient(self, out_grad, node):
        shape = node.inputs[0].shape
        lead = len(self.shape) - len(shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape)
                                          if s == 1 and self.shape[lead + i] != 1)
        g = summation(out_grad, axes) if axes else out_grad
        return reshape(g, shape)


def _axes(axes):
    if axes is None:
        return None
    return (int(axes),) if isinstance(axes, (int, np.integer)) else tuple(axes)


def _kept_shape(shape, axes):
    """The shape with the reduced axes kept as 1 (for broadcasting back)."""
    nd = len(shape)
    red = range(nd) if axes is None else [a % nd for a in axes]
    return tuple(1 if i in red else s for i, s in enumerate(shape))


class Summation(TensorOp):
    def __init__(self, axes=None):
        self.axes = _axes(axes)

    def compute(self, a):
        return nnp.sum(a, axis=self.axes)

    def gradient(self, out_grad, node):
        shape = node.inputs[0].shape
        return broadcast_to(reshape(out_grad, _kept_shape(shape, self.axes)), shape)


class MatMul(TensorOp):
    def compute(self, a, b):
        return nnp.matmul(a, b)

    def gradient(self, out_grad, node):
        a, b = node.inputs
        ga, gb = matmul(out_grad, transpose(b)), matmul(transpose(a), out_grad)
        if len(ga.shape) > len(a.shape):
            ga = summation(ga, tuple(range(len(ga.shape) - len(a.shape))))
        if len(gb.shape) > len(b.shape):
            gb = summation(gb, tuple(range(len(gb.shape) - len(b.shape))))
        return ga, gb


class LogSumExp(TensorOp):
    """log(sum(exp(a), axes)), stable (the maximum subtracted first)."""

    def __init__(self, axes=None):
        self.axes = _axes(axes)

    def compute(self, a):
        return F.logsumexp(a, axis=self.axes)

    def gradient(self, out_grad, node):
        a = node.inputs[0]
        kept = _kept_shape(a.shape, self.axes)
        lse = broadcast_to(reshape(node.detach(), kept), a.shape)
        g = broadcast_to(reshape(out_grad, kept), a.shape)
        return g * exp(a.detach() - lse)


class LogSoftmax(TensorOp):
    """a - logsumexp(a) over the last axis (the course's rows of logits)."""

    def compute(self, a):
        return F.log_softmax(a, axis=-1)

    def gradient(self, out_grad, node):
        a = node.inputs[0]
        kept = _kept_shape(a.shape, (-1,))
        s = broadcast_to(reshape(summation(out_grad, (len(a.shape) - 1,)), kept), a.shape)
        return out_grad - exp(node.detach()) * s


class Stack(TensorOp):
    def __init__(self, axis):
        self.axis = int(axis)

    def __call__(self, args):
        return Tensor.make_from_op(self, list(args))

    def compute(self, *arrays):
        return nnp.stack(list(arrays), axis=self.axis)

    def gradient(self, out_grad, node):
        return tuple(split(out_grad, self.axis))


class Split(TensorTupleOp):
    """The slices of `a` along `axis`, each without that axis."""

    def __init__(self, axis):
        self.axis = int(axis)

    def compute(self, a):
        n = a.shape[self.axis]
        pre = (slice(None),) * (self.axis % len(a.shape))
        return tuple(a[pre + (i,)] for i in range(n))

    def gradient(self, out_grad, node):
        return stack(list(out_grad), self.axis)


class _TupleItem(TensorOp):
    """Result `index` of a TensorTupleOp (the course's tuple_get_item)."""

    def __init__(self, op, index):
        self.of, self.index = op, int(index)

    def compute(self, *vals):
        return self.of.compute(*vals)[self.index]


class Flip(TensorOp):
    def __init__(self, axes):
        self.axes = _axes(axes)

    def compute(self, a):
        return nnp.flip(a, axis=self.axes)

    def gradient(self, out_grad, node):
        return flip(out_grad, self.axes)


def _dilated(a, axis, d):
    """a with d zeros after every element along axis (length n * (d + 1), as
    the course's dilate)."""
    shape = tuple(a.shape)
    axis %= len(shape)
    z = nnp.zeros(shape[:axis + 1] + (d,) + shape[axis + 1:], a.dtype)
    both = nnp.concatenate([nnp.expand_dims(a, axis + 1), z], axis=axis + 1)
    return nnp.reshape(both, shape[:axis] + (shape[axis] * (d + 1),) + shape[axis + 1:])


class Dilate(TensorOp):
    def __init__(self, axes, dilation):
        self.axes, self.dilation = _axes(axes), int(dilation)

    def compute(self, a):
        if not self.dilation:
            return a
        for ax in self.axes:
            if ax % len(a.shape) < len(a.shape):
                a = _dilated(a, ax, self.dilation)
        return a

    def gradient(self, out_grad, node):
        return undilate(out_grad, self.axes, self.dilation)


class UnDilate(TensorOp):
    def __init__(self, axes, dilation):
        self.axes, self.dilation = _axes(axes), int(dilation)

    def compute(self, a):
        idx = [slice(None)] * len(a.shape)
        for ax in self.axes:
            idx[ax] = slice(None, None, self.dilation + 1)
        return a[tuple(idx)]

    def gradient(self, out_grad, node):
        return dilate(out_grad, self.axes, self.dilation)


class Conv(TensorOp):
    """2-d convolution, NHWC input, HWIO kernel, as the course."""

    def __init__(self, stride=1, padding=0):
        self.stride, self.padding = int(stride), int(padding)

    def compute(self, a, b):
        return F.conv(a, b, stride=self.stride, padding=self.padding)

    def gradient(self, out_grad, node):
        x, w = node.inputs
        k = w.shape[0]
        g = dilate(out_grad, (1, 2), self.stride - 1) if self.stride > 1 else out_grad
        if self.stride > 1:        # drop the dilated rows / columns past the input
            h = x.shape[1] + 2 * self.padding - k + 1
            wd = x.shape[2] + 2 * self.padding - k + 1
            g = GetItem((slice(None), slice(0, h), slice(0, wd), slice(None)))(g)
        wf = transpose(flip(w, (0, 1)), (2, 3))
        gx = conv(g, wf, padding=k - 1 - self.padding)
        xt = transpose(x, (0, 3))                       # (C_in, H, W, N)
        gt = transpose(transpose(g, (0, 1)), (1, 2))    # (H', W', N, C_out)
        gw = conv(xt, gt, padding=self.padding)         # (C_in, k, k, C_out)
        return gx, transpose(transpose(gw, (0, 1)), (1, 2))


# --- the course's functions ------------------------------------------------------------

def add(a, b):
    return EWiseAdd()(a, b)


def add_scalar(a, scalar):
    return AddScalar(scalar)(a)


def multiply(a, b):
    return EWiseMul()(a, b)


def mul_scalar(a, scalar):
    return MulScalar(scalar)(a)


def power(a, b):
    return EWisePow()(a, b)


def power_scalar(a, scalar):
    return PowerScalar(scalar)(a)


def divide(a, b):
    return EWiseDiv()(a, b)


def divide_scalar(a, scalar):
    return DivScalar(scalar)(a)


def negate(a):
    return Negate()(a)


def transpose(a, axes=None):
    return Transpose(axes)(a)


def reshape(a, shape):
    return Reshape(shape)(a)


def broadcast_to(a, shape):
    return BroadcastTo(shape)(a)


def summation(a, axes=None):
    return Summation(axes)(a)


def matmul(a, b):
    return MatMul()(a, b)


def log(a):
    return Log()(a)


def exp(a):
    return Exp()(a)


def relu(a):
    return ReLU()(a)


def tanh(a):
    return Tanh()(a)


def sigmoid(a):
    return Sigmoid()(a)


def logsumexp(a, axes=None):
    return LogSumExp(axes)(a)


def logsoftmax(a):
    return LogSoftmax()(a)


def stack(args, axis):
    return Stack(axis)(list(args))


def split(a, axis):
    return Split(axis)(a)


def flip(a, axes):
    return Flip(axes)(a)


def dilate(a, axes, dilation):
    return Dilate(axes, dilation)(a)


def undilate(a, axes, dilation):
    return UnDilate(axes, dilation)(a)


def conv(a, b, stride=1, padding=0):
    return Conv(stride, padding)(a, b)


def make_tuple(*args):
    return TensorTuple(args)


def tuple_get_item(value, index):
    return value[index]
