"""needle.numpy internals: turning user arguments into typed operands,
numpy broadcasting and JAX type promotion on top of the strict primitives.

Input: numpy arrays, Python scalars, tracers. Output: operands of one dtype
and shape, ready for `Primitive.bind`.
"""
import sys

import numpy as np

from ..ir import dtypes
from ..ir.core import ShapeError
from ..ir.primitives import broadcast_in_dim_p, convert_element_type_p
from ..tracer.core import Tracer, with_location
from ..tracer.source import user_line

_SCALARS = (bool, int, float)


def typeof(x):
    """(dtype, weak_type) of an operand."""
    if isinstance(x, Tracer):
        return x.dtype, x.weak_type
    if isinstance(x, _SCALARS):
        return dtypes.scalar_type(x)
    if isinstance(x, (np.ndarray, np.generic)):
        return dtypes.canonicalize(x.dtype, "array"), False
    return typeof(asarray(x))


def shape_of(x):
    return x.shape if isinstance(x, (Tracer, np.ndarray, np.generic)) else np.shape(x)


def asarray(x, dtype=None):
    """Operand form of x: tracers stay, Python data becomes a numpy array (Python
    floats become float32, the default float, as in JAX)."""
    if isinstance(x, Tracer):
        return x if dtype is None else cast(x, dtype)
    if isinstance(x, (np.ndarray, np.generic)):
        dtypes.canonicalize(x.dtype, "array")
        arr = np.asarray(x)
        if not arr.dtype.isnative:          # '>f4': needle's arrays are in host order
            arr = arr.astype(arr.dtype.newbyteorder("="))
        return arr if dtype is None else cast(arr, dtype)
    if isinstance(x, (list, tuple)) and any(isinstance(e, Tracer) for e in _flat(x)):
        from .shape import stack
        return stack([asarray(e) for e in x], dtype=dtype)
    if dtype is None:
        arr = np.asarray(x)
        if arr.dtype == np.float64 and not _has_strong_float64(x):
            # Python floats are weak: they become the default float (float32),
            # but float64 numpy values inside a list keep their dtype (as JAX).
            arr = arr.astype(dtypes.DEFAULT_FLOAT)
        elif arr.dtype.kind == "c":
            raise dtypes.DTypeError("complex numbers are not supported by needle")
        elif arr.dtype.kind in "US" or arr.dtype == object:
            raise TypeError(f"cannot make a needle array from {type(x).__name__} "
                            f"({arr.dtype})")
        return arr
    return np.asarray(x, dtype=dtypes.canonicalize(dtype))


def _has_strong_float64(x):
    if isinstance(x, (list, tuple)):
        return any(_has_strong_float64(e) for e in x)
    return isinstance(x, (np.ndarray, np.generic)) and np.dtype(x.dtype) == np.float64


def _flat(x):
    for e in x:
        if isinstance(e, (list, tuple)):
            yield from _flat(e)
        else:
            yield e


def cast(x, dtype, weak_type=False):
    """x converted to `dtype` (a primitive under tracing, numpy eagerly)."""
    dtype = np.dtype(dtype)
    if isinstance(x, _SCALARS):
        return dtype.type(x)
    if isinstance(x, Tracer):
        if x.dtype == dtype and x.weak_type == weak_type:
            return x
        return convert_element_type_p.bind(x, new_dtype=dtype, weak_type=weak_type)
    x = np.asarray(x)
    return x if x.dtype == dtype else convert_element_type_p.bind(x, new_dtype=dtype,
                                                                  weak_type=False)


def result_type(*xs):
    return dtypes.result_type(*[typeof(x) for x in xs])


class Float64PromotionWarning(UserWarning):
    """A float64 scalar made a float32 array computation float64."""


_warned_lines = set()


def _is_f64_scalar(x):
    return isinstance(x, (np.ndarray, np.generic)) and np.ndim(x) == 0 and \
        np.dtype(x.dtype) == np.float64


def _is_f32_array(x):
    return isinstance(x, (Tracer, np.ndarray)) and x.dtype == np.float32 and x.ndim > 0


