"""The public package: needle's loops and branches, JAX's `lax.scan`, `cond`,
`switch`, `while_loop`, `fori_loop`, `map`, and `checkpoint` / `remat`
(exported from `needle.lax` and `needle`).

Input: Python functions of pytrees of arrays, and their operands.
Output: the results, computed by one higher-order primitive per construct
(ir/primitives/control.py): the body is traced once into a closed sub-graph
at the carry's and one step's types, whatever the trip count, so the
program's size does not grow with the number of steps (an LSTM over 1000
steps traces one cell).

Values a body captures from an enclosing trace become explicit operands of
the primitive. Carries keep their type: a body whose carry output differs
from its input is an error naming the carry's pytree path and both types; a
weakly typed Python scalar in `init` takes the type the body gives it (as in
JAX). A Python `if` / `while` on a traced value is an error that points
here.

State cells (needle/state.py: a BatchNorm's statistics, a Generator's
counter, an optimizer's moments) a body writes are carried, as DESIGN
"State" says: found by tracing the body once, then traced again with them
as extra operands and results. scan and while_loop (fori_loop) carry them
in the loop; every branch of cond / switch returns each cell some branch
writes (a branch that does not write it passes its value through); a
checkpointed function returns them. A while_loop's cond_fun cannot write
a cell (a StateWriteError naming its path).
"""
import functools

import numpy as np

from . import state as _state
from .ir import dtypes
from .ir.core import ClosedGraph, Graph, ShapedArray, Var
from .ir.primitives import checkpoint_p, cond_p, convert_element_type_p, scan_p, while_p
from .tracer import pytree
from .tracer.core import Tracer, abstractify, current_trace, trace_to_graph

__all__ = ["scan", "cond", "switch", "while_loop", "fori_loop", "map", "checkpoint", "remat"]


def _fname(f):
    return getattr(f, "__name__", type(f).__name__)


def _avals(leaves, what):
    return [abstractify(x, what) for x in leaves]


def _operands(leaves, avals):
    """Leaves as bind operands: a Python scalar (or numpy value) as a numpy
    array of its traced dtype (a Python float is float32, weakly typed)."""
    return [x if isinstance(x, Tracer) else np.asarray(x, dtype=a.dtype)
            for x, a in zip(leaves, avals)]


def _bind(prim, operands, **params):
    """Bind `prim`; with concrete operands and no trace (eager), the equation
    is compiled (once per body and operand types, lowering.run_control) and
    its compiled body runs in the loop, as under jit."""
    if current_trace() is None and not any(isinstance(x, Tracer) for x in operands):
        from . import lowering
        return lowering.run_control(prim, operands, params)
    return prim.bind(*operands, **params)


def _convert(x, aval):
    """x as `aval`'s dtype (a promoted weak init)."""
    if isinstance(x, Tracer):
        return convert_element_type_p.bind(x, new_dtype=aval.dtype, weak_type=False)
    return np.asarray(x, dtype=aval.dtype)


def _close(cg):
    """The traced body with its captured values made explicit inputs: returns
    (body ClosedGraph without consts, the captured values)."""
    g = cg.graph
    return ClosedGraph(Graph([], list(g.constvars) + list(g.invars), g.eqns, g.outvars),
                       []), list(cg.consts)


def _type_mismatch(kind, paths, ins, outs):
    lines = []
    for p, a, b in zip(paths, ins, outs):
        if tuple(a.shape) != tuple(b.shape):
            why = "so the shapes do not match"
        elif a.dtype != b.dtype:
            why = "so the dtypes do not match"
        else:
            continue
        lines.append(f"  * the input carry component {kind}{p} has type {a.str_short()} but "
                     f"the corresponding output carry component has type {b.str_short()}, "
                     f"{why}")
    return lines


def _promotable(ins, outs):
    """The init avals to retrace with when only weakly typed inits differ in
    dtype from what the body returns (a Python 0 carried as a float), or None."""
    new, changed = [], False
    for a, b in zip(ins, outs):
        # Widening only: 0 carried as float32 is promoted; 0.5 carried as an
        # int is not (it stays a type error, as in JAX).
        if tuple(a.shape) == tuple(b.shape) and a.dtype != b.dtype and a.weak_type and \
                dtypes.result_type((a.dtype, True), (b.dtype, b.weak_type))[0] == b.dtype:
            new.append(ShapedArray(a.shape, b.dtype, False))
            changed = True
        else:
            new.append(a)
    return new if changed else None


