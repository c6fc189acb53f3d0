"""Stage runtime (CPU): the CPU device of the compile loop (runtime/program.py):
how a kernel is loaded and launched, a library call, a view and a host step
run, and the Executable that runs them.

Input: KernelSources from the CPU Backend (codegen/cpu), host functions of
library calls, slots. Output: steps `step(env)`, the loop operations of the
control steps (loops.CPU_OPS) and an Executable.

Each group compiles to one kernel, serial and `nogil`, whatever its size.
A kernel whose rows are independent (its KernelSource's `split`) and whose
group touches enough elements (its largest input or output: a row max of a
4096x4096 array has 4096 results but reads 16M values; at least
backend.parallel_min_size per chunk, backend.split_count) runs its rows in
chunks on the runtime's threads (runtime/parallel.py); otherwise it is
called once over all its rows. Buffers come from the pool
(runtime/memory.py).

A scan or while_loop whose bodies are kernels and views only (no library
call, no host step, no kernel split across threads) runs as one generated
Numba function (`generated_loop`: codegen/cpu/loop_emit.py through
backend.emit_loop, loaded through the kernel cache like a kernel); the
`kernels` stage prints it as a "generated loop" and its groups as kernels
inside it (they count in kernel_count, the loop's driver does not).
"""
import numpy as np

from ..ir.core import ClosedGraph, Lit
from . import compile_workers, memory, parallel
from .executable import Executable, call_step, kernel_step, view_step
from .kernel_cache import load_kernel
from .loops import CPU_OPS


def _domain_size(sub):
    """Elements of the largest array the group reads or writes: its work."""
    return max((int(np.prod(v.aval.shape, dtype=np.int64)) for v in sub.outvars + sub.invars),
               default=0)


def kernels_text(kernels):
    parts = []
    for gname, ks in kernels:
        if getattr(ks, "loop_driver", False):
            parts.append(f"# ---- generated loop {gname} ({ks.kind}: every step in one Numba "
                         f"function, nk_{ks.key}.py) ----\n{ks.source}")
        elif getattr(ks, "in_loop", False):
            where = f"as {ks.fname}" if ks.fname else "inlined"
            parts.append(f"# ---- kernel {gname} (serial, in the generated loop "
                         f"nk_{ks.key}.py, {where}) ----")
        else:
            n = getattr(ks, "chunks", 1)
            how = f"parallel, rows in {n} chunks on threads" if n > 1 else "serial"
            parts.append(f"# ---- kernel {gname} ({how}, nk_{ks.key}.py) ----\n{ks.source}")
    return "\n".join(parts) if parts else "# no kernels"


def kernel_count(kernels):
    """Kernel groups (a generated loop's driver is not one; its groups are)."""
    return sum(not getattr(ks, "loop_driver", False) for _, ks in kernels)


