"""needle.nn.module: `Module`, the course library's base class, and
`GeneratorCell`, a random stream held in state cells.

Input: Python attributes assigned in `__init__` (Parameters, buffers,
sub-modules, hyperparameters). Output: the course's Module API
(`parameters()`, `train()` / `eval()`, `state_dict()`, ...) on top of
needle.state: a Module is mutable Python, and at every transform boundary a
pytree whose leaves are its cells' values (needle/state.py explains how
writes inside `jit` / `grad` / `vmap` / `scan` come back out).
"""
import numpy as np

from .. import random as _random
from ..array import Array
from ..state import Stateful, cells_of
from ..tensor import Parameter, Tensor, _to_device, is_traced
from ..tensor import in_transform as _in_transform
from ..lazy import call_module as _call_lazily

__all__ = ["Module", "GeneratorCell"]


def _children(v):
    """The Modules directly inside attribute value v (through lists,
    tuples and dicts), with their names relative to it."""
    if isinstance(v, Module):
        yield "", v
    elif type(v) in (list, tuple):
        for i, e in enumerate(v):
            for n, m in _children(e):
                yield f".{i}{n}", m
    elif type(v) is dict:
        for k, e in v.items():
            for n, m in _children(e):
                yield f".{k}{n}", m


def _named_cells(root):
    """[(dotted name, cell)] of every cell reachable from root, each once
    (the first name it is reached by), in attribute order."""
    out, seen = [], set()

    def node(v, name):
        if isinstance(v, Tensor):
            if id(v) not in seen:
                seen.add(id(v))
                out.append((name, v))
        elif isinstance(v, Stateful):
            if id(v) in seen:
                return
            seen.add(id(v))
            for n, e in v.__dict__.items():
                node(e, f"{name}.{n}" if name else n)
        elif type(v) in (list, tuple):
            for i, e in enumerate(v):
                node(e, f"{name}.{i}")
        elif type(v) is dict:
            for k, e in v.items():
                node(e, f"{name}.{k}")
    node(root, "")
    return out


