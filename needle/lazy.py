"""The public package: the course's lazy Tensors (issue 16). An operation on
Tensors outside any transform records an equation on the lazy trace; a
value is computed when it is read, by compiling the recorded graph through
the same lowering as `jit` (needle/lowering.py), cached by its structure.

Input: primitives bound (by needle.numpy, on a Tensor's value) on
`LazyTracer`s; reads of values (`.numpy()`, `float(t)`, printing, `bool`);
`Tensor.backward()`. Output: concrete arrays (numpy, or device Arrays),
and the gradients `backward` writes into `.grad`.

A LazyTracer is a Tracer of `LAZY`, an always-active trace below every
graph trace (level -0.5: above the eager CUDA trace, below `jit`), as a
device Array is one of the eager CUDA trace. So `bind` hands it every
primitive with a lazy operand: the abstract evaluation runs at once (a
shape error names the op, the shapes and the user's line, as under
`jit`), and the equation is kept as a `_Node` that the result tracers
point to. Nothing else holds a node: a graph no Tensor reaches any more is
freed by reference counting.

Realizing a set of tracers walks their unrealized ancestry (`_collect`),
keys it by structure (primitives, params, edges, literals, input types;
never values), and runs the Executable cached under that key: a training
loop compiles each distinct graph once, then builds a key and looks it up.
`backward` walks the whole ancestry (through values already realized, so
gradients flow through a Tensor that was printed), differentiates the
recorded graph with needle's autodiff pass (`needle.vjp` traced into one
program with the forward) and compiles forward and backward together.

Cut points keep the graphs' structure repeating from step to step: reading
a value, `backward()`, writing a cell (`p.data = ...`, which optimizers do:
needle/tensor.py realizes the value written), and a chain of more than
`MAX_DEPTH` unrealized equations (realized as it is recorded).

Beside it: needle/lazy_module.py records a Module call from a cached trace
of its forward, as one node (`GraphCall`, inlined by `_build`);
needle/lazy_jit.py runs `backward()` inside `jit` and `opt.step()` after a
lazy backward as one jitted update.
"""
import contextlib
import itertools
import threading
import weakref

import numpy as np

from . import lowering
from .array import Array
from .ir.core import ClosedGraph, Eqn, Graph, Lit, Var, aval_of
from .ir.interpreter import eval_graph, run_numpy
from .passes.autodiff import stop_gradient_p
from .tracer.core import _STACK, Tracer, trace_to_graph, with_location
from .tracer.source import user_line

__all__ = ["LazyTracer", "no_grad", "enable_grad", "realize", "concrete", "backward",
           "cache_info", "clear_cache", "MAX_DEPTH", "GraphCall", "record_call"]

# A chain of more unrealized equations than this is realized as it is
# recorded (a Python loop without reads must not grow one graph forever).
MAX_DEPTH = 1000


class _State(threading.local):
    """Per thread: `recording` > 0 inside a Module called on Tensors (its
    cells' values are read as lazy leaves), `no_grad` > 0 inside no_grad()."""
    def __init__(self):
        self.recording = 0
        self.no_grad = 0
        self.live = []          # weak references: Tensors holding unrealized values
        self.live_limit = 4096


STATE = _State()


class _LazyTrace:
    """The trace every LazyTracer belongs to (module docstring)."""
    level = -0.5
    name = "lazy"
    active = True

    def process(self, prim, args, params):
        atoms, avals = [], []
        d, rg = 0, False
        for a in args:
            if type(a) is not LazyTracer:
                a = _atom(a)
                if type(a) is not LazyTracer:          # a Lit
                    atoms.append(a)
                    avals.append(a.aval)
                    continue
            atoms.append(a)
            avals.append(a._var.aval)
            if a._rg:
                rg = True
            n = a._node
            if n is not None and a._val is None and n.depth > d:
                d = n.depth
        out_avals, pk = _abstract_eval(prim, avals, params)
        outs = _record(prim, atoms, params, out_avals, pk, d + 1, rg)
        return outs if prim.multiple_results else outs[0]


