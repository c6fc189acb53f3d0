"""The public package: `needle.Tensor`, a state cell holding an array, and
`needle.nn.Parameter`, a trainable one (the course library's Tensor).

Input: an array value (numpy array, Python data, a device `needle.Array`,
or a tracer under a transform). Output: a mutable cell: `.data = v`
replaces its value, and operations on Tensors (`+ - * / ** @`, `.sum`,
`.reshape`, `.broadcast_to`, `.transpose`, needle.ops) return new Tensors.

Outside any transform the operations are lazy (issue 16, needle/lazy.py):
they record equations on lazy tracers, and a value is compiled and
computed when read (`.numpy()`, `float(t)`, printing, `bool`), or by
`backward()`, which also fills `.grad` of the Tensors the graph read that
require grad (overwritten per call, as the course: see `backward`).
Writing a cell (`p.data = ...`, `Tensor(...)` of a lazy Tensor) realizes
the value written, so cells hold concrete arrays between steps. Inside
`jit`, `grad`, `vmap` the values are the transform's tracers and the
operations record into its trace, as any array code.

A cell keeps its identity when its value changes; that is what lets a
transform (jit, grad, vmap, scan) see a Module as a pytree of cell values
and write back what the function wrote (needle/state.py). Every read and
write of a cell's value goes through `value` and `_write`, which tell the
innermost open transform frame (state.py) about it while one is open; with
none open they cost one thread-local lookup.

Also here: `accept_tensors(module)`, which lets every function of a
namespace (needle.numpy, needle.nn) take Tensors where it takes arrays.
"""
import functools
import threading
import types

import numpy as np

from . import numpy as nnp
from .array import Array
from .lazy import STATE as _LAZY, LazyTracer, backward as _lazy_backward, concrete, \
    detach as _lazy_detach, leaf as _lazy_leaf, note_live as _note_live
from .tracer.core import _STACK, Tracer

__all__ = ["Tensor", "Parameter", "TensorTuple", "TENSOR_COUNT"]


class _Frames(threading.local):
    """The open transform frames of this thread (state.Frame), innermost
    last; per thread, as the tracer's trace stack."""
    def __init__(self):
        self.stack = []


FRAMES = _Frames()

# Bumped when a cell's value changes kind, shape or dtype outside a trace,
# and (state.py) on every structural change of a Module or optimizer: a
# cached gather of cells is valid while the epoch is unchanged.
_EPOCH = [0]

# Live Tensors (needle.autograd.TENSOR_COUNTER reads it).
TENSOR_COUNT = [0]


# Bumped on every assignment of a cell's value (whatever the cell; a cached
# jitted call's own write-back bumps it once and records the count,
# api._StateFast): while the count is the one it recorded, the cells still
# hold the values it left there, so its next call passes them without
# reading each cell. Code that assigns `_value` of an existing Tensor
# outside `_write`, `_write_back`, `_settle` and the frames of state.py must
# bump it too.
_WRITES = [0]


def epoch():
    return _EPOCH[0]


def bump_epoch():
    _EPOCH[0] += 1


# state.py installs the frame-aware read hook (closure cells under jit).
_on_read = [None]


def is_traced(v):
    """A tracer of a graph trace (a device Array is a tracer of the eager
    CUDA trace, a LazyTracer one of the lazy trace: both stand for values)."""
    return isinstance(v, Tracer) and not isinstance(v, (Array, LazyTracer))


def in_transform():
    """Whether a transform (jit, grad, vmap, a loop body) is tracing."""
    return bool(FRAMES.stack or _STACK.traces)


def _is_float64(dt):
    return np.dtype(dt) == np.float64


