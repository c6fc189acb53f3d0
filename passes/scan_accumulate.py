"""Stage passes: accumulations moved out of scans: a carry that a scan's
body only ever updates as `c_new = c + f_t`, where f_t is a matrix product
or a sum of per-step values, is summed after the loop by ONE matrix product
(or one reduction) over the stacked time axis instead of once per step.

Input: a ClosedGraph. Output: an equivalent ClosedGraph. The pattern is the
transpose of a scan (reverse mode of an RNN / LSTM): a weight used in the
body gets its gradient accumulated in a carry, `acc + h_{t-1}^T @ dgates_t`,
a (B, H) x (B, 4H) product and an add per step, where PyTorch makes one
(T*B, H) x (T*B, 4H) product after the loop. Here the operands of such a
product become per-step outputs (ys) of the scan (a scanned input is read
as the stacked input itself; a value the body already outputs per step is
reused, so an LSTM's backward stacks nothing new) and after the loop
`init + dot_general(A, B)` contracts the time axis together with the
product's own contracting axes (batch axes stay batch axes). Likewise
`acc + reduce_sum(v_t, axes)`, where v is stacked anyway (a bias's gradient:
dgates summed over the batch), becomes one reduce_sum of the stacked v over
(time, axes), and `acc + v_t` one reduce_sum over time.

When: the carry c is read by nothing in the body but a chain of adds
`c + t1 + t2 + ...` (each intermediate read once, by the next add) whose
result is c's new value and read by nothing else (neither by another carry
nor by a ys). Terms that move: a dot_general of two values that vary per
step (not loop-invariant: a constant operand is loop hoisting's business);
a value the scan stacks anyway (a scanned input, a ys, an operand of a
moved product) or a reduce_sum of one. Other terms stay summed in the carry
(a reduce_sum of a value not stacked otherwise, such as a loss summed over
steps: stacking it would cost T times its size to save a cheap per-step
sum), which then stays, without the moved terms; the carry goes when none
stays. Bodies are rewritten innermost first; `reverse=True` scans are the
same (ys[t] pairs with xs[t] whatever the direction).

Numerics: the sum over steps happens inside one BLAS product or reduction
instead of step by step, so float32 results differ from the loop's in the
last bits (a different summation order, usually more accurate); they agree
within float tolerance, as any re-association does. Memory: the stacked
operands cost T*B*H values each, as PyTorch's stored activations do; none
when they are already outputs of the scan (an LSTM's gate gradients are).
"""
import numpy as np

from ..ir.core import ClosedGraph, Eqn, Graph, Lit, ShapedArray, Var
from ..ir.primitives import (add_p, broadcast_in_dim_p, dot_general_p, reduce_sum_p,
                             scan_p)
from .subgraphs import map_subgraphs


def _aval(prim, avals, params):
    out = prim.abstract_eval(*avals, **params)
    return (out[0] if isinstance(out, (list, tuple)) else out).strong()


def _uses(g):
    """{Var: how often an equation or an output reads it}."""
    n = {}
    for e in g.eqns:
        for x in e.inputs:
            if isinstance(x, Var):
                n[x] = n.get(x, 0) + 1
    for v in g.outvars:
        if isinstance(v, Var):
            n[v] = n.get(v, 0) + 1
    return n


def _invariant(g, nc, ncar):
    """The Vars of body `g` that are the same at every step."""
    inv = set(g.constvars) | set(g.invars[:nc])
    for e in g.eqns:
        if not e.prim.effectful and e.prim.kind != "control" and \
                all(isinstance(x, Lit) or x in inv for x in e.inputs):
            inv.update(e.outs)
    return inv


