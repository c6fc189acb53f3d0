"""The direct convolution primitives (issue 13, the ConvNet step):
conv / conv_wgrad (ir/primitives/conv.py), the CPU's blocked kernels
(codegen/cpu/conv.py), their autodiff and batching rules, and the im2col
decomposition other backends get (passes/conv_expand.py).

Random 1-, 2-, 3-d shapes, paddings (negative: a crop), channel counts that
take every vector width (16, 8, 4, 2, 1 lanes) and the blocks' tails, in
float32 and float64: values against convolutions written out in float64
numpy from the definition; gradients (first and second order) against
central finite differences; vmap (x, w or both mapped, per-example weight
gradients) against a loop over examples; the rows / taps split across
threads; and the compiled program's structure (conv / conv_wgrad library
calls, no im2col gather, a few shared kernels).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import needle
import needle.nn.functional as F
import needle.numpy as nnp
from needle.ir.interpreter import run_numpy
from needle.ir.primitives import conv_p, conv_wgrad_p
from needle.tracer.core import trace_to_graph

from helpers import DEVICE, jit

rng = np.random.default_rng(14)


def np_pad(x, padding):
    """Zero padding by (lo, hi) per spatial axis; a negative entry crops."""
    for d, (lo, hi) in enumerate(padding, start=1):
        if lo < 0:
            x = np.take(x, range(-lo, x.shape[d]), axis=d)
        if hi < 0:
            x = np.take(x, range(0, x.shape[d] + hi), axis=d)
        widths = [(0, 0)] * x.ndim
        widths[d] = (max(lo, 0), max(hi, 0))
        x = np.pad(x, widths)
    return x


def np_conv(x, w, padding):
    """y[b, o, co] = sum_{k, ci} xp[b, o + k, ci] w[k, ci, co], float64."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n = x.ndim - 2
    xp = np_pad(x, padding)
    k = w.shape[:n]
    out = tuple(s - kk + 1 for s, kk in zip(xp.shape[1:-1], k))
    y = np.zeros((x.shape[0],) + out + (w.shape[-1],))
    for tap in np.ndindex(*k):
        win = xp[(slice(None),) + tuple(slice(t, t + o) for t, o in zip(tap, out))]
        y += win @ w[tap]
    return y


