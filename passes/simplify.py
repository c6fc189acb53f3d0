"""Stage passes: algebraic simplification, run to a fixed point.

Input: a ClosedGraph. Output: an equivalent ClosedGraph with identities
removed and chains of layout operations collapsed.

Rules are small functions in one table, each with a comment giving the
rewrite; a rule gets the equation (inputs already renamed) and a context
(`ctx.producer(v)`: the equation defining v; `ctx.known(x)`: 0 or 1 when x is
known to be all zeros / all ones: a literal, a captured constant whose
elements all equal it, or a broadcast / reshape / transpose / convert of such
a value) and returns None (no match), an atom that replaces the equation's
result, a new equation computing it, or a list of new equations whose last
computes it (passes/layout.py: a region of elementwise work computes in
another layout where that removes transposes; `ctx.layout` is its plan).
Operands of commutative primitives are put in a canonical order so CSE sees
x*y and y*x as one. Every rewrite keeps the result's shape and dtype exactly,
and is NaN-safe (x*0 is not 0: it is NaN for x = inf). DCE afterwards drops what the rewrites made dead. The
autodiff pass runs this after differentiating (passes/autodiff). The bodies
of control flow (scan, while, cond) are simplified recursively, each on its
own (passes/subgraphs.py).
"""
import numpy as np

from ..ir.core import PRIMITIVES, ClosedGraph, Eqn, Graph, Lit, ShapedArray, Var
from ..ir.primitives import (DotDimensionNumbers, broadcast_in_dim_p, convert_element_type_p,
                             reshape_p, transpose_p)
from .layout import (REDUCTIONS, plan_layouts, relayout_elementwise, relayout_reduce,
                     transpose_as_reshape)
from .pad_concat import pads_to_concatenate
from .subgraphs import is_control, map_subgraphs


def _same_type(x, out):
    return x.aval.shape == out.aval.shape and x.aval.dtype == out.aval.dtype


def _binary_identity(e, ctx):
    x, y = e.inputs
    out = e.outs[0]
    name, k = e.prim.name, ctx.known
    if name == "mul" and k(y) == 1 and _same_type(x, out):
        return x                                            # x * 1 -> x
    if name == "mul" and k(x) == 1 and _same_type(y, out):
        return y                                            # 1 * x -> x
    if name in ("add", "sub") and k(y) == 0 and _same_type(x, out):
        return x                                            # x + 0, x - 0 -> x
    if name == "add" and k(x) == 0 and _same_type(y, out):
        return y                                            # 0 + x -> x
    if name == "div" and k(y) == 1 and _same_type(x, out):
        return x                                            # x / 1 -> x
    return None


def _neg_neg(e, ctx):
    p = ctx.producer(e.inputs[0])
    if p is not None and p.prim.name == "neg":
        return p.inputs[0]                                  # --x -> x
    return None


def _integer_pow_one(e, ctx):
    return e.inputs[0] if e.params["y"] == 1 else None      # x ** 1 -> x


def _select_same(e, ctx):
    _, x, y = e.inputs
    if x is y and _same_type(x, e.outs[0]):
        return x                                            # where(p, x, x) -> x
    return None


def _reshape(e, ctx):
    x = e.inputs[0]
    if x.aval.shape == e.outs[0].aval.shape:
        return x                                            # reshape to the same shape -> x
    p = ctx.producer(x)
    if p is not None and p.prim.name == "reshape":
        src = p.inputs[0]                                   # reshape(reshape(x)) -> reshape(x)
        if src.aval.shape == e.outs[0].aval.shape:
            return src
        return Eqn(reshape_p, [src], dict(e.params), e.outs, e.source)
    return None


def _transpose(e, ctx):
    perm = tuple(e.params["permutation"])
    x = e.inputs[0]
    if perm == tuple(range(len(perm))):
        return x                                            # identity permutation -> x
    p = ctx.producer(x)
    if p is not None and p.prim.name == "dot_general" and perm == (1, 0) and \
            ctx.uses.get(x, 0) == 1:
        dn = p.params["dimension_numbers"]              # a DotDimensionNumbers
        a, b = p.inputs
        if not dn.lhs_batch and a.aval.ndim - len(dn.lhs_contract) == 1 and \
                b.aval.ndim - len(dn.rhs_contract) == 1:
            # (a.b)^T -> b^T.a^T (one free axis each, any contracted axes): a
            # weight gradient comes out in the layout its update needs (a
            # conv's too), with no transpose kernel after the BLAS call.
            return Eqn(p.prim, [b, a], {**p.params, "dimension_numbers": dn.swapped()},
                       e.outs, e.source)
    if p is not None and p.prim.name == "transpose":
        inner = p.params["permutation"]                     # transpose(transpose(x)) -> one
        composed = tuple(inner[k] for k in perm)
        if composed == tuple(range(len(composed))):
            return p.inputs[0]
        return Eqn(transpose_p, [p.inputs[0]], {"permutation": composed}, e.outs, e.source)
    return None