def _record(prim, atoms, params, out_avals, pk, depth, rg):
    """The result tracers of a new node (realized at once past MAX_DEPTH)."""
    node = _Node(prim, atoms, params, out_avals, pk, depth, rg)
    outs = [_node_out(node, i) for i in range(len(out_avals))]
    if depth > MAX_DEPTH:
        realize(outs)
    return outs


def record_checked(prim, atoms, params, out_avals, pk):
    """Record an equation whose result avals are known (a replayed trace,
    needle/lazy_module.py: its operands have the traced avals, so the
    abstract evaluation would give `out_avals`). atoms: LazyTracers and
    Lits. Returns the list of result tracers."""
    d, rg = 0, False
    for a in atoms:
        if type(a) is LazyTracer:
            if a._rg:
                rg = True
            n = a._node
            if n is not None and a._val is None and n.depth > d:
                d = n.depth
    return _record(prim, atoms, params, out_avals, pk, d + 1, rg)


class GraphCall:
    """The primitive of a Module call recorded as one node
    (needle/lazy_module.py): the equations of `graph`, a traced forward
    (operands: its constvars then its invars), inlined with fresh Vars when
    a graph holding the node is built (_build). Its structure-key entry is
    `uid`: shared by GraphCalls whose graphs have equal `structure` (a
    hashable description of everything the program depends on, made by
    lazy_module._structure), fresh when there is none. A training step so
    records, walks and keys one node per top-level Module call instead of
    one per equation."""
    kind = "call"
    multiple_results = True
    effectful = False
    name = "lazy_module_call"

    def __init__(self, graph, structure=None):
        self.graph = graph
        self.invars = list(graph.constvars) + list(graph.invars)
        made = set()
        for e in graph.eqns:
            made.update(e.outs)
        # the distinct outputs an equation makes: the node's results
        self.produced = []
        for v in graph.outvars:
            if isinstance(v, Var) and v in made and v not in self.produced:
                self.produced.append(v)
        self.out_avals = [v.aval for v in self.produced]
        self.length = len(graph.eqns)
        chain = {}                  # the longest chain of equations ending at a Var
        for e in graph.eqns:
            c = 1 + max([chain.get(a, 0) for a in e.inputs if isinstance(a, Var)], default=0)
            for v in e.outs:
                chain[v] = c
        self.depth = max(chain.values(), default=0)
        # structure: a hashable description of the graph (lazy_module._structure),
        # so equal forwards traced apart (a new state epoch) share programs
        try:
            uid = None if structure is None else _CALL_IDS.get(structure)
        except TypeError:                   # unhashable params (a loop body)
            structure = uid = None
        if uid is None:
            uid = ("call", next(_ids))
            if structure is not None:
                if len(_CALL_IDS) > 4096:
                    _CALL_IDS.clear()       # uids are never reused: programs stay valid
                _CALL_IDS[structure] = uid
        self.uid = uid


_CALL_IDS = {}          # graph structure -> the uid of GraphCalls with that structure


def record_call(call, atoms):
    """Record GraphCall `call` on `atoms` (LazyTracers, one per
    call.invars, with their avals). Returns the result tracers (one per
    call.produced)."""
    d, rg = 0, False
    for a in atoms:
        if a._rg:
            rg = True
        n = a._node
        if n is not None and a._val is None and n.depth > d:
            d = n.depth
    return _record(call, atoms, {}, call.out_avals, call.uid, d + call.depth, rg)


def equation_id(prim, avals, params):
    """The structure-key entry of an equation (see _abstract_eval)."""
    return _abstract_eval(prim, avals, params)[1]


LAZY = _LazyTrace()


# (primitive, params, operand avals) -> (result avals, a small int naming the
# triple): abstract evaluation is a pure function of these, and a training
# loop records the same ones each step; the int is the equation's entry in
# structure keys (cheap to hash and compare)
_AVALS = {}
_ids = itertools.count()


def _abstract_eval(prim, avals, params):
    try:
        key = (prim, tuple(params.items()), tuple(avals))
        hit = _AVALS.get(key)
    except TypeError:                   # unhashable params (a loop body)
        key, hit = None, None
    if hit is not None:
        return hit
    try:
        out = prim.abstract_eval(*avals, **params)
    except (ValueError, TypeError) as e:
        raise with_location(e, user_line(4)) from None
    if key is None:
        return out, [prim]          # unhashable: a graph holding it is compiled uncached
    if len(_AVALS) > 8192:
        _AVALS.clear()              # ids are never reused: cached programs stay valid
    hit = _AVALS[key] = (out, next(_ids))
    return hit


