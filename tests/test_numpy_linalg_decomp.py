"""needle.numpy.linalg (solve, inv, cholesky, det, slogdet, eigh, qr, svd,
norm's 2 / -2 / 'nuc') and needle.scipy.linalg (solve_triangular, cholesky,
cho_factor, cho_solve), built on the cholesky, lu, triangular_solve, eigh,
qr and svd primitives:

- values against numpy.linalg (scipy-free references: a triangular solve is
  np.linalg.solve of the masked triangle), eagerly and under needle.jit, on
  hypothesis-drawn batch shapes (0-2 batch axes) and sizes 1..5, float32 and
  float64, on well-conditioned matrices (A + n I, X X^T + n I);
- gradients (grad and jvp, eagerly and under jit) against float64 central
  differences, and grad of grad;
- vmap (a batch axis on either operand or both, and per-example gradients);
- JAX's semantics where numpy raises (NaN Cholesky factor, singular
  matrices), the library calls on CPU, and the errors.
eigh, qr and svd have no CUDA kernel: their jit cases run on the CPU only
(tests_cuda/test_cuda_linalg.py checks the error on CUDA).
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import needle
import needle.numpy as nnp
import needle.scipy.linalg as sla
from needle.ir.primitives import cholesky_p, lu_p, triangular_solve_p

from helpers import DEVICE, MODES, mode_cases, run

pytestmark = pytest.mark.on_device      # also run on $NEEDLE_TEST_DEVICE (conftest.py)

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def _tol(dt, ref):
    scale = 1.0 + float(np.max(np.abs(ref), initial=0.0))
    if np.dtype(dt) == F32:
        return dict(rtol=2e-4, atol=2e-5 * scale)
    return dict(rtol=1e-9, atol=1e-11 * scale)


def _close(got, want, dt):
    got = np.asarray(got)
    assert got.shape == np.shape(want), (got.shape, np.shape(want))
    assert got.dtype == dt, (got.dtype, dt)
    np.testing.assert_allclose(got, want, equal_nan=True, **_tol(dt, want))


def general(rng, shape, dt=F64):
    """Well-conditioned (..., n, n): a Gaussian matrix plus n I."""
    n = shape[-1]
    return (rng.standard_normal(shape) + n * np.eye(n)).astype(dt)


def spd(rng, shape, dt=F64):
    """Symmetric positive definite (..., n, n): X X^T + n I."""
    x = rng.standard_normal(shape)
    return (x @ np.swapaxes(x, -1, -2) + shape[-1] * np.eye(shape[-1])).astype(dt)


def _tri(a, lower, unit):
    t = np.tril(a) if lower else np.triu(a)
    if unit:
        t = t.copy()
        i = np.arange(a.shape[-1])
        t[..., i, i] = 1
    return t


@st.composite
def problems(draw, mode="eager"):
    """(dtype, batch shape, n, a numpy Generator). Under jit one batch axis
    only: each new rank or dtype compiles new kernels (sizes do not)."""
    dt = draw(st.sampled_from([F32, F64]), label="dtype")
    batch = draw(hnp.array_shapes(min_dims=0 if mode == "eager" else 1,
                                  max_dims=2 if mode == "eager" else 1, min_side=1, max_side=3),
                 label="batch")
    n = draw(st.integers(1, 5), label="n")
    seed = draw(st.integers(0, 2 ** 16), label="seed")
    return dt, tuple(batch), n, np.random.default_rng(seed)


# --- values ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_solve_and_inv(mode, data):
    dt, batch, n, rng = data.draw(problems(mode))
    a = general(rng, batch + (n, n), dt)
    k = data.draw(st.integers(1, 3), label="k")
    b_batch = data.draw(st.sampled_from([batch, batch[1:], (1,) * len(batch)][:3 if mode ==
                                                                                "eager" else 2]),
                        label="b")
    b = rng.standard_normal(b_batch + (n, k)).astype(dt)
    v = rng.standard_normal(n).astype(dt)
    x, xv, ai = run(lambda a, b, v: (nnp.linalg.solve(a, b), nnp.linalg.solve(a, v),
                                     nnp.linalg.inv(a)), (a, b, v), mode)
    a64 = a.astype(F64)
    _close(x, np.linalg.solve(a64, b.astype(F64)), dt)
    _close(xv, np.linalg.solve(a64, v.astype(F64)), dt)
    _close(ai, np.linalg.inv(a64), dt)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_det_and_slogdet(mode, data):
    dt, batch, n, rng = data.draw(problems(mode))
    a = general(rng, batch + (n, n), dt)
    a[..., [0, -1], :] = a[..., [-1, 0], :]             # pivoting, a negative det
    d, (s, ld) = run(lambda a: (nnp.linalg.det(a), nnp.linalg.slogdet(a)), (a,), mode)
    s_ref, ld_ref = np.linalg.slogdet(a.astype(F64))
    _close(d, np.linalg.det(a.astype(F64)), dt)
    _close(s, s_ref, dt)
    _close(ld, ld_ref, dt)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_cholesky_and_cho_solve(mode, data):
    dt, batch, n, rng = data.draw(problems(mode))
    a = spd(rng, batch + (n, n), dt)
    b = rng.standard_normal(batch + (n, 2)).astype(dt)
    L, U, x, xv = run(lambda a, b: (nnp.linalg.cholesky(a), sla.cholesky(a),
                                    sla.cho_solve(sla.cho_factor(a, lower=True), b),
                                    sla.cho_solve(sla.cho_factor(a), b[..., 0])), (a, b), mode)
    a64 = a.astype(F64)
    L_ref = np.linalg.cholesky(a64)
    _close(L, L_ref, dt)
    _close(U, np.swapaxes(L_ref, -1, -2), dt)
    _close(x, np.linalg.solve(a64, b.astype(F64)), dt)
    _close(xv, np.linalg.solve(a64, b[..., :1].astype(F64))[..., 0], dt)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data(), lower=st.booleans(), trans=st.sampled_from([0, 1, "T"]),
       unit=st.booleans())
def test_solve_triangular(mode, data, lower, trans, unit):
    dt, batch, n, rng = data.draw(problems(mode))
    a = general(rng, batch + (n, n), dt)
    a[..., np.triu_indices(n, 1)[1], np.triu_indices(n, 1)[0]] *= 0.3   # tame the triangle
    b = rng.standard_normal(batch + (n, 3)).astype(dt)
    x, xv = run(lambda a, b: (sla.solve_triangular(a, b, trans=trans, lower=lower,
                                                   unit_diagonal=unit),
                              sla.solve_triangular(a, b[..., 1], trans=trans, lower=lower,
                                                   unit_diagonal=unit)), (a, b), mode)
    t = _tri(a.astype(F64), lower, unit)
    if trans in (1, "T"):
        t = np.swapaxes(t, -1, -2)
    _close(x, np.linalg.solve(t, b.astype(F64)), dt)
    _close(xv, np.linalg.solve(t, b[..., 1:2].astype(F64))[..., 0], dt)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_lu_factors(mode, data):
    """numpy has no LU: the factors rebuild the permuted matrix, L's
    multipliers are at most 1 in size (partial pivoting) and the pivots give
    the permutation."""
    dt, batch, n, rng = data.draw(problems(mode))
    a = rng.standard_normal(batch + (n, n)).astype(dt)
    lu, piv, perm = run(lambda a: tuple(lu_p.bind(a)), (a,), mode)
    assert piv.dtype == perm.dtype == np.int32
    L = np.tril(lu, -1) + np.eye(n)
    U = np.triu(lu)
    want = np.take_along_axis(a.astype(F64), perm[..., None].astype(np.int64), axis=-2)
    _close((L @ U).astype(dt), want, dt)
    assert np.all(np.abs(np.tril(lu, -1)) <= 1 + 1e-6)
    order = np.broadcast_to(np.arange(n), batch + (n,)).copy()
    for i in range(n):
        j = piv[..., i]
        oi = np.take_along_axis(order, np.full(batch + (1,), i), -1)
        oj = np.take_along_axis(order, j[..., None].astype(np.int64), -1)
        np.put_along_axis(order, np.full(batch + (1,), i), oj, -1)
        np.put_along_axis(order, j[..., None].astype(np.int64), oi, -1)
    np.testing.assert_array_equal(order, perm)


@pytest.mark.parametrize("mode", MODES)
def test_jax_semantics_where_numpy_raises(mode):
    """A matrix that is not positive definite has a NaN factor (every entry);
    a singular one has det 0 and slogdet (0, -inf); a zero matrix factors."""
    bad = np.stack([np.eye(3), -np.eye(3), [[1.0, 2, 0], [2, 1, 0], [0, 0, 1]]])
    sing = np.array([[1.0, 2.0], [2.0, 4.0]])
    L, d, (s, ld), (lu, piv, perm) = run(
        lambda a, b: (nnp.linalg.cholesky(a), nnp.linalg.det(b), nnp.linalg.slogdet(b),
                      tuple(lu_p.bind(b * 0.0))), (bad, sing), mode)
    np.testing.assert_array_equal(L[0], np.eye(3))
    assert np.isnan(L[1:]).all()
    assert abs(float(d)) < 1e-12 and float(s) == 0.0 and float(ld) == -np.inf
    np.testing.assert_array_equal(lu, np.zeros((2, 2)))
    np.testing.assert_array_equal(piv, [0, 1])
    np.testing.assert_array_equal(perm, [0, 1])


def _cpu_only(mode):
    if mode == "jit" and DEVICE != "cpu":
        pytest.skip("eigh, qr and svd run on the CPU only")


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_eigh(mode, data):
    _cpu_only(mode)
    dt, batch, n, rng = data.draw(problems(mode))
    a = rng.standard_normal(batch + (n, n)).astype(dt)
    a = a + np.swapaxes(a, -1, -2)
    (w, v), wl, wu = run(lambda a: (nnp.linalg.eigh(a), nnp.linalg.eigvalsh(a),
                                    nnp.linalg.eigh(a, "U", symmetrize_input=False)[0]),
                         (a,), mode)
    w_ref = np.linalg.eigvalsh(a.astype(F64))
    _close(w, w_ref, dt)
    _close(wl, w_ref, dt)
    _close(wu, w_ref, dt)
    # vectors are unique up to sign: check A V = V diag(w) and V^T V = I
    _close((a.astype(F64) @ v.astype(F64)).astype(dt), (v * w[..., None, :]).astype(F64), dt)
    _close(np.swapaxes(v, -1, -2) @ v, np.broadcast_to(np.eye(n), v.shape), dt)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data(), mode_qr=st.sampled_from(["reduced", "complete", "r"]),
       wide=st.booleans())
def test_qr(mode, data, mode_qr, wide):
    _cpu_only(mode)
    dt, batch, n, rng = data.draw(problems(mode))
    m = n + data.draw(st.integers(0, 2), label="extra")
    a = rng.standard_normal(batch + ((n, m) if wide else (m, n))).astype(dt)
    got = run(lambda a: nnp.linalg.qr(a, mode_qr), (a,), mode)
    want = np.linalg.qr(a.astype(F64), mode_qr)
    if mode_qr == "r":
        _close(np.abs(got), np.abs(want), dt)       # rows unique up to sign
        return
    q, r = got
    assert q.shape == want.Q.shape and r.shape == want.R.shape
    _close((q.astype(F64) @ r).astype(dt), a.astype(F64), dt)
    _close(np.abs(r), np.abs(want.R), dt)
    _close(np.swapaxes(q, -1, -2) @ q, np.broadcast_to(np.eye(q.shape[-1]),
                                                       batch + (q.shape[-1],) * 2), dt)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data(), full=st.booleans())
def test_svd_and_matrix_norms(mode, data, full):
    _cpu_only(mode)
    dt, batch, n, rng = data.draw(problems(mode))
    m = data.draw(st.integers(1, 5), label="m")
    a = rng.standard_normal(batch + (m, n)).astype(dt)
    (u, s, vh), sv, norms = run(lambda a: (
        nnp.linalg.svd(a, full_matrices=full), nnp.linalg.svdvals(a),
        [nnp.linalg.norm(a, o, axis=(-2, -1)) for o in (2, -2, "nuc")]), (a,), mode)
    a64 = a.astype(F64)
    u_ref, s_ref, vh_ref = np.linalg.svd(a64, full_matrices=full)
    assert u.shape == u_ref.shape and vh.shape == vh_ref.shape
    _close(s, s_ref, dt)
    _close(sv, s_ref, dt)
    k = min(m, n)
    _close((u[..., :k] * s[..., None, :]) @ vh[..., :k, :], a64, dt)
    for got, o in zip(norms, (2, -2, "nuc")):
        _close(got, np.linalg.norm(a64, o, axis=(-2, -1)), dt)


def test_integer_operands_become_float32():
    a = np.array([[2, 1], [1, 3]], np.int32)
    x = nnp.linalg.solve(a, np.array([1, 2], np.int32))
    assert x.dtype == F32
    np.testing.assert_allclose(x, np.linalg.solve(a, [1, 2]), rtol=1e-6)
    assert nnp.linalg.det(a).dtype == F32 and nnp.linalg.cholesky(a).dtype == F32


# --- gradients ---------------------------------------------------------------------------

EPS = 1e-6
_rng = np.random.default_rng(42)
A = general(_rng, (2, 3, 3))
S = spd(_rng, (2, 3, 3))
B = _rng.standard_normal((2, 3, 2))
TALL = _rng.standard_normal((2, 4, 3))

# name -> (function of one float64 array, the point)
GRAD_CASES = {
    "solve_a": (lambda a: nnp.linalg.solve(a, B), A),
    "solve_b": (lambda b: nnp.linalg.solve(A, b), B),
    "solve_vector": (lambda a: nnp.linalg.solve(a[0], B[0, :, 0]), A),
    "inv": (nnp.linalg.inv, A),
    "det": (nnp.linalg.det, A),
    "slogdet": (lambda a: nnp.linalg.slogdet(a)[1], A),
    "cholesky": (nnp.linalg.cholesky, S),
    "cho_solve": (lambda s: sla.cho_solve(sla.cho_factor(s), B), S),
    "solve_triangular_a": (lambda a: sla.solve_triangular(a, B, lower=True), A),
    "solve_triangular_a_T_unit": (
        lambda a: sla.solve_triangular(a, B, trans=1, unit_diagonal=True), A),
    "solve_triangular_b": (lambda b: sla.solve_triangular(A, b, trans="T"), B),
    "triangular_solve_right": (lambda a: triangular_solve_p.bind(
        a, np.swapaxes(B, -1, -2).copy(), left_side=False, lower=True), A),
    # eigenvectors and singular vectors through sign-free functions of them
    "eigh": (lambda s: (lambda wv: nnp.concatenate([wv[0].ravel(), (wv[1] * wv[1]).ravel()]))(
        nnp.linalg.eigh(s)), A + np.swapaxes(A, -1, -2)),
    "qr_tall": (lambda a: nnp.concatenate([x.ravel() for x in nnp.linalg.qr(a)]), TALL),
    "svd_tall": (lambda a: (lambda r: nnp.concatenate([
        r.S.ravel(), (r.U[..., :, :1] * r.Vh[..., :1, :]).ravel()]))(
        nnp.linalg.svd(a, full_matrices=False)), TALL),
    "svd_wide": (lambda a: (lambda r: nnp.concatenate([r.S.ravel(), (r.U * r.U).ravel()]))(
        nnp.linalg.svd(a, full_matrices=False)), np.swapaxes(TALL, -1, -2)),
    "norm_2": (lambda a: nnp.linalg.norm(a, 2, axis=(-2, -1)), TALL),
}


def _fd(f, x, t):
    plus = np.asarray(f(x + EPS * t), F64)
    minus = np.asarray(f(x - EPS * t), F64)
    return (plus - minus) / (2 * EPS)


# under jit a representative subset (each compiles its forward and backward programs)
JIT_GRAD_CASES = ["solve_a", "cholesky", "det", "solve_triangular_a_T_unit", "svd_tall"]


@pytest.mark.parametrize("mode,name", mode_cases(sorted(GRAD_CASES), JIT_GRAD_CASES))
def test_gradients_against_finite_differences(mode, name):
    f, x = GRAD_CASES[name]
    if name.startswith(("eigh", "qr", "svd", "norm")):
        _cpu_only(mode)
    rng = np.random.default_rng(len(name))
    t = rng.standard_normal(x.shape)
    fd = _fd(f, x, t)
    ct = rng.standard_normal(fd.shape)
    scale = 1.0 + np.max(np.abs(fd))

    def jvp_and_grad(x, t, ct):
        _, tout = needle.jvp(f, (x,), (t,))
        g = needle.grad(lambda x: nnp.sum(f(x) * ct))(x)
        return tout, g
    tout, g = run(jvp_and_grad, (x, t, ct), mode)
    np.testing.assert_allclose(tout, fd, rtol=1e-6, atol=1e-7 * scale)
    np.testing.assert_allclose(np.sum(g * t), np.sum(ct * fd), rtol=1e-6, atol=1e-7 * scale)


@pytest.mark.parametrize("mode", ["eager"])     # (compiling a Hessian takes long)
def test_grad_of_grad(mode):
    def f(a):
        return needle.grad(lambda a: nnp.linalg.slogdet(a)[1] + nnp.sum(nnp.linalg.inv(a)))(a)
    a, t = A[0], np.random.default_rng(3).standard_normal((3, 3))
    _, tout = needle.jvp(f, (a,), (t,))
    np.testing.assert_allclose(tout, _fd(f, a, t), rtol=1e-6, atol=1e-6)
    hess = run(lambda a: needle.hessian(lambda a: nnp.linalg.det(a))(a), (a,), mode)
    fd = np.stack([_fd(lambda a: needle.grad(nnp.linalg.det)(a), a, e.reshape(3, 3))
                   for e in np.eye(9)], -1).reshape(3, 3, 3, 3)
    np.testing.assert_allclose(hess, fd, rtol=1e-6, atol=1e-6)


def test_cholesky_gradient_is_symmetric():
    """The input is symmetrized first (JAX's default): the gradient of a
    function of the factor is symmetric; without it only the lower triangle
    has a gradient."""
    ct = np.random.default_rng(5).standard_normal(S.shape)
    g = needle.grad(lambda s: nnp.sum(nnp.linalg.cholesky(s) * ct))(S)
    np.testing.assert_allclose(g, np.swapaxes(g, -1, -2), rtol=1e-12, atol=1e-12)
    g = needle.grad(lambda s: nnp.sum(nnp.linalg.cholesky(s, symmetrize_input=False) * ct))(S)
    np.testing.assert_array_equal(np.triu(g, 1), 0)


# --- vmap --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("in_axes", [(0, None), (None, 0), (0, 0), (None, 1)])
def test_vmap_solve_and_solve_triangular(mode, in_axes):
    rng = np.random.default_rng(7)
    a = general(rng, (4, 3, 3)) if in_axes[0] == 0 else general(rng, (3, 3))
    b = rng.standard_normal({None: (3, 2), 0: (4, 3, 2), 1: (3, 4, 2)}[in_axes[1]])

    def f(a, b):
        return (nnp.linalg.solve(a, b), sla.solve_triangular(a, b, lower=True),
                triangular_solve_p.bind(a, np.swapaxes(b, -1, -2), left_side=False))
    got = run(needle.vmap(f, in_axes=in_axes), (a, b), mode)
    aa = a if in_axes[0] == 0 else np.broadcast_to(a, (4, 3, 3))
    bb = np.moveaxis(b, in_axes[1], 0) if in_axes[1] is not None else np.broadcast_to(b, (4, 3, 2))
    want = (np.linalg.solve(aa, bb), np.linalg.solve(np.tril(aa), bb),
            np.swapaxes(np.linalg.solve(np.swapaxes(np.triu(aa), -1, -2), bb), -1, -2))
    for g, w in zip(got, want):
        _close(g, w, F64)


@pytest.mark.parametrize("mode", MODES)
def test_vmap_decompositions_and_per_example_gradients(mode):
    rng = np.random.default_rng(8)
    s, a = spd(rng, (3, 2, 4, 4)), general(rng, (3, 4, 4))
    L, d, ld = run(needle.vmap(lambda s, a: (nnp.linalg.cholesky(s), nnp.linalg.det(a),
                                             nnp.linalg.slogdet(a)[1])), (s, a), mode)
    _close(L, np.linalg.cholesky(s), F64)
    _close(d, np.linalg.det(a), F64)
    _close(ld, np.linalg.slogdet(a)[1], F64)
    g = run(needle.vmap(needle.grad(lambda a: nnp.linalg.slogdet(a)[1])), (a,), mode)
    _close(g, np.swapaxes(np.linalg.inv(a), -1, -2), F64)      # d log|det| / dA = A^-T


# --- on the CPU: library calls -----------------------------------------------------------

@pytest.mark.skipif(DEVICE != "cpu", reason="counts CPU library calls")
def test_cpu_library_calls():
    """solve is one LU, a row permutation (a one-hot matmul) and two
    triangular solves, all library calls (numpy / LAPACK / BLAS) between
    kernels; the rest of the program fuses around them. A new matrix size
    compiles no kernel (sizes are arguments)."""
    f = needle.jit(lambda a, b: nnp.linalg.solve(a, b) * 2.0 + nnp.linalg.det(a)[:, None, None])
    lo = f.lower(A, B)
    assert lo.library_call_count == 4
    text = lo.as_text("fused")
    assert text.count(" = lu ") == 1 and text.count("triangular_solve[") == 2
    f(A, B)
    before = needle.cache_info().kernels_compiled
    a5, b5 = general(np.random.default_rng(0), (2, 5, 5)), np.ones((2, 5, 2))
    _close(f(a5, b5), np.linalg.solve(a5, b5) * 2 + np.linalg.det(a5)[:, None, None], F64)
    assert needle.cache_info().kernels_compiled == before
    _close(f(A, B), np.linalg.solve(A, B) * 2 + np.linalg.det(A)[:, None, None], F64)
    lo = needle.jit(nnp.linalg.cholesky).lower(S)
    assert lo.library_call_count == 1


# --- errors ------------------------------------------------------------------------------

def test_errors_name_the_function_and_the_shapes():
    sq, rect = np.ones((3, 3)), np.ones((2, 3))
    for fn, name in ((nnp.linalg.cholesky, "cholesky"), (nnp.linalg.inv, "inv"),
                     (nnp.linalg.det, "det"), (nnp.linalg.slogdet, "slogdet"),
                     (lambda a: nnp.linalg.solve(a, np.ones(2)), "solve"),
                     (lambda a: sla.solve_triangular(a, np.ones(2)), "solve_triangular")):
        with pytest.raises(ValueError, match=rf"{name}: a must be a square matrix .*\(2, 3\)"):
            fn(rect)
        with pytest.raises(ValueError, match=rf"{name}: a must be a square"):
            needle.jit(fn)(np.ones(3))
    with pytest.raises(ValueError, match=r"solve: b of shape \(4,\) does not fit a of shape "
                                         r"\(3, 3\)"):
        nnp.linalg.solve(sq, np.ones(4))
    with pytest.raises(ValueError, match=r"solve: b of shape \(2, 2\)"):
        needle.jit(nnp.linalg.solve)(sq, np.ones((2, 2)))
    with pytest.raises(ValueError, match="cannot be broadcast"):
        nnp.linalg.solve(np.ones((2, 3, 3)), np.ones((4, 3, 1)))
    with pytest.raises(ValueError, match=r"cho_solve: b of shape \(3, 2, 4\)"):
        sla.cho_solve((sq, True), np.ones((3, 2, 4)))
    with pytest.raises(ValueError, match="invalid 'trans'"):
        sla.solve_triangular(sq, np.ones(3), trans=3)


def test_decompositions_without_a_derivative_say_so():
    with pytest.raises(NotImplementedError, match=r"qr: no derivative of a wide QR .*\(3, 4\)"):
        needle.grad(lambda a: nnp.sum(nnp.linalg.qr(a)[0]))(np.ones((3, 4)))
    with pytest.raises(NotImplementedError, match=r"svd: .*full_matrices=True .*\(4, 3\)"):
        needle.grad(lambda a: nnp.sum(nnp.linalg.svd(a)[0]))(TALL[0])
    g = needle.grad(lambda a: nnp.sum(nnp.linalg.svd(a, compute_uv=False)))(TALL[0])
    np.testing.assert_allclose(g, needle.grad(lambda a: nnp.linalg.norm(a, "nuc"))(TALL[0]))


def test_primitive_errors():
    a32 = np.eye(3, dtype=np.float32)
    with pytest.raises(TypeError, match="cholesky: operand must be float32 or float64, got "
                                        "int32"):
        cholesky_p.bind(np.eye(3, dtype=np.int32))
    with pytest.raises(ValueError, match=r"lu: operand must be a square matrix .*\(3,\)"):
        needle.jit(lambda a: lu_p.bind(a))(np.ones(3))
    with pytest.raises(ValueError, match=r"triangular_solve: b must be \(\.\.\., m, k\) with "
                                         r"a's batch axes .*\(3, 3\).*\(2, 3, 1\)"):
        triangular_solve_p.bind(a32, np.ones((2, 3, 1), np.float32), left_side=True)
    with pytest.raises(TypeError, match="triangular_solve: operand dtypes differ"):
        triangular_solve_p.bind(a32, np.ones((3, 1)), left_side=True)