def _broadcast(e, ctx):
    x = e.inputs[0]
    shape, bd = tuple(e.params["shape"]), tuple(e.params["broadcast_dimensions"])
    if x.aval.shape == shape and bd == tuple(range(len(shape))):
        return x                                            # broadcast to its own shape -> x
    p = ctx.producer(x)
    if p is not None and p.prim.name == "broadcast_in_dim":
        inner = p.params["broadcast_dimensions"]            # broadcast(broadcast(x)) -> one
        return Eqn(broadcast_in_dim_p, [p.inputs[0]],
                   {"shape": shape, "broadcast_dimensions": tuple(bd[d] for d in inner)},
                   e.outs, e.source)
    return None


def _lossless(src, mid):
    src, mid = np.dtype(src), np.dtype(mid)
    return np.can_cast(src, mid, "safe")


def _convert(e, ctx):
    x = e.inputs[0]
    new = np.dtype(e.params["new_dtype"])
    if x.aval.dtype == new and x.aval.weak_type == e.outs[0].aval.weak_type:
        return x                                            # convert to its own dtype -> x
    p = ctx.producer(x)
    if p is not None and p.prim.name == "convert_element_type" and \
            _lossless(p.inputs[0].aval.dtype, x.aval.dtype):
        src = p.inputs[0]                                   # convert(convert(x)) -> convert(x)
        if src.aval.dtype == new and not e.outs[0].aval.weak_type:
            return src                                      # when the first step lost nothing
        return Eqn(convert_element_type_p, [src], dict(e.params), e.outs, e.source)
    return None


def _dot_of_transpose(e, ctx):
    """dot_general(a^T, b) -> dot_general(a, b) with the contraction moved (2-D):
    BLAS reads the transposed operand in place."""
    dn = e.params["dimension_numbers"]                  # a DotDimensionNumbers
    if dn.lhs_batch or len(dn.lhs_contract) != 1:
        return None
    ins, dims, changed = list(e.inputs), [dn.lhs_contract[0], dn.rhs_contract[0]], False
    for k in (0, 1):
        p = ctx.producer(ins[k])
        if p is not None and p.prim.name == "transpose" and ins[k].aval.ndim == 2:
            ins[k], dims[k], changed = p.inputs[0], 1 - dims[k], True
    if not changed:
        return None
    dn = DotDimensionNumbers(((dims[0],), (dims[1],)), ((), ()))
    return Eqn(e.prim, ins, {**e.params, "dimension_numbers": dn}, e.outs, e.source)


def _same_shape(e, ctx):
    x = e.inputs[0]
    return x if _same_type(x, e.outs[0]) else None          # slice/pad/sum keeping the shape -> x


def _slice_of_conv(e, ctx):
    """slice(conv(x, w, p)) over spatial axes only, unit strides ->
    conv(x, w, p') with each padding shrunk by what the slice cuts off (a
    negative entry crops x): the output positions dropped are never
    computed. The transpose of a padded input's convolution is one (pad's
    transpose slices the full-size input gradient)."""
    p = ctx.producer(e.inputs[0])
    if p is None or p.prim.name != "conv":
        return None
    start, limit = e.params["start_indices"], e.params["limit_indices"]
    strides = e.params.get("strides") or (1,) * len(start)
    shape = e.inputs[0].aval.shape
    if any(st != 1 for st in strides) or start[0] != 0 or limit[0] != shape[0] \
            or start[-1] != 0 or limit[-1] != shape[-1]:
        return None
    padding = tuple((lo - a, hi - (n - b)) for (lo, hi), a, b, n in
                    zip(p.params["padding"], start[1:-1], limit[1:-1], shape[1:-1]))
    x, w = p.inputs
    q = ctx.producer(x)
    if q is not None and q.prim.name == "pad":
        # slice(conv(pad(y, Q), w, 0)): one pad of y by Q + the new padding
        cfg = q.params["padding_config"]
        inner = cfg[1:-1]
        grown = [(qlo + lo, qhi + hi) for (qlo, qhi, _), (lo, hi) in zip(inner, padding)]
        if all(it == 0 for _, _, it in cfg) and cfg[0] == cfg[-1] == (0, 0, 0) and \
                all(lo >= 0 and hi >= 0 for lo, hi in grown):
            ys = q.inputs[0].aval.shape
            full = (ys[0],) + tuple(n + lo + hi for n, (lo, hi) in zip(ys[1:-1], grown)) \
                + ys[-1:]
            v = Var(ShapedArray(full, x.aval.dtype, x.aval.weak_type))
            config = ((0, 0, 0),) + tuple((lo, hi, 0) for lo, hi in grown) + ((0, 0, 0),)
            return [Eqn(q.prim, list(q.inputs), {"padding_config": config}, [v], q.source),
                    Eqn(p.prim, [v, w], {"padding": tuple((0, 0) for _ in grown)},
                        list(e.outs), e.source)]
    return Eqn(p.prim, list(p.inputs), {"padding": padding}, list(e.outs), e.source)


