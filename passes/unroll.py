"""Stage passes: scan unrolling (`lax.scan(..., unroll=k)`), run by fusion
before it partitions, so that k steps of a body fuse into the same kernels.

Input: a ClosedGraph. Output: an equivalent ClosedGraph where every scan
(at any depth) of length T with unroll k > 1 becomes a scan of length T // k
whose body is k copies of the original body chained (a step's carry feeds
the next copy; row j of a block of k scanned rows goes to copy j, and copy
j's y to row j of the block's ys), followed by a scan of the original body
over the T % k remaining rows when k does not divide T. Scanned inputs are
viewed as (T // k, k, ...) blocks (a slice first when a remainder exists),
the blocks' ys reshaped back to (T, ...) (and joined to the remainder's).
With `reverse`, blocks and the copies inside a block run backwards and
the remainder is the first T % k rows, which run last.
"""
from ..ir.core import ClosedGraph, Eqn, Graph, Var
from ..ir.primitives import concatenate_p, reshape_p, scan_p, slice_p
from .subgraphs import is_control, map_subgraphs


class _Emitter:
    def __init__(self, source):
        self.eqns, self.source = [], source

    def __call__(self, prim, ins, **params):
        avals = prim.abstract_eval(*[x.aval for x in ins], **params)
        outs = [Var(a.strong()) for a in avals]
        self.eqns.append(Eqn(prim, list(ins), params, outs, self.source))
        return outs

    def reshape(self, x, shape):
        shape = tuple(shape)
        return x if tuple(x.aval.shape) == shape else self(reshape_p, [x], new_sizes=shape)[0]

    def rows(self, x, lo, hi):
        """x[lo:hi] along the leading axis."""
        shape = tuple(x.aval.shape)
        if (lo, hi) == (0, shape[0]):
            return x
        return self(slice_p, [x], start_indices=(lo,) + (0,) * (len(shape) - 1),
                    limit_indices=(hi,) + shape[1:], strides=None)[0]


def _chain(body, k, nc, nk, reverse, source):
    """The body of k steps: (*consts, *carry, *blocks of k rows) -> (*carry,
    *ys of the k steps)."""
    g = body.graph
    em = _Emitter(source)
    constvars = [Var(v.aval) for v in g.constvars]
    ins = [Var(v.aval) for v in g.invars[:nc + nk]]
    blocks = [Var(v.aval.update(shape=(k,) + tuple(v.aval.shape))) for v in g.invars[nc + nk:]]
    carry, ys = ins[nc:], [[None] * k for _ in g.outvars[nk:]]
    for j in (range(k - 1, -1, -1) if reverse else range(k)):
        x_j = [em.reshape(em.rows(b, j, j + 1), b.aval.shape[1:]) for b in blocks]
        env = dict(zip(g.constvars, constvars))
        env.update(zip(g.invars, ins[:nc] + carry + x_j))
        for e in g.eqns:
            outs = [Var(v.aval) for v in e.outs]
            em.eqns.append(Eqn(e.prim, [env.get(x, x) if isinstance(x, Var) else x
                                        for x in e.inputs], e.params, outs, e.source))
            env.update(zip(e.outs, outs))
        res = [env.get(v, v) if isinstance(v, Var) else v for v in g.outvars]
        carry = res[:nk]
        for i, y in enumerate(res[nk:]):
            ys[i][j] = y
    outs = list(carry)
    for rows, v in zip(ys, g.outvars[nk:]):
        one = [em.reshape(y, (1,) + tuple(v.aval.shape)) for y in rows]
        outs.append(one[0] if k == 1 else em(concatenate_p, one, dimension=0)[0])
    return ClosedGraph(Graph(constvars, ins + blocks, em.eqns, outs), list(body.consts))


def _unrolled(e):
    """(equations, results) replacing scan equation `e`."""
    p = e.params
    T, k, rev = p["length"], min(p["unroll"], p["length"]), p["reverse"]
    nc, nk = p["num_consts"], p["num_carry"]
    n, r = divmod(T, k)
    em = _Emitter(e.source)
    consts, init, xs = e.inputs[:nc], e.inputs[nc:nc + nk], e.inputs[nc + nk:]
    lo = r if rev else 0
    blocks = [em.reshape(em.rows(x, lo, lo + n * k), (n, k) + tuple(x.aval.shape[1:]))
              for x in xs]
    common = dict(reverse=rev, num_consts=nc, num_carry=nk, unroll=1, name=p["name"])
    main = em(scan_p, consts + init + blocks, body=_chain(p["body"], k, nc, nk, rev, e.source),
              length=n, **common)
    carry = main[:nk]
    ys = [em.reshape(y, (n * k,) + tuple(y.aval.shape[2:])) for y in main[nk:]]
    if r:
        start = 0 if rev else n * k
        rest = em(scan_p, consts + carry + [em.rows(x, start, start + r) for x in xs],
                  body=p["body"], length=r, **common)
        carry = rest[:nk]
        ys = [em(concatenate_p, [b, a] if rev else [a, b], dimension=0)[0]
              for a, b in zip(ys, rest[nk:])]
    return em.eqns, carry + ys


def unroll_scans(cg):
    g = cg.graph
    if not any(is_control(e) for e in g.eqns):
        return cg
    env, eqns, memo = {}, [], {}

    def read(x):
        return env.get(x, x) if isinstance(x, Var) else x

    for e in g.eqns:
        e = map_subgraphs(e, unroll_scans, memo)
        e = Eqn(e.prim, [read(x) for x in e.inputs], e.params, e.outs, e.source)
        if e.prim is scan_p and e.params["unroll"] > 1 and e.params["length"] > 1:
            new, results = _unrolled(e)
            eqns += new
            env.update(zip(e.outs, results))
        else:
            eqns.append(e)
    return ClosedGraph(Graph(g.constvars, g.invars, eqns, [read(v) for v in g.outvars]),
                       cg.consts)