def _check_carry(where, kind, tree_in, tree_out, paths, ins, outs):
    if tree_in != tree_out:
        raise TypeError(f"{where}: the body's carry output has structure {tree_out}, but "
                        f"its carry input has structure {tree_in}; they must be the same")
    lines = _type_mismatch(kind, paths, ins, outs)
    if lines:
        raise TypeError(f"{where}: the body function's carry input and carry output must "
                        f"have equal types, but they differ:\n" + "\n".join(lines))


class _Carried:
    """The state cells a traced function writes, carried as extra operands
    and results (the module docstring): `cells`, their `avals` (strong
    types), and per trace the cells it wrote (`written`)."""

    def __init__(self, where):
        self.where, self.cells, self.avals, self.written = where, [], [], []

    def enter(self, kind, name, values):
        """A Frame for one trace with the carried cells holding `values`."""
        fr = _state.Frame(kind, name)
        fr.__enter__()
        fr.swap_in(self.cells, values)
        return fr

    def leave(self, fr, exc=None):
        """Close the frame; the carried cells' final values (read before the
        originals are put back) and the cells written are recorded."""
        vals = [c._value for c in self.cells] if exc is None else None
        fr.__exit__(None, None, None)
        self.written.extend(c for c, _ in fr.writes)
        return vals

    def grow(self):
        """Add the cells the last traces wrote that are not carried yet;
        True when there were any (then trace again)."""
        have = {id(c) for c in self.cells}
        new = []
        for c in self.written:
            if id(c) not in have:
                have.add(id(c))
                new.append(c)
        self.written = []
        for c in new:
            self.cells.append(c)
            self.avals.append(abstractify(c.value, f"{self.where}: state "
                                                   f"{_state.path_of(c)}").strong())
        return bool(new)

    def check(self, out_avals, what):
        """TypeError naming the cell when a traced function writes a value of
        another shape or dtype than the cell holds (it is a carry)."""
        lines = _type_mismatch("state ", [_state.path_of(c) for c in self.cells],
                               self.avals, out_avals)
        if lines:
            raise TypeError(f"{self.where}: {what} writes state cells with values of another "
                            f"type than they hold (a written cell is carried):\n"
                            + "\n".join(lines))

    def operands(self):
        return _operands([c.value for c in self.cells], self.avals)

    def write(self, values):
        for c, v in zip(self.cells, values):
            c._write(v)


def _with_state(carried, kind, name, n_in, fn):
    """fn(*args[:n_in]) -> list of leaves, traced with the carried cells
    holding args[n_in:]; returns leaves + the cells' final values."""
    def traced(*args):
        fr = carried.enter(kind, name, args[n_in:])
        try:
            leaves = list(fn(*args[:n_in]))
        except BaseException:
            carried.leave(fr, exc=True)
            raise
        return leaves + carried.leave(fr)
    return traced


# --- scan ------------------------------------------------------------------------------

def _static_int(v, what):
    if isinstance(v, Tracer):
        raise TypeError(f"{what} must be a concrete Python int, not a traced value "
                        f"({v.aval.str_short()}); it fixes the loop's shape")
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{what} must be a Python int, got {v!r}")
    return int(v)


