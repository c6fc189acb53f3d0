"""Stage ir: the control-flow primitives: `scan`, `cond`, `while`, and
`checkpoint` (rematerialisation). Each is a higher-order primitive holding
closed sub-graphs (ClosedGraph params); values the body captured from an
outer trace are explicit operands (the first `num_consts` of them), so a
body never refers to a variable outside itself.

Input: nothing. Output: `scan_p`, `cond_p`, `while_p`, `checkpoint_p`,
`CONTROL` (the four) and `subgraphs(params)` (the ClosedGraphs an equation
holds, for passes that work inside bodies).

    scan(*consts, *init, *xs; body, length, reverse, num_consts, num_carry,
         unroll, name) -> (*final carry, *ys stacked on a leading axis)
        body: (*consts, *carry, *x_t) -> (*carry, *y_t)
    cond(index, *operands; branches) -> outputs of branches[index]
        index is clamped into range (lax.switch); cond(pred) binds int(pred)
        with branches (false, true), as JAX does.
    while(*cond_consts, *body_consts, *init; cond, body, cond_nconsts,
          body_nconsts, name) -> final carry
        cond: (*cond_consts, *carry) -> bool[]; body: (*body_consts, *carry)
        -> carry
    checkpoint(*args; graph, prevent_cse, name) -> graph's outputs: the
        identity to every stage but autodiff, whose backward program
        recomputes the body's intermediates instead of storing them.

The numpy implementations below are the reference semantics (the
interpreter); the runtime runs a compiled body in a loop.
"""
import numpy as np

from ..core import ClosedGraph, Primitive, ShapedArray, Traits
from ..interpreter import run_numpy

__all__ = ["scan_p", "cond_p", "while_p", "checkpoint_p", "CONTROL", "subgraphs"]

CONTROL_TRAITS = Traits(kind="control")

scan_p = Primitive("scan", CONTROL_TRAITS, multiple_results=True)
cond_p = Primitive("cond", CONTROL_TRAITS, multiple_results=True)
while_p = Primitive("while", CONTROL_TRAITS, multiple_results=True)
checkpoint_p = Primitive("checkpoint", CONTROL_TRAITS, multiple_results=True)
CONTROL = (scan_p, cond_p, while_p, checkpoint_p)


def subgraphs(params):
    """[(param name, index or None, ClosedGraph)] of the sub-graphs in `params`."""
    out = []
    for k, v in params.items():
        if isinstance(v, ClosedGraph):
            out.append((k, None, v))
        elif isinstance(v, tuple) and v and all(isinstance(b, ClosedGraph) for b in v):
            out.extend((k, i, b) for i, b in enumerate(v))
    return out


def _same(a, b):
    return tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype


def _types(avals):
    return "(" + ", ".join(a.str_short() for a in avals) + ")"


# --- scan --------------------------------------------------------------------------

def _scan_canon(params):
    p = dict(params)
    p.setdefault("reverse", False)
    p.setdefault("unroll", 1)
    p.setdefault("name", "body")
    p["length"], p["unroll"] = int(p["length"]), int(p["unroll"])
    p["reverse"] = bool(p["reverse"])
    return p


def _scan_abstract(*avals, body, length, reverse, num_consts, num_carry, unroll, name):
    g = body.graph
    n = len(avals)
    if len(g.invars) != n:
        raise TypeError(f"scan ({name}): the body takes {len(g.invars)} inputs but the "
                        f"scan has {n} operands")
    consts, carry, xs = avals[:num_consts], avals[num_consts:num_consts + num_carry], \
        avals[num_consts + num_carry:]
    for x in xs:
        if not x.shape or x.shape[0] != length:
            raise TypeError(f"scan ({name}): every scanned input needs a leading axis of "
                            f"length {length}, got {x.str_short()}")
    want = list(consts) + list(carry) + [ShapedArray(x.shape[1:], x.dtype) for x in xs]
    for i, (a, v) in enumerate(zip(want, g.invars)):
        if not _same(a, v.aval):
            raise TypeError(f"scan ({name}): body input {i} is {v.aval.str_short()} but the "
                            f"operand gives {a.str_short()}")
    outs = g.out_avals
    if len(outs) < num_carry:
        raise TypeError(f"scan ({name}): the body returns {len(outs)} values, fewer than "
                        f"its {num_carry} carries")
    c_out = outs[:num_carry]
    if not all(_same(a, b) for a, b in zip(carry, c_out)):
        raise TypeError(f"scan ({name}): the body's carry output {_types(c_out)} differs "
                        f"from its carry input {_types(carry)}")
    ys = [ShapedArray((length,) + tuple(y.shape), y.dtype) for y in outs[num_carry:]]
    return [a.strong() for a in carry] + ys


def _scan_impl(*args, body, length, reverse, num_consts, num_carry, unroll, name):
    consts = list(args[:num_consts])
    carry = list(args[num_consts:num_consts + num_carry])
    xs = args[num_consts + num_carry:]
    y_avals = body.graph.out_avals[num_carry:]
    ys = [np.empty((length,) + tuple(a.shape), a.dtype) for a in y_avals]
    for i in range(length):
        t = length - 1 - i if reverse else i
        outs = run_numpy(body.graph, body.consts, consts + carry + [x[t] for x in xs])
        carry = [np.asarray(c, dtype=a.dtype) for c, a in
                 zip(outs[:num_carry], body.graph.out_avals)]
        for y, v in zip(ys, outs[num_carry:]):
            y[t] = v
    return [np.asarray(c) for c in carry] + ys


