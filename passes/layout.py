"""Stage passes: layout assignment, as rules of the simplification pass:
regions of elementwise work change the layout they compute in when that
removes transposes (the course's NCHW layers between channels-last
convolutions then run channels-last).

Input: a Graph (`plan_layouts`), then one equation at a time with
simplify's context (the rules: operands already renamed; `ctx.producer(v)`,
`ctx.layout`, the plan). Output: the plan {result Var of an elementwise
equation: permutation q}, meaning "compute this value as v' with
v = transpose(v', q)"; a rule returns None (no match), a new equation
computing the equation's result (the same Var), or a list of new equations
whose last one computes it.

Why: a program written in one layout around operations that work in
another (`transpose(conv(transpose(x)))` with ReLU, residual adds,
BatchNorm and their gradients in between) otherwise computes and stores
every activation and activation gradient in the outer layout, and every
convolution's im2col reads it through a transpose (a strided gather), or a
standalone kernel copies it. In the channels-last layout the transposes of
two neighbouring layers meet and simplify cancels them: only the model's
input and output stay transposed.

The plan (Grappler's layout optimizer and XLA's transpose folding, small):
- a region is a set of values tied by elementwise equations (an
  equation's result and its full-shape operands share a layout; 0-d
  operands and broadcasts are free: a broadcast is rebuilt in any layout);
- a region's boundary costs one for each transpose left between it and
  its neighbours (given their layouts), each value it gets from or gives
  to anything else (a library call, a slice, an input, a result) that
  would need one, and each reduction whose kept axes would come out of
  order;
- each region takes the layout among its boundary transposes' that costs
  least, if strictly less than its current one, region after region until
  none moves (each move lowers the total: it ends). A program without
  such a win (a Transformer: its layer norms feed matmuls) is unchanged.

The rewrites, each keeping the result's shape, dtype and values exactly
(an elementwise operation commutes with any permutation of its operands'
elements):
- op(x, y, s, B) -> T(op(x', y', s, B'), q) for an elementwise equation
  the plan gives q: x' = T(x, q^-1) (composed with x's own transpose, so
  usually x's source), B' the broadcast B built in the new layout;
- reduce(T(a, q), axes) -> T(reduce(a, q[axes]), r) for a value the plan
  moved (r: the order of the kept axes; no transpose when they stay in
  order);
- T(a, p) that keeps every axis of size > 1 in order -> reshape(a).
"""
from ..ir.core import Eqn, Var
from ..ir.primitives import broadcast_in_dim_p, reshape_p, transpose_p

REDUCTIONS = ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod")


def _inverse(perm):
    inv = [0] * len(perm)
    for d, s in enumerate(perm):
        inv[s] = d
    return tuple(inv)


def _compose(a, b):
    """The permutation of T(T(x, a), b)."""
    return tuple(a[k] for k in b)


def _identity(p):
    return all(d == k for k, d in enumerate(p))


def _elementwise(e):
    """An equation tying its result's layout to its full-shape operands'."""
    if e.prim.kind != "elementwise" or len(e.outs) != 1:
        return False
    shape = e.outs[0].aval.shape
    return len(shape) >= 2 and all(x.aval.shape in ((), shape) for x in e.inputs)


def _kept_order(perm, axes):
    """Source axes kept by reducing T(a, perm) over `axes`, in result order."""
    return [perm[d] for d in range(len(perm)) if d not in axes]


# -- the plan ------------------------------------------------------------------------
class _Regions:
    """Values tied into regions (union-find), with each value's producer
    and users."""

    def __init__(self, g):
        self.producer, self.users, self.ew, self.parent = {}, {}, {}, {}
        for e in g.eqns:
            for v in e.outs:
                self.producer[v] = e
            for x in e.inputs:
                if isinstance(x, Var):
                    self.users.setdefault(x, []).append(e)
            self.ew[e] = _elementwise(e)
        self.outputs = {v for v in g.outvars if isinstance(v, Var)}
        for e in g.eqns:
            if self.ew[e]:
                for x in e.inputs:
                    if self._tied(x):
                        self._union(x, e.outs[0])

    def _tied(self, x):
        if not isinstance(x, Var) or x.aval.shape == ():
            return False
        p = self.producer.get(x)
        return p is None or p.prim is not broadcast_in_dim_p

    def find(self, v):
        root = v
        while self.parent[root] is not root:
            root = self.parent[root]
        while v is not root:                    # path compression
            self.parent[v], v = root, self.parent[v]
        return root

    def _union(self, a, b):
        self.parent.setdefault(a, a)
        self.parent.setdefault(b, b)
        ra, rb = self.find(a), self.find(b)
        if ra is not rb:
            self.parent[ra] = rb

    def moved(self, v):
        """Whether the plan rewrites v's definition (an elementwise result)."""
        p = self.producer.get(v)
        return p is not None and self.ew[p]


