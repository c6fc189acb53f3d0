"""Stage passes (autodiff): the rules of the control-flow primitives (scan,
cond, while, checkpoint): JVP, partial evaluation and transpose.

Input: nothing. Output: entries in `JVP_RULES`, `TRANSPOSE_RULES` and
`PARTIAL_EVAL_RULES` (partial_eval.py).

JAX's designs, on needle's closed sub-graphs:
- JVP: the body is differentiated once into a body of primals and tangents
  (a carry's tangent is non-zero if its input's is or the body makes it so:
  a fixpoint), and the same primitive is bound on it.
- Partial evaluation (reverse mode): a scan splits into a forward scan over
  the known part that stacks the per-step residuals as extra outputs (a
  residual that only depends on loop constants is computed once, before
  the loop; a residual that is a scanned input is read from that input), and
  a scan over the unknown (linear) part that reads them. A cond splits per
  branch (each branch's residuals, zeros in the other branches). A
  checkpoint keeps no residual but its inputs: its unknown part recomputes
  the body. A while_loop cannot be split for reverse mode: its trip count is
  a run-time value (the error names the user's loop).
- Transpose: a linear scan transposes into a scan running the other way
  whose carry accumulates the constants' cotangents; a cond into a cond of
  transposed branches; a checkpoint into a checkpoint (so the recomputation
  stays apart from the forward pass, never merged by CSE).
"""
import numpy as np

from ...ir.core import ClosedGraph, Eqn, Graph, Lit, ShapedArray, Var
from ...ir.primitives import broadcast_in_dim_p, checkpoint_p, cond_p, scan_p, while_p
from ...tracer.core import trace_to_graph
from .partial_eval import PARTIAL_EVAL_RULES, residuals_of, split_eqns
from .rules import JVP_RULES, TRANSPOSE_RULES, UndefinedPrimal, add, aval_of_value, instantiate
from .transform import backward_pass, jvp_eval


# --- helpers -------------------------------------------------------------------------

def _explicit(cg):
    """A traced ClosedGraph with its captured values made leading inputs:
    (ClosedGraph without consts, the values)."""
    g = cg.graph
    return ClosedGraph(Graph([], list(g.constvars) + list(g.invars), g.eqns, g.outvars),
                       []), list(cg.consts)


def _union_consts(cgs):
    """Traced branches (same inputs) as branches that all take the union of
    their captured values first: (branches, values)."""
    closed = [_explicit(cg) for cg in cgs]
    consts = [c for _, cs in closed for c in cs]
    out, offset = [], 0
    for body, cs in closed:
        g = body.graph
        before = [Var(aval_of_value(c)) for c in consts[:offset]]
        after = [Var(aval_of_value(c)) for c in consts[offset + len(cs):]]
        out.append(ClosedGraph(Graph([], before + g.invars[:len(cs)] + after +
                                     g.invars[len(cs):], g.eqns, g.outvars), []))
        offset += len(cs)
    return out, consts


def _trace(fn, avals, name):
    return trace_to_graph(fn, list(avals), name)[0]


def _jvp_nonzero(body, nz):
    """Which outputs of `body` get a non-zero tangent from inputs with
    non-zero tangents `nz` (one trace of its JVP)."""
    g = body.graph
    found = []

    def fn(*args):
        it = iter(args[len(g.invars):])
        tans = [next(it) if z else None for z in nz]
        _, touts = jvp_eval(g, body.consts, list(args[:len(g.invars)]), tans)
        found[:] = [t is not None for t in touts]
        return []

    _trace(fn, g.in_avals + [a for a, z in zip(g.in_avals, nz) if z], "jvp")
    return found


def _jvp_body(body, nz, out_nz, order):
    """The traced JVP of `body`: its inputs are the primals and the non-zero
    tangents, arranged by `order` (a list of groups of input positions:
    each group's primals, then its tangents); its outputs, by the output
    groups in `order[-1]`, each group's primals then its instantiated
    tangents (out_nz)."""
    g = body.graph
    in_groups, out_groups = order
    layout = []                       # (position, is_tangent) per new input
    for grp in in_groups:
        layout += [(i, False) for i in grp] + [(i, True) for i in grp if nz[i]]
    avals = [g.in_avals[i] for i, _ in layout]

    def fn(*args):
        prim = [None] * len(g.invars)
        tans = [None] * len(g.invars)
        for (i, is_t), a in zip(layout, args):
            (tans if is_t else prim)[i] = a
        outs, touts = jvp_eval(g, body.consts, prim, tans)
        res = []
        for grp in out_groups:
            res += [outs[i] for i in grp]
            res += [instantiate(touts[i], g.outvars[i].aval) for i in grp if out_nz[i]]
        return res

    return _explicit(_trace(fn, avals, "jvp"))