class _Node:
    """One recorded equation: primitive, params, operands (LazyTracers and
    Lits), the Vars of its results. `depth`: the longest chain of
    unrealized equations ending here; `rg`: whether an operand's ancestry
    reads a Tensor that requires grad; `nograd`: recorded under no_grad()."""
    __slots__ = ("prim", "params", "args", "outvars", "pk", "nograd", "depth", "rg",
                 "__weakref__")

    def __init__(self, prim, args, params, out_avals, pk, depth, rg):
        self.prim, self.args, self.params, self.pk = prim, args, params, pk
        self.outvars = [Var(a) for a in out_avals]
        ng = self.nograd = STATE.no_grad > 0
        self.depth = depth
        self.rg = rg and not ng


class LazyTracer(Tracer):
    """A value of the lazy trace: a leaf (`_val` set, no node: a Tensor's
    concrete array, `_owner` a weak reference to that Tensor) or the `_i`-th
    result of `_node` (`_val` set once realized)."""
    __slots__ = ("_node", "_i", "_val", "_owner", "_rg")

    def __bool__(self):
        return bool(concrete(self))

    def __int__(self):
        return int(concrete(self))

    def __float__(self):
        return float(concrete(self))

    def __index__(self):
        return int(np.asarray(concrete(self)).__index__())

    def __array__(self, dtype=None, copy=None):
        a = np.asarray(concrete(self))
        return a if dtype is None else a.astype(dtype)

    def __repr__(self):
        return f"Lazy<{self.aval}>" if self._val is None else f"Lazy({np.asarray(self._val)!r})"


def _node_out(node, i):
    t = object.__new__(LazyTracer)
    t._trace, t._var, t.source = LAZY, node.outvars[i], ""
    t._node, t._i, t._val, t._owner, t._rg = node, i, None, None, node.rg
    return t


def leaf(value, owner=None, rg=False, aval=None):
    """A lazy leaf holding concrete `value` (a numpy array or device Array);
    `owner`: the Tensor whose value it is (backward fills its `.grad`);
    `aval`: the value's aval when the caller knows it."""
    t = object.__new__(LazyTracer)
    if aval is None:
        aval = value.aval if isinstance(value, Array) else aval_of(value)
    t._trace, t._var, t.source = LAZY, Var(aval), ""
    t._node, t._i, t._val = None, 0, value
    t._owner = weakref.ref(owner) if owner is not None else None
    t._rg = rg and STATE.no_grad == 0
    return t


def _atom(a):
    """An operand as the lazy trace holds it: a LazyTracer, or a Lit."""
    if type(a) is LazyTracer or isinstance(a, Lit):
        return a
    if isinstance(a, (bool, int, float, np.generic)):
        return Lit(a)
    if isinstance(a, Array):
        return leaf(a)
    if isinstance(a, Tracer):          # pragma: no cover (bind gives those to their trace)
        raise AssertionError("a graph tracer reached the lazy trace")
    return leaf(np.asarray(a))


def detach(t):
    """`t` cut from differentiation: a leaf of its value when it has one,
    else a stop_gradient equation (the identity when only values are
    realized)."""
    if t._val is not None:
        return leaf(t._val)
    node = _Node(stop_gradient_p, [t], {}, [t.aval], ("stop_gradient", t.aval), 1, False)
    return _node_out(node, 0)


# --- realization ---------------------------------------------------------------------

_cache = {}
_lock = threading.Lock()
_stats = {"compiles": 0, "hits": 0, "realizations": 0, "uncached": 0, "eager": 0}


def cache_info():
    """{'compiles', 'hits', 'realizations', 'uncached', 'eager', 'entries'}:
    programs compiled for lazy graphs, cache hits, graphs realized, graphs
    whose params could not be hashed (compiled every time), one-primitive
    graphs run by numpy's implementation, programs cached."""
    return dict(_stats, entries=len(_cache))


