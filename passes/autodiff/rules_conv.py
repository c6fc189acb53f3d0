"""Stage passes (autodiff): the rules of the direct convolution primitives
(ir/primitives/conv.py), registered into rules.py's tables.

Input: nothing. Output: JVP and transpose rules for conv and conv_wgrad.

Both are bilinear, so a JVP is the sum of the primitive applied to one
tangent and the other primal. Transposes stay within the two primitives:
    conv(x, w, p) in w        -> conv_wgrad(x, ct, K, p)
    conv(x, w, p) in x        -> conv(ct, flipT(w), K - 1 - p)
    conv_wgrad(x, g, K, p) in g -> conv(x, ct, p)
    conv_wgrad(x, g, K, p) in x -> conv(g, flipT(ct), K - 1 - p)
where flipT reverses the kernel's spatial axes and swaps its channel axes,
and K - 1 - p is (K - 1 - lo, K - 1 - hi) per dim (a negative entry crops):
the "full" correlation of the output gradient, cut to x's extent.
"""
import numpy as np

from ...ir.primitives import conv_p, conv_wgrad_p, pad_p, rev_p, transpose_p
from .rules import (JVP_RULES, TRANSPOSE_RULES, UndefinedPrimal, add_tangents, dtype_of,
                    shape_of)


def _flip_t(w):
    """w (*K, Ci, Co) with its spatial axes reversed and Ci, Co swapped."""
    n = len(shape_of(w)) - 2
    w = rev_p.bind(w, dimensions=tuple(range(n)))
    return transpose_p.bind(w, permutation=tuple(range(n)) + (n + 1, n))


def _full(kernel, padding):
    return tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(kernel, padding))


def _conv_jvp(primals, tangents, *, padding):
    (x, w), (tx, tw) = primals, tangents
    out = None
    if tx is not None:
        out = conv_p.bind(tx, w, padding=padding)
    if tw is not None:
        out = add_tangents(out, conv_p.bind(x, tw, padding=padding))
    return conv_p.bind(x, w, padding=padding), out


def _conv_T(ct, x, w, *, padding):
    if isinstance(x, UndefinedPrimal) and isinstance(w, UndefinedPrimal):
        raise TypeError("autodiff: conv of two tangents is not linear")
    if isinstance(x, UndefinedPrimal):
        kernel = shape_of(w)[:-2]
        full = _full(kernel, padding)
        if all(lo >= 0 and hi >= 0 for lo, hi in full):
            # the padding as its own op: fused into the kernel producing ct
            # (passes/simplify.py folds a crop of the result into it)
            config = ((0, 0, 0),) + tuple((lo, hi, 0) for lo, hi in full) + ((0, 0, 0),)
            ct = pad_p.bind(ct, np.zeros((), dtype_of(ct)), padding_config=config)
            full = tuple((0, 0) for _ in full)
        return [conv_p.bind(ct, _flip_t(w), padding=full), None]
    kernel = w.aval.shape[:-2]
    return [None, conv_wgrad_p.bind(x, ct, kernel=kernel, padding=padding)]


def _wgrad_jvp(primals, tangents, *, kernel, padding):
    (x, g), (tx, tg) = primals, tangents
    out = None
    if tx is not None:
        out = conv_wgrad_p.bind(tx, g, kernel=kernel, padding=padding)
    if tg is not None:
        out = add_tangents(out, conv_wgrad_p.bind(x, tg, kernel=kernel, padding=padding))
    return conv_wgrad_p.bind(x, g, kernel=kernel, padding=padding), out


def _wgrad_T(ct, x, g, *, kernel, padding):
    if isinstance(x, UndefinedPrimal) and isinstance(g, UndefinedPrimal):
        raise TypeError("autodiff: conv_wgrad of two tangents is not linear")
    if isinstance(x, UndefinedPrimal):
        return [conv_p.bind(g, _flip_t(ct), padding=_full(kernel, padding)), None]
    return [None, conv_p.bind(x, ct, padding=padding)]


JVP_RULES[conv_p] = _conv_jvp
TRANSPOSE_RULES[conv_p] = _conv_T
JVP_RULES[conv_wgrad_p] = _wgrad_jvp
TRANSPOSE_RULES[conv_wgrad_p] = _wgrad_T