def _split(graph, in_unknown, transposing, force=None):
    """Partial evaluation of a body: (known eqns, unknown eqns, unknown set,
    output unknown flags); `force` marks outputs the unknown side must give
    even if they are known."""
    unknown = {v for v, u in zip(graph.invars, in_unknown) if u}
    k, u = split_eqns(graph.eqns, unknown, transposing)
    out_uk = [isinstance(v, Var) and v in unknown for v in graph.outvars]
    return k, u, unknown, out_uk


def _transpose_body(g, consts, lin, res_vals, cts):
    """Inside a trace: the cotangents of the inputs of Graph `g` flagged
    `lin`, given the values of the others and the output cotangents. The
    known part of `g` is evaluated (recomputed), the rest transposed."""
    unknown = {v for v, l in zip(g.invars, lin) if l}
    known_eqns, lin_eqns = split_eqns(g.eqns, unknown, True)
    env = dict(zip(g.constvars, consts))
    env.update(zip([v for v, l in zip(g.invars, lin) if not l], res_vals))

    def read(x):
        return x.val if isinstance(x, Lit) else env[x]

    for e in known_eqns:
        outs = e.prim.bind(*[read(x) for x in e.inputs], **e.params)
        env.update(zip(e.outs, outs if e.prim.multiple_results else [outs]))
    t_in = [v for v, l in zip(g.invars, lin) if l]
    return backward_pass(lin_eqns, env, unknown, t_in, list(g.outvars), list(cts))


def _zeros_eqn(aval):
    """(atom, eqns) of an all-zeros value of `aval` built by hand."""
    z = Lit(np.zeros((), aval.dtype)[()], ShapedArray((), aval.dtype))
    if not aval.shape:
        return z, []
    v = Var(ShapedArray(aval.shape, aval.dtype))
    return v, [Eqn(broadcast_in_dim_p, [z], {"shape": tuple(aval.shape),
                                             "broadcast_dimensions": ()}, [v])]


def _stacked(aval, length):
    return ShapedArray((length,) + tuple(aval.shape), aval.dtype)


# --- scan ----------------------------------------------------------------------------

def _scan_jvp(primals, tangents, *, body, length, reverse, num_consts, num_carry, unroll,
              name):
    nc, ncar = num_consts, num_carry
    n = len(primals)
    nz = [t is not None for t in tangents]
    while True:                        # carry tangents: a fixpoint
        out_nz = _jvp_nonzero(body, nz)
        new = nz[:nc] + [a or b for a, b in zip(nz[nc:nc + ncar], out_nz[:ncar])] + nz[nc + ncar:]
        if new == nz:
            break
        nz = new
    out_nz = nz[nc:nc + ncar] + out_nz[ncar:]
    groups = [list(range(nc)), list(range(nc, nc + ncar)), list(range(nc + ncar, n))]
    n_out = len(body.graph.outvars)
    out_groups = [list(range(ncar)), list(range(ncar, n_out))]
    jb, consts = _jvp_body(body, nz, out_nz, (groups, out_groups))
    ops = []
    for grp in groups:
        ops += [primals[i] for i in grp]
        ops += [instantiate(tangents[i], aval_of_value(primals[i])) for i in grp if nz[i]]
    outs = scan_p.bind(*consts, *ops, body=jb, length=length, reverse=reverse,
                       num_consts=len(consts) + nc + sum(nz[:nc]),
                       num_carry=ncar + sum(nz[nc:nc + ncar]), unroll=unroll, name=name)
    it = iter(outs)
    p_out, t_out = [], []
    for grp in out_groups:
        p_out += [next(it) for _ in grp]
        t_out += [next(it) if out_nz[i] else None for i in grp]
    return p_out, t_out


