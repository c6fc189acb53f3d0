"""Stage passes (autodiff): partial evaluation: split equations into the
ones that only read known values and the ones that read an unknown value.

Input: a list of equations (in order), the set of unknown Vars (linear:
they depend on a tangent), and whether the split is for reverse mode
(`transposing`: the unknown part will be transposed).
Output: (known equations, unknown equations); the unknown set grows by every
Var the unknown equations define.

An ordinary equation with an unknown input is unknown as a whole. A
higher-order primitive has a rule in `PARTIAL_EVAL_RULES` (filled by
control.py) that splits it into known and unknown equations of the same
primitive: a scan into a forward scan that stacks per-step residuals and a
scan over the unknown part, as JAX's partial evaluation does. The rules call
`split_eqns` on their bodies, so nesting works at any depth.

    rule(eqn, unknown_flags, transposing) -> (known eqns, unknown eqns)
"""
from ...ir.core import Var

PARTIAL_EVAL_RULES = {}


def split_eqns(eqns, unknown, transposing=True):
    known, unk = [], []
    for e in eqns:
        flags = [isinstance(x, Var) and x in unknown for x in e.inputs]
        if not any(flags):
            known.append(e)
            continue
        rule = PARTIAL_EVAL_RULES.get(e.prim)
        if rule is None:
            unk.append(e)
            unknown.update(e.outs)
            continue
        k, u = rule(e, flags, transposing)
        known += k
        unk += u
        for ue in u:
            unknown.update(ue.outs)
    return known, unk


def residuals_of(unknown_eqns, unknown, extra=(), exclude=()):
    """The known Vars the unknown equations read (and the known Vars among
    `extra`, values the unknown side must also output), in first-use order."""
    res, seen = [], set(exclude)
    for x in [x for e in unknown_eqns for x in e.inputs] + list(extra):
        if isinstance(x, Var) and x not in unknown and x not in seen:
            seen.add(x)
            res.append(x)
    return res