def clear_cache():
    _cache.clear()
    for k in _stats:
        _stats[k] = 0


def _is_input(t, full):
    return t._node is None or (not full and t._val is not None)


def _collect(targets, full, extra=None):
    """(nodes in topological order, input tracers, structure key, targets)
    of the graph computing `targets`. full: walk through realized values to
    the leaves (backward); else realized values are inputs. extra(pos):
    more targets among the collected nodes (pos: id(node) -> position).

    One depth-first pass: a node's key entry is made when its operands'
    nodes all have positions (post-order); inputs are numbered in the order
    first met, so equal structures give equal keys."""
    order, pos, keys = [], {}, []
    inputs, ipos = [], {}
    stack = [t._node for t in reversed(targets) if not _is_input(t, full)]
    while stack:
        n = stack[-1]
        nid = id(n)
        if nid in pos:
            stack.pop()
            continue
        refs, pushed = [], False
        for a in n.args:
            if type(a) is LazyTracer:
                m = a._node
                if m is None or (not full and a._val is not None):      # an input
                    k = ipos.get(id(a))
                    if k is None:
                        k = ipos[id(a)] = len(inputs)
                        inputs.append(a)
                    refs.append(k)
                else:
                    p = pos.get(id(m))
                    if p is None:
                        stack.append(m)
                        pushed = True
                    elif not pushed:
                        refs.append((p, a._i))
            elif not pushed:
                refs.append(("l", a.val.tobytes(), a.aval.dtype.char, a.aval.weak_type))
        if pushed:
            continue
        stack.pop()
        pos[nid] = len(order)
        order.append(n)
        keys.append((n.pk, tuple(refs), n.nograd and full))
    if extra is not None:
        targets = list(targets) + extra(pos)
    outs = []
    for t in targets:
        if _is_input(t, full):
            k = ipos.get(id(t))
            if k is None:
                k = ipos[id(t)] = len(inputs)
                inputs.append(t)
            outs.append(k)
        else:
            outs.append((pos[id(t._node)], t._i))
    sig = []
    for t in inputs:
        a = t._var.aval
        sig.append((a.shape, a.dtype.char, a.weak_type, isinstance(t._val, Array)))
    return order, inputs, (full, tuple(keys), tuple(sig), tuple(outs)), targets


def _build(order, inputs, targets, full):
    """The Graph of a collected computation (fresh Eqns over the nodes' Vars).
    Value graphs drop stop_gradient (the identity); backward graphs keep
    it, and add it after each equation recorded under no_grad()."""
    subst = {}

    def atom(a):
        if type(a) is LazyTracer:
            v = a._var
            return subst.get(v, v)
        return a

    eqns = []
    for n in order:
        if n.prim is stop_gradient_p and not full:
            subst[n.outvars[0]] = atom(n.args[0])
            continue
        if type(n.prim) is GraphCall:
            _inline(n, [atom(a) for a in n.args], full, subst, eqns)
        else:
            eqns.append(Eqn(n.prim, [atom(a) for a in n.args], dict(n.params),
                            list(n.outvars)))
        if full and n.nograd:
            for v in n.outvars:
                if v.aval.dtype.kind == "f":
                    nv = Var(v.aval)
                    eqns.append(Eqn(stop_gradient_p, [subst.get(v, v)], {}, [nv]))
                    subst[v] = nv
    return Graph([], [t._var for t in inputs], eqns, [atom(t) for t in targets])


def _inline(n, args, full, subst, eqns):
    """Append the equations of GraphCall node `n` (operands `args`) to
    `eqns` with fresh Vars; subst maps the node's result Vars to them."""
    call = n.prim
    env = dict(zip(call.invars, args))

    def read(v):
        return v if isinstance(v, Lit) else env[v]
    for e in call.graph.eqns:
        ins = [read(a) for a in e.inputs]
        if e.prim is stop_gradient_p and not full:
            env[e.outs[0]] = ins[0]
            continue
        outs = [Var(v.aval) for v in e.outs]
        env.update(zip(e.outs, outs))
        eqns.append(Eqn(e.prim, ins, dict(e.params), outs, e.source))
    for v, gv in zip(n.outvars, call.produced):
        subst[v] = env[gv]


