"""Stage codegen (CPU): the library calls of the matrix decompositions
(cholesky, triangular_solve, lu, eigh, qr, svd), as dot_general's BLAS call
is one.

Input: the equation (its params and avals, fixed at compile time) and the
runtime's pooled allocator. Output: `LINALG_CALLS`: name -> rule
(equation, allocator) -> host function of the operands, merged into the CPU
Backend's `library`.

Each host function runs the primitive's numpy routine (ir/primitives/
linalg_decomp.py: LAPACK's potrf, syevd, geqrf / orgqr and gesdd through
np.linalg; row-by-row numpy over the whole batch for LU and triangular
solve, which numpy does not expose), writing into pooled buffers where the
routine fills its own result.
"""
from ...ir.primitives.linalg_decomp import (cholesky_numpy, eigh_numpy, lu_numpy, qr_numpy,
                                            svd_numpy, triangular_solve_numpy)


def _empty(allocator):
    def empty(shape, dtype):
        return allocator(shape, dtype)()
    return empty


def cholesky_call(e, allocator):
    return lambda a: cholesky_numpy(a)


def triangular_solve_call(e, allocator):
    params, empty = dict(e.params), _empty(allocator)
    return lambda a, b: triangular_solve_numpy(a, b, empty=empty, **params)


def lu_call(e, allocator):
    empty = _empty(allocator)
    return lambda a: lu_numpy(a, empty=empty)


def eigh_call(e, allocator):
    return eigh_numpy


def qr_call(e, allocator):
    full = e.params["full_matrices"]
    return lambda a: qr_numpy(a, full)


def svd_call(e, allocator):
    full = e.params["full_matrices"]
    return lambda a: svd_numpy(a, full)


LINALG_CALLS = {"cholesky": cholesky_call, "triangular_solve": triangular_solve_call,
                "lu": lu_call, "eigh": eigh_call, "qr": qr_call, "svd": svd_call}
