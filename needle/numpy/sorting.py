"""needle.numpy: sorting, searching, cumulative products / extrema, and the
functions whose result's shape depends on the values (nonzero, flatnonzero,
argwhere, unique, one-argument where), with numpy's names and JAX's
semantics.

Input: arrays, tracers or device arrays. Output: arrays (or tracers), built
from the `sort` / `cumprod` / `cummax` / `cummin` primitives and the
existing ones, so they are differentiable where JAX's are, batch under
vmap and compile for CPU and CUDA.

- sort / argsort: stable along any axis (axis=None sorts the flattened
  array), numpy's order (NaN last, -0.0 equal to 0.0); `kind` is accepted
  and ignored (always stable), `descending=True` as JAX's (reverse, sort,
  reverse: ties keep their order, NaN first). argsort gives int64 indices.
  sort's gradient scatters the cotangent back through the permutation.
- partition / argpartition: a full sort (a valid partition for every kth).
- searchsorted: a binary search of log2(n) + 1 unrolled steps (gather,
  compare, select: one fused kernel over `v`), NaN sorting last as numpy.
- cumprod: as cumsum (bool and small ints accumulate in int64).
- nonzero, flatnonzero, argwhere, unique, where(cond): eagerly (numpy or
  device arrays) as numpy; under a trace (jit, grad, vmap) they need JAX's
  `size=` (the static length of the result; missing entries are
  `fill_value`, 0 by default; unique's default is its smallest value), else
  the error names the function and asks for `size=`. Indices are int64.
"""
import numpy as np

from ..ir import dtypes
from ..ir.core import ShapeError
from ..ir.primitives import cumprod_p, iota_p, rev_p, scatter_p, sort_p
from ..tracer.core import ConcretizationError, Tracer, with_location
from ..tracer.source import user_line
from ._core import asarray, cast, promote, shape_of

__all__ = ["sort", "argsort", "partition", "argpartition", "searchsorted", "cumprod",
           "nonzero", "flatnonzero", "argwhere", "unique"]

_I64 = dtypes.int64


def _err(exc, depth=3):
    return with_location(exc, user_line(depth))


def _sort_axis(a, axis, name):
    """(operand, axis): axis None sorts the flattened array."""
    from .reductions import normalize_axis
    from .shape import reshape
    if axis is None:
        return reshape(a, (-1,)), 0
    if not shape_of(a):
        raise _err(ShapeError(f"{name}: axis {axis} is out of bounds for a 0-d array "
                              f"(axis=None sorts it flattened)"), 4)
    (ax,) = normalize_axis(axis, len(shape_of(a)), name)
    return a, ax


def _no_order(name, order):
    if order is not None:
        raise _err(TypeError(f"{name}: order= (fields of structured arrays) is not "
                             f"supported"), 4)


def _rev(x, axis):
    return rev_p.bind(x, dimensions=(axis,))


def sort(a, axis=-1, kind=None, order=None, *, stable=True, descending=False):
    """numpy.sort, stable (see the module docstring)."""
    _no_order("sort", order)
    a, ax = _sort_axis(asarray(a), axis, "sort")
    (out,) = sort_p.bind(a, dimension=ax)
    return _rev(out, ax) if descending else out


def argsort(a, axis=-1, kind=None, order=None, *, stable=True, descending=False):
    """numpy.argsort with kind='stable': int64 indices; descending as JAX's
    (equal elements keep their order)."""
    _no_order("argsort", order)
    a, ax = _sort_axis(asarray(a), axis, "argsort")
    iota = iota_p.bind(dtype=_I64, shape=tuple(shape_of(a)), dimension=ax)
    if descending:
        a, iota = _rev(a, ax), _rev(iota, ax)
    _, idx = sort_p.bind(a, iota, dimension=ax)
    return _rev(idx, ax) if descending else idx


def _check_kth(name, a, kth, axis):
    a, ax = _sort_axis(asarray(a), axis, name)
    n = shape_of(a)[ax]
    for k in np.atleast_1d(np.asarray(kth)).ravel():
        if not -n <= int(k) < n:
            raise _err(ValueError(f"{name}: kth {int(k)} out of bounds for an axis of "
                                  f"length {n}"), 4)
    return a, ax


def partition(a, kth, axis=-1, kind="introselect", order=None):
    """numpy.partition: here a full (stable) sort, which puts every kth in its
    sorted place with nothing larger before it and nothing smaller after."""
    _no_order("partition", order)
    a, ax = _check_kth("partition", a, kth, axis)
    return sort(a, axis=ax)


def argpartition(a, kth, axis=-1, kind="introselect", order=None):
    """numpy.argpartition: here the stable argsort (a valid argpartition)."""
    _no_order("argpartition", order)
    a, ax = _check_kth("argpartition", a, kth, axis)
    return argsort(a, axis=ax)


def _lt(x, y):
    """x < y in numpy's sort order: NaN above every number."""
    from .math import isnan, less, logical_and, logical_not, logical_or
    if np.dtype(x.dtype).kind != "f":
        return less(x, y)
    return logical_or(less(x, y), logical_and(isnan(y), logical_not(isnan(x))))


