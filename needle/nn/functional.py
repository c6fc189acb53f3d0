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
from ..ir.primitives import conv_p
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

    A stride-1, undilated float convolution is the `conv` primitive
    (ir/primitives/conv.py, DIRECT_CONV): its gradients are `conv` (of the
    output gradient with the flipped, in/out-swapped kernel) and
    `conv_wgrad`, in every mode (jvp, vmap, higher order); the CPU runs
    them as blocked direct kernels that never materialise patches
    (codegen/cpu/conv.py), the CUDA backend as the im2col below.

    Other convolutions (strided, dilated, integer) are written as im2col
    from needle's primitives: the (batch, *out, K * C_in)
    patches are one gather of C_in-element rows of the input (its spatial
    grid flattened, a zero row appended where a window reaches into the
    padding; `_patch_rows` holds the static row table), one fused kernel,
    multiplied with w as a (K * C_in, C_out) matrix (one BLAS call on CPU);
    jit, vmap and the CUDA backend come from those primitives' rules. Under
    reverse-mode differentiation (grad, vjp, jacrev) its backward is a
    custom_vjp (`_conv_vjp`): the kernel's gradient one matmul of the
    forward's patches with the output gradient; the input's gradient a
    convolution of the stride-dilated, padded output gradient with the
    flipped, in/out-transposed kernel, so forward and backward share the
    im2col kernels and BLAS calls instead of col2im scatters, except for
    strided convolutions and those with C_out > 2 C_in (CONV_VJP_MAX_STRIDE,
    CONV_VJP_MAX_GROWTH), where the transpose of im2col by strided slices
    (col2im) of the patches' gradient is faster. Elsewhere (forward mode,
    a vmap or loop body being differentiated from outside) autodiff
    differentiates im2col, written then as K strided slices (the gather's
    transpose would be a serial scatter-add)."""
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
    if DIRECT_CONV and typeof(x)[0].kind == "f" and max(stride) == 1 and max(dilation) == 1:
        pads = tuple(tuple(p) for p in pads)
        if all(lo >= 0 and hi >= 0 for lo, hi in pads) and any(lo or hi for lo, hi in pads):
            # the zero padding as its own op: fused into the kernel producing x
            # and shared with the weight gradient's conv_wgrad; the input
            # gradient's crop of it folds into its conv (passes/simplify.py)
            x = nnp.pad(x, [(0, 0)] + [list(p) for p in pads] + [(0, 0)])
            pads = tuple((0, 0) for _ in pads)
        return conv_p.bind(x, w, padding=pads)
    if typeof(x)[0].kind == "f" and _reverse_mode_only():
        as_conv = max(stride) <= CONV_VJP_MAX_STRIDE and ws[-1] <= CONV_VJP_MAX_GROWTH * ws[-2]
        return _conv_vjp(xs[1:-1], stride, tuple(pads), dilation, as_conv)(x, w)
    return _im2col_conv(x, w, stride, pads, dilation)[0]


# Stride-1, undilated float convolutions are the conv primitive
# (ir/primitives/conv.py): its transposes are conv and conv_wgrad again, the
# CPU runs them as blocked direct kernels (codegen/cpu/conv.py; in the
# ConvNet step of benchmarks/bench_models.py a 32x32x32x16 3x3 layer took
# 2.1 ms of im2col gather + 4.0 ms of GEMM, 1.3 ms direct), and the CUDA
# backend writes them out as im2col + matmul (passes/conv_expand.py).
# False: every convolution as im2col from the other primitives (below).
DIRECT_CONV = True


def _im2col_conv(x, w, stride, pads, dilation, gather=None):
    """(the convolution, its (batch, *out, K * C_in) patches). pads may be
    negative (a crop). The patches are one gather of rows (`_patch_rows`)
    unless `gather` is False, or None while an autodiff trace is on (which
    may transpose them; IM2COL_GATHER_UNDER_AD), then K strided slices."""
    ws = tuple(nnp.shape(w))
    n = len(ws) - 2
    kc = int(np.prod(ws[:n])) * ws[-2]
    if gather is None:
        gather = IM2COL_GATHER and (IM2COL_GATHER_UNDER_AD or not _ad_active())
    if gather:
        patches, out = _gather_patches(x, ws[:n], stride, dilation, pads)
        patches = nnp.reshape(patches, (nnp.shape(x)[0],) + tuple(out) + (kc,))
    else:
        patches = _slice_patches(x, ws[:n], stride, dilation, pads)
    return nnp.matmul(patches, nnp.reshape(w, (kc, ws[-1]))), patches


def _slice_patches(x, k, stride, dilation, pads):
    """im2col as a stack of K strided slices of the padded x: (batch, *out,
    K * C_in)."""
    cols, out = _windows(x, k, stride, dilation, pads, 0, "conv")
    patches = cols[0] if len(cols) == 1 else nnp.stack(cols, axis=-2)   # (B, *out, K, C)
    kc = int(np.prod(k)) * nnp.shape(x)[-1]
    return nnp.reshape(patches, (nnp.shape(x)[0],) + tuple(out) + (kc,))


# im2col as one gather of C-element rows (a generated kernel with one index
# load per row and a contiguous, vectorised copy of its C_in channels)
# instead of a stack of K strided slices (a concatenate: every element's
# code computes all K candidates, each a clamped, masked read, and selects
# one). In the ConvNet step of benchmarks/bench_models.py a 32x32x32x16
# im2col kernel took 5.5-7.3 ms as slices, 2.0-2.5 ms as a gather (the first
# layer's 32x32x32x3: 9.6 -> 1.9 ms); bench_conv.py --table im2col times it.
IM2COL_GATHER = True
# Where autodiff differentiates im2col itself (under jvp / jacfwd / hessian,
# a conv in a vmap or loop body differentiated from outside, CONV_VJP =
# False), the gather's transpose is a serial scatter-add, slower than the
# slices' transpose (pads summed: 6.4 vs 3.9 ms for both gradients of a
# stride-2 32x16x16x32 -> 64 conv), so the slices are kept unless this is set.
IM2COL_GATHER_UNDER_AD = False


def _ad_active():
    from ..autodiff import ad_active
    return ad_active()


def _patch_rows(spatial, k, stride, dilation, pads):
    """(rows, out): for each output position and kernel offset (row-major:
    (*out, *k)), the row of the input's flattened spatial grid
    (prod(spatial) rows of C_in) that it reads, prod(spatial) (a zero row
    appended) where it falls in the padding; out: the output's spatial
    shape. pads: (lo, hi) per dim, negative to crop."""
    key = (tuple(spatial), tuple(k), tuple(stride), tuple(dilation),
           tuple(tuple(p) for p in pads))
    hit = _PATCH_ROWS.get(key)
    if hit is not None:
        return hit
    n = len(spatial)
    out = tuple((size + lo + hi - d * (kk - 1) - 1) // s + 1 for size, (lo, hi), d, kk, s
                in zip(spatial, pads, dilation, k, stride))
    if any(o < 1 for o in out):
        return None, out, False
    flat = np.zeros(out + tuple(k), np.int64)
    valid = np.ones(out + tuple(k), bool)
    step = 1
    for i in reversed(range(n)):
        coord = (np.arange(out[i]).reshape(-1, 1) * stride[i] - pads[i][0]
                 + np.arange(k[i]).reshape(1, -1) * dilation[i]).reshape(
                     [out[i] if a == i else k[i] if a == n + i else 1 for a in range(2 * n)])
        valid = valid & (coord >= 0) & (coord < spatial[i])
        flat = flat + coord * step
        step *= spatial[i]
    total = int(np.prod(spatial))
    rows = np.where(valid, flat, total).reshape(-1)
    rows = rows.astype(np.int32 if total < 2 ** 31 - 1 else np.int64)
    rows.flags.writeable = False
    if len(_PATCH_ROWS) > 256:
        _PATCH_ROWS.clear()
    _PATCH_ROWS[key] = hit = (rows, out, bool(not valid.all()))
    return hit


_PATCH_ROWS = {}


def _gather_patches(x, k, stride, dilation, pads):
    """im2col by one gather: ((batch, prod(out) * K, C_in) patches, out)."""
    xs = tuple(nnp.shape(x))
    spatial = xs[1:-1]
    rows, out, padded = _patch_rows(spatial, k, stride, dilation, pads)
    if any(o < 1 for o in out):
        raise ValueError(f"conv: the window {tuple(k)} (dilation {tuple(dilation)}) does not "
                         f"fit the padded input {xs} (padding {list(pads)})")
    total = int(np.prod(spatial))
    xr = nnp.reshape(x, (xs[0], total, xs[-1]))
    if len(rows) == total and np.array_equal(rows, np.arange(total)):
        return xr, out                          # a 1x1 kernel, stride 1: x itself
    if padded:
        xr = nnp.pad(xr, [(0, 0), (0, 1), (0, 0)])
    return nnp.take(xr, rows, axis=1), out


_REVERSE_KINDS = {"grad", "value_and_grad", "vjp", "jacrev"}
CONV_VJP = True     # False: conv's gradient by autodiff of im2col (benchmarks/bench_conv.py)
# The rule's input gradient convolves the stride-dilated output gradient: s**n
# times the work of the strided forward, mostly on zeros (measured 2.3x slower
# than autodiff of im2col for a stride-2 3x3 conv, benchmarks/bench_conv.py),
# so strided convolutions keep the primitives' rules unless this is raised.
CONV_VJP_MAX_STRIDE = 1
# Its im2col of the output gradient is C_out / C_in times the size of
# autodiff's patch gradient: equal step times at C_out = 2 C_in, 1.3x slower
# at 4 C_in (both gradients needed; a first layer's input gradient, unused,
# is dropped on both paths), so wider expansions keep the primitives' rules.
CONV_VJP_MAX_GROWTH = 2


def _reverse_mode_only():
    """True where conv's custom_vjp rule is safe: an autodiff trace is on and
    the innermost transform being traced (jit frames aside) is reverse mode,
    with no forward-mode transform (jvp, jacfwd, hessian) anywhere on the
    stack: needle.custom_vjp has no forward rule, and inside vmap / a loop
    body traced under grad its marker could not be batched / carried."""
    from ..autodiff import ad_active
    from ..tensor import FRAMES
    if not (CONV_VJP and ad_active()):
        return False
    kinds = [f.kind for f in FRAMES.stack]
    if any(kd in ("jvp", "jacfwd") for kd in kinds):
        return False
    for kd in reversed(kinds):
        if kd == "jit":
            continue
        return kd in _REVERSE_KINDS
    return False


def _pad_or_crop(x, pads):
    """x (batch, *spatial, C) padded with zeros by (lo, hi) per spatial dim;
    a negative entry crops instead."""
    xs = tuple(nnp.shape(x))
    if any(lo < 0 or hi < 0 for lo, hi in pads):
        x = x[(slice(None),) + tuple(slice(max(-lo, 0), size - max(-hi, 0))
                                     for size, (lo, hi) in zip(xs[1:-1], pads))
              + (slice(None),)]
    if any(lo > 0 or hi > 0 for lo, hi in pads):
        x = nnp.pad(x, [(0, 0)] + [(max(lo, 0), max(hi, 0)) for lo, hi in pads] + [(0, 0)])
    return x


def _dilate(g, stride):
    """g (batch, *out, C) with s - 1 zeros after each element along each
    spatial dim of stride s: (batch, *(out * s), C)."""
    for a, s in enumerate(stride, start=1):
        if s > 1:
            gs = tuple(nnp.shape(g))
            g = nnp.expand_dims(g, a + 1)
            g = nnp.pad(g, [(0, 0)] * (a + 1) + [(0, s - 1)] + [(0, 0)] * (len(gs) - a - 1))
            g = nnp.reshape(g, gs[:a] + (gs[a] * s,) + gs[a + 1:])
    return g


def _conv_vjp(x_sp, stride, pads, dilation, as_conv=True):
    """conv(x, w) with these static parameters as a needle.custom_vjp whose
    backward is convolutions (see `conv`); residuals: the forward's patches
    (for the kernel's gradient) and w (for the input's). as_conv=False
    (strided convolutions, C_out > 2 C_in): the input's gradient is instead
    the transpose of im2col by strided slices (what autodiff of the slices
    gives: col2im as K padded reads) of the patches' gradient g @ w^T, while
    the forward still gathers its patches (whose own transpose, a serial
    scatter-add, is slower); x is then a residual too. An input's gradient
    nobody reads is dropped, as autodiff's would be."""
    from ..autodiff import custom_vjp, vjp

    g_ = IM2COL_GATHER          # im2col is never differentiated here

    @custom_vjp
    def f(x, w):
        return _im2col_conv(x, w, stride, pads, dilation, g_)[0]

    def f_fwd(x, w):
        y, patches = _im2col_conv(x, w, stride, pads, dilation, g_)
        return y, (patches, w) if as_conv else (patches, w, x)

    def f_bwd(res, g):
        patches, w = res[:2]
        ws = tuple(nnp.shape(w))
        n = len(ws) - 2
        k = ws[:n]
        out = tuple(nnp.shape(g))[1:-1]
        axes = tuple(range(n + 1))
        dw = nnp.reshape(nnp.tensordot(patches, g, axes=(axes, axes)), ws)
        if not as_conv:
            kc = int(np.prod(k)) * ws[-2]
            dp = nnp.matmul(g, nnp.transpose(nnp.reshape(w, (kc, ws[-1]))))
            _, pull = vjp(lambda x: _slice_patches(x, k, stride, dilation, pads), res[2])
            return pull(dp)[0], dw
        # the input's gradient: the output gradient, dilated by the stride
        # and padded by (K-1)*d - lo (cropped where negative), correlated
        # (stride 1, the forward's dilation) with w flipped and in/out swapped
        gpads = [((kk - 1) * d - lo, size - o * s + lo)
                 for kk, d, (lo, _), size, o, s in zip(k, dilation, pads, x_sp, out, stride)]
        wt = nnp.flip(w, axis=tuple(range(n)))
        wt = nnp.transpose(wt, tuple(range(n)) + (n + 1, n))
        if g_:      # the gather pads / crops by itself
            dx = _im2col_conv(_dilate(g, stride), wt, (1,) * n, gpads, dilation, True)[0]
        else:
            gp = _pad_or_crop(_dilate(g, stride), gpads)
            dx = _im2col_conv(gp, wt, (1,) * n, [(0, 0)] * n, dilation, False)[0]
        return dx, dw

    f.defvjp(f_fwd, f_bwd)
    return f


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
