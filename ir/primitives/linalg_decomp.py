"""Stage ir: the matrix decompositions and triangular solve, batched over
leading axes (JAX's lax.linalg primitives; everything else of
needle.numpy.linalg and needle.scipy.linalg is composed from them).

Input: nothing. Output: `cholesky_p`, `triangular_solve_p`, `lu_p`,
`eigh_p`, `qr_p`, `svd_p` (Traits kind "linalg") with abstract eval and
numpy implementations (`cholesky_numpy`, ...: the CPU backend's library
calls run the same routines, with pooled output buffers where they fill
their own), and `LINALG_DECOMPOSITIONS` (their names).

Semantics (JAX's, float32 / float64, real only):
- cholesky(a) -> L: a is (..., n, n); only its lower triangle is read; L is
  lower triangular with zeros above. A matrix that is not positive definite
  (a pivot <= 0 or NaN, LAPACK's test) gives an all-NaN L (a compiled kernel
  cannot raise; numpy would).
- triangular_solve(a, b; left_side, lower, transpose_a, unit_diagonal) -> x:
  solves op(a) x = b (left_side) or x op(a) = b, op(a) = a or a^T; a is
  (..., m, m) and only its `lower` (else upper) triangle is read, its
  diagonal taken as ones when `unit_diagonal`; b is (..., m, k) (left) or
  (..., k, m) (right) with the same batch axes. A zero on the diagonal gives
  inf / NaN, as a substitution does.
- lu(a) -> (lu, pivots, permutation): partial-pivoting LU of a square
  (..., n, n) matrix, P a = L U, with L's unit-diagonal strict lower part and
  U packed into `lu`; `pivots` (int32, (..., n)) are LAPACK's row swaps
  (0-based: row i was swapped with row pivots[i], in order), `permutation`
  (int32, (..., n)) the resulting row order (a[permutation] = L U). The
  pivot is the first largest |value| of its column (LAPACK's idamax); a zero
  column leaves its multipliers zero (a singular matrix gives a zero on U's
  diagonal, no NaN).

- eigh(a) -> (w, v): eigenvalues (..., n) in ascending order and
  orthonormal eigenvectors (the columns of v) of the symmetric matrix whose
  lower triangle is a's.
- qr(a; full_matrices) -> (q, r): Householder QR of (..., m, n), q
  (..., m, k) with orthonormal columns and r (..., k, n) upper triangular,
  k = min(m, n), or k = m with `full_matrices` (numpy's 'complete').
- svd(a; full_matrices) -> (u, s, vt): a = u diag(s) vt, s (..., k)
  descending, u (..., m, k), vt (..., k, n) (k = m, n with full_matrices).
LAPACK's sign choices are kept (eigenvectors and singular vectors are unique
up to sign). A routine that fails to converge (NaN input) gives NaN.

numpy has no LU (getrf) and no triangular solve (trsm): those two run as
row-by-row numpy over the whole batch at once (n vectorised steps);
cholesky, eigh, qr and svd call LAPACK through np.linalg.
"""
import numpy as np

from ..core import Primitive, ShapedArray, ShapeError, Traits

__all__ = ["cholesky_p", "triangular_solve_p", "lu_p", "eigh_p", "qr_p", "svd_p",
           "cholesky_numpy", "triangular_solve_numpy", "lu_numpy", "eigh_numpy", "qr_numpy",
           "svd_numpy", "LINALG_DECOMPOSITIONS"]

LINALG = Traits(kind="linalg")

cholesky_p = Primitive("cholesky", LINALG)
triangular_solve_p = Primitive("triangular_solve", LINALG)
lu_p = Primitive("lu", LINALG, multiple_results=True)
eigh_p = Primitive("eigh", LINALG, multiple_results=True)
qr_p = Primitive("qr", LINALG, multiple_results=True)
svd_p = Primitive("svd", LINALG, multiple_results=True)

LINALG_DECOMPOSITIONS = ("cholesky", "triangular_solve", "lu", "eigh", "qr", "svd")

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_TRI_DEFAULTS = {"left_side": False, "lower": False, "transpose_a": False,
                 "unit_diagonal": False}


def _square(name, a, what="operand"):
    if a.dtype not in _FLOATS:
        raise TypeError(f"{name}: {what} must be float32 or float64, got {a.dtype.name}")
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ShapeError(f"{name}: {what} must be a square matrix (..., n, n), got shape "
                         f"{a.shape}")


# --- cholesky ------------------------------------------------------------------------

def _cholesky_aval(a):
    _square("cholesky", a)
    return [ShapedArray(a.shape, a.dtype)]


