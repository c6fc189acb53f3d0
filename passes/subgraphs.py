"""Stage passes: the helpers a pass uses to work inside control-flow bodies
(ir/primitives/control.py: scan's `body`, while's `cond` and `body`, cond's
`branches`, checkpoint's `graph`).

Input: an Eqn (and a function ClosedGraph -> ClosedGraph), or a ClosedGraph.
Output: `map_subgraphs(e, fn, memo)`: the equation rebuilt with every
ClosedGraph param (or tuple of them) replaced by fn(sub), the equation itself
when nothing changed; `is_control(e)`; `effectful(e)`: the equation is an
effect or holds one in a body (a debug print inside a loop), so passes keep
it and its order; `inline_checkpoints(cg)`: checkpoint equations replaced by
their bodies' equations (fresh variables; body consts become graph consts;
`splice` does one body, conv_expand.py uses it too), in bodies too:
checkpoint matters only to autodiff, which runs before (`INLINED` names it); `known_operands(e, value_of)` / `bind_inputs(cg,
values)`: operands known at compile time (literals, captured arrays) moved
into the bodies, for folding.

A body keeps its interface (inputs, outputs and their types) through every
pass; it may gain consts (numpy arrays) from folding: its compiled plan
holds them.
"""
from ..ir.core import ClosedGraph, Eqn, Graph, Lit, Var
from ..ir.primitives import checkpoint_p


# Control primitives no runtime step runs: fusion splices them in.
INLINED = frozenset({checkpoint_p.name})


def is_control(e):
    return e.prim.kind == "control"


def _subs(params):
    for k, v in params.items():
        if isinstance(v, ClosedGraph):
            yield k, v
        elif isinstance(v, tuple) and v and all(isinstance(b, ClosedGraph) for b in v):
            yield from ((k, b) for b in v)


def map_subgraphs(e, fn, memo=None):
    """`e` with each ClosedGraph param `sub` replaced by fn(sub); a sub-graph
    met twice (by object) is mapped once when `memo` (a dict) is shared."""
    if not is_control(e):
        return e
    memo = {} if memo is None else memo

    def apply(sub):
        if id(sub) not in memo:
            memo[id(sub)] = (sub, fn(sub))       # keep sub alive: ids stay unique
        return memo[id(sub)][1]

    params = dict(e.params)
    for k in dict(_subs(e.params)):
        v = e.params[k]
        params[k] = tuple(apply(b) for b in v) if isinstance(v, tuple) else apply(v)
    changed = any(params[k] is not v and (not isinstance(v, tuple) or any(
        a is not b for a, b in zip(params[k], v))) for k, v in e.params.items())
    return Eqn(e.prim, list(e.inputs), params, list(e.outs), e.source) if changed else e


def effectful(e):
    """An effect, or a control equation with an effect in a body."""
    return e.prim.effectful or (is_control(e) and any(
        effectful(x) for _, sub in _subs(e.params) for x in sub.graph.eqns))


def inline_checkpoints(cg):
    """`cg` with every checkpoint equation (at any depth) spliced in."""
    g = cg.graph
    if not any(e.prim is checkpoint_p or is_control(e) for e in g.eqns):
        return cg
    constvars, consts = list(g.constvars), list(cg.consts)
    env, eqns = {}, []

    def read(x):
        return env.get(x, x) if isinstance(x, Var) else x

    for e in g.eqns:
        if e.prim is not checkpoint_p:
            e = map_subgraphs(e, inline_checkpoints)
            eqns.append(Eqn(e.prim, [read(x) for x in e.inputs], e.params, e.outs, e.source)
                        if any(x in env for x in e.inputs if isinstance(x, Var)) else e)
            continue
        body = inline_checkpoints(e.params["graph"])
        results = splice(body, [read(x) for x in e.inputs], constvars, consts, eqns)
        env.update(zip(e.outs, results))
    outvars = [read(v) for v in g.outvars]
    return ClosedGraph(Graph(constvars, g.invars, eqns, outvars), consts)


def splice(body, inputs, constvars, consts, eqns, source=None):
    """Append ClosedGraph `body`'s equations, with fresh variables and
    `inputs` for its invars, to `eqns` (its consts to `constvars` /
    `consts`); returns the atoms standing for its outputs. `source`: the
    user line the spliced equations carry (default: their own)."""
    bg = body.graph
    inner = {}
    for v, c in zip(bg.constvars, body.consts):
        inner[v] = Var(v.aval)
        constvars.append(inner[v])
        consts.append(c)
    inner.update(zip(bg.invars, inputs))
    for be in bg.eqns:
        outs = [Var(v.aval) for v in be.outs]
        eqns.append(Eqn(be.prim, [inner.get(x, x) if isinstance(x, Var) else x
                                  for x in be.inputs], be.params, outs,
                        be.source if source is None else source))
        inner.update(zip(be.outs, outs))
    return [inner.get(x, x) if isinstance(x, Var) else x for x in bg.outvars]




def bind_inputs(cg, values):
    """`cg` with the inputs at positions `values` ({position: Lit or numpy
    array}) removed: a Lit is written where the input was read, an array
    becomes a const of the body."""
    g = cg.graph
    env, constvars, consts = {}, list(g.constvars), list(cg.consts)
    for k, val in values.items():
        v = g.invars[k]
        if isinstance(val, Lit):
            env[v] = val
        else:
            constvars.append(v)
            consts.append(val)

    def read(x):
        return env.get(x, x) if isinstance(x, Var) else x

    eqns = [Eqn(e.prim, [read(x) for x in e.inputs], e.params, e.outs, e.source)
            if any(isinstance(x, Var) and x in env for x in e.inputs) else e for e in g.eqns]
    invars = [v for k, v in enumerate(g.invars) if k not in values]
    return ClosedGraph(Graph(constvars, invars, eqns, [read(v) for v in g.outvars]), consts)


def known_operands(e, value_of):
    """The control equation `e` with the operands that `value_of` knows
    (x -> Lit or numpy array, or None) moved into its bodies, where folding
    can use them; `e` itself when none is known. A scan's or while's consts
    and a cond's operands move; carries, scanned inputs and the branch index
    stay operands."""
    p, ins = e.params, e.inputs
    if e.prim.name == "scan":
        groups = [("body", None, 0, p["num_consts"])]
    elif e.prim.name == "while":
        groups = [("cond", None, 0, p["cond_nconsts"]),
                  ("body", None, p["cond_nconsts"], p["body_nconsts"])]
    elif e.prim.name == "cond":
        groups = [("branches", None, 1, len(ins) - 1)]
    else:
        return e
    params, drop = dict(p), set()
    for key, _, start, n in groups:
        vals = {k: value_of(ins[start + k]) for k in range(n)}
        vals = {k: v for k, v in vals.items() if v is not None}
        if not vals:
            continue
        drop.update(start + k for k in vals)
        sub = p[key]
        params[key] = tuple(bind_inputs(b, vals) for b in sub) if isinstance(sub, tuple) \
            else bind_inputs(sub, vals)
        count = {"body": "num_consts" if e.prim.name == "scan" else "body_nconsts",
                 "cond": "cond_nconsts", "branches": None}[key]
        if count:
            params[count] = p[count] - len(vals)
    if not drop:
        return e
    return Eqn(e.prim, [x for k, x in enumerate(ins) if k not in drop], params, list(e.outs),
               e.source)