def _device(inputs):
    return "cuda" if any(isinstance(t._val, Array) for t in inputs) else "cpu"


def _lookup(key, make):
    try:
        exe = _cache.get(key)
    except TypeError:               # unhashable params (a loop body): compile each time
        _stats["uncached"] += 1
        return make()
    if exe is not None:
        _stats["hits"] += 1
        return exe
    with _lock:
        exe = _cache.get(key)
        if exe is None:
            exe = _cache[key] = make()
    return exe


def _compile(cg, inputs, name):
    _stats["compiles"] += 1
    return lowering.lower(cg, _device(inputs), name)[1]


def realize(tracers, interpret=False):
    """Compute the values of the unrealized LazyTracers among `tracers`, as
    one graph; `interpret`: with the numpy reference interpreter
    (ir.interpreter.run_numpy), nothing compiled."""
    todo, seen = [], set()
    for t in tracers:
        if t._val is None and id(t) not in seen:
            seen.add(id(t))
            todo.append(t)
    if not todo:
        return
    order, inputs, key, _ = _collect(todo, False)
    _stats["realizations"] += 1
    if interpret or len(order) == 1 and len(todo) == 1 and _device(inputs) == "cpu" and \
            order[0].prim is not stop_gradient_p and order[0].prim.kind not in ("control",
                                                                                "call"):
        # one primitive on host arrays (a reshape while a model is built, a
        # read of one op's result): numpy's implementation, as needle's eager
        # calls, rather than a compiled program for it
        outs = run_numpy(_build(order, inputs, todo, False), [],
                         [t._val for t in inputs])
        _stats["eager"] += 1
    else:
        exe = _lookup(key, lambda: _compile(
            ClosedGraph(_build(order, inputs, todo, False), []), inputs, "lazy"))
        outs = exe(*[t._val for t in inputs])
    for t, v in zip(todo, outs):
        t._val = v
        if not t._rg:
            t._node = None          # no gradient flows through it: free its graph


def concrete(t):
    """The concrete value of LazyTracer `t` (realizing it)."""
    if t._val is None:
        if _STACK.traces:           # read while a graph is traced: compute it outside
            saved = _STACK.traces
            _STACK.traces = []
            try:
                realize([t])
            finally:
                _STACK.traces = saved
        else:
            realize([t])
    return t._val


# --- backward ------------------------------------------------------------------------

def _wrt(inputs):
    """Positions of the inputs whose owner Tensor is alive, requires grad
    and holds floats."""
    out = []
    for k, t in enumerate(inputs):
        o = t._owner() if t._owner is not None else None
        if o is not None and o.requires_grad and t._var.aval.dtype.kind == "f":
            out.append(k)
    return tuple(out)


def vjp_program(fwd, wrt):
    """A function of (*inputs, cotangent) returning [output, *other outputs,
    *gradients of the inputs at `wrt`]: the forward Graph `fwd` (outputs:
    the differentiated one first) differentiated by needle.vjp. Traced into
    a graph (lazy backward) or into the open jit trace (backward under jit);
    the forward is bound twice, and the pipeline's CSE merges the copies."""
    from .autodiff import vjp
    n = len(fwd.invars)

    def program(*xs):
        ins, ct = list(xs[:n]), xs[n]
        outs = _eval_values(fwd, ins)
        if not wrt:
            return outs

        def f(*w):
            full = list(ins)
            for p, v in zip(wrt, w):
                full[p] = v
            return eval_graph(fwd, [], full)[0]
        out, pull = vjp(f, *[ins[p] for p in wrt])
        return [out, *outs[1:], *pull(ct)]
    return program


def _eval_values(graph, args):
    """eval_graph with stop_gradient as the identity (outside differentiation
    the marker must not reach the pipeline)."""
    env = dict(zip(graph.invars, args))

    def read(v):
        return v.val if isinstance(v, Lit) else env[v]
    for e in graph.eqns:
        ins = [read(a) for a in e.inputs]
        if e.prim is stop_gradient_p:
            env[e.outs[0]] = ins[0]
            continue
        outs = e.prim.bind(*ins, **e.params)
        env.update(zip(e.outs, outs if e.prim.multiple_results else [outs]))
    return [read(v) for v in graph.outvars]


