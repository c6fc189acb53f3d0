"""Stage runtime: the one compile loop: a fused graph becomes an Executable,
for any device.

Input: a ClosedGraph after the fusion pass, the codegen Backend it was fused
for (it emits kernel groups, gives library calls, views and tuning), a
runtime Device (runtime/cpu_device.py: CPU; runtime/cuda_runtime.py: CUDA:
`load`, `kernel_step`, `library_step`, `view_step`, `loop_ops`, and what the
Executable asks of it), the function's name and the flat input positions the
caller donated.
Output: the Executable (runtime/executable.py: one class on every device).

Every Var gets a slot in a list; each equation becomes a step: a kernel
group is emitted by the backend, loaded through the kernel cache by the
device and launched on pooled buffers; a library call runs the backend's
host function (BLAS on CPU); a view reshapes for free; a host step (an
effect: debug_callback; pure_callback, with results) runs Python between
kernels; a control equation (scan, while, cond) runs the plans of its
bodies, each compiled by this same loop for the same backend and device
(runtime/loops.py, with the device's `loop_ops`); their kernels count among
the program's. The memory plan (each
intermediate released after its last reader) and the in-place plan for
donated inputs are the same on every device; the device supplies only its
steps (each `step(env)`) and its part of the Executable (copying inputs in
and results out, donation, constants, its stages: the small device
interface).

`plan_program` is the loop itself (the plan as a dict); with `dests` it
gives every result position a destination slot that the kernel (or the
library call that `writes_into` a buffer) computing that result writes into
(a loop body writing its carry or its row of the stacked ys straight into
place; `direct` lists those positions; `prefer_last`: a value at several
positions goes to the last, a scan's ys rather than its carry), and every
other value computed a `scratch` slot, filled once per run of the loop, so
a body allocates nothing per step. A control equation may instead run as
one generated loop when the device offers one (`generated_loop`: CPU).

Before the loop, a device with `precompile` (CPU) compiles the program's
kernels that the disk cache lacks, several at once in worker processes
(runtime/compile_workers.py); the loop then loads them from the cache.
"""
import numpy as np

from ..ir.core import Lit, Var
from .executable import Executable
from .host import HOST_STEPS, host_step
from .kernel_cache import fewer_full_collections
from .loops import control_step


def compile_program(fused, backend, device, name="f", donated=()):
    precompile = getattr(device, "precompile", None)
    with fewer_full_collections():      # Numba allocates much: kernel_cache.py
        if precompile is None:
            p = plan_program(fused, backend, device, name, donated)
        else:                           # CPU: missing kernels compile in worker processes
            try:
                precompile(fused, backend, name)
                p = plan_program(fused, backend, device, name, donated)
            finally:
                device.done_compiling()
    del p["dest_slots"], p["direct"], p["scratch"]
    return Executable(device, **p)


