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
import numpy as np

from ..ir.core import Lit, Var
from . import memory


class Executable:
    def __init__(self, name, in_avals, n_slots, const_slots, consts, in_slots, plan,
                 outs, stage_texts, kernel_count, library_call_count):
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

    def stage_names(self):
        return list(self._stage_texts)

    def stage_text(self, stage):
        if stage not in self._stage_texts:
            raise KeyError(f"no stage {stage!r}; stages are {self.stage_names()}")
        t = self._stage_texts[stage]
        return t() if callable(t) else t

    def __call__(self, *args):
        env = self._template.copy()
        for (slot, dt), x in zip(self._in, args):
            if type(x) is not np.ndarray or x.dtype != dt or not x.flags.c_contiguous:
                # np.asarray, not np.ascontiguousarray: the latter turns a
                # scalar (a weakly typed Python float) into shape (1,).
                x = np.asarray(x, dtype=dt, order="C")
            env[slot] = x
        for step, release in self._plan:
            step(env)
            for s in release:
                env[s] = None
        out = []
        for kind, v, copy in self._outs:
            if kind == "slot":
                out.append(env[v].copy() if copy else env[v])
            else:
                out.append(v.copy())
        return out


def kernel_step(fn, ins, outs, out_specs, dims, inplace=None):
    """Launch: allocate outputs, call the kernel with inputs, outputs, dims.
    `inplace` maps an output position to the input slot whose buffer it
    reuses (a donated argument read only element-for-element)."""
    inplace = inplace or {}
    allocs = [memory.allocator(shape, dt) for shape, dt in out_specs]
    if len(outs) == 1 and not inplace:
        (o,), (alloc,) = outs, allocs
        if len(ins) == 1:
            (i0,) = ins

            def step(env):
                r = alloc()
                fn(env[i0], r, dims)
                env[o] = r
            return step

        def step(env):
            r = alloc()
            fn(*[env[i] for i in ins], r, dims)
            env[o] = r
        return step

    def step(env):
        rs = [env[inplace[k]] if k in inplace else alloc()
              for k, alloc in enumerate(allocs)]
        fn(*[env[i] for i in ins], *rs, dims)
        for o, r in zip(outs, rs):
            env[o] = r
    return step


def call_step(fn, ins, out, params):
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
    its graph): an output takes the buffer of a donated input of its shape
    and dtype that this kernel reads last, and only at the element it stores
    (`aligned`: those input positions, from codegen). `taken` collects the
    inputs given away (each serves one output). CPU and CUDA runtimes."""
    plan = {}
    for pos in aligned:
        x = e.inputs[pos]
        if x in donated_vars and last_use.get(x) == k and x not in out_vars and x not in taken:
            for j, v in enumerate(e.outs):
                if j not in plan and v.aval.dtype == x.aval.dtype and \
                        v.aval.shape == x.aval.shape:
                    plan[j] = slots[x]
                    taken.add(x)
                    break
    return plan
