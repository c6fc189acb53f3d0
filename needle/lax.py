"""The public package: `needle.lax`, the lax names JAX users reach for next to
jax.numpy, with JAX's semantics: `stop_gradient`, `select`, `dynamic_slice`,
`dynamic_slice_in_dim`, `dynamic_index_in_dim`, `dynamic_update_slice`,
`dynamic_update_slice_in_dim`, the loops and branches `scan`, `cond`,
`switch`, `while_loop`, `fori_loop`, `map` (needle/control_flow.py), and
`sort`, `sort_key_val`, `top_k`, `cumsum`, `cumprod`, `cummax`, `cummin`
(needle/lax_sorting.py), and `shift_left`, `shift_right_logical`,
`shift_right_arithmetic`, `bitcast_convert_type`, `erf_inv` (needle/lax_bits.py).

Input: arrays, tracers or device arrays; start indices may be traced.
Output: arrays (or tracers), built from needle's primitives, so they are
differentiable, batchable and fuse like the rest.

Dynamic start indices follow JAX (allow_negative_indices=True): a negative
index counts from the end, then every start is clamped so the whole slice
fits (`dynamic_slice(x, (5,), (3,))` of a length-6 x starts at 3). A slice
is a gather per sliced axis (indices start + arange(size)); an update is a
select between the operand and the update gathered to the operand's shape,
under a mask of the window, so it costs one pass over the operand.
"""
import numpy as np

from . import numpy as nnp
from .autodiff import stop_gradient  # noqa: F401  (lax.stop_gradient, as JAX)
from .control_flow import (cond, fori_loop, map, scan, switch,  # noqa: F401,A004
                           while_loop)
from .lax_sorting import (cummax, cummin, cumprod, cumsum, sort, sort_key_val,  # noqa: F401
                          top_k)
from . import lax_sorting as _lax_sorting
from .lax_bits import (bitcast_convert_type, erf_inv, shift_left,  # noqa: F401
                       shift_right_arithmetic, shift_right_logical)
from . import lax_bits as _lax_bits

__all__ = ["scan", "cond", "switch", "while_loop", "fori_loop", "map", "stop_gradient", "select", "dynamic_slice", "dynamic_slice_in_dim",
           "dynamic_index_in_dim", "dynamic_update_slice", "dynamic_update_slice_in_dim"]
__all__ += _lax_sorting.__all__          # sort, sort_key_val, top_k, cumsum, cumprod, cum*
__all__ += _lax_bits.__all__             # shifts, bitcast_convert_type, erf_inv


def select(pred, on_true, on_false):
    """Elementwise `on_true` where `pred` else `on_false` (lax.select): `pred` is
    boolean, of the operands' shape or a scalar; the operands have one shape
    and dtype (no broadcasting or promotion, as in JAX)."""
    p, t, f = (nnp.asarray(v) for v in (pred, on_true, on_false))
    if p.dtype != np.bool_:
        raise TypeError(f"lax.select: pred must be boolean, got {p.dtype}")
    if nnp.shape(t) != nnp.shape(f) or t.dtype != f.dtype:
        raise TypeError(f"lax.select: on_true and on_false must have one shape and dtype, got "
                        f"{nnp.shape(t)} {t.dtype} and {nnp.shape(f)} {f.dtype}")
    if nnp.shape(p) not in ((), nnp.shape(t)):
        raise TypeError(f"lax.select: pred of shape {nnp.shape(p)} must be a scalar or have "
                        f"the operands' shape {nnp.shape(t)}")
    return nnp.where(p, t, f)


