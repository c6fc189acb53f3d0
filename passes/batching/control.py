"""Stage passes (batching): the batching rules of the control-flow primitives
(`scan`, `cond`, `while`, `checkpoint`; ir/primitives/control.py), JAX's
designs.

Input: nothing (importing this module registers the rules).
Output: entries of `BATCH_RULES` for `scan_p`, `cond_p`, `while_p` and
`checkpoint_p`. Each rule returns `Flagged(results, flags)`: an output that
does not depend on the mapped axis stays unbatched.

A body is batched by tracing (`trace_to_graph`) a function that runs the
batching interpreter (`batch_graph`) on it with the operands' flags, so the
new body is an ordinary closed sub-graph; the values it captured (constants
made by rules, an outer trace's values) become its leading explicit operands,
as needle/control_flow.py does for a user's body. The rules bind primitives,
so they record into an outer trace (vmap under jit or grad, nested vmap) or
run eagerly.

    scan: the carries' flags are a fixpoint (a carry is batched when its
        initial value is, or when the body makes its output batched given
        the flags so far); batched xs, (B, T, ...), are scanned as
        (T, B, ...), and batched ys come back (T, B, ...) and are returned
        (B, T, ...).
    cond: an unbatched index: one cond of the batched branches (an output
        batched in some branch is batched in all). A batched index: every
        branch runs batched and the results are selected per example by the
        index, clamped into range as the primitive does.
    while: carry flags as for scan; an unbatched predicate: one while of the
        batched body. A batched predicate: every carry batched, loop while
        some example's predicate holds, and update only the examples whose
        predicate still holds, so each example ends where its own loop would.
    checkpoint: checkpoint of the batched body.
"""
import numpy as np

from ...ir.core import ClosedGraph, Graph, Var
from ...ir.primitives import (COMPARE, broadcast_in_dim_p, checkpoint_p, cond_p,
                              reduce_max_p, scan_p, select_p, while_p)
from ...tracer.core import trace_to_graph
from . import batch_graph
from .rules import BATCH_RULES, Flagged, bcast_batch, moveaxis, shape_of

__all__ = []


# --- helpers -------------------------------------------------------------------------

def _close(cg):
    """A traced graph with its captured values made leading explicit inputs:
    (ClosedGraph without consts, the captured values)."""
    g = cg.graph
    return (ClosedGraph(Graph([], list(g.constvars) + list(g.invars), g.eqns, g.outvars), []),
            list(cg.consts))


def _batch_sub(cg, flags, size, force=None, name="body"):
    """Sub-graph `cg` batched: its inputs batched where `flags` says, its
    outputs forced batched where `force` says. Returns (body, captured,
    natural, final): the new ClosedGraph, taking the captured values first,
    then cg's inputs (batched ones with a leading axis of `size`); the flags
    the outputs have on their own; the flags they have in the new body."""
    g = cg.graph
    force = list(force) if force is not None else [False] * len(g.outvars)
    avals = [v.aval.update(shape=(size,) + tuple(v.aval.shape)) if b else v.aval
             for v, b in zip(g.invars, flags)]
    natural = []

    def fn(*args):
        outs, fl = batch_graph(cg, list(args), list(flags), size, name)
        natural[:] = fl
        return [bcast_batch(o, size) if w and not b else o
                for o, b, w in zip(outs, fl, force)]

    traced, _ = trace_to_graph(fn, avals, name)
    body, captured = _close(traced)
    return body, captured, list(natural), [b or w for b, w in zip(natural, force)]


def _batched(x, b, size):
    return x if b else bcast_batch(x, size)


def _per_example(pred, shape):
    """A batched bool (size,) broadcast to the batched shape (size, *rest)."""
    if tuple(shape) == shape_of(pred):
        return pred
    return broadcast_in_dim_p.bind(pred, shape=tuple(shape), broadcast_dimensions=(0,))


# --- scan ------------------------------------------------------------------------------

