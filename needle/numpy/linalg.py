"""needle.numpy.linalg: numpy.linalg functions composed from needle.numpy
and the decomposition primitives (ir/primitives/linalg_decomp.py: cholesky,
lu, triangular_solve, eigh, qr, svd; JAX's lax.linalg set).

Stage: library code run at call time (eagerly or while tracing). Input:
arrays or tracers. Output: arrays or tracers.

numpy's signatures and broadcasting (numpy 2: `solve`'s b is a vector only
when it is 1-d, else (..., n, k) with the batch axes broadcast against a's),
JAX's semantics where a compiled kernel cannot raise: a matrix that is not
positive definite gives a NaN Cholesky factor, a singular one inf / NaN from
`solve` and `inv`, 0 from `det`, (0, -inf) from `slogdet`. Integer inputs
become the default float (float32). Gradients follow from the primitives'
JVP rules (passes/autodiff/rules_linalg.py): `solve` and `inv` through the LU
factors, `det` and `slogdet` through U's diagonal (so not at a singular
matrix, where JAX's cofactor rule still gives det's gradient); `eigh`,
`qr`, `svd` as JAX's (no derivative of the vectors at repeated values, of a
wide QR, or of a non-square SVD with full_matrices=True). eigh, qr and svd
run on the CPU only (LAPACK); on CUDA compiling one is an error naming it.
"""
from collections import namedtuple as _namedtuple

import numpy as _np

from . import math as _m
from . import reductions as _r
from . import shape as _s
from ..ir.core import ShapeError as _ShapeError
from ..ir.primitives import cholesky_p as _cholesky_p, lu_p as _lu_p, eigh_p as _eigh_p
from ..ir.primitives import qr_p as _qr_p, svd_p as _svd_p
from ..ir.primitives import triangular_solve_p as _triangular_solve_p
from ._core import (asarray as _asarray, broadcast_shapes as _broadcast_shapes,
                    broadcast_to as _broadcast_to, cast as _cast, promote as _promote,
                    shape_of as _shape_of, user_line as _user_line,
                    with_location as _with_location)

__all__ = ["norm", "cholesky", "solve", "inv", "det", "slogdet", "eigh", "eigvalsh", "qr",
           "svd", "svdvals", "SlogdetResult", "EighResult", "QRResult", "SVDResult"]

# numpy 2's result types (namedtuples: they unpack as pairs / triples)
SlogdetResult = _namedtuple("SlogdetResult", ["sign", "logabsdet"])
EighResult = _namedtuple("EighResult", ["eigenvalues", "eigenvectors"])
QRResult = _namedtuple("QRResult", ["Q", "R"])
SVDResult = _namedtuple("SVDResult", ["U", "S", "Vh"])


def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 - numpy's name
    """Vector norms (ord None / 2, 1, inf, -inf, 0, other p) and matrix norms
    ('fro', None, 1, -1, inf, -inf, and 2, -2, 'nuc' from the singular values)."""
    x = _promote(x, to_float=True)[0]
    nd = len(_shape_of(x))
    if axis is None:
        if ord is None:
            return _frob(x, tuple(range(nd)), keepdims)
        if nd == 1:
            axis = (0,)
        elif nd == 2:
            axis = (0, 1)
        else:
            raise ValueError(f"norm: improper number of dimensions to norm ({x.shape})")
    axes = _r.normalize_axis(axis, nd, "norm")
    a = _m.absolute(x)
    if len(axes) == 1:
        if ord is None or ord == 2:
            return _frob(x, axes, keepdims)
        if ord == _np.inf:
            return _r.max(a, axis=axes, keepdims=keepdims)
        if ord == -_np.inf:
            return _r.min(a, axis=axes, keepdims=keepdims)
        if ord == 1:
            return _r.sum(a, axis=axes, keepdims=keepdims)
        if ord == 0:
            return _r.sum(_cast(_m.not_equal(x, 0), x.dtype), axis=axes, keepdims=keepdims)
        if isinstance(ord, str):
            raise ValueError(f"norm: invalid norm order {ord!r} for vectors")
        return _m.power(_r.sum(_m.power(a, float(ord)), axis=axes, keepdims=keepdims),
                        1.0 / float(ord))
    if len(axes) == 2:
        r, c = axes
        if ord is None or ord == "fro":
            return _frob(x, axes, keepdims)
        if ord in (1, -1):
            red = _r.max if ord == 1 else _r.min
            out = red(_r.sum(a, axis=r, keepdims=True), axis=c, keepdims=True)
        elif ord in (_np.inf, -_np.inf):
            red = _r.max if ord > 0 else _r.min
            out = red(_r.sum(a, axis=c, keepdims=True), axis=r, keepdims=True)
        elif ord in (2, -2, "nuc"):
            sv = svdvals(_s.moveaxis(x, (r, c), (-2, -1)))
            red = {2: _r.max, -2: _r.min, "nuc": _r.sum}[ord]
            out = red(sv, axis=-1)
            if keepdims:
                out = _s.expand_dims(out, tuple(sorted((r, c))))
            return out
        else:
            raise ValueError(f"norm: invalid norm order {ord!r} for matrices")
        return out if keepdims else _r.sum(out, axis=axes)
    raise ValueError(f"norm: improper number of dimensions to norm (axis {axis})")


