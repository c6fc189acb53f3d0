"""`lo.as_dot(stage)` / ir.dot.graph_to_dot: Graphviz DOT of every graph stage,
checked by a small DOT parser of our own (no Graphviz needed): balanced
braces, unique node ids, edges between declared nodes, one cluster per kernel
group labelled with its name and why; and, when Graphviz's `dot` happens to be
installed, `dot -Tsvg` accepts it."""
import dataclasses
import re
import shutil
import subprocess

import numpy as np
import pytest

import needle
import needle.nn as nnn
import needle.numpy as nnp
from needle.ir import Graph, Var
from needle.ir.dot import escape, graph_to_dot

rng = np.random.default_rng(0)
X = rng.standard_normal((16, 8)).astype(np.float32)
W = rng.standard_normal((8, 8)).astype(np.float32)
B = rng.standard_normal(8).astype(np.float32)
Z = np.ones((5, 16), np.float32)

GRAPH_STAGES = ["traced", "folded", "simplified", "hoisted", "cse", "dce", "fused"]


def chain(x):
    return nnp.tanh(x * 0.7 + 0.1) * 0.5 + x * x


def recomputed(x, z):
    # tests/test_fusion.py: the row sums would be recomputed for every row of
    # z inside z's loop nest, so they stay a kernel of their own (a `why`).
    return z * nnp.sum(nnp.exp(x), axis=1)


def mlp_layer(x, w, b):
    # a library call (dot_general: BLAS on CPU) and a view (reshape) between groups
    return nnn.relu(x @ w + b).reshape(-1), 3.0, x


# --- a small DOT parser ------------------------------------------------------------
_TOKEN = re.compile(r'(?P<ws>\s+)|(?P<str>"(?:[^"\\]|\\.)*")|(?P<arrow>->)|'
                    r'(?P<punct>[{}\[\];,=])|(?P<id>[A-Za-z_0-9.#]+)|(?P<bad>.)', re.S)


def _unquote(s):
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] in "nlr" else m[1], s[1:-1], flags=re.S)


def tokenize(text):
    toks = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        assert kind != "bad", f"unexpected character {m[0]!r} at {m.start()}"
        if kind == "ws":
            continue
        toks.append((kind, _unquote(m[0]) if kind == "str" else m[0]))
    return toks


def parse_dot(text):
    """{'attrs', 'nodes': id -> {attrs, cluster}, 'edges': [(a, b)],
    'clusters': id -> {attrs, parent, nodes}, 'subgraphs': the same for
    subgraphs that are not clusters}; asserts the structure."""
    toks = tokenize(text)
    depth = 0
    for kind, t in toks:                       # braces balance (strings excluded)
        if kind == "punct" and t in "{}":
            depth += 1 if t == "{" else -1
            assert depth >= 0, "a '}' closes nothing"
    assert depth == 0, "unbalanced braces"
    pos = 0

    def peek(k=0):
        return toks[pos + k] if pos + k < len(toks) else (None, None)

    def take(value=None):
        nonlocal pos
        kind, t = toks[pos]
        assert value is None or t == value, f"expected {value!r}, got {t!r} at token {pos}"
        pos += 1
        return t

    def attr_list():
        attrs = {}
        take("[")
        while peek()[1] != "]":
            k = take()
            take("=")
            attrs[k] = take()
            if peek()[1] == ",":
                take(",")
        take("]")
        return attrs

    assert take() == "digraph"
    if peek()[1] != "{":
        take()
    take("{")
    root = {"attrs": {}, "nodes": {}, "edges": [], "clusters": {}, "subgraphs": {}}
    stack = [None]          # enclosing subgraph ids; None: the graph itself

    def cluster():          # the innermost enclosing cluster, if any
        return next((c for c in reversed(stack) if c in root["clusters"]), None)

    while True:
        kind, t = peek()
        if t == "}":
            take()
            stack.pop()
            if not stack:
                break
            continue
        if t == ";":
            take()
            continue
        if t == "subgraph":
            take()
            sid = take()
            assert sid not in root["clusters"] and sid not in root["subgraphs"], \
                f"subgraph {sid} twice"
            entry = {"attrs": {}, "parent": cluster(), "nodes": []}
            root["clusters" if sid.startswith("cluster") else "subgraphs"][sid] = entry
            take("{")
            stack.append(sid)
            continue
        if t in ("node", "edge", "graph") and peek(1)[1] == "[":
            take()
            attr_list()
            continue
        name = take()
        if peek()[1] == "=":                         # a graph / subgraph attribute
            take()
            sub = stack[-1]
            target = root if sub is None else \
                root["clusters"].get(sub) or root["subgraphs"][sub]
            target["attrs"][name] = take()
        elif peek()[1] == "->":
            take()
            dst = take()
            if peek()[1] == "[":
                attr_list()
            root["edges"].append((name, dst))
        else:
            assert name not in root["nodes"], f"node {name} declared twice"
            attrs = attr_list() if peek()[1] == "[" else {}
            root["nodes"][name] = {"attrs": attrs, "cluster": cluster()}
            if cluster() is not None:
                root["clusters"][cluster()]["nodes"].append(name)
    assert pos == len(toks), "text after the closing brace"
    for a, b in root["edges"]:
        assert a in root["nodes"] and b in root["nodes"], f"edge {a} -> {b}: undeclared node"
    return root


