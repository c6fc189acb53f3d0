"""Stage runtime (CUDA): `needle.Array`, an array resident on the CUDA device,
and the eager execution of operations on it.

Input: host data (`device_put`), or device buffers made by the CUDA runtime.
Output: Arrays. `np.asarray(x)` copies one back to the host.

An Array is a `Tracer` of a special, always-active trace (`EAGER`, level
-1, below every graph trace). That one fact gives it everything a traced
value has: needle.numpy accepts it where it accepts a tracer (no host
copy), its operators and methods (`+`, `@`, `x.T`, `x.sum()`, `x[1:]`,
`x.at[i].set(v)`, ...) are the ones needle.numpy attaches to Tracer, and
`bind` sends every primitive whose operands include an Array (and no
tracer of a real trace) to `EAGER.process`. There, the one primitive
becomes a one-equation graph, goes through the pass pipeline and the CUDA
compile path (`compile_cuda`) and runs on the device; the compiled program
is cached by (primitive, parameters, operand types), like a tiny `jit`, so
a repeated operation costs one launch. Host operands (numpy arrays, scalars)
are copied to the device first; scalar copies are cached.

Under a `jit` trace an Array a function closes over is a constant of the
graph (as a numpy array would be); passed as an argument it makes the
function compile for CUDA (needle/api.py).

Arrays are immutable. A 0-d Array is stored as a 1-element device vector
(as codegen/cuda passes it). The device buffer comes from the pool
(runtime/cuda_memory.py) and goes back when the last Array using it dies.
Nothing here imports numba until a device array is made.
"""
import collections
import sys
import threading

import numpy as np

from ..ir import dtypes
from ..ir.core import ClosedGraph, Eqn, Graph, Lit, ShapedArray, Var, aval_of
from ..tracer.core import Tracer, with_location
from ..tracer.source import user_line


def dev_shape(shape):
    """The device shape of an array: a 0-d array is a 1-element vector."""
    return tuple(shape) or (1,)


class _EagerCudaTrace:
    """The trace every Array belongs to: always active, below every graph
    trace; `process` runs one primitive on the device."""
    level = -1
    name = "cuda (eager)"
    active = True

    def process(self, prim, args, params):
        return eager_apply(prim, args, params)


EAGER = _EagerCudaTrace()


class Array(Tracer):
    """An array on the CUDA device (see the module docstring).

    `.shape`, `.dtype`, `.ndim`, `.size`, `.device` ('cuda'),
    `__cuda_array_interface__` (zero-copy for CuPy, PyTorch, numba),
    `np.asarray(x)` (a host copy), `block_until_ready()`; numpy-style
    operators and methods, each an eager CUDA kernel whose result stays on
    the device."""
    __slots__ = ("_buf", "_block")

    def __init__(self, buf, aval, block=None):
        self._trace, self._var, self.source = EAGER, Var(aval), "a device array"
        self._buf, self._block = buf, block

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
        return (device_put, (np.asarray(self), "cuda"))

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


# --- device_put --------------------------------------------------------------

def to_device(x, dtype=None):
    """A host value (numpy array, numpy or Python scalar) as a new Array; an
    Array of the right dtype is returned as is."""
    if isinstance(x, Array):
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
    return Array(buf, ShapedArray(host.shape, host.dtype), block)


def filled(shape, value):
    """A new Array of `shape` holding numpy scalar `value` everywhere, filled
    by a kernel on the device (a broadcast of the cached 0-d value: no host
    copy of the array)."""
    value = np.asarray(value)
    if not shape or not int(np.prod(shape)):
        return to_device(np.full(shape, value))
    from ..ir.primitives import broadcast_in_dim_p
    return eager_apply(broadcast_in_dim_p, [_scalar(value, ShapedArray((), value.dtype))],
                       dict(shape=tuple(shape), broadcast_dimensions=()))


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
    out = Array(buf, ShapedArray(shape, dt), block)
    return out if dtype is None or dt == dtype else out.astype(dtype)


