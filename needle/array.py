"""The public package: `needle.Array`, an array resident on the CUDA device,
and the eager execution of operations on it.

Input: host data (`device_put`), or device buffers made by the CUDA runtime
(runtime/cuda_array.py: this class is registered there as the one it makes).
Output: Arrays. `np.asarray(x)` copies one back to the host.

An Array is a `Tracer` of a special, always-active trace (`EAGER`, level
-1, below every graph trace). That one fact gives it everything a traced
value has: needle.numpy accepts it where it accepts a tracer (no host
copy), its operators and methods (`+`, `@`, `x.T`, `x.sum()`, `x[1:]`,
`x.at[i].set(v)`, ...) are the ones needle.numpy attaches to Tracer, and
`bind` sends every primitive whose operands include an Array (and no
tracer of a real trace) to `EAGER.process`. There, the one primitive
becomes a one-equation graph and goes through the same lowering as `jit`
(needle/lowering.py: passes, fusion for CUDA, the runtime's compile loop)
and runs on the device; the compiled program is cached by (primitive,
parameters, operand types), like a tiny `jit`, so a repeated operation
costs one launch. Host operands (numpy arrays, scalars) are copied to the
device first; scalar copies are cached. A control primitive (needle.lax.scan,
while_loop, cond on Arrays) lowers the same way, its bodies compiled for
CUDA and run by the runtime's loop steps on the device.

Under a `jit` trace an Array a function closes over is a constant of the
graph (as a numpy array would be); passed as an argument it makes the
function compile for CUDA (needle/api.py).
"""
import collections
import threading

import numpy as np

from .ir.core import ClosedGraph, Eqn, Graph, Lit, ShapedArray, Var, aval_of
from .runtime.cuda_array import DeviceArray, dev_shape, set_array_class, to_device  # noqa: F401
from .tracer.core import Tracer, with_location
from .tracer.source import user_line


class _EagerCudaTrace:
    """The trace every Array belongs to: always active, below every graph
    trace; `process` runs one primitive on the device."""
    level = -1
    name = "cuda (eager)"
    active = True

    def process(self, prim, args, params):
        return eager_apply(prim, args, params)


EAGER = _EagerCudaTrace()


class Array(DeviceArray, Tracer):
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

    @classmethod
    def from_host(cls, x):
        return to_device(x)


set_array_class(Array)


def filled(shape, value):
    """A new Array of `shape` holding numpy scalar `value` everywhere, filled
    by a kernel on the device (a broadcast of the cached 0-d value: no host
    copy of the array)."""
    value = np.asarray(value)
    if not shape or not int(np.prod(shape)):
        return to_device(np.full(shape, value))
    from .ir.primitives import broadcast_in_dim_p
    return eager_apply(broadcast_in_dim_p, [_scalar(value, ShapedArray((), value.dtype))],
                       dict(shape=tuple(shape), broadcast_dimensions=()))


def device_put(x, device=None):
    """Copy `x` (an array, a scalar, or a pytree of them) to `device`: 'cuda'
    gives needle Arrays on the device, 'cpu' numpy arrays on the host. The
    default is the first accelerator of `needle.devices()`, else 'cpu'."""
    from .runtime.devices import default_device, resolve_device
    from .tracer import pytree
    device = resolve_device(device if device is not None else default_device())

    def put(leaf):
        if device == "cpu":
            return np.asarray(leaf) if isinstance(leaf, Array) else leaf
        return to_device(leaf)
    return pytree.tree_map(put, x) if not isinstance(x, (np.ndarray, Array)) else put(x)


# --- eager operations ----------------------------------------------------------

_programs = {}                  # (prim, params, operand avals) -> Executable
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
        # A loop or branch (needle.lax on Arrays) holds bodies traced anew at
        # each call: keyed by their identity it would never hit again, and
        # the cache would keep every one; it compiles each time (its kernels
        # come from the kernel cache).
        key = None if prim.kind == "control" else (prim, _freeze(params), tuple(avals))
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
        invars = [Var(a) for a in avals]
        outs = [Var(a) for a in out_avals]
        g = Graph([], invars, [Eqn(prim, invars, dict(params), outs, user_line(3))], outs)
        from .lowering import eager_cuda_program
        prog = eager_cuda_program(ClosedGraph(g, []), f"eager {prim.name}")
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