def _frob(x, axes, keepdims):
    return _m.sqrt(_r.sum(_m.multiply(x, x), axis=axes, keepdims=keepdims))


# --- decompositions and solves ---------------------------------------------------------

def _err(msg, exc=_ShapeError):
    return _with_location(exc(msg), _user_line())


def _float(*xs):
    return _promote(*[_asarray(x) for x in xs], to_float=True)


def _check_square(a, name, what="a"):
    s = tuple(_shape_of(a))
    if len(s) < 2 or s[-1] != s[-2]:
        raise _err(f"{name}: {what} must be a square matrix (..., n, n), got shape {s}")
    return s[-1]


def _mT(x):
    return _s.swapaxes(x, -1, -2)


def cholesky(a, *, upper=False, symmetrize_input=True):
    """The lower Cholesky factor L (a = L L^T) of each matrix of `a`; with
    `upper`, U = L^T. `symmetrize_input` (JAX's default) factors
    (a + a^T) / 2, so the gradient is symmetric; without it only the lower
    triangle is read (numpy's behaviour). NaN where a is not positive
    definite (numpy raises)."""
    (a,) = _float(a)
    _check_square(a, "cholesky")
    if symmetrize_input:
        a = _m.multiply(_m.add(a, _mT(a)), 0.5)
    L = _cholesky_p.bind(a)
    return _mT(L) if upper else L


def _permute_rows(perm, b):
    """b[..., perm[i], :] for each i, as P b with P one-hot: a matmul (whose
    transpose is one too), and no size in any kernel's source (a gather
    writes n into its index clamping: a kernel per matrix size)."""
    from .linalg_ops import matmul
    n = _shape_of(perm)[-1]
    p = _m.equal(_s.expand_dims(perm, -1), _np.arange(n, dtype=_np.int32))
    return matmul(_cast(p, b.dtype), b)


def _lu_solve(lu, perm, b):
    """x with a x = b from a's LU factors: U^-1 L^-1 P b (b is (..., n, k) with
    the batch axes of lu)."""
    y = _triangular_solve_p.bind(lu, _permute_rows(perm, b), left_side=True, lower=True,
                                 unit_diagonal=True)
    return _triangular_solve_p.bind(lu, y, left_side=True, lower=False)


def solve(a, b):
    """x with a @ x = b (numpy.linalg.solve): a (..., n, n); b (n,), or
    (..., n, k) with batch axes broadcast against a's."""
    a, b = _float(a, b)
    n = _check_square(a, "solve")
    sa, sb = tuple(_shape_of(a)), tuple(_shape_of(b))
    vector = len(sb) == 1
    if vector and sb[0] != n or not vector and (len(sb) < 2 or sb[-2] != n):
        raise _err(f"solve: b of shape {sb} does not fit a of shape {sa}: b must be (n,) "
                   f"or (..., n, k) with n = {n}")
    batch = sa[:-2] if vector else _broadcast_shapes(sa[:-2], sb[:-2], name="solve")
    lu, _, perm = _lu_p.bind(a)
    if sa[:-2] != batch:
        lu = _broadcast_to(lu, batch + (n, n), "solve")
        perm = _broadcast_to(perm, batch + (n,), "solve")
    b2 = _s.reshape(b, (n, 1)) if vector else b
    k = _shape_of(b2)[-1]
    b2 = _broadcast_to(b2, batch + (n, k), "solve")
    x = _lu_solve(lu, perm, b2)
    return _s.squeeze(x, -1) if vector else x