def searchsorted(a, v, side="left", sorter=None, *, method="scan"):
    """numpy.searchsorted on a sorted 1-D `a` (with `sorter`, a sorted by
    it): the first index (side='left') or the last (side='right') where `v`
    could be inserted keeping the order. int64, shaped like v. `method` is
    accepted for JAX's signature; every method is the unrolled binary
    search."""
    from .indexing import take
    from .math import add, floor_divide, less, logical_and, logical_not, minimum, where
    if side not in ("left", "right"):
        raise _err(ValueError(f"searchsorted: side must be 'left' or 'right', got {side!r}"))
    a = asarray(a)
    if len(shape_of(a)) != 1:
        raise _err(ShapeError(f"searchsorted: a must be 1-D, got shape "
                              f"{tuple(shape_of(a))}"))
    if sorter is not None:
        a = take(a, sorter)
    a, v = promote(a, asarray(v))
    n = shape_of(a)[0]
    vshape = tuple(shape_of(v))
    lo = np.zeros(vshape, _I64)
    hi = np.full(vshape, n, _I64)
    for _ in range(int(n).bit_length()):
        mid = floor_divide(add(lo, hi), 2)
        am = take(a, minimum(mid, n - 1))
        right = _lt(am, v) if side == "left" else logical_not(_lt(v, am))
        active = less(lo, hi)
        lo = where(logical_and(active, right), add(mid, 1), lo)
        hi = where(logical_and(active, logical_not(right)), mid, hi)
    return cast(asarray(lo), _I64)


