"""Stage tracer: tracers, the trace stack, `bind`, and tracing a Python
function into a Graph.

Input: a Python function and the abstract values of its flattened arguments.
Output: a ClosedGraph (graph + captured constant values) and the output
pytree structure.

`bind(prim, args, params)` is the single entry every operation goes through:
with no tracer among its arguments it runs the numpy implementation eagerly;
otherwise the innermost trace records an equation. Tracers from an outer
trace met inside an inner one are lifted to constants of the inner graph
(closure conversion), which is how `grad` nested in `jit` works.
"""
import threading

import numpy as np

from ..ir import dtypes
from ..ir.core import ClosedGraph, Eqn, Graph, Lit, ShapedArray, Var, aval_of, set_binder
from . import pytree
from .source import user_line


class NeedleError(Exception):
    """Base of needle's user-facing errors."""


class ConcretizationError(NeedleError, TypeError):
    """Python needed a concrete value (if, while, bool, int) of a traced array."""


class LeakedTracerError(NeedleError):
    """A tracer was used after the trace that made it had finished."""


class TracingError(NeedleError, TypeError):
    """A function's arguments or results are not arrays."""


def with_location(err, location):
    """Re-raise `err` (a ShapeError / TypeError / ValueError from an abstract
    eval) with the user's line appended; keeps the exception's type."""
    msg = f"{err}\n  at {location}" if location else str(err)
    new = type(err)(msg)
    new.__cause__ = err
    return new


class _Stack(threading.local):
    """The active GraphTraces of this thread, innermost last. Per thread: a
    trace running in one thread must not capture another thread's calls."""
    def __init__(self):
        self.traces = []


_STACK = _Stack()


class GraphTrace:
    def __init__(self, name="f"):
        self.level = len(_STACK.traces)
        self.name = name
        self.eqns = []
        self.constvars, self.const_vals = [], []
        self._const_ids, self._keep = {}, []
        self.active = True

    def new_tracer(self, aval, source=""):
        return Tracer(self, Var(aval), source)

    def to_atom(self, x):
        if isinstance(x, Tracer):
            t = x._trace
            if t is self:
                return x._var
            if not t.active:
                raise _leaked(x)
            if t.level > self.level:
                raise LeakedTracerError(
                    f"a tracer of an inner trace ({t.name}) escaped into an outer one "
                    f"({self.name}); created at {x.source}, used at {user_line(3)}")
            return self._const(x, x.aval)
        if isinstance(x, Lit):
            return x
        if isinstance(x, (bool, int, float)) or (isinstance(x, (np.ndarray, np.generic))
                                                and np.ndim(x) == 0):
            return Lit(x)
        arr = np.asarray(x)
        return self._const(arr, aval_of(arr), snapshot=True)

    def _const(self, val, aval, snapshot=False):
        # Keyed by identity: the same captured array used twice is one constvar.
        # `_keep` holds the originals so no id is reused while tracing.
        key = id(val)
        v = self._const_ids.get(key)
        if v is None:
            v = Var(aval.strong() if not isinstance(val, Tracer) else aval)
            self._const_ids[key] = v
            self._keep.append(val)
            self.constvars.append(v)
            # A captured array is a snapshot taken at trace time (as in JAX):
            # mutating it in place later changes neither the program nor its
            # results; rebinding the name does not retrace either.
            self.const_vals.append(np.array(val, copy=True) if snapshot else val)
        return v

    def process(self, prim, args, params):
        atoms = [self.to_atom(a) for a in args]
        try:
            out_avals = prim.abstract_eval(*[a.aval for a in atoms], **params)
        except (ValueError, TypeError) as e:
            raise with_location(e, user_line(3)) from None
        src = user_line(3)
        outs = [Var(a) for a in out_avals]
        self.eqns.append(Eqn(prim, atoms, dict(params), outs, src))
        tracers = [Tracer(self, v, src) for v in outs]
        return tracers if prim.multiple_results else tracers[0]