def plan_layouts(g):
    """{elementwise result Var: q}: the regions whose layout changes."""
    if not any(e.prim is transpose_p for e in g.eqns):
        return {}
    R = _Regions(g)
    members = {}
    for v in list(R.parent):
        members.setdefault(R.find(v), []).append(v)
    members = {r: vs for r, vs in members.items() if any(R.moved(v) for v in vs)}
    region_of = {v: r for r, vs in members.items() for v in vs}
    choice = {r: tuple(range(vs[0].aval.ndim)) for r, vs in members.items()}

    def layout(v, moved_only):
        r = region_of.get(v)
        if r is None or (moved_only and not R.moved(v)):
            return None
        return choice[r]

    def transpose_cost(t):
        """Transposes left where t = T(x, p) is read, given the choices."""
        x, y = t.inputs[0], t.outs[0]
        if not isinstance(x, Var):
            return 0
        qx = layout(x, True)
        c2 = _compose(qx, t.params["permutation"]) if qx else tuple(t.params["permutation"])
        qy = layout(y, False)
        tied = [u for u in R.users.get(y, ()) if R.ew[u]] if qy else []
        other = len(R.users.get(y, ())) - len(tied) + (y in R.outputs)
        cost = 0 if _identity(c2) or not other else 1
        if tied and not _identity(_compose(c2, _inverse(qy))):
            cost += 1
        return cost

    def local_cost(r, q):
        choice[r] = q
        moved = not _identity(q)
        cost, seen = 0, set()
        for v in members[r]:
            p = R.producer.get(v)
            if p is not None and p.prim is transpose_p:
                seen.add(p)
                cost += transpose_cost(p)
            elif not R.moved(v):
                cost += moved                   # an input, a library call's result...
            if not R.moved(v):
                continue
            for u in R.users.get(v, ()):
                if R.ew[u]:
                    continue
                if u.prim is transpose_p:
                    if u not in seen:
                        seen.add(u)
                        cost += transpose_cost(u)
                elif u.prim.name in REDUCTIONS and u.inputs[0] is v:
                    kept = _kept_order(q, set(u.params["axes"]))
                    cost += kept != sorted(kept)
                else:
                    cost += moved               # a library call, a slice, a pad...
            cost += moved and v in R.outputs
        return cost

    def candidates(r):
        qs = set()
        for v in members[r]:
            p = R.producer.get(v)
            if p is not None and p.prim is transpose_p and isinstance(p.inputs[0], Var):
                qx = layout(p.inputs[0], True)
                perm = tuple(p.params["permutation"])
                qs.add(_compose(qx, perm) if qx else perm)
            if R.moved(v):
                for u in R.users.get(v, ()):
                    if u.prim is transpose_p:
                        inv = _inverse(u.params["permutation"])
                        qy = layout(u.outs[0], False)
                        qs.add(_compose(qy, inv) if qy else inv)
        return qs

    for _ in range(8):                          # sweeps; each move lowers the total
        changed = False
        for r in members:
            current = choice[r]
            others = candidates(r) - {current}
            if not others:                      # no transpose at its boundary
                continue
            best, best_cost = current, local_cost(r, current)
            for q in sorted(others):
                c = local_cost(r, q)
                if c < best_cost:
                    best, best_cost = q, c
            choice[r] = best
            changed |= best != current
        if not changed:
            break
    return {v: choice[r] for r, vs in members.items() if not _identity(choice[r])
            for v in vs if R.moved(v)}


