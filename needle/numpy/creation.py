"""needle.numpy: array creation: array/asarray, zeros/ones/full/empty,
arange/linspace/eye/identity, the *_like forms, iota-based helpers.

Input: shapes, values, dtypes, and optionally a device. Output: numpy arrays
(creation functions take no traced operands, so they run eagerly; under jit
the result is captured as a constant, or a broadcast of a scalar made inside
the kernels that read it). The default float is float32 and the default int
int64.

Placement (JAX's `device=` argument): `device="cuda"` gives a needle device
Array; zeros / ones / full / empty fill it with a kernel on the device (no
host copy), the others (arange, linspace, eye, tri, array) are computed on
the host and copied over. The *_like functions place their result on their
argument's device unless `device` says otherwise. Under a trace `device` is
ignored: the jitted function's placement decides.
"""
import numpy as np

from ..ir import dtypes
from ..ir.primitives import broadcast_in_dim_p, iota_p
from ._core import asarray as _asarray, cast, shape_of, typeof
from ..tracer.core import Tracer, current_trace, lift


def _dt(dtype, default=dtypes.DEFAULT_FLOAT):
    return dtypes.canonicalize(default if dtype is None else dtype, "dtype")


def _shape(shape):
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)


def _device_of(a):
    """'cuda' for a needle device Array, else None."""
    from ..array import Array
    return "cuda" if isinstance(a, Array) else None


def _place(value, device):
    """`value` (a host or device array) on `device`; unchanged without one, or
    when it is a tracer of a trace (the jitted function's placement decides).
    Under a trace a host array becomes a traced constant of that trace (as a
    jnp array is under jax.jit), so `nnp.arange(n)[i]` with a traced `i`
    indexes it instead of asking numpy for the tracer's value."""
    if isinstance(value, np.ndarray) and value.ndim and current_trace() is not None:
        return lift(value)
    if device is None or (isinstance(value, Tracer) and _device_of(value) is None):
        return value
    from ..array import device_put
    return device_put(value, device)


def array(object, dtype=None, copy=True, device=None):  # noqa: A002 - numpy's name
    out = _asarray(object, dtype)
    if isinstance(out, np.ndarray) and copy:
        out = out.copy()
    return _place(out, device)


def asarray(a, dtype=None, device=None):
    return _place(_asarray(a, dtype), device)


def _filled(shape, value, dtype, device=None):
    """np.full eagerly; under a trace, a broadcast of the scalar (made inside
    the kernels that read it, never stored); on a device, a fill kernel."""
    shape, dtype = _shape(shape), np.dtype(dtype)
    if current_trace() is not None and shape:
        return broadcast_in_dim_p.bind(dtype.type(value), shape=shape, broadcast_dimensions=())
    if device is not None and current_trace() is None:
        from ..runtime.devices import resolve_device
        if resolve_device(device) == "cuda":
            from ..array import filled
            return filled(shape, dtype.type(value))
    return _place(np.full(shape, value, dtype), device)


def zeros(shape, dtype=None, device=None):
    return _filled(shape, 0, _dt(dtype), device)


def ones(shape, dtype=None, device=None):
    return _filled(shape, 1, _dt(dtype), device)


def empty(shape, dtype=None, device=None):
    return zeros(shape, dtype, device)


def full(shape, fill_value, dtype=None, device=None):
    if isinstance(fill_value, Tracer):
        from ._core import broadcast_to
        return broadcast_to(cast(fill_value, dtype) if dtype else fill_value, _shape(shape))
    # A Python scalar gives the default int / float, a numpy value its dtype (JAX).
    dt = _dt(dtype) if dtype is not None else typeof(fill_value)[0]
    if np.ndim(fill_value):
        return _place(np.full(_shape(shape), np.asarray(fill_value), dt), device)
    return _filled(shape, fill_value, dt, device)


def _like_dtype(a, dtype):
    return _dt(dtype) if dtype is not None else typeof(a)[0]


def zeros_like(a, dtype=None, shape=None, device=None):
    return zeros(shape_of(a) if shape is None else shape, _like_dtype(a, dtype),
                 device or _device_of(a))


def ones_like(a, dtype=None, shape=None, device=None):
    return ones(shape_of(a) if shape is None else shape, _like_dtype(a, dtype),
                device or _device_of(a))


def empty_like(a, dtype=None, shape=None, device=None):
    return zeros_like(a, dtype, shape, device)


def full_like(a, fill_value, dtype=None, shape=None, device=None):
    return full(shape_of(a) if shape is None else shape, fill_value, _like_dtype(a, dtype),
                device or _device_of(a))


def arange(start, stop=None, step=1, dtype=None, device=None):
    return _place(_arange(start, stop, step, dtype), device)


def _arange(start, stop, step, dtype):
    for v in (start, stop, step):
        if isinstance(v, Tracer):
            raise TypeError("arange: start, stop and step must be concrete (the result's "
                            "shape depends on them); mark them static under jit")
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        # JAX: promote the arguments (Python ints weak, so arange(5) is int64).
        dtype = dtypes.result_type(*[typeof(v) for v in (start, stop, step)])[0]
    n = len(range(0, int(np.ceil((stop - start) / step)))) if step else 0
    if float(start).is_integer() and float(step).is_integer() and n >= 0:
        return (np.arange(n, dtype=np.float64) * step + start).astype(_dt(dtype))
    return np.arange(start, stop, step).astype(_dt(dtype))


def linspace(start, stop, num=50, endpoint=True, dtype=None, device=None):
    return _place(np.linspace(start, stop, num, endpoint=endpoint).astype(_dt(dtype)), device)


def eye(N, M=None, k=0, dtype=None, device=None):
    return _place(np.eye(N, M, k, dtype=_dt(dtype)), device)


def identity(n, dtype=None, device=None):
    return eye(n, dtype=dtype, device=device)


def iota(dtype, shape, dimension=0):
    """Indices along `dimension`, broadcast over `shape` (lax.iota's cousin)."""
    return iota_p.bind(dtype=_dt(dtype), shape=_shape(shape), dimension=dimension)


def tri(N, M=None, k=0, dtype=None, device=None):
    return _place(np.tri(N, M, k, dtype=_dt(dtype)), device)


def tril(m, k=0):
    from .math import where
    m = _asarray(m)
    n, mm = shape_of(m)[-2:]
    return where(np.tri(n, mm, k, dtype=bool), m, 0)


def triu(m, k=0):
    from .math import where
    m = _asarray(m)
    n, mm = shape_of(m)[-2:]
    return where(np.tri(n, mm, k - 1, dtype=bool), 0, m)