def _chain(c, out, defs, uses):
    """The add chain from carry input `c` to its new value `out`: (add eqns,
    terms) when `out` is c plus terms and c is read only by that chain,
    else None."""
    adds, terms, seen_c = [], [], []

    def walk(v):
        e = defs.get(v)
        if v is c:
            seen_c.append(v)
        elif e is not None and e.prim is add_p and uses.get(v) == 1 and \
                all(x.aval.shape == c.aval.shape and x.aval.dtype == c.aval.dtype
                    for x in e.inputs):
            adds.append(e)
            for x in e.inputs:
                walk(x)
        else:
            terms.append(v)

    if out is c or defs.get(out) is None or defs[out].prim is not add_p:
        return None
    walk(out)
    if len(seen_c) != 1 or uses.get(c) != 1:
        return None
    return adds, terms


def _movable(t, defs, inv, per_step):
    """A term summed better after the loop: a dot_general whose operands
    both vary per step (stacked as needed), or a value the scan stacks
    anyway (a scanned input, a ys, an operand of such a product), or a
    reduce_sum of one. A reduce_sum of anything else stays: stacking its
    operand would cost T times its size for a cheap per-step reduction
    (a loss summed over steps)."""
    if t in per_step:
        return True
    e = defs.get(t)
    if e is None:
        return False
    if e.prim is reduce_sum_p:
        return e.inputs[0] in per_step
    return e.prim is dot_general_p and \
        all(isinstance(x, Var) and x not in inv for x in e.inputs)


def _is_zero(x, outer_defs):
    """An operand of the scan that is all zeros (a literal or its broadcast)."""
    if isinstance(x, Lit):
        return not np.any(x.val)
    e = outer_defs.get(x)
    return e is not None and e.prim is broadcast_in_dim_p and isinstance(e.inputs[0], Lit) \
        and not np.any(e.inputs[0].val)


