"""needle's public transformations: jit, make_ir, eval_shape.

Input: a user's Python function and its arguments.
Output: compiled callables (`jit`), printed programs (`make_ir`), abstract
results (`eval_shape`), and the `Lowered` view of every compilation stage.

A jitted call flattens its arguments, looks its signature up (pytree
structure, shapes, dtypes, weak types, static values, device) in a per-
function cache, and on a miss traces, runs the pass pipeline and builds an
Executable through the runtime. A `jit` met inside another trace is inlined.

State (DESIGN "State"; needle/state.py): Modules, optimizers and Tensors
among the arguments are cells, not leaves. A call gathers the cells they
reach (each once; cached while the structure epoch is unchanged), keys the
cache on their structure (classes, static attributes, cell shapes and
dtypes), passes their values after the array leaves, and writes the cells
the function wrote (extra outputs) back after the call. Cells reached by
closure (a model a jitted function reads as a global) become inputs when
the trace first reads them, and their writes come back the same way; an
entry holding such cells is traced again after any structural change
(the epoch moved), as its Python may have read any attribute. A call
`step(model, opt, x, y)` of positional state objects and numpy arrays,
on the signature of its last call, takes a shorter path (`_StateFast`):
the epoch, the arguments' identities, shapes and dtypes, and no cell read
while no cell was assigned since its own write-back (tensor._WRITES); a
fresh bare Tensor argument the program only reads (a DataLoader's batch)
is passed like an array.

Placement: `jit(f, device="cpu" | "cuda")` fixes the device; without it, a
call with any needle device array (needle.Array) among its
arguments compiles for CUDA (host arguments are then copied to the device
on every call) and one without compiles for the CPU. A device array's
signature is marked 'cuda', so the two placements are cached apart.
"""
import functools
import inspect
import itertools
import math
import operator
import sys
import threading
import weakref

import numpy as np

from . import lowering, runtime
from . import state as _state
from .ir.config import config
from .ir.core import ClosedGraph, Graph, ShapedArray
from .array import Array
from .runtime.executable import prepare_input
from .runtime.stats import trace_entries_source
from .tensor import _EPOCH, _WRITES, Tensor, epoch as _epoch
from .tracer import pytree
from .tracer.core import Tracer, TracingError, abstractify, current_trace, trace_to_graph
from .tracer.source import user_line

_live = weakref.WeakSet()           # every Jitted, for cache_info().trace_entries
trace_entries_source[0] = lambda: sum(j._entries for j in list(_live))
_clock = itertools.count()


class _Use:
    """A cached signature's bookkeeping: its keys in the cache, and when it
    was last called (a stamp from _clock: cheaper on every call than
    reordering a dict, which would hash the key once more)."""
    __slots__ = ("keys", "last")

    def __init__(self):
        self.keys, self.last = [], next(_clock)

_STATE_TYPES = (Tensor, _state.Stateful)


class _StateIO:
    """How a compiled entry meets state: `n_out` leaves are the function's
    results, the rest the final values of the cells it wrote (`targets`: a
    position in the call's gathered cells, or the cell itself for one
    reached by closure); `implicit`: closure cells it reads, passed after
    the arguments' cells. `epoch`: for an entry that holds closure cells,
    the structure epoch it was traced at (any change traces again)."""
    __slots__ = ("n_out", "targets", "implicit", "epoch", "guard", "fast")

    def __init__(self, n_out, targets, implicit, epoch):
        self.n_out, self.targets, self.implicit, self.epoch = n_out, targets, implicit, epoch
        self.guard = None
        # False: the fast path (_StateFast) never applies to it; else True, or
        # once known the function merging its cell values with the written ones
        self.fast = True

    def fresh(self):
        """Whether the closure state this entry was traced with is unchanged:
        the epoch did not move, or the guarded objects (the function's
        closure Modules) still have the same structure and the same cells."""
        if self.epoch is None or self.epoch == _epoch():
            return True
        if self.guard is None:
            return False
        names, objs, key, cells = self.guard[:4]
        g = _state.gather(objs, names)
        if g.key is key and len(g.cells) == len(cells) and \
                all(a is b for a, b in zip(g.cells, cells)):
            self.epoch = _epoch()
            return True
        return False

    def inputs(self, arrays, g):
        vals = list(arrays)
        if g is not None:
            vals += [c._value for c in g.cells]
        if self.implicit:
            vals += [c._value for c in self.implicit]
        return vals

    def write_back(self, outs, g):
        n = self.n_out
        cells = g.cells if g is not None else None
        for (t, same), v in zip(self.targets, outs[n:]):
            c = cells[t] if type(t) is int else t
            if same and type(c._value) is type(v):
                c._value = v
            else:
                c._write_back(v)
        _WRITES[0] += 1
        return outs[:n]


_MISS = object()