def _rev_trivial(e, ctx):
    x = e.inputs[0]                                         # reversing axes of size <= 1 -> x
    return x if all(x.aval.shape[d] <= 1 for d in e.params["dimensions"]) else None


RULES = {
    "add": [_binary_identity], "sub": [_binary_identity], "mul": [_binary_identity],
    "div": [_binary_identity], "neg": [_neg_neg], "integer_pow": [_integer_pow_one],
    "select": [_select_same], "reshape": [_reshape], "transpose": [_transpose],
    "broadcast_in_dim": [_broadcast], "convert_element_type": [_convert],
    "slice": [_same_shape, _slice_of_conv], "pad": [_same_shape],
    "reduce_sum": [_same_shape],
    "rev": [_rev_trivial], "dot_general": [_dot_of_transpose],
}
RULES["add"].append(pads_to_concatenate)   # zero pads tiling an axis (passes/pad_concat.py)
# regions of elementwise work change layout where that removes transposes
# (passes/layout.py: the plan is made at the start of each round)
for _p in PRIMITIVES.values():
    if _p.kind == "elementwise":
        RULES.setdefault(_p.name, []).append(relayout_elementwise)
for _name in REDUCTIONS:
    RULES.setdefault(_name, []).append(relayout_reduce)
RULES["transpose"].append(transpose_as_reshape)      # last: it may return a reshape

def _uniform(val):
    """0 or 1 when every element of a constant equals it, else None."""
    a = np.asarray(val)
    if a.dtype.kind not in "fiu" or a.size == 0:
        return None
    first = a.flat[0]
    if first not in (0, 1):
        return None
    return int(first) if np.all(a == first) else None


def _order(x):
    return (1, 0) if isinstance(x, Lit) else (0, x.id)      # variables by age, literals last


class _Context:
    def __init__(self, cg):
        self.producers = {}
        self.uses = {}
        for e in cg.graph.eqns:
            for x in e.inputs:
                if isinstance(x, Var):
                    self.uses[x] = self.uses.get(x, 0) + 1
        for v in cg.graph.outvars:
            if isinstance(v, Var):
                self.uses[v] = self.uses.get(v, 0) + 1
        self.uniform = {v: u for v, c in zip(cg.graph.constvars, cg.consts)
                        if isinstance(c, (np.ndarray, np.generic))
                        for u in [_uniform(c)] if u is not None}
        self.layout = plan_layouts(cg.graph)    # Var -> the permutation to compute it in
        self.moved = set()                      # Vars the layout rules redefined

    def producer(self, v):
        return self.producers.get(v)

    def known(self, x):
        return _uniform(x.val) if isinstance(x, Lit) else self.uniform.get(x)


def simplify(cg, max_rounds=8):
    if any(is_control(e) for e in cg.graph.eqns):
        memo, g = {}, cg.graph
        eqns = [map_subgraphs(e, simplify, memo) for e in g.eqns]
        cg = ClosedGraph(Graph(g.constvars, g.invars, eqns, g.outvars), cg.consts)
    for _ in range(max_rounds):
        cg, changed = _one_round(cg)
        if not changed:
            break
    return cg


def _one_round(cg):
    g = cg.graph
    ctx = _Context(cg)
    env, eqns, changed = {}, [], False

    def read(x):
        while isinstance(x, Var) and x in env:
            x = env[x]
        return x

    for e in g.eqns:
        ins = [read(x) for x in e.inputs]
        if e.prim.traits.commutative and _order(ins[0]) > _order(ins[1]):
            ins.reverse()
            changed = True
        e = Eqn(e.prim, ins, e.params, e.outs, e.source)
        for rule in RULES.get(e.prim.name, ()):
            r = rule(e, ctx)
            if r is None:
                continue
            changed = True
            if isinstance(r, list):             # new equations, the last computes e's result
                for q in r[:-1]:
                    eqns.append(q)
                    for v in q.outs:
                        ctx.producers[v] = q
                e = r[-1]
                break
            if isinstance(r, Eqn):
                prim, e = e.prim, r
                if r.prim is prim:
                    continue
                break                           # another primitive: its rules, next round
            env[e.outs[0]] = r
            e = None
            break
        if e is not None:
            eqns.append(e)
            for v in e.outs:
                ctx.producers[v] = e
            # all-zeros in gives all-zeros out (likewise ones)
            if e.prim.traits.shape_only and ctx.known(e.inputs[0]) is not None:
                ctx.uniform[e.outs[0]] = ctx.known(e.inputs[0])
    outvars = [read(v) for v in g.outvars]
    return ClosedGraph(Graph(g.constvars, g.invars, eqns, outvars), cg.consts), changed
