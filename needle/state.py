"""The public package: state at transform boundaries (DESIGN "State").

Input: the arguments of a transformed function, some of them stateful
objects (Modules, optimizers: `Stateful` objects) or bare Tensors, and
the cells (needle.Tensor) those reach. Output: the flat cell list and a
hashable structure key (`gather`), the frames that lift cells into a trace
and record what the function writes (`Frame`), and the rebuilt objects a
transform returns (`rebuild`: a gradient Module of the model's type).

How a transform treats state (jit, grad, vmap, scan all do the same):
1. gather: walk the stateful arguments in attribute order; each cell
   reachable from them is one flat input however often it is reached (an
   optimizer holding the model's parameters, tied weights); the key is the
   classes, the static attributes (`training`, hyperparameters), which
   cell sits where, and each cell's (kind, shape, dtype).
2. trace inside a Frame: the frame puts the trace's input tracers into the
   cells (the same Python objects the function reaches, by argument or by
   closure), records every cell the function writes, and on exit puts the
   original values back, so the cells never keep a tracer.
3. the written cells' final values are extra outputs; after the call they
   are written into the cells.

Structure versions: a cached gather is valid while `tensor.epoch()` is
unchanged; the epoch moves on every structural change of a `Stateful`
object (an attribute rebound: `model.eval()`, a new sub-module) and when a
cell's value changes kind, shape or dtype. A jitted call on unchanged
state therefore compares one integer and the argument objects' identities,
then reads the cells' values: O(cells), no walk of the object graph.
(api._StateFast goes further: while `tensor._WRITES`, the count of cell
value assignments, is the one its own write-back left, it passes the
values it wrote without reading the cells.)

Frames of cond / switch / while_loop / checkpoint bodies (control_flow.py)
carry the cells their body writes as scan's do; `path_of` names a cell by
the attribute path the enclosing jit gathered it under, for messages.

Known limits: a list or dict attribute mutated in place (`seq.layers.append
(m)`) is not seen as a structural change (assign the attribute again).
"""
import numpy as np

from .array import Array
from .ir.core import ShapedArray, Var
from .tensor import FRAMES, Parameter, Tensor, _EPOCH, _WRITES, _on_read, bump_epoch, is_traced
from .tracer import pytree
from .tracer.core import Tracer

__all__ = ["Stateful", "Frame", "gather", "rebuild", "is_state", "StateWriteError"]


class StateWriteError(TypeError):
    """A transform cannot keep a write to a state cell (a batched write into
    an unbatched cell under vmap, a write inside a loop body it cannot carry)."""


# --- stateful objects ------------------------------------------------------------

_MISSING = object()


def _arrayish(v):
    return isinstance(v, (np.ndarray, Tracer))


class Stateful:
    """Base of objects whose array attributes are state cells (nn.Module,
    optim.Optimizer).

    Assigning an attribute that holds a cell writes the cell's value (the
    cell keeps its identity: `self.running_mean = (1 - m) * self.running_mean
    + m * mean` updates the buffer in place); assigning a Parameter, or any
    attribute without a cell, rebinds it, a structural change. A numpy or
    device array assigned to a new attribute becomes a buffer Tensor.
    """

    def __setattr__(self, name, value):
        d = self.__dict__
        cur = d.get(name, _MISSING)
        if isinstance(cur, Tensor) and not isinstance(value, Parameter) and (
                isinstance(value, (Tensor, np.ndarray, np.generic, Tracer, bool, int, float))):
            cur._write(value)
            return
        desc = getattr(type(self), name, None)
        if desc is not None and hasattr(desc, "__set__"):
            object.__setattr__(self, name, value)      # a property (optimizer lr)
            return
        if _arrayish(value):
            if is_traced(value):
                raise StateWriteError(
                    f"{type(self).__name__}.{name}: a traced array assigned to an attribute "
                    f"that holds no state cell, inside a transform; create the cell "
                    f"(a Tensor, or an array attribute) in __init__, then assign to it")
            value = Tensor(value, dtype=value.dtype, requires_grad=False)
        if isinstance(value, Tensor) and value._name is None:
            value._name = f"{type(self).__name__}.{name}"
        d[name] = value
        _EPOCH[0] += 1

    def __delattr__(self, name):
        object.__delattr__(self, name)
        bump_epoch()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        register_stateful_pytree(cls)     # pytree looks rules up by exact type


