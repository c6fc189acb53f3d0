"""needle.numpy: contractions: matmul, dot, vdot, inner, outer, tensordot,
einsum (every contraction is one dot_general, plus transposes and reductions).

Input: arrays or tracers. Output: contracted arrays, with numpy's semantics
and JAX's promotion.
"""
import numpy as np

from ..ir.core import ShapeError
from ..ir.primitives import dot_general_p
from ._core import asarray, broadcast_to, promote, shape_of, typeof, user_line, with_location
from .shape import reshape, squeeze, transpose


def _err(msg):
    return with_location(ShapeError(msg), user_line(3))


def matmul(a, b):
    a, b = promote(asarray(a), asarray(b))
    sa, sb = tuple(shape_of(a)), tuple(shape_of(b))
    if not sa or not sb:
        raise _err(f"matmul: operands must not be 0-d, got shapes {sa} and {sb}")
    a2 = reshape(a, (1,) + sa) if len(sa) == 1 else a
    b2 = reshape(b, sb + (1,)) if len(sb) == 1 else b
    sa2, sb2 = tuple(shape_of(a2)), tuple(shape_of(b2))
    if sa2[-1] != sb2[-2]:
        raise _err(f"matmul: contracting dimensions differ: shapes {sa} and {sb} "
                   f"({sa2[-1]} != {sb2[-2]})")
    batch_a, batch_b = sa2[:-2], sb2[:-2]
    from ._core import broadcast_shapes
    batch = broadcast_shapes(batch_a, batch_b, name="matmul")
    nb = len(batch)
    if batch_b == () and nb > 0:
        # (..., m, k) @ (k, n): fold the batch into m, one 2-D GEMM.
        out = dot_general_p.bind(a2, b2, dimension_numbers=(((len(sa2) - 1,), (0,)), ((), ())))
    else:
        if batch_a != batch:
            a2 = broadcast_to(a2, batch + sa2[-2:], "matmul")
        if batch_b != batch:
            b2 = broadcast_to(b2, batch + sb2[-2:], "matmul")
        bd = tuple(range(nb))
        out = dot_general_p.bind(a2, b2, dimension_numbers=(((nb + 1,), (nb,)), (bd, bd)))
    if len(sb) == 1:
        out = squeeze(out, -1)
    if len(sa) == 1:
        out = squeeze(out, -2 if len(sb) != 1 else -1)
    return out


def dot(a, b):
    a, b = asarray(a), asarray(b)
    sa, sb = shape_of(a), shape_of(b)
    if not sa or not sb:
        from .math import multiply
        return multiply(a, b)
    if len(sb) <= 2:
        return matmul(a, b)
    return tensordot(a, b, axes=([len(sa) - 1], [len(sb) - 2]))


def vdot(a, b):
    return dot(reshape(a, (-1,)), reshape(b, (-1,)))


def inner(a, b):
    a, b = asarray(a), asarray(b)
    if not shape_of(a) or not shape_of(b):
        return dot(a, b)
    return tensordot(a, b, axes=([len(shape_of(a)) - 1], [len(shape_of(b)) - 1]))


def outer(a, b):
    from .math import multiply
    return multiply(reshape(a, (-1, 1)), reshape(b, (1, -1)))


def tensordot(a, b, axes=2):
    a, b = promote(asarray(a), asarray(b))
    sa, sb = shape_of(a), shape_of(b)
    if isinstance(axes, (int, np.integer)):
        ax_a = tuple(range(len(sa) - axes, len(sa)))
        ax_b = tuple(range(axes))
    else:
        ax_a, ax_b = axes
        ax_a = (ax_a,) if isinstance(ax_a, (int, np.integer)) else tuple(ax_a)
        ax_b = (ax_b,) if isinstance(ax_b, (int, np.integer)) else tuple(ax_b)
        ax_a = tuple(int(x) % len(sa) for x in ax_a)
        ax_b = tuple(int(x) % len(sb) for x in ax_b)
    for i, j in zip(ax_a, ax_b):
        if sa[i] != sb[j]:
            raise _err(f"tensordot: shape-mismatch for sum: {tuple(sa)} axis {i} vs "
                       f"{tuple(sb)} axis {j}")
    return dot_general_p.bind(a, b, dimension_numbers=((ax_a, ax_b), ((), ())))


