"""needle.numpy: indexing: basic indexing (ints, slices, None, Ellipsis),
integer-array indexing (one or several arrays, numpy's placement of the
broadcast dims), take / take_along_axis, and the
functional updates `x.at[idx].set / add / mul / min / max / get`.

Input: an array or tracer and an index. Output: the selected or updated
array. Traced integer indices follow needle's gather semantics: negative
indices count from the end, indices still out of range are clamped (a
compiled kernel cannot raise; numpy would).
"""
import numpy as np

from ..ir.core import ShapeError
from ..ir.primitives import (ScatterMode, gather_p, rev_p, scatter_add_p, scatter_max_p,
                             scatter_min_p, scatter_mul_p, scatter_p, slice_p)
from ..tracer.core import Tracer
from ._core import asarray, broadcast_to, cast, shape_of, typeof, user_line, with_location
from .shape import reshape, transpose


def _err(msg, exc=IndexError):
    return with_location(exc(msg), user_line(3))


def _is_int(i):
    return isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))


def _is_array_index(i):
    if isinstance(i, Tracer):
        return True
    return isinstance(i, (np.ndarray, list)) and not _is_int(i)


def _expand(idx, ndim):
    if not isinstance(idx, tuple):
        idx = (idx,)
    n_ell = sum(1 for i in idx if i is Ellipsis)
    if n_ell > 1:
        raise _err("an index can only have a single ellipsis ('...')")
    consumed = sum(1 for i in idx if i is not None and i is not Ellipsis)
    if consumed > ndim:
        raise _err(f"too many indices for array: array is {ndim}-dimensional, but "
                   f"{consumed} were indexed")
    out = []
    for i in idx:
        if i is Ellipsis:
            out.extend([slice(None)] * (ndim - consumed))
        else:
            out.append(i)
    if not n_ell:
        out.extend([slice(None)] * (ndim - consumed))
    return out


def getitem(x, idx):
    x = asarray(x)
    shape = tuple(shape_of(x))
    items = _expand(idx, len(shape))
    starts, limits, strides, revs = [], [], [], []
    arrays = []          # (input dim, index array)
    ints = []            # input dims indexed by an int
    final = []           # ('dim', d) | ('new',) | ('adv',)
    d = 0
    for it in items:
        if it is None:
            final.append(("new",))
            continue
        n = shape[d]
        if isinstance(it, (bool, np.bool_)) or (isinstance(it, np.ndarray) and it.dtype == bool) \
                or (isinstance(it, Tracer) and it.dtype == np.bool_):
            raise _err("boolean mask indexing gives a data-dependent shape, which needle "
                       "cannot trace; use needle.numpy.where(mask, x, other) instead")
        if _is_int(it):
            i = int(it)
            if not -n <= i < n:
                raise _err(f"index {i} is out of bounds for axis {d} with size {n}")
            i %= n
            starts.append(i), limits.append(i + 1), strides.append(1)
            ints.append(d)
            final.append(("adv",))
        elif isinstance(it, slice):
            start, stop, step = it.indices(n)
            length = len(range(start, stop, step))
            if step < 0:
                revs.append(d)
                start, step = n - 1 - start, -step
            limit = start + (length - 1) * step + 1 if length else start
            starts.append(start), limits.append(limit), strides.append(step)
            final.append(("dim", d))
        elif _is_array_index(it):
            ia = asarray(it)
            if typeof(ia)[0].kind not in "iu":
                raise _err(f"array index along axis {d} must be integer, got "
                           f"{typeof(ia)[0].name}", TypeError)
            arrays.append((d, ia))
            starts.append(0), limits.append(n), strides.append(1)
            final.append(("adv",))
        else:
            raise _err(f"needle cannot index with {type(it).__name__} ({it!r}); use ints, "
                       f"slices, None, Ellipsis or one integer array", TypeError)
        d += 1
    if revs:
        x = rev_p.bind(x, dimensions=tuple(revs))
    if (tuple(starts), tuple(limits), tuple(strides)) != ((0,) * len(shape), shape,
                                                          (1,) * len(shape)):
        x = slice_p.bind(x, start_indices=tuple(starts), limit_indices=tuple(limits),
                         strides=tuple(strides))
    sliced = tuple(shape_of(x))
    adv_pos = [k for k, f in enumerate(final) if f[0] == "adv"]
    if len(arrays) > 1:
        return _gather_several(x, sliced, arrays, ints, final, adv_pos)
    if arrays:
        ad, ia = arrays[0]
        x = gather_p.bind(x, ia, axis=ad)
        ishape = tuple(shape_of(ia))
        # Now x has dims: sliced[:ad] + ishape + sliced[ad+1:]; drop int dims.
        keep = [n for k, n in enumerate(sliced[:ad]) if k not in ints] + list(ishape) + \
               [n for k, n in enumerate(sliced[ad + 1:], ad + 1) if k not in ints]
        x = reshape(x, keep)
        contiguous = adv_pos == list(range(adv_pos[0], adv_pos[-1] + 1))
        pre = len([k for k in range(ad) if k not in ints])
        if not contiguous and pre:
            # numpy puts the advanced-index dims first when ints/arrays are apart.
            nd = len(keep)
            perm = list(range(pre, pre + len(ishape))) + \
                [k for k in range(nd) if not pre <= k < pre + len(ishape)]
            x = transpose(x, perm)
            final = [("adv",)] + [f for f in final if f[0] != "adv"]
        out_shape, it_dims = [], iter(shape_of(x))
        seen_adv = False
        for f in final:
            if f[0] == "new":
                out_shape.append(1)
            elif f[0] == "dim":
                out_shape.append(next(it_dims))
            elif not seen_adv:
                seen_adv = True
                out_shape.extend(next(it_dims) for _ in ishape)
        return reshape(x, out_shape)
    out_shape = []
    for f in final:
        if f[0] == "new":
            out_shape.append(1)
        elif f[0] == "dim":
            out_shape.append(sliced[f[1]])
    return reshape(x, out_shape)