# -- the rewrites --------------------------------------------------------------------
def _transposed(x, perm, ctx, source):
    """Equations making T(x, perm), composed with x's own transpose; returns
    (equations, the value)."""
    p = ctx.producer(x)
    if p is not None and p.prim is transpose_p:
        x, perm = p.inputs[0], _compose(tuple(p.params["permutation"]), perm)
    if _identity(perm):
        return [], x
    out = Var(x.aval.update(shape=[x.aval.shape[k] for k in perm]))
    return [Eqn(transpose_p, [x], {"permutation": tuple(perm)}, [out], source)], out


def _broadcast_into(b, perm, shape, source):
    """Equations making broadcast b, whose result is T(value, perm), as that
    value of `shape` instead: [maybe a transpose of its small operand, the
    broadcast]; the last one's result is the value."""
    x, bd = b.inputs[0], b.params["broadcast_dimensions"]
    dims = [perm[d] for d in bd]            # operand dim i -> new dim
    order = sorted(range(len(dims)), key=dims.__getitem__)
    eqns = []
    if order != list(range(len(dims))):     # the operand's axes out of order: permute it
        xt = Var(x.aval.update(shape=[x.aval.shape[k] for k in order]))
        eqns.append(Eqn(transpose_p, [x], {"permutation": tuple(order)}, [xt], source))
        x = xt
    out = Var(b.outs[0].aval.update(shape=shape))
    eqns.append(Eqn(broadcast_in_dim_p, [x], {"shape": tuple(shape),
                                              "broadcast_dimensions": tuple(sorted(dims))},
                    [out], source))
    return eqns


def relayout_elementwise(e, ctx):
    """op(x, ...) -> T(op(T(x, q^-1), ...), q) where the plan says q."""
    q = ctx.layout.get(e.outs[0]) if len(e.outs) == 1 else None
    if q is None:
        return None
    out = e.outs[0]
    inv = _inverse(q)
    shape = tuple(out.aval.shape[k] for k in inv)
    eqns, ins = [], []
    for x in e.inputs:
        b = ctx.producer(x) if isinstance(x, Var) else None
        if x.aval.shape == ():
            ins.append(x)
        elif b is not None and b.prim is broadcast_in_dim_p:
            eqns += _broadcast_into(b, q, shape, e.source)
            ins.append(eqns[-1].outs[0])
        else:
            more, x = _transposed(x, inv, ctx, e.source)
            eqns += more
            ins.append(x)
    mid = Var(out.aval.update(shape=shape))
    eqns.append(Eqn(e.prim, ins, e.params, [mid], e.source))
    eqns.append(Eqn(transpose_p, [mid], {"permutation": q}, [out], e.source))
    ctx.moved.add(out)
    return eqns


def relayout_reduce(e, ctx):
    """reduce(T(a, q), axes) -> T(reduce(a, q[axes]), r) for a moved value."""
    x = e.inputs[0]
    if x not in ctx.moved:
        return None
    t = ctx.producer(x)
    perm, axes = tuple(t.params["permutation"]), set(e.params["axes"])
    a = t.inputs[0]
    src_axes = tuple(sorted(perm[d] for d in axes))
    kept = _kept_order(perm, axes)
    src_kept = sorted(kept)
    if kept == src_kept:
        return Eqn(e.prim, [a], {**e.params, "axes": src_axes}, e.outs, e.source)
    mid = Var(e.outs[0].aval.update(shape=[a.aval.shape[d] for d in src_kept]))
    r = tuple(src_kept.index(d) for d in kept)
    return [Eqn(e.prim, [a], {**e.params, "axes": src_axes}, [mid], e.source),
            Eqn(transpose_p, [mid], {"permutation": r}, e.outs, e.source)]


def transpose_as_reshape(e, ctx):
    """T(a, p) moving only axes of size 1 -> reshape(a) (a free view)."""
    x, perm = e.inputs[0], tuple(e.params["permutation"])
    moved = [s for s in perm if x.aval.shape[s] != 1]
    if moved != sorted(moved):
        return None
    return Eqn(reshape_p, [x], {"new_sizes": tuple(e.outs[0].aval.shape)}, e.outs, e.source)
