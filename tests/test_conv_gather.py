"""needle.nn.conv's im2col as one gather of C_in-element rows (issue 13, the
ConvNet step time): the row table (`_patch_rows`) against im2col written
out in numpy; conv through it (1-, 2-, 3-d, strides, dilation, padding
modes, negative pads, odd sizes, C_in != C_out) against a float64 numpy
convolution, eagerly, under jit and vmap; gradients of the default reverse
paths (the convolution rule, and the im2col-transpose rule of strided /
widening convs) against central finite differences, under jit, grad and
vmap; and the kernels: a gather, no concatenate of K candidates, no
scatter-add in a gradient.

Input: random float64 / float32 NHWC arrays and HWIO kernels, small shapes.
References: numpy formulas in float64 and central finite differences.
"""
import numpy as np
import pytest

import needle
import needle.nn.functional as F
import needle.numpy as nnp
from needle.nn import conv

from helpers import conv_pads

rng = np.random.default_rng(13)


def np_im2col(x, k, stride, pads, dil):
    """(B, *out, K * C) patches, float64: zero padding (a negative pad
    crops), then every kernel offset's strided window, offsets row-major."""
    n = x.ndim - 2
    x = np.asarray(x, np.float64)
    sl = [slice(None)]
    for i, (lo, hi) in enumerate(pads):        # crop first, then pad what is left
        sl.append(slice(max(-lo, 0), x.shape[1 + i] - max(-hi, 0)))
    x = x[tuple(sl) + (slice(None),)]
    x = np.pad(x, [(0, 0)] + [(max(lo, 0), max(hi, 0)) for lo, hi in pads] + [(0, 0)])
    out = [(x.shape[1 + i] - (k[i] - 1) * dil[i] - 1) // stride[i] + 1 for i in range(n)]
    cols = []
    for offs in np.ndindex(*k):
        idx = tuple(slice(o * d, o * d + (m - 1) * s + 1, s)
                    for o, d, m, s in zip(offs, dil, out, stride))
        cols.append(x[(slice(None),) + idx])
    return np.stack(cols, axis=-2).reshape(x.shape[:1] + tuple(out) + (-1,))


def np_conv(x, w, stride=1, padding=0, dil=1):
    n = x.ndim - 2
    stride = (stride,) * n if isinstance(stride, int) else tuple(stride)
    dil = (dil,) * n if isinstance(dil, int) else tuple(dil)
    k = w.shape[:n]
    p = np_im2col(x, k, stride, conv_pads(x.shape[1:-1], k, stride, padding, dil), dil)
    return p @ np.asarray(w, np.float64).reshape(-1, w.shape[-1])


def fd_grad(f, a, eps=1e-6):
    g = np.zeros_like(a)
    for i in range(a.size):
        e = np.zeros_like(a)
        e.flat[i] = eps
        g.flat[i] = (f(a + e) - f(a - e)) / (2 * eps)
    return g


ROWS = [  # spatial, kernel, stride, pads, dilation
    ((5,), (3,), (1,), [(1, 1)], (1,)),
    ((7,), (2,), (3,), [(0, 2)], (2,)),
    ((5, 6), (3, 3), (1, 1), [(1, 1), (1, 1)], (1, 1)),
    ((7, 5), (3, 2), (2, 1), [(1, 0), (2, 1)], (1, 2)),
    ((6, 6), (3, 3), (1, 1), [(-1, 2), (2, -1)], (1, 1)),      # negative pads crop
    ((4, 5, 3), (2, 3, 2), (1, 2, 1), [(1, 0), (1, 1), (0, 1)], (1, 1, 2)),
    ((3, 3), (1, 1), (1, 1), [(0, 0), (0, 0)], (1, 1)),          # 1x1: x itself
]


@pytest.mark.parametrize("case", ROWS, ids=[str(c[:2]) for c in ROWS])
def test_gathered_patches_equal_numpy_im2col(case):
    spatial, k, stride, pads, dil = case
    x = rng.standard_normal((2,) + spatial + (3,))
    want = np_im2col(x, k, stride, pads, dil)
    patches, out = F._gather_patches(x, k, stride, dil, pads)
    got = np.asarray(patches).reshape((2,) + tuple(out) + (-1,))
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)          # a copy: exact
    jitted = needle.jit(lambda x: F._gather_patches(x, k, stride, dil, pads)[0])(x)
    np.testing.assert_array_equal(np.asarray(jitted).reshape(want.shape), want)


CONVS = [  # x shape, w shape, stride, padding, dilation
    ((2, 9, 3), (3, 3, 4), 1, 1, 1),                               # 1-d
    ((2, 9, 3), (2, 3, 2), 2, "SAME", 2),
    ((2, 7, 5, 3), (3, 3, 3, 5), 1, 1, 1),                         # odd sizes, C_in != C_out
    ((1, 7, 8, 2), (3, 2, 2, 3), (2, 1), ((1, 0), (2, 1)), (1, 2)),
    ((2, 6, 7, 4), (3, 3, 4, 2), 1, "VALID", 1),
    ((1, 4, 5, 3, 2), (2, 3, 2, 2, 3), 1, "SAME", 1),              # 3-d
]


