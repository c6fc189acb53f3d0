"""Stage runtime: executables: the ordered launches of one compiled function.

Input: the fused ClosedGraph (kernel groups, library calls, views) and the
loaded kernels. Output: an `Executable`, called with the flat argument leaves
and returning the flat outputs (numpy arrays on CPU).

Every Var gets a slot in a list; a step reads its input slots and fills its
output slots. Buffers come from the pool (runtime/memory.py); the memory plan
releases each intermediate right after its last reader, so its block serves
the next allocation of that size in the same call or the next one. Arrays are
C-contiguous throughout, so a reshape is a free view.
"""
import operator

import numpy as np

from ..ir.core import Lit, Var
from . import memory


class ExecutableBase:
    """What every device's executable offers (the lowering's one interface):
    called with the flat argument leaves, returns the flat results; its own
    stages print (`stage_names`, `stage_text`); `device`, `kernel_count`,
    `library_call_count`; `resource_report(cc)` (ptxas, CUDA only)."""
    device = "cpu"
    name = "f"
    kernel_count = library_call_count = 0

    def stage_names(self):
        raise NotImplementedError

    def stage_text(self, stage):
        raise NotImplementedError

    def resource_report(self, cc=None):
        raise ValueError(f"{self.name} was compiled for {self.device}: a resource report "
                         f"needs CUDA kernels (jit(f, device='cuda'))")


class Executable(ExecutableBase):
    """The CPU executable: numpy arrays in and out."""

    def __init__(self, name, in_avals, n_slots, const_slots, consts, in_slots, plan,
                 outs, stage_texts, kernel_count, library_call_count, donated=()):
        self.name = name
        self.in_avals = in_avals
        self._template = [None] * n_slots
        for s, c in zip(const_slots, consts):
            self._template[s] = c
        self._in = list(zip(in_slots, [a.dtype for a in in_avals]))
        self._plan = plan                  # [(step, slots to release after it)]
        self._outs = outs                  # ('slot', k, copy?) or ('value', array, _)
        self._stage_texts = stage_texts
        self.kernel_count = kernel_count
        self.library_call_count = library_call_count
        # Argument positions whose buffer a kernel overwrites in place.
        self._donated = tuple(donated)
        self._consts = [c for c in consts if isinstance(c, np.ndarray)]
        # call_prepared: inputs stored with one slice when their slots are
        # consecutive, results read with one itemgetter when all are slots
        ins = list(in_slots)
        self._in_span = (ins[0], ins[0] + len(ins)) if ins and \
            ins == list(range(ins[0], ins[0] + len(ins))) else None
        self._out_get = operator.itemgetter(*[v for _, v, _ in outs]) if len(outs) > 1 and \
            all(kind == "slot" and not copy for kind, _, copy in outs) else None

    def stage_names(self):
        return list(self._stage_texts)

    def stage_text(self, stage):
        if stage not in self._stage_texts:
            raise KeyError(f"no stage {stage!r}; stages are {self.stage_names()}")
        t = self._stage_texts[stage]
        return t() if callable(t) else t

    def __call__(self, *args):
        if self._donated:
            args = self._unalias_donated(args)
        env = self._template.copy()
        for (slot, dt), x in zip(self._in, args):
            if type(x) is not np.ndarray or x.dtype != dt or \
                    not (fl := x.flags).c_contiguous or not fl.writeable:
                x = prepare_input(x, dt)
            env[slot] = x
        return self._run(env)

    def call_prepared(self, args):
        """__call__ for inputs the caller has made what the kernels take
        (each a C-contiguous, writeable numpy array of its input's dtype:
        prepare_input's result, or a result of an executable): no per-input
        check. needle/api.py's cached state call passes cell values it
        wrote back itself this way."""
        if self._donated:
            args = self._unalias_donated(args)
        env = self._template.copy()
        span = self._in_span
        if span is not None:
            env[span[0]:span[1]] = args
        else:
            for (slot, _), x in zip(self._in, args):
                env[slot] = x
        return self._run(env)

    def _run(self, env):
        for step, release in self._plan:
            step(env)
            for s in release:
                env[s] = None
        if self._out_get is not None:
            return list(self._out_get(env))
        out = []
        for kind, v, copy in self._outs:
            if kind == "slot":
                out.append(env[v].copy() if copy else env[v])
            else:
                out.append(v.copy())
        return out


    def _unalias_donated(self, args):
        """A donated buffer that another argument or a constant also reads
        (the same array twice, or a view of it) is not written in place:
        this call works on a copy of it (JAX refuses to donate a buffer
        used twice). np.may_share_memory compares bounds: cheap, and never
        misses an overlap."""
        args = list(args)
        for k in self._donated:
            x = args[k]
            if not isinstance(x, np.ndarray):
                continue
            others = [a for j, a in enumerate(args) if j != k] + self._consts
            if any(isinstance(a, np.ndarray) and np.may_share_memory(x, a) for a in others):
                args[k] = x.copy()
            else:
                _warn_donation_once()
        return args


