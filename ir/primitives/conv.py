"""Stage ir: the direct convolution primitives (stride 1, no dilation,
channels last), and their im2col decomposition.

Input: nothing. Output: `conv_p`, `conv_wgrad_p`, with abstract eval and a
numpy implementation, and `conv_by_im2col` / `conv_wgrad_by_im2col`, the
same computations written with other primitives (slices, one
concatenate, dot_general), for backends without a convolution routine
(passes/conv_expand.py) and for the batching rules.

    conv(x, w, padding)            x (B, *S, Ci), w (*K, Ci, Co)
        -> y (B, *O, Co), O = S + lo + hi - K + 1,
        y[b, o, co] = sum_{k, ci} xp[b, o + k, ci] * w[k, ci, co]
    conv_wgrad(x, g, kernel, padding)      x (B, *S, Ci), g (B, *O, Co)
        -> dw (*K, Ci, Co),  dw[k, ci, co] = sum_{b, o} xp[b, o + k, ci] * g[b, o, co]

where xp is x padded with zeros by (lo, hi) per spatial dim (a negative
entry crops). Both are bilinear, and closed under transposition:
conv_wgrad(x, ., K, p) is conv(x, ., p)'s transpose in w; conv's transpose
in x is a conv of the output gradient with w flipped and its channel axes
swapped (passes/autodiff/rules_conv.py). needle.nn.functional.conv uses
them for stride-1, undilated float convolutions; the CPU backend runs them
as blocked direct-convolution kernels (codegen/cpu/conv.py): no im2col
patches in memory.
"""
import numpy as np

from ..core import Primitive, ShapedArray, ShapeError, Traits

__all__ = ["conv_p", "conv_wgrad_p", "conv_by_im2col", "conv_wgrad_by_im2col",
           "conv_out_shape"]

conv_p = Primitive("conv", Traits(kind="linalg"))
conv_wgrad_p = Primitive("conv_wgrad", Traits(kind="linalg"))


def _canon(params):
    out = dict(params)
    if "padding" in out:
        out["padding"] = tuple((int(lo), int(hi)) for lo, hi in out["padding"])
    if "kernel" in out:
        out["kernel"] = tuple(int(k) for k in out["kernel"])
    return out


conv_p.canonicalize_params = _canon
conv_wgrad_p.canonicalize_params = _canon


def conv_out_shape(spatial, kernel, padding):
    """The output's spatial shape: S + lo + hi - K + 1 per dim."""
    return tuple(s + lo + hi - k + 1 for s, k, (lo, hi) in zip(spatial, kernel, padding))


def _check(name, x, kernel, padding, ci):
    n = x.ndim - 2
    if n < 1 or len(kernel) != n or len(padding) != n:
        raise ShapeError(f"{name}: x must be (batch, *spatial, C_in) with one kernel size and "
                         f"one (lo, hi) padding per spatial dim; got x {x.shape}, kernel "
                         f"{tuple(kernel)}, padding {tuple(padding)}")
    if x.shape[-1] != ci:
        raise ShapeError(f"{name}: x has {x.shape[-1]} channels (x {x.shape}), the kernel "
                         f"{ci}")
    out = conv_out_shape(x.shape[1:-1], kernel, padding)
    if any(o < 1 for o in out) or any(k < 1 for k in kernel):
        raise ShapeError(f"{name}: the kernel {tuple(kernel)} does not fit x {x.shape} padded "
                         f"by {tuple(padding)}")
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: float operands only, got {x.dtype.name}")
    return out


def _conv_aval(x, w, *, padding):
    if w.ndim != x.ndim:
        raise ShapeError(f"conv: w must be (*kernel, C_in, C_out) with as many spatial dims "
                         f"as x; got x {x.shape}, w {w.shape}")
    if x.dtype != w.dtype:
        raise TypeError(f"conv: operand dtypes differ: {x.dtype.name} vs {w.dtype.name}")
    out = _check("conv", x, w.shape[:-2], padding, w.shape[-2])
    return [ShapedArray((x.shape[0],) + out + (w.shape[-1],), x.dtype,
                        x.weak_type and w.weak_type)]


def _wgrad_aval(x, g, *, kernel, padding):
    if x.dtype != g.dtype:
        raise TypeError(f"conv_wgrad: operand dtypes differ: {x.dtype.name} vs "
                        f"{g.dtype.name}")
    out = _check("conv_wgrad", x, kernel, padding, x.shape[-1])
    if g.shape != (x.shape[0],) + out + g.shape[-1:]:
        raise ShapeError(f"conv_wgrad: g {g.shape} is not the output of kernel "
                         f"{tuple(kernel)} over x {x.shape} padded by {tuple(padding)}")
    return [ShapedArray(tuple(kernel) + (x.shape[-1], g.shape[-1]), x.dtype,
                        x.weak_type and g.weak_type)]


conv_p.abstract_eval = _conv_aval
conv_wgrad_p.abstract_eval = _wgrad_aval


# --- numpy: the reference -----------------------------------------------------------

