"""needle.nn.functional: neural-network functions with JAX's names (jax.nn):
relu, gelu, sigmoid, silu, softmax, log_softmax, logsumexp, one_hot, ..., and
`conv` (N-d convolution, channels last, as im2col + matmul), `max_pool`,
`avg_pool`; all re-exported as `needle.nn.relu`, ... beside the Module classes.

Input: arrays or tracers. Output: arrays or tracers; numerically stable forms
(softmax and logsumexp subtract the maximum first, under stop_gradient as in
JAX: it cancels out, so differentiating through it would be wasted work).
"""
import numpy as np

from .. import numpy as nnp
from ..autodiff import stop_gradient
from ..numpy._core import asarray, cast, promote, typeof


def relu(x):
    return nnp.maximum(x, 0)


def relu6(x):
    return nnp.minimum(nnp.maximum(x, 0), 6)


def sigmoid(x):
    return nnp.sigmoid(x)


def silu(x):
    x = promote(x, to_float=True)[0]
    return nnp.multiply(x, nnp.sigmoid(x))


swish = silu


def gelu(x, approximate=True):
    """GELU; approximate=True (JAX's default) uses the tanh form."""
    x = promote(x, to_float=True)[0]
    if approximate:
        c = float(np.sqrt(2 / np.pi))
        inner = nnp.multiply(c, nnp.add(x, nnp.multiply(0.044715, nnp.power(x, 3))))
        return nnp.multiply(nnp.multiply(0.5, x), nnp.add(1.0, nnp.tanh(inner)))
    return nnp.multiply(nnp.multiply(0.5, x),
                        nnp.add(1.0, nnp.erf(nnp.multiply(x, float(1 / np.sqrt(2))))))


def softplus(x):
    x = promote(x, to_float=True)[0]
    return nnp.logaddexp(x, 0.0)


def leaky_relu(x, negative_slope=0.01):
    return nnp.where(nnp.greater_equal(x, 0), x, nnp.multiply(negative_slope, x))


def elu(x, alpha=1.0):
    x = promote(x, to_float=True)[0]
    return nnp.where(nnp.greater(x, 0), x, nnp.multiply(alpha, nnp.expm1(nnp.minimum(x, 0))))


def logsumexp(a, axis=None, keepdims=False):
    a = promote(asarray(a), to_float=True)[0]
    m = stop_gradient(nnp.max(a, axis=axis, keepdims=True))   # cancels out: no gradient
    m = nnp.where(nnp.isfinite(m), m, 0.0)      # all -inf rows give -inf, not NaN
    s = nnp.sum(nnp.exp(nnp.subtract(a, m)), axis=axis, keepdims=True)
    out = nnp.add(nnp.log(s), m)
    if not keepdims:
        axes = tuple(range(len(np.shape(out)) if not hasattr(out, "shape") else out.ndim)) \
            if axis is None else axis
        out = nnp.squeeze(out, axis=axes)
    return out


def log_softmax(x, axis=-1):
    x = promote(asarray(x), to_float=True)[0]
    shifted = nnp.subtract(x, stop_gradient(nnp.max(x, axis=axis, keepdims=True)))
    return nnp.subtract(shifted, nnp.log(nnp.sum(nnp.exp(shifted), axis=axis, keepdims=True)))


def softmax(x, axis=-1):
    x = promote(asarray(x), to_float=True)[0]
    e = nnp.exp(nnp.subtract(x, stop_gradient(nnp.max(x, axis=axis, keepdims=True))))
    return nnp.divide(e, nnp.sum(e, axis=axis, keepdims=True))