def einsum(subscripts, *operands):
    """einsum for two or one operands (explicit or implicit output), lowered
    to one dot_general plus transposes / reductions; no ellipsis."""
    from .math import multiply
    from .reductions import sum as _sum
    ops = [asarray(o) for o in operands]
    subscripts = subscripts.replace(" ", "")
    if "..." in subscripts:
        raise NotImplementedError("einsum: ellipsis ('...') is not supported")
    if "->" in subscripts:
        ins, out = subscripts.split("->")
    else:
        ins = subscripts
        letters = ins.replace(",", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    ins = ins.split(",")
    if len(ins) != len(ops):
        raise _err(f"einsum: {len(ins)} operand subscripts for {len(ops)} operands")
    sizes = {}
    for spec, op in zip(ins, ops):
        if len(spec) != len(shape_of(op)):
            raise _err(f"einsum: subscripts {spec!r} do not match operand shape "
                       f"{tuple(shape_of(op))}")
        if len(set(spec)) != len(spec):
            raise NotImplementedError(f"einsum: repeated index in {spec!r} (diagonals) is not "
                                      f"supported")
        for c, n in zip(spec, shape_of(op)):
            if sizes.setdefault(c, n) != n:
                raise _err(f"einsum: index {c!r} has sizes {sizes[c]} and {n}")
    if len(ops) == 1:
        (spec,), (x,) = ins, ops
        red = tuple(i for i, c in enumerate(spec) if c not in out)
        # einsum keeps the operands' dtype (numpy, JAX): no int64 accumulator.
        x = _sum(x, axis=red, dtype=typeof(x)[0]) if red else x
        kept = [c for c in spec if c in out]
        return transpose(x, [kept.index(c) for c in out])
    if len(ops) != 2:
        # Contract left to right.
        acc, acc_spec = ops[0], ins[0]
        for spec, op in zip(ins[1:], ops[1:]):
            rest = "".join(ins[ins.index(spec) + 1:]) + out
            keep = "".join(dict.fromkeys(c for c in acc_spec + spec if c in rest))
            acc = einsum(f"{acc_spec},{spec}->{keep}", acc, op)
            acc_spec = keep
        return einsum(f"{acc_spec}->{out}", acc)
    (sa, sb), (a, b) = ins, ops
    a, b = promote(a, b)
    # Sum out indices private to one operand and absent from the output.
    for which in (0, 1):
        spec, other = (sa, sb) if which == 0 else (sb, sa)
        red = tuple(i for i, c in enumerate(spec) if c not in other and c not in out)
        if red:
            op = a if which == 0 else b
            x = _sum(op, axis=red, dtype=typeof(op)[0])
            spec = "".join(c for i, c in enumerate((sa, sb)[which]) if i not in red)
            if which == 0:
                a, sa = x, spec
            else:
                b, sb = x, spec
    batch = [c for c in sa if c in sb and c in out]
    contract = [c for c in sa if c in sb and c not in out]
    dn = ((tuple(sa.index(c) for c in contract), tuple(sb.index(c) for c in contract)),
          (tuple(sa.index(c) for c in batch), tuple(sb.index(c) for c in batch)))
    if not contract and not batch:
        res_spec = sa + sb
        x = multiply(reshape(a, tuple(shape_of(a)) + (1,) * len(sb)),
                     reshape(b, (1,) * len(sa) + tuple(shape_of(b))))
    else:
        x = dot_general_p.bind(a, b, dimension_numbers=dn)
        res_spec = "".join(batch) + "".join(c for c in sa if c not in sb) + \
            "".join(c for c in sb if c not in sa)
    return transpose(x, [res_spec.index(c) for c in out])


