"""Stage passes (part of 'hoisted'): a scan's invariant matrix operands
stored in the layout its products read.

Input: a scan equation (after loop-invariant hoisting). Output: the scan,
and the equations to put before it: where the body multiplies by a
constant 2-D matrix W contracting W's second axis (`g @ W.T`, an RNN's
backward `dgates @ W_hh.T`), W.T is made once before the loop, contiguous,
as a new constant of the scan, and the body's product reads it as a plain
`g @ Wt`.

Why: BLAS reads a transposed operand in place (a trans flag), but for the
few-row products of a time loop OpenBLAS's NT kernel is about 1.8x slower
than NN (sgemm 16x512 @ 512x128, one thread: 52 vs 29 us;
benchmarks/bench_scan_accumulate.py's LSTM makes one per step), while one
transposed copy before the loop costs about one such product. Applied to
scans of two or more steps only.
"""
from ..ir.core import ClosedGraph, Eqn, Graph, ShapedArray, Var
from ..ir.primitives import dot_general_p, scan_p
from ..ir.primitives.structural import transpose_p


def _rewritable(d, consts):
    if d.prim is not dot_general_p:
        return None
    a, b = d.inputs
    (lc, rc), (lb, rb) = d.params["dimension_numbers"]
    if lb or rb or tuple(rc) != (1,) or len(lc) != 1 or not isinstance(b, Var):
        return None
    if b not in consts or b.aval.ndim != 2 or a is b:
        return None
    return b


def pretranspose_operands(e, outer_eqns):
    """`e` (a scan) with its invariant W.T products rewritten; the
    transposes it needs are appended to `outer_eqns`."""
    p = e.params
    if e.prim is not scan_p or p["length"] < 2:
        return e
    body, nc = p["body"], p["num_consts"]
    g = body.graph
    consts = dict(zip(g.invars[:nc], e.inputs[:nc]))     # body const -> outer operand
    made = {}                                           # body const -> its new transposed invar
    eqns = []
    for d in g.eqns:
        w = _rewritable(d, consts)
        if w is None:
            eqns.append(d)
            continue
        wt = made.get(w)
        if wt is None:
            n0, n1 = w.aval.shape
            wt = made[w] = Var(ShapedArray((n1, n0), w.aval.dtype))
        (lc, _), _ = d.params["dimension_numbers"]
        eqns.append(Eqn(dot_general_p, [d.inputs[0], wt],
                        {**d.params, "dimension_numbers": ((tuple(lc), (0,)), ((), ()))},
                        d.outs, d.source))
    if not made:
        return e
    new_ops = []
    for w, wt in made.items():
        outer = Var(wt.aval)
        outer_eqns.append(Eqn(transpose_p, [consts[w]], {"permutation": (1, 0)}, [outer],
                              e.source))
        new_ops.append(outer)
    new_body = ClosedGraph(Graph(g.constvars, list(made.values()) + list(g.invars), eqns,
                                 g.outvars), body.consts)
    return Eqn(scan_p, new_ops + list(e.inputs),
               {**p, "body": new_body, "num_consts": nc + len(made)}, e.outs, e.source)