def _starts(name, operand, start_indices, sizes):
    """The clamped start index of every axis (a Python int or a traced int)."""
    shape = nnp.shape(operand)
    if len(start_indices) != len(shape) or len(sizes) != len(shape):
        raise TypeError(f"lax.{name}: operand of shape {shape} needs {len(shape)} start "
                        f"indices and sizes, got {len(start_indices)} and {len(sizes)}")
    out = []
    for d, (s, n, dim) in enumerate(zip(start_indices, sizes, shape)):
        if not 0 <= n <= dim:
            raise TypeError(f"lax.{name}: size {n} of axis {d} must be in [0, {dim}] "
                            f"(operand shape {shape})")
        if isinstance(s, (int, np.integer)) and not isinstance(s, bool):
            s = int(s) + dim if s < 0 else int(s)
            out.append(min(max(s, 0), dim - n))
            continue
        s = nnp.asarray(s)
        if nnp.shape(s) != () or s.dtype.kind not in "iu":
            raise TypeError(f"lax.{name}: start index of axis {d} must be a scalar integer, "
                            f"got shape {nnp.shape(s)} dtype {s.dtype}")
        s = s.astype(np.int64)
        s = nnp.where(s < 0, s + dim, s)
        out.append(nnp.clip(s, 0, dim - n))
    return out


def _window(start, n):
    """The indices start, start+1, ..., start+n-1."""
    if isinstance(start, int):
        return np.arange(start, start + n)
    return start + nnp.arange(n, dtype=np.int64)


def dynamic_slice(operand, start_indices, slice_sizes):
    """operand[s0:s0+n0, s1:s1+n1, ...] with (possibly traced) starts `s` and
    static sizes `n` (lax.dynamic_slice)."""
    x = nnp.asarray(operand)
    starts = _starts("dynamic_slice", x, tuple(start_indices), tuple(slice_sizes))
    for d, (s, n) in enumerate(zip(starts, slice_sizes)):
        if isinstance(s, int) and s == 0 and n == nnp.shape(x)[d]:
            continue                            # the whole axis
        if isinstance(s, int):                  # a static start: a plain slice
            x = x[(slice(None),) * d + (slice(s, s + n),)]
        else:
            x = nnp.take(x, _window(s, n), axis=d)
    return x


def dynamic_slice_in_dim(operand, start_index, slice_size, axis=0):
    shape = nnp.shape(operand)
    axis = axis % len(shape)
    starts = [0] * len(shape)
    sizes = list(shape)
    starts[axis], sizes[axis] = start_index, slice_size
    return dynamic_slice(operand, starts, sizes)


def dynamic_index_in_dim(operand, index, axis=0, keepdims=True):
    """operand[..., index, ...] along `axis` (kept as size 1 with keepdims)."""
    out = dynamic_slice_in_dim(operand, index, 1, axis)
    return out if keepdims else nnp.squeeze(out, axis=axis % len(nnp.shape(operand)))


def dynamic_update_slice(operand, update, start_indices):
    """`operand` with the window at (possibly traced) `start_indices` replaced
    by `update` (lax.dynamic_update_slice); starts clamped so it fits."""
    x, u = nnp.asarray(operand), nnp.asarray(update)
    shape, ushape = nnp.shape(x), nnp.shape(u)
    if len(ushape) != len(shape) or x.dtype != u.dtype:
        raise TypeError(f"lax.dynamic_update_slice: update {ushape} {u.dtype} must have the "
                        f"operand's rank and dtype ({shape} {x.dtype})")
    starts = _starts("dynamic_update_slice", x, tuple(start_indices), ushape)
    mask = None
    for d, (s, n, dim) in enumerate(zip(starts, ushape, shape)):
        pos = np.arange(dim)
        inside = (pos >= s) & (pos < s + n) if isinstance(s, int) else \
            (nnp.arange(dim, dtype=np.int64) >= s) & (nnp.arange(dim, dtype=np.int64) < s + n)
        src = np.clip(pos - s, 0, max(n - 1, 0)) if isinstance(s, int) else \
            nnp.clip(nnp.arange(dim, dtype=np.int64) - s, 0, max(n - 1, 0))
        if n:
            u = nnp.take(u, src, axis=d)        # the update spread over the operand's axis
        bshape = [1] * len(shape)
        bshape[d] = dim
        inside = nnp.reshape(inside, bshape)
        mask = inside if mask is None else mask & inside
    if mask is None:                            # 0-d operand: the update replaces it
        return u
    if any(n == 0 for n in ushape):
        return x
    return nnp.where(mask, u, x)


def dynamic_update_slice_in_dim(operand, update, start_index, axis):
    rank = len(nnp.shape(operand))
    starts = [0] * rank
    starts[axis % rank] = start_index
    return dynamic_update_slice(operand, update, starts)
