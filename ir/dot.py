"""Stage ir: draw a Graph as a Graphviz DOT digraph.

Input: a Graph (or ClosedGraph) of any stage. Output: DOT text, for
`dot -Tsvg`, xdot or any Graphviz viewer.

- Every equation is a box labelled with its primitive and operands as the
  printer writes them (`add b 0.7`: Vars by name, literals inlined, a float
  at its own precision, so operand order shows), its params (values cut to
  MAX_PARAM_CHARS; all params and the user's file:line are the node's
  tooltip) and its results (`c: f32[128,784]`). An effect (debug_callback)
  is dashed.
- Graph inputs are blue ellipses (`in a: f32[4,3]`) and captured constants
  grey ones (`const a: ...`), ranked on top; outputs are green ellipses
  (`out 0: c: f32[4]`), one per output position, ranked at the bottom (a
  literal output shows its value and has no edge).
- An edge runs from the node that defines a Var to each node that reads it
  (one edge per pair of nodes, however often the Var is read); edges carry
  no label, the operand names in the reader's label say which is which.
- A kernel group (fusion's `kernel` equation, whose `graph` param holds its
  sub-Graph) is a `subgraph cluster_<id>_<name>`, labelled (left-justified)
  with its kernel name and, where fusion refused a neighbour, `why: ...`
  wrapped at WRAP columns. Its inner equations are nodes inside the cluster;
  edges enter from the nodes defining the group's inputs to the inner nodes
  that read them, and leave from the inner nodes defining the group's
  results to their readers. The group itself is no node. Library calls and
  views between groups are plain equation nodes.

Node ids follow positions, never Var ids (a process-wide counter): `i0`
(input 0), `c0` (constant 0), `o0` (output 0), `e5` (equation 5), `e5_2`
(equation 2 of the group at equation 5), so the same program gives the same
text (`<function f at 0x..>` in a param loses its address). Var names are
those of `str(graph)`, except that inside a group its inputs and results go
by their outer names, the ones on the other side of the cluster's border.
Every label is a quoted DOT string (never an HTML label) with `\\`, `"` and
line breaks escaped, so `<`, `>`, `{` and `|` in a param are plain text.

Nodes: inputs + constants + outputs + equations, where a group counts its
inner equations (recursively) instead of itself (`count_nodes`).
"""
import re
import textwrap

import numpy as np

from .core import ClosedGraph, Graph, Lit, Var
from .printer import _Names, pp_graph

MAX_PARAM_CHARS = 36          # a param's value is cut to this many characters
MAX_PARAMS_SHOWN = 4          # params per label; the tooltip has them all
WRAP = 64                     # cluster label ('why') lines

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")      # '<function f at 0x7f..>': not stable


def escape(s, left=False):
    """`s` as the inside of a DOT double-quoted string: backslashes and quotes
    escaped, each line break a centred `\\n` (with `left`, every line ends in a
    left-justified `\\l`)."""
    s = str(s).replace("\\", "\\\\").replace('"', '\\"')
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    return s.replace("\n", "\\l") + "\\l" if left else s.replace("\n", "\\n")


def _q(s, left=False):
    return f'"{escape(s, left)}"'


def _attrs(**kw):
    return "[" + ", ".join(f"{k}={_q(v)}" for k, v in kw.items() if v is not None) + "]"


def _ident(s):
    return re.sub(r"\W", "_", s, flags=re.ASCII)


def _value(v):
    if isinstance(v, np.dtype):
        v = v.name
    elif isinstance(v, type) and issubclass(v, np.generic):
        v = np.dtype(v).name
    elif isinstance(v, Graph):
        v = f"{{graph: {len(v.eqns)} eqns}}"
    elif isinstance(v, ClosedGraph):
        v = f"{{graph: {len(v.graph.eqns)} eqns}}"
    return _ADDRESS.sub("", str(v))


def _cut(s, n=MAX_PARAM_CHARS):
    return s if len(s) <= n else s[:n - 3] + "..."


def is_group(e):
    """A kernel group: its `graph` param maps its inputs to its outputs."""
    g = e.params.get("graph")
    return (e.prim.name == "kernel" or getattr(e.prim, "kind", None) == "group") and \
        isinstance(g, Graph) and len(g.invars) == len(e.inputs) and \
        len(g.outvars) == len(e.outs) and not g.constvars


def count_nodes(graph):
    """How many nodes graph_to_dot draws for `graph` (see the module doc)."""
    graph = graph.graph if isinstance(graph, ClosedGraph) else graph

    def eqns(g):
        return sum(eqns(e.params["graph"]) if is_group(e) else 1 for e in g.eqns)
    return len(graph.constvars) + len(graph.invars) + len(graph.outvars) + eqns(graph)


