"""needle.numpy: shape manipulation: reshape, transpose, swapaxes, moveaxis,
expand_dims, squeeze, broadcast_to, concatenate, stack, split, flip, pad,
ravel, tile-free helpers.

Input: arrays or tracers. Output: rearranged arrays (copies, never views:
needle arrays are immutable).
"""
import numpy as np

from ..ir.core import ShapeError
from ..ir.primitives import (concatenate_p, pad_p, reshape_p, rev_p, slice_p,
                              transpose_p)
from ._core import (asarray, broadcast_to as _broadcast_to, cast, promote, result_type,
                    shape_of, user_line, with_location)
from .reductions import normalize_axis


def _err(msg, exc=ShapeError):
    return with_location(exc(msg), user_line(3))


def reshape(a, newshape, order="C"):
    if order != "C":
        raise NotImplementedError("reshape: only order='C' is supported")
    a = asarray(a)
    shape = tuple(shape_of(a))
    if isinstance(newshape, (int, np.integer)):
        newshape = (newshape,)
    newshape = [int(n) for n in newshape]
    size = int(np.prod(shape, dtype=np.int64))
    if newshape.count(-1) > 1:
        raise _err(f"reshape: can only specify one unknown dimension, got {tuple(newshape)}")
    if -1 in newshape:
        known = int(np.prod([n for n in newshape if n != -1], dtype=np.int64))
        if known == 0 or size % known:
            raise _err(f"reshape: cannot reshape array of shape {shape} (size {size}) into "
                       f"shape {tuple(newshape)}")
        newshape[newshape.index(-1)] = size // known
    newshape = tuple(newshape)
    if newshape == shape:
        return a
    if int(np.prod(newshape, dtype=np.int64)) != size:
        raise _err(f"reshape: cannot reshape array of shape {shape} (size {size}) into "
                   f"shape {newshape}")
    return reshape_p.bind(a, new_sizes=newshape)


def ravel(a):
    return reshape(a, (-1,))


def transpose(a, axes=None):
    a = asarray(a)
    nd = len(shape_of(a))
    perm = tuple(range(nd))[::-1] if axes is None else normalize_axis(axes, nd, "transpose")
    if len(perm) != nd:
        raise _err(f"transpose: axes {axes} don't match array of dimension {nd}")
    return a if perm == tuple(range(nd)) else transpose_p.bind(a, permutation=perm)