def _leaked(x):
    return LeakedTracerError(
        f"a traced value of {x._trace.name} (created at {x.source}) was used after that "
        f"trace finished, at {user_line(4)}. Traced values must not be stored outside "
        f"the function (in globals, lists or attributes) and used later; return them "
        f"instead.")


def current_trace():
    return _STACK.traces[-1] if _STACK.traces else None


def lift(x):
    """A host array as a traced constant of the current trace (a constvar,
    snapshotted), so traced operations such as indexing apply to it; 0-d
    values and values outside a trace are returned as they are."""
    tr = current_trace()
    if tr is None or isinstance(x, Tracer) or np.ndim(x) == 0:
        return x
    arr = np.asarray(x)
    return Tracer(tr, tr._const(arr, aval_of(arr), snapshot=True), user_line(2))


# Called as hook(prim, operands, results, params) after every eager primitive
# on host values (needle.debug_nans sets one); None: nothing runs.
_eager_hook = None


def set_eager_hook(hook):
    global _eager_hook
    _eager_hook = hook


def _native(x):
    """x as a numpy array in the host's byte order: a byte-swapped array
    ('>f4' on a little-endian host) is converted, as numpy's results are."""
    v = np.asarray(x)
    return v if v.dtype.isnative else v.astype(v.dtype.newbyteorder("="))


def bind(prim, args, params):
    top = None
    for a in args:
        if isinstance(a, Tracer):
            t = a._trace
            if not t.active:
                raise _leaked(a)
            if top is None or t.level > top.level:
                top = t
    # An effect of values of an outer trace met inside a loop body's trace
    # happens once per step: it is recorded in the innermost trace.
    if top is not None and prim.effectful and _STACK.traces and \
            _STACK.traces[-1].level > top.level:
        top = _STACK.traces[-1]
    # An effect on a device array (the eager CUDA trace, level -1) runs on the
    # host copies below, or is recorded when a graph is being traced.
    if top is not None and (top.level >= 0 or not prim.effectful):
        return top.process(prim, args, params)
    if (prim.traits.staged_when_tracing or prim.effectful) and _STACK.traces:
        # A result larger than its constant operands (staged_when_tracing: a
        # broadcast, an iota) is recorded under a trace, not evaluated: the
        # kernel makes its elements for free, a captured array would be read
        # from memory. An effect (a debug print) of constants is
        # recorded too: it happens when the program runs.
        return _STACK.traces[-1].process(prim, args, params)
    # Eager: every argument is concrete.
    vals = [_native(a.val if isinstance(a, Lit) else a) for a in args]
    try:
        prim.abstract_eval(*[aval_of(v) for v in vals], **params)
    except (ValueError, TypeError) as e:
        raise with_location(e, user_line(3)) from None
    with np.errstate(all="ignore"):
        outs = prim.impl(*vals, **params)
    if _eager_hook is not None:
        _eager_hook(prim, vals, outs, params)
    return outs if prim.multiple_results else outs[0]


set_binder(bind)        # Primitive.bind (ir/core.py) calls this bind