def _rewrite_scan(e, outer_defs):
    """(equations replacing scan equation `e`) or None when nothing moves."""
    p = e.params
    body, nc, ncar, length = p["body"], p["num_consts"], p["num_carry"], p["length"]
    g = body.graph
    defs = {o: be for be in g.eqns for o in be.outs}
    uses = _uses(g)
    inv = _invariant(g, nc, ncar)
    per_step = set(g.invars[nc + ncar:]) | {v for v in g.outvars[ncar:] if isinstance(v, Var)}
    chains = {}
    for i in range(ncar):
        c, out = g.invars[nc + i], g.outvars[i]
        if isinstance(out, Var) and c not in g.outvars:
            ch = _chain(c, out, defs, uses)
            if ch is not None:
                chains[i] = ch
    # The operands the moved products and reductions stack count as per-step
    # values already stacked (a bias's gradient, dgates summed, reuses dgates').
    per_step |= {x for adds, terms in chains.values() for t in terms
                 if defs.get(t) is not None and defs[t].prim is dot_general_p and
                 _movable(t, defs, inv, ()) for x in defs[t].inputs}
    plans = {}                                       # carry index -> (adds, moved, staying)
    for i, (adds, terms) in chains.items():
        moved = [t for t in terms if _movable(t, defs, inv, per_step)]
        if moved:
            plans[i] = (adds, moved, [t for t in terms if t not in moved])
    if not plans:
        return None
    # Per-step values read after the loop, stacked: scanned inputs, ys, or new ys.
    stacked, new_ys = {}, []
    for k, v in enumerate(g.invars[nc + ncar:]):
        stacked.setdefault(v, e.inputs[nc + ncar + k])
    for k, v in enumerate(g.outvars[ncar:]):
        if isinstance(v, Var):
            stacked.setdefault(v, e.outs[ncar + k])

    def stack(v):
        if v not in stacked:
            stacked[v] = Var(ShapedArray((length,) + tuple(v.aval.shape), v.aval.dtype))
            new_ys.append((v, stacked[v]))
        return stacked[v]

    after, drop_adds, body_tail = [], set(), []
    new_out = list(g.outvars)
    final = {}                                       # carry index -> [outer atoms to sum]
    for i, (adds, moved, staying) in plans.items():
        drop_adds.update(id(a) for a in adds)
        parts = []
        for t in moved:
            te = defs.get(t)
            if t in per_step:                        # already stacked: sum over time
                prim, ins, params = reduce_sum_p, [stack(t)], {"axes": (0,)}
            elif te.prim is dot_general_p:           # time contracted with the K axes
                (lc, rc), (lb, rb) = te.params["dimension_numbers"]
                dn = (((0,) + tuple(a + 1 for a in lc), (0,) + tuple(a + 1 for a in rc)),
                      (tuple(a + 1 for a in lb), tuple(a + 1 for a in rb)))
                prim, ins, params = dot_general_p, [stack(x) for x in te.inputs], \
                    {"dimension_numbers": dn}
            else:                                    # reduce_sum: time reduced too
                prim, ins = reduce_sum_p, [stack(te.inputs[0])]
                params = {**te.params, "axes": (0,) + tuple(a + 1 for a in te.params["axes"])}
            v = Var(_aval(prim, [x.aval for x in ins], params))
            after.append(Eqn(prim, ins, params, [v], te.source if te is not None else e.source))
            parts.append(v)
        c = g.invars[nc + i]
        if staying:                                  # the carry keeps the other terms
            acc = c
            for t in staying:
                nv = Var(c.aval)
                body_tail.append(Eqn(add_p, [acc, t], {}, [nv], adds[0].source))
                acc = nv
            new_out[i] = acc
            final[i] = [None] + parts                # None: the scan's carry result
        else:
            init = e.inputs[nc + i]
            final[i] = ([] if _is_zero(init, outer_defs) else [init]) + parts
    keep_carry = [i for i in range(ncar) if i not in plans or plans[i][2]]
    # The new body: chains removed (or rebuilt with the staying terms), new ys.
    eqns = [be for be in g.eqns if id(be) not in drop_adds] + body_tail
    invars = list(g.invars[:nc]) + [g.invars[nc + i] for i in keep_carry] + \
        list(g.invars[nc + ncar:])
    outvars = [new_out[i] for i in keep_carry] + list(new_out[ncar:]) + [v for v, _ in new_ys]
    new_body = ClosedGraph(Graph(g.constvars, invars, eqns, outvars), body.consts)
    carry_res = {i: (Var(e.outs[i].aval) if i in final else e.outs[i]) for i in keep_carry}
    outs = [carry_res[i] for i in keep_carry] + list(e.outs[ncar:]) + [s for _, s in new_ys]
    ops = list(e.inputs[:nc]) + [e.inputs[nc + i] for i in keep_carry] + \
        list(e.inputs[nc + ncar:])
    scan = Eqn(scan_p, ops, {**p, "body": new_body, "num_carry": len(keep_carry)}, outs,
               e.source)
    # After the loop: each moved carry's result = init (or the scan's carry) + the sums.
    for i, parts in final.items():
        parts = [carry_res[i] if x is None else x for x in parts]
        res = e.outs[i]
        if len(parts) == 1:                          # a zero init: the product is the result
            k = next(k for k, a in enumerate(after) if a.outs[0] is parts[0])
            a = after[k]
            after[k] = Eqn(a.prim, a.inputs, a.params, [res], a.source)
            continue
        acc = parts[0]
        for k, x in enumerate(parts[1:]):
            nv = res if k == len(parts) - 2 else Var(res.aval)
            after.append(Eqn(add_p, [acc, x], {}, [nv], e.source))
            acc = nv
    return [scan] + after


def hoist_accumulations(cg):
    g = cg.graph
    memo = {}
    eqns = [map_subgraphs(e, hoist_accumulations, memo) for e in g.eqns]
    if not any(e.prim is scan_p for e in eqns):
        return cg if all(a is b for a, b in zip(eqns, g.eqns)) else \
            ClosedGraph(Graph(g.constvars, g.invars, eqns, g.outvars), cg.consts)
    defs = {o: e for e in eqns for o in e.outs}
    out = []
    for e in eqns:
        new = _rewrite_scan(e, defs) if e.prim is scan_p and e.params["length"] > 0 else None
        out += new if new is not None else [e]
    return ClosedGraph(Graph(g.constvars, g.invars, out, g.outvars), cg.consts)