def is_state(x):
    return isinstance(x, (Tensor, Stateful))


# --- frames: one per transform boundary being traced ------------------------------

class Frame:
    """Lifts cells into a trace and records the writes (module docstring).

    kind: "jit" (a closure cell read while its value is concrete is lifted
    into the jit trace as an implicit input, `implicit`), "grad", "vmap",
    "scan", ... `writes` (after exit): [(cell, final value)] in first-write
    order."""

    def __init__(self, kind, name="", trace=None):
        self.kind, self.name, self.trace = kind, name, trace
        self.saved = {}          # id(cell) -> (cell, value before the frame)
        self.written = {}        # id(cell) -> cell
        self.created = {}        # id(cell) -> cell made while the frame is open
        self.implicit = []       # [(cell, Var)]: closure cells lifted (jit)
        self.writes = None
        self.paths = None        # id(cell) -> "model.layers[1].running_mean" (messages)

    def __enter__(self):
        FRAMES.stack.append(self)
        return self

    def swap_in(self, cells, values):
        saved = self.saved
        for c, v in zip(cells, values):
            if id(c) not in saved:
                saved[id(c)] = (c, c._value)
            c._value = v
        _WRITES[0] += 1

    def note_write(self, cell):
        if id(cell) not in self.saved:
            self.saved[id(cell)] = (cell, cell._value)
        self.written[id(cell)] = cell

    def __exit__(self, *exc):
        stack = FRAMES.stack
        assert stack and stack[-1] is self, "state frames closed out of order"
        stack.pop()
        # a cell made inside the trace (a temporary) is not state of the caller
        made = stack[0].created if stack else self.created
        self.writes = [(c, c._value) for c in self.written.values() if id(c) not in made]
        for c, v in self.saved.values():
            c._value = v
        _WRITES[0] += 1
        return False


def path_of(cell):
    """The attribute path of `cell` for messages: where an open frame's
    transform reached it ("model.layers[1].running_mean"), else its holder's
    class and attribute ("BatchNorm1d.running_mean")."""
    for f in reversed(FRAMES.stack):
        if f.paths is not None and id(cell) in f.paths:
            return f.paths[id(cell)]
    return cell._name or "a Tensor"


def _read_hook(cell, v):
    """A cell read while a frame is open and its value is concrete: under
    jit, a cell reached by closure becomes an input of the program (so a
    cached call reads its current value); elsewhere the value is a constant."""
    stack = FRAMES.stack
    bottom = stack[0]
    if bottom.kind != "jit" or bottom.trace is None or not bottom.trace.active:
        return v
    cid = id(cell)
    for f in stack:
        if cid in f.written or cid in f.created:
            return v            # written or made during this trace: its value is the program's
    tr = bottom.trace
    aval = ShapedArray(tuple(v.shape), np.dtype(v.dtype))
    var = Var(aval)
    tr.constvars.append(var)
    tr.const_vals.append(v)
    tr._keep.append(v)
    t = Tracer(tr, var, f"the state cell {cell._name or 'Tensor'}")
    bottom.saved.setdefault(cid, (cell, v))
    cell._value = t
    _WRITES[0] += 1
    bottom.implicit.append((cell, var))
    return t


_on_read[0] = _read_hook


# --- gathering the cells of stateful arguments ---------------------------------------

def _static(v):
    try:
        hash(v)
        return v
    except TypeError:
        return ("unhashable", type(v).__name__, id(v))


def _sig(v):
    return (isinstance(v, Array), tuple(v.shape), np.dtype(v.dtype))


class Key:
    """A structure key with its hash computed once (dict lookups of the
    same Key object compare by identity first)."""
    __slots__ = ("t", "h")

    def __init__(self, t):
        self.t, self.h = t, hash(t)

    def __hash__(self):
        return self.h

    def __eq__(self, other):
        return isinstance(other, Key) and self.h == other.h and self.t == other.t


_KEYS = {}


def _intern(k):
    """The one Key object of its value: a cache lookup after a new gather
    of an unchanged structure compares by identity, not by walking the key."""
    if len(_KEYS) > 4096:
        _KEYS.clear()
    return _KEYS.setdefault(k, k)


