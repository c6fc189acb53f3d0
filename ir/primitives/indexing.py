"""Stage ir: gather and scatter along one axis (take, one_hot, embedding
lookups and their gradients).

Input: nothing. Output: `gather_p`, `scatter_add_p`, `scatter_p`,
`scatter_mul_p`, `scatter_min_p`, `scatter_max_p`, `ScatterMode`, and
`SCATTERS` (their names).

Traits (kind="indexing"): gather is `expensive` (a dependent load, worth
not repeating); every scatter has its own loop (`own_loop`: it runs over
the updates, not over its result).

gather(x, idx, axis): out[a..., i..., b...] = x[a..., idx[i...], b...], so the
output shape is x.shape[:axis] + idx.shape + x.shape[axis+1:].
scatter_add(x, idx, upd, axis) adds upd (shaped like the gather output) into
x at those positions; scatter(x, idx, upd, axis) writes them (when an index
repeats, the last write wins on CPU; which one is unspecified in general);
scatter_mul / scatter_min / scatter_max combine every update into its
position (lax.scatter_mul / min / max: a repeated index applies all its
updates; min / max propagate NaN as numpy's minimum / maximum).

Index semantics: negative indices count from the end (as numpy), and indices
still out of range after that are clamped to [0, n-1] (numpy raises; a
compiled kernel cannot, so needle clamps, documented in needle.numpy.take).
A scatter's `mode` param (a `ScatterMode`) says what an out-of-range update
does: CLIP (the default) clamps it as gather does (a gather's transpose
needs that); DROP skips it, as JAX's `x.at[idx].set / add / ...` do by
default. A scatter equation, however it was made, fills in the default and
makes the mode a ScatterMode, so every one holds one (a str: `mode ==
"drop"` holds, and the IR prints `mode=drop`).
"""
from enum import Enum

import numpy as np

from ..core import PRIMITIVES, Primitive, ShapedArray, ShapeError, Traits

__all__ = ["gather_p", "scatter_add_p", "scatter_p", "scatter_mul_p", "scatter_min_p",
           "scatter_max_p", "SCATTERS", "ScatterMode", "DEFAULT_SCATTER_MODE",
           "normalize_index", "in_range"]


class ScatterMode(str, Enum):
    """What a scatter does with an update whose index is out of range once
    negative indices are wrapped."""
    CLIP = "clip"       # clamp it into range, as gather reads
    DROP = "drop"       # skip it

    def __str__(self):
        return self.value                   # the IR printer shows mode=drop


DEFAULT_SCATTER_MODE = ScatterMode.CLIP


def normalize_index(idx, n):
    """Wrap negative indices, then clamp into [0, n-1] (n > 0)."""
    idx = np.asarray(idx).astype(np.int64)
    idx = np.where(idx < 0, idx + n, idx)
    return np.clip(idx, 0, max(n - 1, 0))


def _check(name, x, idx, axis):
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{name}: indices must be integers, got {idx.dtype.name}")
    if not 0 <= axis < x.ndim:
        raise ShapeError(f"{name}: axis {axis} out of range for shape {x.shape}")
    if x.shape[axis] == 0:
        raise ShapeError(f"{name}: cannot index axis {axis} of size 0 (shape {x.shape})")
    return x.shape[:axis] + idx.shape + x.shape[axis + 1:]


def _gather_aval(x, idx, *, axis):
    return [ShapedArray(_check("gather", x, idx, axis), x.dtype, x.weak_type)]


def _gather_impl(x, idx, *, axis):
    return [np.asarray(np.take(x, normalize_index(idx, x.shape[axis]), axis=axis), order="C")]


gather_p = Primitive("gather", Traits(kind="indexing", expensive=True))
gather_p.abstract_eval, gather_p.impl = _gather_aval, _gather_impl


MODES = tuple(m.value for m in ScatterMode)


def in_range(idx, n):
    """Where the (integer) indices name a position of an axis of length n
    after negative ones are wrapped once: what mode="drop" keeps."""
    idx = np.asarray(idx).astype(np.int64)
    return (idx >= -n) & (idx < n)


def _scatter_aval(name):
    def rule(x, idx, upd, *, axis, mode=DEFAULT_SCATTER_MODE):
        if mode not in MODES:
            raise ValueError(f"{name}: mode must be one of {MODES}, got {mode!r}")
        shape = _check(name, x, idx, axis)
        if upd.shape != shape:
            raise ShapeError(f"{name}: updates have shape {upd.shape}, expected {shape} for "
                             f"operand {x.shape}, indices {idx.shape}, axis {axis}")
        if upd.dtype != x.dtype:
            raise TypeError(f"{name}: updates dtype {upd.dtype.name} differs from operand "
                            f"dtype {x.dtype.name}")
        return [x]
    return rule


# how each scatter combines an update u into the current value (numpy's ufunc.at)
_UFUNC = {"scatter_add": np.add, "scatter_mul": np.multiply, "scatter_min": np.minimum,
          "scatter_max": np.maximum}


def _scatter_impl(name):
    def impl(x, idx, upd, *, axis, mode=DEFAULT_SCATTER_MODE):
        out = np.array(x, copy=True)
        n = x.shape[axis]
        keep = in_range(idx, n).reshape(-1)
        idx = normalize_index(idx, n)
        o = np.moveaxis(out, axis, 0)                          # view: (n, a..., b...)
        u = np.moveaxis(upd.reshape(x.shape[:axis] + (idx.size,) + x.shape[axis + 1:]),
                        axis, 0)
        flat = idx.reshape(-1)
        if mode == ScatterMode.DROP:
            flat, u = flat[keep], u[keep]
        if name in _UFUNC:
            with np.errstate(all="ignore"):
                _UFUNC[name].at(o, flat, u)
        else:
            for j, i in enumerate(flat):                       # in order: the last write wins
                o[i] = u[j]
        return [out]
    return impl


def _scatter_params(params):
    """Every scatter equation holds its mode as a ScatterMode."""
    mode = params.get("mode", DEFAULT_SCATTER_MODE)
    try:
        mode = ScatterMode(mode)
    except ValueError:
        pass                # left as given: the abstract eval names it, with the user's line
    return {**params, "mode": mode}


def _scatter_prim(name):
    p = Primitive(name, Traits(kind="indexing", own_loop=True))
    p.abstract_eval, p.impl = _scatter_aval(name), _scatter_impl(name)
    p.canonicalize_params = _scatter_params
    return p


scatter_add_p = _scatter_prim("scatter_add")
scatter_p = _scatter_prim("scatter")
scatter_mul_p = _scatter_prim("scatter_mul")
scatter_min_p = _scatter_prim("scatter_min")
scatter_max_p = _scatter_prim("scatter_max")
# every scatter: (operand, indices, updates) -> operand-shaped, its own kernel root
SCATTERS = tuple(n for n, p in PRIMITIVES.items()
                 if p.kind == "indexing" and p.traits.own_loop)