def _scan(args, batched, size, *, body, length, reverse, num_consts, num_carry, unroll,
          name):
    nc, nk = num_consts, num_carry
    consts, init, xs = args[:nc], args[nc:nc + nk], args[nc + nk:]
    consts_b, carry_b, xs_b = list(batched[:nc]), list(batched[nc:nc + nk]), \
        list(batched[nc + nk:])
    n_ys = len(body.graph.outvars) - nk
    while True:
        new_body, captured, natural, final = _batch_sub(
            body, consts_b + carry_b + xs_b, size, carry_b + [False] * n_ys, name)
        grown = [c or n for c, n in zip(carry_b, natural[:nk])]
        if grown == carry_b:
            break
        carry_b = grown             # a carry the body makes batched: batch it, retrace
    init = [_batched(x, b, size) if cb else x for x, b, cb in zip(init, batched[nc:nc + nk],
                                                                  carry_b)]
    xs = [moveaxis(x, 0, 1) if b else x for x, b in zip(xs, xs_b)]
    outs = scan_p.bind(*captured, *consts, *init, *xs, body=new_body, length=length,
                       reverse=reverse, num_consts=len(captured) + nc, num_carry=nk,
                       unroll=unroll, name=name)
    ys_b = final[nk:]
    ys = [moveaxis(y, 1, 0) if b else y for y, b in zip(outs[nk:], ys_b)]
    return Flagged(list(outs[:nk]) + ys, carry_b + ys_b)


# --- cond / switch -------------------------------------------------------------------------

def _cond(args, batched, size, *, branches):
    index, ops = args[0], list(args[1:])
    ib, ops_b = batched[0], list(batched[1:])
    if ib:
        return _cond_batched_index(index, ops, ops_b, size, branches)
    traced = [_batch_sub(b, ops_b, size, None, f"branch{k}") for k, b in enumerate(branches)]
    union = [any(t[2][i] for t in traced) for i in range(len(traced[0][2]))]
    traced = [t if t[3] == union else _batch_sub(b, ops_b, size, union, f"branch{k}")
              for k, (t, b) in enumerate(zip(traced, branches))]
    # every branch takes the union of the captured values, then the operands
    captured = [c for t in traced for c in t[1]]
    cap_avals = [v.aval for body, cs, _, _ in traced for v in body.graph.invars[:len(cs)]]
    graphs, offset = [], 0
    for body, cs, _, _ in traced:
        g = body.graph
        own = g.invars[:len(cs)]
        before = [Var(a) for a in cap_avals[:offset]]
        after = [Var(a) for a in cap_avals[offset + len(cs):]]
        graphs.append(ClosedGraph(Graph([], before + own + after + g.invars[len(cs):],
                                        g.eqns, g.outvars), []))
        offset += len(cs)
    outs = cond_p.bind(index, *captured, *ops, branches=tuple(graphs))
    return Flagged(list(outs), union)


def _cond_batched_index(index, ops, ops_b, size, branches):
    """Every branch on the operands, then per example the result of
    branches[clamp(index)]: from the last branch down, branch k where
    index <= k."""
    results = [batch_graph(b, ops, ops_b, size, f"branch{k}") for k, b in enumerate(branches)]
    le = COMPARE["le"]
    dt = np.dtype(index.dtype)
    outs = []
    for j in range(len(results[0][0])):
        vals = [_batched(r[0][j], r[1][j], size) for r in results]
        out = vals[-1]
        for k in range(len(vals) - 2, -1, -1):
            pred = _per_example(le.bind(index, dt.type(k)), shape_of(out))
            out = select_p.bind(pred, vals[k], out)
        outs.append(out)
    return Flagged(outs, [True] * len(outs))


# --- while -----------------------------------------------------------------------------