class Gathered:
    """The cells reached from a call's stateful arguments.

    objs: the stateful leaves, in order; cells: unique cells in first-reach
    order; index: id(cell) -> position; paths: the first path of each cell
    ("model.layers[0].weight"); bare: positions of cells passed as bare
    Tensors (not inside a Module); refs: how many times each cell was
    reached; key: the structure Key; epoch: when gathered."""
    __slots__ = ("objs", "cells", "index", "paths", "bare", "refs", "key", "epoch", "pos",
                 "posset")

    def values(self):
        return [c._value for c in self.cells]

    def trainable(self):
        """Positions of the cells grad differentiates: requires_grad
        Parameters, and requires_grad bare Tensors, of float dtype."""
        out = []
        for i, c in enumerate(self.cells):
            if c.requires_grad and (isinstance(c, Parameter) or i in self.bare) and \
                    np.dtype(c._value.dtype).kind == "f":
                out.append(i)
        return out


def gather(objs, names):
    """Gathered for the stateful objects `objs` (named `names` in messages)."""
    cells, index, paths, bare, refs = [], {}, [], set(), []
    seen = {}

    def cell(c, path):
        i = index.get(id(c))
        if i is None:
            i = index[id(c)] = len(cells)
            cells.append(c)
            paths.append(path)
            refs.append(0)
        refs[i] += 1
        return ("c", i)

    def walk(obj, path):
        if isinstance(obj, Tensor):
            return cell(obj, path)
        k = seen.get(id(obj))
        if k is not None:
            return ("r", k)
        seen[id(obj)] = len(seen)
        return (type(obj), tuple((n, node(v, f"{path}.{n}")) for n, v in obj.__dict__.items()))

    def node(v, path):
        if isinstance(v, (Tensor, Stateful)):
            return walk(v, path)
        t = type(v)
        if t is list or t is tuple:
            return (t, tuple(node(e, f"{path}[{i}]") for i, e in enumerate(v)))
        if t is dict:
            return (t, tuple((k, node(e, f"{path}[{k!r}]")) for k, e in v.items()))
        return ("s", _static(v))

    top = []
    try:
        for o, n in zip(objs, names):
            if isinstance(o, Tensor):
                k = cell(o, n)
                bare.add(k[1])
                top.append(k)
            else:
                top.append(walk(o, n))
    finally:
        # the nested functions refer to each other (a reference cycle that
        # would keep `cells`, so the models' arrays, alive until a garbage
        # collection): emptying their closure cells frees them at once
        del cell, walk, node
    g = Gathered()
    g.objs, g.cells, g.index, g.paths, g.bare, g.refs = list(objs), cells, index, paths, bare, refs
    # each cell: (is a device Array, shape, dtype, requires_grad)
    g.key = _intern(Key((tuple(top), tuple(_sig(c._value) + (c.requires_grad,)
                                           for c in cells))))
    g.epoch = _EPOCH[0]
    return g


def _code_names(code, out):
    out.update(code.co_names)
    for c in code.co_consts:
        if hasattr(c, "co_names"):
            _code_names(c, out)


def closure_objects(fun):
    """[(name, object)]: the Modules, optimizers and Tensors a function
    reaches without arguments: itself (a Module), the object of a bound
    method, its closure variables, and the globals its code (and the code
    of functions defined in it) names, also inside lists, tuples and dicts
    held there. A jitted function's closure cells are guarded by these."""
    out, seen = [], set()

    def add(name, v):
        for leaf, p in zip(*_leaves_with_paths(v)):
            if is_state(leaf) and id(leaf) not in seen:
                seen.add(id(leaf))
                out.append((name + p, leaf))
    add(getattr(fun, "__name__", "self"), fun)
    add("self", getattr(fun, "__self__", None))
    f = getattr(fun, "__func__", fun)
    code = getattr(f, "__code__", None)
    if code is not None:
        for name, cell in zip(code.co_freevars, getattr(f, "__closure__", None) or ()):
            try:
                add(name, cell.cell_contents)
            except ValueError:            # an empty cell
                pass
        names = set()
        _code_names(code, names)
        glob = getattr(f, "__globals__", {})
        for name in sorted(names):
            if name in glob:
                add(name, glob[name])
    return out


