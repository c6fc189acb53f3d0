"""Stage passes (autodiff): the transformations, Graph -> Graph.

Input: a ClosedGraph (a traced function) and which inputs / outputs to
differentiate. Output: new ClosedGraphs:

- `jvp_graph`: (primals, tangents) -> (outputs, output tangents), by
  interpreting every equation with its JVP rule while tracing (`jvp_eval`);
  zero tangents stay symbolic (None) and are never materialised.
- `linearize`: splits the JVP graph by dependence on the tangent inputs
  (partial evaluation): the equations that only read primals form the primal
  program P (inputs -> outputs + residuals); the rest are linear in the
  tangents and form the forward linear map F (residuals, tangents -> output
  tangents). Transposing F equation by equation, last first, with the
  transpose rules gives the backward program B (residuals, cotangents ->
  input cotangents). VJP = P then B; JVP by the same split = P then F.

Every new graph is built by tracing a Python interpreter of the old one
whose rules bind primitives, so the results are ordinary Graphs (they can be
differentiated again) and, once cleaned (passes/autodiff/simplify.py), are
evaluated with `ir.eval_graph`: under an outer trace that records them.
"""
from ...ir.core import ClosedGraph, Graph, Lit, Var
from ...tracer.core import trace_to_graph
from .markers import MARKERS
from .partial_eval import residuals_of, split_eqns
from .rules import (JVP_RULES, NOT_DIFFERENTIABLE, TRANSPOSE_RULES, UndefinedPrimal,
                    add_tangents, fit, zeros)
from .simplify import cleanup


def _is_float(aval):
    return aval.dtype.kind == "f"


def _missing_rule(prim, what="Differentiation"):
    return NotImplementedError(f"{what} rule for '{prim.name}' not implemented")


def jvp_eval(graph, consts, primals, tangents):
    """Evaluate `graph` on primal values and tangents (None: zero) through the
    JVP rules; returns (outputs, output tangents). Binds primitives, so under
    a trace it records the JVP program."""
    penv, tenv = {}, {}

    def read(x):
        return x.val if isinstance(x, Lit) else penv[x]

    penv.update(zip(graph.constvars, consts))
    for v, p, t in zip(graph.invars, primals, tangents):
        penv[v] = p
        tenv[v] = fit(t, v.aval) if t is not None and _is_float(v.aval) else None
    for e in graph.eqns:
        ins = [read(x) for x in e.inputs]
        tins = [None if isinstance(x, Lit) else tenv.get(x) for x in e.inputs]
        rule = JVP_RULES.get(e.prim)
        if e.prim.name in MARKERS and e.prim in JVP_RULES:
            outs, touts = rule(ins, tins, **e.params)
        elif all(t is None for t in tins) or e.prim in NOT_DIFFERENTIABLE:
            outs = e.prim.bind(*ins, **e.params)
            touts = [None] * len(e.outs) if e.prim.multiple_results else None
        elif rule is None:
            raise _missing_rule(e.prim)
        else:
            outs, touts = rule(ins, tins, **e.params)
        if not e.prim.multiple_results:
            outs, touts = [outs], [touts]
        for v, o, t in zip(e.outs, outs, touts):
            penv[v] = o
            tenv[v] = fit(t, v.aval) if t is not None and _is_float(v.aval) else None
    outs = [read(v) for v in graph.outvars]
    touts = [None if isinstance(v, Lit) else tenv.get(v) for v in graph.outvars]
    return outs, touts


def jvp_graph(cg, wrt, out_wrt=None, name="jvp"):
    """The JVP of `cg` w.r.t. the inputs flagged in `wrt`.

    Returns (J, nonzero): J takes (primals..., tangents of the wrt inputs...)
    and returns (outputs..., the output tangents that are not symbolically
    zero...); nonzero[i] says whether output i has a tangent in J. Outputs
    with out_wrt[i] false get none.
    """
    g = cg.graph
    n = len(g.invars)
    wrt = [bool(w) and _is_float(a) for w, a in zip(wrt, g.in_avals)]
    out_wrt = [True] * len(g.outvars) if out_wrt is None else list(out_wrt)
    t_avals = [a for a, w in zip(g.in_avals, wrt) if w]
    nonzero = []

    def fn(*args):
        it = iter(args[n:])
        tangents = [next(it) if w else None for w in wrt]
        outs, touts = jvp_eval(g, cg.consts, args[:n], tangents)
        touts = [t if w else None for t, w in zip(touts, out_wrt)]
        nonzero[:] = [t is not None for t in touts]
        return list(outs) + [t for t in touts if t is not None]

    J, _ = trace_to_graph(fn, list(g.in_avals) + t_avals, name)
    return J, nonzero


class Linearized:
    """The result of `linearize`: primal program, forward linear map and
    backward (transposed) program, with the bookkeeping to call them.

    primal:   (inputs...) -> (outputs..., residuals...)     (outputs only if kept)
    forward:  (residuals..., tangents of wrt inputs...) -> (nonzero output tangents...)
    backward: (residuals..., cotangents of nonzero outputs...) -> (cts of wrt inputs...)
    """

    def __init__(self, primal, forward, backward, n_res, wrt, nonzero, out_avals):
        self.primal, self.forward, self.backward = primal, forward, backward
        self.n_res, self.wrt, self.nonzero, self.out_avals = n_res, wrt, nonzero, out_avals