def _while(args, batched, size, *, cond, body, cond_nconsts, body_nconsts, name):
    ncc, nbc = cond_nconsts, body_nconsts
    cc, bc, init = args[:ncc], args[ncc:ncc + nbc], args[ncc + nbc:]
    cc_b, bc_b = list(batched[:ncc]), list(batched[ncc:ncc + nbc])
    init_b = list(batched[ncc + nbc:])
    carry_b = list(init_b)
    while True:
        new_body, bcap, natural, _ = _batch_sub(body, bc_b + carry_b, size, carry_b, name)
        grown = [c or n for c, n in zip(carry_b, natural)]
        if grown == carry_b:
            break
        carry_b = grown
    new_cond, ccap, pred_b, _ = _batch_sub(cond, cc_b + carry_b, size, None, "cond")
    if not pred_b[0]:
        init = [_batched(x, b, size) if cb else x for x, b, cb in zip(init, init_b, carry_b)]
        outs = while_p.bind(*ccap, *cc, *bcap, *bc, *init, cond=new_cond, body=new_body,
                            cond_nconsts=len(ccap) + ncc, body_nconsts=len(bcap) + nbc,
                            name=name)
        return Flagged(list(outs), carry_b)
    return _while_batched_pred(cc, bc, init, cc_b, bc_b, init_b, size, cond, body, name)


def _while_batched_pred(cc, bc, init, cc_b, bc_b, init_b, size, cond, body, name):
    """A per-example predicate: all carries batched; loop while any example's
    predicate holds; the body keeps an example's carry once its predicate is
    false (select between the new and the old carry)."""
    nk = len(init)
    all_b = [True] * nk
    ncc, nbc = len(cc), len(bc)
    c_avals = [v.aval.update(shape=(size,) + tuple(v.aval.shape))
               for v in body.graph.invars[nbc:]]
    cc_avals = [v.aval.update(shape=(size,) + tuple(v.aval.shape)) if b else v.aval
                for v, b in zip(cond.graph.invars[:ncc], cc_b)]
    bc_avals = [v.aval.update(shape=(size,) + tuple(v.aval.shape)) if b else v.aval
                for v, b in zip(body.graph.invars[:nbc], bc_b)]

    def pred_of(cargs, carry):
        (p,), (fl,) = batch_graph(cond, list(cargs) + list(carry), cc_b + all_b, size, "cond")
        return _batched(p, fl, size)

    def cond_fn(*a):
        p = pred_of(a[:ncc], a[ncc:])
        return [reduce_max_p.bind(p, axes=(0,))]           # any example still running

    def body_fn(*a):
        cargs, bargs, carry = a[:ncc], a[ncc:ncc + nbc], a[ncc + nbc:]
        p = pred_of(cargs, carry)
        new, fl = batch_graph(body, list(bargs) + list(carry), bc_b + all_b, size, name)
        return [select_p.bind(_per_example(p, shape_of(o)), _batched(n, f, size), o)
                for n, f, o in zip(new, fl, carry)]

    new_cond, ccap = _close(trace_to_graph(cond_fn, cc_avals + c_avals, "cond")[0])
    new_body, bcap = _close(trace_to_graph(body_fn, cc_avals + bc_avals + c_avals, name)[0])
    init = [_batched(x, b, size) for x, b in zip(init, init_b)]
    outs = while_p.bind(*ccap, *cc, *bcap, *cc, *bc, *init, cond=new_cond, body=new_body,
                        cond_nconsts=len(ccap) + ncc, body_nconsts=len(bcap) + ncc + nbc,
                        name=name)
    return Flagged(list(outs), all_b)


# --- checkpoint --------------------------------------------------------------------------

def _checkpoint(args, batched, size, *, graph, prevent_cse, name):
    new, captured, natural, _ = _batch_sub(graph, list(batched), size, None, name)
    outs = checkpoint_p.bind(*captured, *args, graph=new, prevent_cse=prevent_cse, name=name)
    return Flagged(list(outs), natural)


BATCH_RULES.update({scan_p: _scan, cond_p: _cond, while_p: _while,
                    checkpoint_p: _checkpoint})
