"""Stage ir: `check_graph`, the invariants every pass must keep.

Input: a Graph. Output: None, or a GraphError that shows the equations
around the fault.

Checked: every Var is defined once before use; each equation's output avals
agree with its primitive's abstract eval on its input avals (sub-graphs are
checked recursively); outvars are defined.
"""
from .core import ClosedGraph, Graph, Lit, Var


class GraphError(AssertionError):
    pass


def _context(graph, i):
    from .printer import pp_graph
    lines = pp_graph(graph).splitlines()
    lo, hi = max(1, i - 2), min(len(lines) - 1, i + 4)
    return "\n".join(("-> " if j == i + 1 else "   ") + lines[j] for j in range(lo, hi))


def check_graph(graph):
    defined = set()
    for v in graph.constvars + graph.invars:
        if v in defined:
            raise GraphError(f"variable {v} bound twice in the graph inputs")
        defined.add(v)
    for i, e in enumerate(graph.eqns):
        for x in e.inputs:
            if isinstance(x, Var) and x not in defined:
                raise GraphError(f"equation {i} ({e.prim}) uses {x} before it is defined:\n"
                                 + _context(graph, i))
            if not isinstance(x, (Var, Lit)):
                raise GraphError(f"equation {i} ({e.prim}) has a non-atom input {x!r}")
        sub = [v for v in e.params.values() if isinstance(v, Graph)]
        for v in e.params.values():           # control flow: bodies, branches
            for c in (v if isinstance(v, tuple) else (v,)):
                if isinstance(c, ClosedGraph):
                    sub.append(c.graph)
        for g in sub:
            check_graph(g)
        try:
            expect = e.prim.abstract_eval(*[x.aval for x in e.inputs], **e.params)
        except Exception as err:
            raise GraphError(f"equation {i} ({e.prim}) fails its abstract eval: {err}\n"
                             + _context(graph, i)) from err
        got = [v.aval for v in e.outs]
        if [(a.shape, a.dtype) for a in expect] != [(a.shape, a.dtype) for a in got]:
            raise GraphError(f"equation {i} ({e.prim}) declares outputs {got} but its "
                             f"abstract eval gives {expect}:\n" + _context(graph, i))
        for v in e.outs:
            if v in defined:
                raise GraphError(f"equation {i} ({e.prim}) redefines {v}:\n"
                                 + _context(graph, i))
            defined.add(v)
    for v in graph.outvars:
        if isinstance(v, Var) and v not in defined:
            raise GraphError(f"graph output {v} is never defined")
