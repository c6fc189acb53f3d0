"""Stage passes (batching): vmap's transformation of a traced Graph.

Input: the ClosedGraph of a function traced at per-example shapes, the
argument values with a flag each (mapped: the mapped axis is axis 0; or
not), and the mapped axis' length.
Output: the results, each with its flag (an output that depends on no mapped
argument stays unbatched).

An interpreter, as JAX's batching is: each equation with a batched operand is
replaced by its batching rule (rules.py), each other equation is bound as it
is. A rule's results are batched, or carry a flag each (`Flagged`: the
control-flow rules of control.py keep an output that does not depend on
the mapped axis unbatched). Rules bind primitives, so the batched program
is recorded into an outer trace (vmap under jit, under grad) or evaluated
eagerly on numpy arrays:
the transformation happens at trace time, like autodiff (DESIGN.md).
"""
from ...ir.core import Lit
from ..autodiff.markers import custom_vjp_call_p, stop_gradient_p
from .rules import BATCH_RULES, Flagged

__all__ = ["BATCH_RULES", "batch_graph"]


def batch_graph(cg, args, batched, size, name="f"):
    """Evaluate ClosedGraph `cg` on `args`, batched where `batched` says;
    returns (results, batched flags)."""
    g = cg.graph
    env = {v: (c, False) for v, c in zip(g.constvars, cg.consts)}
    env.update({v: (a, b) for v, a, b in zip(g.invars, args, batched)})

    def read(x):
        return (x.val, False) if isinstance(x, Lit) else env[x]

    for e in g.eqns:
        vals, flags = zip(*[read(x) for x in e.inputs]) if e.inputs else ((), ())
        if not any(flags):
            outs = e.prim.bind(*vals, **e.params)
            out_flags = [False] * len(e.outs)
        else:
            outs = _apply(e, list(vals), list(flags), size, name)
            out_flags = [True] * len(e.outs)
            if isinstance(outs, Flagged):
                outs, out_flags = outs.outs, outs.flags
                outs = outs if e.prim.multiple_results else outs[0]
        if not e.prim.multiple_results:
            outs = [outs]
        env.update({v: (o, b) for v, o, b in zip(e.outs, outs, out_flags)})
    res = [read(v) for v in g.outvars]
    return [r[0] for r in res], [r[1] for r in res]


def _apply(e, vals, flags, size, name):
    if e.prim is stop_gradient_p:
        return stop_gradient_p.bind(vals[0])
    if e.prim is custom_vjp_call_p:
        raise NotImplementedError(
            f"vmap({name}): a needle.custom_vjp function inside vmap, itself being "
            f"differentiated (grad(vmap(f))), is not supported: its rule would have to be "
            f"batched too. Differentiate inside instead: vmap(grad(f)), or call it "
            f"outside vmap ({e.source})")
    rule = BATCH_RULES.get(e.prim)
    if rule is None:
        raise NotImplementedError(f"vmap({name}): primitive {e.prim.name} has no batching "
                                  f"rule (at {e.source})")
    return rule(vals, flags, size, **e.params)


# The control-flow rules (scan, cond, while, checkpoint) batch their bodies
# with batch_graph, so they are registered once it is defined.
from . import control  # noqa: E402,F401
from . import rules_sort  # noqa: E402,F401  (sort and the scans' rules)
from . import rules_linalg  # noqa: E402,F401  (the decompositions' rules)
from . import rules_conv  # noqa: E402,F401  (the convolutions')
from . import rules_callback  # noqa: E402,F401  (pure_callback's vmap_method)