def device_put(x, device=None):
    """Copy `x` (an array, a scalar, or a pytree of them) to `device`: 'cuda'
    gives needle Arrays on the device, 'cpu' numpy arrays on the host. The
    default is the first accelerator of `needle.devices()`, else 'cpu'."""
    from ..tracer import pytree
    from .devices import default_device, resolve_device
    device = resolve_device(device if device is not None else default_device())

    def put(leaf):
        if device == "cpu":
            return np.asarray(leaf) if isinstance(leaf, Array) else leaf
        return to_device(leaf)
    return pytree.tree_map(put, x) if not isinstance(x, (np.ndarray, Array)) else put(x)


# --- eager operations ----------------------------------------------------------

_programs = {}                  # (prim, params, operand avals) -> CudaProgram
_compile_lock = threading.Lock()
_scalars = collections.OrderedDict()     # (dtype, value bytes) -> Array, oldest first
_scalars_lock = threading.Lock()
MAX_CACHED_SCALARS = 256
eager_stats = {"launches": 0, "compiles": 0}


class _Unhashable(Exception):
    pass


def _freeze(v):
    if isinstance(v, (list, tuple)):
        return (type(v).__name__,) + tuple(_freeze(e) for e in v)
    if isinstance(v, dict):
        return ("dict",) + tuple(sorted((k, _freeze(e)) for k, e in v.items()))
    if isinstance(v, np.ndarray):
        return ("ndarray", v.shape, v.dtype.str, v.tobytes())
    try:
        hash(v)
    except TypeError:
        raise _Unhashable from None
    return (type(v).__name__, v)


def _scalar(val, aval):
    key = (aval.dtype.str, np.asarray(val, aval.dtype).tobytes())
    arr = _scalars.get(key)
    if arr is None:
        arr = to_device(np.asarray(val, aval.dtype))
        with _scalars_lock:
            _scalars[key] = arr
            if len(_scalars) > MAX_CACHED_SCALARS:
                _scalars.popitem(last=False)
    return arr


def _operand(a):
    """(Array on the device, its abstract value in the graph) of an operand."""
    if isinstance(a, Array):
        a._check_alive()
        return a, a.aval
    if isinstance(a, Tracer):       # pragma: no cover (bind gives those to their trace)
        raise AssertionError("a tracer reached the eager CUDA trace")
    val = a.val if isinstance(a, Lit) else a
    aval = a.aval if isinstance(a, Lit) else aval_of(val)
    if aval.shape == ():
        return _scalar(val, aval), aval
    return to_device(np.asarray(val, aval.dtype)), aval


def _program(prim, params, avals):
    """The compiled one-primitive program (cached by signature)."""
    try:
        key = (prim, _freeze(params), tuple(avals))
    except _Unhashable:
        key = None
    prog = _programs.get(key) if key is not None else None
    if prog is not None:
        return prog
    try:                            # a new signature: check it, naming the user's line
        out_avals = prim.abstract_eval(*avals, **params)
    except (ValueError, TypeError) as e:
        raise with_location(e, user_line(3)) from None
    with _compile_lock:
        prog = _programs.get(key) if key is not None else None
        if prog is not None:
            return prog
        from ..passes import run_pipeline
        from .cuda_runtime import compile_cuda
        invars = [Var(a) for a in avals]
        outs = [Var(a) for a in out_avals]
        g = Graph([], invars, [Eqn(prim, invars, dict(params), outs, user_line(3))], outs)
        opt, _ = run_pipeline(ClosedGraph(g, []))
        prog = compile_cuda(opt, name=f"eager {prim.name}")
        eager_stats["compiles"] += 1
        if key is not None:
            _programs[key] = prog
        return prog


def eager_apply(prim, args, params):
    """Run primitive `prim` on operands of which at least one is an Array."""
    ops = [_operand(a) for a in args]
    prog = _program(prim, params, [a for _, a in ops])
    eager_stats["launches"] += 1
    outs = prog.run_arrays([x for x, _ in ops])
    return outs if prim.multiple_results else outs[0]


def clear_eager_cache():
    _programs.clear()
    _scalars.clear()