def one_hot(x, num_classes, dtype=None, axis=-1):
    """one_hot(labels, k): a new axis of size k with 1 at each label (0 for a
    label outside [0, k), as JAX). Float labels compare as floats (1.5 matches
    no class), as in JAX."""
    x = asarray(x)
    kind = typeof(x)[0].kind
    if kind not in "iuf":
        raise TypeError(f"one_hot: labels must be integers or floats, got {typeof(x)[0].name}")
    nd = len(nnp.shape(x)) + 1
    ax = axis % nd
    shape = list(nnp.shape(x))
    shape.insert(ax, int(num_classes))
    cmp_dt = typeof(x)[0] if kind == "f" else np.int64
    classes = nnp.iota(cmp_dt, shape, ax)
    labels = nnp.expand_dims(cast(x, cmp_dt), ax)
    return cast(nnp.equal(labels, classes), dtype or nnp.float32)


def standardize(x, axis=-1, epsilon=1e-5):
    x = promote(asarray(x), to_float=True)[0]
    mean = nnp.mean(x, axis=axis, keepdims=True)
    var = nnp.var(x, axis=axis, keepdims=True)
    return nnp.multiply(nnp.subtract(x, mean), nnp.rsqrt(nnp.add(var, epsilon)))


def _per_dim(v, n, name, fn="conv"):
    v = (v,) * n if isinstance(v, (int, np.integer)) else tuple(v)
    if len(v) != n or any(int(e) < 1 for e in v):
        raise ValueError(f"{fn}: {name} must be a positive int or {n} of them, got {v!r}")
    return tuple(int(e) for e in v)


