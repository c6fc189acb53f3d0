"""The public package: `needle.Tensor`, a state cell holding an array, and
`needle.nn.Parameter`, a trainable one (the course library's Tensor).

Input: an array value (numpy array, Python data, a device `needle.Array`,
or a tracer under a transform). Output: a mutable cell: `.data = v`
replaces its value, and operations on Tensors (`+ - * / ** @`, `.sum`,
`.reshape`, `.broadcast_to`, `.transpose`) return new Tensors computed
eagerly on the values with needle.numpy (under a trace the values are
tracers, so they record equations like any other array code).

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
from .tracer.core import Tracer

__all__ = ["Tensor", "Parameter"]


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


def epoch():
    return _EPOCH[0]


def bump_epoch():
    _EPOCH[0] += 1


# state.py installs the frame-aware read hook (closure cells under jit).
_on_read = [None]


def is_traced(v):
    """A tracer of a graph trace (a device Array is a tracer of the eager
    CUDA trace, which is a concrete value)."""
    return isinstance(v, Tracer) and not isinstance(v, Array)


def _is_float64(dt):
    return np.dtype(dt) == np.float64


def _as_value(x, device=None, dtype=None):
    """The array a new Tensor holds: float64 host data becomes float32 (the
    course's default float) unless dtype says otherwise; a numpy input is
    copied (the cell owns its buffer)."""
    if isinstance(x, Tensor):
        x = x.value
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
    `.dtype`, `.device`, `.grad`, `.detach()`. Operators compute eagerly on
    the values and return Tensors; `ndarray @ Tensor` defers to the Tensor
    (`__array_ufunc__ = None`).
    """
    __slots__ = ("_value", "requires_grad", "grad", "_name", "_origin", "__weakref__")
    __array_ufunc__ = None

    def __init__(self, array, *, device=None, dtype=None, requires_grad=True):
        self._value = _as_value(array, device, dtype)
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._name = None           # "Linear.weight": where a Module holds it (messages)
        self._origin = None         # for a gradient cell: the cell it is the gradient of
        if FRAMES.stack:            # made inside a transform: never an implicit input
            FRAMES.stack[0].created[id(self)] = self

    _register_subclass = None      # state.py: subclasses become pytree nodes

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if Tensor._register_subclass is not None:
            Tensor._register_subclass(cls)

    @classmethod
    def _make(cls, value, requires_grad=False):
        """A Tensor holding `value` as it is (no conversion, no copy)."""
        t = object.__new__(cls)
        t._value, t.requires_grad, t.grad, t._name, t._origin = value, requires_grad, \
            None, None, None
        return t

    # -- the value: every read and write passes here --------------------------------
    @property
    def value(self):
        """The array this cell holds: a numpy array, a device Array, or a
        tracer while a transform traces the function that reads it."""
        v = self._value
        if FRAMES.stack and not is_traced(v):
            return _on_read[0](self, v)
        return v

    def _write(self, v):
        """Replace the value (v an array, tracer or scalar; a Python scalar
        takes the cell's dtype). Inside a transform the open frame records
        the write; outside, a change of kind, shape or dtype bumps the epoch
        (a jitted function taking this cell then looks its signature up
        again)."""
        if isinstance(v, Tensor):
            v = v.value
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

    def _write_back(self, v):
        """A jitted call's write of its result into this cell (no frame is
        open; the result has the traced shape and dtype)."""
        old = self._value
        if type(old) is not type(v) or old.shape != v.shape or old.dtype != v.dtype:
            _EPOCH[0] += 1
        self._value = v

    @property
    def data(self):
        """A detached Tensor sharing this cell's value; assigning replaces
        the value (the cell keeps its identity)."""
        return Tensor._make(self.value)

    @data.setter
    def data(self, v):
        self._write(v)

    def detach(self):
        return Tensor._make(self.value)

    def numpy(self):
        """The value as a numpy array (a host copy of a device value)."""
        v = self.value
        if isinstance(v, Array):
            return np.asarray(v)
        if is_traced(v):
            return np.asarray(v)        # raises: a traced value has no numbers yet
        return v

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    shape = property(lambda self: tuple(self.value.shape))
    dtype = property(lambda self: np.dtype(self.value.dtype))
    ndim = property(lambda self: len(self.value.shape))
    size = property(lambda self: int(np.prod(self.value.shape, dtype=np.int64)))

    @property
    def device(self):
        """'cuda' for a value on the CUDA device, else 'cpu'."""
        return "cuda" if isinstance(self._value, Array) else "cpu"

    def to(self, device):
        """This cell, its value moved to `device` ('cpu' or 'cuda')."""
        self._write(_to_device(self.value, device))
        return self

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d Tensor")
        return self.shape[0]

    def __float__(self):
        return float(self.numpy())

    def __int__(self):
        return int(self.numpy())

    def __repr__(self):
        v = self._value
        if is_traced(v):
            return f"needle.{type(self).__name__}({v!r})"
        return f"needle.{type(self).__name__}({np.asarray(v)!r})"

    def __str__(self):
        v = self._value
        return repr(v) if is_traced(v) else str(np.asarray(v))

    # -- the course's operations, eager on the values -----------------------------
    def _new(self, v, *others):
        rg = self.requires_grad or any(isinstance(o, Tensor) and o.requires_grad
                                       for o in others)
        return Tensor._make(v, rg)

    def __add__(self, o):
        return self._new(nnp.add(self.value, _val(o)), o)

    def __radd__(self, o):
        return self._new(nnp.add(_val(o), self.value), o)

    def __sub__(self, o):
        return self._new(nnp.subtract(self.value, _val(o)), o)

    def __rsub__(self, o):
        return self._new(nnp.subtract(_val(o), self.value), o)

    def __mul__(self, o):
        return self._new(nnp.multiply(self.value, _val(o)), o)

    def __rmul__(self, o):
        return self._new(nnp.multiply(_val(o), self.value), o)

    def __truediv__(self, o):
        return self._new(nnp.true_divide(self.value, _val(o)), o)

    def __rtruediv__(self, o):
        return self._new(nnp.true_divide(_val(o), self.value), o)

    def __pow__(self, o):
        return self._new(nnp.power(self.value, _val(o)), o)

    def __rpow__(self, o):
        return self._new(nnp.power(_val(o), self.value), o)

    def __matmul__(self, o):
        return self._new(nnp.matmul(self.value, _val(o)), o)

    def __rmatmul__(self, o):
        return self._new(nnp.matmul(_val(o), self.value), o)

    def __neg__(self):
        return self._new(nnp.negative(self.value))

    def __getitem__(self, idx):
        return self._new(self.value[idx])

    def sum(self, axes=None):
        """Sum over `axes` (an int, a tuple, or None for all), as the course's
        `summation`."""
        return self._new(nnp.sum(self.value, axis=axes))

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return self._new(nnp.reshape(self.value, tuple(shape)))

    def broadcast_to(self, shape):
        return self._new(nnp.broadcast_to(self.value, tuple(shape)))

    def transpose(self, axes=None):
        """The course's transpose: no argument swaps the last two axes; a
        pair (i, j) swaps axes i and j; a full permutation of more than two
        axes permutes them."""
        v = self.value
        nd = len(v.shape)
        if axes is None:
            if nd < 2:
                return self._new(v)
            return self._new(nnp.swapaxes(v, -1, -2))
        axes = tuple(axes)
        if len(axes) == 2:
            return self._new(nnp.swapaxes(v, axes[0], axes[1]))
        return self._new(nnp.transpose(v, axes))


def _dtype_of(v):
    return np.dtype(v.dtype) if hasattr(v, "dtype") else None


class Parameter(Tensor):
    """A trainable Tensor: `Module.parameters()` lists it, `needle.grad`
    differentiates a Module with respect to it, optimizers update it."""
    __slots__ = ()


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
