"""Stage passes (batching): the batching rules of the matrix decompositions
(ir/primitives/linalg_decomp.py), registered into rules.py's BATCH_RULES.

Input: nothing. Output: entries of `BATCH_RULES` for cholesky, lu, eigh,
qr, svd and triangular_solve.

The decompositions are batched over leading axes already, so vmap's axis
(axis 0, as every batched value carries it) is one more batch axis.
triangular_solve wants equal batch axes on both operands: a batched
operand beside an unbatched one is broadcast, except for the common case
of one unbatched matrix solving a batch of right-hand sides, where the
vmapped axis folds into b's columns (left side) or rows (right side): one
solve of a wider b instead of `size` copies of a (JAX's rule does the same).
"""
from ...ir.primitives import cholesky_p, eigh_p, lu_p, qr_p, svd_p, triangular_solve_p
from .rules import BATCH_RULES, batch_all, moveaxis, reshape, shape_of


def _leading(prim):
    def rule(args, batched, size, **params):
        return prim.bind(*args, **params)
    return rule


def _triangular_solve(args, batched, size, *, left_side, **params):
    a, b = args
    ba, bb = batched
    sa, sb = shape_of(a), shape_of(b)
    if not ba and len(sa) == 2:
        # b is (size, m, k) (left) or (size, k, m) (right)
        if left_side:
            m, k = sb[1:]
            cols = reshape(moveaxis(b, 0, 1), (m, size * k))
            x = triangular_solve_p.bind(a, cols, left_side=True, **params)
            return moveaxis(reshape(x, (m, size, k)), 1, 0)
        k, m = sb[1:]
        x = triangular_solve_p.bind(a, reshape(b, (size * k, m)), left_side=False, **params)
        return reshape(x, (size, k, m))
    a, b = batch_all(args, batched, size)
    return triangular_solve_p.bind(a, b, left_side=left_side, **params)


for _p in (cholesky_p, lu_p, eigh_p, qr_p, svd_p):
    BATCH_RULES[_p] = _leading(_p)
BATCH_RULES[triangular_solve_p] = _triangular_solve
