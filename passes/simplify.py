"""Stage passes: algebraic simplification, run to a fixed point.

Input: a ClosedGraph. Output: an equivalent ClosedGraph with identities
removed and chains of layout operations collapsed.

Rules are small functions in one table, each with a comment giving the
rewrite; a rule gets the equation (inputs already renamed) and a lookup of the
equation producing a Var, and returns None (no match), an atom that replaces
the equation's result, or a new equation computing it.
Every rewrite keeps the result's shape and dtype exactly; DCE afterwards
drops what the rewrites made dead.
"""
import numpy as np

from ..ir.core import ClosedGraph, Eqn, Graph, Lit, Var
from ..ir.primitives import (broadcast_in_dim_p, convert_element_type_p, reshape_p,
                             transpose_p)


def _is_lit(x, value):
    return isinstance(x, Lit) and x.val == value and not np.isnan(x.val)


def _same_type(x, out):
    return x.aval.shape == out.aval.shape and x.aval.dtype == out.aval.dtype


def _binary_identity(e, producer):
    x, y = e.inputs
    out = e.outs[0]
    name = e.prim.name
    if name in ("mul",) and _is_lit(y, 1) and _same_type(x, out):
        return x                                            # x * 1 -> x
    if name in ("mul",) and _is_lit(x, 1) and _same_type(y, out):
        return y                                            # 1 * x -> x
    if name in ("add", "sub") and _is_lit(y, 0) and _same_type(x, out):
        return x                                            # x + 0, x - 0 -> x
    if name == "add" and _is_lit(x, 0) and _same_type(y, out):
        return y                                            # 0 + x -> x
    if name == "div" and _is_lit(y, 1) and _same_type(x, out):
        return x                                            # x / 1 -> x
    return None


def _neg_neg(e, producer):
    p = producer(e.inputs[0])
    if p is not None and p.prim.name == "neg":
        return p.inputs[0]                                  # --x -> x
    return None


def _integer_pow_one(e, producer):
    return e.inputs[0] if e.params["y"] == 1 else None      # x ** 1 -> x


def _select_same(e, producer):
    _, x, y = e.inputs
    if x is y and _same_type(x, e.outs[0]):
        return x                                            # where(p, x, x) -> x
    return None


def _reshape(e, producer):
    x = e.inputs[0]
    if x.aval.shape == e.outs[0].aval.shape:
        return x                                            # reshape to the same shape -> x
    p = producer(x)
    if p is not None and p.prim.name == "reshape":
        src = p.inputs[0]                                   # reshape(reshape(x)) -> reshape(x)
        if src.aval.shape == e.outs[0].aval.shape:
            return src
        return Eqn(reshape_p, [src], dict(e.params), e.outs, e.source)
    return None


def _transpose(e, producer):
    perm = tuple(e.params["permutation"])
    x = e.inputs[0]
    if perm == tuple(range(len(perm))):
        return x                                            # identity permutation -> x
    p = producer(x)
    if p is not None and p.prim.name == "transpose":
        inner = p.params["permutation"]                     # transpose(transpose(x)) -> one
        composed = tuple(inner[k] for k in perm)
        if composed == tuple(range(len(composed))):
            return p.inputs[0]
        return Eqn(transpose_p, [p.inputs[0]], {"permutation": composed}, e.outs, e.source)
    return None


def _broadcast(e, producer):
    x = e.inputs[0]
    shape, bd = tuple(e.params["shape"]), tuple(e.params["broadcast_dimensions"])
    if x.aval.shape == shape and bd == tuple(range(len(shape))):
        return x                                            # broadcast to its own shape -> x
    p = producer(x)
    if p is not None and p.prim.name == "broadcast_in_dim":
        inner = p.params["broadcast_dimensions"]            # broadcast(broadcast(x)) -> one
        return Eqn(broadcast_in_dim_p, [p.inputs[0]],
                   {"shape": shape, "broadcast_dimensions": tuple(bd[d] for d in inner)},
                   e.outs, e.source)
    return None


def _lossless(src, mid):
    src, mid = np.dtype(src), np.dtype(mid)
    return np.can_cast(src, mid, "safe")


def _convert(e, producer):
    x = e.inputs[0]
    new = np.dtype(e.params["new_dtype"])
    if x.aval.dtype == new and x.aval.weak_type == e.outs[0].aval.weak_type:
        return x                                            # convert to its own dtype -> x
    p = producer(x)
    if p is not None and p.prim.name == "convert_element_type" and \
            _lossless(p.inputs[0].aval.dtype, x.aval.dtype):
        src = p.inputs[0]                                   # convert(convert(x)) -> convert(x)
        if src.aval.dtype == new and not e.outs[0].aval.weak_type:
            return src                                      # when the first step lost nothing
        return Eqn(convert_element_type_p, [src], dict(e.params), e.outs, e.source)
    return None


RULES = {
    "add": [_binary_identity], "sub": [_binary_identity], "mul": [_binary_identity],
    "div": [_binary_identity], "neg": [_neg_neg], "integer_pow": [_integer_pow_one],
    "select": [_select_same], "reshape": [_reshape], "transpose": [_transpose],
    "broadcast_in_dim": [_broadcast], "convert_element_type": [_convert],
}


def simplify(cg, max_rounds=8):
    for _ in range(max_rounds):
        cg, changed = _one_round(cg)
        if not changed:
            break
    return cg


def _one_round(cg):
    g = cg.graph
    env, producers, eqns, changed = {}, {}, [], False

    def read(x):
        while isinstance(x, Var) and x in env:
            x = env[x]
        return x

    for e in g.eqns:
        e = Eqn(e.prim, [read(x) for x in e.inputs], e.params, e.outs, e.source)
        for rule in RULES.get(e.prim.name, ()):
            r = rule(e, producers.get)
            if r is None:
                continue
            changed = True
            if isinstance(r, Eqn):
                e = r
                continue
            env[e.outs[0]] = r
            e = None
            break
        if e is not None:
            eqns.append(e)
            for v in e.outs:
                producers[v] = e
    outvars = [read(v) for v in g.outvars]
    return ClosedGraph(Graph(g.constvars, g.invars, eqns, outvars), cg.consts), changed
