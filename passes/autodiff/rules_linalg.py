"""Stage passes (autodiff): the rules of the matrix decompositions
(ir/primitives/linalg_decomp.py), registered into rules.py's tables.

Input: nothing. Output: entries of `JVP_RULES` and `TRANSPOSE_RULES` for
cholesky, triangular_solve and lu (JAX's rules, real matrices).

- triangular_solve is linear in b (its JVP in b is itself, its transpose a
  triangular solve with op(a) transposed) and not in a: d x = -op(a)^-1
  d op(a) x, with d a masked to the triangle the solve reads.
- cholesky (Murray 2016, arXiv:1602.07527): with L = chol(A),
  dL = L phi(L^-1 dA L^-T), phi = the lower triangle with its diagonal
  halved: two triangular solves and a matmul, all linear in dA. dA is the
  symmetric matrix of the tangent's lower triangle (the primitive reads
  only that triangle); JAX uses the tangent as it is, which agrees when it
  is symmetric (jnp.linalg.cholesky symmetrizes its input by default).
- lu (de Hoog, Anderssen, Lukas): with P A = L U, X = L^-1 P dA U^-1,
  dL = L tril(X, -1), dU = triu(X) U; pivots and permutation are integers
  (no tangent).
- eigh (JAX's rule): with A = V diag(w) V^T and S = V^T dA V (dA from the
  lower triangle, as cholesky's), dw = diag(S), dV = V (F * S), F_ij =
  1 / (w_j - w_i) off the diagonal, 0 on it.
- qr (JAX's rule, m >= n, reduced or square): with X = Q^T dA R^-1 and
  O = tril(X, -1) - tril(X, -1)^T, dQ = Q (O - X) + dA R^-1, dR = (X - O) R.
- svd (JAX's rule, reduced or square; real): with S = U^T dA V,
  ds = diag(S), dU = U (F * (S diag(s) + diag(s) S^T)) (+ (I - U U^T) dA V /
  s when m > n), dV = V (F * (diag(s) S + S^T diag(s))) (+ the same for
  n > m), F_ij = 1 / (s_j^2 - s_i^2) off the diagonal.
Repeated eigenvalues (singular values) have no derivative of their vectors
(inf / NaN there, as in JAX); the values' derivatives stay finite.
Every tangent operation is a dot_general, a triangular solve in b, a
product with a primal matrix or a select with a constant mask, all of
which transpose, so reverse mode of the composed functions (solve, inv,
det, slogdet, cho_solve, norm(ord=2)) follows.
"""
import numpy as np

from ...ir.primitives import (cholesky_p, convert_element_type_p, dot_general_p, eigh_p, iota_p,
                              lu_p, qr_p, select_p, svd_p, transpose_p, triangular_solve_p)
from .rules import (JVP_RULES, TRANSPOSE_RULES, UndefinedPrimal, add, add_tangents, bcast, div,
                    dtype_of, eq, mul, neg, reduce_sum, shape_of, sub)


def _mT(x):
    nd = len(shape_of(x))
    return transpose_p.bind(x, permutation=tuple(range(nd - 2)) + (nd - 1, nd - 2))


def _matmul(x, y):
    """Batched x @ y over equal leading axes."""
    nd = len(shape_of(x))
    bd = tuple(range(nd - 2))
    return dot_general_p.bind(x, y, dimension_numbers=(((nd - 1,), (nd - 2,)), (bd, bd)))


def _masked(x, keep):
    """x where the (n, m) bool constant `keep` holds, 0 elsewhere (a select,
    so it transposes, and a NaN outside the triangle does not leak in)."""
    s = shape_of(x)
    p = bcast(np.asarray(keep, bool), s, (len(s) - 2, len(s) - 1))
    return select_p.bind(p, x, np.zeros((), dtype_of(x)))


def _tril(x, k=0):
    n, m = shape_of(x)[-2:]
    return _masked(x, np.tri(n, m, k, dtype=bool))


def _triu(x, k=0):
    n, m = shape_of(x)[-2:]
    return _masked(x, ~np.tri(n, m, k - 1, dtype=bool))


def _eye_like(x):
    s = shape_of(x)
    return bcast(np.eye(s[-1], dtype=dtype_of(x)), s, (len(s) - 2, len(s) - 1))


def _trisolve(a, b, **params):
    return triangular_solve_p.bind(a, b, **params)