def _resolve_padding(padding, x_shape, k, stride, dilation, name):
    """(lo, hi) per spatial dim from an int, pairs, "VALID" or "SAME" (the
    output size ceil(in / stride), the extra on the high side, as JAX)."""
    n = len(k)
    span = [d * (kk - 1) + 1 for d, kk in zip(dilation, k)]
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return [(0, 0)] * n
        if mode == "SAME":
            pads = []
            for size, s, sp in zip(x_shape[1:-1], stride, span):
                total = max((-(-size // s) - 1) * s + sp - size, 0)
                pads.append((total // 2, total - total // 2))
            return pads
        raise ValueError(f"{name}: padding must be an int, pairs, 'VALID' or 'SAME', got "
                         f"{padding!r}")
    if isinstance(padding, (int, np.integer)):
        return [(int(padding), int(padding))] * n
    pads = [(int(p), int(p)) if isinstance(p, (int, np.integer)) else (int(p[0]), int(p[1]))
            for p in padding]
    if len(pads) != n:
        raise ValueError(f"{name}: padding needs one entry per spatial dim ({n}), got "
                         f"{padding!r}")
    return pads


def _windows(x, k, stride, dilation, pads, pad_value, name):
    """The strided slices of the padded x, one per window offset (channels
    last), and the output's spatial shape."""
    xs = tuple(nnp.shape(x))
    span = [d * (kk - 1) + 1 for d, kk in zip(dilation, k)]
    out = [(size + lo + hi - sp) // s + 1 for size, (lo, hi), sp, s
           in zip(xs[1:-1], pads, span, stride)]
    if any(o < 1 for o in out):
        raise ValueError(f"{name}: the window {tuple(k)} (dilation {dilation}) does not fit "
                         f"the padded input {xs} (padding {pads})")
    if any(lo or hi for lo, hi in pads):
        x = nnp.pad(x, [(0, 0)] + list(pads) + [(0, 0)], constant_values=pad_value)
    cols = []
    for offs in np.ndindex(*k):
        idx = (slice(None),) + tuple(
            slice(o * d, o * d + (m - 1) * s + 1, s)
            for o, d, m, s in zip(offs, dilation, out, stride)) + (slice(None),)
        cols.append(x[idx])
    return cols, out


def conv(x, w, stride=1, padding=0, dilation=1):
    """N-d convolution (cross-correlation, as every deep-learning library),
    channels last: x is (batch, *spatial, C_in), w is (*kernel, C_in, C_out)
    (NHWC / HWIO for 2-d; the course library's layout), the result
    (batch, *out, C_out). stride and dilation (of the kernel): an int or one
    per spatial dim; padding: an int, one per dim, (lo, hi) pairs per dim,
    "VALID" or "SAME" (the output size ceil(in / stride), extra on the high
    side as in JAX / TensorFlow).

    Written as im2col from needle's primitives: the padded input's strided
    slices, one per kernel offset, are stacked into a (batch, *out, K * C_in)
    array (one fused kernel) and multiplied with w as a (K * C_in, C_out)
    matrix (one BLAS call on CPU); its gradient, jit, vmap and the CUDA
    backend come from those primitives' rules."""
    x, w = asarray(x), asarray(w)
    xs, ws = tuple(nnp.shape(x)), tuple(nnp.shape(w))
    n = len(xs) - 2
    if n < 1 or len(ws) != n + 2:
        raise ValueError(f"conv: x must be (batch, *spatial, C_in) and w (*kernel, C_in, "
                         f"C_out) with as many spatial dims; got x {xs}, w {ws}")
    if ws[-2] != xs[-1]:
        raise ValueError(f"conv: w has {ws[-2]} input channels (w {ws}), x has {xs[-1]} "
                         f"(x {xs})")
    stride = _per_dim(stride, n, "stride")
    dilation = _per_dim(dilation, n, "dilation")
    k = ws[:n]
    pads = _resolve_padding(padding, xs, k, stride, dilation, "conv")
    x, w = promote(x, w)
    cols, out = _windows(x, k, stride, dilation, pads, 0, "conv")
    patches = cols[0] if len(cols) == 1 else nnp.stack(cols, axis=-2)   # (B, *out, K, C)
    kc = int(np.prod(k)) * ws[-2]
    patches = nnp.reshape(patches, (xs[0],) + tuple(out) + (kc,))
    return nnp.matmul(patches, nnp.reshape(w, (kc, ws[-1])))


def _pool(x, window, strides, padding, name):
    x = asarray(x)
    xs = tuple(nnp.shape(x))
    n = len(xs) - 2
    if n < 1:
        raise ValueError(f"{name}: x must be (batch, *spatial, C), got {xs}")
    window = _per_dim(window, n, "window", name)
    strides = window if strides is None else _per_dim(strides, n, "strides", name)
    pads = _resolve_padding(padding, xs, window, strides, (1,) * n, name)
    return x, window, strides, pads


def max_pool(x, window, strides=None, padding="VALID"):
    """Max over windows of the spatial dims, channels last ((batch, *spatial,
    C)); strides default to the window (flax.linen.max_pool's defaults);
    padding as `conv` (padded positions never win: -inf)."""
    x, window, strides, pads = _pool(x, window, strides, padding, "max_pool")
    dt = typeof(x)[0]
    low = -np.inf if dt.kind == "f" else np.iinfo(dt).min
    cols, _ = _windows(x, window, strides, (1,) * len(window), pads, low, "max_pool")
    out = cols[0]
    for c in cols[1:]:
        out = nnp.maximum(out, c)
    return out


def avg_pool(x, window, strides=None, padding="VALID", count_include_pad=True):
    """Mean over windows of the spatial dims, channels last; with padding,
    count_include_pad=True divides by the window size (flax's default),
    False by the number of real elements in each window."""
    x, window, strides, pads = _pool(x, window, strides, padding, "avg_pool")
    x = promote(x, to_float=True)[0]
    ones = (1,) * len(window)
    cols, out = _windows(x, window, strides, ones, pads, 0, "avg_pool")
    total = cols[0]
    for c in cols[1:]:
        total = nnp.add(total, c)
    if count_include_pad or not any(lo or hi for lo, hi in pads):
        return nnp.divide(total, float(np.prod(window)))
    # how many real elements each window holds: pool a ones image the same way
    shape = (1,) + tuple(nnp.shape(x)[1:-1]) + (1,)
    counts, _ = _windows(np.ones(shape, typeof(x)[0]), window, strides, ones, pads, 0,
                         "avg_pool")
    return nnp.divide(total, np.sum(np.stack([np.asarray(c) for c in counts]), axis=0))