class Module(Stateful):
    """Base of the course's layers. Subclasses assign Parameters, buffers
    (any other Tensor or array attribute) and sub-modules in `__init__` and
    compute in `forward`; `module(x)` calls `forward(x)`.

    Assigning a Tensor or array to an attribute that holds a cell writes the
    cell's value (`self.running_mean = (1 - m) * self.running_mean + m *
    mean` updates the buffer, also inside `jit`); assigning a Parameter or
    a sub-module rebinds the attribute (a structural change: a jitted
    function taking the module traces again). `training` (set by `train()`
    / `eval()`) and the other plain attributes are static: part of the
    structure a compiled call is cached under.
    """

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__["training"] = True      # also when a subclass skips Module.__init__
        return obj

    def __init__(self):
        self.training = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def __call__(self, *args, **kwargs):
        if not _in_transform() and any(isinstance(a, Tensor) for a in args):
            return _call_lazily(self, args, kwargs)     # cells read as lazy leaves (lazy.py)
        return self.forward(*args, **kwargs)

    # -- what it holds ---------------------------------------------------------
    def parameters(self):
        """The trainable cells, each once (tied weights too), in attribute order."""
        return [c for c in cells_of(self) if isinstance(c, Parameter)]

    def named_parameters(self):
        return [(n, c) for n, c in _named_cells(self) if isinstance(c, Parameter)]

    def buffers(self):
        """The non-trainable cells (BatchNorm statistics, random streams), each once."""
        return [c for c in cells_of(self) if not isinstance(c, Parameter)]

    def named_buffers(self):
        return [(n, c) for n, c in _named_cells(self) if not isinstance(c, Parameter)]

    def children(self):
        """The direct sub-modules (also those in list, tuple and dict attributes)."""
        out, seen = [], set()
        for v in self.__dict__.values():
            for _, m in _children(v):
                if id(m) not in seen:
                    seen.add(id(m))
                    out.append(m)
        return out

    def _submodules(self):
        out, seen, todo = [], set(), [self]
        while todo:
            m = todo.pop(0)
            if id(m) in seen:
                continue
            seen.add(id(m))
            out.append(m)
            todo.extend(m.children())
        return out

    # -- mode and placement ------------------------------------------------------
    def train(self, mode=True):
        for m in self._submodules():
            m.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        """Move every parameter and buffer to `device` ('cpu' or 'cuda')."""
        for c in cells_of(self):
            c._write(_to_device(c.value, device))
        return self

    # -- saving and loading ----------------------------------------------------------
    def state_dict(self):
        """{dotted name: numpy array} of every parameter and buffer (each
        cell once, under the first name it is reached by); copies."""
        out = {}
        for n, c in _named_cells(self):
            v = c._value
            if is_traced(v):
                raise TypeError(f"state_dict of {type(self).__name__}: {n} holds a traced "
                                f"value (call it outside jit / grad / vmap)")
            out[n] = np.array(v, copy=True)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Write the arrays of `state_dict` into the cells of the same
        names (each keeps its dtype and device). strict: a missing or
        unexpected name is a KeyError. Returns (missing, unexpected)."""
        named = dict(_named_cells(self))
        missing = [n for n in named if n not in state_dict]
        unexpected = [n for n in state_dict if n not in named]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict of {type(self).__name__}: "
                           + (f"missing {missing}" if missing else "")
                           + ("; " if missing and unexpected else "")
                           + (f"unexpected {unexpected}" if unexpected else ""))
        for n, c in named.items():
            if n not in state_dict:
                continue
            v = np.asarray(state_dict[n])
            if tuple(v.shape) != c.shape:
                raise ValueError(f"load_state_dict of {type(self).__name__}: {n} has shape "
                                 f"{tuple(v.shape)}, the module's has {c.shape}")
            v = np.array(v, dtype=c.dtype, copy=True)
            if isinstance(c._value, Array):
                v = _to_device(v, "cuda")
            c._write(v)
        return missing, unexpected

    def save(self, path):
        """state_dict() into an .npz file."""
        np.savez(path, **self.state_dict())

    def load(self, path, strict=True):
        """Load an .npz file written by `save`."""
        with np.load(path) as f:
            return self.load_state_dict({k: f[k] for k in f.files}, strict=strict)

    # -- printing --------------------------------------------------------------------
    def extra_repr(self):
        """The hyperparameters shown in repr (plain int / float / bool / str
        attributes, `training` aside)."""
        parts = []
        for n, v in self.__dict__.items():
            if n == "training" or n.startswith("_") or n in ("device", "dtype"):
                continue
            if isinstance(v, (bool, int, float, str)) and not isinstance(v, np.generic):
                parts.append(f"{n}={v!r}")
        return ", ".join(parts)

    def __repr__(self):
        return self._repr(top=True)

    def _repr(self, top=False):
        n_params = sum(int(np.prod(p.shape)) for p in self.parameters())
        extra = self.extra_repr()
        subs = []
        holders = [n for n, v in self.__dict__.items() if any(True for _ in _children(v))]
        for name, v in self.__dict__.items():
            for suffix, m in _children(v):
                # Sequential's (0), (1), ...: the one list attribute's name is implied
                label = suffix[1:] if holders == [name] and suffix else f"{name}{suffix}"
                subs.append((label, m))
        count = f"  # {n_params:,} parameters" if n_params and (top or subs) else ""
        if not subs:
            return f"{type(self).__name__}({extra})" + count
        lines = [f"{type(self).__name__}(" + (f"\n  {extra}" if extra else "")]
        for name, m in subs:
            body = m._repr().replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)" + count


class GeneratorCell(Module):
    """A random stream held in two buffers, a key and a uint32 counter (the
    state-cell form of needle.random.Generator): `next_key()` returns
    fold_in(key, counter) and advances the counter by writing its cell, so
    inside `jit` the counter is an input and an output of the program and
    every call draws fresh numbers, generated in the kernels.

    GeneratorCell(seed) or GeneratorCell(needle.random.Generator(...)); with
    no argument it takes a fresh key from the global generator
    (needle.random.seed(n) makes that reproducible)."""

    def __init__(self, seed=None):
        super().__init__()
        if isinstance(seed, _random.Generator):
            key, counter = seed.key, seed.counter
        elif seed is None:
            key, counter = _random.next_key(), 0
        else:
            g = _random.Generator(int(seed))
            key, counter = g.key, g.counter
        self.key = Tensor(np.asarray(key, np.uint32), dtype=np.uint32, requires_grad=False)
        self.counter = Tensor(np.asarray(counter, np.uint32), dtype=np.uint32,
                              requires_grad=False)

    def next_key(self):
        c = self.counter.value
        k = _random.fold_in(self.key.value, c)
        self.counter = c + np.uint32(1)
        return k

    def uniform(self, shape=(), dtype=None, minval=0.0, maxval=1.0):
        return _random.uniform(self.next_key(), shape, dtype, minval, maxval)

    def normal(self, shape=(), dtype=None):
        return _random.normal(self.next_key(), shape, dtype)

    def bernoulli(self, p=np.float32(0.5), shape=None):
        return _random.bernoulli(self.next_key(), p, shape)

    def extra_repr(self):
        return ""