# --- triangular_solve ------------------------------------------------------------------

def _tri_jvp_a(g_a, ans, a, *, left_side, lower, transpose_a, unit_diagonal):
    # JAX's _triangular_solve_jvp_rule_a: only the triangle the solve reads
    # varies (the strict one when the diagonal is ones).
    k = 1 if unit_diagonal else 0
    g_a = neg(_tril(g_a, -k) if lower else _triu(g_a, k))
    g_a = _mT(g_a) if transpose_a else g_a
    m, n = shape_of(ans)[-2:]

    def a_inverse(rhs):
        return _trisolve(a, rhs, left_side=left_side, lower=lower, transpose_a=transpose_a,
                         unit_diagonal=unit_diagonal)
    # solving costs about a matmul: order the products the cheaper way
    if left_side:
        return a_inverse(_matmul(g_a, ans)) if m > n else _matmul(a_inverse(g_a), ans)
    return a_inverse(_matmul(ans, g_a)) if m < n else _matmul(ans, a_inverse(g_a))


def _tri_jvp(primals, tangents, **params):
    (a, b), (ta, tb) = primals, tangents
    ans = _trisolve(a, b, **params)
    out = None
    if tb is not None:
        out = _trisolve(a, tb, **params)
    if ta is not None:
        out = add_tangents(out, _tri_jvp_a(ta, ans, a, **params))
    return ans, out


def _tri_T(ct, a, b, *, left_side, lower, transpose_a, unit_diagonal):
    if isinstance(a, UndefinedPrimal):
        raise TypeError("autodiff: triangular_solve is not linear in its matrix a")
    return [None, _trisolve(a, ct, left_side=left_side, lower=lower,
                            transpose_a=not transpose_a, unit_diagonal=unit_diagonal)]


JVP_RULES[triangular_solve_p] = _tri_jvp
TRANSPOSE_RULES[triangular_solve_p] = _tri_T


# --- cholesky ----------------------------------------------------------------------------

def _cholesky_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    L = cholesky_p.bind(x)
    # the primitive reads a's lower triangle: dA is the symmetric matrix it
    # stands for (equal to t when t is symmetric, as after symmetrize_input)
    t = add(_tril(t), _mT(_tril(t, -1)))
    tmp = _trisolve(L, t, left_side=False, lower=True, transpose_a=True)      # dA L^-T
    tmp = _trisolve(L, tmp, left_side=True, lower=True)                       # L^-1 dA L^-T
    n = shape_of(x)[-1]
    # phi: the strict lower triangle plus half the diagonal
    phi = add(_tril(tmp, -1), mul(_masked(tmp, np.eye(n, dtype=bool)),
                                  np.array(0.5, dtype_of(tmp))))
    return L, _matmul(L, phi)


JVP_RULES[cholesky_p] = _cholesky_jvp


# --- lu ----------------------------------------------------------------------------------

def _one_hot_rows(perm, dtype):
    """P with P[..., i, j] = (perm[..., i] == j): P @ x takes x's rows in
    perm's order."""
    s = tuple(shape_of(perm))
    n = s[-1]
    full = s + (n,)
    cols = iota_p.bind(dtype=np.dtype(np.int32), shape=full, dimension=len(s))
    hit = eq(bcast(perm, full, tuple(range(len(s)))), cols)
    return convert_element_type_p.bind(hit, new_dtype=np.dtype(dtype), weak_type=False)


def _lu_jvp(primals, tangents):
    (a,), (t,) = primals, tangents
    lu, pivots, perm = lu_p.bind(a)
    x = _matmul(_one_hot_rows(perm, dtype_of(lu)), t)           # P dA
    # X = L^-1 P dA U^-1: the unit lower and the upper triangle of `lu`
    la = _trisolve(lu, x, left_side=True, lower=True, unit_diagonal=True)
    lau = _trisolve(lu, la, left_side=False, lower=False)
    l_ = add(_tril(lu, -1), _eye_like(lu))
    u_ = _triu(lu)
    lu_dot = add(_matmul(l_, _tril(lau, -1)), _matmul(_triu(lau), u_))
    return [lu, pivots, perm], [lu_dot, None, None]


JVP_RULES[lu_p] = _lu_jvp


# --- eigh, qr, svd -------------------------------------------------------------------------

def _sym_from_lower(t):
    return add(_tril(t), _mT(_tril(t, -1)))


