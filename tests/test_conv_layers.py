"""needle.nn.Conv, MaxPool2d, AvgPool2d (NCHW, the course's / PyTorch's
semantics) against float64 numpy references (tests/nn_refs.py): values
eagerly and under jit, gradients against central finite differences of the
reference, the course's initialization, Tensor in -> Tensor out, errors; and
the layout contract: a Conv -> BatchNorm2d -> ReLU -> Conv chain, forward and
gradient, has no kernel that only moves data between NCHW and NHWC, and keeps
its activations NHWC in memory between the convolutions."""
import numpy as np
import pytest

import needle
import needle.nn as nn
import needle.nn.functional as F
import needle.numpy as nnp
import nn_refs as ref
from helpers import jit, mode_cases, run
from needle import Tensor

rng = np.random.default_rng(14)


@pytest.fixture(autouse=True)
def _seed():
    needle.random.seed(0)


def _conv_params(c):
    return c.weight.numpy(), (None if c.bias is None else c.bias.numpy())


# --- values ---------------------------------------------------------------------------

CONV_CASES = [  # in, out, k, stride, bias, input (B, H, W)
    (3, 4, 3, 1, True, (2, 6, 5)),
    (2, 5, 3, 2, False, (1, 7, 8)),
    (3, 2, 5, 2, True, (2, 9, 9)),
    (4, 3, 1, 1, True, (2, 3, 4)),
    (3, 4, 4, 2, True, (1, 8, 8)),      # even k: padding k // 2, as the course
]


