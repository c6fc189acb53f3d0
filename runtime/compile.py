"""Stage runtime: from an optimised graph to an Executable.

Input: a ClosedGraph after the pass pipeline, a device ('cpu'), and the flat
input positions the caller donated.
Output: an Executable whose stages 'fused' (kernel groups) and 'kernels'
(the generated Numba source of every kernel) can be printed.

Kernel groups go through codegen and the kernel cache; library calls
(dot_general: numpy's BLAS) and views (reshape) become plain runtime steps.
A group that touches at least PARALLEL_MIN_SIZE elements (its largest input
or output: a row max of a 4096x4096 array has 4096 results but reads 16M
values) gets the parallel (prange) variant; smaller ones the serial variant. Just two variants
per group, chosen by size, so a shape class compiles predictably.

Memory plan: each intermediate is released after its last reader (its pool
block then serves later allocations). A donated input whose last reader is
a kernel that reads it element-for-element gives that kernel's output of the
same shape and dtype its buffer.
"""
import os

import numpy as np

from ..codegen.cpu.emit import emit_kernel
from ..ir.core import Lit
from ..ir.primitives.linalg import dot_general_numpy
from ..passes.fusion import is_library, is_view, partition
from . import memory, parallel
from .executable import (Executable, call_step, inplace_plan, kernel_step, last_uses,
                         release_plan, slot_or_value, view_step)
from .host import HOST_STEPS, host_step
from .kernel_cache import load_kernel

PARALLEL_MIN_SIZE = int(os.environ.get("NEEDLE_PARALLEL_MIN_SIZE", 1 << 16))

def _dot_general_call(e):
    """A BLAS call specialised, at compile time, to one dot_general equation.
    Matrix and matrix-vector products without batch axes call np.matmul on
    (transposed) views straight into a pooled buffer: per call, no shape
    arithmetic and no copies (a transposed operand is a strided view BLAS
    reads as is). Everything else goes through dot_general_numpy."""
    a, b = e.inputs
    dn = e.params["dimension_numbers"]
    (lc, rc), (lb, rb) = dn
    out = e.outs[0].aval
    if not lb and len(lc) == 1 and a.aval.ndim in (1, 2) and b.aval.ndim in (1, 2) \
            and out.ndim >= 1:
        ta = a.aval.ndim == 2 and lc[0] == 0
        tb = b.aval.ndim == 2 and rc[0] == 1
        alloc = memory.allocator(out.shape, out.dtype)

        def call(x, y):
            r = alloc()
            np.matmul(x.T if ta else x, y.T if tb else y, out=r)
            return r
        return call
    return lambda x, y: dot_general_numpy(x, y, dn, empty=memory.empty)


# Library-call rules: primitive name -> (equation -> function of the operands).
LIBRARY_CALLS = {"dot_general": _dot_general_call}


def _domain_size(sub):
    """Elements of the largest array the group reads or writes: its work."""
    return max((int(np.prod(v.aval.shape, dtype=np.int64)) for v in sub.outvars + sub.invars),
               default=0)


def compile_executable(cg, device="cpu", name="f", donated=()):
    fused = partition(cg, device)
    g = fused.graph
    slots = {}
    for v in g.constvars + g.invars:
        slots.setdefault(v, len(slots))
    const_slots = [slots[v] for v in g.constvars]
    in_slots = [slots[v] for v in g.invars]
    donated_vars = {g.invars[k] for k in donated}
    out_vars = {v for v in g.outvars if not isinstance(v, Lit)}
    last_use, taken = last_uses(g), set()
    steps, sources = [], []
    n_kernels = n_lib = 0
    for k, e in enumerate(g.eqns):
        for v in e.outs:
            slots[v] = len(slots)
        ins = [slot_or_value(slots, x) for x in e.inputs]
        outs = [slots[v] for v in e.outs]
        if e.prim.name == "kernel":
            sub = e.params["graph"]
            par = _domain_size(sub) >= PARALLEL_MIN_SIZE
            ks = emit_kernel(sub, "kernel", parallel=par)
            ctx = f" (group {e.params['name']} of {name}, from {e.source})"
            fn = load_kernel(ks, device, context=ctx)
            if par:
                # a forked child runs the serial variant (runtime/parallel.py)
                fn = parallel.guard(fn, serial=lambda sub=sub, ctx=ctx: load_kernel(
                    emit_kernel(sub, "kernel", parallel=False), device, context=ctx))
            dims = np.array(ks.dims, dtype=np.int64)
            specs = [(v.aval.shape, v.aval.dtype) for v in e.outs]
            if any(not isinstance(i, int) for i in ins):
                raise AssertionError("kernel group inputs must be variables")
            inplace = inplace_plan(e, k, ks.aligned, slots, donated_vars, last_use, out_vars,
                                   taken)
            lits = np.array([v for v, _ in ks.lits], np.float64) if ks.lits else None
            steps.append(kernel_step(fn, ins, outs, specs, dims, inplace, lits))
            sources.append((e.params["name"], ks))
            n_kernels += 1
        elif is_library(e, device):
            steps.append(call_step(LIBRARY_CALLS[e.prim.name](e), ins, outs[0], {}))
            n_lib += 1
        elif is_view(e):
            if not isinstance(ins[0], int):
                steps.append(call_step(lambda x, new_sizes: x.reshape(new_sizes), ins, outs[0],
                                       e.params))
            else:
                steps.append(view_step(ins[0], outs[0], e.outs[0].aval.shape))
        elif e.prim.name in HOST_STEPS:             # debug_callback: Python between kernels
            steps.append(host_step(HOST_STEPS[e.prim.name](e), ins))
        else:
            raise NotImplementedError(f"the CPU runtime cannot run equation {e.prim.name}")
    plan = list(zip(steps, release_plan(g, slots)))
    # A result that is an input or constant, or a view of one (a reshape),
    # is copied: results never share memory with the caller's arrays.
    caller_owned = set(g.invars) | set(g.constvars)
    for e in g.eqns:
        if is_view(e) and e.inputs[0] in caller_owned:
            caller_owned.add(e.outs[0])
    outs = []
    for v in g.outvars:
        if isinstance(v, Lit):
            outs.append(("value", np.asarray(v.val, dtype=v.aval.dtype), False))
        else:
            outs.append(("slot", slots[v], v in caller_owned))

    def kernels_text():
        parts = []
        for gname, ks in sources:
            parts.append(f"# ---- kernel {gname} ({'parallel' if ks.parallel else 'serial'}, "
                         f"nk_{ks.key}.py) ----\n{ks.source}")
        return "\n".join(parts) if parts else "# no kernels"
    stage_texts = {"fused": str(g), "kernels": kernels_text}
    return Executable(name, [v.aval for v in g.invars], len(slots), const_slots,
                      fused.consts, in_slots, plan, outs, stage_texts, n_kernels, n_lib,
                      donated=sorted(k for k in donated if g.invars[k] in taken))
