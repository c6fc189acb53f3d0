"""Stage runtime: from an optimised graph to an Executable.

Input: a ClosedGraph after the pass pipeline, and a device ('cpu').
Output: an Executable whose stages 'fused' (kernel groups) and 'kernels'
(the generated Numba source of every kernel) can be printed.

Kernel groups go through codegen and the kernel cache; library calls
(dot_general: numpy's BLAS) and views (reshape) become plain runtime steps.
A group whose loop domain has at least PARALLEL_MIN_SIZE elements gets the
parallel (prange) variant; smaller ones the serial variant. Just two variants
per group, chosen by size, so a shape class compiles predictably.
"""
import os

import numpy as np

from ..codegen.cpu.emit import emit_kernel
from ..ir.core import Lit
from ..ir.primitives.linalg import dot_general_numpy
from ..passes.fusion import is_library, is_view, partition
from . import parallel
from .executable import Executable, call_step, kernel_step, slot_or_value, view_step
from .kernel_cache import load_kernel

PARALLEL_MIN_SIZE = int(os.environ.get("NEEDLE_PARALLEL_MIN_SIZE", 1 << 16))

LIBRARY_CALLS = {"dot_general": lambda a, b, dimension_numbers: dot_general_numpy(
    a, b, dimension_numbers)}


def _domain_size(sub):
    return max((int(np.prod(v.aval.shape, dtype=np.int64)) for v in sub.outvars), default=0)


def compile_executable(cg, device="cpu", name="f"):
    fused = partition(cg, device)
    g = fused.graph
    slots = {}
    for v in g.constvars + g.invars:
        slots.setdefault(v, len(slots))
    const_slots = [slots[v] for v in g.constvars]
    in_slots = [slots[v] for v in g.invars]
    steps, sources = [], []
    n_kernels = n_lib = 0
    for e in g.eqns:
        for v in e.outs:
            slots[v] = len(slots)
        ins = [slot_or_value(slots, x) for x in e.inputs]
        outs = [slots[v] for v in e.outs]
        if e.prim.name == "kernel":
            sub = e.params["graph"]
            par = _domain_size(sub) >= PARALLEL_MIN_SIZE
            ks = emit_kernel(sub, "kernel", parallel=par)
            fn = load_kernel(ks, device, context=f" (group {e.params['name']} of {name}, "
                                                 f"from {e.source})")
            if par:
                fn = parallel.guard(fn)
            dims = np.array(ks.dims, dtype=np.int64)
            specs = [(v.aval.shape, v.aval.dtype) for v in e.outs]
            if any(not isinstance(i, int) for i in ins):
                raise AssertionError("kernel group inputs must be variables")
            steps.append(kernel_step(fn, ins, outs, specs, dims))
            sources.append((e.params["name"], ks))
            n_kernels += 1
        elif is_library(e, device):
            steps.append(call_step(LIBRARY_CALLS[e.prim.name], ins, outs[0], e.params))
            n_lib += 1
        elif is_view(e):
            if not isinstance(ins[0], int):
                steps.append(call_step(lambda x, new_sizes: x.reshape(new_sizes), ins, outs[0],
                                       e.params))
            else:
                steps.append(view_step(ins[0], outs[0], e.outs[0].aval.shape))
        else:
            raise NotImplementedError(f"the CPU runtime cannot run equation {e.prim.name}")
    inputs = set(g.invars) | set(g.constvars)
    outs = []
    for v in g.outvars:
        if isinstance(v, Lit):
            outs.append(("value", np.asarray(v.val, dtype=v.aval.dtype), False))
        else:
            outs.append(("slot", slots[v], v in inputs))

    def kernels_text():
        parts = []
        for gname, ks in sources:
            parts.append(f"# ---- kernel {gname} ({'parallel' if ks.parallel else 'serial'}, "
                         f"nk_{ks.key}.py) ----\n{ks.source}")
        return "\n".join(parts) if parts else "# no kernels"
    stage_texts = {"fused": str(g), "kernels": kernels_text}
    return Executable(name, [v.aval for v in g.invars], len(slots), const_slots,
                      fused.consts, in_slots, steps, outs, stage_texts, n_kernels, n_lib)


