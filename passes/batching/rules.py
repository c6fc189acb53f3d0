"""Stage passes (batching): the batching rule of every primitive, for vmap.

Input: nothing. Output: `BATCH_RULES`, keyed by Primitive.

Convention: a batched value carries the mapped axis first (axis 0); an
unbatched value is the per-example value itself. A rule gets the operands
and a flag per operand (batched or not) and returns the results, all batched
(the interpreter only calls a rule when some operand is batched). Rules are
written with `Primitive.bind`, so they record into an outer trace (vmap under
jit or grad) or run numpy eagerly, like the autodiff rules.

Rule:  rule(args, batched, size, **params) -> result (or list of results)
       `size` is the length of the mapped axis. A rule that knows some of its
       results do not depend on the mapped axis (the control-flow rules,
       control.py) returns `Flagged(results, flags)` instead, as JAX's rules
       return `not_mapped` out dims.
"""
import numpy as np

from ...ir.primitives import (BINARY, COMPARE, UNARY, DotDimensionNumbers, ScatterMode,
                              argmax_p, argmin_p, broadcast_in_dim_p,
                              concatenate_p, convert_element_type_p, cumsum_p, dot_general_p,
                              gather_p, integer_pow_p, iota_p, pad_p, reduce_max_p,
                              reduce_min_p, reduce_prod_p, reduce_sum_p, reshape_p, rev_p,
                              scatter_add_p, scatter_max_p, scatter_min_p, scatter_mul_p,
                              scatter_p, select_p, slice_p, transpose_p)
from ...ir.primitives.debug import debug_callback_p
from ...ir.primitives.bits import bitcast_convert_type_p, threefry2x32_p

BATCH_RULES = {}


class Flagged:
    """A rule's results with a batched flag each (unbatched results are the
    per-example values themselves)."""
    __slots__ = ("outs", "flags")

    def __init__(self, outs, flags):
        self.outs, self.flags = list(outs), [bool(f) for f in flags]


# --- helpers -------------------------------------------------------------------------

def shape_of(x):
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def bcast_batch(x, size):
    """An unbatched value repeated along a new leading axis."""
    s = shape_of(x)
    return broadcast_in_dim_p.bind(x, shape=(size,) + s,
                                   broadcast_dimensions=tuple(range(1, len(s) + 1)))


def batch_all(args, batched, size):
    return [x if b else bcast_batch(x, size) for x, b in zip(args, batched)]


def moveaxis(x, src, dst):
    nd = len(shape_of(x))
    if src == dst:
        return x
    perm = [d for d in range(nd) if d != src]
    perm.insert(dst, src)
    return transpose_p.bind(x, permutation=tuple(perm))


def reshape(x, shape):
    shape = tuple(int(s) for s in shape)
    return x if shape_of(x) == shape else reshape_p.bind(x, new_sizes=shape)


# --- elementwise: operands of one shape, or 0-d ----------------------------------------

def _elementwise(prim):
    def rule(args, batched, size, **params):
        # the per-example result shape: the operands' common non-0-d shape
        ex = [shape_of(x)[1:] if b else shape_of(x) for x, b in zip(args, batched)]
        out = max(ex, key=len)
        ops = []
        for x, b, s in zip(args, batched, ex):
            if b and s != out:              # a mapped 0-d operand: (size,) -> (size, *out)
                x = broadcast_in_dim_p.bind(x, shape=(size,) + out, broadcast_dimensions=(0,))
            elif not b and s != ():         # unmapped, full shape: repeat it
                x = bcast_batch(x, size)
            ops.append(x)                   # (unmapped 0-d operands stay 0-d)
        return prim.bind(*ops, **params)
    return rule


for _p in list(UNARY.values()) + list(BINARY.values()) + list(COMPARE.values()) + \
        [select_p, convert_element_type_p, integer_pow_p]:
    BATCH_RULES[_p] = _elementwise(_p)
for _p in (bitcast_convert_type_p, threefry2x32_p):        # ir/primitives/bits.py
    BATCH_RULES[_p] = _elementwise(_p)


# --- structural ----------------------------------------------------------------------

def _broadcast_in_dim(args, batched, size, *, shape, broadcast_dimensions):
    (x,) = args
    return broadcast_in_dim_p.bind(x, shape=(size,) + tuple(shape),
                                   broadcast_dimensions=(0,) + tuple(d + 1 for d in
                                                                     broadcast_dimensions))


def _reshape(args, batched, size, *, new_sizes):
    return reshape_p.bind(args[0], new_sizes=(size,) + tuple(new_sizes))


def _transpose(args, batched, size, *, permutation):
    return transpose_p.bind(args[0], permutation=(0,) + tuple(p + 1 for p in permutation))


