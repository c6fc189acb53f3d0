"""Stage passes: dead-code elimination.

Input: a ClosedGraph. Output: a ClosedGraph without equations whose results
are unused, and without unused constants. Every primitive is pure except the
effectful ones (debug_callback), which are always kept, as is control flow
with an effect in a body. Control flow (scan, while, cond, checkpoint) keeps
only what its used results need, its bodies cleaned recursively
(passes/dce_control.py).
"""
from ..ir.core import ClosedGraph, Graph, Var
from .dce_control import prune
from .subgraphs import is_control


def dce(cg):
    g = cg.graph
    live = {v for v in g.outvars if isinstance(v, Var)}
    eqns = []
    for e in reversed(g.eqns):
        if is_control(e):
            e = prune(e, [v in live for v in e.outs], dce)
            if e is None:
                continue
        elif not (e.prim.effectful or any(v in live for v in e.outs)):
            continue
        eqns.append(e)
        live.update(x for x in e.inputs if isinstance(x, Var))
    eqns.reverse()
    keep = [i for i, v in enumerate(g.constvars) if v in live]
    graph = Graph([g.constvars[i] for i in keep], g.invars, eqns, g.outvars)
    return ClosedGraph(graph, [cg.consts[i] for i in keep])