def _diag(x):
    """The diagonal (..., n) of (..., n, n) x: a reduction of the masked
    matrix, so it transposes into a diagonal matrix."""
    n = shape_of(x)[-1]
    return reduce_sum(_masked(x, np.eye(n, dtype=bool)), (len(shape_of(x)) - 1,))


def _rows(v, shape):
    """(..., k) -> (..., 1 -> m, k): v broadcast along the rows."""
    nd = len(shape)
    return bcast(v, shape, tuple(range(nd - 2)) + (nd - 1,))


def _cols(v, shape):
    """(..., k) -> (..., k, 1 -> n): v broadcast along the columns."""
    nd = len(shape)
    return bcast(v, shape, tuple(range(nd - 1)))


def _inv_gaps(d, square):
    """F with F_ij = 1 / (d_j - d_i) off the diagonal and 0 on it (d_j^2 -
    d_i^2 with `square`), from the primal values d (..., k)."""
    k = shape_of(d)[-1]
    shape = tuple(shape_of(d)) + (k,)
    dj, di = _rows(d, shape), _cols(d, shape)
    gaps = mul(add(dj, di), sub(dj, di)) if square else sub(dj, di)
    eye = _eye_like(gaps)
    one = np.array(1, dtype_of(d))
    return sub(div(one, add(gaps, eye)), eye)


def _eigh_jvp(primals, tangents):
    (a,), (t,) = primals, tangents
    w, v = eigh_p.bind(a)
    s = _matmul(_mT(v), _matmul(_sym_from_lower(t), v))         # V^T dA V
    dv = _matmul(v, mul(_inv_gaps(w, False), s))
    return [w, v], [_diag(s), dv]


def _qr_jvp(primals, tangents, *, full_matrices):
    (x,), (dx,) = primals, tangents
    q, r = qr_p.bind(x, full_matrices=full_matrices)
    m, n = shape_of(x)[-2:]
    if m < n or (full_matrices and m != n):
        raise NotImplementedError(
            f"qr: no derivative of a {'wide' if m < n else 'complete (full_matrices)'} QR "
            f"decomposition of shape {tuple(shape_of(x))} (JAX neither): only m >= n, reduced")
    dx_rinv = _trisolve(r, dx, left_side=False, lower=False)          # dA R^-1
    qt_dx_rinv = _matmul(_mT(q), dx_rinv)
    low = _tril(qt_dx_rinv, -1)
    do = sub(low, _mT(low))                                           # skew-symmetric
    dq = add(_matmul(q, sub(do, qt_dx_rinv)), dx_rinv)
    dr = _matmul(sub(qt_dx_rinv, do), r)
    return [q, r], [dq, dr]


def _svd_jvp(primals, tangents, *, full_matrices):
    (a,), (da,) = primals, tangents
    m, n = shape_of(a)[-2:]
    if full_matrices and m != n:
        raise NotImplementedError(
            f"svd: no derivative of the singular vectors with full_matrices=True and a "
            f"non-square shape {tuple(shape_of(a))} (JAX neither): use full_matrices=False")
    u, s, vt = svd_p.bind(a, full_matrices=full_matrices)
    v = _mT(vt)
    dS = _matmul(_mT(u), _matmul(da, v))                              # U^T dA V
    ds = _diag(dS)
    F = _inv_gaps(s, True)
    shape = shape_of(dS)
    s_row, s_col = _rows(s, shape), _cols(s, shape)
    dSS, SdS = mul(dS, s_row), mul(s_col, dS)                        # dS diag(s), diag(s) dS
    du = _matmul(u, mul(F, add(dSS, _mT(dSS))))
    dv = _matmul(v, mul(F, add(SdS, _mT(SdS))))
    if m > n:
        dav = _matmul(da, v)
        du = add(du, div(sub(dav, _matmul(u, _matmul(_mT(u), dav))),
                         _rows(s, shape_of(dav))))
    if n > m:
        dau = _matmul(_mT(da), u)
        dv = add(dv, div(sub(dau, _matmul(v, _matmul(vt, dau))), _rows(s, shape_of(dau))))
    return [u, s, vt], [du, ds, _mT(dv)]


JVP_RULES[eigh_p] = _eigh_jvp
JVP_RULES[qr_p] = _qr_jvp
JVP_RULES[svd_p] = _svd_jvp