def _as_value(x, device=None, dtype=None):
    """The array a new Tensor holds: float64 host data becomes float32 (the
    course's default float) unless dtype says otherwise; a numpy input is
    copied (the cell owns its buffer); a lazy value is realized."""
    if isinstance(x, Tensor):
        x = x._value if not FRAMES.stack else x.value
        if dtype is None and isinstance(x, np.ndarray):
            dtype = x.dtype        # keeps its dtype: Parameter(init.rand(dtype="float64"))
    if type(x) is LazyTracer:
        x = concrete(x)
        if isinstance(x, np.ndarray) and dtype is None and device is None:
            return x                  # a realized result: nobody else writes it
    if isinstance(x, Tracer):                          # traced, or a device Array
        v = x if dtype is None else nnp.astype(x, dtype)
    else:
        arr = np.asarray(x)
        if dtype is not None:
            want = np.dtype(dtype)
        elif arr.dtype.kind == "f" and arr.dtype != np.float32:
            want = np.dtype(np.float32)
        elif arr.dtype.kind in "USOc":
            raise TypeError(f"needle.Tensor: cannot hold {arr.dtype} data")
        else:
            want = arr.dtype
        v = np.array(arr, dtype=want, copy=True)
    if device is not None:
        v = _to_device(v, device)
    return v


def _to_device(v, device):
    enabled = getattr(device, "enabled", None)
    if enabled is not None and not enabled():
        raise RuntimeError(f"needle.Tensor: the device {device} is not enabled on this "
                           f"machine (no CUDA GPU, and the simulator is off: "
                           f"NUMBA_ENABLE_CUDASIM=1); allocate on needle.cpu()")
    dev = str(getattr(device, "name", device)).lower()
    if dev == "cpu":
        return np.asarray(v) if isinstance(v, Array) else v
    if dev == "cuda":
        if isinstance(v, Array) or is_traced(v):
            return v
        from .array import device_put
        return device_put(v, "cuda")
    raise ValueError(f"needle.Tensor: unknown device {device!r} (use 'cpu' or 'cuda')")


def _val(x):
    return x.value if isinstance(x, Tensor) else x