def np_wgrad(x, g, k, padding):
    """dw[k, ci, co] = sum_{b, o} xp[b, o + k, ci] g[b, o, co], float64."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    n = x.ndim - 2
    xp = np_pad(x, padding)
    out = g.shape[1:-1]
    dw = np.zeros(tuple(k) + (x.shape[-1], g.shape[-1]))
    axes = tuple(range(n + 1))
    for tap in np.ndindex(*k):
        win = xp[(slice(None),) + tuple(slice(t, t + o) for t, o in zip(tap, out))]
        dw[tap] = np.tensordot(win, g, axes=(axes, axes))
    return dw


def tol(dtype):
    return dict(rtol=2e-4, atol=2e-4) if np.dtype(dtype) == np.float32 else \
        dict(rtol=1e-10, atol=1e-10)


@st.composite
def conv_case(draw):
    n = draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 3)) for _ in range(n))
    spatial = tuple(draw(st.integers(1, 7 if n < 3 else 4)) for _ in range(n))
    padding = []
    for s, kk in zip(spatial, k):
        lo = draw(st.integers(-1, 2))
        hi = draw(st.integers(-1, 2))
        while s + lo + hi - kk + 1 < 1:         # the window must fit
            lo, hi = lo + 1, hi + 1
        padding.append((lo, hi))
    ci = draw(st.sampled_from([1, 2, 3, 5, 16, 17, 20]))
    co = draw(st.sampled_from([1, 2, 3, 4, 8, 12, 16, 24, 32]))
    b = draw(st.integers(1, 2))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (b,) + spatial + (ci,), k + (ci, co), tuple(padding), dtype


@settings(deadline=None)
@given(conv_case())
def test_conv_and_wgrad_values_against_numpy(case):
    xs, ws, padding, dtype = case
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    n = len(xs) - 2
    f = jit(lambda x, w: conv_p.bind(x, w, padding=padding))
    y = f(x, w)
    want = np_conv(x, w, padding)
    assert y.dtype == dtype and y.shape == want.shape
    np.testing.assert_allclose(y, want, **tol(dtype))
    g = rng.standard_normal(want.shape).astype(dtype)
    dw = jit(lambda x, g: conv_wgrad_p.bind(x, g, kernel=ws[:n], padding=padding))(x, g)
    np.testing.assert_allclose(dw, np_wgrad(x, g, ws[:n], padding), **tol(dtype))
    # the interpreter's numpy rule, and the im2col decomposition, agree
    np.testing.assert_allclose(conv_p.impl(x, w, padding=padding)[0], want, **tol(dtype))


def test_eager_conv_matches_numpy():
    x = rng.standard_normal((2, 5, 6, 3))
    w = rng.standard_normal((3, 2, 3, 4))
    np.testing.assert_allclose(F.conv(x, w, padding=1), np_conv(x, w, [(1, 1), (1, 1)]),
                               rtol=1e-12, atol=1e-12)


def _fd_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


@pytest.mark.parametrize("padding", ["SAME", "VALID", 2, ((0, 1), (2, 0))])
def test_gradients_against_finite_differences(padding):
    x = rng.standard_normal((2, 4, 5, 3))
    w = rng.standard_normal((3, 2, 3, 4))
    c = rng.standard_normal(np.shape(F.conv(x, w, padding=padding)))

    def loss(x, w):
        return nnp.sum(F.conv(x, w, padding=padding) * c)

    def loss_np(x, w):
        return float(np.sum(np_conv(x, w, _pads(x, w, padding)) * c))
    gx, gw = jit(needle.grad(loss, argnums=(0, 1)))(x, w)
    np.testing.assert_allclose(gx, _fd_grad(lambda x: loss_np(x, w), x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gw, _fd_grad(lambda w: loss_np(x, w), w), rtol=1e-6, atol=1e-6)


def _pads(x, w, padding):
    from helpers import conv_pads
    n = x.ndim - 2
    return conv_pads(x.shape[1:-1], w.shape[:n], (1,) * n, padding, (1,) * n)


def test_second_order_and_forward_mode():
    """grad of a function of the gradient (conv_wgrad's JVP and transposes,
    conv of the flipped kernel) and jvp, against finite differences."""
    x = rng.standard_normal((1, 4, 4, 2))
    w = rng.standard_normal((3, 3, 2, 3))

    def loss(x, w):
        return nnp.sum(nnp.tanh(F.conv(x, w, padding=1)))

    def gnorm(x, w):                    # depends on x and w through both gradients
        gx, gw = needle.grad(loss, argnums=(0, 1))(x, w)
        return nnp.sum(gx ** 2) + nnp.sum(gw ** 2)
    hx, hw = jit(needle.grad(gnorm, argnums=(0, 1)))(x, w)
    f64 = lambda x, w: float(jit(gnorm)(x, w))          # noqa: E731
    np.testing.assert_allclose(hx, _fd_grad(lambda x: f64(x, w), x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hw, _fd_grad(lambda w: f64(x, w), w), rtol=1e-5, atol=1e-6)
    tx, tw = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    _, t = needle.jvp(lambda x, w: F.conv(x, w, padding=1), (x, w), (tx, tw))
    eps = 1e-6
    fd = (np_conv(x + eps * tx, w + eps * tw, [(1, 1)] * 2)
          - np_conv(x - eps * tx, w - eps * tw, [(1, 1)] * 2)) / (2 * eps)
    np.testing.assert_allclose(t, fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mapped", ["x", "w", "both"])
def test_vmap_against_a_loop(mapped):
    v = 3
    xs = rng.standard_normal((v, 2, 5, 4, 3)).astype(np.float32)
    ws = rng.standard_normal((v, 3, 3, 3, 8)).astype(np.float32)
    x_axis, w_axis = (0 if mapped in ("x", "both") else None), \
        (0 if mapped in ("w", "both") else None)
    x = xs if x_axis == 0 else xs[0]
    w = ws if w_axis == 0 else ws[0]
    f = jit(needle.vmap(lambda x, w: F.conv(x, w, padding=1), in_axes=(x_axis, w_axis)))
    got = f(x, w)
    for i in range(v):
        want = np_conv(x[i] if x_axis == 0 else x, w[i] if w_axis == 0 else w, [(1, 1)] * 2)
        np.testing.assert_allclose(got[i], want, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("mapped", ["x", "w", "both"])
def test_vmap_of_grad_per_example_weight_gradients(mapped):
    """conv_wgrad batched: x mapped (per-example gradients), the output
    gradient mapped, or both."""
    v = 3
    xs = rng.standard_normal((v, 1, 4, 4, 2))
    ws = rng.standard_normal((v, 3, 3, 2, 4))
    x_axis, w_axis = (0 if mapped in ("x", "both") else None), \
        (0 if mapped in ("w", "both") else None)
    x = xs if x_axis == 0 else xs[0]
    w = ws if w_axis == 0 else ws[0]

    def loss(w, x):
        return nnp.sum(nnp.sin(F.conv(x, w, padding=1)))
    got = jit(needle.vmap(needle.grad(loss), in_axes=(w_axis, x_axis)))(w, x)
    for i in range(v):
        xi, wi = (x[i] if x_axis == 0 else x), (w[i] if w_axis == 0 else w)
        g = np.cos(np_conv(xi, wi, [(1, 1)] * 2))
        np.testing.assert_allclose(got[i], np_wgrad(xi, g, (3, 3), [(1, 1)] * 2),
                                   rtol=1e-9, atol=1e-9)


def test_decomposition_for_backends_without_the_routine():
    """passes/conv_expand.py: the CUDA backend gets im2col + dot_general;
    the expanded program means the same."""
    from needle.codegen import backend_for
    from needle.passes.conv_expand import expand_convs
    from needle.ir.core import ShapedArray
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 6)).astype(np.float32)
    g = rng.standard_normal((2, 5, 3, 6)).astype(np.float32)
    padding = ((1, 0), (-1, 2))

    def f(x, w, g):
        return (conv_p.bind(x, w, padding=padding),
                conv_wgrad_p.bind(x, g, kernel=(2, 3), padding=padding))
    avals = [ShapedArray(a.shape, a.dtype) for a in (x, w, g)]
    cg, _ = trace_to_graph(f, avals)
    out = expand_convs(cg, backend_for("cuda"))
    assert not any(e.prim in (conv_p, conv_wgrad_p) for e in out.graph.eqns)
    assert expand_convs(cg, backend_for("cpu")) is cg          # the CPU runs them
    y, dw = run_numpy(out.graph, out.consts, [x, w, g])
    np.testing.assert_allclose(y, np_conv(x, w, padding), rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(dw, np_wgrad(x, g, (2, 3), padding), rtol=2e-4, atol=2e-4)


@pytest.mark.skipif(DEVICE != "cpu", reason="the CPU kernels' thread split")
def test_rows_and_taps_split_on_threads():
    from needle.ir.config import config
    x = rng.standard_normal((3, 9, 11, 5)).astype(np.float32)
    w = rng.standard_normal((3, 3, 5, 12)).astype(np.float32)
    old = config.num_threads, config.parallel_min_size
    try:
        needle.config.update("num_threads", 3)
        needle.config.update("parallel_min_size", 1)
        gx, gw = needle.jit(needle.grad(lambda x, w: nnp.sum(F.conv(x, w, padding=1) ** 2),
                                        argnums=(0, 1)))(x, w)
    finally:
        needle.config.update("num_threads", old[0])
        needle.config.update("parallel_min_size", old[1])
    y = np_conv(x, w, [(1, 1)] * 2)
    np.testing.assert_allclose(gw, np_wgrad(x, 2 * y, (3, 3), [(1, 1)] * 2), rtol=1e-3,
                               atol=1e-3)
    wt = np.flip(w, (0, 1)).transpose(0, 1, 3, 2)
    np.testing.assert_allclose(gx, np_conv(2 * y, wt, [(1, 1)] * 2), rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(DEVICE != "cpu", reason="the CPU program's structure")
def test_gradient_program_is_library_convs_and_layers_share_kernels():
    x = rng.standard_normal((2, 8, 8, 16)).astype(np.float32)
    w1 = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    w2 = rng.standard_normal((3, 3, 16, 32)).astype(np.float32)

    def loss(x, w1, w2):
        return nnp.sum(F.conv(F.relu(F.conv(x, w1, padding=1)), w2, padding=1) ** 2)
    lo = needle.jit(needle.grad(loss, argnums=(0, 1, 2))).lower(x, w1, w2)
    fused = lo._graphs["fused"]
    libs = sorted(e.prim.name for e in fused.eqns if e.prim.name in ("conv", "conv_wgrad"))
    # 2 forward, 2 weight gradients, 2 input gradients
    assert libs == ["conv"] * 4 + ["conv_wgrad"] * 2, lo.as_text("fused")
    kernels = [e for e in fused.eqns if e.prim.name == "kernel"]
    assert not any(q.prim.name == "gather" for e in kernels for q in e.params["graph"].eqns)
    from needle.codegen.cpu.conv import fwd_source, wgrad_source
    # every layer's forward and input gradient: one module per vector width
    assert fwd_source(np.float32, 16).key == fwd_source(np.float32, 32).key
    assert wgrad_source(np.float32, 16, 16).key == wgrad_source(np.float32, 32, 64).key
    assert fwd_source(np.float32, 12).key != fwd_source(np.float32, 16).key


def test_errors_name_the_primitive_and_shapes():
    x = np.zeros((1, 4, 4, 3), np.float32)
    with pytest.raises(Exception, match=r"conv: x has 3 channels"):
        jit(lambda x: conv_p.bind(x, np.zeros((3, 3, 2, 4), np.float32),
                                  padding=((0, 0), (0, 0))))(x)
    with pytest.raises(Exception, match=r"conv: the kernel \(5, 5\) does not fit"):
        jit(lambda x: conv_p.bind(x, np.zeros((5, 5, 3, 4), np.float32),
                                  padding=((0, 0), (0, 0))))(x)
    with pytest.raises(Exception, match=r"conv_wgrad: g"):
        jit(lambda x: conv_wgrad_p.bind(x, np.zeros((1, 3, 3, 2), np.float32), kernel=(3, 3),
                                        padding=((0, 0), (0, 0))))(x)


@pytest.mark.parametrize("xs,ws", [((0, 4, 4, 3), (3, 3, 3, 5)), ((2, 4, 4, 0), (3, 3, 0, 5)),
                                   ((2, 4, 4, 3), (3, 3, 3, 0))])
def test_empty_batches_and_channels(xs, ws):
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    pads = ((1, 1), (1, 1))
    y = jit(lambda x, w: conv_p.bind(x, w, padding=pads))(x, w)
    np.testing.assert_array_equal(y, np_conv(x, w, pads).astype(np.float32))
    g = rng.standard_normal(y.shape).astype(np.float32)
    dw = jit(lambda x, g: conv_wgrad_p.bind(x, g, kernel=(3, 3), padding=pads))(x, g)
    np.testing.assert_array_equal(dw, np_wgrad(x, g, (3, 3), pads).astype(np.float32))


@pytest.mark.parametrize("xs,k", [((3, 40, 30, 5), (3, 3)), ((2, 700, 3), (4,)),
                                  ((1, 9, 9, 9, 17), (2, 3, 2))])
def test_weight_gradient_summed_in_chunks(xs, k):
    """conv_wgrad adds ~512 output positions at a time into dw (several
    chunks here, one row per chunk where a row is longer)."""
    x = rng.standard_normal(xs).astype(np.float32)
    pads = tuple((1, 0) for _ in k)
    out = tuple(s + 1 - kk + 1 for s, kk in zip(xs[1:-1], k))
    g = rng.standard_normal((xs[0],) + out + (16,)).astype(np.float32)
    dw = jit(lambda x, g: conv_wgrad_p.bind(x, g, kernel=k, padding=pads))(x, g)
    np.testing.assert_allclose(dw, np_wgrad(x, g, k, pads), rtol=2e-4, atol=2e-3)


@pytest.mark.parametrize("index", [
    (slice(None), slice(1, -1), slice(2, None), slice(None)),   # spatial: folded into padding
    (slice(None), slice(0, 3), slice(None), slice(None)),
    (slice(1, 2), slice(1, -1), slice(None), slice(None)),      # batch too: kept a slice
    (slice(None), slice(None), slice(None), slice(1, 3)),       # channels: kept
    (slice(None), slice(None, None, 2), slice(None), slice(None)),   # strided: kept
])
def test_slices_of_a_convolution(index):
    """passes/simplify.py: slice(conv(x, w, p)) over spatial axes is a conv
    with less padding (a crop where negative), also of a padded input."""
    x = rng.standard_normal((2, 6, 7, 3))
    w = rng.standard_normal((3, 2, 3, 5))
    for padding in ("SAME", "VALID", ((2, 1), (0, 2))):
        got = jit(lambda x, w: F.conv(x, w, padding=padding)[index])(x, w)
        want = np_conv(x, w, _pads(x, w, padding))[index]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(DEVICE != "cpu", reason="the CPU program's structure")
def test_input_gradient_convolves_a_padded_cotangent_without_a_crop():
    x = rng.standard_normal((2, 8, 8, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 4)).astype(np.float32)
    lo = needle.jit(needle.grad(lambda x, w: nnp.sum(F.relu(F.conv(x, w, padding=1))),
                                argnums=(0, 1))).lower(x, w)
    eqns = lo._graphs["fused"].eqns
    convs = [e for e in eqns if e.prim.name in ("conv", "conv_wgrad")]
    assert all(e.params["padding"] == ((0, 0), (0, 0)) for e in convs), lo.as_text("fused")
    # every conv computes exactly its result: no output cropped afterwards
    assert not any(e.prim.name == "slice" for e in eqns)
    assert [tuple(e.inputs[0].aval.shape) for e in convs if e.prim.name == "conv"] == \
        [(2, 10, 10, 4)] * 2
