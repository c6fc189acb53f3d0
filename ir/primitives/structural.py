"""Stage ir: primitives that move data without arithmetic: broadcast_in_dim,
reshape, transpose, slice, pad, concatenate, rev, iota.

Input: nothing. Output: `<name>_p` Primitive objects with abstract eval,
numpy implementation and traits (ir.core.Traits, kind="structural"):
`shape_only` where every result element is an operand element (broadcast,
reshape, transpose, slice, rev), `staged_when_tracing` where the result is
larger than the operands (broadcast_in_dim, iota).
"""
import numpy as np

from .. import dtypes
from ..core import Primitive, ShapedArray, ShapeError, Traits

__all__ = ["broadcast_in_dim_p", "reshape_p", "transpose_p", "slice_p", "pad_p",
           "concatenate_p", "rev_p", "iota_p"]


def _prim(name, aval_rule, impl, **traits):
    p = Primitive(name, Traits(kind="structural", **traits))
    p.abstract_eval, p.impl = aval_rule, impl
    return p


# broadcast_in_dim(x, shape, broadcast_dimensions): operand dim i becomes output
# dim broadcast_dimensions[i]; operand dims of size 1 may expand.
def _bid_aval(x, *, shape, broadcast_dimensions):
    shape, bd = tuple(shape), tuple(broadcast_dimensions)
    if len(bd) != x.ndim or any(b1 >= b2 for b1, b2 in zip(bd, bd[1:])) or \
            any(not 0 <= b < len(shape) for b in bd):
        raise ShapeError(f"broadcast_in_dim: broadcast_dimensions {bd} do not map operand "
                         f"shape {x.shape} into {shape}")
    for i, b in enumerate(bd):
        if x.shape[i] not in (1, shape[b]):
            raise ShapeError(f"broadcast_in_dim: operand shape {x.shape} cannot be broadcast "
                             f"to {shape} (dimension {i} has size {x.shape[i]}, "
                             f"target size {shape[b]})")
    return [ShapedArray(shape, x.dtype, x.weak_type)]


def _bid_impl(x, *, shape, broadcast_dimensions):
    expanded = [1] * len(shape)
    for i, b in enumerate(broadcast_dimensions):
        expanded[b] = x.shape[i]
    return [np.broadcast_to(x.reshape(expanded), shape).copy()]


broadcast_in_dim_p = _prim("broadcast_in_dim", _bid_aval, _bid_impl, shape_only=True,
                           staged_when_tracing=True)


def _reshape_aval(x, *, new_sizes):
    new_sizes = tuple(int(s) for s in new_sizes)
    if any(s < 0 for s in new_sizes) or int(np.prod(new_sizes, dtype=np.int64)) != x.size:
        raise ShapeError(f"reshape: cannot reshape shape {x.shape} (size {x.size}) "
                         f"into {new_sizes}")
    return [ShapedArray(new_sizes, x.dtype, x.weak_type)]


reshape_p = _prim("reshape", _reshape_aval,
                  lambda x, *, new_sizes: [np.asarray(np.reshape(x, new_sizes), order="C")],
                  shape_only=True)


def _transpose_aval(x, *, permutation):
    if sorted(permutation) != list(range(x.ndim)):
        raise ShapeError(f"transpose: permutation {tuple(permutation)} is not a permutation "
                         f"of the axes of shape {x.shape}")
    return [ShapedArray(tuple(x.shape[p] for p in permutation), x.dtype, x.weak_type)]


transpose_p = _prim("transpose", _transpose_aval,
                    lambda x, *, permutation: [np.asarray(np.transpose(x, permutation), order="C")],
                    shape_only=True)


