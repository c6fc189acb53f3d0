"""Float64 numpy references of the course's layers (NCHW), written from the
course's / PyTorch's formulas, independently of needle: the trusted side of
tests/test_conv_layers.py, test_norm_layers.py and test_models_conv.py."""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv(x, w, b=None, stride=1):
    """The course's Conv: x (B, C, H, W), w (k, k, C, O), padding k // 2."""
    k = w.shape[0]
    p = k // 2
    xp = np.pad(np.asarray(x, np.float64), [(0, 0), (0, 0), (p, p), (p, p)])
    win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    out = np.einsum("bchwij,ijco->bohw", win, np.asarray(w, np.float64))
    if b is not None:
        out = out + np.asarray(b, np.float64)[None, :, None, None]
    return out


def pool(x, k, stride, pad, how):
    """PyTorch's MaxPool2d / AvgPool2d (count_include_pad=True) on NCHW."""
    fill = -np.inf if how == "max" else 0.0
    xp = np.pad(np.asarray(x, np.float64), [(0, 0), (0, 0), (pad[0],) * 2, (pad[1],) * 2],
                constant_values=fill)
    win = sliding_window_view(xp, k, axis=(2, 3))[:, :, ::stride[0], ::stride[1]]
    return win.max(axis=(-2, -1)) if how == "max" else win.mean(axis=(-2, -1))


def batchnorm2d(x, weight, bias, eps=1e-5, running=None):
    """Training mode: the batch mean and biased variance over N, H, W; eval
    (running=(mean, var)): the running statistics."""
    x = np.asarray(x, np.float64)
    if running is None:
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
    else:
        mean, var = (np.asarray(r, np.float64) for r in running)
    c = (None, slice(None), None, None)
    y = (x - mean[c]) / np.sqrt(var[c] + eps)
    return y * np.asarray(weight, np.float64)[c] + np.asarray(bias, np.float64)[c]


def layernorm(x, shape, weight=None, bias=None, eps=1e-5):
    x = np.asarray(x, np.float64)
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    y = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)
    if weight is not None:
        y = y * weight + bias
    return y


def relu(x):
    return np.maximum(x, 0.0)


def linear(x, w, b):
    return x @ np.asarray(w, np.float64) + np.asarray(b, np.float64)


def fd_directional(f, arrays, rng, eps=1e-6):
    """Random directions d (one per array) and the central difference of f
    along them: [(dirs, (f(a + eps d) - f(a - eps d)) / 2 eps)]."""
    dirs = [rng.standard_normal(np.shape(a)) for a in arrays]
    up = f(*[a + eps * d for a, d in zip(arrays, dirs)])
    down = f(*[a - eps * d for a, d in zip(arrays, dirs)])
    return dirs, (up - down) / (2 * eps)
