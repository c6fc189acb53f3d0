"""Stage passes: a simplification rule, pads that tile an axis -> concatenate.

Input: an `add` equation (operands already renamed) and simplify's context
(`ctx.producer(v)`, `ctx.known(x)`). Output: None (no match) or a
`concatenate` equation computing the add's result (the same Var).

The rewrite:
    pad(a1) + pad(a2) + ... + pad(an) -> concatenate(a_s1, ..., a_sn, axis)
for an add chain (adds of adds, any nesting and order) whose every term is a
`pad` with a zero padding value (0, 0.0 or -0.0), no interior padding, that
pads only one axis, the same for all, where the terms' non-zero ranges on
that axis are disjoint and cover it exactly; the operands are concatenated in
the order of their ranges. Each output element is then one read instead of n
clamped ones: the transpose of n slices of one array (an LSTM's four gate
gradients put back into the (B, 4H) gates gradient) is such a chain.

It keeps values exactly, up to the sign of a zero (a + 0.0 is +0.0 for
a = -0.0; the concatenation keeps -0.0): every element of the sum is one
operand's element plus zeros. Inner adds read elsewhere are left in place
(their other readers keep their values; DCE drops them when nothing else
reads them). Partial tilings (gaps or overlaps), other padding values,
interior padding, padding on several axes, or any difference in dtype or
weak type leave the program alone.
"""
from ..ir.core import Eqn, Var
from ..ir.primitives import concatenate_p

MAX_TERMS = 64


def _terms(e, ctx):
    """(term, its pad) for the leaves of the add chain ending in e; None if a
    leaf is not a pad, or past MAX_TERMS adds or leaves (a long running sum
    is not walked to its start again at each add)."""
    out, stack, terms, adds = e.outs[0], list(e.inputs), [], 0
    while stack:
        x = stack.pop()
        p = ctx.producer(x) if isinstance(x, Var) else None
        if p is not None and p.prim.name == "add" and x.aval == out.aval:
            adds += 1
            stack.extend(p.inputs)
        elif p is None or p.prim.name != "pad":
            return None                         # a term that is not a pad: no match
        else:
            terms.append((x, p))
        if adds > MAX_TERMS or len(terms) > MAX_TERMS:
            return None
    return terms


def _pad_piece(x, p, out, ctx):
    """(axis, lo, operand) for a term x = pad(a, 0) padding one axis, else None."""
    a, padval = p.inputs
    if x.aval != out.aval or a.aval.dtype != out.aval.dtype or ctx.known(padval) != 0:
        return None
    cfg = p.params["padding_config"]
    moved = [d for d, pads in enumerate(cfg) if tuple(pads) != (0, 0, 0)]
    if any(it != 0 for _, _, it in cfg) or len(moved) != 1:
        return None
    return moved[0], cfg[moved[0]][0], a


def pads_to_concatenate(e, ctx):
    """add chain of zero pads tiling one axis -> concatenate (see the module)."""
    out = e.outs[0]
    if out.aval.ndim == 0 or any(x.aval != out.aval for x in e.inputs):
        return None
    terms = _terms(e, ctx)
    if terms is None:
        return None
    pieces = [_pad_piece(x, p, out, ctx) for x, p in terms]
    if len(pieces) < 2 or any(q is None for q in pieces) or \
            len({axis for axis, _, _ in pieces}) != 1:
        return None
    axis = pieces[0][0]
    pieces.sort(key=lambda q: (q[1], q[2].aval.shape[axis]))
    at = 0
    for _, lo, a in pieces:                     # disjoint, in order, no gaps
        if lo != at:
            return None
        at += a.aval.shape[axis]
    if at != out.aval.shape[axis]:
        return None
    operands = [a for _, _, a in pieces if a.aval.shape[axis] > 0]
    if all(a.aval.weak_type for a in operands) != out.aval.weak_type:
        return None
    if len(operands) == 1:                     # one non-empty piece: nothing to join
        return None
    return Eqn(concatenate_p, operands, {"dimension": axis}, e.outs, e.source)
