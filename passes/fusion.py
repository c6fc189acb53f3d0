"""Stage passes: fusion: partition a graph into kernel groups for a backend.

Input: a ClosedGraph (after simplification) and a backend name ('cpu').
Output: a ClosedGraph whose equations are `kernel` groups (each holding the
sub-Graph that codegen turns into one kernel), library calls (dot_general:
BLAS on CPU) and views (a reshape between groups costs nothing).

Policy, consumers first (reverse topological order):
1. producer into consumer: an equation whose result only one group reads
   moves into that group (its result is never written to memory);
2. duplication: a cheap equation (elementwise arithmetic, broadcasts,
   index remaps) read by several groups is copied into each, instead of
   writing and re-reading its result; a transcendental one into at most two;
3. siblings: groups with the same loop domain that read a common input and
   do not depend on each other merge into one multi-output kernel, and a
   group whose results only one other group reads then moves into it.
Every tentative group is emitted (codegen is pure Python and fast) and
rejected if it would recompute expensive work: a reduction more than once
per output element, or a transcendental / gather more than twice
(`codegen.cpu.emit.recompute_factors`). On CUDA (backend "cuda") a group
holding a dot_general is judged instead by the tiled-matmul rule
(`codegen.cuda.kernels.matmul_group_problem`): the matmul absorbs an
elementwise epilogue (bias, activation, residual) that reads its result at
the same index, and nothing else; on CPU dot_general is a BLAS call and its
epilogue a kernel after it. Also on CUDA, a full reduction (to a scalar,
two-stage) never reads another full reduction of its kernel. Where two
neighbours were not fused,
the group's `why` param says why, and the fused-stage dump prints it.
An effectful equation (debug_callback) is never fused: it stays a host step
between kernels (its operands are stored), and effects keep their program
order among themselves.
"""
from ..codegen.cpu.emit import recompute_factors
from ..ir.core import ClosedGraph, Eqn, Graph, Var
from ..ir.primitives import kernel_p

# Library calls per backend; on CUDA, dot_general is a kernel (with its epilogue).
LIBRARY = {"cpu": {"dot_general"}, "cuda": set()}
VIEWS = {"reshape"}
# Roots with a loop structure of their own: they can absorb producers but
# cannot be inlined into consumers.
ROOT_ONLY = {"cumsum", "scatter", "scatter_add", "scatter_mul", "scatter_min", "scatter_max"}
EXPENSIVE = {"exp", "log", "log1p", "expm1", "sin", "cos", "tan", "tanh", "logistic", "erf",
             "pow", "atan2", "sqrt", "rsqrt", "gather"}
MAX_REDUCTION_RECOMPUTE = 1.0
MAX_EXPENSIVE_RECOMPUTE = 2.0
MAX_GROUP_EQNS = 64


def is_library(eqn, backend="cpu"):
    return eqn.prim.name in LIBRARY.get(backend, ())


def is_view(eqn):
    return eqn.prim.name in VIEWS


def is_host(eqn):
    """A step the runtime runs on the host between kernels (debug_callback)."""
    return eqn.prim.effectful


def _cheap(e):
    return e.prim.kind in ("elementwise", "structural") and e.prim.name not in EXPENSIVE


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


def _cuda_matmul_problem(eqns, outs):
    """On CUDA a matmul kernel absorbs its elementwise epilogue (bias,
    activation, residual: codegen/cuda/kernels.py), which the CPU emitter,
    the judge of other groups, cannot emit: a group holding a dot_general is
    judged by the tiled-matmul rule instead. A dot_general that cannot be
    tiled stays alone (one thread per output element)."""
    from ..codegen.cuda.kernels import matmul_group_problem
    if len(eqns) == 1:
        return None
    return matmul_group_problem(eqns, outs)