def _slice_aval(x, *, start_indices, limit_indices, strides=None):
    strides = strides or (1,) * x.ndim
    if not (len(start_indices) == len(limit_indices) == len(strides) == x.ndim):
        raise ShapeError(f"slice: start {start_indices}, limit {limit_indices}, strides "
                         f"{strides} must each have one entry per axis of shape {x.shape}")
    out = []
    for d, (s, l, st) in enumerate(zip(start_indices, limit_indices, strides)):
        if not (0 <= s <= l <= x.shape[d]) or st < 1:
            raise ShapeError(f"slice: start {s}, limit {l}, stride {st} out of range for "
                             f"axis {d} of shape {x.shape}")
        out.append(max(0, (l - s + st - 1) // st))
    return [ShapedArray(tuple(out), x.dtype, x.weak_type)]


def _slice_impl(x, *, start_indices, limit_indices, strides=None):
    strides = strides or (1,) * x.ndim
    idx = tuple(slice(s, l, st) for s, l, st in zip(start_indices, limit_indices, strides))
    return [np.asarray(x[idx], order="C")]


slice_p = _prim("slice", _slice_aval, _slice_impl, shape_only=True)


# pad(x, padding_value, padding_config): config is one (low, high, interior) per
# axis, all >= 0; interior inserts that many pad values between elements.
def _pad_aval(x, padval, *, padding_config):
    if padval.shape != () or padval.dtype != x.dtype:
        raise TypeError(f"pad: padding value must be a scalar of dtype {x.dtype.name}, got "
                        f"{padval}")
    if len(padding_config) != x.ndim:
        raise ShapeError(f"pad: padding_config {padding_config} needs one entry per axis "
                         f"of shape {x.shape}")
    out = []
    for n, (lo, hi, interior) in zip(x.shape, padding_config):
        if lo < 0 or hi < 0 or interior < 0:
            raise ShapeError(f"pad: negative padding {padding_config} is not supported")
        out.append(lo + hi + n + max(0, n - 1) * interior)
    return [ShapedArray(tuple(out), x.dtype, x.weak_type)]


def _pad_impl(x, padval, *, padding_config):
    shape = _pad_aval(ShapedArray(x.shape, x.dtype), ShapedArray((), x.dtype),
                      padding_config=padding_config)[0].shape
    out = np.full(shape, padval, dtype=x.dtype)
    idx = tuple(slice(lo, lo + (n - 1) * (it + 1) + 1 if n else lo, it + 1)
                for n, (lo, hi, it) in zip(x.shape, padding_config))
    out[idx] = x
    return [out]


pad_p = _prim("pad", _pad_aval, _pad_impl)


def _concat_aval(*xs, dimension):
    x0 = xs[0]
    if not 0 <= dimension < x0.ndim:
        raise ShapeError(f"concatenate: axis {dimension} out of range for shape {x0.shape}")
    for x in xs[1:]:
        if x.ndim != x0.ndim or any(a != b for d, (a, b) in enumerate(zip(x.shape, x0.shape))
                                    if d != dimension):
            raise ShapeError("concatenate: shapes " + ", ".join(str(x.shape) for x in xs)
                             + f" differ outside axis {dimension}")
        if x.dtype != x0.dtype:
            raise TypeError("concatenate: dtypes differ: "
                            + ", ".join(x.dtype.name for x in xs))
    shape = list(x0.shape)
    shape[dimension] = sum(x.shape[dimension] for x in xs)
    return [ShapedArray(tuple(shape), x0.dtype, all(x.weak_type for x in xs))]


concatenate_p = _prim("concatenate", _concat_aval,
                      lambda *xs, dimension: [np.concatenate(xs, axis=dimension)])


def _rev_aval(x, *, dimensions):
    if any(not 0 <= d < x.ndim for d in dimensions):
        raise ShapeError(f"rev: dimensions {dimensions} out of range for shape {x.shape}")
    return [x]


rev_p = _prim("rev", _rev_aval,
              lambda x, *, dimensions: [np.asarray(np.flip(x, tuple(dimensions)), order="C")],
              shape_only=True)


def _iota_aval(*, dtype, shape, dimension):
    dt = dtypes.canonicalize(dtype, "iota")
    if not 0 <= dimension < len(shape):
        raise ShapeError(f"iota: dimension {dimension} out of range for shape {shape}")
    return [ShapedArray(tuple(shape), dt, False)]


def _iota_impl(*, dtype, shape, dimension):
    expanded = [1] * len(shape)
    expanded[dimension] = shape[dimension]
    r = np.arange(shape[dimension], dtype=dtype).reshape(expanded)
    return [np.broadcast_to(r, shape).copy()]


iota_p = _prim("iota", _iota_aval, _iota_impl, staged_when_tracing=True)
