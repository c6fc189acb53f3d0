"""Stage ir: dot_general, the one contraction primitive (matmul, batched
matmul, matrix-vector, tensordot are all dot_general).

Input: nothing. Output: `dot_general_p` with abstract eval and a numpy
implementation that calls numpy's BLAS-backed matmul (the CPU backend uses
the same routine as its library call), and `DotDimensionNumbers`.

dimension_numbers = ((lhs_contract, rhs_contract), (lhs_batch, rhs_batch)),
held by every equation as a DotDimensionNumbers (an Eqn converts a plain
nested tuple, however it was made). The output's axes are: batch axes, then lhs free axes, then
rhs free axes (JAX's convention).
"""
from typing import NamedTuple

import numpy as np

from ..core import Primitive, ShapedArray, ShapeError, Traits

__all__ = ["dot_general_p", "dot_general_numpy", "DotDimensionNumbers"]


class DotDimensionNumbers(NamedTuple):
    """dot_general's axes, typed. A tuple of two pairs, so it still unpacks
    as `(lc, rc), (lb, rb) = dn`, compares equal to the plain nested tuple
    and prints like it."""
    contracting: tuple          # (lhs axes, rhs axes), contracted pairwise
    batch: tuple                # (lhs axes, rhs axes), batch axes pairwise

    @classmethod
    def of(cls, dn):
        """From any ((lc, rc), (lb, rb)) of int sequences: tuples of
        Python ints, so equal dimension numbers are equal params (CSE, cache
        keys) whatever sequences or integer types built them."""
        if type(dn) is cls:
            return dn
        (lc, rc), (lb, rb) = dn
        lc, rc, lb, rb = (tuple(int(i) for i in a) for a in (lc, rc, lb, rb))
        return cls((lc, rc), (lb, rb))

    lhs_contract = property(lambda self: self.contracting[0])
    rhs_contract = property(lambda self: self.contracting[1])
    lhs_batch = property(lambda self: self.batch[0])
    rhs_batch = property(lambda self: self.batch[1])

    def swapped(self):
        """The dimension numbers of dot_general(rhs, lhs)."""
        (lc, rc), (lb, rb) = self
        return DotDimensionNumbers((rc, lc), (rb, lb))

    def __str__(self):
        return str(tuple(self))     # (((1,), (0,)), ((), ())), as the IR has always printed


def _dot_params(params):
    """Every dot_general equation holds its dimension numbers typed."""
    dn = params.get("dimension_numbers")
    try:
        dn = DotDimensionNumbers.of(dn)
    except (TypeError, ValueError):
        return params       # malformed: the abstract eval names it, with the user's line
    return {**params, "dimension_numbers": dn}


dot_general_p = Primitive("dot_general", Traits(kind="linalg"))
dot_general_p.canonicalize_params = _dot_params


def _free(ndim, *used):
    used = set(a for u in used for a in u)
    return [d for d in range(ndim) if d not in used]


def _dot_aval(a, b, *, dimension_numbers):
    try:
        dn = DotDimensionNumbers.of(dimension_numbers)
    except (TypeError, ValueError):
        raise ShapeError(f"dot_general: dimension_numbers {dimension_numbers!r} is not "
                         f"((lhs_contract, rhs_contract), (lhs_batch, rhs_batch))") from None
    lc, rc, lb, rb = dn.lhs_contract, dn.rhs_contract, dn.lhs_batch, dn.rhs_batch
    if a.dtype != b.dtype:
        raise TypeError(f"dot_general: operand dtypes differ: {a.dtype.name} vs {b.dtype.name}")
    if a.dtype.kind == "b":
        raise TypeError("dot_general: bool operands are not supported")
    if len(lc) != len(rc) or len(lb) != len(rb):
        raise ShapeError(f"dot_general: dimension_numbers {dn} pair unequal "
                         f"axis lists")
    for ax_a, ax_b, what in ((lc, rc, "contracting"), (lb, rb, "batch")):
        for i, j in zip(ax_a, ax_b):
            if not (0 <= i < a.ndim and 0 <= j < b.ndim) or a.shape[i] != b.shape[j]:
                raise ShapeError(f"dot_general: {what} dimensions do not match: lhs shape "
                                 f"{a.shape} axis {i} vs rhs shape {b.shape} axis {j}")
    shape = ([a.shape[d] for d in lb] + [a.shape[d] for d in _free(a.ndim, lc, lb)]
             + [b.shape[d] for d in _free(b.ndim, rc, rb)])
    return [ShapedArray(tuple(shape), a.dtype, a.weak_type and b.weak_type)]


def dot_general_plan(a_shape, b_shape, dimension_numbers):
    """How dot_general contracts operands of these shapes as one matmul:
    (lhs permutation or None, lhs matmul shape, rhs permutation or None,
    rhs matmul shape, matmul result shape, result shape). The operands are
    transposed to (batch, M, K) and (batch, K, N); without batch axes they
    stay 2-D, so a transposed operand is a strided view BLAS reads as is
    (a 3-D reshape of it would copy)."""
    dn = DotDimensionNumbers.of(dimension_numbers)
    lc, rc, lb, rb = dn.lhs_contract, dn.rhs_contract, dn.lhs_batch, dn.rhs_batch
    fa, fb = _free(len(a_shape), lc, lb), _free(len(b_shape), rc, rb)

    def size(shape, dims):
        return int(np.prod([shape[d] for d in dims], dtype=np.int64))
    nb, k = size(a_shape, lb), size(a_shape, lc)
    mm, nn = size(a_shape, fa), size(b_shape, fb)
    lead = (nb,) if lb else ()
    pa, pb = list(lb) + fa + list(lc), list(rb) + list(rc) + fb
    out_shape = tuple(a_shape[d] for d in lb) + tuple(a_shape[d] for d in fa) + \
        tuple(b_shape[d] for d in fb)
    return (None if pa == sorted(pa) else tuple(pa), lead + (mm, k),
            None if pb == sorted(pb) else tuple(pb), lead + (k, nn), lead + (mm, nn), out_shape)


def dot_general_numpy(a, b, dimension_numbers, empty=None):
    """Contract by transposing to (batch, M, K) @ (batch, K, N) and calling
    numpy's matmul (BLAS for float32/float64). `empty(shape, dtype)`, when
    given, allocates the result (the runtime passes its buffer pool)."""
    pa, sa, pb, sb, so, out_shape = dot_general_plan(a.shape, b.shape, dimension_numbers)
    a3 = (a if pa is None else np.transpose(a, pa)).reshape(sa)
    b3 = (b if pb is None else np.transpose(b, pb)).reshape(sb)
    if empty is not None and a.dtype.kind == "f":
        out = empty(so, a.dtype)
        np.matmul(a3, b3, out=out)
    else:
        out = np.matmul(a3, b3)
    return out.reshape(out_shape).astype(a.dtype, copy=False)


dot_general_p.abstract_eval = _dot_aval
dot_general_p.impl = lambda a, b, *, dimension_numbers: [
    dot_general_numpy(a, b, dimension_numbers)]
