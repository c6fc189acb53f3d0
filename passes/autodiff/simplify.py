"""Stage passes (autodiff): algebraic cleanup of differentiated programs.

Input: a ClosedGraph. Output: an equivalent ClosedGraph with zero / one
propagation and identity operations removed, then CSE and DCE
(`cleanup`). Each rule is NaN-safe: x*0 is *not* rewritten to 0 (it is NaN
for x = inf); zeros of tangents are already symbolic in the transformations,
so what reaches this pass are seeds (grad's 1.0), broadcasts of them and
operations that became identities.

A value is known to be zero / one when it is a literal, a captured constant
whose elements all equal it, or a broadcast / reshape / transpose / convert
of such a value.
"""
import numpy as np

from ...ir.core import ClosedGraph, Eqn, Graph, Lit, Var
from ..cse import cse
from ..dce import dce

_SHAPE_ONLY = {"broadcast_in_dim", "reshape", "transpose", "convert_element_type", "rev",
               "slice"}


_COMMUTATIVE = {"add", "mul", "max", "min", "and", "or", "xor", "eq", "ne"}


def _order(x):
    return (1, 0) if isinstance(x, Lit) else (0, x.id)      # variables by age, literals last


def _identity_rules():
    """name -> fn(inputs, params, known) returning a replacement atom or None."""
    def add(ins, p, k):
        x, y = ins
        return x if k(y) == 0 else y if k(x) == 0 else None       # x+0 -> x, 0+x -> x

    def sub(ins, p, k):
        return ins[0] if k(ins[1]) == 0 else None                  # x-0 -> x

    def mul(ins, p, k):
        x, y = ins
        return x if k(y) == 1 else y if k(x) == 1 else None       # x*1 -> x, 1*x -> x

    def div(ins, p, k):
        return ins[0] if k(ins[1]) == 1 else None                  # x/1 -> x

    def same(ins, p, k):
        return ins[0]                                              # reshape to own shape, ...

    def select(ins, p, k):
        return ins[1] if ins[1] is ins[2] else None                # select(p, x, x) -> x

    def transpose(ins, p, k):
        perm = tuple(p["permutation"])
        return ins[0] if perm == tuple(range(len(perm))) else None  # identity permutation

    def rev(ins, p, k):
        return ins[0] if all(ins[0].aval.shape[d] <= 1 for d in p["dimensions"]) else None

    def integer_pow(ins, p, k):
        return ins[0] if p["y"] == 1 else None                     # x**1 -> x

    return {"add": add, "sub": sub, "mul": mul, "div": div, "select": select,
            "integer_pow": integer_pow, "reshape": same, "transpose": transpose,
            "broadcast_in_dim": same, "convert_element_type": same, "reduce_sum": same,
            "rev": rev, "slice": same, "pad": same}


RULES = _identity_rules()


def _uniform(val):
    """0 or 1 when every element of a small-enough constant equals it."""
    a = np.asarray(val)
    if a.dtype.kind not in "fiu" or a.size == 0:
        return None
    first = a.flat[0]
    if first not in (0, 1):
        return None
    return int(first) if np.all(a == first) else None


def simplify(cg):
    g = cg.graph
    env = {}                                  # Var -> replacement atom
    known = {}                                # Var -> 0 or 1
    for v, c in zip(g.constvars, cg.consts):
        if isinstance(c, (np.ndarray, np.generic)):
            u = _uniform(c)
            if u is not None:
                known[v] = u

    def read(x):
        return env.get(x, x) if isinstance(x, Var) else x

    def k(x):
        if isinstance(x, Lit):
            return _uniform(x.val)
        return known.get(x)

    eqns = []
    for e in g.eqns:
        ins = [read(x) for x in e.inputs]
        if e.prim.name in _COMMUTATIVE and _order(ins[0]) > _order(ins[1]):
            ins.reverse()                     # a canonical order, so CSE sees x*y and y*x as one
        if not e.prim.multiple_results:
            out = e.outs[0]
            rule = RULES.get(e.prim.name)
            repl = rule(ins, e.params, k) if rule else None
            if repl is not None and _same_type(repl, out):
                env[out] = repl
                continue
            if e.prim.name in _SHAPE_ONLY and k(ins[0]) is not None:
                known[out] = k(ins[0])
        eqns.append(Eqn(e.prim, ins, e.params, e.outs, e.source))
    return ClosedGraph(Graph(g.constvars, g.invars, eqns, [read(v) for v in g.outvars]),
                       cg.consts)


def _same_type(atom, out):
    a, b = atom.aval, out.aval
    return a.shape == b.shape and a.dtype == b.dtype


def cleanup(cg):
    """simplify, then compute each expression once, then drop dead code."""
    return dce(cse(simplify(cg)))