def _warn_float64(xs):
    """Warn once per user line when a strong float64 scalar (a numpy float64,
    as `1.0 / np.sqrt(d)` gives, or a 0-d float64 array) promotes a float32
    array: under JAX's x64 rules the result, and all that follows, is
    float64, several times slower."""
    if not any(_is_f64_scalar(x) for x in xs):
        return
    if not any(_is_f32_array(x) for x in xs):
        return
    where = user_line(3)
    if where in _warned_lines:
        return
    _warned_lines.add(where)
    import warnings
    level, f = 3, sys._getframe(2)
    while f is not None and f.f_globals.get("__name__", "").split(".")[0] == "needle":
        level, f = level + 1, f.f_back
    warnings.warn(
        f"a float64 scalar (a numpy float64 or a 0-d float64 array) promotes a float32 "
        f"array computation to float64 at {where}: the result, and what is computed from "
        f"it, is float64 (JAX's x64 promotion), several times slower. Use a Python float "
        f"(weakly typed: it keeps float32) or np.float32(...) if float32 is meant "
        f"(shown once per line)", Float64PromotionWarning, stacklevel=level)


def promote(*xs, to_float=False):
    """Cast operands to their common dtype (JAX's lattice). With to_float, an
    integer or bool result becomes the default float (as jnp.exp(int) does).
    A float64 scalar promoting a float32 array warns (Float64PromotionWarning)."""
    dt, weak = result_type(*xs)
    if dt == np.float64:
        _warn_float64(xs)
    if to_float and dt.kind != "f":
        dt, weak = dtypes.DEFAULT_FLOAT, weak
    return [cast(x, dt) if typeof(x) != (dt, weak) or isinstance(x, _SCALARS) else x
            for x in xs]


def broadcast_shapes(*shapes, name="broadcast"):
    nd = max((len(s) for s in shapes), default=0)
    out = []
    for d in range(nd):
        size = 1
        for s in shapes:
            n = s[d - nd + len(s)] if d - nd + len(s) >= 0 else 1
            if n != 1:
                if size != 1 and size != n:
                    raise with_location(ShapeError(
                        f"{name}: shapes " + ", ".join(str(tuple(s)) for s in shapes)
                        + " cannot be broadcast together"), user_line(3))
                size = n
        out.append(size)
    return tuple(out)


def broadcast_to(x, shape, name="broadcast_to"):
    """Broadcast x to `shape` with numpy's rules (trailing alignment)."""
    shape = tuple(shape)
    xs = shape_of(x)
    if tuple(xs) == shape:
        return x
    if len(xs) > len(shape) or broadcast_shapes(xs, shape, name=name) != shape:
        raise with_location(ShapeError(f"{name}: cannot broadcast shape {tuple(xs)} to "
                                       f"{shape}"), user_line(3))
    nd = len(shape)
    # Drop size-1 dims that expand, so the IR records a plain broadcast.
    keep = [i for i, n in enumerate(xs) if n == shape[nd - len(xs) + i]]
    if len(keep) != len(xs):
        from .shape import reshape
        x = reshape(x, tuple(xs[i] for i in keep))
    dims = tuple(nd - len(xs) + i for i in keep)
    return broadcast_in_dim_p.bind(x, shape=shape, broadcast_dimensions=dims)


def broadcast_arrays(*xs, name="broadcast"):
    """Broadcast operands to their common shape; 0-d operands stay 0-d (the
    elementwise primitives accept them beside any shape)."""
    shapes = [tuple(shape_of(x)) for x in xs]
    shape = broadcast_shapes(*shapes, name=name)
    return [x if s == shape or s == () else broadcast_to(x, shape, name)
            for x, s in zip(xs, shapes)]


def unary(prim, to_float=False):
    def fn(x):
        (x,) = promote(x, to_float=to_float)
        return prim.bind(x)
    fn.__name__ = prim.name
    return fn


def binary(prim, name=None, to_float=False, bool_prim=None):
    """numpy-style binary function: promote, broadcast, bind `prim` (or
    `bool_prim` when the operands are bool)."""
    def fn(x, y):
        x, y = promote(x, y, to_float=to_float)
        x, y = broadcast_arrays(x, y, name=name or prim.name)
        if bool_prim is not None and typeof(x)[0] == dtypes.bool_:
            return bool_prim.bind(x, y)
        return prim.bind(x, y)
    fn.__name__ = name or prim.name
    return fn