def _gather_several(x, sliced, arrays, ints, final, adv_pos):
    """x[..., i, ..., j, ...] with several integer arrays (after the slices):
    the indexed axes are moved to the front and merged into one, the index
    arrays broadcast together and combined into a flat index (each wrapped and
    clamped on its own axis, as a single gather does), one gather; then the
    broadcast dims go where numpy puts them: in place when the advanced
    indices (arrays and ints) are adjacent, else first."""
    from .math import add, clip, multiply, where
    axes = [d for d, _ in arrays]
    others = [d for d in range(len(sliced)) if d not in axes]
    sizes = [sliced[d] for d in axes]
    x = transpose(x, axes + others)
    x = reshape(x, (int(np.prod(sizes, dtype=np.int64)),) + tuple(sliced[d] for d in others))
    norm = []
    for (_, ia), n in zip(arrays, sizes):
        ia = cast(ia, np.int64)
        norm.append(clip(where(ia < 0, add(ia, n), ia), 0, n - 1))
    try:
        bshape = tuple(np.broadcast_shapes(*[tuple(shape_of(i)) for i in norm]))
    except ValueError:
        raise _err("shape mismatch: indexing arrays could not be broadcast together with "
                   "shapes " + " ".join(str(tuple(shape_of(i))) for i in norm)) from None
    flat, stride = None, 1
    for i, n in zip(reversed(norm), reversed(sizes)):
        term = broadcast_to(multiply(i, stride), bshape)
        flat = term if flat is None else add(flat, term)
        stride *= n
    x = gather_p.bind(x, flat, axis=0)               # bshape + the other axes
    kept = [d for d in others if d not in ints]
    x = reshape(x, bshape + tuple(sliced[d] for d in kept))
    nb = len(bshape)
    contiguous = adv_pos == list(range(adv_pos[0], adv_pos[-1] + 1))
    at = sum(1 for f in final[:adv_pos[0]] if f[0] == "dim") if contiguous else 0
    perm = list(range(nb, nb + at)) + list(range(nb)) + list(range(nb + at, nb + len(kept)))
    x = transpose(x, perm)
    out_shape, dims, placed = [], iter(shape_of(x)), False
    for k, f in enumerate(final):
        if not contiguous and not placed:
            out_shape.extend(next(dims) for _ in range(nb))
            placed = True
        if f[0] == "new":
            out_shape.append(1)
        elif f[0] == "dim":
            out_shape.append(next(dims))
        elif not placed:
            out_shape.extend(next(dims) for _ in range(nb))
            placed = True
    return reshape(x, out_shape)