def moveaxis(a, source, destination):
    a = asarray(a)
    nd = len(shape_of(a))
    src = normalize_axis(source, nd, "moveaxis")
    dst = normalize_axis(destination, nd, "moveaxis")
    if len(src) != len(dst):
        raise _err("moveaxis: source and destination must have the same number of axes")
    order = [d for d in range(nd) if d not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(a, order)


def swapaxes(a, axis1, axis2):
    a = asarray(a)
    nd = len(shape_of(a))
    (i,), (j,) = normalize_axis(axis1, nd, "swapaxes"), normalize_axis(axis2, nd, "swapaxes")
    perm = list(range(nd))
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(a, perm)


def expand_dims(a, axis):
    a = asarray(a)
    shape = list(shape_of(a))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    axes = normalize_axis(axes, len(shape) + len(axes), "expand_dims")
    for ax in sorted(axes):
        shape.insert(ax, 1)
    return reshape(a, shape)


def squeeze(a, axis=None):
    a = asarray(a)
    shape = shape_of(a)
    if axis is None:
        axes = tuple(d for d, n in enumerate(shape) if n == 1)
    else:
        axes = normalize_axis(axis, len(shape), "squeeze")
        for d in axes:
            if shape[d] != 1:
                raise _err(f"squeeze: cannot select an axis to squeeze out which has size "
                           f"not equal to one (axis {d} of shape {tuple(shape)})")
    return reshape(a, [n for d, n in enumerate(shape) if d not in axes])


def broadcast_to(a, shape):
    return _broadcast_to(asarray(a), tuple(shape))


def broadcast_arrays(*args):
    """numpy.broadcast_arrays: every operand broadcast to the common shape
    (0-d operands too)."""
    from ._core import broadcast_shapes
    args = [asarray(a) for a in args]
    shape = broadcast_shapes(*[tuple(shape_of(a)) for a in args], name="broadcast_arrays")
    return [_broadcast_to(a, shape, "broadcast_arrays") for a in args]


def atleast_1d(a):
    a = asarray(a)
    return reshape(a, (1,)) if len(shape_of(a)) == 0 else a


def concatenate(arrays, axis=0, dtype=None):
    arrays = [asarray(a) for a in arrays]
    if not arrays:
        raise _err("concatenate: need at least one array to concatenate", ValueError)
    if axis is None:
        arrays, axis = [ravel(a) for a in arrays], 0
    arrays = promote(*arrays) if dtype is None else [cast(a, dtype) for a in arrays]
    nd = len(shape_of(arrays[0]))
    if nd == 0:
        raise _err("concatenate: zero-dimensional arrays cannot be concatenated")
    if any(len(shape_of(a)) != nd for a in arrays):
        raise _err("concatenate: all inputs must have the same number of dimensions, got "
                   "shapes " + ", ".join(str(tuple(shape_of(a))) for a in arrays))
    (ax,) = normalize_axis(axis, nd, "concatenate")
    if len(arrays) == 1:
        return arrays[0]
    return concatenate_p.bind(*arrays, dimension=ax)


def stack(arrays, axis=0, dtype=None):
    arrays = [asarray(a) for a in arrays]
    if not arrays:
        raise _err("stack: need at least one array to stack", ValueError)
    shapes = {tuple(shape_of(a)) for a in arrays}
    if len(shapes) > 1:
        raise _err("stack: all input arrays must have the same shape, got "
                   + ", ".join(str(tuple(shape_of(a))) for a in arrays))
    nd = len(shapes.pop()) + 1
    (ax,) = normalize_axis(axis, nd, "stack")
    return concatenate([expand_dims(a, ax) for a in arrays], axis=ax, dtype=dtype)


def hstack(arrays):
    arrays = [atleast_1d(a) for a in arrays]
    return concatenate(arrays, axis=0 if len(shape_of(arrays[0])) == 1 else 1)


def vstack(arrays):
    return concatenate([reshape(a, (1, -1)) if len(shape_of(a)) <= 1 else asarray(a)
                        for a in arrays], axis=0)


def split(a, indices_or_sections, axis=0):
    a = asarray(a)
    shape = shape_of(a)
    (ax,) = normalize_axis(axis, len(shape), "split")
    n = shape[ax]
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise _err(f"split: array split does not result in an equal division "
                       f"({n} into {k})", ValueError)
        bounds = [i * (n // k) for i in range(k + 1)]
    else:
        # Python slice bounds: negative indices count from the end, then clamp.
        bounds = [0] + [min(max(int(i) + n if int(i) < 0 else int(i), 0), n)
                        for i in indices_or_sections] + [n]
    return [_slice_axis(a, ax, lo, max(lo, hi)) for lo, hi in zip(bounds, bounds[1:])]


def array_split(a, sections, axis=0):
    a = asarray(a)
    n = shape_of(a)[normalize_axis(axis, len(shape_of(a)), "array_split")[0]]
    q, r = divmod(n, sections)
    bounds = np.cumsum([0] + [q + 1] * r + [q] * (sections - r)).tolist()
    return split(a, bounds[1:-1], axis)


def _slice_axis(a, ax, lo, hi, step=1):
    shape = shape_of(a)
    start = [0] * len(shape)
    limit = list(shape)
    strides = [1] * len(shape)
    start[ax], limit[ax], strides[ax] = lo, hi, step
    if lo == 0 and hi == shape[ax] and step == 1:
        return a
    return slice_p.bind(a, start_indices=tuple(start), limit_indices=tuple(limit),
                        strides=tuple(strides))


def flip(m, axis=None):
    m = asarray(m)
    axes = normalize_axis(axis, len(shape_of(m)), "flip")
    return rev_p.bind(m, dimensions=axes) if axes else m


def fliplr(m):
    return flip(m, 1)


def flipud(m):
    return flip(m, 0)


def pad(array, pad_width, mode="constant", constant_values=0):
    if mode != "constant":
        raise NotImplementedError(f"pad: mode={mode!r} is not supported (only 'constant')")
    array = asarray(array)
    nd = len(shape_of(array))
    pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (nd, 2)).tolist() if nd else []
    if any(lo < 0 or hi < 0 for lo, hi in pw):
        raise _err(f"pad: pad widths must be non-negative, got {pad_width}", ValueError)
    dt = result_type(array)[0]
    value = cast(constant_values, dt) if not hasattr(constant_values, "shape") else \
        cast(asarray(constant_values), dt)
    if not any(lo or hi for lo, hi in pw):
        return array
    return pad_p.bind(array, value, padding_config=tuple((lo, hi, 0) for lo, hi in pw))


def tile(a, reps):
    a = asarray(a)
    reps = (reps,) if isinstance(reps, int) else tuple(reps)
    shape = tuple(shape_of(a))
    nd = max(len(shape), len(reps))
    shape = (1,) * (nd - len(shape)) + shape
    reps = (1,) * (nd - len(reps)) + reps
    a = reshape(a, shape)
    # Interleave a new axis of size r before each axis, broadcast, then merge.
    expanded = reshape(a, [d for n in shape for d in (1, n)])
    b = _broadcast_to(expanded, [d for r, n in zip(reps, shape) for d in (r, n)])
    return reshape(b, [r * n for r, n in zip(reps, shape)])


def repeat(a, repeats, axis=None):
    a = asarray(a)
    if axis is None:
        a, axis = ravel(a), 0
    if not isinstance(repeats, (int, np.integer)):
        raise NotImplementedError("repeat: only an integer repeat count is supported")
    shape = list(shape_of(a))
    (ax,) = normalize_axis(axis, len(shape), "repeat")
    b = expand_dims(a, ax + 1)
    tgt = shape[:ax + 1] + [int(repeats)] + shape[ax + 1:]
    b = _broadcast_to(b, tgt)
    shape[ax] *= int(repeats)
    return reshape(b, shape)
