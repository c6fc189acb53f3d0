"""Stage ir: reductions and scans: reduce_sum, reduce_max, reduce_min,
reduce_prod, argmax, argmin, cumsum.

Input: nothing. Output: `<name>_p` Primitive objects with abstract eval,
numpy implementation and traits (kind="reduction"; cumsum has its own loop,
`own_loop`), and `REDUCTIONS` (name -> Primitive).

Reductions drop the reduced axes (keepdims is a reshape in needle.numpy).
reduce_max / reduce_min of an empty axis give the identity (-inf / +inf, or
the integer extremes), as JAX does; NaN propagates.
"""
import numpy as np

from .. import dtypes
from ..core import Primitive, ShapedArray, ShapeError, Traits

__all__ = ["REDUCTIONS", "reduce_sum_p", "reduce_max_p", "reduce_min_p", "reduce_prod_p",
           "argmax_p", "argmin_p", "cumsum_p", "reduce_identity"]

REDUCTIONS = {}


def _check_axes(name, x, axes):
    axes = tuple(axes)
    if len(set(axes)) != len(axes) or any(not 0 <= a < x.ndim for a in axes):
        raise ShapeError(f"{name}: axes {axes} out of range or repeated for shape {x.shape}")
    return axes


def _reduce_aval(name):
    def rule(x, *, axes):
        axes = _check_axes(name, x, axes)
        if name == "reduce_prod" and x.dtype == dtypes.bool_:
            raise TypeError(f"{name}: bool operands are not supported")
        shape = tuple(n for d, n in enumerate(x.shape) if d not in axes)
        return [ShapedArray(shape, x.dtype, x.weak_type)]
    return rule


def reduce_identity(name, dtype):
    """The value a reduction starts from, as a numpy scalar of `dtype`."""
    dtype = np.dtype(dtype)
    if name == "reduce_sum":
        return dtype.type(0)
    if name == "reduce_prod":
        return dtype.type(1)
    big = name == "reduce_min"
    if dtype.kind == "f":
        return dtype.type(np.inf if big else -np.inf)
    if dtype == np.bool_:
        return np.bool_(big)
    info = np.iinfo(dtype)
    return dtype.type(info.max if big else info.min)


def _def_reduce(name, np_fn):
    p = Primitive(name, Traits(kind="reduction"))
    p.abstract_eval = _reduce_aval(name)

    def impl(x, *, axes):
        init = reduce_identity(name, x.dtype)
        if name in ("reduce_max", "reduce_min"):
            out = np_fn(x, axis=tuple(axes), initial=init)
        else:
            out = np_fn(x, axis=tuple(axes), dtype=x.dtype)
        return [np.asarray(out, dtype=x.dtype)]
    p.impl = impl
    REDUCTIONS[name] = p
    return p


reduce_sum_p = _def_reduce("reduce_sum", np.sum)
reduce_max_p = _def_reduce("reduce_max", np.max)
reduce_min_p = _def_reduce("reduce_min", np.min)
reduce_prod_p = _def_reduce("reduce_prod", np.prod)


def _arg_aval(name):
    def rule(x, *, axis, index_dtype):
        _check_axes(name, x, (axis,))
        if x.shape[axis] == 0:
            raise ShapeError(f"{name}: axis {axis} of shape {x.shape} is empty")
        shape = tuple(n for d, n in enumerate(x.shape) if d != axis)
        return [ShapedArray(shape, dtypes.canonicalize(index_dtype), False)]
    return rule


def _def_arg(name, np_fn):
    p = Primitive(name, Traits(kind="reduction"))
    p.abstract_eval = _arg_aval(name)
    # numpy's argmax/argmin return the first NaN, as needle's kernels do.
    p.impl = lambda x, *, axis, index_dtype: [np.asarray(np_fn(x, axis=axis), dtype=index_dtype)]
    REDUCTIONS[name] = p
    return p


argmax_p = _def_arg("argmax", np.argmax)
argmin_p = _def_arg("argmin", np.argmin)


def _cumsum_aval(x, *, axis, reverse=False):
    _check_axes("cumsum", x, (axis,))
    if x.dtype == dtypes.bool_:
        raise TypeError("cumsum: bool operands are not supported (convert first)")
    return [x]


def _cumsum_impl(x, *, axis, reverse=False):
    if reverse:
        return [np.ascontiguousarray(np.flip(np.cumsum(np.flip(x, axis), axis=axis,
                                                       dtype=x.dtype), axis))]
    return [np.cumsum(x, axis=axis, dtype=x.dtype)]


# a scan: each output element reads a prefix of its row, a loop of its own
cumsum_p = Primitive("cumsum", Traits(kind="reduction", own_loop=True))
cumsum_p.abstract_eval = _cumsum_aval
cumsum_p.impl = _cumsum_impl
