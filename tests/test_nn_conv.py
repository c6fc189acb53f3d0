"""needle.nn.conv (N-d convolution, channels last) against a numpy reference
built from sliding_window_view and einsum: 1-, 2- and 3-d, strides, padding
(ints, pairs, "SAME", "VALID"), kernel dilation, float32 and float64, eagerly
and under jit; its gradient against central finite differences; vmap over
it; and the shape errors. Also max_pool / avg_pool (padding, strides,
count_include_pad) and their gradients.
"""
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import needle
import needle.nn as nn
import needle.numpy as nnp
from helpers import MODES, assert_close, conv_pads, run

pytestmark = pytest.mark.on_device      # also run on $NEEDLE_TEST_DEVICE (conftest.py)

rng = np.random.default_rng(5)


def reference(x, w, stride, padding, dilation):
    """Cross-correlation in float64: the dilated kernel over every window."""
    n = x.ndim - 2
    k = w.shape[:n]
    st = (stride,) * n if isinstance(stride, int) else tuple(stride)
    dl = (dilation,) * n if isinstance(dilation, int) else tuple(dilation)
    xp = np.pad(np.asarray(x, np.float64), [(0, 0)] + conv_pads(x.shape[1:-1], k, st, padding, dl)
                + [(0, 0)])
    span = [d * (kk - 1) + 1 for d, kk in zip(dl, k)]
    wd = np.zeros(tuple(span) + w.shape[n:])
    wd[tuple(slice(None, None, d) for d in dl)] = w
    win = sliding_window_view(xp, span, axis=tuple(range(1, n + 1)))    # (B, *o, C, *span)
    win = win[(slice(None),) + tuple(slice(None, None, s) for s in st)]
    sp, ks = "xyz"[:n], "klm"[:n]
    return np.einsum(f"b{sp}c{ks},{ks}co->b{sp}o", win, wd)


CASES = [  # x shape, kernel shape (*k, C_in, C_out), stride, padding, dilation
    ((2, 9, 3), (3, 3, 4), 1, 0, 1),                         # 1-d
    ((2, 9, 3), (2, 3, 2), 2, "SAME", 2),
    ((2, 7, 8, 3), (3, 3, 3, 4), 1, 1, 1),                   # 2-d, the usual 3x3
    ((2, 7, 8, 3), (3, 2, 3, 4), (2, 1), ((1, 0), (2, 1)), (1, 2)),
    ((1, 7, 8, 2), (3, 3, 2, 3), 2, "SAME", 1),
    ((1, 6, 6, 2), (1, 1, 2, 5), 1, "VALID", 1),             # 1x1
    ((1, 4, 5, 6, 2), (2, 3, 2, 2, 3), 1, "SAME", 1),        # 3-d
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["f32", "f64"])
def test_conv_matches_numpy_eagerly(case, dt):
    xs, ws, stride, padding, dilation = CASES[case]
    x, w = rng.standard_normal(xs).astype(dt), rng.standard_normal(ws).astype(dt)
    got = nn.conv(x, w, stride, padding, dilation)
    assert_close(got, reference(x, w, stride, padding, dilation).astype(dt), dt)


@pytest.mark.parametrize("mode", MODES)
def test_conv_under_jit(mode):
    xs, ws, stride, padding, dilation = CASES[3]
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[-1]).astype(np.float32)
    got = run(lambda x, w, b: nn.relu(nn.conv(x, w, stride, padding, dilation) + b), (x, w, b),
              mode)
    want = np.maximum(reference(x, w, stride, padding, dilation) + b, 0).astype(np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conv_gradient_against_finite_differences():
    xs, ws, stride, padding, dilation = CASES[4]
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    ct = rng.standard_normal(reference(x, w, stride, padding, dilation).shape)

    def loss(x, w):
        return nnp.sum(nn.conv(x, w, stride, padding, dilation) * ct)

    gx, gw = needle.grad(loss, argnums=(0, 1))(x, w)
    eps = 1e-6
    for a, g, k in ((x, gx, 0), (w, gw, 1)):
        d = rng.standard_normal(a.shape)
        args = [x, w]
        args[k] = a + eps * d
        plus = float(np.sum(reference(*args, stride, padding, dilation) * ct))
        args[k] = a - eps * d
        minus = float(np.sum(reference(*args, stride, padding, dilation) * ct))
        np.testing.assert_allclose(np.sum(g * d), (plus - minus) / (2 * eps), rtol=1e-6)


def test_vmap_of_conv_over_examples():
    xs, ws, stride, padding, dilation = CASES[2]
    x, w = rng.standard_normal((3,) + xs).astype(np.float32), rng.standard_normal(ws).astype(
        np.float32)
    got = needle.vmap(lambda xi: nn.conv(xi, w, stride, padding, dilation))(x)
    want = np.stack([reference(xi, w, stride, padding, dilation) for xi in x])
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-5, atol=1e-5)