class _StateFast:
    """The cached call of a jitted function whose arguments are Modules /
    optimizers / Tensors and numpy arrays, positionally (`step(model, opt,
    x, y)`), on its last signature: what `_key` + `_StateIO` do, without a
    pytree walk or a key. Valid while the structure epoch is the one it was
    made at and each argument is the same object (a state argument), an
    array of the same shape and dtype, or, for a bare Tensor argument the
    program reads but does not write and reaches only as that argument (a
    DataLoader's batch), any Tensor of the same class, requires_grad, shape
    and dtype holding a numpy array: its value is passed as an array
    argument's would be. Otherwise it misses and the full path runs (which
    retraces on a structural change, and on a changed cell kind, shape or
    dtype, as the epoch moved).

    Per call it reads no cell: while `tensor._WRITES` (bumped by every
    assignment of any cell's value) is the count its own write-back left,
    the cells hold the values it passed or wrote last call (`trusted`), as
    the kernels take them. After any other write it reads every cell and
    runs the executable's per-input check (C-contiguous writeable array of
    the input's dtype); the array arguments are checked every call."""
    __slots__ = ("n", "objs", "arrs", "tens", "others", "epoch", "use", "out_tree", "cells",
                 "cell_dtypes", "tcells", "n_out", "trusted", "seen", "call", "leaf_out",
                 "keep", "merge", "out_tensor", "write")

    @classmethod
    def get(cls, f, args, entry, g):
        """A _StateFast for this call: `f` (the function's last one) when it
        is for this entry and gather, else a new one; None where the fast
        path does not apply. (Held by the Jitted only: a _StateFast held by
        its entry would make a reference cycle keeping the models alive.)"""
        if f is not None and f.use is entry[3] and f.epoch == _epoch() and \
                f.cells is g.cells and f.n == len(args):
            f.seen = -1                     # check the cells' values next call
            return f
        return cls.make(args, entry, g)

    @classmethod
    def make(cls, args, entry, g):
        """A _StateFast for this call's entry, or None where it does not apply
        (then st.fast = False when that holds for every call of the entry)."""
        st, exe = entry[4], entry[0]
        call = exe.call_prepared if exe.host_arrays else None    # CPU: numpy arrays
        if g is None or st.epoch is not None or st.implicit or call is None or \
                not all(type(t) is int and same for t, same in st.targets):
            st.fast = False
            return None
        if len(g.objs) + sum(type(a) is np.ndarray for a in args) != len(args) or \
                any(args[i] is not o for i, o in zip(g.pos, g.objs)):
            return None
        f = cls()
        f.n, f.epoch, f.call = len(args), _epoch(), call
        f.use, f.out_tree = entry[3], entry[1]
        arr_pos = [i for i in range(len(args)) if i not in g.posset]
        dts = [a.dtype for a in exe.in_avals]
        na = len(arr_pos)
        f.arrs = [(i, args[i].shape, dt) for i, dt in zip(arr_pos, dts)]
        f.cell_dtypes = dts[na:]
        if [args[i].dtype for i in arr_pos] != dts[:na] or \
                len(f.cell_dtypes) != len(g.cells):
            return None
        # bare Tensor arguments read only: swapped freely (a fresh batch)
        written = {t for t, _ in st.targets}
        f.objs, f.tens = [], []
        for i, o in zip(g.pos, g.objs):
            k = g.index[id(o)] if isinstance(o, Tensor) else None
            if k is not None and k in g.bare and g.refs[k] == 1 and k not in written and \
                    type(v := o._value) is np.ndarray:
                f.tens.append((i, na + k, type(o), o._requires_grad, v.shape, v.dtype))
            else:
                f.objs.append((i, o))
        swapped = {id(o) for i, o in zip(g.pos, g.objs)} - {id(o) for _, o in f.objs}
        f.others = frozenset(id(c) for c in g.cells if id(c) not in swapped)
        f.cells = g.cells
        f.tcells = [g.cells[t] for t, _ in st.targets]
        f.n_out = st.n_out
        f.write = _writer(f.tcells, st.n_out)
        if st.fast is True:               # the entry's part, worked out once
            # the cells' values after a call, picked from the results with
            # the values of the cells it does not write appended (`keep`)
            n_res = st.n_out + len(st.targets)
            where = {t: st.n_out + k for k, (t, _) in enumerate(st.targets)}
            kept = [j for j in range(len(g.cells)) if j not in where]
            where.update((j, n_res + u) for u, j in enumerate(kept))
            st.fast = (na, _picker([na + j for j in kept]),
                       _picker([where[j] for j in range(len(g.cells))]))
        if st.fast[0] != na:
            return None
        f.keep, f.merge = st.fast[1:]
        f.leaf_out = f.out_tree is pytree.LEAF
        t = f.out_tree       # one Tensor (a loss computed from Tensor inputs): made directly
        f.out_tensor = t.aux if isinstance(t.node_type, type) and \
            issubclass(t.node_type, Tensor) and t.children == (pytree.LEAF,) else None
        f.trusted, f.seen = None, -1
        return f

    def __call__(self, args):
        if len(args) != self.n or _EPOCH[0] != self.epoch or not self.use.keys:
            return _MISS
        for i, o in self.objs:
            if args[i] is not o:
                return _MISS
        ins = []
        for i, shape, dt in self.arrs:
            a = args[i]
            if type(a) is not np.ndarray or a.shape != shape or a.dtype != dt:
                return _MISS
            ins.append(prepare_input(a, dt))
        same = _WRITES[0] == self.seen
        if same:
            ins += self.trusted           # the cells' values, as this call path left them
        else:
            vals = [c._value for c in self.cells]
            prep = list(map(prepare_input, vals, self.cell_dtypes))
            na = len(self.arrs)
            for _, k, *_ in self.tens:      # replaced below: their old values do not count
                prep[k - na] = vals[k - na]
            same = all(map(operator.is_, prep, vals))
            ins += prep
        for i, k, cls, rg, shape, dt in self.tens:
            t = args[i]
            if type(t) is not cls or t._requires_grad is not rg or id(t) in self.others:
                return _MISS
            v = t._value
            if type(v) is not np.ndarray or v.shape != shape or v.dtype != dt:
                return _MISS
            ins[k] = prepare_input(v, dt)
        runtime.stats.hits += 1
        self.use.last = next(_clock)
        outs = self.call(ins)
        n = self.n_out
        if same:
            # every old value was a numpy array as the kernels take it, and
            # each result has its cell's shape and dtype: no epoch change
            self.write(outs)              # c._value = v for each written cell
            _WRITES[0] += 1
            self.seen = _WRITES[0]
            # the cells' values now: results where written, the rest as passed
            outs += self.keep(ins)
            self.trusted = self.merge(outs)
        else:
            for c, v in zip(self.tcells, outs[n:]):
                c._write_back(v)
            self.seen = -1
        if self.leaf_out:
            return outs[0]
        if self.out_tensor is not None:
            return self.out_tensor[0]._make(outs[0], self.out_tensor[1])
        return pytree.tree_unflatten(self.out_tree, outs[:n])


