"""needle.numpy: operators and array methods of traced values (`x + y`,
`x @ w`, `x.T`, `x.sum()`, `x.at[i].set(v)`, ...), attached to
needle.tracer.Tracer so the tracer stage does not import needle.numpy.

Input: the Tracer class. Output: the same class with numpy-like methods.
"""
from ..tracer.core import Tracer
from . import indexing, linalg_ops, math, reductions, shape
from ._core import cast


# Classes whose reflected operators take over `tracer + x` (needle.Tensor:
# `device_array @ tensor` is the Tensor's __rmatmul__, as for numpy arrays).
DEFER_TO = [()]


def defer_to(cls):
    DEFER_TO[0] += (cls,)


def _op(f):
    def op(self, other):
        if isinstance(other, DEFER_TO[0]):
            return NotImplemented
        return f(self, other)
    return op


def _swap(f):
    return lambda self, other: f(other, self)


_BINOPS = {
    "add": math.add, "sub": math.subtract, "mul": math.multiply,
    "truediv": math.true_divide, "floordiv": math.floor_divide, "mod": math.remainder,
    "pow": math.power, "matmul": linalg_ops.matmul, "and": math.bitwise_and,
    "or": math.bitwise_or, "xor": math.bitwise_xor,
}


def attach():
    for name, f in _BINOPS.items():
        setattr(Tracer, f"__{name}__", _op(f))
        setattr(Tracer, f"__r{name}__", _swap(f))
    for name, f in [("lt", math.less), ("le", math.less_equal), ("gt", math.greater),
                    ("ge", math.greater_equal), ("eq", math.equal), ("ne", math.not_equal)]:
        setattr(Tracer, f"__{name}__", lambda self, other, f=f: f(self, other))
    Tracer.__neg__ = lambda self: math.negative(self)
    Tracer.__pos__ = lambda self: self
    Tracer.__abs__ = lambda self: math.absolute(self)
    Tracer.__invert__ = lambda self: math.invert(self)
    Tracer.__getitem__ = lambda self, idx: indexing.getitem(self, idx)
    Tracer.T = property(lambda self: shape.transpose(self))
    Tracer.mT = property(lambda self: shape.swapaxes(self, -1, -2))
    Tracer.at = property(lambda self: indexing.at(self))
    Tracer.astype = lambda self, dtype: cast(self, dtype)
    Tracer.reshape = lambda self, *s: shape.reshape(
        self, s[0] if len(s) == 1 and not isinstance(s[0], int) else s)
    Tracer.transpose = lambda self, *axes: shape.transpose(
        self, (axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes) or None)
    Tracer.swapaxes = shape.swapaxes
    Tracer.squeeze = shape.squeeze
    Tracer.ravel = shape.ravel
    Tracer.flatten = shape.ravel
    Tracer.dot = linalg_ops.dot
    Tracer.clip = lambda self, a_min=None, a_max=None: math.clip(self, a_min, a_max)
    Tracer.take = indexing.take
    Tracer.cumsum = reductions.cumsum
    from . import sorting           # the array methods JAX's Array has (sort returns a copy)
    Tracer.cumprod = sorting.cumprod
    Tracer.sort = lambda self, axis=-1, **kw: sorting.sort(self, axis, **kw)
    Tracer.argsort = lambda self, axis=-1, **kw: sorting.argsort(self, axis, **kw)
    Tracer.nonzero = lambda self, **kw: sorting.nonzero(self, **kw)
    Tracer.searchsorted = lambda self, v, side="left", sorter=None: sorting.searchsorted(
        self, v, side, sorter)
    for name in ("sum", "mean", "max", "min", "prod", "var", "std", "argmax", "argmin",
                 "all", "any"):
        setattr(Tracer, name, getattr(reductions, name))
