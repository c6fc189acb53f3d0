"""The public package: a Module called on lazy Tensors records its forward
from a cached trace (issue 16's per-op cost).

Input: a Module and the positional arguments of a call outside transforms
(Tensors, arrays, static Python values). Output: the forward's result with
its equations recorded on the lazy trace (needle/lazy.py), or None when
the call cannot be replayed (then the caller runs `forward` itself).

Recording a layer op by op runs needle.numpy's dispatch (promotion,
broadcasting, shape checks) for every operation, every step. Instead the
first call with a given structure (the module's cells and static
attributes: the state epoch; the arguments' shapes, dtypes, kinds)
traces `forward` once into a Graph, as `jit` does, with the module's
cells as inputs; later calls record that Graph as one node of the lazy
trace (lazy.GraphCall, keyed by the graph's structure: `_structure`),
whose equations are inlined only when a graph holding it is compiled: the
same equations, recorded without the Python that made them, and walked
and keyed as one node per step. A graph with an effectful equation binds
its equations one by one instead (`_bind_graph`).

A forward that writes state (BatchNorm statistics in training, a
Dropout's random stream), reads a cell the module does not hold, reads a
value in Python, or fails to trace, is marked and always called directly.

As under `jit`, the Python of a replayed forward runs once per structure:
a `print` or a list append in `forward` happens when it is traced, and a
global it reads is read then. `needle.lazy_module.ENABLED[0] = False`
records every call op by op (eager Python semantics).
"""
import weakref

import numpy as np

from .ir.core import Lit
from .lazy import STATE, GraphCall, LazyTracer, equation_id, leaf, record_call, \
    record_checked
from .passes.autodiff import record_markers, stop_gradient_p
from .state import Frame, gather
from .tensor import Tensor, epoch
from .tracer import pytree
from .tracer.core import Tracer, abstractify, current_trace, trace_to_graph

__all__ = ["replay", "ENABLED", "NO"]

ENABLED = [True]         # needle.lazy_module.ENABLED[0] = False: record op by op
_TRACES = weakref.WeakKeyDictionary()     # module -> {signature: entry or None}
_MAX_ENTRIES = 16
NO = object()           # replay's answer when the caller must run forward itself


def _signature(args):
    """(hashable signature, positions of traced arguments) or None."""
    sig, pos = [], []
    for i, a in enumerate(args):
        if isinstance(a, Tensor):
            v = a._value
            weak = type(v) is LazyTracer and v._var.aval.weak_type
            sig.append(("T", tuple(v.shape), np.dtype(v.dtype).str, weak, a.requires_grad,
                        type(a)))
            pos.append(i)
        elif isinstance(a, np.ndarray):
            sig.append(("A", a.shape, a.dtype.str))
            pos.append(i)
        elif a is None or isinstance(a, (bool, int, float, str)):
            sig.append(("S", type(a), a))
        else:
            return None, None
    return tuple(sig), pos


class _Entry:
    """A traced forward: its Graph (inputs: the traced arguments, then the
    module's cells), constants (as lazy leaves), cells, output treedef."""
    __slots__ = ("graph", "consts", "cells", "tree", "steps", "call", "outs")


def _trace(module, args, pos):
    g = gather([module], ["self"])
    cells = g.cells
    n = len(pos)
    in_vals = [args[i]._value if isinstance(args[i], Tensor) else args[i] for i in pos]
    avals = [abstractify(v) for v in in_vals] + [abstractify(c._value) for c in cells]
    fr = Frame("jit", type(module).__name__)
    rec = {}

    def flat(*xs):
        full = list(args)
        for i, x in zip(pos, xs):
            a = args[i]
            full[i] = Tensor._make(x, a.requires_grad) if isinstance(a, Tensor) else x
        fr.trace = current_trace()
        with fr, record_markers():          # stop_gradient kept for backward()
            fr.swap_in(cells, xs[n:])
            out = module.forward(*full)
            leaves, rec["tree"] = pytree.tree_flatten(out)
        for v in leaves:
            if not isinstance(v, (Tracer, np.ndarray, np.generic, bool, int, float)):
                raise TypeError("not an array")
        return leaves
    cg, _ = trace_to_graph(flat, avals, f"lazy {type(module).__name__}")
    if fr.writes or fr.implicit:
        return None
    e = _Entry()
    e.graph, e.cells, e.tree = cg.graph, cells, rec["tree"]
    e.steps = _steps(cg.graph)
    e.consts = [leaf(np.asarray(c)) if isinstance(c, np.ndarray) else c for c in cg.consts]
    e.call = e.outs = None
    if all(type(c) is LazyTracer for c in e.consts) and \
            not any(ex.prim.effectful for ex in cg.graph.eqns):
        e.call = GraphCall(cg.graph, _structure(cg.graph, e.steps))
        e.outs = _out_map(cg.graph, e.call)
    return e