def note_live(tensor):
    """Remember (weakly) a Tensor holding an unrealized value: a backward
    whose graph computes it outputs its value too (the logits of a loss,
    read after `loss.backward()`, come with the gradients)."""
    st = STATE
    st.live.append(weakref.ref(tensor))
    if len(st.live) > st.live_limit:          # prune; grow the limit if most are alive
        _live_in({}, None)
        st.live_limit = max(4096, 2 * len(st.live))


def _live_in(pos, exclude):
    """The unrealized values of live Tensors that nodes in `pos` compute (in
    the order the Tensors were made); forgets dead and realized ones."""
    out, keep, seen = [], [], {id(exclude)}
    for r in STATE.live:
        o = r()
        if o is None:
            continue
        v = o._value
        if type(v) is not LazyTracer or v._val is not None:
            continue
        keep.append(r)
        n = v._node
        if n is not None and id(n) in pos and id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    STATE.live[:] = keep
    return out


def backward(t, out_grad, assign):
    """Realize LazyTracer `t` and the gradients of its graph's inputs in one
    compiled program; `assign(owner, grad)` for each input whose owner
    Tensor requires grad (a Tensor read twice with different values gets
    the sum). `out_grad`: the cotangent of `t` (ones when None)."""
    aval = t.aval.strong()
    ct = np.ones(aval.shape, aval.dtype) if out_grad is None else \
        np.asarray(out_grad, dtype=aval.dtype)
    if ct.shape != tuple(aval.shape):
        raise ValueError(f"Tensor.backward: out_grad has shape {ct.shape}, expected "
                         f"{tuple(aval.shape)} (the shape of the Tensor)")
    if t._node is None:                         # a leaf: its gradient is out_grad
        o = t._owner() if t._owner is not None else None
        if o is not None and o.requires_grad:
            assign(o, ct)
        return
    order, inputs, key, targets = _collect([t], True, lambda pos: _live_in(pos, t))
    wrt = _wrt(inputs)
    _stats["realizations"] += 1

    def make():
        fwd = _build(order, inputs, targets, True)
        prog = vjp_program(fwd, wrt)
        cg, _ = trace_to_graph(prog, [x._var.aval for x in inputs] + [aval], "backward")
        return _compile(cg, inputs, "lazy backward")
    exe = _lookup(("bwd", key, wrt), make)
    outs = exe(*[x._val for x in inputs], ct)
    for x, v in zip(targets, outs):
        if x._val is None:
            x._val = v
    grads = {}
    for k, g in zip(wrt, outs[len(targets):]):
        o = inputs[k]._owner()
        if id(o) in grads:
            grads[id(o)] = (o, grads[id(o)][1] + g)
        else:
            grads[id(o)] = (o, g)
    for o, g in grads.values():
        assign(o, g)


# --- no_grad, and recording inside Module calls ----------------------------------

@contextlib.contextmanager
def no_grad():
    """Inside: Tensors made by operations do not require grad, and nothing
    recorded is differentiated by a later backward() (evaluation)."""
    STATE.no_grad += 1
    try:
        yield
    finally:
        STATE.no_grad -= 1


@contextlib.contextmanager
def enable_grad():
    """Undo an enclosing no_grad()."""
    saved, STATE.no_grad = STATE.no_grad, 0
    try:
        yield
    finally:
        STATE.no_grad = saved


def call_module(module, args, kwargs):
    """`module.forward(*args, **kwargs)` with cell reads recorded lazily: a
    Module called on Tensors outside any transform reads its parameters and
    buffers as lazy leaves, so the layer's result is a lazy Tensor whose
    graph reaches them (needle/nn/module.py calls this). A call whose
    structure was seen before records the equations of a cached trace of
    `forward` instead (needle/lazy_module.py)."""
    if not kwargs:
        from .lazy_module import NO, replay
        out = replay(module, args)
        if out is not NO:
            return out
    st = STATE
    st.recording += 1
    try:
        return module.forward(*args, **kwargs)
    finally:
        st.recording -= 1


