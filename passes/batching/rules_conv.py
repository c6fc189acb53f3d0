"""Stage passes (batching): the batching rules of the direct convolution
primitives (ir/primitives/conv.py), registered into rules.py's BATCH_RULES.

Input: nothing. Output: entries of `BATCH_RULES` for conv and conv_wgrad.

A mapped axis beside an unmapped operand folds into an axis the primitive
already has: x's batch (conv with w unmapped), the output channels (w
mapped, x not; g mapped in conv_wgrad), the input channels (x mapped in
conv_wgrad, g not): one convolution of a larger operand. Where both are
mapped, each example has its own kernel and its own reduction: the im2col
decomposition with the mapped axis as dot_general's batch axis.
"""
from ...ir.primitives import conv_by_im2col, conv_p, conv_wgrad_by_im2col, conv_wgrad_p
from .rules import BATCH_RULES, moveaxis, reshape, shape_of


def _fold_channels(a, size):
    """a (V, ..., C) -> (..., V * C): the mapped axis beside the channels."""
    s = shape_of(a)
    return reshape(moveaxis(a, 0, len(s) - 2), s[1:-1] + (size * s[-1],))


def _unfold_channels(a, size):
    """(..., V * C) -> (V, ..., C)."""
    s = shape_of(a)
    a = reshape(a, s[:-1] + (size, s[-1] // size))
    return moveaxis(a, len(s) - 1, 0)


def _conv(args, batched, size, *, padding):
    x, w = args
    bx, bw = batched
    if bx and bw:
        return conv_by_im2col(x, w, padding, lead=1)
    if bx:                              # (V, B, *S, Ci) -> (V * B, *S, Ci)
        s = shape_of(x)
        y = conv_p.bind(reshape(x, (size * s[1],) + s[2:]), w, padding=padding)
        return reshape(y, (size, s[1]) + shape_of(y)[1:])
    return _unfold_channels(conv_p.bind(x, _fold_channels(w, size), padding=padding), size)


def _wgrad(args, batched, size, *, kernel, padding):
    x, g = args
    bx, bg = batched
    if bx and bg:
        return conv_wgrad_by_im2col(x, g, kernel, padding, lead=1)
    if bg:                              # output channels (*K, Ci, V * Co)
        return _unfold_channels(conv_wgrad_p.bind(x, _fold_channels(g, size), kernel=kernel,
                                                  padding=padding), size)
    # input channels: (*K, V * Ci, Co) -> (V, *K, Ci, Co)
    dw = conv_wgrad_p.bind(_fold_channels(x, size), g, kernel=kernel, padding=padding)
    s = shape_of(dw)
    dw = reshape(dw, s[:-2] + (size, s[-2] // size, s[-1]))
    return moveaxis(dw, len(s) - 2, 0)


BATCH_RULES[conv_p] = _conv
BATCH_RULES[conv_wgrad_p] = _wgrad