def _slice(args, batched, size, *, start_indices, limit_indices, strides=None):
    strides = (1,) * len(start_indices) if strides is None else tuple(strides)
    return slice_p.bind(args[0], start_indices=(0,) + tuple(start_indices),
                        limit_indices=(size,) + tuple(limit_indices), strides=(1,) + strides)


def _pad(args, batched, size, *, padding_config):
    x, v = args
    bx, bv = batched
    if bv:
        # a mapped padding value: pad with 0, then put each example's value where
        # the padding is (a mask of the padded positions, made the same way)
        x = x if bx else bcast_batch(x, size)
        cfg = ((0, 0, 0),) + tuple(padding_config)
        zero = np.zeros((), np.dtype(x.dtype))
        body = pad_p.bind(x, zero, padding_config=cfg)
        ones = broadcast_in_dim_p.bind(np.ones((), np.bool_), shape=shape_of(x),
                                       broadcast_dimensions=())
        inside = pad_p.bind(ones, np.zeros((), np.bool_), padding_config=cfg)
        vb = broadcast_in_dim_p.bind(v, shape=shape_of(body), broadcast_dimensions=(0,))
        return select_p.bind(inside, body, vb)
    return pad_p.bind(x, v, padding_config=((0, 0, 0),) + tuple(padding_config))


def _concatenate(args, batched, size, *, dimension):
    return concatenate_p.bind(*batch_all(args, batched, size), dimension=dimension + 1)


def _rev(args, batched, size, *, dimensions):
    return rev_p.bind(args[0], dimensions=tuple(d + 1 for d in dimensions))


BATCH_RULES.update({broadcast_in_dim_p: _broadcast_in_dim, reshape_p: _reshape,
                    transpose_p: _transpose, slice_p: _slice, pad_p: _pad,
                    concatenate_p: _concatenate, rev_p: _rev})
# iota has no operands: never batched (the interpreter never calls this).
BATCH_RULES[iota_p] = None


# --- reductions ----------------------------------------------------------------------

def _reduce(prim):
    def rule(args, batched, size, *, axes):
        return prim.bind(args[0], axes=tuple(a + 1 for a in axes))
    return rule


def _arg_reduce(prim):
    def rule(args, batched, size, *, axis, index_dtype):
        return prim.bind(args[0], axis=axis + 1, index_dtype=index_dtype)
    return rule


def _cumsum(args, batched, size, *, axis, reverse=False):
    return cumsum_p.bind(args[0], axis=axis + 1, reverse=reverse)


for _p in (reduce_sum_p, reduce_max_p, reduce_min_p, reduce_prod_p):
    BATCH_RULES[_p] = _reduce(_p)
BATCH_RULES[argmax_p] = _arg_reduce(argmax_p)
BATCH_RULES[argmin_p] = _arg_reduce(argmin_p)
BATCH_RULES[cumsum_p] = _cumsum


# --- dot_general ---------------------------------------------------------------------

def _dot_general(args, batched, size, *, dimension_numbers):
    dn = dimension_numbers              # a DotDimensionNumbers, as every equation holds
    lc, rc, lb, rb = dn.lhs_contract, dn.rhs_contract, dn.lhs_batch, dn.rhs_batch
    x, y = args
    bx, by = batched
    up = lambda ds: tuple(d + 1 for d in ds)        # noqa: E731
    if bx and by:                   # the mapped axis becomes one more batch axis
        dn = DotDimensionNumbers((up(lc), up(rc)), ((0,) + up(lb), (0,) + up(rb)))
        return dot_general_p.bind(x, y, dimension_numbers=dn)
    if bx:                          # a free axis of x: the first of x's free axes
        dn = DotDimensionNumbers((up(lc), rc), (up(lb), rb))
        return moveaxis(dot_general_p.bind(x, y, dimension_numbers=dn), len(lb), 0)
    # a free axis of y: after the batch axes and x's free axes
    out = dot_general_p.bind(x, y,
                             dimension_numbers=DotDimensionNumbers((lc, up(rc)), (lb, up(rb))))
    n_free_x = len(shape_of(x)) - len(lc) - len(lb)
    return moveaxis(out, len(lb) + n_free_x, 0)


BATCH_RULES[dot_general_p] = _dot_general


# --- gather / scatter ----------------------------------------------------------------

