"""Stage passes: fusion: partition a graph into kernel groups for a backend.

Input: a ClosedGraph (after simplification) and a Backend value (codegen's
cpu or cuda BACKEND, passed down by the lowering: passes import no code
generator). Output: a ClosedGraph whose equations are `kernel` groups (each
holding the sub-Graph that codegen turns into one kernel), library calls
(dot_general: BLAS on CPU), views (a reshape between groups costs nothing)
and host steps (effects: debug_callback).

Policy, consumers first (reverse topological order):
1. producer into consumer: an equation whose result only one group reads
   moves into that group (its result is never written to memory);
2. duplication: a cheap equation (elementwise arithmetic, broadcasts,
   index remaps) read by several groups is copied into each, instead of
   writing and re-reading its result; a transcendental one into at most two;
   but not one that reads two or more arrays of its own size (XLA's rule:
   each copy would read more than the stored result; a chain of such
   copies, a Transformer's residual stream, would be recomputed by every
   later layer, so no two layers' kernels would be alike);
3. siblings: groups with the same loop domain that read a common input and
   do not depend on each other merge into one multi-output kernel, and a
   group whose results only one other group reads then moves into it.
Every tentative group is judged by the backend's cost model
(`backend.judge(sub_graph)`: on CPU, no reduction recomputed per output
element, no transcendental more than twice; on CUDA also the tiled-matmul
epilogue rule and no full reduction reading another); where two neighbours
were not fused, the group's `why` param says why, and the fused-stage dump
prints it. An effectful equation is never fused: it stays a host step
between kernels (its operands are stored), and effects keep their program
order among themselves.

Cost: about linear in the graph's size (an unrolled LSTM step of 4000
equations fuses in about a second). Verdicts are remembered by the
candidate's structure (`_Judge`: an unrolled loop's steps and a model's
layers repeat theirs), and phase 3 is incremental (`_Merger`: dependences as
bitsets, candidate pairs in a heap) while making exactly the merges of
rescanning every pair after each one (tests/test_fusion_scaling.py holds
that plain version as the specification). Each group's sub-Graph is put in
a canonical order (`_canonical`), so identical groups anywhere in a program
(every layer of a Transformer) give byte-identical kernel source, which the
content-hash kernel cache compiles once.

Control flow: fusion stops at loop boundaries. A scan, while or cond is a
step of its own (its operands are stored, its results loaded), and its
bodies are fused recursively for the same backend, so the fused dump shows
kernel groups inside `body=`; a kernel next to a loop says so in its `why`.
Convolutions the backend has no routine for are first written out as im2col
(conv_expand.py). checkpoint equations are inlined next
(subgraphs.inline_checkpoints): they matter only to autodiff, which has
run; then a scan with `unroll=k` becomes
a scan of k chained copies of its body (passes/unroll.py), which fuse.
"""
import functools
import hashlib
import heapq

import numpy as np

from ..ir.core import ClosedGraph, Eqn, Graph, Var
from ..ir.primitives import kernel_p
from .conv_expand import expand_convs
from .exact_compare import exact_values
from .subgraphs import effectful, inline_checkpoints, map_subgraphs
from .unroll import unroll_scans

def _cheap(e):
    return e.prim.kind in ("elementwise", "structural") and not e.prim.traits.expensive


def _true_rank(aval):
    return sum(1 for n in aval.shape if n != 1)


def _duplicable(e, producer):
    """Whether copies of `e` in several kernels read no more than loading its
    stored result would (XLA's EffectivelyAtMostUnary): at most one operand
    is an array as large as the result; a broadcast or iota operand, or a
    lower-rank one, is made in the kernel from less."""
    rank = max((_true_rank(v.aval) for v in e.outs), default=0)
    big = []
    for x in e.inputs:
        if isinstance(x, Var) and _true_rank(x.aval) >= rank:
            p = producer.get(x)
            if p is None or p.prim.name not in ("broadcast_in_dim", "iota"):
                big.append(x)
    return len(big) <= 1 or sum(x.aval.size for x in big) <= sum(v.aval.size for v in e.outs)


class _Group:
    """Equations computed by one kernel; `roots` are those whose results the
    kernel stores (read by other steps or returned)."""
    __slots__ = ("roots", "eqns", "why")

    def __init__(self, root):
        self.roots = [root]
        self.eqns = [root]              # kept in program order
        self.why = []

    def outs(self):
        return [v for r in self.roots for v in r.outs]