def cholesky_numpy(a, empty=None):
    """Lower Cholesky factor of each matrix of the stack `a` (its lower
    triangle read); NaN where a matrix is not positive definite."""
    a = np.asarray(a)
    if a.size == 0:
        return np.zeros(a.shape, a.dtype)
    try:
        out = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:               # some matrix failed: one at a time
        n = a.shape[-1]
        flat = a.reshape(-1, n, n)
        out = np.empty(flat.shape, a.dtype)
        for i, m in enumerate(flat):
            try:
                out[i] = np.linalg.cholesky(m)
            except np.linalg.LinAlgError:
                out[i] = np.nan
        out = out.reshape(a.shape)
    # A NaN reaches the diagonal, where LAPACK's test (pivot <= 0 or NaN)
    # fails the whole matrix; OpenBLAS does not always test: do it here.
    bad = np.isnan(out).any(axis=(-2, -1))
    if bad.any():
        out[bad] = np.nan
    return out.astype(a.dtype, copy=False)


cholesky_p.abstract_eval = _cholesky_aval
cholesky_p.impl = lambda a: [cholesky_numpy(a)]


# --- triangular_solve ----------------------------------------------------------------

def _tri_params(params):
    """Every triangular_solve equation holds its four flags, as bools."""
    return {**params, **{k: bool(params.get(k, d)) for k, d in _TRI_DEFAULTS.items()}}


triangular_solve_p.canonicalize_params = _tri_params


def _tri_aval(a, b, *, left_side=False, lower=False, transpose_a=False, unit_diagonal=False):
    _square("triangular_solve", a, "a")
    if b.dtype != a.dtype:
        raise TypeError(f"triangular_solve: operand dtypes differ: a {a.dtype.name} vs b "
                        f"{b.dtype.name}")
    m = a.shape[-1]
    if b.ndim != a.ndim or b.shape[:-2] != a.shape[:-2] or \
            b.shape[-2 if left_side else -1] != m:
        want = "(..., m, k)" if left_side else "(..., k, m)"
        raise ShapeError(f"triangular_solve: b must be {want} with a's batch axes for a of "
                         f"shape {a.shape} (left_side={bool(left_side)}), got b of shape "
                         f"{b.shape}")
    return [ShapedArray(b.shape, b.dtype)]


def _solve_lower(L, b, unit, out):
    """x with L x = b, L lower triangular (stacks; diagonal ones if unit),
    row by row over the whole stack: out[..., i, :] = (b_i - L_i,<i x_<i) / L_ii."""
    m = L.shape[-1]
    for i in range(m):
        r = b[..., i, :]
        if i:
            r = r - np.matmul(L[..., i:i + 1, :i], out[..., :i, :])[..., 0, :]
        out[..., i, :] = r if unit else r / L[..., i, i][..., None]
    return out


def triangular_solve_numpy(a, b, left_side=False, lower=False, transpose_a=False,
                           unit_diagonal=False, empty=None):
    a, b = np.asarray(a), np.asarray(b)
    if not left_side:       # x op(a) = b  <=>  op(a)^T x^T = b^T
        xt = triangular_solve_numpy(a, np.swapaxes(b, -1, -2), True, lower, not transpose_a,
                                    unit_diagonal)
        if empty is None:
            return np.ascontiguousarray(np.swapaxes(xt, -1, -2))
        out = empty(b.shape, b.dtype)
        np.copyto(out, np.swapaxes(xt, -1, -2))
        return out
    if transpose_a:         # a^T is triangular the other way
        a, lower = np.swapaxes(a, -1, -2), not lower
    if not lower:           # reversing rows and columns makes upper lower
        a, b = a[..., ::-1, ::-1], b[..., ::-1, :]
    out = np.empty(b.shape, b.dtype) if empty is None else empty(b.shape, b.dtype)
    view = out if lower else out[..., ::-1, :]
    with np.errstate(all="ignore"):
        _solve_lower(a, b, unit_diagonal, view)
    return out


triangular_solve_p.abstract_eval = _tri_aval
triangular_solve_p.impl = lambda a, b, **params: [triangular_solve_numpy(a, b, **params)]


# --- lu ------------------------------------------------------------------------------

def _lu_aval(a):
    _square("lu", a)
    idx = ShapedArray(a.shape[:-1], np.dtype(np.int32))
    return [ShapedArray(a.shape, a.dtype), idx, idx]


def lu_numpy(a, empty=None):
    """(lu, pivots, permutation) of every matrix of the stack `a`: partial
    pivoting, one column at a time over the whole stack."""
    a = np.asarray(a)
    shape, n = a.shape, a.shape[-1]
    lu = np.empty(shape, a.dtype) if empty is None else empty(shape, a.dtype)
    np.copyto(lu, a)
    if lu.size == 0:
        return lu, np.zeros(shape[:-1], np.int32), np.zeros(shape[:-1], np.int32)
    w = lu.reshape(-1, n, n)
    nb = w.shape[0]
    pivots = np.zeros((nb, n), np.int32)
    perm = np.tile(np.arange(n, dtype=np.int32), (nb, 1))
    rows = np.arange(nb)
    with np.errstate(all="ignore"):
        for k in range(n):
            p = k + np.argmax(np.abs(w[:, k:, k]), axis=1)     # first largest
            pivots[:, k] = p
            row_k = w[rows, k, :].copy()
            w[rows, k, :] = w[rows, p, :]
            w[rows, p, :] = row_k
            pk = perm[rows, k].copy()
            perm[rows, k] = perm[rows, p]
            perm[rows, p] = pk
            if k + 1 == n:
                break
            d = w[:, k, k]
            nz = d != 0                 # a zero column: nothing to eliminate
            w[:, k + 1:, k] = np.where(nz[:, None],
                                       w[:, k + 1:, k] / np.where(nz, d, 1)[:, None],
                                       w[:, k + 1:, k])
            w[:, k + 1:, k + 1:] -= w[:, k + 1:, k, None] * w[:, k, None, k + 1:]
    return lu, pivots.reshape(shape[:-1]), perm.reshape(shape[:-1])