class _Writer:
    def __init__(self, names):
        self.names = names
        self.alias = {}           # a group's inner Var -> the outer name it stands for
        self.lines = []
        self.edges = []
        self.seen_edges = set()

    def atom(self, x):
        if isinstance(x, Lit) and x.aval.dtype.kind == "f":
            return str(x.val)       # shortest at its own precision: 0.7, not 0.699999988..
        return self.alias.get(x) or self.names(x)

    def typed(self, v):
        return f"{self.atom(v)}: {v.aval.str_short()}"

    def edge(self, src, dst):
        if src is not None and (src, dst) not in self.seen_edges:
            self.seen_edges.add((src, dst))
            self.edges.append(f"  {src} -> {dst};")

    def eqn_node(self, e, nid, pad):
        params = [(k, _value(v)) for k, v in sorted(e.params.items())
                  if not isinstance(v, (Graph, ClosedGraph))]
        shown = [f"{k}={_cut(v)}" for k, v in params[:MAX_PARAMS_SHOWN]]
        if len(params) > MAX_PARAMS_SHOWN:
            shown.append(f"(+{len(params) - MAX_PARAMS_SHOWN} more)")
        head = " ".join([e.prim.name] + [self.atom(x) for x in e.inputs])
        outs = ", ".join(self.typed(v) for v in e.outs)
        label = "\n".join([head] + shown + ([outs] if outs else []))
        tip = "\n".join(([e.source] if e.source else []) + [f"{k}={v}" for k, v in params])
        style = "rounded,dashed" if getattr(e.prim, "effectful", False) else None
        self.lines.append(f"{pad}{nid} {_attrs(label=label, tooltip=tip or None, style=style)};")

    def body(self, graph, src, prefix, pad):
        """Nodes for `graph`'s equations; `src` maps each Var to the id of the
        node defining it (filled in as equations are drawn)."""
        for k, e in enumerate(graph.eqns):
            nid = f"{prefix}{k}"
            if is_group(e):
                sub = e.params["graph"]
                inner = dict(zip(sub.invars, (src.get(x) if isinstance(x, Var) else None
                                              for x in e.inputs)))
                # inside the cluster, the group's inputs and results go by their
                # outer names, so a name reads the same on both sides of the border
                for w, x in zip(sub.invars, e.inputs):
                    self.alias[w] = self.atom(x)
                for w, v in zip(sub.outvars, e.outs):
                    if isinstance(w, Var) and w not in inner:
                        self.alias.setdefault(w, self.atom(v))
                label = str(e.params.get("name", e.prim.name))
                why = e.params.get("why")
                if why:
                    parts = [p.strip() for p in str(why).split("; ") if p.strip()]
                    label += "\n" + "\n".join(
                        "\n".join(textwrap.wrap(("why: " if i == 0 else "") + p, WRAP,
                                                break_long_words=False))
                        for i, p in enumerate(parts))
                cid = _ident(f"cluster_{nid}_{label.splitlines()[0]}")[:80]
                self.lines.append(f"{pad}subgraph {cid} {{")
                self.lines.append(f"{pad}  label={_q(label, left=True)};")
                if e.source:
                    self.lines.append(f"{pad}  tooltip={_q(e.source)};")
                self.lines.append(f'{pad}  style="rounded,filled"; fillcolor="#eef0fb"; '
                                  f'color="#6a6fb0"; labeljust=l; fontsize=11;')
                self.body(sub, inner, nid + "_", pad + "  ")
                self.lines.append(f"{pad}}}")
                for v, w in zip(e.outs, sub.outvars):
                    src[v] = inner.get(w) if isinstance(w, Var) else None
            else:
                self.eqn_node(e, nid, pad)
                for x in e.inputs:
                    if isinstance(x, Var):
                        self.edge(src.get(x), nid)
                for v in e.outs:
                    src[v] = nid


def graph_to_dot(graph, title=None):
    """DOT text of `graph` (a Graph or ClosedGraph); `title` labels the drawing."""
    graph = graph.graph if isinstance(graph, ClosedGraph) else graph
    names = _Names()
    pp_graph(graph, names=names)          # names Vars in the printer's order: as str(graph)
    w = _Writer(names)
    src = {}
    out = ["digraph needle {"]
    if title is not None:
        out.append(f"  label={_q(title)}; labelloc=t;")
    out.append('  rankdir=TB; newrank=true; fontname="monospace";')
    out.append('  node [shape=box, style=rounded, fontname="monospace", fontsize=10];')
    out.append('  edge [color="#555555", arrowsize=0.6];')
    out.append("  subgraph inputs {")               # not a cluster: only puts them on top
    out.append("    rank=source;")
    for k, v in enumerate(graph.constvars):
        src[v] = f"c{k}"
        out.append(f"    c{k} " + _attrs(label=f"const {w.typed(v)}", shape="ellipse",
                                         style="filled", fillcolor="#e4e4e4") + ";")
    for k, v in enumerate(graph.invars):
        src[v] = f"i{k}"
        out.append(f"    i{k} " + _attrs(label=f"in {w.typed(v)}", shape="ellipse",
                                         style="filled", fillcolor="#d6e6ff") + ";")
    out.append("  }")
    w.body(graph, src, "e", "  ")
    out += w.lines
    out.append("  subgraph outputs {")              # ... and these at the bottom
    out.append("    rank=sink;")
    for k, v in enumerate(graph.outvars):
        kind = "" if isinstance(v, Var) else " (literal)"
        out.append(f"    o{k} " + _attrs(label=f"out {k}{kind}: {w.typed(v)}", shape="ellipse",
                                         style="filled", fillcolor="#d8f5d8") + ";")
        if isinstance(v, Var):
            w.edge(src.get(v), f"o{k}")
    out.append("  }")
    out += w.edges
    out.append("}")
    return "\n".join(out) + "\n"