def pad_numpy(x, padding):
    """x (B, *S, C) padded with zeros by (lo, hi) per spatial dim, cropped
    where an entry is negative."""
    crop = (slice(None),) + tuple(slice(max(-lo, 0), s - max(-hi, 0))
                                  for s, (lo, hi) in zip(x.shape[1:-1], padding)) + (slice(None),)
    x = x[crop]
    return np.pad(x, [(0, 0)] + [(max(lo, 0), max(hi, 0)) for lo, hi in padding] + [(0, 0)])


def _windows(xp, kernel):
    """(B, *O, *K, C) sliding windows of the padded x (a view)."""
    n = len(kernel)
    v = np.lib.stride_tricks.sliding_window_view(xp, tuple(kernel), axis=tuple(range(1, n + 1)))
    # (B, *O, C, *K) -> (B, *O, *K, C)
    return np.moveaxis(v, n + 1, -1)


def _conv_impl(x, w, *, padding):
    n = x.ndim - 2
    win = _windows(pad_numpy(x, padding), w.shape[:n])
    y = np.tensordot(win, w, axes=(tuple(range(n + 1, 2 * n + 2)), tuple(range(n + 1))))
    return [np.ascontiguousarray(y, dtype=x.dtype)]


def _wgrad_impl(x, g, *, kernel, padding):
    n = x.ndim - 2
    win = _windows(pad_numpy(x, padding), kernel)
    axes = tuple(range(n + 1))
    dw = np.tensordot(win, g, axes=(axes, axes))       # (*K, C_in, C_out)
    return [np.ascontiguousarray(dw, dtype=x.dtype)]


conv_p.impl = _conv_impl
conv_wgrad_p.impl = _wgrad_impl


# --- the same with other primitives ---------------------------------------------------

def _patches(x, kernel, padding, lead):
    """(*lead, B, *O, K * C) im2col patches of x (`lead` leading batch axes
    before B) by slices of the padded x, one concatenate and reshapes: taps
    row-major over the kernel, channels fastest (w's (*K, C) order)."""
    from . import concatenate_p, pad_p, reshape_p, slice_p
    shape = tuple(x.shape)
    n = len(kernel)
    sp0 = lead + 1
    spatial = shape[sp0:sp0 + n]
    if any(lo < 0 or hi < 0 for lo, hi in padding):          # a crop
        start = (0,) * sp0 + tuple(max(-lo, 0) for lo, _ in padding) + (0,)
        limit = shape[:sp0] + tuple(s - max(-hi, 0) for s, (_, hi) in
                                    zip(spatial, padding)) + shape[-1:]
        x = slice_p.bind(x, start_indices=start, limit_indices=limit, strides=None)
    if any(lo > 0 or hi > 0 for lo, hi in padding):
        config = [(0, 0, 0)] * sp0 + [(max(lo, 0), max(hi, 0), 0) for lo, hi in padding] \
            + [(0, 0, 0)]
        x = pad_p.bind(x, np.zeros((), x.dtype), padding_config=tuple(config))
    shape = tuple(x.shape)
    out = conv_out_shape(spatial, kernel, padding)
    taps = []
    for k in np.ndindex(*kernel):
        start = (0,) * sp0 + tuple(k) + (0,)
        limit = shape[:sp0] + tuple(kk + o for kk, o in zip(k, out)) + shape[-1:]
        s = slice_p.bind(x, start_indices=start, limit_indices=limit, strides=None)
        taps.append(reshape_p.bind(s, new_sizes=shape[:sp0] + out + (1, shape[-1])))
    p = taps[0] if len(taps) == 1 else concatenate_p.bind(*taps, dimension=sp0 + n)
    return reshape_p.bind(p, new_sizes=shape[:sp0] + out + (len(taps) * shape[-1],)), out


def conv_by_im2col(x, w, padding, lead=0):
    """conv(x, w, padding) as im2col and one dot_general. With lead=1, x is
    (V, B, *S, Ci) and w (V, *K, Ci, Co): V convolutions at once."""
    from . import dot_general_p, reshape_p
    ws = tuple(w.shape)
    n = len(ws) - 2 - lead
    kernel = ws[lead:lead + n]
    p, out = _patches(x, kernel, padding, lead)
    kc = int(np.prod(kernel)) * ws[-2]
    w2 = reshape_p.bind(w, new_sizes=ws[:lead] + (kc, ws[-1]))
    lb = tuple(range(lead))
    return dot_general_p.bind(p, w2, dimension_numbers=(((lead + n + 1,), (lead,)), (lb, lb)))


def conv_wgrad_by_im2col(x, g, kernel, padding, lead=0):
    """conv_wgrad(x, g, kernel, padding) as im2col and one dot_general; with
    lead=1, x and g carry a leading axis V and so does the result."""
    from . import dot_general_p, reshape_p
    n = len(kernel)
    p, out = _patches(x, kernel, padding, lead)
    axes = tuple(range(lead, lead + n + 1))
    lb = tuple(range(lead))
    dw = dot_general_p.bind(p, g, dimension_numbers=((axes, axes), (lb, lb)))
    xs, gs = tuple(x.shape), tuple(g.shape)
    return reshape_p.bind(dw, new_sizes=xs[:lead] + tuple(kernel) + (xs[-1], gs[-1]))