def _subgraph(eqns, outs):
    """The sub-Graph computing `outs` from `eqns` (in order); returns
    (sub-Graph, outer input Vars)."""
    defined = {v for e in eqns for v in e.outs}
    inputs, seen = [], set()
    for e in eqns:
        for x in e.inputs:
            if isinstance(x, Var) and x not in defined and x not in seen:
                seen.add(x)
                inputs.append(x)
    env = {v: Var(v.aval) for v in inputs}
    sub_eqns = []
    for e in eqns:
        new_outs = [Var(v.aval) for v in e.outs]
        sub_eqns.append(Eqn(e.prim, [env.get(x, x) for x in e.inputs], e.params, new_outs,
                            e.source))
        env.update(zip(e.outs, new_outs))
    return Graph([], [env[v] for v in inputs], sub_eqns, [env[v] for v in outs]), inputs


def _prefix_shapes(shapes):
    """True if every shape is a prefix of the longest (one loop nest serves all)."""
    longest = max(shapes, key=len, default=())
    return all(tuple(s) == tuple(longest[:len(s)]) for s in shapes)


def _frozen(v):
    """A hashable stand-in for a param value, equal only for equal values
    (0.0 and -0.0, 1 and 1.0 and True stay apart). TypeError if unhashable."""
    if isinstance(v, dict):
        return ("dict", tuple((k, _frozen(x)) for k, x in sorted(v.items())))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, tuple(_frozen(x) for x in v))
    if isinstance(v, np.ndarray):
        return ("ndarray", v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, np.generic):
        return ("np", v.dtype.str, v.tobytes())
    if isinstance(v, float):
        return ("float", v.hex())
    hash(v)
    return (type(v), v)


class _Judge:
    """The backend's verdict on candidate groups, remembered by structure:
    a verdict depends only on the sub-Graph, so the steps of an unrolled
    loop (or the layers of a model) are judged once, not once each (judging
    emits the group's loop nest: the bulk of fusion's time)."""

    def __init__(self, backend):
        self.backend = backend
        self.memo = {}
        self.accepted = {}      # structure -> the sub-Graph judged acceptable
        self.sigs = {}          # eqn -> small int naming its signature
        self.sig_ids = {}       # signature -> that int

    def _sig(self, e):
        """The equation without its Vars: primitive, params, operand and
        result types, literal operands."""
        k = self.sigs.get(e)
        if k is None:
            ins = tuple(("v", x.aval) if isinstance(x, Var) else ("lit", x.aval, x.val.tobytes())
                        for x in e.inputs)
            sig = (e.prim, _frozen(e.params), ins, tuple(v.aval for v in e.outs))
            k = self.sigs[e] = self.sig_ids.setdefault(sig, len(self.sig_ids))
        return k

    def structure(self, eqns, outs):
        """The group computing `outs` from `eqns` (in program order) as a
        hashable value, equal for two groups exactly when their sub-Graphs
        are the same up to the names of their Vars: an unrolled loop's
        steps, or a model's layers, give equal structures. Vars are numbered
        in order of appearance, so a number not seen before is an input."""
        names, key = {}, []
        for e in eqns:
            item = [self._sig(e)]
            for x in e.inputs:
                if isinstance(x, Var):
                    item.append(names.setdefault(x, len(names)))
            for v in e.outs:
                names[v] = len(names)
            key.append(tuple(item))
        return tuple(key), tuple(names[v] for v in outs)

    def __call__(self, eqns, outs):
        """Why a candidate group is bad (the backend's verdict), or None."""
        limit = self.backend.max_group_eqns
        if len(eqns) > limit:
            return f"the group would exceed {limit} equations"
        try:
            key = self.structure(eqns, outs)
        except TypeError:                   # a param we cannot hash: judge afresh
            return self.backend.judge(_candidate(eqns, outs))
        why = self.memo.get(key, self)
        if why is self:
            sub = _candidate(eqns, outs)
            why = self.memo[key] = self.backend.judge(sub)
            if why is None:
                self.accepted[key] = sub
        return why

    def judged(self, eqns, outs):
        """The sub-Graph a group of this structure was judged acceptable as,
        or None: the group `_build` makes is the same up to the names of its
        Vars (and source lines), so the backend's emission of that one
        serves it (Backend.same_group)."""
        try:
            return self.accepted.get(self.structure(eqns, outs))
        except TypeError:
            return None