def linearize(cg, wrt, out_wrt=None, keep_outputs=True, cts=None, name="f", backward=True):
    """Linearize `cg` at its inputs w.r.t. the inputs flagged in `wrt`.

    `cts`, when given, fixes the output cotangents to these constants (grad
    seeds 1.0), so the backward program takes residuals only and the
    simplifier can fold the seed away. `backward=False` (forward mode:
    jacfwd) builds no backward program (`Linearized.backward` is None), so
    what has no transpose (a while_loop) may stay in the linear part.
    """
    g0 = cg.graph
    J, nonzero = jvp_graph(cg, wrt, out_wrt, name=f"jvp({name})")
    g = J.graph
    n_in, n_out = len(g0.invars), len(g0.outvars)
    t_in = g.invars[n_in:]
    p_outs, t_outs = g.outvars[:n_out], g.outvars[n_out:]

    # Partial evaluation: what depends on a tangent input is linear; a loop
    # or branch is split into its primal and its linear part.
    linear = set(t_in)
    primal_eqns, lin_eqns = split_eqns(g.eqns, linear, transposing=backward)
    res = residuals_of(lin_eqns, linear)
    # An output tangent that does not depend on any tangent is a zero.
    out_lin = [isinstance(v, Var) and v in linear for v in t_outs]
    nz_iter = iter(out_lin)
    nonzero = [nz and next(nz_iter) for nz in nonzero]
    lin_touts = [v for v, keep in zip(t_outs, out_lin) if keep]

    primal = ClosedGraph(Graph(g.constvars, g.invars[:n_in], primal_eqns,
                               (list(p_outs) if keep_outputs else []) + res), J.consts)
    forward = ClosedGraph(Graph([], res + t_in, lin_eqns, lin_touts), [])
    ct_avals = [v.aval for v in lin_touts]

    def transpose_fn(*args):
        ct_vals = list(args[len(res):]) if cts is None else \
            [c for c, nz in zip(cts, nonzero) if nz]
        return backward_pass(lin_eqns, dict(zip(res, args[:len(res)])), linear, t_in,
                             lin_touts, ct_vals)

    forward = cleanup(forward)
    used = _used_inputs(forward.graph, len(res))
    if backward:
        backward, _ = trace_to_graph(transpose_fn, [v.aval for v in res] +
                                     (ct_avals if cts is None else []), f"transpose({name})")
        backward = cleanup(backward)
        used |= _used_inputs(backward.graph, len(res))
    # Keep only the residuals the cleaned programs still read.
    keep = [i for i in range(len(res)) if i in used]
    if backward:
        backward = _drop_inputs(backward, len(res), keep)
    else:
        backward = None
    forward = _drop_inputs(forward, len(res), keep)
    n_kept_outs = n_out if keep_outputs else 0
    pg = primal.graph
    primal = ClosedGraph(Graph(pg.constvars, pg.invars, pg.eqns,
                               pg.outvars[:n_kept_outs] + [res[i] for i in keep]),
                         primal.consts)
    primal = cleanup(primal)
    wrt = [bool(w) and _is_float(a) for w, a in zip(wrt, g0.in_avals)]
    return Linearized(primal, forward, backward, len(keep), wrt, nonzero, g0.out_avals)


def _used_inputs(graph, n):
    used = {x for e in graph.eqns for x in e.inputs if isinstance(x, Var)}
    used |= {v for v in graph.outvars if isinstance(v, Var)}
    return {i for i, v in enumerate(graph.invars[:n]) if v in used}


def _drop_inputs(cg, n, keep):
    g = cg.graph
    invars = [g.invars[i] for i in keep] + g.invars[n:]
    return ClosedGraph(Graph(g.constvars, invars, g.eqns, g.outvars), cg.consts)


def backward_pass(lin_eqns, residuals, linear, t_in, t_outs, cts):
    """Transpose the linear equations: push the output cotangents back to the
    tangent inputs. Returns one cotangent per tangent input (zeros where none
    reaches it)."""
    ct_env = {}

    def accumulate(v, ct):
        if ct is not None:
            ct = fit(ct, v.aval)
            ct_env[v] = add_tangents(ct_env.get(v), ct)

    for v, ct in zip(t_outs, cts):
        accumulate(v, ct)

    def read(x):
        if isinstance(x, Lit):
            return x.val
        return UndefinedPrimal(x.aval) if x in linear else residuals[x]

    for e in reversed(lin_eqns):
        out_cts = [ct_env.pop(v, None) for v in e.outs]
        if all(c is None for c in out_cts):
            continue
        rule = TRANSPOSE_RULES.get(e.prim)
        if rule is None:
            raise _missing_rule(e.prim, "Transpose")
        args = [read(x) for x in e.inputs]
        in_cts = rule(out_cts if e.prim.multiple_results else out_cts[0], *args, **e.params)
        for x, ct in zip(e.inputs, in_cts):
            if isinstance(x, Var) and x in linear:
                accumulate(x, ct)
    return [ct_env[v] if v in ct_env else zeros(v.aval) for v in t_in]