@pytest.mark.parametrize("case", CONVS, ids=[str(c[:2]) for c in CONVS])
def test_conv_equals_numpy_eager_jit_vmap(case):
    xs, ws, s, p, d = case
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    want = np_conv(x, w, s, p, d)
    np.testing.assert_allclose(np.asarray(conv(x, w, s, p, d)), want, rtol=1e-12, atol=1e-12)
    got = needle.jit(lambda x, w: conv(x, w, s, p, d))(x, w)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    got = needle.jit(lambda x, w: conv(x, w, s, p, d))(x32, w32)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)
    # vmap over a leading axis of examples: each a batch of one
    per = needle.vmap(lambda xi: conv(xi[None], w, s, p, d)[0])(x)
    np.testing.assert_allclose(np.asarray(per), want, rtol=1e-12, atol=1e-12)


def test_integer_conv_is_exact():
    x = rng.integers(-5, 5, (2, 5, 6, 3)).astype(np.int32)
    w = rng.integers(-3, 3, (3, 3, 3, 2)).astype(np.int32)
    got = needle.jit(lambda x, w: conv(x, w, 1, "SAME"))(x, w)
    np.testing.assert_array_equal(np.asarray(got), np_conv(x, w, 1, "SAME").astype(np.int64))


GRADS = [  # x shape, w shape, stride, padding: the rule (conv), and the
    # im2col-transpose rule (a stride > CONV_VJP_MAX_STRIDE, a growth >
    # CONV_VJP_MAX_GROWTH)
    ((2, 5, 6, 2), (3, 3, 2, 3), 1, 1),
    ((2, 7, 6, 2), (3, 3, 2, 3), 2, 1),
    ((1, 5, 5, 1), (3, 3, 1, 4), 1, "SAME"),
    ((2, 8, 3), (3, 3, 2), 2, "SAME"),                             # 1-d
    ((1, 3, 4, 3, 2), (2, 2, 2, 2, 5), (1, 2, 1), 1),              # 3-d, strided, widening
]


@pytest.mark.parametrize("case", GRADS, ids=[str(c[:2]) for c in GRADS])
def test_default_gradients_match_finite_differences(case):
    xs, ws, s, p = case
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    c = rng.standard_normal(np_conv(x, w, s, p).shape)

    def loss(x, w):
        return nnp.sum(nnp.tanh(conv(x, w, s, p)) * c)

    def np_loss(x, w):
        return float(np.sum(np.tanh(np_conv(x, w, s, p)) * c))
    gx, gw = needle.jit(needle.grad(loss, argnums=(0, 1)))(x, w)
    np.testing.assert_allclose(np.asarray(gx), fd_grad(lambda a: np_loss(a, w), x),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(gw), fd_grad(lambda a: np_loss(x, a), w),
                               rtol=1e-6, atol=1e-7)
    # the kernel's gradient alone (the input's dropped) and eagerly
    gw1 = needle.grad(loss, argnums=1)(x, w)
    np.testing.assert_allclose(np.asarray(gw1), np.asarray(gw), rtol=1e-10, atol=1e-12)


def test_vmap_of_grad_and_grad_of_vmap():
    x, w = rng.standard_normal((3, 5, 5, 2)), rng.standard_normal((3, 3, 2, 5))

    def loss(w, xi):
        return nnp.sum(nnp.sin(conv(xi[None], w, 2, 1)))

    def np_loss(w, xi):
        return float(np.sum(np.sin(np_conv(xi[None], w, 2, 1))))
    per = needle.jit(needle.vmap(needle.grad(loss), in_axes=(None, 0)))(w, x)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(per[i]), fd_grad(lambda a: np_loss(a, x[i]), w),
                                   rtol=1e-6, atol=1e-7)
    total = needle.grad(lambda w: nnp.sum(needle.vmap(lambda xi: loss(w, xi))(x)))(w)
    np.testing.assert_allclose(np.asarray(total), np.asarray(per).sum(0), rtol=1e-10,
                               atol=1e-10)


def _kernel_prims(lowered):
    return [{q.prim.name for q in e.params["graph"].eqns}
            for e in lowered._graphs["fused"].eqns if e.prim.name == "kernel"]


def test_kernels_gather_rows_and_never_scatter(monkeypatch):
    # the im2col path's structure (stride-1 convolutions are otherwise the conv
    # primitive: tests/test_conv_direct.py)
    monkeypatch.setattr(F, "DIRECT_CONV", False)
    x = np.ones((2, 8, 8, 4), np.float32)
    fwd = needle.jit(lambda x, w: conv(x, w, 1, 1)).lower(x, np.ones((3, 3, 4, 4), np.float32))
    prims = _kernel_prims(fwd)
    assert any("gather" in p for p in prims), prims
    assert not any("concatenate" in p for p in prims), prims
    for w, s in ((np.ones((3, 3, 4, 4), np.float32), 1),      # the rule
                 (np.ones((3, 3, 4, 4), np.float32), 2),      # strided
                 (np.ones((3, 3, 4, 16), np.float32), 1)):    # widening
        lo = needle.jit(needle.grad(lambda x, w: nnp.sum(conv(x, w, s, 1) ** 2),
                                    argnums=(0, 1))).lower(x, w)
        prims = _kernel_prims(lo)
        assert not any(p & {"scatter_add", "scatter"} for p in prims), (s, prims)
        assert any("gather" in p for p in prims), (s, prims)