@pytest.mark.on_device          # every case eagerly; under jit the two that compile fastest
@pytest.mark.parametrize("mode,case", mode_cases(range(len(CONV_CASES)), [0, 1]))
def test_conv_matches_the_course_formula(mode, case):
    cin, cout, k, s, bias, (b, h, w) = CONV_CASES[case]
    conv = nn.Conv(cin, cout, k, stride=s, bias=bias)
    x = rng.standard_normal((b, cin, h, w)).astype(np.float32)
    got = run(lambda m, x: m(x), (conv, x), mode)
    want = ref.conv(x, *_conv_params(conv), stride=s)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert got.dtype == np.float32 and got.shape == (b, cout, (h + 2 * (k // 2) - k) // s + 1,
                                                     (w + 2 * (k // 2) - k) // s + 1)


def test_conv_initialization_is_the_courses():
    cin, cout, k = 16, 24, 5
    c = nn.Conv(cin, cout, k)
    w, b = _conv_params(c)
    assert w.shape == (k, k, cin, cout) and b.shape == (cout,) and w.dtype == np.float32
    bound = np.sqrt(2) * np.sqrt(3 / (cin * k * k))         # kaiming_uniform, fan_in = in k k
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.02 * bound and abs(w.mean()) < 0.02 * bound
    bb = 1 / np.sqrt(cin * k * k)
    assert np.abs(b).max() <= bb and np.abs(b).max() > 0.5 * bb
    assert [type(p) for p in c.parameters()] == [nn.Parameter, nn.Parameter]
    assert nn.Conv(2, 3, (3, 3), stride=(2, 2)).weight.shape == (3, 3, 2, 3)   # course: [0]
    assert nn.Conv(2, 3, 3, dtype="float64").weight.dtype == np.float64


POOL_CASES = [  # k, stride, padding, input (B, C, H, W)
    (2, None, 0, (2, 3, 6, 6)),
    (3, 2, 1, (1, 2, 7, 6)),
    ((3, 2), (1, 2), (1, 1), (2, 2, 5, 6)),
]


@pytest.mark.on_device
@pytest.mark.parametrize("mode,case", mode_cases(range(len(POOL_CASES)), [1]))
def test_pools_match_pytorch_semantics(mode, case):
    k, s, p, shape = POOL_CASES[case]
    x = rng.standard_normal(shape).astype(np.float32)
    mp, ap = nn.MaxPool2d(k, s, p), nn.AvgPool2d(k, s, p)
    got = run(lambda a, b, x: (a(x), b(x)), (mp, ap, x), mode)
    pair = (lambda v: v if isinstance(v, tuple) else (v, v))
    kk, pp = pair(k), pair(p)
    ss = kk if s is None else pair(s)
    np.testing.assert_allclose(got[0], ref.pool(x, kk, ss, pp, "max"), rtol=1e-6)
    np.testing.assert_allclose(got[1], ref.pool(x, kk, ss, pp, "mean"), rtol=1e-5, atol=1e-6)


# --- gradients against central differences of the reference ---------------------------

@pytest.mark.parametrize("stride,bias", [(1, True), (2, False)])
def test_conv_gradients_against_finite_differences(stride, bias):
    conv = nn.Conv(3, 4, 3, stride=stride, bias=bias, dtype="float64")
    x = rng.standard_normal((2, 3, 5, 6))
    w, b = _conv_params(conv)
    ct = rng.standard_normal(ref.conv(x, w, b, stride).shape)
    gm, gx = needle.grad(lambda m, x: nnp.sum(m(x) * ct), argnums=(0, 1))(conv, x)
    arrays = [w, x] + ([b] if bias else [])
    grads = [gm.weight.numpy(), np.asarray(gx)] + ([gm.bias.numpy()] if bias else [])

    def f(w, x, b=None):
        return float(np.sum(ref.conv(x, w, b, stride) * ct))
    for _ in range(3):
        dirs, fd = ref.fd_directional(f, arrays, rng)
        got = sum(float(np.sum(g * d)) for g, d in zip(grads, dirs))
        np.testing.assert_allclose(got, fd, rtol=1e-6)


@pytest.mark.parametrize("how", ["max", "mean"])
def test_pool_gradients_against_finite_differences(how):
    layer = (nn.MaxPool2d if how == "max" else nn.AvgPool2d)(3, 2, 1)
    x = rng.standard_normal((2, 2, 5, 6))
    ct = rng.standard_normal(ref.pool(x, (3, 3), (2, 2), (1, 1), how).shape)
    g = np.asarray(needle.grad(lambda x: nnp.sum(layer(x) * ct))(x))
    for _ in range(3):
        dirs, fd = ref.fd_directional(
            lambda x: float(np.sum(ref.pool(x, (3, 3), (2, 2), (1, 1), how) * ct)), [x], rng)
        np.testing.assert_allclose(np.sum(g * dirs[0]), fd, rtol=1e-6)


# --- kinds, errors ---------------------------------------------------------------------

@pytest.mark.on_device
def test_tensor_in_gives_tensor_out_eagerly_and_under_jit():
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    for layer in (nn.Conv(3, 2, 3), nn.MaxPool2d(2), nn.AvgPool2d(2, 1)):
        eager = layer(Tensor(x))
        assert isinstance(eager, Tensor), type(layer).__name__
        assert not isinstance(layer(x), Tensor)
        jitted = jit(lambda m, x: m(x))(layer, Tensor(x))
        assert isinstance(jitted, Tensor)
        np.testing.assert_allclose(jitted.numpy(), eager.numpy(), rtol=1e-5, atol=1e-6)


def test_errors_name_the_layer_and_shapes():
    with pytest.raises(ValueError, match=r"Conv: the input must be NCHW \(B, 3, H, W\), "
                                         r"got shape \(2, 4, 5, 5\)"):
        nn.Conv(3, 2, 3)(np.zeros((2, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"MaxPool2d: the input must be NCHW .*\(5, 5\)"):
        nn.MaxPool2d(2)(np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match=r"AvgPool2d: padding \(2, 2\) must be at most half"):
        nn.AvgPool2d(3, padding=2)


# --- layouts: no NCHW <-> NHWC bouncing between convolutions -----------------------------

LAYOUT_ONLY = {"transpose", "reshape", "broadcast_in_dim", "convert_element_type", "copy"}


def _kernels(lowered):
    return [e for e in lowered._graphs["fused"].eqns if e.prim.name == "kernel"]


def _pure_layout_kernels(lowered):
    """Kernels whose body only moves data (a transpose copy)."""
    return [e.params["name"] for e in _kernels(lowered)
            if {q.prim.name for q in e.params["graph"].eqns} <= LAYOUT_ONLY]


def test_the_layout_kernel_detector_sees_a_transpose_copy():
    x = np.zeros((2, 3, 4, 5), np.float32)
    lo = needle.jit(lambda x: nnp.transpose(x, (0, 2, 3, 1))).lower(x)
    assert len(_pure_layout_kernels(lo)) == 1


def _chain():
    return nn.Sequential(nn.Conv(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv(4, 5, 3, stride=2))


def test_conv_bn_relu_conv_has_no_transpose_kernels(monkeypatch):
    # the im2col path's structure (stride-1 convolutions are otherwise the conv
    # primitive: tests/test_conv_direct.py)
    monkeypatch.setattr(F, "DIRECT_CONV", False)
    model, x = _chain(), rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    nchw, nhwc = (2, 4, 6, 6), (2, 6, 6, 4)
    fwd = needle.jit(lambda m, x: m(x)).lower(model, x)
    assert _pure_layout_kernels(fwd) == [], fwd.as_text("fused")
    stored = [tuple(v.aval.shape) for e in fwd._graphs["fused"].eqns for v in e.outs]
    assert nhwc in stored and nchw not in stored, stored    # the activation stays NHWC
    # im2col, the statistics (2 reductions, then rsqrt and the running
    # updates), BN + ReLU + the next im2col, the output's bias: 6 kernels,
    # 2 BLAS calls
    assert (fwd.kernel_count, fwd.library_call_count) == (6, 2), fwd.as_text("fused")

    grad = needle.jit(needle.grad(lambda m, x: nnp.sum(m(x) ** 2))).lower(model, x)
    assert _pure_layout_kernels(grad) == [], grad.as_text("fused")
    # one array of the gradient is stored NCHW: the ReLU-masked cotangent
    # (its kernel writes it transposed, the next ones read it transposed back)
    stored = [tuple(v.aval.shape) for e in grad._graphs["fused"].eqns for v in e.outs]
    assert stored.count(nchw) <= 1, stored
    assert (grad.kernel_count, grad.library_call_count) == (13, 5), grad.as_text("fused")