def _candidate(eqns, outs):
    """The sub-Graph a candidate group is judged as: the one `_build` makes
    of it (canonical order), so that the group is compiled from the emission
    that judged it, not emitted a second time."""
    return _subgraph(_canonical(eqns, outs), outs)[0]


def fuse(cg, backend):
    """The ClosedGraph `cg` partitioned into kernel groups, library calls,
    views, host steps and control steps for `backend` (a codegen Backend)."""
    cg = unroll_scans(inline_checkpoints(expand_convs(cg, backend)))
    g = cg.graph
    judge = _Judge(backend)
    order = {e: k for k, e in enumerate(g.eqns)}
    producer = {v: e for e in g.eqns for v in e.outs}
    consumers = {}
    for e in g.eqns:
        for x in e.inputs:
            if isinstance(x, Var):
                consumers.setdefault(x, []).append(e)
    graph_outs = {v for v in g.outvars if isinstance(v, Var)}
    groups_of = {}                      # eqn -> groups that compute it
    groups = []
    views = set()                       # reshapes left as runtime views

    def try_add(group, e):
        cand = sorted(group.eqns + [e], key=order.__getitem__)
        why = judge(cand, group.outs())
        if why is None:
            group.eqns = cand
            groups_of.setdefault(e, []).append(group)
            return True
        group.why.append(f"{e.prim.name} not fused in: {why}")
        return False

    def apart(e):                       # a step of its own, never in a kernel
        return backend.is_library(e) or backend.is_host(e) or backend.is_control(e)

    # values an equality test compares with something computed from them:
    # stored once, never recomputed (passes/exact_compare.py)
    exact = exact_values(g, apart)
    for e in reversed(g.eqns):
        if apart(e):
            continue
        cons = [c for v in e.outs for c in consumers.get(v, ())]
        cgroups = []
        for c in cons:
            for gr in groups_of.get(c, ()):
                if gr not in cgroups:
                    cgroups.append(gr)
        # Read by a library call, a view step, or returned: it must be stored.
        stored = any(v in graph_outs for v in e.outs) or any(
            not groups_of.get(c) or c in views for c in cons)
        placed = False
        # a root with a loop of its own (cumsum, a scatter) absorbs producers
        # but is never inlined into a consumer
        if not e.prim.traits.own_loop and cgroups and not any(v in exact for v in e.outs):
            if len(cgroups) == 1 and not stored:
                placed = try_add(cgroups[0], e)
            elif (_cheap(e) or (e.prim.kind == "elementwise" and len(cgroups) <= 2)) and \
                    (len(cgroups) == 1 or _duplicable(e, producer)):
                # Recomputing even a transcendental in a second kernel costs less
                # than storing it and loading it back (memory bound).
                placed = all([try_add(gr, e) for gr in cgroups]) and not stored
        if placed:
            continue
        if backend.is_view(e):
            views.add(e)                # stays a free view of its input
            continue
        gr = _Group(e)
        groups.append(gr)
        groups_of.setdefault(e, []).append(gr)
    groups.reverse()
    others = [e for e in g.eqns if apart(e) or e in views]
    groups = _Merger(groups, others, order, graph_outs | exact, judge).run()
    return _build(cg, groups, others, order, backend, judge)


def _step_io(step):
    if isinstance(step, _Group):
        defined = {v for e in step.eqns for v in e.outs}
        ins = {x for e in step.eqns for x in e.inputs if isinstance(x, Var) and x not in defined}
        return ins, set(step.outs())
    return {x for x in step.inputs if isinstance(x, Var)}, set(step.outs)