def take(a, indices, axis=None):
    """numpy.take. Negative indices count from the end; out-of-range indices are
    clamped (numpy's mode='clip' after wrapping negatives)."""
    a = asarray(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    from .reductions import normalize_axis
    (ax,) = normalize_axis(axis, len(shape_of(a)), "take")
    ia = asarray(indices)
    if typeof(ia)[0].kind not in "iu":
        raise _err(f"take: indices must be integers, got {typeof(ia)[0].name}", TypeError)
    if shape_of(a)[ax] == 0:
        raise _err(f"take: cannot take from an empty axis {ax} of shape "
                   f"{tuple(shape_of(a))}")
    return gather_p.bind(a, ia, axis=ax)


def _flat_positions(shape, indices, axis):
    """Flat positions into an array of `shape` for take_along_axis."""
    from .math import add, clip, multiply, where, less
    nd = len(shape)
    ishape = tuple(shape_of(indices))
    if len(ishape) != nd:
        raise _err(f"take_along_axis: indices must have the same number of dimensions as "
                   f"the array, got shapes {ishape} and {tuple(shape)}", ShapeError)
    out_shape = tuple(ishape[d] if d == axis else np.broadcast_shapes(
        (shape[d],), (ishape[d],))[0] for d in range(nd))
    n = shape[axis]
    idx = cast(asarray(indices), np.int64)
    idx = clip(where(less(idx, 0), add(idx, n), idx), 0, max(n - 1, 0))
    strides = np.cumprod((1,) + tuple(shape[::-1]))[:-1][::-1]
    pos = multiply(broadcast_to(idx, out_shape), int(strides[axis]))
    other = np.zeros(out_shape, np.int64)
    for d in range(nd):
        if d != axis:
            r = np.arange(out_shape[d], dtype=np.int64).reshape(
                [out_shape[d] if k == d else 1 for k in range(nd)])
            other = other + r * int(strides[d])
    return add(pos, other), out_shape


def take_along_axis(arr, indices, axis):
    arr = asarray(arr)
    shape = tuple(shape_of(arr))
    if axis is None:
        arr, shape, axis = reshape(arr, (-1,)), (int(np.prod(shape)),), 0
        indices = reshape(indices, (-1,))
    from .reductions import normalize_axis
    (ax,) = normalize_axis(axis, len(shape), "take_along_axis")
    if typeof(asarray(indices))[0].kind not in "iu":
        raise _err("take_along_axis: indices must be integers", TypeError)
    for d in range(len(shape)):
        n_i = shape_of(indices)[d] if len(shape_of(indices)) == len(shape) else None
        if d != ax and n_i not in (None, 1, shape[d]):
            raise _err(f"take_along_axis: index shape {tuple(shape_of(indices))} does not "
                       f"broadcast against array shape {shape}", ShapeError)
    pos, out_shape = _flat_positions(shape, indices, ax)
    return gather_p.bind(reshape(arr, (-1,)), pos, axis=0)


class _IndexUpdateRef:
    def __init__(self, x, idx):
        self.x, self.idx = x, idx

    def _positions(self):
        x = asarray(self.x)
        shape = tuple(shape_of(x))
        pos_all = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)
        return x, shape, getitem(pos_all, self.idx)

    def get(self):
        return getitem(self.x, self.idx)

    def _rows(self):
        """The index array when the index picks whole rows (`x.at[ids]`, or
        `x.at[ids, :, ...]`), else None: such an update scatters along axis 0
        directly (parallel over the rows' elements), not through flat positions."""
        idx = self.idx if isinstance(self.idx, tuple) else (self.idx,)
        if not idx or not _is_array_index(idx[0]) or \
                any(not (isinstance(s, slice) and s == slice(None)) for s in idx[1:]):
            return None
        ia = asarray(idx[0])
        return ia if typeof(ia)[0].kind in "iu" else None

    def _apply(self, values, how, mode=None):
        prim = {"set": scatter_p, "add": scatter_add_p, "mul": scatter_mul_p,
                "min": scatter_min_p, "max": scatter_max_p}[how]
        # JAX's modes: out-of-range updates are dropped by default ("drop" /
        # "fill"), or clamped to the edge ("clip" / "promise_in_bounds")
        drop, clip = ScatterMode.DROP, ScatterMode.CLIP
        modes = {None: drop, "drop": drop, "fill": drop, "clip": clip,
                 "promise_in_bounds": clip}
        if mode not in modes:
            raise _err(f"at[].{how}: mode must be one of {sorted(m for m in modes if m)}, got "
                       f"{mode!r}", ValueError)
        mode = modes[mode]
        rows = self._rows()
        if rows is not None:
            x = asarray(self.x)
            shape = tuple(shape_of(x))
            if len(shape) >= 1 and shape[0] > 0:
                v = broadcast_to(cast(asarray(values), typeof(x)[0]),
                                 tuple(shape_of(rows)) + shape[1:], f"at[].{how}")
                return prim.bind(x, rows, v, axis=0, mode=mode)
        x, shape, pos = self._positions()
        flat = reshape(x, (-1,))
        pshape = tuple(shape_of(pos))
        (v,) = [cast(asarray(values), typeof(x)[0])]
        v = broadcast_to(v, pshape, f"at[].{how}")
        return reshape(prim.bind(flat, pos, v, axis=0, mode=mode), shape)

    # JAX's signatures: indices_are_sorted / unique_indices are hints (accepted)
    def set(self, values, *, indices_are_sorted=False, unique_indices=False, mode=None):
        return self._apply(values, "set", mode)

    def add(self, values, *, indices_are_sorted=False, unique_indices=False, mode=None):
        return self._apply(values, "add", mode)

    def multiply(self, values, *, indices_are_sorted=False, unique_indices=False, mode=None):
        return self._apply(values, "mul", mode)

    mul = multiply

    def min(self, values, *, indices_are_sorted=False, unique_indices=False, mode=None):
        return self._apply(values, "min", mode)

    def max(self, values, *, indices_are_sorted=False, unique_indices=False, mode=None):
        return self._apply(values, "max", mode)


class _IndexUpdateHelper:
    __slots__ = ("x",)

    def __init__(self, x):
        self.x = x

    def __getitem__(self, idx):
        return _IndexUpdateRef(self.x, idx)


def at(x):
    """`at(x)[idx].set(v)`: the functional update, for numpy arrays too (traced
    arrays also have `x.at[idx]`)."""
    return _IndexUpdateHelper(x)