def _flat_index(idx, n, size, drop=False):
    """Per-example indices into axis of length n (any sign, clamped as gather
    does), offset by example: b * n + i, for the (size * n)-long flattened axis.
    With `drop` (a scatter's ScatterMode.DROP) an index out of range stays out
    of range (size * n)."""
    from ...ir.primitives import add_p, and_p, ge_p, lt_p, max_p, min_p, mul_p
    idx = idx if len(shape_of(idx)) and shape_of(idx)[0] == size else bcast_batch(idx, size)
    dt = np.dtype(idx.dtype)
    idx = convert_element_type_p.bind(idx, new_dtype=np.dtype(np.int64), weak_type=False) \
        if dt != np.int64 else idx
    n64 = np.array(n, np.int64)
    wrapped = select_p.bind(lt_p.bind(idx, np.array(0, np.int64)), add_p.bind(idx, n64), idx)
    clamped = min_p.bind(max_p.bind(wrapped, np.array(0, np.int64)), np.array(n - 1, np.int64))
    s = shape_of(idx)
    offs = iota_p.bind(dtype=np.dtype(np.int64), shape=s, dimension=0)
    flat = add_p.bind(clamped, mul_p.bind(offs, n64))
    if drop:
        ok = and_p.bind(ge_p.bind(wrapped, np.array(0, np.int64)), lt_p.bind(wrapped, n64))
        flat = select_p.bind(ok, flat, np.array(size * n, np.int64))
    return flat


def _to_front(x, axis, size):
    """(size, *x.shape) with per-example axis `axis` -> (size * n, *rest): the
    mapped axis and `axis` merged (example-major) in front."""
    x = moveaxis(x, axis + 1, 1)
    s = shape_of(x)
    return reshape(x, (s[0] * s[1],) + s[2:]), s


def _gather(args, batched, size, *, axis):
    x, idx = args
    bx, bi = batched
    if not bi:
        return gather_p.bind(x, idx, axis=axis + 1)
    if not bx:
        out = gather_p.bind(x, idx, axis=axis)      # the mapped axis lands at `axis`
        return moveaxis(out, axis, 0)
    xs = shape_of(x)[1:]
    flat, _ = _to_front(x, axis, size)
    pos = _flat_index(idx, xs[axis], size)
    out = gather_p.bind(flat, pos, axis=0)          # (size, *is, *before, *after)
    k = len(shape_of(idx)) - 1
    # per example: before + is + after; here: is + before + after
    nb = axis
    perm = [0] + [1 + k + j for j in range(nb)] + [1 + j for j in range(k)] + \
        [1 + k + nb + j for j in range(len(xs) - 1 - nb)]
    return transpose_p.bind(out, permutation=tuple(perm))


def _scatter(prim):
    def rule(args, batched, size, *, axis, mode):
        x, idx, u = args
        bx, bi, bu = batched
        if not bi:
            x, u = (x if bx else bcast_batch(x, size)), (u if bu else bcast_batch(u, size))
            return prim.bind(x, idx, u, axis=axis + 1, mode=mode)
        x = x if bx else bcast_batch(x, size)
        u = u if bu else bcast_batch(u, size)
        xs = shape_of(x)[1:]
        flat, fs = _to_front(x, axis, size)
        pos = _flat_index(idx, xs[axis], size, drop=mode == ScatterMode.DROP)
        k = len(shape_of(pos)) - 1
        # updates per example: before + is + after -> is + before + after
        nb = axis
        perm = [0] + [1 + nb + j for j in range(k)] + [1 + j for j in range(nb)] + \
            [1 + nb + k + j for j in range(len(xs) - 1 - nb)]
        u = transpose_p.bind(u, permutation=tuple(perm))
        us = shape_of(u)
        u = reshape(u, (us[0] * int(np.prod(us[1:1 + k], dtype=np.int64)),) + us[1 + k:])
        pos = reshape(pos, (int(np.prod(shape_of(pos), dtype=np.int64)),))
        out = prim.bind(flat, pos, u, axis=0, mode=mode)
        return moveaxis(reshape(out, fs), 1, axis + 1)
    return rule


BATCH_RULES[gather_p] = _gather
for _p in (scatter_p, scatter_add_p, scatter_mul_p, scatter_min_p, scatter_max_p):
    BATCH_RULES[_p] = _scatter(_p)


# --- effects: one print per example, as JAX ---------------------------------------------

def _example(x, i):
    """Example i of a batched value (its leading axis removed)."""
    s = shape_of(x)
    x = slice_p.bind(x, start_indices=(i,) + (0,) * (len(s) - 1),
                     limit_indices=(i + 1,) + s[1:], strides=(1,) * len(s))
    return reshape(x, s[1:])


def _debug_callback(args, batched, size, *, callback):
    # JAX unrolls a debug callback over the mapped axis: the callback runs once
    # per example, in order, with unmapped operands as they are.
    for i in range(size):
        debug_callback_p.bind(*[_example(x, i) if b else x for x, b in zip(args, batched)],
                              callback=callback)
    return []


BATCH_RULES[debug_callback_p] = _debug_callback