scan_p.canonicalize_params = _scan_canon
scan_p.abstract_eval = _scan_abstract
scan_p.impl = _scan_impl


# --- cond / switch -----------------------------------------------------------------

def _cond_abstract(index, *avals, branches):
    if index.shape != () or index.dtype.kind not in "iu":
        raise TypeError(f"cond: the branch index must be a scalar integer, got "
                        f"{index.str_short()}")
    if not branches:
        raise TypeError("cond: needs at least one branch")
    out0 = branches[0].graph.out_avals
    for k, b in enumerate(branches):
        ins = b.graph.in_avals
        if len(ins) != len(avals) or not all(_same(a, v) for a, v in zip(avals, ins)):
            raise TypeError(f"cond: branch {k} takes {_types(ins)} but the operands are "
                            f"{_types(avals)}")
        outs = b.graph.out_avals
        if len(outs) != len(out0) or not all(_same(a, v) for a, v in zip(out0, outs)):
            raise TypeError(f"cond: branch {k} returns {_types(outs)} but branch 0 returns "
                            f"{_types(out0)}; every branch must return the same types")
    return [a.strong() for a in out0]


def _cond_impl(index, *args, branches):
    k = min(max(int(index), 0), len(branches) - 1)
    b = branches[k]
    return [np.asarray(o, dtype=a.dtype) for o, a in
            zip(run_numpy(b.graph, b.consts, list(args)), b.graph.out_avals)]


cond_p.canonicalize_params = lambda p: {**p, "branches": tuple(p["branches"])}
cond_p.abstract_eval = _cond_abstract
cond_p.impl = _cond_impl


# --- while ---------------------------------------------------------------------------

def _while_canon(params):
    return {"name": "body", **params}


def _while_abstract(*avals, cond, body, cond_nconsts, body_nconsts, name):
    carry = avals[cond_nconsts + body_nconsts:]
    cc = avals[:cond_nconsts]
    bc = avals[cond_nconsts:cond_nconsts + body_nconsts]
    pred = cond.graph.out_avals
    if len(pred) != 1 or pred[0].shape != () or pred[0].dtype != np.bool_:
        raise TypeError(f"while_loop ({name}): cond_fun must return one boolean scalar, "
                        f"got {_types(pred)}")
    if not all(_same(a, v) for a, v in zip(list(cc) + list(carry), cond.graph.in_avals)):
        raise TypeError(f"while_loop ({name}): cond_fun takes {_types(cond.graph.in_avals)} "
                        f"but is given {_types(list(cc) + list(carry))}")
    ins = body.graph.in_avals
    if len(ins) != len(bc) + len(carry) or \
            not all(_same(a, v) for a, v in zip(list(bc) + list(carry), ins)):
        raise TypeError(f"while_loop ({name}): body_fun takes {_types(ins)} but is given "
                        f"{_types(list(bc) + list(carry))}")
    outs = body.graph.out_avals
    if len(outs) != len(carry) or not all(_same(a, v) for a, v in zip(carry, outs)):
        raise TypeError(f"while_loop ({name}): body_fun returns {_types(outs)} but the "
                        f"carry is {_types(carry)}")
    return [a.strong() for a in carry]


def _while_impl(*args, cond, body, cond_nconsts, body_nconsts, name):
    cc = list(args[:cond_nconsts])
    bc = list(args[cond_nconsts:cond_nconsts + body_nconsts])
    carry = list(args[cond_nconsts + body_nconsts:])
    avals = body.graph.out_avals
    while bool(run_numpy(cond.graph, cond.consts, cc + carry)[0]):
        carry = [np.asarray(c, dtype=a.dtype) for c, a in
                 zip(run_numpy(body.graph, body.consts, bc + carry), avals)]
    return [np.asarray(c) for c in carry]


while_p.canonicalize_params = _while_canon
while_p.abstract_eval = _while_abstract
while_p.impl = _while_impl


# --- checkpoint -----------------------------------------------------------------------

def _checkpoint_abstract(*avals, graph, prevent_cse=True, name="f"):
    ins = graph.graph.in_avals
    if len(ins) != len(avals) or not all(_same(a, v) for a, v in zip(avals, ins)):
        raise TypeError(f"checkpoint ({name}): the body takes {_types(ins)} but is given "
                        f"{_types(avals)}")
    return list(graph.graph.out_avals)


def _checkpoint_impl(*args, graph, prevent_cse=True, name="f"):
    return [np.asarray(o, dtype=a.dtype) for o, a in
            zip(run_numpy(graph.graph, graph.consts, list(args)), graph.graph.out_avals)]


checkpoint_p.canonicalize_params = lambda p: {"prevent_cse": True, "name": "f", **p}
checkpoint_p.abstract_eval = _checkpoint_abstract
checkpoint_p.impl = _checkpoint_impl
