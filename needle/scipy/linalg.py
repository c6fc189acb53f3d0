"""needle.scipy.linalg: scipy.linalg's triangular and Cholesky solvers (JAX's
jax.scipy.linalg signatures), batched over leading axes.

Input: arrays or tracers. Output: arrays or tracers.

`solve_triangular(a, b, trans, lower, unit_diagonal)`, `cholesky(a, lower)`,
`cho_factor(a, lower) -> (c, lower)`, `cho_solve((c, lower), b)`, and `det`,
`inv` as numpy.linalg's. As in JAX, b is a vector when it has one axis less
than a (else (..., m, k)); batch axes broadcast; the `overwrite_*`,
`check_finite` and `debug` arguments are accepted and ignored (needle's
arrays are immutable; a compiled kernel cannot check). `cho_factor`'s
factor is zero in the unused triangle (scipy leaves whatever was there).
"""
from ..ir.primitives import triangular_solve_p
from ..numpy import linalg as _la
from ..numpy.shape import expand_dims, squeeze
from ..numpy._core import broadcast_shapes, broadcast_to, shape_of
from ..numpy.linalg import det, inv  # noqa: F401  (scipy.linalg has them too)

__all__ = ["solve_triangular", "cholesky", "cho_factor", "cho_solve", "det", "inv"]

_TRANS = {0: False, "N": False, 1: True, "T": True, 2: True, "C": True}


def _operands(a, b, name):
    """a (..., m, m) and b as (..., m, k) with one broadcast batch; whether b
    was a vector."""
    a, b = _la._float(a, b)
    m = _la._check_square(a, name)
    sa, sb = tuple(shape_of(a)), tuple(shape_of(b))
    vector = len(sb) == len(sa) - 1
    if len(sb) < 1 or sb[-1 if vector else -2] != m or (not vector and len(sb) < 2):
        raise _la._err(f"{name}: b of shape {sb} does not fit a of shape {sa}: b must be "
                       f"(..., {m}) or (..., {m}, k)")
    if vector:
        b = expand_dims(b, -1)
        sb = sb + (1,)
    batch = broadcast_shapes(sa[:-2], sb[:-2], name=name)
    a = broadcast_to(a, batch + (m, m), name)
    b = broadcast_to(b, batch + sb[-2:], name)
    return a, b, vector


def solve_triangular(a, b, trans=0, lower=False, unit_diagonal=False, overwrite_b=False,
                     debug=None, check_finite=True):
    """x with op(a) x = b, a triangular (only its `lower`, else upper,
    triangle is read); op(a) = a (trans 0 / 'N') or a^T (1 / 'T', 2 / 'C')."""
    if trans not in _TRANS:
        raise ValueError(f"solve_triangular: invalid 'trans' value {trans!r}")
    a, b, vector = _operands(a, b, "solve_triangular")
    x = triangular_solve_p.bind(a, b, left_side=True, lower=bool(lower),
                                transpose_a=_TRANS[trans], unit_diagonal=bool(unit_diagonal))
    return squeeze(x, -1) if vector else x


def cholesky(a, lower=False, overwrite_a=False, check_finite=True):
    """scipy's Cholesky factor: upper (a = U^T U) unless `lower`."""
    return _la.cholesky(a, upper=not lower)


def cho_factor(a, lower=False, overwrite_a=False, check_finite=True):
    """(c, lower) for cho_solve."""
    return cholesky(a, lower=lower), lower


def cho_solve(c_and_lower, b, overwrite_b=False, check_finite=True):
    """x with a x = b from a's Cholesky factor (c, lower) = cho_factor(a)."""
    c, lower = c_and_lower
    c, b, vector = _operands(c, b, "cho_solve")
    lower = bool(lower)
    # a = L L^T: L^-T L^-1 b; a = U^T U: U^-1 U^-T b
    y = triangular_solve_p.bind(c, b, left_side=True, lower=lower, transpose_a=not lower)
    x = triangular_solve_p.bind(c, y, left_side=True, lower=lower, transpose_a=lower)
    return squeeze(x, -1) if vector else x