class Tensor:
    """A state cell holding an array (see the module docstring).

    `Tensor(array, *, device=None, dtype=None, requires_grad=True)`: float
    data defaults to float32, as the course's Tensor. `.data` is a detached
    Tensor sharing the value, and assigning it (`p.data = p.data - lr * g`)
    replaces the value in place of the cell; `.numpy()`, `.shape`,
    `.dtype`, `.device`, `.grad`, `.detach()`, `.backward()`. Operators are
    the course's ops (needle.ops), lazy outside transforms; `ndarray @
    Tensor` defers to the Tensor (`__array_ufunc__ = None`). `op` and
    `inputs`: the needle.ops operation that made it and its input Tensors
    (None and [] for a leaf, or a layer's result).
    """
    __slots__ = ("_value", "_requires_grad", "grad", "_name", "_origin", "_leaf", "op",
                 "inputs", "__weakref__")
    __array_ufunc__ = None

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        """Changing it on an existing Tensor (freezing a layer) is a
        structural change: it bumps the epoch, so a cached jitted step
        retraces instead of differentiating the frozen cell."""
        flag = bool(flag)
        try:
            old = self._requires_grad
        except AttributeError:          # being made: no program has seen it
            self._requires_grad = flag
            return
        if old != flag:
            self._requires_grad = flag
            bump_epoch()

    def __init__(self, array, *, device=None, dtype=None, requires_grad=True, **kwargs):
        self._value = _as_value(array, device, dtype)
        self._requires_grad = bool(requires_grad)      # (made: no epoch bump)
        self.grad = None
        self._name = None           # "Linear.weight": where a Module holds it (messages)
        self._origin = None         # for a gradient cell: the cell it is the gradient of
        self._leaf, self.op, self.inputs = None, None, []
        TENSOR_COUNT[0] += 1
        if FRAMES.stack:            # made inside a transform: never an implicit input
            FRAMES.stack[0].created[id(self)] = self

    def __del__(self, _count=TENSOR_COUNT):
        # the list is bound here: at interpreter exit the module's globals
        # may already be None when the last Tensors are collected
        _count[0] -= 1

    _register_subclass = None      # state.py: subclasses become pytree nodes

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if Tensor._register_subclass is not None:
            Tensor._register_subclass(cls)

    @classmethod
    def _make(cls, value, requires_grad=False):
        """A Tensor holding `value` as it is (no conversion, no copy)."""
        t = object.__new__(cls)
        t._value, t._requires_grad, t.grad, t._name, t._origin = value, bool(requires_grad), \
            None, None, None
        t._leaf, t.op, t.inputs = None, None, []
        TENSOR_COUNT[0] += 1
        if type(value) is LazyTracer:
            _note_live(t)
        return t

    @staticmethod
    def make_from_op(op, inputs):
        """The course's constructor of an operation's result: `op.compute`
        on the inputs' values (lazy tracers outside transforms)."""
        inputs = list(inputs)
        if in_transform():
            vals = [x.value for x in inputs]
        else:
            vals = [x._lazy() for x in inputs]
        rg = _LAZY.no_grad == 0 and any(x.requires_grad for x in inputs)
        t = Tensor._make(op.compute(*vals), rg)
        if rg:
            t.op, t.inputs = op, inputs
        return t

    @staticmethod
    def make_const(data, requires_grad=False):
        """A leaf Tensor holding `data` (an array, or a Tensor's value, detached)."""
        if isinstance(data, Tensor):
            data = data.detach()._value
        return Tensor._make(data, requires_grad)

    # -- the value: every read and write passes here --------------------------------
    @property
    def value(self):
        """The array this cell holds: a numpy array, a device Array, a lazy
        tracer (a lazy result, or inside a Module called on Tensors), or a
        tracer while a transform traces the function that reads it."""
        v = self._value
        if FRAMES.stack:
            if type(v) is LazyTracer:
                v = self._settle()
            if not is_traced(v):
                return _on_read[0](self, v)
            return v
        if type(v) is LazyTracer:
            return self._settle() if _STACK.traces else v
        if _LAZY.recording and not _STACK.traces:
            return self._lazy()
        return v

    def _lazy(self):
        """The value as a lazy tracer (outside transforms): a lazy result as
        it is, a concrete value as this Tensor's leaf (one per value)."""
        v = self._value
        if type(v) is LazyTracer:
            return v
        lf = self._leaf
        aval = None
        if lf is not None:
            if lf._val is v and lf._rg == self.requires_grad:
                return lf
            old = lf._val
            if type(v) is np.ndarray and type(old) is np.ndarray and v.shape == old.shape \
                    and v.dtype == old.dtype:
                aval = lf._var.aval     # a new value of the same kind (an updated parameter)
        lf = self._leaf = _lazy_leaf(v, self, self.requires_grad, aval)
        return lf

    def _settle(self):
        """Realize a lazy value and hold the array."""
        v = self._value = concrete(self._value)
        _WRITES[0] += 1
        return v

    def realize_cached_data(self):
        """The course's name: the concrete array (computed if lazy)."""
        v = self._value
        return concrete(v) if type(v) is LazyTracer else v

    cached_data = property(realize_cached_data)

    def _write(self, v):
        """Replace the value (v an array, tracer or scalar; a Python scalar
        takes the cell's dtype; a lazy value is realized). Inside a
        transform the open frame records the write; outside, a change of
        kind, shape or dtype bumps the epoch (a jitted function taking this
        cell then looks its signature up again)."""
        if isinstance(v, Tensor):
            v = v._value if not FRAMES.stack else v.value
        if type(v) is LazyTracer:
            v = concrete(v)
        if isinstance(v, (bool, int, float, np.generic)):
            v = np.asarray(v, dtype=_dtype_of(self._value))
        elif isinstance(v, (list, tuple)):
            v = np.asarray(v, dtype=_dtype_of(self._value))
        stack = FRAMES.stack
        if stack:
            stack[-1].note_write(self)
        else:
            old = self._value
            if type(old) is not type(v) or old.shape != v.shape or old.dtype != v.dtype:
                _EPOCH[0] += 1
        self._value = v
        _WRITES[0] += 1

    def _write_back(self, v):
        """A jitted call's write of its result into this cell (no frame is
        open; the result has the traced shape and dtype)."""
        old = self._value
        if type(old) is not type(v) or old.shape != v.shape or old.dtype != v.dtype:
            _EPOCH[0] += 1
        self._value = v
        _WRITES[0] += 1

    @property
    def data(self):
        """A detached Tensor sharing this cell's value; assigning replaces
        the value (the cell keeps its identity; the write never enters a
        graph)."""
        return self.detach()

    @data.setter
    def data(self, v):
        self._write(v)

    def detach(self):
        """A Tensor with this value that no gradient flows through."""
        v = self._value
        if type(v) is LazyTracer and not FRAMES.stack:
            return Tensor._make(_lazy_detach(v))
        return Tensor._make(self.value)

    def backward(self, out_grad=None):
        """Fill `.grad` of every Tensor that requires grad and that this
        Tensor's graph reads as an input (parameters, and leaf Tensors made
        with requires_grad=True): the gradient of this Tensor (seeded with
        `out_grad`, ones by default) with respect to it. As the course,
        `.grad` is overwritten by each call, not accumulated (PyTorch adds
        into it); Tensors computed by operations (not leaves) get no
        `.grad`. Forward and backward run as one compiled program, cached
        by the graph's structure. Outside transforms only, and under `jit`
        (see needle/lazy_jit.py)."""
        if isinstance(out_grad, Tensor):
            out_grad = out_grad.numpy()
        if in_transform():
            from .lazy_jit import traced_backward
            return traced_backward(self, out_grad)
        _lazy_backward(self._lazy(), out_grad, _assign_grad)

    def numpy(self):
        """The value as a numpy array (a host copy of a device value)."""
        v = self._value if not FRAMES.stack else self.value
        if type(v) is LazyTracer:
            v = concrete(v)
        if isinstance(v, Array):
            return np.asarray(v)
        if is_traced(v):
            return np.asarray(v)        # raises: a traced value has no numbers yet
        return v

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    shape = property(lambda self: tuple(self._value.shape))
    dtype = property(lambda self: np.dtype(self._value.dtype))
    ndim = property(lambda self: len(self._value.shape))
    size = property(lambda self: int(np.prod(self._value.shape, dtype=np.int64)))

    @property
    def device(self):
        """The course's device object: cuda() for a value on the CUDA device,
        else cpu() (each compares equal to its name)."""
        from .backend_ndarray import cpu, cuda
        v = self._value
        if type(v) is LazyTracer:
            v = v._val
        return cuda() if isinstance(v, Array) else cpu()

    def to(self, device):
        """This cell, its value moved to `device` (cpu() / cuda() or a name)."""
        self._write(_to_device(self.value if in_transform() else self.realize_cached_data(),
                               device))
        return self

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d Tensor")
        return self.shape[0]

    def __float__(self):
        return float(self.numpy())

    def __int__(self):
        return int(self.numpy())

    def __bool__(self):
        return bool(self.numpy())

    def __repr__(self):
        v = self._value
        if is_traced(v):
            return f"needle.{type(self).__name__}({v!r})"
        return f"needle.{type(self).__name__}({np.asarray(self.numpy())!r})"

    def __str__(self):
        v = self._value
        return repr(v) if is_traced(v) else str(np.asarray(self.numpy()))

    # -- the course's operations (needle.ops) ---------------------------------------
    def __add__(self, o):
        return _ops.add(self, o) if isinstance(o, Tensor) else _ops.add_scalar(self, o)

    def __radd__(self, o):
        return _ops.add_scalar(self, o)

    def __sub__(self, o):
        return _ops.add(self, _ops.negate(o)) if isinstance(o, Tensor) else \
            _ops.add_scalar(self, _neg_scalar(o))

    def __rsub__(self, o):
        return _ops.add_scalar(_ops.negate(self), o)

    def __mul__(self, o):
        return _ops.multiply(self, o) if isinstance(o, Tensor) else _ops.mul_scalar(self, o)

    def __rmul__(self, o):
        return _ops.mul_scalar(self, o)

    def __truediv__(self, o):
        return _ops.divide(self, o) if isinstance(o, Tensor) else _ops.divide_scalar(self, o)

    def __rtruediv__(self, o):
        return _ops.ElementWise(lambda a: nnp.true_divide(o, a), "rdivide")(self)

    def __pow__(self, o):
        return _ops.power(self, o) if isinstance(o, Tensor) else _ops.power_scalar(self, o)

    def __rpow__(self, o):
        return _ops.ElementWise(lambda a: nnp.power(o, a), "rpower")(self)

    def __matmul__(self, o):
        if not isinstance(o, Tensor):
            return _ops.ElementWise(lambda a: nnp.matmul(a, o), "matmul")(self)
        return _ops.matmul(self, o)

    def __rmatmul__(self, o):
        return _ops.ElementWise(lambda a: nnp.matmul(o, a), "matmul")(self)

    def __neg__(self):
        return _ops.negate(self)

    def __getitem__(self, idx):
        return _ops.GetItem(idx)(self)

    def __lt__(self, o):
        return _ops.compare(self, o, nnp.less)

    def __le__(self, o):
        return _ops.compare(self, o, nnp.less_equal)

    def __gt__(self, o):
        return _ops.compare(self, o, nnp.greater)

    def __ge__(self, o):
        return _ops.compare(self, o, nnp.greater_equal)

    def sum(self, axes=None):
        """Sum over `axes` (an int, a tuple, or None for all), as the course's
        `summation`."""
        return _ops.summation(self, axes)

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return _ops.reshape(self, tuple(shape))

    def broadcast_to(self, shape):
        return _ops.broadcast_to(self, tuple(shape))

    def transpose(self, axes=None):
        """The course's transpose: no argument swaps the last two axes; a
        pair (i, j) swaps axes i and j; a full permutation of more than two
        axes permutes them."""
        return _ops.transpose(self, axes)