def test_conv_errors():
    x, w = np.zeros((1, 5, 5, 3), np.float32), np.zeros((3, 3, 2, 4), np.float32)
    with pytest.raises(ValueError, match="input channels"):
        nn.conv(x, w)
    with pytest.raises(ValueError, match="does not fit"):
        nn.conv(x, np.zeros((7, 7, 3, 4), np.float32))
    with pytest.raises(ValueError, match="stride"):
        nn.conv(x, np.zeros((3, 3, 3, 4), np.float32), stride=0)
    with pytest.raises(ValueError, match="padding"):
        nn.conv(x, np.zeros((3, 3, 3, 4), np.float32), padding="FULL")


def _pool_reference(x, window, strides, pads, how):
    n = x.ndim - 2
    fill = -np.inf if how == "max" else 0.0
    xp = np.pad(np.asarray(x, np.float64), [(0, 0)] + pads + [(0, 0)], constant_values=fill)
    win = sliding_window_view(xp, window, axis=tuple(range(1, n + 1)))
    win = win[(slice(None),) + tuple(slice(None, None, s) for s in strides)]
    axes = tuple(range(-n, 0))
    return win.max(axis=axes) if how == "max" else win.mean(axis=axes)


@pytest.mark.parametrize("mode", MODES)
def test_max_and_avg_pool(mode):
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    got = run(lambda x: [nn.max_pool(x, 2), nn.max_pool(x, (3, 2), (2, 1), "SAME"),
                         nn.avg_pool(x, 2), nn.avg_pool(x, 3, 2, ((1, 1), (0, 1))),
                         nn.avg_pool(x, 3, 1, "SAME", count_include_pad=False)], (x,), mode)
    same = conv_pads(x.shape[1:-1], (3, 2), (2, 1), "SAME", (1, 1))
    wants = [_pool_reference(x, (2, 2), (2, 2), [(0, 0)] * 2, "max"),
             _pool_reference(x, (3, 2), (2, 1), same, "max"),
             _pool_reference(x, (2, 2), (2, 2), [(0, 0)] * 2, "mean"),
             _pool_reference(x, (3, 3), (2, 2), [(1, 1), (0, 1)], "mean")]
    # without the padding in the count: sum over the window / real elements
    total = _pool_reference(x, (3, 3), (1, 1), [(1, 1)] * 2, "mean") * 9
    count = _pool_reference(np.ones((1, 7, 6, 1)), (3, 3), (1, 1), [(1, 1)] * 2, "mean") * 9
    wants.append(total / count)
    for g, w in zip(got, wants):
        np.testing.assert_allclose(g, w.astype(np.float32), rtol=1e-5, atol=1e-6)
    # integers: the padding never wins a max
    xi = rng.integers(-9, 0, (1, 3, 3, 1)).astype(np.int32)
    np.testing.assert_array_equal(nn.max_pool(xi, 2, 1, "SAME"),
                                  _pool_reference(xi, (2, 2), (1, 1), [(0, 1)] * 2, "max"))


def test_pool_gradients():
    x = rng.standard_normal((1, 5, 5, 2))
    ct = rng.standard_normal((1, 3, 3, 2))
    for how, f in (("max", lambda x: nn.max_pool(x, 3, 2, ((1, 1), (1, 1)))),
                   ("mean", lambda x: nn.avg_pool(x, 3, 2, ((1, 1), (1, 1))))):
        g = needle.grad(lambda x: nnp.sum(f(x) * ct))(x)
        d = rng.standard_normal(x.shape)
        eps = 1e-6

        def ref(x):
            return np.sum(_pool_reference(x, (3, 3), (2, 2), [(1, 1)] * 2, how) * ct)
        fd = (ref(x + eps * d) - ref(x - eps * d)) / (2 * eps)
        np.testing.assert_allclose(np.sum(g * d), fd,
                                   rtol=1e-6, err_msg=how)