def _norm(s):
    return " ".join(s.split())


def expected_nodes(g):
    """inputs + constants + outputs + equations, a kernel group counting its
    inner equations instead of itself."""
    def eqns(g):
        return sum(eqns(e.params["graph"]) if e.prim.name == "kernel" else 1 for e in g.eqns)
    return len(g.constvars) + len(g.invars) + len(g.outvars) + eqns(g)


def kernels(g):
    return [e for e in g.eqns if e.prim.name == "kernel"]


def graphs(lo):
    return {s: lo._graphs[s] for s in GRAPH_STAGES}


# --- tests -------------------------------------------------------------------------
@pytest.mark.parametrize("f, args", [(chain, (X,)), (recomputed, (X, Z)),
                                     (mlp_layer, (X, W, B))], ids=["chain", "recomputed", "mlp"])
def test_every_graph_stage_is_well_formed(f, args):
    lo = needle.jit(f).lower(*args)
    for stage, g in graphs(lo).items():
        text = lo.as_dot(stage)
        d = parse_dot(text)
        assert len(d["nodes"]) == expected_nodes(g), stage
        assert len(d["clusters"]) == len(kernels(g)), stage
        assert d["attrs"]["label"].endswith(stage)
        assert text == lo.as_dot(stage)              # deterministic


def test_traced_nodes_labels_and_edges():
    lo = needle.jit(chain).lower(X)
    g = lo._graphs["traced"]
    d = parse_dot(lo.as_dot("traced"))
    labels = {n: v["attrs"]["label"] for n, v in d["nodes"].items()}
    # each equation a node, its label the primitive, its operands (literals
    # inlined: no node of their own), and its result's type
    eq_labels = [lab for lab in labels.values() if not lab.startswith(("in ", "out ", "const "))]
    assert len(eq_labels) == len(g.eqns)
    assert [lab.split()[0] for lab in eq_labels] == [e.prim.name for e in g.eqns]
    assert any(lab.startswith("mul ") and " 0.7" in lab.splitlines()[0] for lab in eq_labels)
    assert all(lab.splitlines()[-1].endswith("f32[16,8]") for lab in eq_labels)
    assert sum(lab.startswith("in ") for lab in labels.values()) == 1
    assert sum(lab.startswith("out ") for lab in labels.values()) == 1
    # in-degree of an equation node = its distinct Var operands
    indeg = {}
    for a, b in set(d["edges"]):
        indeg[b] = indeg.get(b, 0) + 1
    eq_nodes = [n for n, lab in labels.items() if not lab.startswith(("in ", "out "))]
    by_label = dict(zip(eq_labels, g.eqns))
    for n in eq_nodes:
        e = by_label[labels[n]]
        assert indeg.get(n, 0) == len({x for x in e.inputs if isinstance(x, Var)})