def _structure(graph, steps):
    """A hashable key of everything in `graph` that its program depends on:
    the operands' avals, per equation its structure-key id (primitive,
    params, operand avals: lazy.equation_id) and operands (numbered inputs,
    earlier results, literal values), the outputs. None when an equation
    has no id (unhashable params): the graph then gets a uid of its own."""
    num = {v: k for k, v in enumerate(list(graph.constvars) + list(graph.invars))}
    sig = tuple((v.aval.shape, v.aval.dtype.char, v.aval.weak_type) for v in num)
    eqs = []
    for i, (e, pk) in enumerate(steps):
        if pk is None:
            if e.prim is not stop_gradient_p:
                return None
            pk = ("stop_gradient", e.inputs[0].aval)
        refs = []
        for a in e.inputs:
            if isinstance(a, Lit):
                refs.append(("l", a.val.tobytes(), a.aval.dtype.char, a.aval.weak_type))
            else:
                refs.append(num[a])
        for j, v in enumerate(e.outs):
            num[v] = (i, j)
        eqs.append((pk, tuple(refs)))
    outs = tuple(("l", v.val.tobytes(), v.aval.dtype.char) if isinstance(v, Lit) else num[v]
                 for v in graph.outvars)
    return sig, tuple(eqs), outs


def _out_map(graph, call):
    """Per output of `graph`: ("n", j) the j-th result of the call's node,
    ("i", k) its k-th operand, ("l", value) a literal."""
    out, ins = [], {v: k for k, v in enumerate(call.invars)}
    for v in graph.outvars:
        if isinstance(v, Lit):
            out.append(("l", v.val))
        elif v in ins:
            out.append(("i", ins[v]))
        else:
            out.append(("n", call.produced.index(v)))
    return out


def _record_call(entry, vals):
    """The outputs of `entry`'s graph, recorded as one GraphCall node."""
    atoms = entry.consts + [v if type(v) is LazyTracer else leaf(np.asarray(v))
                            for v in vals]
    res = record_call(entry.call, atoms) if entry.call.produced else []
    return [res[k] if w == "n" else atoms[k] if w == "i" else k for w, k in entry.outs]


def _steps(graph):
    """Per equation: (primitive, inputs, params, result avals, structure-key
    id), the ids computed once (lazy.equation_id); None for a primitive the
    lazy trace does not record as is (stop_gradient, an effect)."""
    out = []
    for e in graph.eqns:
        if e.prim is stop_gradient_p or e.prim.effectful:
            out.append((e, None))
            continue
        try:
            pk = equation_id(e.prim, [a.aval for a in e.inputs], e.params)
        except Exception:
            pk = None
        out.append((e, pk))
    return out


def _bind_graph(steps, graph, consts, args):
    """The graph's equations recorded on the lazy trace: directly (the
    operands have the traced avals, so the results' are known), or through
    bind for the others."""
    env = dict(zip(graph.constvars, consts))
    env.update(zip(graph.invars, args))

    def read(v):
        return v if isinstance(v, Lit) else env[v]
    for e, pk in steps:
        ins = [read(a) for a in e.inputs]
        if pk is not None and all(type(a) is LazyTracer or isinstance(a, Lit) for a in ins):
            outs = record_checked(e.prim, ins, e.params, [v.aval for v in e.outs], pk)
            env.update(zip(e.outs, outs))
            continue
        ins = [a.val if isinstance(a, Lit) else a for a in ins]
        if e.prim is stop_gradient_p and type(ins[0]) is not LazyTracer:
            env[e.outs[0]] = ins[0]
            continue
        outs = e.prim.bind(*ins, **e.params)
        env.update(zip(e.outs, outs if e.prim.multiple_results else [outs]))
    return [read(v).val if isinstance(read(v), Lit) else read(v) for v in graph.outvars]


def replay(module, args):
    """The result of `module(*args)` recorded from its cached trace, or NO."""
    if not ENABLED[0]:
        return NO
    sig, pos = _signature(args)
    if sig is None:
        return NO
    key = (epoch(), sig)
    table = _TRACES.get(module)
    if table is None:
        table = _TRACES[module] = {}
    entry = table.get(key)
    if entry is None:
        if len(table) >= _MAX_ENTRIES:
            table.clear()
        try:
            entry = _trace(module, args, pos)
        except Exception:           # Python reads a value, an unsupported argument, ...
            entry = False
        if entry is None:
            entry = False
        table[key] = entry
    if entry is False:
        return NO
    vals = [args[i]._lazy() if isinstance(args[i], Tensor) else args[i] for i in pos]
    vals += [c._lazy() for c in entry.cells]
    if entry.call is not None:
        outs = _record_call(entry, vals)
    else:
        outs = _bind_graph(entry.steps, entry.graph, entry.consts, vals)
    out = pytree.tree_unflatten(entry.tree, outs)
    if STATE.no_grad:
        for t in pytree.tree_leaves(out, is_leaf=lambda x: isinstance(x, Tensor)):
            if isinstance(t, Tensor):
                t._requires_grad = False      # a fresh result: no epoch bump
    return out