def _neg_scalar(o):
    return -o if isinstance(o, (bool, int, float, np.generic, np.ndarray)) else nnp.negative(o)


def _assign_grad(owner, g):
    t = Tensor._make(g, False)
    t._origin = owner             # the cell it is the gradient of (lazy_jit.compiled_step)
    owner.grad = t


def _dtype_of(v):
    return np.dtype(v.dtype) if hasattr(v, "dtype") else None


class Parameter(Tensor):
    """A trainable Tensor: `Module.parameters()` lists it, `needle.grad`
    differentiates a Module with respect to it, optimizers update it."""
    __slots__ = ()


class TensorTuple:
    """The course's tuple of Tensors (the result of `needle.ops.split`):
    `len`, indexing, iteration, `tuple()`, `detach()`, `+` (concatenation)."""
    __slots__ = ("_items",)

    def __init__(self, items):
        self._items = tuple(items)

    def __len__(self):
        return len(self._items)

    def __getitem__(self, i):
        return self._items[i]

    def __iter__(self):
        return iter(self._items)

    def tuple(self):
        return self._items

    def detach(self):
        return TensorTuple(t.detach() for t in self._items)

    def __add__(self, other):
        return TensorTuple(self._items + tuple(other))

    def __repr__(self):
        return f"needle.TensorTuple({list(self._items)!r})"