def _scan_partial(e, flags, transposing):
    p = e.params
    body, length = p["body"], p["length"]
    g = body.graph
    nc, ncar = p["num_consts"], p["num_carry"]
    ops = e.inputs
    in_uk = list(flags)
    while True:
        _, _, _, out_uk = _split(g, in_uk, transposing)
        new = in_uk[:nc] + [a or b for a, b in zip(in_uk[nc:nc + ncar], out_uk[:ncar])] + \
            in_uk[nc + ncar:]
        if new == in_uk:
            break
        in_uk = new
    want = in_uk[nc:nc + ncar] + out_uk[ncar:]          # outputs of the unknown scan
    k_eqns, u_eqns, unknown, _ = _split(g, in_uk, transposing)
    res = residuals_of(u_eqns, unknown, extra=[v for v, w in zip(g.outvars, want) if w],
                       exclude=g.constvars)
    pos = {v: i for i, v in enumerate(g.invars)}
    # Loop-invariant values: the known constants and what is computed from them alone.
    inv = {v for v, u in zip(g.invars[:nc], in_uk[:nc]) if not u}
    for ke in k_eqns:
        if all(isinstance(x, Lit) or x in inv for x in ke.inputs):
            inv.update(ke.outs)
    res_const = [r for r in res if r in inv]
    res_xs = [r for r in res if r not in inv and pos.get(r, -1) >= nc + ncar]
    res_step = [r for r in res if r not in inv and r not in res_xs]
    # Hoist what the invariant residuals need out of the loop, once.
    outer = {g.invars[i]: ops[i] for i in range(nc) if not in_uk[i]}
    needed = {r for r in res_const if r not in outer}
    hoisted = []
    for ke in reversed(k_eqns):
        if any(o in needed for o in ke.outs):
            needed.update(x for x in ke.inputs if isinstance(x, Var))
    for ke in k_eqns:
        if any(o in needed for o in ke.outs):
            outs = [Var(o.aval) for o in ke.outs]
            hoisted.append(Eqn(ke.prim, [outer.get(x, x) if isinstance(x, Var) else x
                                         for x in ke.inputs], ke.params, outs, ke.source))
            outer.update(zip(ke.outs, outs))
    # The known scan: the known outputs, then the stacked per-step residuals.
    k_in = [v for v, u in zip(g.invars, in_uk) if not u]
    k_out_pos = [i for i, w in enumerate(want) if not w]
    k_body = ClosedGraph(Graph(g.constvars, k_in, k_eqns,
                               [g.outvars[i] for i in k_out_pos] + res_step), body.consts)
    stacked = [Var(_stacked(r.aval, length)) for r in res_step]
    known = Eqn(scan_p, [x for x, u in zip(ops, in_uk) if not u],
                {**p, "body": k_body, "num_consts": sum(not u for u in in_uk[:nc]),
                 "num_carry": sum(not u for u in in_uk[nc:nc + ncar])},
                [e.outs[i] for i in k_out_pos] + stacked, e.source)
    # The unknown scan reads them: invariants as constants, the rest per step.
    sel = [i for i in range(nc) if in_uk[i]]
    car = [i for i in range(nc, nc + ncar) if in_uk[i]]
    xs = [i for i in range(nc + ncar, len(ops)) if in_uk[i]]
    u_in = res_const + [g.invars[i] for i in sel + car] + res_xs + res_step + \
        [g.invars[i] for i in xs]
    u_ops = [outer[r] for r in res_const] + [ops[i] for i in sel + car] + \
        [ops[pos[r]] for r in res_xs] + stacked + [ops[i] for i in xs]
    u_body = ClosedGraph(Graph(g.constvars, u_in, u_eqns,
                               [v for v, w in zip(g.outvars, want) if w]), body.consts)
    unknown_eqn = Eqn(scan_p, u_ops, {**p, "body": u_body,
                                      "num_consts": len(res_const) + len(sel),
                                      "num_carry": len(car)},
                      [o for o, w in zip(e.outs, want) if w], e.source)
    return hoisted + [known], [unknown_eqn]


