"""needle.numpy: reductions with numpy's `axis` / `keepdims` and scans.

Input: arrays or tracers. Output: reduced arrays. Sums of bool and small ints
accumulate in the default int (int64), as numpy does; mean of integers is the
default float (float32).
"""
import numpy as np

from ..ir import dtypes
from ..ir.primitives import (argmax_p, argmin_p, cumsum_p, reduce_max_p, reduce_min_p,
                              reduce_prod_p, reduce_sum_p)
from ._core import asarray, cast, shape_of, user_line, with_location
from ..ir.core import ShapeError


def normalize_axis(axis, ndim, name):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < ndim:
            raise with_location(ShapeError(f"{name}: axis {a} is out of bounds for an array "
                                           f"of dimension {ndim}"), user_line(3))
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise with_location(ShapeError(f"{name}: repeated axis in {axes}"), user_line(3))
    return tuple(out)


def _keep(out, shape, axes, keepdims):
    if not keepdims:
        return out
    from .shape import reshape
    return reshape(out, tuple(1 if d in axes else n for d, n in enumerate(shape)))


def _acc_dtype(dt):
    if dt == np.bool_ or (dt.kind == "i" and dt.itemsize < 8):
        return dtypes.int64
    if dt.kind == "u" and dt.itemsize < 8:
        return dtypes.uint64
    return dt


def _reduce(prim, name, acc=True):
    def fn(a, axis=None, keepdims=False, dtype=None):
        a = asarray(a)
        shape = shape_of(a)
        axes = normalize_axis(axis, len(shape), name)
        dt = np.dtype(dtype) if dtype is not None else (_acc_dtype(a.dtype) if acc else a.dtype)
        if not acc and dt == np.bool_:
            a, back = cast(a, dtypes.int32), True
        else:
            a, back = cast(a, dt), False
        out = prim.bind(a, axes=axes) if axes else a
        if back:
            out = cast(out, np.bool_)
        return _keep(out, shape, axes, keepdims)
    fn.__name__ = name
    return fn


sum = _reduce(reduce_sum_p, "sum")  # noqa: A001
prod = _reduce(reduce_prod_p, "prod")
max = _reduce(reduce_max_p, "max", acc=False)  # noqa: A001
min = _reduce(reduce_min_p, "min", acc=False)  # noqa: A001
amax, amin = max, min


def mean(a, axis=None, keepdims=False, dtype=None):
    from .math import divide
    a = asarray(a)
    shape = shape_of(a)
    axes = normalize_axis(axis, len(shape), "mean")
    count = int(np.prod([shape[d] for d in axes], dtype=np.int64))
    dt = np.dtype(dtype) if dtype is not None else (
        a.dtype if a.dtype.kind == "f" else dtypes.DEFAULT_FLOAT)
    s = sum(cast(a, dt), axis=axes, keepdims=keepdims)
    return divide(s, dt.type(count)) if count else divide(s, dt.type(np.nan))


def var(a, axis=None, keepdims=False, ddof=0, dtype=None):
    from .math import divide, multiply, subtract
    a = asarray(a)
    shape = shape_of(a)
    axes = normalize_axis(axis, len(shape), "var")
    dt = np.dtype(dtype) if dtype is not None else (
        a.dtype if a.dtype.kind == "f" else dtypes.DEFAULT_FLOAT)
    a = cast(a, dt)
    centered = subtract(a, mean(a, axis=axes, keepdims=True))
    # numpy and JAX divide by max(n - ddof, 0): inf (or NaN for 0 / 0) past n.
    count = int(np.prod([shape[d] for d in axes], dtype=np.int64)) - ddof
    count = count if count > 0 else 0       # (`max` is this module's reduction)
    ss = sum(multiply(centered, centered), axis=axes, keepdims=keepdims)
    return divide(ss, dt.type(count))


def std(a, axis=None, keepdims=False, ddof=0, dtype=None):
    from .math import sqrt
    return sqrt(var(a, axis=axis, keepdims=keepdims, ddof=ddof, dtype=dtype))


def _arg(prim, name):
    def fn(a, axis=None, keepdims=False):
        from .shape import reshape
        a = asarray(a)
        if axis is None:
            shape = shape_of(a)
            out = prim.bind(reshape(a, (-1,)), axis=0, index_dtype=dtypes.int64)
            return reshape(out, (1,) * len(shape)) if keepdims else out
        shape = shape_of(a)
        (ax,) = normalize_axis(axis, len(shape), name)
        if shape[ax] == 0:
            raise with_location(ValueError(f"{name}: attempt to get {name} of an empty "
                                           f"sequence (axis {ax} of shape {shape})"),
                                user_line(2))
        out = prim.bind(a, axis=ax, index_dtype=dtypes.int64)
        return _keep(out, shape, (ax,), keepdims)
    fn.__name__ = name
    return fn


argmax = _arg(argmax_p, "argmax")
argmin = _arg(argmin_p, "argmin")


def cumsum(a, axis=None, dtype=None):
    from .shape import reshape
    a = asarray(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    (ax,) = normalize_axis(axis, len(shape_of(a)), "cumsum")
    dt = np.dtype(dtype) if dtype is not None else _acc_dtype(a.dtype)
    return cumsum_p.bind(cast(a, dt), axis=ax, reverse=False)


def all(a, axis=None, keepdims=False):  # noqa: A001
    return min(cast(asarray(a), np.bool_), axis=axis, keepdims=keepdims)


def any(a, axis=None, keepdims=False):  # noqa: A001
    return max(cast(asarray(a), np.bool_), axis=axis, keepdims=keepdims)


