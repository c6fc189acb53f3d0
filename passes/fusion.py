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

Control flow: fusion stops at loop boundaries. A scan, while or cond is a
step of its own (its operands are stored, its results loaded), and its
bodies are fused recursively for the same backend, so the fused dump shows
kernel groups inside `body=`; a kernel next to a loop says so in its `why`.
checkpoint equations are inlined first (subgraphs.inline_checkpoints): they
matter only to autodiff, which has run; then a scan with `unroll=k` becomes
a scan of k chained copies of its body (passes/unroll.py), which fuse.
"""
from ..ir.core import ClosedGraph, Eqn, Graph, Var
from ..ir.primitives import kernel_p
from .subgraphs import effectful, inline_checkpoints, map_subgraphs
from .unroll import unroll_scans

def _cheap(e):
    return e.prim.kind in ("elementwise", "structural") and not e.prim.traits.expensive


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


def _acceptable(eqns, outs, backend):
    """Why a candidate group is bad (the backend's verdict), or None."""
    if len(eqns) > backend.max_group_eqns:
        return f"the group would exceed {backend.max_group_eqns} equations"
    sub, _ = _subgraph(eqns, outs)
    return backend.judge(sub)


def fuse(cg, backend):
    """The ClosedGraph `cg` partitioned into kernel groups, library calls,
    views, host steps and control steps for `backend` (a codegen Backend)."""
    cg = unroll_scans(inline_checkpoints(cg))
    g = cg.graph
    order = {e: k for k, e in enumerate(g.eqns)}
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
        why = _acceptable(cand, group.outs(), backend)
        if why is None:
            group.eqns = cand
            groups_of.setdefault(e, []).append(group)
            return True
        group.why.append(f"{e.prim.name} not fused in: {why}")
        return False

    def apart(e):                       # a step of its own, never in a kernel
        return backend.is_library(e) or backend.is_host(e) or backend.is_control(e)

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
        if not e.prim.traits.own_loop and cgroups:
            if len(cgroups) == 1 and not stored:
                placed = try_add(cgroups[0], e)
            elif _cheap(e) or (e.prim.kind == "elementwise" and len(cgroups) <= 2):
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
    while True:
        groups = _merge_siblings(groups, others, order, backend)
        if not _absorb_into_sole_consumer(groups, others, order, graph_outs, backend):
            break
    return _build(cg, groups, others, order, backend)


def _absorb_into_sole_consumer(groups, others, order, graph_outs, backend):
    """Move a group into the one group that reads all of its results (which
    sibling merging may have just made): its results then stay in registers.
    Returns True if a group moved."""
    steps = _steps(groups, others)
    io = [_step_io(s) for s in steps]
    for p in groups:
        outs = set(p.outs())
        if outs & graph_outs:
            continue
        readers = [s for s, (ins, _) in zip(steps, io) if ins & outs]
        if len(readers) != 1 or not isinstance(readers[0], _Group) or readers[0] is p:
            continue
        c = readers[0]
        eqns = sorted(set(c.eqns) | set(p.eqns), key=order.__getitem__)
        why = _acceptable(eqns, c.outs(), backend)
        if why is None:
            c.eqns = eqns
            groups.remove(p)
            return True
        c.why.append(f"{'/'.join(e.prim.name for e in p.roots)} not fused in: {why}")
    return False


def _steps(groups, others):
    """Every step: kernel groups, library calls and views."""
    return list(groups) + list(others)


def _step_io(step):
    if isinstance(step, _Group):
        defined = {v for e in step.eqns for v in e.outs}
        ins = {x for e in step.eqns for x in e.inputs if isinstance(x, Var) and x not in defined}
        return ins, set(step.outs())
    return {x for x in step.inputs if isinstance(x, Var)}, set(step.outs)


def _toposort(steps, order):
    io = [_step_io(s) for s in steps]
    producer = {v: k for k, (_, outs) in enumerate(io) for v in outs}
    deps = [{producer[v] for v in ins if v in producer} for ins, _ in io]
    key = [min(order[e] for e in (s.roots if isinstance(s, _Group) else [s])) for s in steps]
    effects = sorted((k for k, s in enumerate(steps) if not isinstance(s, _Group)
                      and effectful(s)), key=key.__getitem__)
    for a, b in zip(effects, effects[1:]):
        deps[b].add(a)                  # prints in program order
    done, out = set(), []
    pending = sorted(range(len(steps)), key=key.__getitem__)
    while pending:
        for k in pending:
            if deps[k] <= done:
                done.add(k)
                out.append(k)
                pending.remove(k)
                break
        else:
            raise AssertionError("fusion produced a cycle")  # pragma: no cover
    return [steps[k] for k in out], deps, out


def _reaches(steps, deps):
    """reach[a] = set of steps that a depends on, transitively."""
    reach = []
    for k in range(len(steps)):
        r, stack = set(), list(deps[k])
        while stack:
            j = stack.pop()
            if j not in r:
                r.add(j)
                stack.extend(deps[j])
        reach.append(r)
    return reach


def _merge_siblings(groups, others, order, backend):
    """Merge independent groups with one loop domain that read a common input."""
    changed = True
    while changed:
        changed = False
        steps = _steps(groups, others)
        io = [_step_io(s) for s in steps]
        producer = {v: k for k, (_, outs) in enumerate(io) for v in outs}
        deps = [{producer[v] for v in ins if v in producer} for ins, _ in io]
        reach = _reaches(steps, deps)
        idx = {id(s): k for k, s in enumerate(steps)}
        for a_i, a in enumerate(groups):
            for b in groups[a_i + 1:]:
                ka, kb = idx[id(a)], idx[id(b)]
                if ka in reach[kb] or kb in reach[ka]:
                    continue
                if not _prefix_shapes([v.aval.shape for v in a.outs() + b.outs()]):
                    continue
                if not (io[ka][0] & io[kb][0]):
                    continue
                eqns = sorted(set(a.eqns) | set(b.eqns), key=order.__getitem__)
                outs = a.outs() + b.outs()
                why = _acceptable(eqns, outs, backend)
                if why is not None:
                    continue
                a.roots, a.eqns = a.roots + b.roots, eqns
                a.why += b.why
                groups.remove(b)
                changed = True
                break
            if changed:
                break
    return groups


def _loop_boundaries(groups, others, backend):
    """Say in each kernel's `why` that it stops at a loop it feeds or reads."""
    for s in others:
        if not backend.is_control(s):
            continue
        ins, outs = _step_io(s)
        for gr in groups:
            g_ins, g_outs = _step_io(gr)
            if g_outs & ins:
                gr.why.append(f"read by {s.prim.name}: fusion stops at loop boundaries")
            if g_ins & outs:
                gr.why.append(f"{s.prim.name} not fused in: fusion stops at loop boundaries")


def _build(cg, groups, others, order, backend):
    g = cg.graph
    steps, _, _ = _toposort(_steps(groups, others), order)
    _loop_boundaries(groups, others, backend)
    eqns, memo = [], {}
    for k, s in enumerate(steps):
        if not isinstance(s, _Group):
            # a loop's bodies: fused apart, for the same backend
            eqns.append(map_subgraphs(s, lambda sub: fuse(sub, backend), memo))
            continue
        outs = s.outs()
        sub, inputs = _subgraph(s.eqns, outs)
        name = "_".join(dict.fromkeys(e.prim.name for e in reversed(s.eqns)))[:48] + f"_{k}"
        params = {"graph": sub, "name": name}
        if s.why:
            params["why"] = "; ".join(dict.fromkeys(s.why))
        eqns.append(Eqn(kernel_p, inputs, params, outs, s.roots[-1].source))
    return ClosedGraph(Graph(g.constvars, g.invars, eqns, g.outvars), cg.consts)