def prepare_input(x, dt):
    """An input as the kernels take it: a C-contiguous, writeable numpy
    array of dtype `dt` (x itself when it is one)."""
    if type(x) is np.ndarray and x.dtype == dt and (fl := x.flags).c_contiguous and \
            fl.writeable:
        return x
    # np.asarray, not np.ascontiguousarray: the latter turns a
    # scalar (a weakly typed Python float) into shape (1,).
    x = np.asarray(x, dtype=dt, order="C")
    if not x.flags.writeable:
        # a read-only input (np.frombuffer, a read-only memmap):
        # kernels never write it, but their compiled signatures
        # take mutable arrays; one copy per call
        x = x.copy()
    return x


_donation_warned = []


def _warn_donation_once():
    if not _donation_warned:
        _donation_warned.append(True)
        import sys
        import warnings
        level, f = 2, sys._getframe(1)
        while f is not None and f.f_globals.get("__name__", "").split(".")[0] == "needle":
            level, f = level + 1, f.f_back       # point at the user's call
        warnings.warn(
            "needle.jit(..., donate_argnums=...): on CPU a donated numpy array's buffer "
            "is reused for a result, so the array you passed now holds that result; do "
            "not read it after the call (this warning is shown once)", stacklevel=level)


def kernel_step(fn, ins, outs, out_specs, dims, inplace=None, lits=None, rows=()):
    """Launch: allocate outputs, call the kernel with inputs, outputs, dims
    (and the float literals, when the kernel has any, and `rows`: the
    (lo, hi) range of a splittable CPU kernel called in one piece). `inplace`
    maps an output position to the input slot whose buffer it reuses (a
    donated argument read only element-for-element)."""
    inplace = inplace or {}
    allocs = [memory.allocator(shape, dt) for shape, dt in out_specs]
    tail = ((dims,) if lits is None else (dims, lits)) + tuple(rows)
    if len(outs) == 1 and not inplace:
        (o,), (alloc,) = outs, allocs
        if len(ins) == 1:
            (i0,) = ins

            def step(env):
                r = alloc()
                fn(env[i0], r, *tail)
                env[o] = r
            return step

        def step(env):
            r = alloc()
            fn(*[env[i] for i in ins], r, *tail)
            env[o] = r
        return step
    if len(outs) == 1 and len(ins) > 1 and list(inplace) == [0]:
        # one result written into a given buffer (a loop body's carry or row
        # of ys: runtime/loops.py), the hot case of a loop
        (o,), src, get = outs, inplace[0], operator.itemgetter(*ins)

        def step(env):
            r = env[src]
            fn(*get(env), r, *tail)
            env[o] = r
        return step

    def step(env):
        rs = [env[inplace[k]] if k in inplace else alloc()
              for k, alloc in enumerate(allocs)]
        fn(*[env[i] for i in ins], *rs, *tail)
        for o, r in zip(outs, rs):
            env[o] = r
    return step


def call_step(fn, ins, out, params):
    if isinstance(out, list):               # several results (lu): one slot each
        def step(env):
            res = fn(*[env[i] if isinstance(i, int) else i for i in ins], **params)
            for o, r in zip(out, res):
                env[o] = r
        return step
    if not params and len(ins) == 2 and all(isinstance(i, int) for i in ins):
        i0, i1 = ins                         # a BLAS call: the common, hot case

        def step(env):
            env[out] = fn(env[i0], env[i1])
        return step

    def step(env):
        env[out] = fn(*[env[i] if isinstance(i, int) else i for i in ins], **params)
    return step


def view_step(i, out, shape):
    def step(env):
        env[out] = env[i].reshape(shape)
    return step


def last_uses(graph):
    """{Var: index of the last equation reading it}."""
    last = {}
    for k, e in enumerate(graph.eqns):
        for x in e.inputs:
            if not isinstance(x, Lit):
                last[x] = k
    return last


def release_plan(graph, slots):
    """Per equation, the slots to drop after it runs: each intermediate (and
    input) after its last reader, unread results at once; outputs and
    constants stay. A dropped buffer returns to its pool mid-call."""
    out_vars = {v for v in graph.outvars if not isinstance(v, Lit)}
    consts = set(graph.constvars)
    release = [[] for _ in graph.eqns]
    last = last_uses(graph)
    for v, k in last.items():
        if v not in out_vars and v not in consts:
            release[k].append(slots[v])
    for k, e in enumerate(graph.eqns):
        for v in e.outs:
            if v not in last and v not in out_vars:
                release[k].append(slots[v])
    return release


def slot_or_value(slots, x):
    """An input reference: the Var's slot, or a Lit's value as a 0-d array."""
    if isinstance(x, Lit):
        return np.asarray(x.val, dtype=x.aval.dtype)
    assert isinstance(x, Var)
    return slots[x]


def inplace_plan(e, k, aligned, slots, donated_vars, last_use, out_vars, taken):
    """{output position: input slot} of kernel equation `e` (number `k` of
    its graph): an output takes the buffer of a donated input that codegen
    paired with it (`aligned`: (input, output) positions where the input is
    read only at the element that output stores, and by no other output),
    when this kernel is the input's last reader and it is not a result.
    `taken` collects the inputs given away. CPU and CUDA runtimes."""
    plan = {}
    for pos, j in aligned:
        x = e.inputs[pos]
        if x in donated_vars and last_use.get(x) == k and x not in out_vars and \
                x not in taken and j not in plan:
            plan[j] = slots[x]
            taken.add(x)
    return plan