def scan(f, init, xs=None, length=None, reverse=False, unroll=1):
    """Loop `f(carry, x) -> (carry, y)` over the leading axis of `xs` (JAX's
    lax.scan): returns (final carry, ys stacked along a new leading axis).
    `xs` is a pytree (or None, with `length`); `reverse=True` runs from the
    last element to the first (ys stay in xs' order); `unroll=k` puts k steps
    in each iteration of the compiled loop."""
    name = _fname(f)
    where = f"scan({name})"
    x_leaves, x_tree = pytree.tree_flatten(xs)
    lengths = []
    for leaf, p in zip(x_leaves, pytree.leaf_paths(x_tree)):
        shape = np.shape(leaf) if not hasattr(leaf, "shape") else tuple(leaf.shape)
        if not shape:
            raise ValueError(f"{where}: xs{p} is a scalar (shape ()); every leaf of xs "
                             f"needs a leading axis to scan over")
        lengths.append((p, shape[0]))
    if length is not None:
        length = _static_int(length, f"{where}: length")
    if len({n for _, n in lengths}) > 1:
        raise ValueError(f"{where}: the leaves of xs have different leading lengths: "
                         + ", ".join(f"xs{p} has {n}" for p, n in lengths))
    if lengths:
        n = lengths[0][1]
        if length is not None and length != n:
            raise ValueError(f"{where}: length={length} but xs has leading length {n}")
        length = n
    elif length is None:
        raise ValueError(f"{where}: with no xs, pass length (the number of steps)")
    if isinstance(unroll, bool):
        unroll = max(length, 1) if unroll else 1
    unroll = _static_int(unroll, f"{where}: unroll")
    if unroll < 1:
        raise ValueError(f"{where}: unroll must be >= 1, got {unroll}")

    c_leaves, c_tree = pytree.tree_flatten(init)
    c_paths = pytree.leaf_paths(c_tree)
    c_avals = _avals(c_leaves, f"{where}: init")
    x_avals = [ShapedArray(a.shape[1:], a.dtype) for a in _avals(x_leaves, f"{where}: xs")]
    nc = len(c_leaves)
    y_tree = []
    # State cells the body writes (a BatchNorm's statistics, a GeneratorCell's
    # counter) are carried after the user's carries: found by tracing, then
    # traced again with them as carries (needle/state.py).
    sc, s_avals, written = [], [], []

    def body(*args):
        ns = len(sc)
        with _state.Frame("scan", name) as fr:
            fr.swap_in(sc, args[nc:nc + ns])
            carry = pytree.tree_unflatten(c_tree, args[:nc])
            x = pytree.tree_unflatten(x_tree, args[nc + ns:])
            out = f(carry, x)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise TypeError(f"{where}: the body must return a pair (carry, y), got "
                                f"{type(out).__name__}")
            new_c, y = out
            leaves, tree = pytree.tree_flatten(new_c)
            out_c_tree[:] = [tree]
            y_leaves, yt = pytree.tree_flatten(y)
            y_tree[:] = [yt]
            svals = [c._value for c in sc]
        written[:] = [c for c, _ in fr.writes]
        return list(leaves) + svals + list(y_leaves)

    out_c_tree = []
    for _ in range(8):
        cg, _ = trace_to_graph(body, c_avals + s_avals + x_avals, name)
        carried = {id(c) for c in sc}
        new_cells = [c for c in written if id(c) not in carried]
        if new_cells:
            for c in new_cells:
                sc.append(c)
                s_avals.append(abstractify(c.value, f"{where}: state {c._name}").strong())
            continue
        outs = cg.graph.out_avals[:nc] if out_c_tree[0] == c_tree else []
        if outs and (new := _promotable(c_avals, outs)) is not None:
            c_avals = new                    # a weak init takes the body's type
            continue
        break
    _check_carry(where, "carry", c_tree, out_c_tree[0], c_paths, c_avals,
                 cg.graph.out_avals[:nc])
    ns = len(sc)
    lines = _type_mismatch("state ", [c._name or "Tensor" for c in sc], s_avals,
                           cg.graph.out_avals[nc:nc + ns])
    if lines:
        raise TypeError(f"{where}: the body writes state cells with values of another type "
                        f"than they hold (a cell written in a loop is a carry):\n"
                        + "\n".join(lines))
    c_leaves = _operands([_convert(x, a) if abstractify(x).dtype != a.dtype else x
                          for x, a in zip(c_leaves, c_avals)], c_avals)
    s_leaves = _operands([c.value for c in sc], s_avals)
    body_cg, consts = _close(cg)
    outs = _bind(scan_p, [*consts, *c_leaves, *s_leaves, *x_leaves], body=body_cg,
                 length=length, reverse=bool(reverse), num_consts=len(consts),
                 num_carry=nc + ns, unroll=unroll, name=name)
    for c, v in zip(sc, outs[nc:nc + ns]):
        c._write(v)
    return (pytree.tree_unflatten(c_tree, outs[:nc]),
            pytree.tree_unflatten(y_tree[0], outs[nc + ns:]))


def map(f, xs):
    """`f` applied to each slice of `xs` along its leading axis, results
    stacked (JAX's lax.map): a scan with no carry."""
    def body(c, x):
        return c, f(x)
    body.__name__ = _fname(f)
    return scan(body, (), xs)[1]