class _Merger:
    """Phases 3 and 4 of the policy, to a fixpoint: merge siblings (the
    first acceptable pair in the groups' order, again and again), and when
    none is left move one group into its sole consumer, then merge again.

    Done incrementally, so that it costs about the graph's size rather than
    its cube: each step knows the steps it depends on transitively as a
    bitset (`reach`), updated for just the steps a merge affects; candidate
    pairs (groups reading a common input) wait in a heap ordered as the
    pairs are scanned, and a pair found unacceptable is looked at again only
    when one of its groups changes or a dependence between them disappears
    (a group that absorbs a copy of an equation may stop reading its
    result). The merges made, and their order, are those of scanning every
    pair afresh after each merge."""

    def __init__(self, groups, others, order, graph_outs, judge):
        self.groups, self.order, self.graph_outs, self.judge = groups, order, graph_outs, judge
        self.steps = list(groups) + list(others)      # a group's index: its position
        self.n_groups = len(groups)
        self.alive = [True] * len(self.steps)
        self.version = [0] * len(self.steps)
        io = [_step_io(s) for s in self.steps]
        self.ins = [i for i, _ in io]
        self.outs = [o for _, o in io]
        self.producer = {v: k for k, o in enumerate(self.outs) for v in o}
        self.readers = {}                               # Var -> steps reading it
        for k, ins in enumerate(self.ins):
            for v in ins:
                self.readers.setdefault(v, set()).add(k)
        self.reach = [0] * len(self.steps)
        self.dead_mask = 0
        for k in self._topological():
            self.reach[k] = self._closure(k)
        self.heap = []
        self.rejected = {}              # group -> (its version, consumer, its version)
        for k in range(self.n_groups):
            self._push_pairs(k, later_only=True)

    # -- dependences ------------------------------------------------------------
    def _deps(self, k):
        p = self.producer
        return {p[v] for v in self.ins[k] if v in p}

    def _closure(self, k):
        r = 0
        for d in self._deps(k):
            r |= self.reach[d] | (1 << d)
        return r

    def _topological(self):
        deps = [self._deps(k) for k in range(len(self.steps))]
        users = [[] for _ in self.steps]
        for k, ds in enumerate(deps):
            for d in ds:
                users[d].append(k)
        left = [len(ds) for ds in deps]
        ready = [k for k, n in enumerate(left) if n == 0]
        out = []
        while ready:
            k = ready.pop()
            out.append(k)
            for u in users[k]:
                left[u] -= 1
                if not left[u]:
                    ready.append(u)
        return out

    def _depends(self, a, b):
        return (self.reach[a] >> b) & 1 or (self.reach[b] >> a) & 1

    def _update_reach(self, changed, dead):
        """Update `reach` after group `changed` took in group `dead`. Usually
        `changed` now depends on what either did, and so does every step
        that depended on either: one OR each. But a group that took in a
        copy of an equation no longer reads its result, so it may depend on
        less: then the reach of it and of every step that depended on it is
        recomputed, and a group that lost a dependence gets its candidate
        pairs looked at again. (Bits of removed steps may stay set: they
        are never asked about.)"""
        mask = (1 << changed) | (1 << dead)
        self.dead_mask |= 1 << dead
        old = self.reach[changed] | self.reach[dead]
        new = self._closure(changed)
        self.reach[changed] = new
        hit = [k for k, r in enumerate(self.reach) if r & mask and self.alive[k] and
               k != changed]
        if not old & ~new & ~self.dead_mask:
            add = new | (1 << changed)
            for k in hit:
                self.reach[k] |= add
            return
        self._push_pairs(changed)
        # a step that depends on another has the larger reach (dependences
        # among them do not change), so this order is topological
        hit.sort(key=lambda k: self.reach[k].bit_count())
        for k in hit:
            old, new = self.reach[k], self._closure(k)
            self.reach[k] = new
            if old & ~new & ~self.dead_mask & ~mask and k < self.n_groups:
                self._push_pairs(k)     # no longer depends on some group

    # -- bookkeeping of a group whose equations changed -------------------------
    def _set_io(self, k):
        for v in self.ins[k]:
            self.readers[v].discard(k)
        for v in self.outs[k]:
            if self.producer.get(v) == k:
                del self.producer[v]
        self.ins[k], self.outs[k] = _step_io(self.steps[k])
        for v in self.ins[k]:
            self.readers.setdefault(v, set()).add(k)
        for v in self.outs[k]:
            self.producer[v] = k
        self.version[k] += 1

    def _kill(self, k):
        self.alive[k] = False
        for v in self.ins[k]:
            self.readers[v].discard(k)
        for v in self.outs[k]:
            if self.producer.get(v) == k:
                del self.producer[v]
        self.ins[k], self.outs[k] = set(), set()

    def _push_pairs(self, k, later_only=False):
        """Queue every candidate sibling pair of group `k`: the groups that
        read one of its inputs."""
        partners = set()
        for v in self.ins[k]:
            partners |= self.readers.get(v, set())
        for j in partners:
            if j == k or j >= self.n_groups or not self.alive[j] or (later_only and j < k):
                continue
            a, b = (k, j) if k < j else (j, k)
            heapq.heappush(self.heap, (a, b, self.version[a], self.version[b]))

    # -- the two moves --------------------------------------------------------
    def _merge_siblings(self):
        """Merge independent groups with one loop domain that read a common input."""
        while self.heap:
            a, b, va, vb = heapq.heappop(self.heap)
            if not (self.alive[a] and self.alive[b]) or \
                    (va, vb) != (self.version[a], self.version[b]):
                continue                # gone, or queued again since it changed
            if self._depends(a, b):
                continue
            ga, gb = self.steps[a], self.steps[b]
            if not _prefix_shapes([v.aval.shape for v in ga.outs() + gb.outs()]):
                continue
            if not (self.ins[a] & self.ins[b]):
                continue
            eqns = sorted(set(ga.eqns) | set(gb.eqns), key=self.order.__getitem__)
            if self.judge(eqns, ga.outs() + gb.outs()) is not None:
                continue
            ga.roots, ga.eqns = ga.roots + gb.roots, eqns
            ga.why += gb.why
            self._kill(b)
            for v in gb.outs():
                self.producer[v] = a
            self._set_io(a)
            self._update_reach(a, b)
            self._push_pairs(a)

    def _absorb_into_sole_consumer(self):
        """Move a group into the one group that reads all of its results (which
        sibling merging may have just made): its results then stay in registers.
        Returns True if a group moved."""
        for p in range(self.n_groups):
            if not self.alive[p]:
                continue
            gp = self.steps[p]
            outs = self.outs[p]
            if outs & self.graph_outs:
                continue
            readers = set()
            for v in outs:
                readers |= self.readers.get(v, set())
            if len(readers) != 1:
                continue
            c = next(iter(readers))
            if c >= self.n_groups or c == p:
                continue
            state = (self.version[p], c, self.version[c])
            if self.rejected.get(p) == state:
                continue                # rejected before, its reason already noted
            gc = self.steps[c]
            eqns = sorted(set(gc.eqns) | set(gp.eqns), key=self.order.__getitem__)
            why = self.judge(eqns, gc.outs())
            if why is None:
                gc.eqns = eqns
                self._kill(p)
                self._set_io(c)
                self._update_reach(c, p)
                self._push_pairs(c)
                return True
            gc.why.append(f"{'/'.join(e.prim.name for e in gp.roots)} not fused in: {why}")
            self.rejected[p] = state
        return False

    def run(self):
        while True:
            self._merge_siblings()
            if not self._absorb_into_sole_consumer():
                break
        return [gr for k, gr in enumerate(self.groups) if self.alive[k]]


