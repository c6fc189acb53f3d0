"""Stage passes (autodiff): the JVP rules of sorting and the scans
(ir/primitives/sort.py), registered into `rules.JVP_RULES`.

Input: nothing. Output: JVP rules for sort, cumprod, cummax, cummin (no
transpose rules: their tangents are written with linear primitives, gather,
cumsum, mul / div by primal values, select, rev, whose transposes exist).

- sort (JAX's rule): sort once more with an iota beside the operands; that
  operand's result is the permutation, and each tangent is gathered through
  it (its transpose scatters the cotangent back to where each element came
  from).
- cumprod: the derivative of each running product, exact with zeros (no
  division by a zero: see `_cumprod_jvp`).
- cummax / cummin: the tangent of the element holding the running extremum;
  ties split it evenly, as max's JVP and reduce_max's do (JAX's rule splits
  a tie between two elements in halves too; with more, its tree of pairwise
  combines weighs them unevenly). A NaN result has no derivative.
Each is a few O(n) scans and gathers, not JAX's associative-scan JVP: that
is a log-depth nest of slices, pads and interleaves, which fuses into one
kernel whose elemental code grows too large to compile quickly.
"""
import numpy as np

from ...ir.primitives import (BINARY, COMPARE, cummax_p, cummin_p, cumprod_p, cumsum_p,
                              gather_p, iota_p, pad_p, reshape_p, rev_p, slice_p, sort_p)
from .rules import (JVP_RULES, add, bcast, const, convert, div, dtype_of, eq, gt, mul, select,
                    shape_of, sub)

B = BINARY


# --- sort: gather the tangents through the permutation ----------------------------------

def take_along(t, perm, dim):
    """t[..., perm[..., i, ...], ...] along `dim` (perm shaped like t): one
    gather from the flattened t, at perm * stride + the other axes' offsets."""
    shape = shape_of(t)
    size = int(np.prod(shape, dtype=np.int64))
    if size == 0:
        return t
    strides = [int(np.prod(shape[d + 1:], dtype=np.int64)) for d in range(len(shape))]
    i64 = np.dtype(np.int64)
    pos = mul(convert(perm, i64), np.array(strides[dim], i64))
    for d, n in enumerate(shape):
        if d != dim and n > 1:
            pos = add(pos, mul(iota_p.bind(dtype=i64, shape=tuple(shape), dimension=d),
                               np.array(strides[d], i64)))
    return gather_p.bind(reshape_p.bind(t, new_sizes=(size,)), pos, axis=0)


def _sort_jvp(primals, tangents, *, dimension, is_stable=True, num_keys=1):
    shape = shape_of(primals[0])
    idt = np.dtype(np.int32 if shape[dimension] < 2 ** 31 else np.int64)
    iota = iota_p.bind(dtype=idt, shape=tuple(shape), dimension=dimension)
    outs = sort_p.bind(*primals, iota, dimension=dimension, is_stable=is_stable,
                       num_keys=num_keys)
    perm = outs[-1]
    return list(outs[:-1]), [None if t is None else take_along(t, perm, dimension)
                             for t in tangents]


JVP_RULES[sort_p] = _sort_jvp


# --- the scans ------------------------------------------------------------------------------

def _rev(x, axis):
    return rev_p.bind(x, dimensions=(axis,))


def _slice(x, axis, start, stop):
    shape = shape_of(x)
    lo, hi = [0] * len(shape), list(shape)
    lo[axis], hi[axis] = start, stop
    return slice_p.bind(x, start_indices=tuple(lo), limit_indices=tuple(hi),
                        strides=(1,) * len(shape))


def zeros_like_t(t):
    return bcast(const(0, t), shape_of(t), ())


def _cumprod_jvp(primals, tangents, *, axis, reverse=False):
    # d out_i = sum_{j<=i} t_j prod_{k<=i, k!=j} x_k, without dividing by zero:
    # no zero up to i: out_i * cumsum(t / x)_i; exactly one (the first zero z):
    # t_z times the product of the others (the running product with x_z read
    # as 1); two or more: 0. Linear in t: scans, products and selects.
    (x,), (t,) = primals, tangents
    ans = cumprod_p.bind(x, axis=axis, reverse=reverse)
    if t is None:
        return ans, None
    z, one = const(0, x), const(1, x)
    is0 = eq(x, z)
    safe = select(is0, one, x)
    others = cumprod_p.bind(safe, axis=axis, reverse=reverse)
    zeros_so_far = cumsum_p.bind(convert(is0, dtype_of(x)), axis=axis, reverse=reverse)
    first0 = B["and"].bind(is0, eq(zeros_so_far, one))
    no_zero = mul(others, cumsum_p.bind(div(t, safe), axis=axis, reverse=reverse))
    one_zero = mul(others, cumsum_p.bind(select(first0, t, zeros_like_t(t)), axis=axis,
                                         reverse=reverse))
    return ans, select(eq(zeros_so_far, z), no_zero,
                       select(eq(zeros_so_far, one), one_zero, zeros_like_t(t)))


def _chooser_jvp(prim):
    # The running extremum at i is attained by the positions j <= i holding it:
    # the ones where x_j equals the running value (x_j == out_j) within the run
    # of equal running values that i ends (it starts where the value last
    # changed). Ties split the derivative evenly, as max's own JVP and
    # reduce_max's do; a NaN result has none.
    def rule(primals, tangents, *, axis, reverse=False):
        (x,), (t,) = primals, tangents
        ans = prim.bind(x, axis=axis, reverse=reverse)
        if t is None:
            return ans, None
        if reverse:
            x, t, out = _rev(x, axis), _rev(t, axis), _rev(ans, axis)
        else:
            out = ans
        shape, dt = shape_of(x), dtype_of(x)
        n = shape[axis]
        if n == 0:
            return ans, t
        i64 = np.dtype(np.int64)
        pos = iota_p.bind(dtype=i64, shape=tuple(shape), dimension=axis)
        lo = [(0, 0, 0)] * len(shape)
        lo[axis] = (1, 0, 0)
        prev = pad_p.bind(_slice(out, axis, 0, n - 1), const(0, out), padding_config=tuple(lo))
        new = B["or"].bind(eq(pos, np.array(0, i64)), COMPARE["ne"].bind(out, prev))
        start = cummax_p.bind(select(new, pos, zeros_like_t(pos)), axis=axis)
        before = B["max"].bind(sub(start, np.array(1, i64)), np.array(0, i64))
        has_before = gt(start, np.array(0, i64))
        holds = eq(x, out)
        w = convert(holds, dt)

        def in_run(c):          # the sum of c over the run up to i
            run = cumsum_p.bind(c, axis=axis)
            prior = select(has_before, take_along(run, before, axis), zeros_like_t(run))
            return sub(run, prior)
        count = in_run(w)
        share = in_run(mul(t, w))
        some = gt(count, const(0, count))
        d = select(some, div(share, select(some, count, const(1, count))), zeros_like_t(share))
        return ans, _rev(d, axis) if reverse else d
    JVP_RULES[prim] = rule


JVP_RULES[cumprod_p] = _cumprod_jvp
_chooser_jvp(cummax_p)
_chooser_jvp(cummin_p)