def plan_program(fused, backend, device, name="f", donated=(), dests=False, prefer_last=False):
    g = fused.graph
    n_dest = len(g.outvars) if dests else 0       # slots 0..n_dest-1: destinations
    slots = {}
    for v in g.constvars + g.invars:
        slots.setdefault(v, n_dest + len(slots))

    count = [n_dest + len(slots)]           # the next free slot

    def new_slot(v):
        slots[v] = count[0]
        count[0] += 1
        return slots[v]

    # A loop body (dests): a value no result holds gets a scratch slot, which
    # the loop fills with a buffer once per run (loops.Body.env); its kernel
    # or library call writes there at every step, allocating nothing.
    scratch = []

    def scratch_slot(aval):
        scratch.append((count[0], aval))
        count[0] += 1
        return scratch[-1][0]

    first_pos, direct = {}, set()
    for j, v in enumerate(g.outvars[:n_dest]):
        if not isinstance(v, Lit) and (prefer_last or v not in first_pos):
            first_pos[v] = j            # the position a kernel writes into
    donated_vars = {g.invars[k] for k in donated}
    out_vars = {v for v in g.outvars if not isinstance(v, Lit)}
    last_use, taken = last_uses(g), set()
    steps, kernels, launchers, n_lib = [], [], [], 0
    for k, e in enumerate(g.eqns):
        outs = [new_slot(v) for v in e.outs]
        if e.prim.name == "kernel":
            if any(isinstance(x, Lit) for x in e.inputs):
                raise AssertionError("kernel group inputs must be variables")
            ins = [slots[x] for x in e.inputs]
            ctx = f" (group {e.params['name']} of {name}, from {e.source})"
            ks, launcher = device.load(e.params["graph"], backend, ctx)
            launchers.append(launcher)
            inplace = inplace_plan(e, k, ks.aligned, slots, donated_vars, last_use, out_vars,
                                   taken)
            for i, v in enumerate(e.outs):          # a result straight into its destination
                j = first_pos.get(v)
                if j is not None and j not in direct and i not in inplace:
                    inplace[i] = j
                    direct.add(j)
                elif dests and i not in inplace:
                    inplace[i] = scratch_slot(v.aval)
            steps.append(device.kernel_step(ks, launcher, ins, outs,
                                            [v.aval for v in e.outs], inplace))
            kernels.append((e.params["name"], ks))
        elif backend.is_library(e):
            ins = [slot_or_value(slots, x) for x in e.inputs]
            services = getattr(device, "library_kernels", None)
            fn = backend.library_call(e, device.allocator, services and services(
                backend, f" (library call {e.prim.name} of {name}, from {e.source})"))
            into = {}
            if dests and not e.prim.multiple_results and getattr(fn, "writes_into", False):
                j = first_pos.get(e.outs[0])        # fn(*operands, out): into place
                if j is not None and j not in direct:
                    into["into"] = j
                    direct.add(j)
                else:
                    into["into"] = scratch_slot(e.outs[0].aval)
            steps.append(device.library_step(fn, ins, outs if e.prim.multiple_results
                                             else outs[0], **into))
            n_lib += 1
        elif backend.is_view(e):
            x = e.inputs[0]
            steps.append(device.view_step(x if isinstance(x, Lit) else slots[x], outs[0],
                                          e.outs[0].aval))
        elif backend.is_host(e) and e.prim.name in HOST_STEPS:
            ins = [np.asarray(x.val, x.aval.dtype) if isinstance(x, Lit) else slots[x]
                   for x in e.inputs]
            steps.append(host_step(HOST_STEPS[e.prim.name](e), ins, outs,   # same on every device
                                   getattr(device, "from_host", None)))
        elif backend.is_control(e):
            def compile_body(sub, part, dests, prim=e.prim.name):
                # a scan's result in a carry and a ys is written into the ys
                # (the loop reads the carry back from there: loops._scan)
                p = plan_program(sub, backend, device, f"{name}/{prim}.{part}", dests=dests,
                                 prefer_last=prim == "scan")
                p["part"] = f"{prim}.{part}"
                return p
            def generate(prim=e.prim.name, e=e):
                gen = getattr(device, "generated_loop", None)
                return gen and gen(e, backend, f" ({prim} of {name}, from {e.source})")
            ins = [slot_or_value(slots, x) for x in e.inputs]
            step, bodies = control_step(e, ins, outs, compile_body, device.loop_ops, generate)
            steps.append(step)
            for b in bodies:                # the bodies' kernels are this program's too
                kernels += [(f"{b['part']}/{gname}", ks) for gname, ks in b["kernels"]]
                launchers += b["launchers"]
                n_lib += b["library_call_count"]
        else:
            raise NotImplementedError(f"the {device.name} runtime cannot run equation "
                                      f"{e.prim.name}")
    plan = list(zip(steps, release_plan(g, slots)))
    # A result that is an input or constant, or a view of one (a reshape),
    # is copied: results never share memory with the caller's arrays.
    caller_owned = set(g.invars) | set(g.constvars)
    for e in g.eqns:
        if backend.is_view(e) and e.inputs[0] in caller_owned:
            caller_owned.add(e.outs[0])
    results = [("value", np.asarray(v.val, dtype=v.aval.dtype), False) if isinstance(v, Lit)
               else ("slot", slots[v], v in caller_owned) for v in g.outvars]
    return dict(
        name=name, fused=fused, n_slots=count[0], scratch=scratch,
        const_slots=[slots[v] for v in g.constvars], in_slots=[slots[v] for v in g.invars],
        plan=plan, outs=results, kernels=kernels, launchers=launchers,
        library_call_count=n_lib,
        donated=tuple(donated), donated_in_place=tuple(
            sorted(k for k in donated if g.invars[k] in taken)),
        dest_slots=list(range(n_dest)), direct=direct)


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
    `taken` collects the inputs given away. Every device."""
    plan = {}
    for pos, j in aligned:
        x = e.inputs[pos]
        if x in donated_vars and last_use.get(x) == k and x not in out_vars and \
                x not in taken and j not in plan:
            plan[j] = slots[x]
            taken.add(x)
    return plan