def _scan_transpose(cts, *args, body, length, reverse, num_consts, num_carry, unroll, name):
    nc, ncar = num_consts, num_carry
    g = body.graph
    consts, carry, xs = args[:nc], args[nc:nc + ncar], args[nc + ncar:]
    lin_c = [isinstance(a, UndefinedPrimal) for a in consts]
    lin_x = [isinstance(a, UndefinedPrimal) for a in xs]
    res_c = [a for a, l in zip(consts, lin_c) if not l]
    res_x = [a for a, l in zip(xs, lin_x) if not l]
    c_avals = [v.aval for v in g.invars[nc:nc + ncar]]
    lc_avals = [v.aval for v, l in zip(g.invars[:nc], lin_c) if l]
    y_avals = g.out_avals[ncar:]
    ct_carry = [instantiate(c, a) for c, a in zip(cts[:ncar], c_avals)]
    ct_ys = [instantiate(c, _stacked(a, length)) for c, a in zip(cts[ncar:], y_avals)]
    ct_c0 = [instantiate(None, a) for a in lc_avals]
    n_rc, n_lc, n_rx = len(res_c), len(lc_avals), len(res_x)
    lin = lin_c + [True] * ncar + lin_x

    def body_t(*a):
        rc, acc = a[:n_rc], a[n_rc:n_rc + n_lc]
        ctc = a[n_rc + n_lc:n_rc + n_lc + ncar]
        rx = a[n_rc + n_lc + ncar:n_rc + n_lc + ncar + n_rx]
        cty = a[n_rc + n_lc + ncar + n_rx:]
        cts_in = _transpose_body(g, body.consts, lin, list(rc) + list(rx), list(ctc) + list(cty))
        ct_lc, ct_c, ct_lx = cts_in[:n_lc], cts_in[n_lc:n_lc + ncar], cts_in[n_lc + ncar:]
        return [add(x, y) for x, y in zip(acc, ct_lc)] + list(ct_c) + list(ct_lx)

    avals = [aval_of_value(r) for r in res_c] + lc_avals + c_avals + \
        [ShapedArray(aval_of_value(r).shape[1:], aval_of_value(r).dtype) for r in res_x] + \
        list(y_avals)
    tb, tconsts = _explicit(_trace(body_t, avals, f"transpose({name})"))
    outs = scan_p.bind(*tconsts, *res_c, *ct_c0, *ct_carry, *res_x, *ct_ys, body=tb,
                       length=length, reverse=not reverse, num_consts=len(tconsts) + n_rc,
                       num_carry=n_lc + ncar, unroll=unroll, name=f"transpose({name})")
    ct_lc, ct_init, ct_lx = outs[:n_lc], outs[n_lc:n_lc + ncar], outs[n_lc + ncar:]
    it_c, it_x = iter(ct_lc), iter(ct_lx)
    return ([next(it_c) if l else None for l in lin_c] +
            [c if isinstance(a, UndefinedPrimal) else None for c, a in zip(ct_init, carry)] +
            [next(it_x) if l else None for l in lin_x])


JVP_RULES[scan_p] = _scan_jvp
PARTIAL_EVAL_RULES[scan_p] = _scan_partial
TRANSPOSE_RULES[scan_p] = _scan_transpose


# --- cond ----------------------------------------------------------------------------

def _cond_jvp(primals, tangents, *, branches):
    index, ops = primals[0], list(primals[1:])
    nz = [t is not None for t in tangents[1:]]
    out_nz = [False] * len(branches[0].graph.outvars)
    for b in branches:
        out_nz = [a or c for a, c in zip(out_nz, _jvp_nonzero(b, nz))]
    n, n_out = len(ops), len(out_nz)
    traced = []
    for b in branches:
        jb, consts = _jvp_body(b, nz, out_nz, ([list(range(n))], [list(range(n_out))]))
        traced.append(ClosedGraph(Graph(jb.graph.invars[:len(consts)], jb.graph.invars[
            len(consts):], jb.graph.eqns, jb.graph.outvars), consts))
    new, consts = _union_consts(traced)
    t_ops = [instantiate(t, v.aval) for t, v, z in
             zip(tangents[1:], branches[0].graph.invars, nz) if z]
    outs = cond_p.bind(index, *consts, *ops, *t_ops, branches=tuple(new))
    it = iter(outs[n_out:])
    return list(outs[:n_out]), [next(it) if z else None for z in out_nz]


