"""Stage passes: loop-invariant code motion for scans: what a scan's body
computes from its constants and its per-step inputs alone, without the
carry, is computed for all steps at once before the loop.

Input: a ClosedGraph. Output: an equivalent ClosedGraph whose scans read
the hoisted values: a value of the constants alone becomes a new constant
of the scan (computed once), a value of the per-step inputs becomes a new
scanned input, computed for every step by the batched program (vmap's
rules over the time axis), so an RNN's `x_t @ W_ih` becomes one
(T*B, in) x (in, 4H) matrix product and only `h @ W_hh` stays in the loop.

What is hoisted: the values the rest of the body reads that depend on a
matrix product, a reduction or an expensive function (the work worth
batching); cheap elementwise chains stay in the body, where they fuse
into its kernel instead of being stored for every step. Effects and nested
loops are never hoisted. Bodies are processed innermost first. Then a
product by a constant matrix's transpose reads a transposed copy made once
before the loop (passes/loop_operands.py).
"""
from ..ir.core import ClosedGraph, Eqn, Graph, Lit, Var
from ..ir.primitives import scan_p
from ..tracer.core import trace_to_graph
from .batching import batch_graph
from .loop_operands import pretranspose_operands
from .subgraphs import map_subgraphs


def _heavy(e):
    return e.prim.kind in ("linalg", "reduction") or e.prim.traits.expensive


def _plan(g, nc, ncar):
    """(hoisted eqns in order, frontier Vars) of a scan body Graph: the
    frontier is what the body still reads of the hoisted values."""
    free = set(g.invars[:nc]) | set(g.invars[nc + ncar:]) | set(g.constvars)
    hoistable, heavy = [], {}
    for e in g.eqns:
        if e.prim.effectful or e.prim.kind == "control":
            continue
        if all(isinstance(x, Lit) or x in free for x in e.inputs):
            free.update(e.outs)
            hoistable.append(e)
            h = _heavy(e) or any(heavy.get(x, False) for x in e.inputs if isinstance(x, Var))
            heavy.update((o, h) for o in e.outs)
    # The heavy values and the cheap ones they read.
    need, hoisted = set(), []
    for e in reversed(hoistable):
        if heavy[e.outs[0]] or any(o in need for o in e.outs):
            need.update(x for x in e.inputs if isinstance(x, Var))
            hoisted.append(e)
    hoisted.reverse()
    # The body keeps the rest, and a copy of the cheap values it reads itself.
    staying = [e for e in g.eqns if not (e in hoisted and heavy[e.outs[0]])]
    read = {x for e in staying for x in e.inputs if isinstance(x, Var)}
    read |= {v for v in g.outvars if isinstance(v, Var)}
    frontier = [o for e in hoisted if heavy[e.outs[0]] for o in e.outs if o in read]
    return hoisted, frontier, [e for e in staying if not any(o in frontier for o in e.outs)]


def _hoist_scan(e, new_consts, outer_eqns):
    p = e.params
    body, nc, ncar, length = p["body"], p["num_consts"], p["num_carry"], p["length"]
    g = body.graph
    hoisted, frontier, staying = _plan(g, nc, ncar)
    if not frontier:
        return e
    ops = e.inputs
    c_ops, x_ops = ops[:nc], ops[nc + ncar:]
    sub = ClosedGraph(Graph(g.constvars, g.invars[:nc] + g.invars[nc + ncar:], hoisted,
                            frontier), body.consts)
    flags = []

    def run(*args):
        outs, fl = batch_graph(sub, list(args), [False] * nc + [True] * len(x_ops), length,
                               p["name"])
        flags[:] = fl
        return outs

    traced, _ = trace_to_graph(run, [x.aval for x in c_ops] + [x.aval for x in x_ops],
                               f"hoist({p['name']})")
    tg = traced.graph
    # Splice the batched program into the outer graph, before the scan.
    ren = dict(zip(tg.invars, list(c_ops) + list(x_ops)))
    for v, c in zip(tg.constvars, traced.consts):
        ren[v] = Var(v.aval)
        new_consts.append((ren[v], c))
    for te in tg.eqns:
        outer_eqns.append(Eqn(te.prim, [ren.get(x, x) if isinstance(x, Var) else x
                                        for x in te.inputs], te.params, te.outs, e.source))
    vals = [ren.get(v, v) if isinstance(v, Var) else v for v in tg.outvars]
    inv = [(f, v) for f, v, b in zip(frontier, vals, flags) if not b]
    per = [(f, v) for f, v, b in zip(frontier, vals, flags) if b]
    # The body reads the frontier as inputs: constants first, scanned last.
    invars = [f for f, _ in inv] + list(g.invars) + [f for f, _ in per]
    new_body = ClosedGraph(Graph(g.constvars, invars, staying, g.outvars), body.consts)
    return Eqn(scan_p, [v for _, v in inv] + list(ops) + [v for _, v in per],
               {**p, "body": new_body, "num_consts": nc + len(inv)}, e.outs, e.source)


def hoist_loop_invariants(cg):
    g = cg.graph
    memo = {}
    g = Graph(g.constvars, g.invars, [map_subgraphs(e, hoist_loop_invariants, memo)
                                      for e in g.eqns], g.outvars)
    if not any(e.prim is scan_p for e in g.eqns):
        return ClosedGraph(g, cg.consts)
    new_consts, eqns = [], []
    for e in g.eqns:
        if e.prim is scan_p and e.params["length"] > 0:
            outer = []
            new = pretranspose_operands(_hoist_scan(e, new_consts, outer), outer)
            eqns += outer + [new]
        else:
            eqns.append(e)
    graph = Graph(list(g.constvars) + [v for v, _ in new_consts], g.invars, eqns, g.outvars)
    return ClosedGraph(graph, list(cg.consts) + [c for _, c in new_consts])
