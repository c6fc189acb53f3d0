"""needle.numpy.linalg: numpy.linalg functions composed from needle.numpy.

Stage: library code run at call time (eagerly or while tracing). Input:
arrays or tracers. Output: arrays or tracers. Only `norm` so far (no
decompositions: they would need primitives of their own).
"""
import numpy as _np

from . import math as _m
from . import reductions as _r
from ._core import cast as _cast, promote as _promote, shape_of as _shape_of

__all__ = ["norm"]


def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 - numpy's name
    """Vector norms (ord None / 2, 1, inf, -inf, 0, other p) and matrix norms
    ('fro', None, 1, -1, inf, -inf); 2, -2 and 'nuc' need an SVD: not supported."""
    x = _promote(x, to_float=True)[0]
    nd = len(_shape_of(x))
    if axis is None:
        if ord is None:
            return _frob(x, tuple(range(nd)), keepdims)
        if nd == 1:
            axis = (0,)
        elif nd == 2:
            axis = (0, 1)
        else:
            raise ValueError(f"norm: improper number of dimensions to norm ({x.shape})")
    axes = _r.normalize_axis(axis, nd, "norm")
    a = _m.absolute(x)
    if len(axes) == 1:
        if ord is None or ord == 2:
            return _frob(x, axes, keepdims)
        if ord == _np.inf:
            return _r.max(a, axis=axes, keepdims=keepdims)
        if ord == -_np.inf:
            return _r.min(a, axis=axes, keepdims=keepdims)
        if ord == 1:
            return _r.sum(a, axis=axes, keepdims=keepdims)
        if ord == 0:
            return _r.sum(_cast(_m.not_equal(x, 0), x.dtype), axis=axes, keepdims=keepdims)
        if isinstance(ord, str):
            raise ValueError(f"norm: invalid norm order {ord!r} for vectors")
        return _m.power(_r.sum(_m.power(a, float(ord)), axis=axes, keepdims=keepdims),
                        1.0 / float(ord))
    if len(axes) == 2:
        r, c = axes
        if ord is None or ord == "fro":
            return _frob(x, axes, keepdims)
        if ord in (1, -1):
            red = _r.max if ord == 1 else _r.min
            out = red(_r.sum(a, axis=r, keepdims=True), axis=c, keepdims=True)
        elif ord in (_np.inf, -_np.inf):
            red = _r.max if ord > 0 else _r.min
            out = red(_r.sum(a, axis=c, keepdims=True), axis=r, keepdims=True)
        else:
            raise NotImplementedError(f"norm: matrix ord={ord!r} is not supported "
                                      f"(2, -2 and 'nuc' need an SVD)")
        return out if keepdims else _r.sum(out, axis=axes)
    raise ValueError(f"norm: improper number of dimensions to norm (axis {axis})")


def _frob(x, axes, keepdims):
    return _m.sqrt(_r.sum(_m.multiply(x, x), axis=axes, keepdims=keepdims))