def _toposort(steps, order):
    """The steps in dependence order; among those ready, the one whose first
    root comes first in the program (effects keep their program order)."""
    io = [_step_io(s) for s in steps]
    producer = {v: k for k, (_, outs) in enumerate(io) for v in outs}
    deps = [{producer[v] for v in ins if v in producer} for ins, _ in io]
    key = [min(order[e] for e in (s.roots if isinstance(s, _Group) else [s])) for s in steps]
    effects = sorted((k for k, s in enumerate(steps) if not isinstance(s, _Group)
                      and effectful(s)), key=key.__getitem__)
    for a, b in zip(effects, effects[1:]):
        deps[b].add(a)                  # prints in program order
    users = [[] for _ in steps]
    for k, ds in enumerate(deps):
        for d in ds:
            users[d].append(k)
    left = [len(ds) for ds in deps]
    ready = [(key[k], k) for k in range(len(steps)) if not left[k]]
    heapq.heapify(ready)
    out = []
    while ready:
        _, k = heapq.heappop(ready)
        out.append(k)
        for u in users[k]:
            left[u] -= 1
            if not left[u]:
                heapq.heappush(ready, (key[u], u))
    if len(out) != len(steps):
        raise AssertionError("fusion produced a cycle")  # pragma: no cover
    return [steps[k] for k in out], deps, out