class CpuDevice:
    name = "cpu"
    allocator = staticmethod(memory.allocator)
    loop_ops = CPU_OPS                  # the control steps' operations (runtime/loops.py)
    # scan / while bodies of kernels and views only run as one generated
    # Numba loop (codegen/cpu/loop_emit.py); False: the Python loop always
    generate_loops = True
    _emitted = {}       # id(group graph) -> (graph, its KernelSource), from precompile

    @classmethod
    def generated_loop(cls, e, backend, context):
        """(LoopSource, its loaded driver) of control equation `e`, or None
        when the runtime's Python loop runs it."""
        emit = getattr(backend, "emit_loop", None)
        if not cls.generate_loops or emit is None:
            return None
        ls = emit(e)
        if ls is None:
            return None
        return ls, load_kernel(ls, "cpu", context=context)

    @classmethod
    def precompile(cls, fused, backend, name):
        """Before the compile loop: the program's kernels that the disk cache
        lacks, compiled in worker processes (runtime/compile_workers.py),
        found by emitting each group (and each generated loop, and the groups
        of loop bodies) as the compile loop will, with the same context."""
        if compile_workers.worker_count() <= 1:
            return
        jobs = []
        cls._jobs(fused.graph, backend, name, jobs)
        compile_workers.precompile(jobs)

    @classmethod
    def done_compiling(cls):
        """After the compile loop: forget the sources `precompile` emitted."""
        cls._emitted.clear()

    @classmethod
    def _jobs(cls, g, backend, name, jobs):
        for e in g.eqns:
            if e.prim.name == "kernel":
                ctx = f" (group {e.params['name']} of {name}, from {e.source})"
                sub = e.params["graph"]
                ks = backend.emit(sub, "kernel")
                cls._emitted[id(sub)] = (sub, ks)   # load takes it: no second emit
                jobs.append((ks, ctx))
            elif backend.is_control(e):
                prim = e.prim.name
                emit = getattr(backend, "emit_loop", None)
                if cls.generate_loops and emit is not None and prim in ("scan", "while"):
                    ls = emit(e)
                    if ls is not None:
                        jobs.append((ls, f" ({prim} of {name}, from {e.source})"))
                        continue
                for part, sub in e.params.items():
                    subs = sub if isinstance(sub, (list, tuple)) else [sub]
                    for k, s in enumerate(subs):
                        if isinstance(s, ClosedGraph):
                            p = part if len(subs) == 1 and sub is s else f"branch{k}"
                            cls._jobs(s.graph, backend, f"{name}/{prim}.{p}", jobs)

    @staticmethod
    def load(sub, backend, context):
        """(KernelSource, launcher) of group `sub`: the launcher takes the
        kernel's arguments less `lo, hi` when its rows run in chunks on
        threads (`ks.chunks` > 1: parallel.splitter), else it is the kernel
        itself (kernel_step passes 0, extent)."""
        pre = CpuDevice._emitted.pop(id(sub), None)
        ks = pre[1] if pre is not None and pre[0] is sub else backend.emit(sub, "kernel")
        fn = load_kernel(ks, "cpu", context=context)
        # set on this program's own KernelSource (emit makes a new one per call)
        ks.chunks = backend.split_count(ks, _domain_size(sub))
        if ks.chunks > 1:
            fn = parallel.splitter(fn, ks.dims[ks.split], ks.chunks)
        return ks, fn

    @staticmethod
    def kernel_step(ks, fn, ins, outs, avals, inplace):
        dims = np.array(ks.dims, dtype=np.int64)
        lits = np.array([v for v, _ in ks.lits], np.float64) if ks.lits else None
        rows = (0, ks.dims[ks.split]) if ks.split is not None and ks.chunks == 1 else ()
        return kernel_step(fn, ins, outs, [(a.shape, a.dtype) for a in avals], dims, inplace,
                           lits, rows)

    @staticmethod
    def library_step(fn, ins, out, into=None):
        """A library call; with `into` (a slot: a loop body's destination or
        scratch buffer) the call writes its result there (fn(*operands,
        buffer): runtime/program.py asks only a call that `writes_into`)."""
        if into is None:
            return call_step(fn, ins, out, {})
        if len(ins) == 2 and all(isinstance(i, int) for i in ins):
            i0, i1 = ins                    # a BLAS call: the hot case of a loop

            def step(env):
                env[out] = fn(env[i0], env[i1], env[into])
            return step

        def step_any(env):
            env[out] = fn(*[env[i] if isinstance(i, int) else i for i in ins], env[into])
        return step_any

    @staticmethod
    def view_step(src, out, aval):
        if isinstance(src, Lit):        # a reshape of a scalar: a fresh array per call
            shape, dt, val = aval.shape, aval.dtype, src.val

            def step(env):
                env[out] = np.full(shape, val, dt)
            return step
        return view_step(src, out, aval.shape)

    @staticmethod
    def executable(name, fused, n_slots, const_slots, in_slots, plan, outs, kernels, launchers,
                   library_call_count, donated, donated_in_place):
        g = fused.graph
        stage_texts = {"fused": str(g), "kernels": lambda: kernels_text(kernels)}
        return Executable(name, [v.aval for v in g.invars], n_slots, const_slots, fused.consts,
                          in_slots, plan, outs, stage_texts, kernel_count(kernels),
                          library_call_count, donated=donated_in_place)


DEVICE = CpuDevice()
