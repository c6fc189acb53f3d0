"""Tests of needle.nn.conv's reverse rule (issue 13, "Convolution done well"):
under grad / vjp / jacrev its backward is convolutions (the input's gradient
a convolution of the stride-dilated output gradient with the flipped,
transposed kernel; the kernel's gradient one matmul of the patches), not
col2im scatters.

Input: random float64 / float32 NHWC inputs and HWIO kernels. References: a
convolution written out in numpy (float64) and central finite differences
of it; the old path (autodiff of im2col, CONV_VJP = False) for equality;
forward mode (jvp, jacfwd, hessian) and vmap compositions, which must keep
working.
"""
import numpy as np
import pytest

import needle
import needle.numpy as nnp
import needle.nn.functional as F
from needle.nn import conv

from helpers import conv_pads

rng = np.random.default_rng(0)


def np_conv(x, w, stride, padding, dil=1):
    """Cross-correlation, NHWC / HWIO, float64, written out."""
    n = x.ndim - 2
    stride = (stride,) * n if isinstance(stride, int) else stride
    dil = (dil,) * n if isinstance(dil, int) else dil
    k = w.shape[:n]
    pads = conv_pads(x.shape[1:-1], k, stride, padding, dil)
    xp = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    out = [(xp.shape[1 + i] - (k[i] - 1) * dil[i] - 1) // stride[i] + 1 for i in range(n)]
    y = np.zeros((x.shape[0],) + tuple(out) + (w.shape[-1],))
    for offs in np.ndindex(*k):
        sl = tuple(slice(o * d, o * d + (m - 1) * s + 1, s)
                   for o, d, m, s in zip(offs, dil, out, stride))
        y += np.einsum("...c,cd->...d", xp[(slice(None),) + sl], w[offs])
    return y


def fd_grad(f, a, eps=1e-6):
    g = np.zeros_like(a)
    for i in range(a.size):
        e = np.zeros_like(a)
        e.flat[i] = eps
        g.flat[i] = (f(a + e) - f(a - e)) / (2 * eps)
    return g


CASES = [  # (batch, spatial, C_in, C_out, kernel, stride, padding)
    (1, (5, 5), 1, 2, (3, 3), 1, 0),
    (2, (6, 5), 3, 2, (3, 3), 2, 1),
    (3, (7, 7), 2, 3, (5, 5), 1, "SAME"),
    (2, (7, 6), 2, 1, (3, 3), 2, "SAME"),
    (2, (6, 6), 3, 2, (1, 1), 2, "VALID"),
    (1, (6, 7), 2, 2, (1, 1), 1, 1),
    (2, (6, 7), 2, 3, (3, 2), (2, 1), ((1, 2), (0, 1))),
    (1, (9, 8), 1, 2, (5, 3), 2, ((2, 0), (1, 1))),
]


@pytest.fixture
def strided_rule(monkeypatch):
    """The rule for strides up to 3 and any channel growth too (by default
    those convs keep the primitives' rules, faster there): tests its dilation."""
    monkeypatch.setattr(F, "CONV_VJP_MAX_STRIDE", 3)
    monkeypatch.setattr(F, "CONV_VJP_MAX_GROWTH", 8)


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_gradients_match_finite_differences(case, strided_rule):
    b, sp, ci, co, k, stride, padding = case
    x = rng.standard_normal((b,) + sp + (ci,))
    w = rng.standard_normal(k + (ci, co))
    r = rng.standard_normal(np_conv(x, w, stride, padding).shape)

    def loss(x, w):
        return nnp.sum(conv(x, w, stride=stride, padding=padding) * r)
    gx, gw = needle.grad(loss, argnums=(0, 1))(x, w)
    np.testing.assert_allclose(gx, fd_grad(lambda a: np.sum(np_conv(a, w, stride, padding) * r),
                                           x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gw, fd_grad(lambda a: np.sum(np_conv(x, a, stride, padding) * r),
                                           w), rtol=1e-6, atol=1e-7)
    F.CONV_VJP = False                         # the old path: autodiff of im2col
    try:
        ox, ow = needle.grad(loss, argnums=(0, 1))(x, w)
    finally:
        F.CONV_VJP = True
    np.testing.assert_allclose(gx, ox, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw, ow, rtol=1e-12, atol=1e-12)


def test_dilation_and_1d_gradients(strided_rule):
    for shape, k, stride, dil, padding in [((2, 9, 8, 2), (3, 3), 1, 2, 1),
                                            ((2, 11, 3), (3,), 2, 2, "SAME")]:
        x = rng.standard_normal(shape)
        w = rng.standard_normal(k + (shape[-1], 2))
        r = rng.standard_normal(np_conv(x, w, stride, padding, dil).shape)
        gx, gw = needle.grad(lambda x, w: nnp.sum(
            conv(x, w, stride, padding, dilation=dil) * r), argnums=(0, 1))(x, w)
        np.testing.assert_allclose(
            gx, fd_grad(lambda a: np.sum(np_conv(a, w, stride, padding, dil) * r), x),
            rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(
            gw, fd_grad(lambda a: np.sum(np_conv(x, a, stride, padding, dil) * r), w),
            rtol=1e-6, atol=1e-7)


def _loss32(x, w):
    return nnp.sum(conv(x, w, stride=2, padding=1) ** 2)


def test_float32_jit_equals_eager_and_float64(strided_rule):
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    w = (rng.standard_normal((3, 3, 3, 4)) / 5).astype(np.float32)
    g = needle.grad(_loss32, argnums=(0, 1))
    eager = g(x, w)
    jitted = needle.jit(g)(x, w)
    want = needle.grad(_loss32, argnums=(0, 1))(x.astype(np.float64), w.astype(np.float64))
    for e, j, ref in zip(eager, jitted, want):
        assert e.dtype == np.float32 and j.dtype == np.float32
        np.testing.assert_allclose(j, e, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(e, ref, rtol=1e-4, atol=1e-4)


def _kernel_ops(lowered):
    return [{q.prim.name for q in e.params["graph"].eqns}
            for e in lowered._graphs["fused"].eqns if e.prim.name == "kernel"]


def _loss_s1(x, w):
    return nnp.sum(conv(x, w, padding=1) ** 2)


def test_jitted_gradient_has_no_col2im_kernel(monkeypatch):
    # the im2col path's structure (stride-1 convolutions are otherwise the conv
    # primitive: tests/test_conv_direct.py)
    monkeypatch.setattr(F, "DIRECT_CONV", False)
    x = np.ones((2, 8, 8, 4), np.float32)
    w = np.ones((3, 3, 4, 8), np.float32)
    lo = needle.jit(needle.grad(_loss_s1, argnums=(0, 1))).lower(x, w)
    # the forward's im2col, the output gradient dilated + padded + its im2col,
    # the flipped / transposed kernel, the 2 * y cotangent; BLAS: y, dx, dw
    assert (lo.kernel_count, lo.library_call_count) == (4, 3), lo.as_text("fused")
    # col2im sums shifted reads of the patches' gradient: an `add` of windows
    assert not any("add" in ops for ops in _kernel_ops(lo)), _kernel_ops(lo)
    F.CONV_VJP = False
    try:
        old = needle.jit(needle.grad(_loss_s1, argnums=(0, 1))).lower(x, w)
    finally:
        F.CONV_VJP = True
    assert any("add" in ops for ops in _kernel_ops(old))    # the detector sees col2im
    # a strided conv keeps autodiff of im2col by default (CONV_VJP_MAX_STRIDE)
    strided = needle.jit(needle.grad(_loss32, argnums=(0, 1))).lower(x, w)
    assert any("add" in ops for ops in _kernel_ops(strided))
    # so does one widening the channels more than 2x (CONV_VJP_MAX_GROWTH)
    wide = needle.jit(needle.grad(_loss_s1, argnums=(0, 1))).lower(
        x[..., :2], np.ones((3, 3, 2, 8), np.float32))
    assert any("add" in ops for ops in _kernel_ops(wide))


def test_forward_mode_and_hessian_still_work(strided_rule):
    x = rng.standard_normal((1, 4, 4, 2))
    w = rng.standard_normal((3, 3, 2, 1))
    tx = rng.standard_normal(x.shape)

    def f(x):
        return conv(x, w, stride=2, padding=1)
    y, ty = needle.jvp(f, (x,), (tx,))
    np.testing.assert_allclose(ty, np_conv(tx, w, 2, 1), rtol=1e-10, atol=1e-12)
    jf, jr = needle.jacfwd(f)(x), needle.jacrev(f)(x)
    np.testing.assert_allclose(jf, jr, rtol=1e-10, atol=1e-12)

    def g(x):                                   # Hessian of sum(conv^2): 2 J^T J
        return nnp.sum(f(x) ** 2)
    h = needle.hessian(g)(x)
    jm = jr.reshape(-1, x.size)
    np.testing.assert_allclose(h.reshape(x.size, x.size), 2 * jm.T @ jm, rtol=1e-8,
                               atol=1e-10)
    # reverse over reverse: the gradient of a gradient's norm, by differences
    gg = needle.grad(lambda x: nnp.sum(needle.grad(g)(x) ** 2))(x)
    np.testing.assert_allclose(
        gg, fd_grad(lambda a: np.sum((2 * a.reshape(-1) @ jm.T @ jm) ** 2), x),
        rtol=1e-6, atol=1e-6)


def test_vmap_of_grad_and_grad_of_vmap(strided_rule):
    xs = rng.standard_normal((3, 1, 5, 5, 2))
    w = rng.standard_normal((3, 3, 2, 2))
    r = rng.standard_normal((1, 3, 3, 2))

    def loss(w, x):
        return nnp.sum(conv(x, w, stride=2, padding=1) * r)
    per = needle.vmap(needle.grad(loss), in_axes=(None, 0))(w, xs)
    for i in range(3):
        np.testing.assert_allclose(per[i], fd_grad(
            lambda a: np.sum(np_conv(xs[i], a, 2, 1) * r), w), rtol=1e-6, atol=1e-7)
    tot = needle.grad(lambda w: nnp.sum(needle.vmap(loss, in_axes=(None, 0))(w, xs)))(w)
    np.testing.assert_allclose(tot, per.sum(0), rtol=1e-10, atol=1e-10)