def _loop_boundaries(groups, others, backend):
    """Say in each kernel's `why` that it stops at a loop it feeds or reads."""
    loops = [(s.prim.name, *_step_io(s)) for s in others if backend.is_control(s)]
    if not loops:
        return
    for gr in groups:
        g_ins, g_outs = _step_io(gr)
        for name, ins, outs in loops:
            if g_outs & ins:
                gr.why.append(f"read by {name}: fusion stops at loop boundaries")
            if g_ins & outs:
                gr.why.append(f"{name} not fused in: fusion stops at loop boundaries")


@functools.lru_cache(maxsize=1 << 14)
def _digest(*parts):
    """A digest of an expression for ordering operands: primitive names,
    ranks and dtypes (sizes are kernel arguments, and must not decide).
    Remembered: every judged candidate is put in canonical order
    (`_candidate`), and a program's candidates repeat their expressions."""
    parts = [(p.ndim, p.dtype.str) if hasattr(p, "dtype") and hasattr(p, "ndim") else p
             for p in parts]
    return hashlib.sha1(repr(parts).encode()).digest()


def _canonical(eqns, outs):
    """The group's equations in an order, and with the operands of
    commutative ones in an order, that depend on its structure alone, not on
    where its equations sit in the program: two layers' groups then make the
    same sub-Graph, so the same kernel source (simplify orders commutative
    operands by age, and CSE may hand a layer an equation made for an earlier
    one, such as the broadcast of a shared attention mask). Operands are
    ordered by a digest of the expression computing them: its primitives,
    ranks and dtypes (not sizes, nor float literals: those are kernel
    arguments, and groups differing in them share a kernel), the same in
    every process; literals last; equations by a depth-first walk from the
    results."""
    digest, producer = {}, {v: e for e in eqns for v in e.outs}

    def dig(x):
        if not isinstance(x, Var):
            return b"\xff" * 20             # literals last, as simplify puts them
        d = digest.get(x)
        if d is None:
            d = digest[x] = _digest("in", x.aval)
        return d
    swapped = {}
    for e in eqns:                      # program order: operands before users
        ins = list(e.inputs)
        if e.prim.traits.commutative and len(ins) == 2 and dig(ins[0]) > dig(ins[1]):
            ins.reverse()
            swapped[e] = Eqn(e.prim, ins, e.params, e.outs, e.source)
        h = b"".join(dig(x) for x in ins)
        for j, v in enumerate(e.outs):
            digest[v] = _digest(e.prim.name, v.aval, j, h)
    out, seen = [], set()
    for v in outs:                      # post-order, without recursion
        stack = [(producer.get(v), False)]
        while stack:
            e, expanded = stack.pop()
            if expanded:
                out.append(swapped.get(e, e))
                continue
            if e is None or e in seen:
                continue
            seen.add(e)
            stack.append((e, True))
            for x in reversed(swapped.get(e, e).inputs):
                if isinstance(x, Var) and x in producer and producer[x] not in seen:
                    stack.append((producer[x], False))
    return out


def _build(cg, groups, others, order, backend, judge):
    g = cg.graph
    steps, _, _ = _toposort(list(groups) + list(others), order)
    _loop_boundaries(groups, others, backend)
    eqns, memo = [], {}
    for k, s in enumerate(steps):
        if not isinstance(s, _Group):
            # a loop's bodies: fused apart, for the same backend
            eqns.append(map_subgraphs(s, lambda sub: fuse(sub, backend), memo))
            continue
        outs = s.outs()
        sub, inputs = _subgraph(_canonical(s.eqns, outs), outs)
        judged = judge.judged(s.eqns, outs)
        if judged is not None:          # what the backend kept from judging it serves sub
            backend.same_group(judged, sub)
        name = "_".join(dict.fromkeys(e.prim.name for e in reversed(s.eqns)))[:48] + f"_{k}"
        params = {"graph": sub, "name": name}
        if s.why:
            params["why"] = "; ".join(dict.fromkeys(s.why))
        eqns.append(Eqn(kernel_p, inputs, params, outs, s.roots[-1].source))
    return ClosedGraph(Graph(g.constvars, g.invars, eqns, g.outvars), cg.consts)