def _cuda_chained_full_reductions(eqns):
    """On CUDA a full reduction (0-d result) runs in two stages: every block
    of the first stage reduces a share into a partial, one block combines
    the partials (codegen/cuda/kernels.py). A full reduction whose operand
    reads another full reduction's result in the same kernel would need that
    result in every block of the first stage, before it exists (a grid-wide
    barrier): such a pair goes to two kernels."""
    after_full = set()                  # values that depend on a full reduction
    for e in eqns:
        reads_full = any(isinstance(x, Var) and x in after_full for x in e.inputs)
        full = e.prim.kind == "reduction" and all(v.aval.ndim == 0 for v in e.outs)
        if full and reads_full:
            return (f"{e.prim.name} to a scalar would read another full reduction's "
                    f"result in the same CUDA kernel (a grid-wide barrier)")
        if full or reads_full:
            after_full.update(e.outs)
    return None


def _acceptable(eqns, outs, backend="cpu"):
    """Why a candidate group is bad, or None if it is fine."""
    if backend == "cuda" and any(e.prim.name == "dot_general" for e in eqns):
        if len(eqns) > MAX_GROUP_EQNS:
            return f"the group would exceed {MAX_GROUP_EQNS} equations"
        return _cuda_matmul_problem(eqns, outs)
    if backend == "cuda":
        why = _cuda_chained_full_reductions(eqns)
        if why:
            return why
    if len(eqns) > MAX_GROUP_EQNS:
        return f"the group would exceed {MAX_GROUP_EQNS} equations"
    if not _prefix_shapes([v.aval.shape for v in outs]):
        return "their results' shapes are not prefixes of one loop domain"
    roots = [e for e in eqns if e.prim.name in ROOT_ONLY]
    if roots and (len(outs) != 1 or outs[0] not in roots[0].outs or len(roots) > 1):
        return f"{roots[0].prim.name} must be its kernel's only result"
    sub, _ = _subgraph(eqns, outs)
    try:
        factors = recompute_factors(sub)
    except NotImplementedError as e:
        return str(e)
    prims = {v: e.prim for e in sub.eqns for v in e.outs}
    for v, f in factors.items():
        p = prims[v]
        if p.kind == "reduction" and f > MAX_REDUCTION_RECOMPUTE + 1e-9:
            return f"{p.name} would be recomputed {f:g}x"
        if p.name in EXPENSIVE and f > MAX_EXPENSIVE_RECOMPUTE + 1e-9:
            return f"{p.name} would be recomputed {f:g}x"
    return None


def partition(cg, backend="cpu"):
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

    for e in reversed(g.eqns):
        if is_library(e, backend) or is_host(e):
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
        if e.prim.name not in ROOT_ONLY and cgroups:
            if len(cgroups) == 1 and not stored:
                placed = try_add(cgroups[0], e)
            elif _cheap(e) or (e.prim.kind == "elementwise" and len(cgroups) <= 2):
                # Recomputing even a transcendental in a second kernel costs less
                # than storing it and loading it back (memory bound).
                placed = all([try_add(gr, e) for gr in cgroups]) and not stored
        if placed:
            continue
        if is_view(e):
            views.add(e)                # stays a free view of its input
            continue
        gr = _Group(e)
        groups.append(gr)
        groups_of.setdefault(e, []).append(gr)
    groups.reverse()
    others = [e for e in g.eqns if is_library(e, backend) or e in views or is_host(e)]
    while True:
        groups = _merge_siblings(groups, others, order, backend)
        if not _absorb_into_sole_consumer(groups, others, order, graph_outs, backend):
            break
    return _build(cg, groups, others, order)


def _absorb_into_sole_consumer(groups, others, order, graph_outs, backend="cpu"):
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
                      and is_host(s)), key=key.__getitem__)
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


def _merge_siblings(groups, others, order, backend="cpu"):
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


def _build(cg, groups, others, order):
    g = cg.graph
    steps, _, _ = _toposort(_steps(groups, others), order)
    eqns = []
    for k, s in enumerate(steps):
        if not isinstance(s, _Group):
            eqns.append(s)
            continue
        outs = s.outs()
        sub, inputs = _subgraph(s.eqns, outs)
        name = "_".join(dict.fromkeys(e.prim.name for e in reversed(s.eqns)))[:48] + f"_{k}"
        params = {"graph": sub, "name": name}
        if s.why:
            params["why"] = "; ".join(dict.fromkeys(s.why))
        eqns.append(Eqn(kernel_p, inputs, params, outs, s.roots[-1].source))
    return ClosedGraph(Graph(g.constvars, g.invars, eqns, g.outvars), cg.consts)
