"""Stage passes: the direct convolutions written out for a backend that has
no routine for them.

Input: a ClosedGraph and the Backend it is being fused for.
Output: the ClosedGraph with every conv / conv_wgrad equation (at this
level; fusion calls this on each body) replaced by its im2col decomposition
(ir/primitives/conv.py: slices of the padded input, one concatenate,
dot_general), unless the backend runs the primitive as a library call (the
CPU backend's direct-convolution kernels). The CUDA backend fuses the
decomposition's slices into one im2col kernel, as it always has.
"""
from ..ir.core import ClosedGraph, Eqn, Graph, Var
from ..ir.primitives import conv_by_im2col, conv_p, conv_wgrad_by_im2col, conv_wgrad_p
from ..tracer.core import trace_to_graph
from .subgraphs import splice

_DECOMPOSE = {
    conv_p: lambda x, w, *, padding: conv_by_im2col(x, w, padding),
    conv_wgrad_p: lambda x, g, *, kernel, padding: conv_wgrad_by_im2col(x, g, kernel, padding),
}
# the primitives a backend may leave to this pass, by name
EXPANDED = frozenset(p.name for p in _DECOMPOSE)


def expand_convs(cg, backend):
    """`cg` with the convolutions `backend` has no library call for written
    out as their decompositions."""
    g = cg.graph
    todo = {p for p in _DECOMPOSE if not backend.is_library_prim(p)}
    if not todo or not any(e.prim in todo for e in g.eqns):
        return cg
    constvars, consts = list(g.constvars), list(cg.consts)
    env, eqns = {}, []

    def read(x):
        return env.get(x, x) if isinstance(x, Var) else x

    for e in g.eqns:
        ins = [read(x) for x in e.inputs]
        if e.prim not in todo:
            eqns.append(Eqn(e.prim, ins, e.params, e.outs, e.source)
                        if any(a is not b for a, b in zip(ins, e.inputs)) else e)
            continue
        decompose = _DECOMPOSE[e.prim]
        sub, _ = trace_to_graph(lambda *a: decompose(*a, **e.params), [x.aval for x in ins],
                                name=e.prim.name)
        env.update(zip(e.outs, splice(sub, ins, constvars, consts, eqns, e.source)))
    outvars = [read(v) for v in g.outvars]
    return ClosedGraph(Graph(constvars, list(g.invars), eqns, outvars), consts)
