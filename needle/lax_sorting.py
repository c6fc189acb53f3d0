"""The public package: the sorting and scan names of `needle.lax`, with JAX's
signatures and semantics: `sort`, `sort_key_val`, `top_k`, `cumsum`,
`cumprod`, `cummax`, `cummin` (re-exported by needle/lax.py).

Input: arrays, tracers or device arrays. Output: arrays (or tracers) of the
`sort` / `cum*` primitives (ir/primitives/sort.py), so they differentiate
(sort and top_k scatter the cotangent back through the permutation; the
scans have JAX's associative-scan JVP), batch and compile for CPU and CUDA.

Unlike needle.numpy these do not promote: the result has the operand's dtype
(lax.cumsum of int32 is int32), and the scans' axis defaults to 0, as JAX's.
"""
import numpy as np

from . import numpy as nnp
from .ir import dtypes
from .ir.primitives import (cummax_p, cummin_p, cumprod_p, cumsum_p, iota_p, rev_p,
                            slice_p, sort_p)

__all__ = ["sort", "sort_key_val", "top_k", "cumsum", "cumprod", "cummax", "cummin"]


def _dimension(x, dimension, name):
    nd = len(nnp.shape(x))
    if not -nd <= dimension < nd:
        raise ValueError(f"lax.{name}: dimension {dimension} out of range for an operand of "
                         f"shape {nnp.shape(x)}")
    return dimension % nd


def sort(operand, dimension=-1, is_stable=True, num_keys=1):
    """lax.sort: one array, or a sequence of arrays of one shape sorted
    together by the first (stable; numpy's order: NaN last)."""
    single = not isinstance(operand, (tuple, list))
    ops = [nnp.asarray(o) for o in ([operand] if single else operand)]
    dim = _dimension(ops[0], dimension, "sort")
    out = sort_p.bind(*ops, dimension=dim, is_stable=is_stable, num_keys=num_keys)
    return out[0] if single else tuple(out)


def sort_key_val(keys, values, dimension=-1, is_stable=True):
    """lax.sort_key_val: `values` permuted as the stable sort of `keys`."""
    return sort((keys, values), dimension, is_stable)


def top_k(operand, k):
    """lax.top_k: the k largest entries along the last axis, in descending
    order, and their int32 indices; equal entries in order of their index
    (lower first), NaN above every number. A stable descending sort: the
    row reversed, sorted with its (reversed) indices, reversed back."""
    x = nnp.asarray(operand)
    shape = tuple(nnp.shape(x))
    k = int(k)
    if not shape:
        raise ValueError("lax.top_k: the operand must have at least one axis")
    if not 0 <= k <= shape[-1]:
        raise ValueError(f"lax.top_k: k={k} must be in [0, {shape[-1]}] (the last axis of "
                         f"shape {shape})")
    last = len(shape) - 1
    rev = lambda v: rev_p.bind(v, dimensions=(last,))        # noqa: E731
    iota = iota_p.bind(dtype=dtypes.int32, shape=shape, dimension=last)
    vals, idx = sort_p.bind(rev(x), rev(iota), dimension=last)
    lo, hi = (0,) * len(shape), shape[:-1] + (k,)

    def first_k(v):
        return slice_p.bind(rev(v), start_indices=lo, limit_indices=hi,
                            strides=(1,) * len(shape))
    return first_k(vals), first_k(idx)


def _scan(prim, name):
    def fn(operand, axis=0, reverse=False):
        x = nnp.asarray(operand)
        ax = _dimension(x, axis, name)
        if np.dtype(x.dtype) == np.bool_ and name in ("cummax", "cummin"):
            return prim.bind(x.astype(np.uint8), axis=ax, reverse=bool(reverse)).astype(
                np.bool_)
        return prim.bind(x, axis=ax, reverse=bool(reverse))
    fn.__name__ = name
    fn.__doc__ = (f"lax.{name}: the running {name[3:]} along `axis` (from the end with "
                  f"reverse), in the operand's dtype.")
    return fn


cumsum = _scan(cumsum_p, "cumsum")
cumprod = _scan(cumprod_p, "cumprod")
cummax = _scan(cummax_p, "cummax")
cummin = _scan(cummin_p, "cummin")