def test_fused_clusters_name_and_why():
    lo = needle.jit(recomputed).lower(X, Z)
    g = lo._graphs["fused"]
    groups = kernels(g)
    assert len(groups) == lo.kernel_count == 2
    d = parse_dot(lo.as_dot())                       # the default: the last graph stage
    assert lo.as_dot() == lo.as_dot("fused")
    assert len(d["clusters"]) == 2
    clusters = list(d["clusters"].values())          # declared in equation order
    whys = []
    for c, e in zip(clusters, groups):
        label = c["attrs"]["label"]
        assert label.splitlines()[0] == e.params["name"]
        assert len(c["nodes"]) == len(e.params["graph"].eqns)
        if e.params.get("why"):
            assert _norm(e.params["why"]) in _norm(label.replace("why: ", "", 1))
            whys.append(label)
    assert len(whys) == 1 and "recomputed" in whys[0]
    # edges cross the border: from the inputs into inner nodes, from inner
    # nodes into the other group and to the output
    inner = {n for c in clusters for n in c["nodes"]}
    first, second = (set(c["nodes"]) for c in clusters)
    assert any(a in first and b in second for a, b in d["edges"])
    assert any(a not in inner and b in first for a, b in d["edges"])
    assert any(a in second and b not in inner for a, b in d["edges"])


def test_library_calls_and_views_are_plain_nodes():
    lo = needle.jit(mlp_layer).lower(X, W, B)
    d = parse_dot(lo.as_dot("fused"))
    labels = {n: v for n, v in d["nodes"].items()}
    plain = {v["attrs"]["label"].split()[0] for v in labels.values() if v["cluster"] is None}
    assert {"dot_general", "reshape"} <= plain
    assert len(d["clusters"]) == lo.kernel_count == 1
    # the literal output has a node and no edge; the input passed through has an edge
    outs = {n: v["attrs"]["label"] for n, v in labels.items()
            if v["attrs"]["label"].startswith("out ")}
    assert len(outs) == 3
    lit = next(n for n, lab in outs.items() if "3.0" in lab)
    assert all(lit not in e for e in d["edges"])
    assert all(any(b == n for _, b in d["edges"]) for n in outs if n != lit)


def test_same_program_same_text():
    # two traces (fresh Vars, other Var ids): the same text
    a = needle.jit(recomputed).lower(X, Z).as_dot("fused")
    b = needle.jit(recomputed).lower(X, Z).as_dot("fused")
    assert a == b


def test_non_graph_stage_is_an_error():
    lo = needle.jit(chain).lower(X)
    assert "kernels" in lo.stages
    with pytest.raises(ValueError, match="fused") as e:
        lo.as_dot("kernels")
    assert "traced" in str(e.value) and "kernels" in str(e.value)
    with pytest.raises(ValueError):
        lo.as_dot("no such stage")


WEIRD = 'a "quoted" \\ back\\slash\nnew line <b> {c|d} \\n \\l'


@pytest.mark.parametrize("s", [WEIRD, "", "\\", '"', "<>", "\r\n"])
def test_escape_round_trips(s):
    (kind, t), = tokenize(f'"{escape(s)}"')
    assert kind == "str" and t == s.replace("\r\n", "\n")


def _weird_program(x):
    needle.debug.print('x="{}" \\ <y> {{z}}', x)
    return nnp.exp(x) * 2.0


def _weird_fused():
    """The fused graph of _weird_program with a kernel renamed and given a why
    holding quotes, backslashes, newlines and angle brackets."""
    g = needle.jit(_weird_program).lower(X)._graphs["fused"]
    eqns = [dataclasses.replace(e, params={**e.params, "name": 'k"<1>\\', "why": WEIRD})
            if e.prim.name == "kernel" else e for e in g.eqns]
    return Graph(g.constvars, g.invars, eqns, g.outvars)


def test_labels_are_escaped():
    g = _weird_fused()
    text = graph_to_dot(g, title=WEIRD)
    d = parse_dot(text)
    assert d["attrs"]["label"] == WEIRD
    (c,) = d["clusters"].values()
    assert c["attrs"]["label"].splitlines()[0] == 'k"<1>\\'
    assert "quoted" in c["attrs"]["label"]
    assert len(d["nodes"]) == expected_nodes(g)
    cb = next(v for v in d["nodes"].values() if v["attrs"]["label"].startswith("debug_callback"))
    assert "x=\"{}\" \\\\ <y> {{z}}" in cb["attrs"]["tooltip"]
    assert "dashed" in cb["attrs"]["style"]               # an effect


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_graphviz_accepts_it():
    texts = [needle.jit(recomputed).lower(X, Z).as_dot("fused"),
             needle.jit(mlp_layer).lower(X, W, B).as_dot("traced"),
             graph_to_dot(_weird_fused(), title=WEIRD)]
    for text in texts:
        r = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert "<svg" in r.stdout and "Warning" not in r.stderr, r.stderr
