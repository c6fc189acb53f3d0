"""Stage passes (a helper of fusion): values an equality test needs exact.

Input: a Graph and a predicate telling which equations fusion keeps out of
kernels (library calls, host and control steps: their results are stored).
Output: the set of Vars fusion must compute once and store (never recompute
inline in a consumer, never duplicate into several kernels).

Why: fusion recomputes cheap values where they are read, and kernels are
compiled with `fastmath={'reassoc', 'contract', ...}`, which lets LLVM round
two copies of one expression differently (it reassociated `x * (1/y)` with a
neighbouring product in one loop nest of a kernel and not in another). Most
programs cannot tell: the copies differ in the last bit. An equality test
between two values computed from one shared value can: the gradient of
`max` / `min` over an axis is `eq(x, broadcast(max(x)))`, and when the `x`
beside the reduction and the `x` in the test are two copies rounded
differently, the mask misses the maximum and the gradient is silently wrong
(or 0/0). `max(a, b)`'s tie weight `eq(a, b)` is the same pattern.

The rule: for each `eq` / `ne` of floating operands a and b (not one Var
compared with itself: `x != x` reads one copy), the values both are computed
from, through equations that may be fused, are their shared ancestors; the
nearest of them (those no other shared ancestor is computed from) are
stored, so every reader, the reduction and the test alike, loads the same
bits. A stored value costs a write and a read where a recomputation cost
arithmetic; only such tests pay it.
"""
from ..ir.core import Var

_TESTS = ("eq", "ne")


def _ancestors(v, producer, apart):
    """`v` and every Var it is computed from through fusible equations (a
    graph input or the result of a stored step ends the walk)."""
    seen, stack = {v}, [v]
    while stack:
        e = producer.get(stack.pop())
        if e is None or apart(e):
            continue
        for x in e.inputs:
            if isinstance(x, Var) and x not in seen:
                seen.add(x)
                stack.append(x)
    return seen


def exact_values(graph, apart):
    """The Vars of `graph` (produced by fusible equations) that equality
    tests need stored: see the module docstring."""
    producer = {v: e for e in graph.eqns for v in e.outs}
    pinned = set()
    for e in graph.eqns:
        if e.prim.name not in _TESTS or len(e.inputs) != 2:
            continue
        a, b = e.inputs
        if not (isinstance(a, Var) and isinstance(b, Var)) or a is b:
            continue
        if a.aval.dtype.kind not in "fc":
            continue
        shared = _ancestors(a, producer, apart) & _ancestors(b, producer, apart)
        if not shared:
            continue
        inner = set()                   # shared values another shared one is computed from
        for u in shared:
            p = producer.get(u)
            if p is not None and not apart(p):
                inner.update(x for x in p.inputs if isinstance(x, Var))
        for u in shared - inner:
            p = producer.get(u)
            if p is not None and not apart(p):
                pinned.add(u)
    return pinned