class Tracer:
    """A traced array: an abstract value standing for a Var of a trace.

    Operators and array methods are attached by needle.numpy.
    """
    __slots__ = ("_trace", "_var", "source", "__weakref__")
    __array_priority__ = 1000

    def __init__(self, trace, var, source=""):
        self._trace, self._var, self.source = trace, var, source

    aval = property(lambda self: self._var.aval)
    shape = property(lambda self: self._var.aval.shape)
    dtype = property(lambda self: self._var.aval.dtype)
    ndim = property(lambda self: self._var.aval.ndim)
    size = property(lambda self: self._var.aval.size)
    weak_type = property(lambda self: self._var.aval.weak_type)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d traced array")
        return self.shape[0]

    def __repr__(self):
        return f"Traced<{self.aval}>"

    def _concrete(self, what, fix):
        if not self._trace.active:
            raise _leaked(self)
        raise ConcretizationError(
            f"{what} of a traced value ({self.aval.str_short()}) at {user_line(3)}: the "
            f"value is not known while {self._trace.name} is traced. {fix}")

    def __bool__(self):
        self._concrete("Python `if`/`while`/`bool()` needs the truth value",
                       "Use needle.lax.cond(pred, true_fun, false_fun, *operands) for a "
                       "branch, needle.lax.while_loop / fori_loop for a loop, or "
                       "needle.numpy.where(cond, a, b) to select between values; or mark "
                       "the argument static (static_argnums / static_argnames).")

    def __int__(self):
        self._concrete("int() needs the value", "Mark the argument static "
                       "(static_argnums / static_argnames) if it is a size or a count.")

    def __float__(self):
        self._concrete("float() needs the value", "Keep it as an array, or mark the "
                       "argument static.")

    def __index__(self):
        self._concrete("using it as a Python index or size needs the value",
                       "Index with needle.numpy.take, or mark the argument static.")

    def __array__(self, dtype=None, copy=None):
        self._concrete("converting to a numpy array needs the value",
                       "Use needle.numpy functions on traced values, not numpy's.")

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d traced array")
        return (self[i] for i in range(self.shape[0]))

    def __setitem__(self, idx, val):
        raise TypeError(
            f"traced arrays are immutable: in-place assignment x[...] = v to a traced "
            f"{self.aval.str_short()} at {user_line(2)} is not supported. Use the "
            f"functional form x = x.at[idx].set(v) (or .add / .mul).")

    def __hash__(self):
        raise TypeError("traced arrays are not hashable")


def trace_to_graph(fn, in_avals, name="f", arg_paths=None):
    """Trace `fn(*tracers)`; return (ClosedGraph, out_treedef).

    `fn` takes flat positional arrays and returns any pytree of arrays.
    """
    trace = GraphTrace(name)
    _STACK.traces.append(trace)
    try:
        tracers = [trace.new_tracer(a, f"argument {p}" if arg_paths else "an argument")
                   for a, p in zip(in_avals, arg_paths or [""] * len(in_avals))]
        out = fn(*tracers)
        leaves, out_tree = pytree.tree_flatten(out)
        paths = pytree.leaf_paths(out_tree)
        outvars = []
        for leaf, path in zip(leaves, paths):
            if not isinstance(leaf, (Tracer, np.ndarray, np.generic, bool, int, float)):
                raise TracingError(f"{name} returned output{path} of type "
                                   f"{type(leaf).__name__}; outputs must be arrays or "
                                   f"scalars (pytrees of them)")
            outvars.append(trace.to_atom(leaf))
    finally:
        _STACK.traces.pop()
        trace.active = False
    graph = Graph(trace.constvars, [t._var for t in tracers], trace.eqns, outvars)
    return ClosedGraph(graph, trace.const_vals), out_tree


def abstractify(x, path="argument"):
    """ShapedArray of a jit argument leaf, with an error naming its path."""
    if isinstance(x, Tracer):
        if not x._trace.active:
            raise _leaked(x)
        return x.aval
    if isinstance(x, ShapedArray):
        return x
    if hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (np.ndarray, np.generic)):
        return ShapedArray(tuple(x.shape), dtypes.canonicalize(x.dtype, path))    # a ShapeDtypeStruct
    if isinstance(x, (np.ndarray, np.generic, bool, int, float)):
        try:
            return aval_of(x)
        except dtypes.DTypeError:
            pass
        try:
            dtypes.canonicalize(np.asarray(x).dtype, f"{path} (shape {np.shape(x)})")
        except dtypes.DTypeError as e:
            raise TracingError(f"{e}; convert it first, e.g. x.astype(numpy.float32)"
                               ) from None
        raise AssertionError("unreachable")  # pragma: no cover
    raise TracingError(f"{path} has type {type(x).__name__}, which needle cannot trace: "
                       f"arguments must be numpy arrays, numpy scalars or Python scalars "
                       f"(in tuples, lists, dicts or registered pytrees); pass other values "
                       f"as static arguments")