def _leaves_with_paths(v):
    if type(v) not in (list, tuple, dict):
        return [v], [""]
    leaves, tree = pytree.tree_flatten(v, is_leaf=is_state)
    return leaves, pytree.leaf_paths(tree)


def describe(obj, path):
    """{path: description} of every static attribute and cell reachable
    from `obj` (for NEEDLE_LOG_COMPILES: which attribute changed)."""
    out, seen = {}, set()

    def node(v, p):
        if isinstance(v, Tensor):
            val = v._value
            out[p] = f"{type(v).__name__} {_fmt_sig(_sig(val))}"
        elif isinstance(v, Stateful):
            if id(v) in seen:
                return
            seen.add(id(v))
            out[p] = type(v).__name__
            for n, e in v.__dict__.items():
                node(e, f"{p}.{n}")
        elif type(v) in (list, tuple):
            out[p] = f"{type(v).__name__} of {len(v)}"
            for i, e in enumerate(v):
                node(e, f"{p}[{i}]")
        elif type(v) is dict:
            out[p] = f"dict of {len(v)}"
            for k, e in v.items():
                node(e, f"{p}[{k!r}]")
        else:
            out[p] = repr(v)
    try:
        node(obj, path)
    finally:
        del node                # a recursive closure: see gather
    return out


def _fmt_sig(s):
    dev, shape, dt = s
    return f"{dt.name}{list(shape)}" + (" on cuda" if dev else "")


# --- rebuilding stateful objects (gradients, pytree unflatten) ---------------------

def rebuild(obj, new_cell):
    """A copy of `obj` (a Stateful object or a Tensor) with every cell c
    replaced by new_cell(c) (a Tensor or None); sub-objects and cells
    reached twice stay shared in the copy. Static attributes are shared with
    the original; no structural change is recorded."""
    memo = {}

    def node(v):
        if isinstance(v, Tensor):
            k = id(v)
            if k not in memo:
                memo[k] = new_cell(v)
            return memo[k]
        if isinstance(v, Stateful):
            k = id(v)
            if k not in memo:
                new = object.__new__(type(v))
                memo[k] = new
                d = new.__dict__
                for n, e in v.__dict__.items():
                    d[n] = node(e)
            return memo[k]
        t = type(v)
        if t is list or t is tuple:
            return t(node(e) for e in v)
        if t is dict:
            return {k: node(e) for k, e in v.items()}
        return v
    try:
        return node(obj)
    finally:
        del node                # a recursive closure: see gather


def cells_of(obj):
    """The unique cells reachable from `obj`, in attribute order."""
    return gather([obj], ["obj"]).cells


# --- Modules and Tensors as pytrees (tree_map, outputs of transforms) -----------------

class _ObjDef:
    """A stateful object's pytree aux data: its structure key, compared by
    value, and the object itself as the template for unflatten."""
    __slots__ = ("key", "template")

    def __init__(self, key, template):
        self.key, self.template = key, template

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _ObjDef) and self.key == other.key

    def __repr__(self):
        return type(self.template).__name__


def _flatten_obj(obj):
    g = gather([obj], [""])
    return [c.value for c in g.cells], _ObjDef(g.key, obj)


def _unflatten_obj(aux, values):
    g = gather([aux.template], [""])
    new = dict(zip((id(c) for c in g.cells), values))

    def cell(c):
        v = new[id(c)]
        if v is None:
            return None
        t = type(c)._make(v, c.requires_grad)
        t._name, t._origin = c._name, c._origin
        return t
    return rebuild(aux.template, cell)


def register_stateful_pytree(cls):
    """Make `cls` (a Stateful subclass) a pytree node: its leaves are the
    values of its unique cells, its structure the key `gather` computes."""
    pytree.register_pytree_node(cls, _flatten_obj, _unflatten_obj)


def _register_tensor(cls):
    pytree.register_pytree_node(cls, lambda t: ([t.value], (type(t), t.requires_grad)),
                                lambda aux, c: aux[0]._make(c[0], aux[1]))


# pytree looks rules up by exact type: every subclass registers as it is defined.
_register_tensor(Tensor)
_register_tensor(Parameter)
Tensor._register_subclass = staticmethod(_register_tensor)
