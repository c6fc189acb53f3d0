"""Stage ir: print a Graph like a jaxpr.

Input: a Graph. Output: text, one equation per line, types as `f32[128,784]`,
sub-graphs (kernel groups, loop bodies, cond branches) indented under
their equation, a control-flow body labelled with its param (`body=`).

    { lambda ; a:f32[4,3] b:f32[3]. let
        c:f32[4,3] = broadcast_in_dim[broadcast_dimensions=(1,) shape=(4, 3)] b
        d:f32[4,3] = add a c
      in (d,) }
"""
import numpy as np

from .core import ClosedGraph, Graph, Lit


class _Names:
    def __init__(self):
        self.names = {}

    def __call__(self, v):
        if isinstance(v, Lit):
            val = v.val
            if v.aval.dtype.kind == "f":
                return repr(float(val))
            if v.aval.dtype.kind == "b":
                return repr(bool(val))
            return repr(int(val))
        if v not in self.names:
            n, s = len(self.names), ""
            while True:
                s = chr(ord("a") + n % 26) + s
                n = n // 26 - 1
                if n < 0:
                    break
            self.names[v] = s
        return self.names[v]


def _sub_graphs(v):
    """The Graphs a param holds: a Graph, a ClosedGraph, or a tuple of them
    (a cond's branches); [] for any other value."""
    if isinstance(v, Graph):
        return [v]
    if isinstance(v, ClosedGraph):
        return [v.graph]
    if isinstance(v, tuple) and v and all(isinstance(b, (Graph, ClosedGraph)) for b in v):
        return [b.graph if isinstance(b, ClosedGraph) else b for b in v]
    return []


def _param_str(k, v):
    if _sub_graphs(v):
        return None
    if isinstance(v, np.dtype):
        v = v.name
    elif isinstance(v, type):
        v = np.dtype(v).name
    return f"{k}={v}"


def pp_graph(graph, indent=0, names=None):
    names = names or _Names()
    pad = " " * indent

    def decl(vs):
        return " ".join(f"{names(v)}:{v.aval.str_short()}" for v in vs)

    lines = [f"{pad}{{ lambda {decl(graph.constvars)}; {decl(graph.invars)}. let"]
    for e in graph.eqns:
        params = [p for p in (_param_str(k, v) for k, v in sorted(e.params.items())) if p]
        pstr = f"[{' '.join(params)}]" if params else ""
        outs = " ".join(f"{names(v)}:{v.aval.str_short()}" for v in e.outs)
        ins = " ".join(names(v) for v in e.inputs)
        lhs = f"{outs} = " if e.outs else ""              # an effect binds no result
        lines.append(f"{pad}    {lhs}{e.prim.name}{pstr} {ins}".rstrip())
        for k, v in sorted(e.params.items()):
            subs = _sub_graphs(v)
            for i, sub in enumerate(subs):
                if e.prim.name != "kernel":          # a loop's body, a cond's branches
                    label = f"{k}[{i}]" if len(subs) > 1 else k
                    lines.append(f"{pad}      {label}=")
                lines.append(pp_graph(sub, indent + 6, names))
    outs = ", ".join(names(v) for v in graph.outvars)      # as a jaxpr: (a, b)
    lines.append(f"{pad}  in ({outs}{',' if len(graph.outvars) == 1 else ''}) }}")
    return "\n".join(lines)