# --- cond / switch -------------------------------------------------------------------------

def _trace_branches(funs, operands, where):
    """The branches as closed graphs taking (the union of their captured
    values, the operands, the carried cells) and returning (their results,
    the carried cells' new values); with the captured values, the operand
    leaves, the result structure and the _Carried cells."""
    o_leaves, o_tree = pytree.tree_flatten(operands)
    o_avals = _avals(o_leaves, f"{where}: operand")
    no = len(o_leaves)
    carried = _Carried(where)

    def trace(fun, targets=None):
        def flat(*args):
            out = fun(*pytree.tree_unflatten(o_tree, args))
            leaves, tree = pytree.tree_flatten(out)
            out_trees.append(tree)
            if targets is not None:      # weak results take the others' type
                leaves = [_convert(o, ShapedArray((), dt)) if abstractify(o).dtype != dt
                          else o for o, dt in zip(leaves, targets)]
            return leaves
        body = _with_state(carried, "cond", _fname(fun), no, flat)
        return trace_to_graph(body, o_avals + carried.avals, _fname(fun))[0]

    for _ in range(8):
        out_trees = []
        traced = [trace(fun) for fun in funs]
        if not carried.grow():
            break
    for k, t in enumerate(out_trees[1:], 1):
        if t != out_trees[0]:
            raise TypeError(f"{where}: branch {k} ({_fname(funs[k])}) returns structure {t} "
                            f"but branch 0 ({_fname(funs[0])}) returns {out_trees[0]}; every "
                            f"branch must return the same structure")
    ns = len(carried.cells)
    for fun, cg in zip(funs, traced):
        carried.check(cg.graph.out_avals[len(cg.graph.outvars) - ns:],
                      f"branch {_fname(fun)}")
    # A weakly typed result (a Python scalar) takes the type of the others.
    n_out = len(traced[0].graph.outvars) - ns
    targets = []
    for i in range(n_out):
        avs = [cg.graph.out_avals[i] for cg in traced]
        # Weakly typed results (Python scalars) promote with the others, as
        # in `int32 + 1.5`; strongly typed ones must already agree.
        dt = dtypes.result_type(*[(a.dtype, a.weak_type) for a in avs])[0]
        for k, a in enumerate(avs):
            if tuple(a.shape) != tuple(avs[0].shape) or (a.dtype != dt and not a.weak_type):
                paths = pytree.leaf_paths(out_trees[0])
                raise TypeError(
                    f"{where}: the branches must return equal types, but output{paths[i]} "
                    f"is " + ", ".join(f"{c.graph.out_avals[i].str_short()} in branch {j} "
                                       f"({_fname(funs[j])})" for j, c in enumerate(traced)))
        targets.append(dt)
    if any(cg.graph.out_avals[i].dtype != targets[i] for cg in traced for i in range(n_out)):
        out_trees = []
        traced = [trace(fun, targets) for fun in funs]
    # Every branch takes the union of the captured values, then the operands.
    closed = [_close(cg) for cg in traced]
    consts = [c for _, cs in closed for c in cs]
    branches, offset = [], 0
    for body, cs in closed:
        g = body.graph
        own = g.invars[:len(cs)]
        before = [Var(abstractify(c)) for c in consts[:offset]]
        after = [Var(abstractify(c)) for c in consts[offset + len(cs):]]
        branches.append(ClosedGraph(Graph([], before + own + after + g.invars[len(cs):],
                                          g.eqns, g.outvars), []))
        offset += len(cs)
    return branches, consts, _operands(o_leaves, o_avals), out_trees[0], carried


def _bind_branches(idx, graphs, consts, o_leaves, out_tree, carried):
    """Bind cond_p; write the carried cells; the results as a pytree."""
    outs = _bind(cond_p, [idx, *consts, *o_leaves, *carried.operands()],
                 branches=tuple(graphs))
    n = len(outs) - len(carried.cells)
    carried.write(outs[n:])
    return pytree.tree_unflatten(out_tree, outs[:n])


