"""Stage codegen: a Backend: everything the lowering needs to know about one
device, as one value.

Input: nothing (each backend package exports one: codegen.cpu.BACKEND,
codegen.cuda.BACKEND). Output: the backend's answers to the fusion pass and
the runtime: which equations are library calls, views, host steps or
control steps (loops and branches, each its own step: fusion stops at
their boundaries and fuses their bodies apart); whether
a candidate kernel group is acceptable (the cost model, `judge`); the kernel
source of a group (`emit`, which may render what `judge` emitted:
`same_group`); the host function of a library call
(`library_call`); its tuning (`parallel_min_size`).

The fusion pass (passes/fusion.py) receives a Backend as a value and the
runtime compiles with it, so neither imports a code generator: passes never
import codegen, and a new device is a new Backend, not edits across stages.
The CUDA backend extends the CPU one and overrides what differs.
"""


class Backend:
    name = "abstract"
    # Primitives the runtime runs as library routines (BLAS on CPU): name ->
    # rule (equation, allocator) -> host function of the operands.
    library = {}
    # Primitives that are free views of their input between kernels.
    views = frozenset({"reshape"})
    # The cost model's limits (fusion refuses a group beyond them).
    max_group_eqns = 64
    max_reduction_recompute = 1.0
    max_expensive_recompute = 2.0
    # Elements from which a kernel gets its parallel variant (CPU prange).
    parallel_min_size = 1 << 62

    def is_library(self, eqn):
        return eqn.prim.name in self.library

    def is_library_prim(self, prim):
        return prim.name in self.library

    def is_view(self, eqn):
        return eqn.prim.name in self.views

    @staticmethod
    def is_host(eqn):
        """A step the runtime runs on the host between kernels (kind 'host':
        the effect debug_callback; pure_callback)."""
        return eqn.prim.kind == "host"

    @staticmethod
    def is_control(eqn):
        """A loop or branch (scan, while, cond): never inside a kernel; the
        runtime runs the compiled plans of its bodies (runtime/loops.py)."""
        return eqn.prim.kind == "control"

    def lowering_settings(self):
        """A hashable value of whatever else (besides its plain attributes)
        decides this backend's fusion and code: part of the plan cache's
        key (needle/lowering.py)."""
        return ()

    def judge(self, sub):
        """Why the kernel group with sub-Graph `sub` is not acceptable, or
        None if it is."""
        raise NotImplementedError

    def emit(self, sub, name="kernel", parallel=False):
        """The KernelSource of a group's sub-Graph."""
        raise NotImplementedError

    def same_group(self, judged, sub):
        """Fusion built group `sub` equal to the accepted candidate `judged`
        up to the names of its Vars (and source lines): whatever judging
        `judged` left for emitting it serves `sub` (CPU: codegen/emissions.py).
        Nothing here."""

    def library_call(self, eqn, allocator, kernels=None):
        """The host function computing library equation `eqn`; `allocator`
        ((shape, dtype) -> function returning a fresh array) is the runtime's
        pooled allocation, passed down. A routine that is itself a generated
        kernel (the CPU convolutions: `needs_kernels`) also gets `kernels`,
        the runtime's kernel services: `load(KernelSource)` -> the compiled
        kernel (the kernel cache), `split(kernel, extent, work)` -> a
        callable running its rows 0..extent (the kernel takes lo, hi last)
        in chunks on threads."""
        make = self.library[eqn.prim.name]
        if getattr(make, "needs_kernels", False):
            return make(eqn, allocator, kernels)
        return make(eqn, allocator)

    def __repr__(self):
        return f"<needle backend {self.name}>"