_WRITERS = {}         # (cell count, first result) -> the factory of a write-back


def _writer(cells, start):
    """o -> None storing o[start + i] into cells[i]._value for each i, as
    straight-line code made once per count (one attribute store per cell:
    half the time of a loop over zip); a loop beyond 2048 cells."""
    n = len(cells)
    if n > 2048:
        def write(o):
            for c, v in zip(cells, o[start:]):
                c._value = v
        return write
    make = _WRITERS.get((n, start))
    if make is None:
        body = "".join(f"        c{i}._value = o[{start + i}]\n" for i in range(n))
        src = (f"def make({', '.join(f'c{i}' for i in range(n))}):\n"
               f"    def write(o):\n{body or '        pass' + chr(10)}    return write\n")
        space = {}
        exec(compile(src, f"<needle: write-back of {n} cells>", "exec"), space)
        make = _WRITERS[(n, start)] = space["make"]
    return make(*cells)


def _picker(ix):
    """xs -> tuple(xs[i] for i in ix), as one itemgetter where it can."""
    if len(ix) >= 2:
        return operator.itemgetter(*ix)
    return (lambda i: lambda xs: (xs[i],))(ix[0]) if ix else (lambda xs: ())


def _swap_bare_tensors(c, objs):
    """The last Gathered `c` with new bare Tensor arguments in place of old
    ones (a DataLoader's fresh batch each step), without walking the models
    again; None unless each changed argument is a bare Tensor of the same
    class, requires_grad, kind, shape and dtype as the one it replaces, the
    old one was reached only as that argument, and the new one is not a
    cell reached otherwise (the structure Key is then the same)."""
    swaps = []
    for k, (old, new) in enumerate(zip(c.objs, objs)):
        if old is new:
            continue
        if type(new) is not type(old) or not isinstance(new, Tensor):
            return None
        i = c.index.get(id(old))
        if i is None or i not in c.bare or c.refs[i] != 1 or id(new) in c.index or \
                new.requires_grad != old.requires_grad or \
                _state._sig(new._value) != _state._sig(old._value):
            return None
        swaps.append((k, i, old, new))
    if not swaps or any(new is o for _, _, _, new in swaps for o in c.objs):
        return None
    g = _state.Gathered()
    g.objs, g.cells, g.index = list(objs), list(c.cells), dict(c.index)
    g.paths, g.bare, g.refs, g.key, g.epoch = c.paths, c.bare, c.refs, c.key, c.epoch
    g.pos, g.posset = c.pos, c.posset
    for _, i, old, new in swaps:
        del g.index[id(old)]
        g.index[id(new)] = i
        g.cells[i] = new
    if len(g.index) != len(g.cells):        # two new arguments were one Tensor
        return None
    return g


def _flatten_outs(out, name):
    """The leaves of a function's result (Tensors and Modules give their
    cells' current values: read while the state frame is still open)."""
    leaves, tree = pytree.tree_flatten(out)
    for leaf, path in zip(leaves, pytree.leaf_paths(tree)):
        if not isinstance(leaf, (Tracer, np.ndarray, np.generic, bool, int, float)):
            raise TracingError(f"{name} returned output{path} of type "
                               f"{type(leaf).__name__}; outputs must be arrays or "
                               f"scalars (pytrees of them)")
    return leaves, tree


def _closure_changes(st):
    """Why a closure entry traces again, for NEEDLE_LOG_COMPILES."""
    guard = st.guard
    if guard is None or guard[4] is None:
        return ("it reads Modules or Tensors by closure, and a structure changed since it "
                "was traced (pass them as arguments to cache each structure apart)")
    names, objs, _, cells, was = guard
    now = {}
    for o, n in zip(objs, names):
        now.update(_state.describe(o, n))
    out = [f"attribute {p} changed {was.get(p, '(absent)')} -> {now.get(p, '(absent)')}"
           for p in list(was) + [p for p in now if p not in was]
           if was.get(p, "(absent)") != now.get(p, "(absent)")]
    return "; ".join(out) if out else "a closure Module holds other cells now"


def _state_on_cuda(key):
    """Whether a state key holds a cell on the CUDA device."""
    return any(sig[0] for sig in key.t[1])


_FLOAT_SIG = ("py", float)
_INT_SIG = ("py", int)
_BOOL_SIG = ("py", bool)


def _leaf_sig(x):
    t = type(x)
    if t is np.ndarray:
        return (x.shape, x.dtype)
    if t is float:
        return _FLOAT_SIG
    if t is int:
        return _INT_SIG
    if t is bool:
        return _BOOL_SIG
    if isinstance(x, np.generic):
        return ((), x.dtype)
    if isinstance(x, np.ndarray):
        return (x.shape, x.dtype)
    if isinstance(x, ShapedArray):       # lower() / eval_shape on abstract values
        return (x.shape, x.dtype, x.weak_type)
    if isinstance(x, Array):             # a device array: placement is part of the key
        return (x.shape, x.dtype, "cuda")
    if hasattr(x, "shape") and hasattr(x, "dtype"):   # a ShapeDtypeStruct-like spec
        try:
            return (tuple(x.shape), np.dtype(x.dtype))
        except TypeError:
            return None
    return None          # unsupported: abstractify raises, naming the argument


