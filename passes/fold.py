"""Stage passes: constant folding.

Input: a ClosedGraph. Output: a ClosedGraph where equations whose inputs are
all literals or captured constants are evaluated at compile time with their
numpy implementation: scalar results become literals, array results become
new captured constants. Equations that would materialise a result larger than
their inputs (a broadcast of a scalar, an iota) are left to the kernels, and
an effectful equation (debug_callback) to the run: it prints at every call.

Control flow (scan, while, cond) is never evaluated here (that would run a
loop at compile time): its bodies are folded recursively, and the operands
it reads as constants (a literal, a captured array) move into its bodies
(subgraphs.known_operands), where what depends only on them folds; a body
may thus gain consts.
"""
import numpy as np

from ..ir.core import ClosedGraph, Eqn, Graph, Lit
from .subgraphs import effectful, is_control, known_operands, map_subgraphs


def fold_constants(cg):
    g = cg.graph
    known = dict(zip(g.constvars, cg.consts))
    if any(not isinstance(c, np.ndarray) for c in cg.consts):
        known = {v: c for v, c in known.items() if isinstance(c, np.ndarray)}
    env = {}                         # Var -> Lit or Var (renaming)
    new_consts, new_constvars = list(cg.consts), list(g.constvars)
    eqns, memo = [], {}

    def read(x):
        return env.get(x, x) if not isinstance(x, Lit) else x

    def value_of(x):
        return x if isinstance(x, Lit) else known.get(x)

    for e in g.eqns:
        inputs = [read(x) for x in e.inputs]
        if is_control(e):
            e = Eqn(e.prim, inputs, e.params, e.outs, e.source)
            eqns.append(map_subgraphs(known_operands(e, value_of), fold_constants, memo))
            continue
        vals = [x.val if isinstance(x, Lit) else known.get(x) for x in inputs]
        foldable = inputs and not effectful(e) and all(
            v is not None for v in vals) and not any(hasattr(p, "eqns") for p in e.params.values())
        if foldable:
            in_size = max(int(np.size(v)) for v in vals)
            out_size = max(v.aval.size for v in e.outs)
            foldable = out_size <= max(in_size, 1)
        if not foldable:
            eqns.append(Eqn(e.prim, inputs, e.params, e.outs, e.source))
            continue
        with np.errstate(all="ignore"):
            outs = e.prim.impl(*[np.asarray(v) for v in vals], **e.params)
        for var, val in zip(e.outs, outs):
            val = np.asarray(val, dtype=var.aval.dtype)
            if val.ndim == 0:
                env[var] = Lit(val[()], var.aval)
            else:
                known[var] = val
                new_constvars.append(var)
                new_consts.append(np.asarray(val, order="C"))
    outvars = [read(v) for v in g.outvars]
    return ClosedGraph(Graph(new_constvars, g.invars, eqns, outvars), new_consts)