lu_p.abstract_eval = _lu_aval
lu_p.impl = lambda a: list(lu_numpy(a))


# --- eigh, qr, svd: LAPACK through np.linalg ---------------------------------------------

def _per_matrix(fn, a, outs):
    """fn over the stack `a` at once; if LAPACK fails on some matrix, one
    matrix at a time, NaN for those that fail. `outs`: the result shapes."""
    try:
        return [np.asarray(r) for r in fn(a)]
    except np.linalg.LinAlgError:
        flat = a.reshape((-1,) + a.shape[-2:])
        res = [np.empty((len(flat),) + s[len(a.shape) - 2:], a.dtype) for s in outs]
        for i, m in enumerate(flat):
            try:
                for r, v in zip(res, fn(m)):
                    r[i] = v
            except np.linalg.LinAlgError:
                for r in res:
                    r[i] = np.nan
        return [r.reshape(s) for r, s in zip(res, outs)]


def _eigh_aval(a):
    _square("eigh", a)
    return [ShapedArray(a.shape[:-1], a.dtype), ShapedArray(a.shape, a.dtype)]


def eigh_numpy(a):
    a = np.asarray(a)
    outs = [a.shape[:-1], a.shape]
    if a.size == 0:
        return [np.zeros(s, a.dtype) for s in outs]
    w, v = _per_matrix(lambda m: np.linalg.eigh(m, UPLO="L"), a, outs)
    return [w.astype(a.dtype, copy=False), v.astype(a.dtype, copy=False)]


eigh_p.abstract_eval = _eigh_aval
eigh_p.impl = lambda a: eigh_numpy(a)


def _float_matrix(name, a):
    if a.dtype not in _FLOATS:
        raise TypeError(f"{name}: operand must be float32 or float64, got {a.dtype.name}")
    if a.ndim < 2:
        raise ShapeError(f"{name}: operand must be a matrix (..., m, n), got shape {a.shape}")


def _qr_shapes(shape, full_matrices):
    m, n = shape[-2:]
    k = m if full_matrices else min(m, n)
    return shape[:-2] + (m, k), shape[:-2] + (k, n)


def _qr_params(params):
    return {**params, "full_matrices": bool(params.get("full_matrices", False))}


def _qr_aval(a, *, full_matrices=False):
    _float_matrix("qr", a)
    return [ShapedArray(s, a.dtype) for s in _qr_shapes(a.shape, full_matrices)]


def qr_numpy(a, full_matrices=False):
    a = np.asarray(a)
    outs = list(_qr_shapes(a.shape, full_matrices))
    if a.size == 0:
        res = [np.zeros(s, a.dtype) for s in outs]
        if full_matrices:           # q of an (m, 0) matrix: the identity
            res[0][...] = np.eye(a.shape[-2], dtype=a.dtype)
        return res
    mode = "complete" if full_matrices else "reduced"
    return [r.astype(a.dtype, copy=False)
            for r in _per_matrix(lambda m: np.linalg.qr(m, mode=mode), a, outs)]


qr_p.canonicalize_params = _qr_params
qr_p.abstract_eval = _qr_aval
qr_p.impl = lambda a, *, full_matrices=False: qr_numpy(a, full_matrices)


def _svd_shapes(shape, full_matrices):
    m, n = shape[-2:]
    k = min(m, n)
    ku, kv = (m, n) if full_matrices else (k, k)
    return shape[:-2] + (m, ku), shape[:-2] + (k,), shape[:-2] + (kv, n)


def _svd_aval(a, *, full_matrices=False):
    _float_matrix("svd", a)
    return [ShapedArray(s, a.dtype) for s in _svd_shapes(a.shape, full_matrices)]


def svd_numpy(a, full_matrices=False):
    a = np.asarray(a)
    outs = list(_svd_shapes(a.shape, full_matrices))
    if a.size == 0:
        res = [np.zeros(s, a.dtype) for s in outs]
        if full_matrices:
            res[0][...] = np.eye(a.shape[-2], dtype=a.dtype)
            res[2][...] = np.eye(a.shape[-1], dtype=a.dtype)
        return res
    return [r.astype(a.dtype, copy=False) for r in _per_matrix(
        lambda m: np.linalg.svd(m, full_matrices=full_matrices), a, outs)]


svd_p.canonicalize_params = _qr_params
svd_p.abstract_eval = _svd_aval
svd_p.impl = lambda a, *, full_matrices=False: svd_numpy(a, full_matrices)