def inv(a):
    """The inverse of each matrix of `a` (solve against the identity)."""
    (a,) = _float(a)
    n = _check_square(a, "inv")
    from .creation import eye
    return solve(a, eye(n, dtype=a.dtype))


def _lu_diag_and_parity(a, name):
    (a,) = _float(a)
    n = _check_square(a, name)
    lu, pivots, _ = _lu_p.bind(a)
    # the diagonal as a masked row sum (the mask an argument, not a stride n + 1
    # in the kernel's source)
    d = _r.sum(_m.where(_np.eye(n, dtype=bool), lu, 0), axis=-1)
    swaps = _r.sum(_cast(_m.not_equal(pivots, _np.arange(n, dtype=_np.int32)), _np.int32),
                   axis=-1)
    odd = _m.equal(_m.remainder(swaps, 2), 1)
    return d, odd


def det(a):
    """The determinant of each matrix of `a` (from its LU factors)."""
    d, odd = _lu_diag_and_parity(a, "det")
    p = _r.prod(d, axis=-1)
    return _m.where(odd, _m.negative(p), p)


def slogdet(a):
    """(sign, log|det|) of each matrix of `a`: sign 0 and -inf for a singular
    matrix, as numpy."""
    d, odd = _lu_diag_and_parity(a, "slogdet")
    sign = _r.prod(_m.sign(d), axis=-1)
    sign = _m.where(odd, _m.negative(sign), sign)
    sign = _m.where(_m.equal(sign, 0), _m.multiply(sign, 0), sign)     # no -0.0
    return SlogdetResult(sign, _r.sum(_m.log(_m.absolute(d)), axis=-1))


def eigh(a, UPLO=None, symmetrize_input=True):  # noqa: N803 - numpy's name
    """(eigenvalues ascending, eigenvectors as columns) of each symmetric
    matrix of `a`. `symmetrize_input` (JAX's default) uses (a + a^T) / 2;
    without it the `UPLO` triangle ('L', the default, or 'U') is read."""
    (a,) = _float(a)
    _check_square(a, "eigh")
    if UPLO not in (None, "L", "U"):
        raise ValueError(f"eigh: UPLO must be 'L' or 'U', got {UPLO!r}")
    if symmetrize_input:
        a = _m.multiply(_m.add(a, _mT(a)), 0.5)
    elif UPLO == "U":
        a = _mT(a)
    return EighResult(*_eigh_p.bind(a))


def eigvalsh(a, UPLO="L"):  # noqa: N803 - numpy's name
    return eigh(a, UPLO)[0]


def _check_matrix(a, name):
    s = tuple(_shape_of(a))
    if len(s) < 2:
        raise _err(f"{name}: a must be a matrix (..., m, n), got shape {s}")


def qr(a, mode="reduced"):
    """QR of each matrix of `a` (Householder, LAPACK): mode 'reduced' (q
    (..., m, k), r (..., k, n), k = min(m, n)), 'complete' (q (..., m, m))
    or 'r' (r only)."""
    (a,) = _float(a)
    _check_matrix(a, "qr")
    if mode not in ("reduced", "complete", "r"):
        raise NotImplementedError(f"qr: mode {mode!r} is not supported ('reduced', "
                                  f"'complete', 'r')")
    q, r = _qr_p.bind(a, full_matrices=mode == "complete")
    return r if mode == "r" else QRResult(q, r)


def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """(U, S descending, Vh) with a = U diag(S) Vh, numpy's defaults
    (full_matrices=True: U (..., m, m), Vh (..., n, n)); S only without
    compute_uv. `hermitian` is accepted and ignored (the general SVD)."""
    (a,) = _float(a)
    _check_matrix(a, "svd")
    u, s, vt = _svd_p.bind(a, full_matrices=bool(full_matrices and compute_uv))
    return SVDResult(u, s, vt) if compute_uv else s


def svdvals(x):
    """The singular values of each matrix of `x`, descending."""
    return svd(x, compute_uv=False)
