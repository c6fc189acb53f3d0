"""Stage passes: common-subexpression elimination.

Input: a ClosedGraph. Output: a ClosedGraph where equations that bind the
same primitive to the same inputs with equal params are computed once (an
effectful one, debug_callback, runs as often as it was bound). Two control
equations (scan, while, cond) merge only when they hold the same sub-graph
objects (a ClosedGraph param is keyed by identity), and never when a body
holds an effect; each body is CSE'd on its own, recursively.
"""
import numpy as np

from ..ir.core import ClosedGraph, Eqn, Graph, Lit
from .subgraphs import effectful, map_subgraphs


def _atom_key(x, env):
    if isinstance(x, Lit):
        # By bits, not by value: 0.0 == -0.0 would merge x * 0.0 with x * -0.0.
        return ("lit", x.aval.dtype.str, np.asarray(x.val).tobytes())
    return env.get(x, x)


def _param_key(v):
    if isinstance(v, (list, tuple)):
        return tuple(_param_key(e) for e in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _param_key(e)) for k, e in v.items()))
    if isinstance(v, np.dtype):
        return v.str
    try:
        hash(v)
        return v
    except TypeError:
        return id(v)


def cse(cg):
    g = cg.graph
    env, seen, eqns, memo = {}, {}, [], {}
    for e in g.eqns:
        inputs = [env.get(x, x) if not isinstance(x, Lit) else x for x in e.inputs]
        if effectful(e):
            e = map_subgraphs(e, cse, memo)
            eqns.append(Eqn(e.prim, inputs, e.params, e.outs, e.source))
            continue
        key = (e.prim, tuple(_atom_key(x, env) for x in inputs), _param_key(e.params))
        prev = seen.get(key)
        if prev is not None:
            env.update(zip(e.outs, prev.outs))
            continue
        e = map_subgraphs(e, cse, memo)        # keyed above by the original bodies
        new = Eqn(e.prim, inputs, e.params, e.outs, e.source)
        seen[key] = new
        eqns.append(new)
    outvars = [env.get(v, v) if not isinstance(v, Lit) else v for v in g.outvars]
    return ClosedGraph(Graph(g.constvars, g.invars, eqns, outvars), cg.consts)
