"""Stage passes: dead-code elimination of control flow (scan, while, cond,
checkpoint), the part of passes/dce.py that looks inside bodies.

Input: a control equation, which of its results are used, and the dce
function to run on bodies. Output: the equation without what nothing needs,
or None when it can go entirely.

- scan: unused ys are dropped; a carry is dropped when nothing reads it:
  neither a used result nor the body's computation of the other kept
  outputs (found as a fixpoint); consts and scanned inputs the pruned body
  no longer reads are dropped.
- while: a carry is kept when it is used, read by cond, or read by the
  body's computation of a kept carry (a fixpoint); unused consts go.
- cond, checkpoint: unused results are dropped from every branch (the body)
  and operands no branch reads any more go (cond's index stays).
An equation with no used result goes entirely, unless a body holds an
effect (a debug print inside a loop), which keeps it (and what the effect
reads).
"""
from ..ir.core import ClosedGraph, Eqn, Graph, Var
from .subgraphs import effectful


def _keep_outputs(cg, keep, dce):
    """The body with only the outputs at positions `keep`, dead code removed."""
    g = cg.graph
    return dce(ClosedGraph(Graph(g.constvars, g.invars, g.eqns,
                                 [g.outvars[k] for k in keep]), cg.consts))


def _reads(cg):
    """[whether the body reads input k] (an equation or an output does)."""
    g = cg.graph
    used = {x for e in g.eqns for x in e.inputs if isinstance(x, Var)}
    used.update(v for v in g.outvars if isinstance(v, Var))
    return [v in used for v in g.invars]


def _drop_inputs(cg, keep):
    g = cg.graph
    return ClosedGraph(Graph(g.constvars, [g.invars[k] for k in keep], g.eqns, g.outvars),
                       cg.consts)


def _eqn(e, inputs, params, outs):
    return Eqn(e.prim, list(inputs), params, list(outs), e.source)


def _scan(e, used, dce):
    p = e.params
    nc, nk = p["num_consts"], p["num_carry"]
    body = p["body"]
    ny = len(e.outs) - nk
    carries = {j for j in range(nk) if used[j]}
    ys = [nk + i for i in range(ny) if used[nk + i]]
    while True:
        keep = sorted(carries) + ys
        pruned = _keep_outputs(body, keep, dce)
        reads = _reads(pruned)
        more = {j for j in range(nk) if reads[nc + j]} - carries
        if not more:
            break
        carries |= more
    if not keep and not effectful(e):
        return None
    carries = sorted(carries)
    nx = len(e.inputs) - nc - nk
    consts = [k for k in range(nc) if reads[k]]
    xs = [nc + nk + i for i in range(nx) if reads[nc + nk + i]]
    ins = consts + [nc + j for j in carries] + xs
    params = dict(p, body=_drop_inputs(pruned, ins), num_consts=len(consts),
                  num_carry=len(carries))
    return _eqn(e, [e.inputs[k] for k in ins], params, [e.outs[k] for k in keep])


def _while(e, used, dce):
    p = e.params
    ncc, nbc = p["cond_nconsts"], p["body_nconsts"]
    cond, body = dce(p["cond"]), p["body"]
    nk = len(e.outs)
    creads = _reads(cond)
    live = {j for j in range(nk) if used[j] or creads[ncc + j]}
    if not any(used) and not effectful(e):
        return None
    while True:
        keep = sorted(live)
        pruned = _keep_outputs(body, keep, dce)
        reads = _reads(pruned)
        more = {j for j in range(nk) if reads[nbc + j]} - live
        if not more:
            break
        live |= more
    cconsts = [k for k in range(ncc) if creads[k]]
    bconsts = [k for k in range(nbc) if reads[k]]
    cond = _drop_inputs(cond, cconsts + [ncc + j for j in keep])
    pruned = _drop_inputs(pruned, bconsts + [nbc + j for j in keep])
    ins = cconsts + [ncc + k for k in bconsts] + [ncc + nbc + j for j in keep]
    params = dict(p, cond=cond, body=pruned, cond_nconsts=len(cconsts),
                  body_nconsts=len(bconsts))
    return _eqn(e, [e.inputs[k] for k in ins], params, [e.outs[j] for j in keep])


def _branches(e, used, dce, first):
    """cond (operands after the index, `first`=1) and checkpoint (`first`=0)."""
    keep = [k for k, u in enumerate(used) if u]
    if not keep and not effectful(e):
        return None
    key = "branches" if e.prim.name == "cond" else "graph"
    subs = e.params[key] if key == "branches" else (e.params[key],)
    pruned = [_keep_outputs(b, keep, dce) for b in subs]
    reads = [_reads(b) for b in pruned]
    n = len(e.inputs) - first
    ops = [k for k in range(n) if any(r[k] for r in reads)]
    pruned = tuple(_drop_inputs(b, ops) for b in pruned)
    params = dict(e.params, **{key: pruned if key == "branches" else pruned[0]})
    return _eqn(e, list(e.inputs[:first]) + [e.inputs[first + k] for k in ops], params,
                [e.outs[k] for k in keep])


def prune(e, used, dce):
    """Control equation `e` with only what its used results (`used`, one bool
    per result) need; None when it can go."""
    name = e.prim.name
    if name == "scan":
        return _scan(e, used, dce)
    if name == "while":
        return _while(e, used, dce)
    return _branches(e, used, dce, 1 if name == "cond" else 0)
