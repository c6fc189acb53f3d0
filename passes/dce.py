"""Stage passes: dead-code elimination.

Input: a ClosedGraph. Output: a ClosedGraph without equations whose results
are unused, and without unused constants. Every primitive is pure except the
effectful ones (debug_callback), which are always kept.
"""
from ..ir.core import ClosedGraph, Graph, Var


def dce(cg):
    g = cg.graph
    live = {v for v in g.outvars if isinstance(v, Var)}
    eqns = []
    for e in reversed(g.eqns):
        if e.prim.effectful or any(v in live for v in e.outs):
            eqns.append(e)
            live.update(x for x in e.inputs if isinstance(x, Var))
    eqns.reverse()
    keep = [i for i, v in enumerate(g.constvars) if v in live]
    graph = Graph([g.constvars[i] for i in keep], g.invars, eqns, g.outvars)
    return ClosedGraph(graph, [cg.consts[i] for i in keep])