def _is_split(key):
    """Whether a cache key holds static arguments (its leaves are (args, kwargs))."""
    return len(key) > 2 and key[2] is not None


def _flat_array_key(args):
    """Cache key for calls whose arguments are all numpy arrays, or None."""
    for a in args:
        if type(a) is not np.ndarray:
            return None
    return ("arrays",) + tuple((a.shape, a.dtype) for a in args)


# Bytes beyond any machine's address space (x86-64 and arm64 user space is
# 2**47-2**48): numpy raises MemoryError (or "array is too big") for such an
# array at once, and a fused kernel would loop over it for days instead.
_ADDRESSABLE_BYTES = 1 << 48
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def _check_sizes(graph, name):
    """MemoryError for a value (also one fusion would never store, as
    ones(n).sum()) too large for any memory."""
    for e in graph.eqns:
        for v in e.outs:
            n = math.prod(int(d) for d in v.aval.shape) * v.aval.dtype.itemsize   # no wrap
            if n > _ADDRESSABLE_BYTES:
                where = f" (at {e.source})" if e.source else ""
                unit = max(k for k in range(7) if n >= 1024 ** k)
                raise MemoryError(f"{name}: {e.prim.name}{where} makes an array of shape "
                                  f"{v.aval.shape} and dtype {v.aval.dtype.name} "
                                  f"({n / 1024 ** unit:.3g} {_UNITS[unit]}), "
                                  f"larger than any memory")
        for p in e.params.values():
            for sub in (p if isinstance(p, (tuple, list)) else (p,)):
                sub = getattr(sub, "graph", sub)            # a ClosedGraph's Graph
                if hasattr(sub, "eqns"):
                    _check_sizes(sub, name)


def _log_compiles():
    return config.log_compiles


class Lowered:
    """One compilation of a jitted function: every stage, printable."""

    def __init__(self, name, stage_graphs, executable):
        self.name = name
        self._graphs = stage_graphs
        self.executable = executable

    @property
    def stages(self):
        return list(self._graphs) + [s for s in self.executable.stage_names()
                                     if s not in self._graphs]

    def as_text(self, stage=None):
        stage = stage or self.stages[-1]
        if stage in self._graphs:
            return str(self._graphs[stage])
        return self.executable.stage_text(stage)

    def as_dot(self, stage=None):
        """A graph stage (default: the last, 'fused') as Graphviz DOT text (ir/dot.py)."""
        from .ir.dot import graph_to_dot
        stage = stage or list(self._graphs)[-1]
        if stage not in self._graphs:
            raise ValueError(f"as_dot draws the graph stages {list(self._graphs)}, "
                             f"not {stage!r} (as_text prints every stage)")
        return graph_to_dot(self._graphs[stage], title=f"{self.name}: {stage}")

    @property
    def kernel_count(self):
        return self.executable.kernel_count

    @property
    def library_call_count(self):
        return self.executable.library_call_count

    @property
    def device(self):
        return self.executable.device

    def resource_report(self, cc=None):
        """Per CUDA kernel entry: registers, shared memory, spills and stack
        from ptxas, for compute capability `cc` (default: the GPU's, else
        (9, 0)). Only for functions compiled for CUDA."""
        return self.executable.resource_report(cc)

    def __call__(self, *flat_args):
        return self.executable(*flat_args)


