"""Stage runtime (CUDA): device arrays at the runtime's level: what the CUDA
runtime needs of an array on the device, and host <-> device copies.

Input: host data (`to_device`), or device buffers made by the CUDA runtime.
Output: device arrays, made by `make_array(buf, aval, block)`.

`DeviceArray` holds the buffer methods (donation, host copies,
`__cuda_array_interface__`); the user-facing class, `needle.Array`
(needle/array.py), is a DeviceArray and a tracer of the eager CUDA trace
(so needle.numpy accepts it and its operators run on the device). The
tracer lives above the runtime, so the runtime makes arrays through the
class that needle registers (`set_array_class`) and checks them with
`isinstance(x, DeviceArray)`.

Arrays are immutable. A 0-d array is stored as a 1-element device vector
(as codegen/cuda passes it). The device buffer comes from the pool
(runtime/cuda_memory.py) and goes back when the last array using it dies.
Nothing here imports numba until a device array is made.
"""
import sys

import numpy as np

from ..ir import dtypes
from ..ir.core import ShapedArray, aval_of


def dev_shape(shape):
    """The device shape of an array: a 0-d array is a 1-element vector."""
    return tuple(shape) or (1,)


class DeviceArray:
    """The device-buffer side of needle.Array: `_buf` (a numba device array
    in its device shape), `_block` (its pool block), `aval`; the subclass
    provides the storage and the array properties (shape, dtype, ...)."""
    __slots__ = ()

    # -- donation -------------------------------------------------------------
    def is_deleted(self):
        """True once the array was donated to a jitted call (donate_argnums)."""
        return self._buf is None

    def _delete(self):
        self._buf = self._block = None

    def _check_alive(self):
        if self._buf is None:
            raise RuntimeError(f"this {self.aval.str_short()} device array was donated to a "
                               f"jitted function (donate_argnums) and deleted; use that "
                               f"call's results instead")

    def _exclusive(self):
        """Whether no other Array shares this one's buffer (a view would)."""
        # references to the Block: this Array's slot and getrefcount's argument
        return self._block is not None and sys.getrefcount(self._block) == 2

    # -- host conversion ----------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        self._check_alive()
        a = self._buf.copy_to_host().reshape(self.shape)
        return a if dtype is None else a.astype(dtype, copy=False)

    def to_host(self):
        return np.asarray(self)

    def item(self):
        if self.size != 1:
            raise ValueError(f"item() of an array of shape {self.shape}; it needs one element")
        return np.asarray(self).reshape(()).item()

    def tolist(self):
        return np.asarray(self).tolist()

    def __bool__(self):
        return bool(np.asarray(self))

    def __int__(self):
        return int(np.asarray(self))

    def __float__(self):
        return float(np.asarray(self))

    def __index__(self):
        if self.dtype.kind not in "iub":
            raise TypeError(f"only integer arrays can be used as an index, not {self.dtype}")
        return int(np.asarray(self))

    def __repr__(self):
        body = np.array2string(np.asarray(self), separator=", ", prefix="Array(")
        shape = f", shape={self.shape}" if self.size == 0 and self.ndim > 1 else ""
        return f"Array({body}{shape}, dtype={self.dtype.name}, device=cuda)"

    def __str__(self):
        return str(np.asarray(self))

    def __format__(self, spec):
        return format(np.asarray(self), spec) if spec else str(self)

    def __setitem__(self, idx, val):
        raise TypeError("needle arrays are immutable: x[...] = v is not supported; use "
                        "x = x.at[idx].set(v) (or .add / .mul)")

    def __reduce__(self):
        return (_ARRAY_CLASS[0].from_host, (np.asarray(self),))

    # -- device ---------------------------------------------------------------
    @property
    def device(self):
        return "cuda"

    @property
    def nbytes(self):
        return self.size * self.dtype.itemsize

    @property
    def itemsize(self):
        return self.dtype.itemsize

    def block_until_ready(self):
        """Wait until the kernels computing this array have finished."""
        from numba import cuda
        cuda.synchronize()
        return self

    @property
    def __cuda_array_interface__(self):
        self._check_alive()
        from numba import config
        if config.ENABLE_CUDASIM:
            # The simulator's arrays are numpy arrays in host memory.
            host = np.asarray(self._buf._ary) if hasattr(self._buf, "_ary") else \
                np.asarray(self._buf)
            iface = dict(host.__array_interface__)
            iface.update(stream=None)
        else:                                       # pragma: no cover (needs a GPU)
            iface = dict(self._buf.__cuda_array_interface__)
        iface["version"] = 3
        iface["shape"] = tuple(self.shape)
        iface["strides"] = None                     # C-contiguous
        return iface

    def on_device(self):
        """The numba device array (device shape: 0-d arrays are 1-element
        vectors). Keep this Array alive while using it."""
        self._check_alive()
        return self._buf



# The concrete array class (needle.Array), registered by needle/array.py.
_ARRAY_CLASS = [None]


def set_array_class(cls):
    _ARRAY_CLASS[0] = cls


def make_array(buf, aval, block=None):
    """A device array (needle.Array) over buffer `buf` of abstract value `aval`."""
    return _ARRAY_CLASS[0](buf, aval, block)


def to_device(x, dtype=None):
    """A host value (numpy array, numpy or Python scalar) as a new Array; an
    Array of the right dtype is returned as is."""
    if isinstance(x, DeviceArray):
        x._check_alive()
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)
    if hasattr(x, "__cuda_array_interface__") and not isinstance(x, np.ndarray):
        return _from_cuda_array(x, dtype)
    if dtype is None:
        try:
            aval = aval_of(x)
        except dtypes.DTypeError:
            dtypes.canonicalize(np.asarray(x).dtype, f"device_put (shape {np.shape(x)})")
            raise
        dtype = aval.dtype
    host = np.asarray(x, dtype=dtype, order="C")     # (ascontiguousarray makes 0-d 1-d)
    from . import cuda_memory
    buf, block = cuda_memory.allocate(dev_shape(host.shape), host.dtype)
    if host.size:
        # reshape(-1) first: a C-contiguous view may carry a 0 stride on a
        # size-1 axis (x[:, None]), which Numba's copy mis-squeezes
        buf.copy_to_device(host.reshape(-1).reshape(dev_shape(host.shape)))
    return make_array(buf, ShapedArray(host.shape, host.dtype), block)


def _from_cuda_array(x, dtype):
    """Another library's device array (CuPy, PyTorch, numba): copied into a
    needle buffer (needle's arrays are immutable and C-contiguous)."""
    from numba import config, cuda
    if config.ENABLE_CUDASIM:       # the simulator has no as_cuda_array: its arrays are host arrays
        return to_device(np.asarray(x), dtype)
    src = cuda.as_cuda_array(x)     # pragma: no cover (needs a GPU)
    shape = tuple(src.shape)
    dt = dtypes.canonicalize(src.dtype, "device_put")
    from . import cuda_memory
    buf, block = cuda_memory.allocate(dev_shape(shape), dt)
    if src.size:
        if src.is_c_contiguous():
            buf.copy_to_device(src.reshape(dev_shape(shape)))
        else:
            buf.copy_to_device(np.ascontiguousarray(src.copy_to_host()).reshape(dev_shape(shape)))
    out = make_array(buf, ShapedArray(shape, dt), block)
    return out if dtype is None or dt == dtype else out.astype(dtype)