# --- needle.numpy / needle.nn functions accept Tensors -------------------------

def _has_tensor(xs):
    for a in xs:
        if isinstance(a, Tensor):
            return True
        if type(a) in (list, tuple):
            for e in a:
                if isinstance(e, Tensor):
                    return True
    return False


def _unwrap(a):
    if isinstance(a, Tensor):
        return a.value
    if type(a) in (list, tuple) and any(isinstance(e, Tensor) for e in a):
        return type(a)(_unwrap(e) for e in a)
    return a


def _accepting(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        if _has_tensor(args) or (kwargs and _has_tensor(kwargs.values())):
            args = tuple(_unwrap(a) for a in args)
            kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        return fn(*args, **kwargs)
    call.__wrapped_accepts_tensors__ = fn
    return call


def accept_tensors(module, names=None):
    """Make every public function of `module` (a namespace such as
    needle.numpy) accept Tensors wherever it accepts arrays, using their
    values (a Tensor in a list or tuple argument too). Calls without a
    Tensor pay one scan of their arguments. The functions' own modules are
    untouched: needle's internal calls go to the originals."""
    for name in names or [n for n in dir(module) if not n.startswith("_")]:
        fn = getattr(module, name, None)
        if isinstance(fn, types.FunctionType) and \
                (fn.__module__ or "").startswith("needle") and \
                not hasattr(fn, "__wrapped_accepts_tensors__"):
            setattr(module, name, _accepting(fn))


from . import ops as _ops  # noqa: E402  (ops builds on Tensor)