class Jitted:
    _use_fast = True       # False: no _StateFast (benchmarks compare the two paths)

    def __init__(self, fun, static_argnums=(), static_argnames=(), donate_argnums=(),
                 device=None):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.name = getattr(fun, "__name__", "f")
        if isinstance(static_argnums, int):
            static_argnums = (static_argnums,)
        if isinstance(static_argnames, str):
            static_argnames = (static_argnames,)
        self.static_argnums = tuple(sorted(set(static_argnums)))
        self.static_argnames = tuple(static_argnames)
        try:
            self._sig = inspect.signature(fun)
        except (TypeError, ValueError):
            self._sig = None
        if self._sig is not None:
            # As JAX: a static argument is static however it is passed, so
            # static_argnums and static_argnames each imply the other.
            positional = [n for n, p in self._sig.parameters.items()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            for name in self.static_argnames:
                if name in positional:
                    i = positional.index(name)
                    if i not in self.static_argnums:
                        self.static_argnums = tuple(sorted(self.static_argnums + (i,)))
            for i in self.static_argnums:
                if i < len(positional) and positional[i] not in self.static_argnames and \
                        self._sig.parameters[positional[i]].kind != \
                        inspect.Parameter.POSITIONAL_ONLY:
                    self.static_argnames += (positional[i],)
        self.donate_argnums = (donate_argnums,) if isinstance(donate_argnums, int) else \
            tuple(donate_argnums)
        # None: placed by the arguments at each compile (see the module docstring).
        # compile_only: lower() prints CUDA kernels, PTX and ptxas's report on
        # a machine without a GPU; a call there raises.
        self.device = None if device is None else runtime.resolve_device(device,
                                                                         compile_only=True)
        # key -> (executable, out treedef, Lowered, _Use). A signature has one
        # key, and the fast path's ("arrays", ...) key too; at most
        # config.trace_cache_size signatures (_entries), the least recently
        # called dropped first (its kernels stay loaded: a dropped signature
        # costs a trace, not a Numba compile, when it comes back).
        self._cache = {}
        self._entries = 0
        _live.add(self)
        self._last_key = None
        self._gcache = None                 # the last Gathered (state arguments)
        self._state_desc, self._last_split = None, False     # NEEDLE_LOG_COMPILES
        self._lock = threading.RLock()      # one trace per signature, even from threads
        self._simple = not self.static_argnums and not self.static_argnames
        self._fast = None                   # _StateFast of the last state call

    # -- calling --------------------------------------------------------------
    # needle.debug_nans(True) swaps in a wrapper that scans the results for NaN
    # (needle/debug.py), so this path pays nothing while the mode is off.
    def __call__(self, *args, **kwargs):
        if current_trace() is not None:
            return self.fun(*args, **kwargs)          # inlined into the outer trace
        flat_key = None
        if self._simple and not kwargs:
            if self._fast is not None:
                # Fast path: step(model, opt, x, y) on its last signature
                r = self._fast(args)
                if r is not _MISS:
                    return r
            # Fast path: positional numpy arrays need no pytree walk.
            flat_key = _flat_array_key(args)
            if flat_key is not None:
                entry = self._cache.get(flat_key)
                if entry is not None:
                    runtime.stats.hits += 1
                    entry[3].last = next(_clock)
                    outs = entry[0](*args)
                    return outs[0] if entry[1] is pytree.LEAF else \
                        pytree.tree_unflatten(entry[1], outs)
        key, leaves, treedef, g = self._key(args, kwargs)
        entry = self._cache.get(key)
        if entry is not None and (entry[4] is None or entry[4].fresh()):
            runtime.stats.hits += 1
            entry[3].last = next(_clock)
        else:
            entry = self._compile(key, args, kwargs, leaves, treedef, stale=entry)
        st = entry[4]
        if flat_key is not None and st is None:
            self._remember(flat_key, entry)
        if st is not None:
            leaves = st.inputs(leaves, g)
        try:
            outs = entry[0](*leaves)
        except OverflowError:
            self._int_overflow(leaves, treedef, _is_split(key))
            raise
        if st is not None:
            outs = st.write_back(outs, g)
            if self._simple and not kwargs and st.fast and self._use_fast:
                self._fast = _StateFast.get(self._fast, args, entry, g)
        return pytree.tree_unflatten(entry[1], outs)

    def _key(self, args, kwargs):
        """(cache key, flat array leaves, treedef, Gathered or None)."""
        if self._simple and not kwargs:
            leaves, treedef = pytree.tree_flatten(args, is_leaf=_state.is_state)
            statics = None
        else:
            statics, leaves, treedef = self._split(args, kwargs)
        g = self._gather(leaves, treedef, statics is not None)
        if g is None:
            sigs = tuple(_leaf_sig(x) for x in leaves)
            return ((treedef, sigs) if statics is None else (treedef, sigs, statics)), \
                leaves, treedef, None
        arrays = [x for i, x in enumerate(leaves) if i not in g.posset]
        return (treedef, tuple(_leaf_sig(x) for x in arrays), statics, g.key), arrays, \
            treedef, g

    def _gather(self, leaves, treedef, split):
        """The cells of the stateful leaves (Modules, optimizers, Tensors),
        or None without any; the last gather is reused while the epoch and
        the objects are the same (a cached call does not walk the model)."""
        pos = [i for i, x in enumerate(leaves) if isinstance(x, _STATE_TYPES)]
        if not pos:
            return None
        c = self._gcache
        if c is not None and c.epoch == _epoch() and c.pos == pos:
            if all(a is leaves[i] for a, i in zip(c.objs, pos)):
                return c
            g = _swap_bare_tensors(c, [leaves[i] for i in pos])
            if g is not None:
                self._gcache = g
                return g
        paths = self._arg_paths(treedef, split)
        g = _state.gather([leaves[i] for i in pos], [paths[i] for i in pos])
        g.pos, g.posset = pos, frozenset(pos)
        self._gcache = g
        return g

    # -- the trace cache: an LRU over signatures --------------------------------
    def _remember(self, key, entry):
        """Store `entry` under `key` (a new signature, or the fast path's key
        of one), then drop the least recently called signatures beyond the
        cap, with all their keys. (A call holding a dropped entry finishes.)"""
        with self._lock:
            if key in self._cache:
                return
            use = entry[3]
            if not use.keys:
                self._entries += 1
            use.keys.append(key)
            use.last = next(_clock)
            self._cache[key] = entry
            cap = config.trace_cache_size       # read here: an update applies at once
            if self._entries > cap:
                uses = {id(e[3]): e[3] for e in self._cache.values()}.values()
                for old in sorted(uses, key=lambda u: u.last)[:self._entries - cap]:
                    for k in old.keys:
                        del self._cache[k]
                    old.keys.clear()
                    self._entries -= 1

    def _int_overflow(self, leaves, treedef, split):
        """OverflowError naming the argument, for a Python int outside int64
        (as JAX: needle's type for Python ints is int64)."""
        for x, p in zip(leaves, self._arg_paths(treedef, split)):
            if type(x) is int and not -2**63 <= x < 2**63:
                raise OverflowError(f"{self.name}: argument {p}: Python int too large to "
                                    f"convert to int64 ({x})") from None

    def _split(self, args, kwargs):
        statics = []
        dyn_args = []
        for i, a in enumerate(args):
            if i in self.static_argnums:
                try:
                    hash(a)
                except TypeError:
                    raise TypeError(f"{self.name}: static argument {self._arg_name(i)} has "
                                    f"unhashable type {type(a).__name__}; static arguments "
                                    f"must be hashable (use a tuple instead of a list)"
                                    ) from None
                statics.append((i, a))
            else:
                dyn_args.append(a)
        dyn_kwargs = {}
        for k, v in kwargs.items():
            if k in self.static_argnames:
                try:
                    hash(v)
                except TypeError:
                    raise TypeError(f"{self.name}: static argument {k} has unhashable type "
                                    f"{type(v).__name__}; static arguments must be "
                                    f"hashable (use a tuple instead of a list)") from None
                statics.append((k, v))
            else:
                dyn_kwargs[k] = v
        leaves, treedef = pytree.tree_flatten((tuple(dyn_args), dyn_kwargs),
                                              is_leaf=_state.is_state)
        return tuple(statics), leaves, treedef

    def _flat_fun(self, statics, treedef, split):
        nums = {k: v for k, v in statics if isinstance(k, int)}
        names = {k: v for k, v in statics if isinstance(k, str)}

        def flat(*leaves):
            tree = pytree.tree_unflatten(treedef, leaves)
            if not split:
                return self.fun(*tree)
            dyn_args, dyn_kwargs = tree
            it = iter(dyn_args)
            n = len(dyn_args) + len(nums)
            args = [nums[i] if i in nums else next(it) for i in range(n)]
            return self.fun(*args, **dyn_kwargs, **names)
        return flat

    def _arg_paths(self, treedef, split):
        paths = pytree.leaf_paths(treedef)
        if self._sig is None:
            return [f"args{p}" for p in paths]
        out = []
        for p in paths:
            # p looks like "[i]..." for positional args (or "[0][i]..." when split)
            if split and p.startswith("[0]"):
                p = p[3:]
            elif split and p.startswith("[1]"):
                out.append(p[3:].replace("['", "", 1).replace("']", "", 1))
                continue
            i = int(p[1:p.index("]")])
            dyn = [k for k in range(i + len(self.static_argnums) + 1)
                   if k not in self.static_argnums]
            out.append(self._arg_name(dyn[i]) + p[p.index("]") + 1:])
        return out

    def _arg_name(self, j):
        """The name of positional argument j (`xs[1]` for `*xs`)."""
        if self._sig is None:
            return f"args[{j}]"
        params = list(self._sig.parameters.values())
        for k, p in enumerate(params):
            if p.kind == p.VAR_POSITIONAL:
                return p.name if j < k else f"{p.name}[{j - k}]"
            if k == j:
                return p.name
        return f"args[{j}]"

    def _abstract(self, leaves, paths):
        try:
            return [abstractify(x, f"{self.name}: argument {p}") for x, p in zip(leaves, paths)]
        except TracingError as e:
            where = user_line(2)
            raise TracingError(f"{e}\n  at {where}" if where else str(e)) from None

    def _trace(self, args, kwargs):
        """(ClosedGraph, out treedef, flat inputs, their paths) of a trace."""
        return self._trace_state(args, kwargs)[:4]

    def _trace_state(self, args, kwargs):
        split = not (self._simple and not kwargs)
        if not split:
            leaves, treedef = pytree.tree_flatten(args, is_leaf=_state.is_state)
            statics = ()
        else:
            statics, leaves, treedef = self._split(args, kwargs)
        paths = self._arg_paths(treedef, split)
        inner = self._flat_fun(statics, treedef, split)
        runtime.stats.traces += 1
        g = self._gather(leaves, treedef, split)
        if g is None:
            fr = _state.Frame("jit", self.name)
            rec = {}

            def flat(*xs):
                fr.trace = current_trace()
                with fr:
                    out = inner(*xs)
                    rec["out"], rec["tree"] = _flatten_outs(out, self.name)
                return rec["out"] + [v for _, v in fr.writes]
            avals = self._abstract(leaves, paths)
            cg, _ = trace_to_graph(flat, avals, self.name, paths)
            if not fr.implicit and not fr.writes:
                return cg, rec["tree"], leaves, paths, None
            return self._with_state(cg, rec, fr, None, leaves, paths)
        arr_pos = [i for i in range(len(leaves)) if i not in g.posset]
        arrays = [leaves[i] for i in arr_pos]
        arr_paths = [paths[i] for i in arr_pos]
        avals = self._abstract(arrays, arr_paths) + \
            [abstractify(v, f"{self.name}: {p}") for v, p in zip(g.values(), g.paths)]
        fr = _state.Frame("jit", self.name)
        fr.paths = {id(c): p for c, p in zip(g.cells, g.paths)}
        rec = {}
        n = len(arrays)

        def flat(*xs):
            full = list(leaves)
            for i, x in zip(arr_pos, xs):
                full[i] = x
            fr.trace = current_trace()
            with fr:
                fr.swap_in(g.cells, xs[n:])
                out = inner(*full)
                rec["out"], rec["tree"] = _flatten_outs(out, self.name)
            return rec["out"] + [v for _, v in fr.writes]
        in_paths = arr_paths + g.paths
        cg, _ = trace_to_graph(flat, avals, self.name, in_paths)
        return self._with_state(cg, rec, fr, g, arrays + g.values(), in_paths)

    def _with_state(self, cg, rec, fr, g, leaves, paths):
        """The traced program with the closure cells it read as extra inputs
        (after the arguments), and the _StateIO that feeds and writes them."""
        graph, consts = cg.graph, list(cg.consts)
        implicit = [c for c, _ in fr.implicit]
        if implicit:
            moved = {id(v) for _, v in fr.implicit}
            keep = [k for k, v in enumerate(graph.constvars) if id(v) not in moved]
            graph = Graph([graph.constvars[k] for k in keep],
                          list(graph.invars) + [v for _, v in fr.implicit],
                          graph.eqns, graph.outvars)
            consts = [consts[k] for k in keep]
            cg = ClosedGraph(graph, consts)
        targets = []
        n_in = len(graph.invars) - len(implicit) - (len(g.cells) if g is not None else 0)
        cell_avals = [v.aval for v in graph.invars[n_in:]]
        out_avals = graph.out_avals[len(rec["out"]):]
        for (c, _), out in zip(fr.writes, out_avals):
            i = g.index.get(id(c)) if g is not None else None
            # a cell written with its own shape and dtype: the write-back only
            # checks the value's kind (a numpy array stays one)
            same = i is not None and (cell_avals[i].shape, cell_avals[i].dtype) == \
                (out.shape, out.dtype)
            targets.append((i if i is not None else c, same))
        closure = implicit or any(type(t) is not int for t, _ in targets)
        st = _StateIO(len(rec["out"]), targets, implicit, _epoch() if closure else None)
        if closure:
            st.guard = self._closure_guard(implicit, [t for t, _ in targets
                                                      if type(t) is not int])
        names = [f"state {c._name or 'Tensor'}" for c in implicit]
        return cg, rec["tree"], leaves + [c._value for c in implicit], paths + names, st

    def _closure_guard(self, implicit, written):
        """(names, objects, Key, cells) of the Modules / optimizers / Tensors
        the function reaches by closure, when they hold every closure cell
        it reads or writes (then only a change of their structure traces
        again); None otherwise (then any structural change does)."""
        found = _state.closure_objects(self.fun)
        if not found:
            return None
        names, objs = [n for n, _ in found], [o for _, o in found]
        gc = _state.gather(objs, names)
        if not all(id(c) in gc.index for c in list(implicit) + list(written)):
            return None
        desc = None
        if _log_compiles():
            desc = {}
            for o, n in zip(objs, names):
                desc.update(_state.describe(o, n))
        return names, objs, gc.key, gc.cells, desc

    def _compile(self, key, args, kwargs, leaves, treedef, stale=None):
        with self._lock:
            entry = self._cache.get(key)     # another thread may have compiled it
            if entry is not None and entry is not stale and \
                    (entry[4] is None or entry[4].fresh()):
                runtime.stats.hits += 1
                return entry
            if stale is not None:
                self._forget(key)
            return self._compile_locked(key, args, kwargs, treedef, stale)

    def _forget(self, key):
        entry = self._cache.get(key)
        if entry is not None:
            for k in entry[3].keys:
                self._cache.pop(k, None)
            entry[3].keys.clear()
            self._entries -= 1

    def _compile_locked(self, key, args, kwargs, treedef, stale=None):
        if _log_compiles():
            if stale:
                print(f"needle: compiling {self.name}: " + _closure_changes(stale[4]),
                      file=sys.stderr)
            else:
                self._explain_miss(key, treedef)
        cg, out_tree, _, _, st = self._trace_state(args, kwargs)
        _check_sizes(cg.graph, self.name)
        device = self.device or ("cuda" if any(s is not None and s[2:] == ("cuda",)
                                               for s in key[1]) or
                                 (len(key) > 3 and _state_on_cuda(key[3])) or
                                 (st is not None and any(isinstance(c._value, Array)
                                                         for c in st.implicit))
                                 else "cpu")
        if device == "cpu" and any(isinstance(c, Array) for c in cg.consts):
            # closed-over device arrays, read on the host
            cg = ClosedGraph(cg.graph, [np.asarray(c) if isinstance(c, Array) else c
                                        for c in cg.consts])
        stages, exe = lowering.lower(cg, device, self.name, self._donated_leaves(args),
                                     check=config.checks)
        runtime.dump_stages(self.name, stages, exe)
        entry = (exe, out_tree, Lowered(self.name, stages, exe), _Use(), st)
        self._remember(key, entry)
        self._last_key = (key, treedef)
        self._last_split = _is_split(key)
        if _log_compiles() and len(key) > 3:
            g = self._gcache
            self._state_desc = {}
            for o, p in zip(g.objs, self._state_names(g)):
                self._state_desc.update(_state.describe(o, p))
        return entry

    def _donated_leaves(self, args):
        """Flat input positions of the leaves of the donated positional args."""
        if not self.donate_argnums:
            return ()
        out, pos = [], 0
        for i, a in enumerate(args):
            if i in self.static_argnums:
                continue
            # cells (Modules, Tensors) are not donated: they come after the arrays
            n = sum(not isinstance(x, _STATE_TYPES)
                    for x in pytree.tree_leaves(a, is_leaf=_state.is_state))
            if i in self.donate_argnums:
                out.extend(range(pos, pos + n))
            pos += n
        return tuple(out)

    def _explain_miss(self, key, treedef):
        msg = f"needle: compiling {self.name}"
        if self._last_key is None:
            msg += " for the first time"
        else:
            (old, old_tree) = self._last_key
            reasons = []
            if old_tree != treedef:
                reasons.append(f"argument structure changed {old_tree} -> {treedef}")
            else:
                paths = self._arg_paths(treedef, _is_split(key))
                if len(key) > 3:
                    g = self._gcache
                    paths = [p for i, p in enumerate(paths)
                             if g is None or i not in g.posset]
                for p, a, b in zip(paths, old[1], key[1]):
                    if a != b:
                        reasons.append(f"argument {p} changed {_fmt_sig(a)} -> {_fmt_sig(b)}")
                if len(old) > 2 and old[2] != key[2]:
                    def named(statics):
                        return {self._arg_name(k) if isinstance(k, int) else k: v
                                for k, v in statics}
                    was, now = named(old[2]), named(key[2])
                    if was == now:
                        reasons.append("static arguments passed by keyword instead of by "
                                       "position, or back (each way is cached apart)")
                    for k in sorted(set(was) | set(now)):
                        if was.get(k, _MISSING) != now.get(k, _MISSING):
                            reasons.append(f"static argument {k} changed "
                                           f"{was.get(k, '(not passed)')!r} -> "
                                           f"{now.get(k, '(not passed)')!r}")
                if len(key) > 3 and len(old) > 3 and old[3] != key[3]:
                    reasons += self._state_changes()
            msg += ": " + ("; ".join(reasons) if reasons else "new signature")
        print(msg, file=sys.stderr)

    def _state_changes(self):
        """'attribute model.training changed True -> False' for each static
        attribute or cell type of the state arguments that differs from the
        last compile's."""
        g = self._gcache
        now = {}
        for o, p in zip(g.objs, self._state_names(g)):
            now.update(_state.describe(o, p))
        was = self._state_desc or {}
        out = []
        for p in list(was) + [p for p in now if p not in was]:
            a, b = was.get(p, "(absent)"), now.get(p, "(absent)")
            if a != b:
                out.append(f"attribute {p} changed {a} -> {b}")
        return out or ["the structure of a state argument changed"]

    def _state_names(self, g):
        paths = self._arg_paths(self._last_key[1], self._last_split) \
            if self._last_key else None
        if paths is None or len(paths) <= max(g.pos, default=-1):
            return [f"state{i}" for i in range(len(g.objs))]
        return [paths[i] for i in g.pos]

    # -- inspection -----------------------------------------------------------
    def lower(self, *args, **kwargs):
        """Trace and compile for these arguments; return the Lowered stages."""
        key, leaves, treedef, _ = self._key(args, kwargs)
        entry = self._cache.get(key)
        if entry is None or (entry[4] is not None and not entry[4].fresh()):
            entry = self._compile(key, args, kwargs, leaves, treedef, stale=entry)
        return entry[2]

    def trace(self, *args, **kwargs):
        return self._trace(args, kwargs)[0]

    def profile(self, *args, repeats=10, warmup=1, **kwargs):
        """Call the function `warmup` + `repeats` times with these arguments
        (as calls would: state is written back, donated arrays are taken)
        and time each step of its compiled program: a runtime.profile.Profile
        (print it for a table of the slowest kernels, library calls and
        loops, with shapes; `.rows`, `.by_kind()`, `.total`, `.wall`)."""
        from .codegen import backend_for
        from .runtime.profile import profile
        exe = self.lower(*args, **kwargs).executable
        return profile(exe, backend_for(exe.device), lambda: self(*args, **kwargs),
                       repeats=repeats, warmup=warmup)

    def clear_cache(self):
        with self._lock:
            for entry in self._cache.values():
                entry[3].keys.clear()
            self._cache.clear()
            self._entries = 0


_MISSING = object()


def _fmt_sig(s):
    if s is None:
        return "unsupported"
    if s[0] == "py":
        return f"Python {s[1].__name__}"
    return f"{tuple(s[0])} {s[1].name}" + (" (weak)" if s[2:] == (True,) else
                                            " on cuda" if s[2:] == ("cuda",) else "")


def jit(fun=None, *, static_argnums=(), static_argnames=(), donate_argnums=(), device=None):
    """Compile `fun` on first call for each argument signature.

    Arguments are numpy arrays, numpy or Python scalars (weakly typed), in
    pytrees; static arguments are hashable Python values that the function
    may branch on. Arrays the function closes over are captured as constants
    at trace time: changing them later does not retrace (as in JAX).

    donate_argnums: positional arguments the caller gives up. Their buffers
    may be overwritten with results of the same shape and dtype (by a kernel
    that reads them element for element, as an optimizer update does), which
    saves an allocation per call. Do not use a donated array after the call:
    on CPU the numpy array you passed then holds a result (needle warns once
    per process). A buffer is only reused by the one output that reads it
    element for element; a donated array that another argument or a
    constant also reads (the same array twice, or a view of it) is not
    written: that call works on a copy. Results never share memory with
    non-donated arguments (a returned reshape of an argument is a copy).
    On CUDA a donated device array is deleted by the call (`x.is_deleted()`;
    using it raises, as in JAX) and its buffer belongs to the call: a result
    is written into it, or it returns to the pool after its last reader.

    device: "cpu" or "cuda". Without it the arguments decide: any needle
    device array (`needle.device_put(x, "cuda")`, or a result of a CUDA
    function) among them compiles for CUDA, and numpy arguments of that call
    are copied to the device; results of a CUDA function are device arrays
    (`np.asarray(r)` copies one back). With device="cpu", device arrays are
    copied to the host.
    """
    if fun is None:
        return lambda f: jit(f, static_argnums=static_argnums, static_argnames=static_argnames,
                             donate_argnums=donate_argnums, device=device)
    return Jitted(fun, static_argnums, static_argnames, donate_argnums, device)


def make_ir(fun, static_argnums=(), static_argnames=()):
    """make_ir(f)(*args) -> the traced ClosedGraph (prints like a jaxpr)."""
    j = fun if isinstance(fun, Jitted) else Jitted(fun, static_argnums, static_argnames)

    def make(*args, **kwargs):
        return j.trace(*args, **kwargs)
    return make


def eval_shape(fun, *args, **kwargs):
    """Abstract results of fun(*args): a pytree of ShapedArray, nothing computed.
    Arguments may be arrays or ShapedArray-like objects (with .shape, .dtype)."""
    cg, out_tree, _, _ = Jitted(fun)._trace(args, kwargs)
    outs = cg.graph.outvars[:out_tree.num_leaves]        # not the state cells' writes
    return pytree.tree_unflatten(out_tree, [v.aval for v in outs])


__all__ = ["jit", "make_ir", "eval_shape", "Jitted", "Lowered", "TracingError"]
