"""Stage passes: partition a graph into kernel groups for a backend.

Input: a ClosedGraph and a backend name ('cpu').
Output: a ClosedGraph whose equations are `kernel` groups (each holding a
sub-Graph that codegen turns into one kernel), library calls (dot_general:
BLAS on CPU) and views (reshape of a contiguous buffer costs nothing).

This first partition gives every computing equation its own group; the
emitter already compiles multi-equation groups, so fusion policy (issue:
fusion and simplification passes) changes only this file.
"""
from ..ir.core import ClosedGraph, Eqn, Graph, Var
from ..ir.primitives import kernel_p

LIBRARY = {"cpu": {"dot_general"}}
VIEWS = {"reshape"}


def is_library(eqn, backend="cpu"):
    return eqn.prim.name in LIBRARY.get(backend, ())


def is_view(eqn):
    return eqn.prim.name in VIEWS


def _group(eqns, name):
    """One kernel equation computing `eqns` (a connected set, in order)."""
    defined = {v for e in eqns for v in e.outs}
    inputs, seen = [], set()
    for e in eqns:
        for x in e.inputs:
            if isinstance(x, Var) and x not in defined and x not in seen:
                seen.add(x)
                inputs.append(x)
    outs = [v for v in eqns[-1].outs]
    sub_in = {v: Var(v.aval) for v in inputs}
    sub_eqns = []
    env = dict(sub_in)
    for e in eqns:
        new_outs = [Var(v.aval) for v in e.outs]
        env.update(zip(e.outs, new_outs))
        sub_eqns.append(Eqn(e.prim, [env.get(x, x) for x in e.inputs], e.params, new_outs,
                            e.source))
    sub = Graph([], [sub_in[v] for v in inputs], sub_eqns, [env[v] for v in outs])
    return Eqn(kernel_p, inputs, {"graph": sub, "name": name}, outs, eqns[-1].source)


def partition(cg, backend="cpu"):
    g = cg.graph
    eqns = []
    for k, e in enumerate(g.eqns):
        if is_library(e, backend) or is_view(e):
            eqns.append(e)
        else:
            eqns.append(_group([e], f"{e.prim.name}_{k}"))
    return ClosedGraph(Graph(g.constvars, g.invars, eqns, g.outvars), cg.consts)