def switch(index, branches, *operands):
    """branches[index](*operands), index clamped into range (JAX's
    lax.switch): every branch is traced and must return the same types; a
    traced index selects at run time. State cells a branch writes are
    written (the others leave them as they were)."""
    branches = list(branches)
    if not branches:
        raise ValueError("switch: needs at least one branch")
    where = f"switch({', '.join(_fname(b) for b in branches)})"
    idx = index if isinstance(index, Tracer) else np.asarray(index)
    shape = tuple(idx.shape)
    if shape != () or not (dtypes.is_int(idx.dtype) or idx.dtype == np.bool_):
        raise TypeError(f"{where}: the index must be a scalar integer, got "
                        f"{abstractify(idx).str_short()}")
    traced = _trace_branches(branches, operands, where)
    if not isinstance(idx, Tracer):
        idx = np.int32(min(max(int(idx), 0), len(branches) - 1))
    elif idx.dtype != np.int32:
        idx = convert_element_type_p.bind(idx, new_dtype=np.dtype(np.int32), weak_type=False)
    return _bind_branches(idx, *traced)


def cond(pred, true_fun, false_fun, *operands):
    """true_fun(*operands) if pred else false_fun(*operands) (JAX's lax.cond):
    `pred` is a scalar (bool or number); both branches are traced and must
    return the same types; under a trace the choice is made at run time.
    State cells a branch writes are written (the other branch leaves them
    as they were)."""
    where = f"cond({_fname(true_fun)}, {_fname(false_fun)})"
    p = pred if isinstance(pred, Tracer) else np.asarray(pred)
    if tuple(p.shape) != ():
        raise TypeError(f"{where}: pred must be a scalar, got shape {tuple(p.shape)}")
    if isinstance(p, Tracer):
        if p.dtype != np.bool_:
            from .ir.primitives import COMPARE
            p = COMPARE["ne"].bind(p, np.zeros((), p.dtype)[()])
        idx = convert_element_type_p.bind(p, new_dtype=np.dtype(np.int32), weak_type=False)
    else:
        idx = np.int32(bool(p))
    return _bind_branches(idx, *_trace_branches([false_fun, true_fun], operands, where))


# --- while_loop / fori_loop ---------------------------------------------------------------

def while_loop(cond_fun, body_fun, init_val):
    """Repeat `val = body_fun(val)` while `cond_fun(val)` (JAX's
    lax.while_loop). The trip count is known only at run time, so it is
    differentiable in forward mode only (jvp, jacfwd); for grad use scan or a
    fori_loop with static bounds. State cells the body writes join the
    carry (cond_fun reads their current values); cond_fun must not write
    any."""
    name = _fname(body_fun)
    where = f"while_loop({_fname(cond_fun)}, {name})"
    c_leaves, c_tree = pytree.tree_flatten(init_val)
    c_paths = pytree.leaf_paths(c_tree)
    c_avals = _avals(c_leaves, f"{where}: init_val")
    nc = len(c_leaves)
    out_tree = []
    carried = _Carried(where)

    def body(*args):
        out = body_fun(pytree.tree_unflatten(c_tree, args))
        leaves, tree = pytree.tree_flatten(out)
        out_tree[:] = [tree]
        return leaves

    for _ in range(10):
        bcg, _ = trace_to_graph(_with_state(carried, "while", name, nc, body),
                                c_avals + carried.avals, name)
        if carried.grow():
            continue
        outs = bcg.graph.out_avals[:nc] if out_tree[0] == c_tree else []
        if outs and (new := _promotable(c_avals, outs)) is not None:
            c_avals = new
            continue
        break
    _check_carry(where, "init_val", c_tree, out_tree[0], c_paths, c_avals,
                 bcg.graph.out_avals[:nc])
    carried.check(bcg.graph.out_avals[nc:], "the body")

    def pred(*args):
        with _state.Frame("while", _fname(cond_fun)) as fr:
            fr.swap_in(carried.cells, args[nc:])
            out = cond_fun(pytree.tree_unflatten(c_tree, args[:nc]))
        if fr.writes:
            raise _state.StateWriteError(
                f"{where}: cond_fun writes the state cell(s) "
                f"{', '.join(_state.path_of(c) for c, _ in fr.writes)}; it must not have "
                f"side effects (it runs once more than the body). Write the cell in the "
                f"body instead")
        a = abstractify(out, f"{where}: cond_fun's result")
        if a.shape != () or a.dtype != np.bool_:
            raise TypeError(f"{where}: cond_fun must return a boolean scalar, got "
                            f"{a.str_short()}")
        return [out]

    ccg, _ = trace_to_graph(pred, c_avals + carried.avals, _fname(cond_fun))
    c_leaves = _operands([_convert(x, a) if abstractify(x).dtype != a.dtype else x
                          for x, a in zip(c_leaves, c_avals)], c_avals)
    cond_g, cconsts = _close(ccg)
    body_g, bconsts = _close(bcg)
    outs = _bind(while_p, [*cconsts, *bconsts, *c_leaves, *carried.operands()], cond=cond_g,
                 body=body_g, cond_nconsts=len(cconsts), body_nconsts=len(bconsts), name=name)
    carried.write(outs[nc:])
    return pytree.tree_unflatten(c_tree, outs[:nc])