def _cond_partial(e, flags, transposing):
    if flags[0]:                       # an unknown index: nothing to split
        return [], [e]
    index, ops = e.inputs[0], e.inputs[1:]
    branches = e.params["branches"]
    in_uk = list(flags[1:])
    out_uk = [False] * len(e.outs)
    for b in branches:
        out_uk = [a or c for a, c in zip(out_uk, _split(b.graph, in_uk, transposing)[3])]
    splits, all_res = [], []
    for k, b in enumerate(branches):
        g = b.graph
        ke, ue, unknown, _ = _split(g, in_uk, transposing)
        res = residuals_of(ue, unknown, extra=[v for v, w in zip(g.outvars, out_uk) if w],
                           exclude=g.constvars)
        splits.append((ke, ue, res))
        all_res += [(k, r) for r in res]
    k_branches, u_branches = [], []
    for k, (b, (ke, ue, res)) in enumerate(zip(branches, splits)):
        g = b.graph
        extra, outs = [], []
        for j, r in all_res:
            if j == k:
                outs.append(r)
            else:
                z, zeqns = _zeros_eqn(r.aval)
                extra += zeqns
                outs.append(z)
        k_branches.append(ClosedGraph(Graph(
            g.constvars, [v for v, u in zip(g.invars, in_uk) if not u], ke + extra,
            [v for v, w in zip(g.outvars, out_uk) if not w] + outs), b.consts))
        u_in = [r if j == k else Var(r.aval) for j, r in all_res]
        u_branches.append(ClosedGraph(Graph(
            g.constvars, u_in + [v for v, u in zip(g.invars, in_uk) if u], ue,
            [v for v, w in zip(g.outvars, out_uk) if w]), b.consts))
    res_vars = [Var(r.aval) for _, r in all_res]
    known = Eqn(cond_p, [index] + [x for x, u in zip(ops, in_uk) if not u],
                {"branches": tuple(k_branches)},
                [o for o, w in zip(e.outs, out_uk) if not w] + res_vars, e.source)
    unknown = Eqn(cond_p, [index] + res_vars + [x for x, u in zip(ops, in_uk) if u],
                  {"branches": tuple(u_branches)},
                  [o for o, w in zip(e.outs, out_uk) if w], e.source)
    return [known], ([unknown] if unknown.outs else [])


def _cond_transpose(cts, index, *ops, branches):
    lin = [isinstance(o, UndefinedPrimal) for o in ops]
    res = [o for o, l in zip(ops, lin) if not l]
    out_avals = branches[0].graph.out_avals
    cts = [instantiate(c, a) for c, a in zip(cts, out_avals)]
    traced = []
    for b in branches:
        def fn(*a, b=b):
            return _transpose_body(b.graph, b.consts, lin, list(a[:len(res)]),
                                   list(a[len(res):]))
        traced.append(_trace(fn, [aval_of_value(r) for r in res] + list(out_avals),
                             "transpose(branch)"))
    new, consts = _union_consts(traced)
    outs = cond_p.bind(index, *consts, *res, *cts, branches=tuple(new))
    it = iter(outs)
    return [None] + [next(it) if l else None for l in lin]


JVP_RULES[cond_p] = _cond_jvp
PARTIAL_EVAL_RULES[cond_p] = _cond_partial
TRANSPOSE_RULES[cond_p] = _cond_transpose


# --- while ---------------------------------------------------------------------------

def _while_jvp(primals, tangents, *, cond, body, cond_nconsts, body_nconsts, name):
    cn, bn = cond_nconsts, body_nconsts
    n = len(primals) - cn - bn
    nz = [t is not None for t in tangents[cn:]]          # body consts, carry
    while True:
        out_nz = _jvp_nonzero(body, nz)
        new = nz[:bn] + [a or b for a, b in zip(nz[bn:], out_nz)]
        if new == nz:
            break
        nz = new
    groups = [list(range(bn)), list(range(bn, bn + n))]
    jb, consts = _jvp_body(body, nz, nz[bn:], (groups, [list(range(n))]))
    cg = cond.graph
    dummies = [Var(v.aval) for v, z in zip(cg.invars[cn:], nz[bn:]) if z]
    new_cond = ClosedGraph(Graph(cg.constvars, list(cg.invars) + dummies, cg.eqns, cg.outvars),
                           cond.consts)
    b_ops = list(primals[cn:cn + bn]) + [instantiate(tangents[cn + i], body.graph.invars[i].aval)
                                         for i in range(bn) if nz[i]]
    c_ops = list(primals[cn + bn:]) + [instantiate(tangents[cn + bn + i],
                                                   body.graph.invars[bn + i].aval)
                                       for i in range(n) if nz[bn + i]]
    outs = while_p.bind(*primals[:cn], *consts, *b_ops, *c_ops, cond=new_cond, body=jb,
                        cond_nconsts=cn, body_nconsts=len(consts) + len(b_ops), name=name)
    it = iter(outs[n:])
    return list(outs[:n]), [next(it) if z else None for z in nz[bn:]]


