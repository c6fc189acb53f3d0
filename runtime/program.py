"""Stage runtime: the one compile loop: a fused graph becomes an Executable,
for any device.

Input: a ClosedGraph after the fusion pass, the codegen Backend it was fused
for (it emits kernel groups, gives library calls, views and tuning), a
runtime Device (runtime/cpu_device.py: CPU; runtime/cuda_runtime.py: CUDA:
`load`, `kernel_step`, `library_step`, `view_step`, `executable`),
the function's name and the flat input positions the caller donated.
Output: the device's Executable (runtime/executable.py: one interface).

Every Var gets a slot in a list; each equation becomes a step: a kernel
group is emitted by the backend, loaded through the kernel cache by the
device and launched on pooled buffers; a library call runs the backend's
host function (BLAS on CPU); a view reshapes for free; a host step (an
effect: debug_callback) runs Python between kernels. The memory plan (each
intermediate released after its last reader) and the in-place plan for
donated inputs are the same on every device; the device supplies only its
steps and its Executable (the small device interface).
"""
import numpy as np

from ..ir.core import Lit
from .executable import inplace_plan, last_uses, release_plan, slot_or_value
from .host import HOST_STEPS, host_step


def compile_program(fused, backend, device, name="f", donated=()):
    g = fused.graph
    slots = {}
    for v in g.constvars + g.invars:
        slots.setdefault(v, len(slots))
    donated_vars = {g.invars[k] for k in donated}
    out_vars = {v for v in g.outvars if not isinstance(v, Lit)}
    last_use, taken = last_uses(g), set()
    steps, kernels, launchers, n_lib = [], [], [], 0
    for k, e in enumerate(g.eqns):
        for v in e.outs:
            slots[v] = len(slots)
        outs = [slots[v] for v in e.outs]
        if e.prim.name == "kernel":
            if any(isinstance(x, Lit) for x in e.inputs):
                raise AssertionError("kernel group inputs must be variables")
            ins = [slots[x] for x in e.inputs]
            ctx = f" (group {e.params['name']} of {name}, from {e.source})"
            ks, launcher = device.load(e.params["graph"], backend, ctx)
            launchers.append(launcher)
            inplace = inplace_plan(e, k, ks.aligned, slots, donated_vars, last_use, out_vars,
                                   taken)
            steps.append(device.kernel_step(ks, launcher, ins, outs,
                                            [v.aval for v in e.outs], inplace))
            kernels.append((e.params["name"], ks))
        elif backend.is_library(e):
            ins = [slot_or_value(slots, x) for x in e.inputs]
            steps.append(device.library_step(backend.library_call(e, device.allocator),
                                             ins, outs[0]))
            n_lib += 1
        elif backend.is_view(e):
            x = e.inputs[0]
            steps.append(device.view_step(x if isinstance(x, Lit) else slots[x], outs[0],
                                          e.outs[0].aval))
        elif backend.is_host(e) and e.prim.name in HOST_STEPS:
            ins = [np.asarray(x.val, x.aval.dtype) if isinstance(x, Lit) else slots[x]
                   for x in e.inputs]
            steps.append(host_step(HOST_STEPS[e.prim.name](e), ins))    # same on every device
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
    return device.executable(
        name=name, fused=fused, n_slots=len(slots),
        const_slots=[slots[v] for v in g.constvars], in_slots=[slots[v] for v in g.invars],
        plan=plan, outs=results, kernels=kernels, launchers=launchers,
        library_call_count=n_lib,
        donated=tuple(donated), donated_in_place=tuple(
            sorted(k for k in donated if g.invars[k] in taken)))