def fori_loop(lower, upper, body_fun, init_val, unroll=None):
    """`val = body_fun(i, val)` for i in [lower, upper) (JAX's lax.fori_loop).
    Concrete bounds lower to a scan (reverse-mode differentiable); traced
    bounds to a while_loop (forward mode only)."""
    name = _fname(body_fun)
    concrete = not isinstance(lower, Tracer) and not isinstance(upper, Tracer)
    if concrete:
        lo, hi = int(lower), int(upper)
        # Python int bounds give a weakly typed index (acc + i keeps acc's
        # int32, as in JAX); numpy bounds their own type.
        typed = [v for v in (lower, upper) if not type(v) is int]
        start = lo if not typed else np.asarray(lo, np.result_type(*[np.asarray(v).dtype
                                                                     for v in typed]))

        def step(carry, _):
            i, val = carry
            return (i + 1, body_fun(i, val)), None
        step.__name__ = name
        (_, val), _ = scan(step, (start, init_val), None, length=max(hi - lo, 0),
                           unroll=unroll or 1)
        return val
    lower = lower if isinstance(lower, Tracer) else np.asarray(lower)
    upper = upper if isinstance(upper, Tracer) else np.asarray(upper)
    dt = np.result_type(lower.dtype, upper.dtype)
    lower, upper = _convert(lower, ShapedArray((), dt)), _convert(upper, ShapedArray((), dt))

    def c(carry):
        return carry[0] < carry[1]

    def b(carry):
        i, hi, val = carry
        return i + np.asarray(1, dt), hi, body_fun(i, val)
    b.__name__ = name
    return while_loop(c, b, (lower, upper, init_val))[2]


# --- checkpoint ----------------------------------------------------------------------------

def checkpoint(fun=None, *, prevent_cse=True, static_argnums=()):
    """`fun` whose intermediates are recomputed in the backward pass instead
    of stored (JAX's jax.checkpoint / remat): same values and gradients, less
    memory for the residuals, more compute. Also a decorator."""
    if fun is None:
        return functools.partial(checkpoint, prevent_cse=prevent_cse,
                                 static_argnums=static_argnums)
    name = _fname(fun)
    static = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)

    @functools.wraps(fun)
    def wrapped(*args):
        if current_trace() is None:
            return fun(*args)                  # eager, not differentiated: nothing to save
        dyn = [a for i, a in enumerate(args) if i not in static]
        leaves, tree = pytree.tree_flatten(dyn)
        out_tree = []

        def flat(*xs):
            it = iter(pytree.tree_unflatten(tree, xs))
            full = [a if i in static else next(it) for i, a in enumerate(args)]
            leaves_out, t = pytree.tree_flatten(fun(*full))
            out_tree[:] = [t]
            return leaves_out

        # state cells it writes: extra operands and results (module docstring)
        carried = _Carried(f"checkpoint({name})")
        avals = _avals(leaves, f"checkpoint({name}): argument")
        for _ in range(8):
            cg, _ = trace_to_graph(_with_state(carried, "checkpoint", name, len(leaves), flat),
                                   avals + carried.avals, name)
            if not carried.grow():
                break
        ns = len(carried.cells)
        carried.check(cg.graph.out_avals[len(cg.graph.outvars) - ns:], "the function")
        g, consts = _close(cg)
        ops = [*consts, *_operands(leaves, avals), *carried.operands()]
        outs = _bind(checkpoint_p, ops, graph=g, prevent_cse=bool(prevent_cse),
                     name=name)
        n = len(outs) - ns
        carried.write(outs[n:])
        return pytree.tree_unflatten(out_tree[0], outs[:n])
    return wrapped


remat = checkpoint