def _while_partial(e, flags, transposing):
    if transposing:
        where = f" at {e.source}" if e.source else ""
        raise TypeError(
            f"grad / vjp through while_loop ({e.params['name']}{where}): reverse-mode "
            f"differentiation of a loop whose trip count is known only at run time is not "
            f"supported (as in JAX). Use needle.lax.scan, or needle.lax.fori_loop with "
            f"concrete Python int bounds (it becomes a scan); forward mode (jvp, jacfwd) "
            f"works through while_loop.")
    return [], [e]


JVP_RULES[while_p] = _while_jvp
PARTIAL_EVAL_RULES[while_p] = _while_partial


# --- checkpoint ----------------------------------------------------------------------

def _checkpoint_jvp(primals, tangents, *, graph, prevent_cse, name):
    nz = [t is not None for t in tangents]
    n, n_out = len(primals), len(graph.graph.outvars)
    out_nz = _jvp_nonzero(graph, nz)
    jb, consts = _jvp_body(graph, nz, out_nz, ([list(range(n))], [list(range(n_out))]))
    t_ops = [instantiate(t, v.aval) for t, v, z in zip(tangents, graph.graph.invars, nz) if z]
    outs = checkpoint_p.bind(*consts, *primals, *t_ops, graph=jb, prevent_cse=prevent_cse,
                             name=name)
    it = iter(outs[n_out:])
    return list(outs[:n_out]), [next(it) if z else None for z in out_nz]


def _prune(eqns, outvars):
    live = {v for v in outvars if isinstance(v, Var)}
    kept = []
    for e in reversed(eqns):
        if e.prim.effectful or any(v in live for v in e.outs):
            kept.append(e)
            live.update(x for x in e.inputs if isinstance(x, Var))
    return kept[::-1]


def _checkpoint_partial(e, flags, transposing):
    cg = e.params["graph"]
    g = cg.graph
    ke, _, _, out_uk = _split(g, flags, transposing)
    k_out = [v for v, w in zip(g.outvars, out_uk) if not w]
    known = Eqn(checkpoint_p, [x for x, u in zip(e.inputs, flags) if not u],
                {**e.params, "graph": ClosedGraph(Graph(
                    g.constvars, [v for v, u in zip(g.invars, flags) if not u],
                    _prune(ke, k_out), k_out), cg.consts)},
                [o for o, w in zip(e.outs, out_uk) if not w], e.source)
    # The unknown part recomputes the body from its inputs: no stored residual.
    u_out = [v for v, w in zip(g.outvars, out_uk) if w]
    unknown = Eqn(checkpoint_p, list(e.inputs),
                  {**e.params, "graph": ClosedGraph(Graph(
                      g.constvars, g.invars, _prune(g.eqns, u_out), u_out), cg.consts)},
                  [o for o, w in zip(e.outs, out_uk) if w], e.source)
    return [known], ([unknown] if unknown.outs else [])


def _checkpoint_transpose(cts, *args, graph, prevent_cse, name):
    lin = [isinstance(a, UndefinedPrimal) for a in args]
    res = [a for a, l in zip(args, lin) if not l]
    out_avals = graph.graph.out_avals
    cts = [instantiate(c, a) for c, a in zip(cts, out_avals)]

    def fn(*a):
        return _transpose_body(graph.graph, graph.consts, lin, list(a[:len(res)]),
                               list(a[len(res):]))

    tb, consts = _explicit(_trace(fn, [aval_of_value(r) for r in res] + list(out_avals),
                                  f"transpose({name})"))
    outs = checkpoint_p.bind(*consts, *res, *cts, graph=tb, prevent_cse=prevent_cse,
                             name=f"transpose({name})")
    it = iter(outs)
    return [next(it) if l else None for l in lin]


JVP_RULES[checkpoint_p] = _checkpoint_jvp
PARTIAL_EVAL_RULES[checkpoint_p] = _checkpoint_partial
TRANSPOSE_RULES[checkpoint_p] = _checkpoint_transpose