def cumprod(a, axis=None, dtype=None):
    """numpy.cumprod (bool and small integers multiply in int64, as numpy)."""
    from .reductions import _acc_dtype, normalize_axis
    from .shape import reshape
    a = asarray(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    (ax,) = normalize_axis(axis, len(shape_of(a)), "cumprod")
    dt = np.dtype(dtype) if dtype is not None else _acc_dtype(a.dtype)
    return cumprod_p.bind(cast(a, dt), axis=ax, reverse=False)


# --- data-dependent shapes -----------------------------------------------------------

def _device_array(x):
    from ..array import Array
    return isinstance(x, Array)


def _traced(x):
    return isinstance(x, Tracer) and not _device_array(x)


def _need_size(name, x):
    return _err(ConcretizationError(
        f"{name}: the shape of its result depends on the values of the traced array "
        f"{x.aval.str_short()}, which are not known while tracing (jit, grad, vmap). Pass "
        f"size= (the result's static length; missing entries are fill_value=), as in JAX: "
        f"needle.numpy.{name}(x, size=n)"), 4)


def _host(name, a, fn):
    """fn(numpy value) eagerly: a device array computes on the host and its
    results go back to the device."""
    if not _device_array(a):
        return fn(np.asarray(a))
    from .creation import _place
    out = fn(np.asarray(a))
    if isinstance(out, tuple):
        return tuple(_place(o, "cuda") for o in out)
    return _place(out, "cuda")


def _fills(fill_value, nd, name):
    if fill_value is None:
        return [0] * nd
    f = np.asarray(fill_value)
    if f.ndim == 0:
        return [f[()]] * nd
    if f.shape != (nd,):
        raise _err(ValueError(f"{name}: fill_value must be a scalar or have one entry per "
                              f"dimension ({nd}), got shape {f.shape}"), 5)
    return list(f)


def _nonzero_sized(a, size, fill_value, name):
    """The first `size` nonzero positions of `a` (row-major), one int64
    array per axis, the missing ones `fill_value`: each nonzero element's
    rank (a cumsum of the mask) is its slot, one scatter writes the flat
    positions (slots past `size` are dropped), and the positions are
    unravelled."""
    from .math import floor_divide, greater_equal, remainder, subtract, where
    from .reductions import cumsum
    from .shape import reshape
    size = int(size)
    if size < 0:
        raise _err(ValueError(f"{name}: size must be >= 0, got {size}"), 4)
    shape = tuple(shape_of(a))
    n = int(np.prod(shape, dtype=np.int64))
    fills = _fills(fill_value, len(shape), name)
    if n == 0 or size == 0:
        return tuple(np.full((size,), f, _I64) for f in fills)
    mask = cast(reshape(a, (n,)), np.bool_)
    slot = subtract(cumsum(cast(mask, _I64)), 1)
    slot = where(mask, slot, size)                      # not a nonzero: dropped
    flat = scatter_p.bind(np.full((size,), -1, _I64), slot, np.arange(n, dtype=_I64),
                          axis=0, mode="drop")
    valid = greater_equal(flat, 0)
    out, stride = [], n
    for d, m in enumerate(shape):
        stride //= m
        i = remainder(floor_divide(flat, stride), m) if d else floor_divide(flat, stride)
        out.append(cast(where(valid, i, np.asarray(fills[d]).astype(_I64)), _I64))
    return tuple(out)


def nonzero(a, *, size=None, fill_value=None):
    """numpy.nonzero; under a trace `size=` is required (JAX's semantics)."""
    a = asarray(a)
    if not shape_of(a):
        raise _err(ValueError("nonzero: calling nonzero on a 0-d array is not allowed; use "
                              "atleast_1d(x) first"))
    if size is not None:
        return _nonzero_sized(a, size, fill_value, "nonzero")
    if _traced(a):
        raise _need_size("nonzero", a)
    return _host("nonzero", a, lambda x: tuple(i.astype(_I64) for i in np.nonzero(x)))


def flatnonzero(a, *, size=None, fill_value=None):
    """numpy.flatnonzero (`size=` / `fill_value=` as nonzero)."""
    from .shape import reshape
    a = asarray(a)
    if size is None and _traced(a):
        raise _need_size("flatnonzero", a)
    return nonzero(reshape(a, (-1,)), size=size, fill_value=fill_value)[0]


def argwhere(a, *, size=None, fill_value=None):
    """numpy.argwhere: (count, ndim) int64 (`size=` / `fill_value=` as nonzero)."""
    from .shape import reshape, stack
    a = asarray(a)
    if size is None:
        if _traced(a):
            raise _need_size("argwhere", a)
        return _host("argwhere", a, lambda x: np.argwhere(x).astype(_I64))
    nd = len(shape_of(a))
    idx = _nonzero_sized(reshape(a, (1,)) if nd == 0 else a, size, fill_value, "argwhere")
    out = stack(idx, axis=1)
    return out[:, :0] if nd == 0 else out


def unique(ar, return_index=False, return_inverse=False, return_counts=False, axis=None,
           *, equal_nan=True, size=None, fill_value=None):
    """numpy.unique (axis=None under a trace) with JAX's `size=`: the first
    `size` sorted unique values, the rest `fill_value` (default: the smallest
    value); return_index gives first occurrences, return_counts 0 for the
    padding; return_inverse is shaped like `ar` (numpy 2)."""
    ar = asarray(ar)
    flags = (return_index, return_inverse, return_counts)
    if size is None:
        if _traced(ar):
            raise _need_size("unique", ar)
        return _host("unique", ar, lambda x: _unique_numpy(x, flags, axis, equal_nan))
    if axis is not None:
        raise _err(NotImplementedError("unique: size= with axis= is not supported (flatten "
                                       "first, or call it eagerly)"))
    return _unique_sized(ar, flags, equal_nan, int(size), fill_value)


def _unique_numpy(x, flags, axis, equal_nan):
    out = np.unique(x, *flags, axis=axis, equal_nan=equal_nan)
    if not any(flags):
        return out
    return tuple(o if k == 0 else o.astype(_I64) for k, o in enumerate(out))


def _unique_sized(ar, flags, equal_nan, size, fill_value):
    from .creation import arange
    from .math import equal, isnan, less, logical_and, logical_not, logical_or, subtract, where
    from .reductions import cumsum, sum as _sum
    from .shape import concatenate, reshape
    from .indexing import take
    return_index, return_inverse, return_counts = flags
    shape = tuple(shape_of(ar))
    n = int(np.prod(shape, dtype=np.int64))
    x = reshape(ar, (n,))
    dt = np.dtype(x.dtype)
    if n == 0:
        fill = 0 if fill_value is None else fill_value
        res = [np.full((size,), fill, dt)]
        res += [np.zeros((size,), _I64)] * return_index
        res += [np.zeros(shape, _I64)] * return_inverse
        res += [np.zeros((size,), _I64)] * return_counts
        return res[0] if len(res) == 1 else tuple(res)
    aux, perm = sort_p.bind(x, iota_p.bind(dtype=_I64, shape=(n,), dimension=0), dimension=0)
    same = equal(aux[1:], aux[:-1])
    if equal_nan and dt.kind == "f":
        same = logical_or(same, logical_and(isnan(aux[1:]), isnan(aux[:-1])))
    mask = concatenate([np.ones((1,), np.bool_), logical_not(same)])
    (ind,) = _nonzero_sized(mask, size, None, "unique")
    result = take(aux, ind)
    if fill_value is not None:
        count = _sum(cast(mask, _I64))
        result = where(less(arange(size, dtype=_I64), count), result,
                       np.asarray(fill_value).astype(dt))
    out = [result]
    if return_index:
        out.append(take(perm, ind))
    if return_inverse:
        imask = subtract(cumsum(cast(mask, _I64)), 1)
        inv = scatter_p.bind(np.zeros((n,), _I64), perm, imask, axis=0)
        out.append(reshape(inv, shape))
    if return_counts:
        (starts,) = _nonzero_sized(mask, size + 1, None, "unique")
        ends = where(starts[1:] > 0, starts[1:], np.int64(n))    # a padding start: the end
        out.append(subtract(ends, concatenate([starts[:1], ends[:-1]])))
    return out[0] if len(out) == 1 else tuple(out)
