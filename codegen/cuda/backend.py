"""Stage codegen (CUDA): the CUDA Backend: `numba.cuda` kernels; no library
calls (dot_general is a tiled kernel that absorbs its epilogue); the CPU
cost model plus what a GPU adds.

Input: kernel-group sub-Graphs. Output: verdicts and CudaKernelSources.

It extends the CPU backend and overrides what differs:
- a group holding a dot_general is judged by the tiled-matmul rule
  (kernels.matmul_group_problem): the matmul absorbs an elementwise epilogue
  (bias, activation, residual) that reads its result at the same index, and
  nothing else; a lone dot_general is always acceptable (one thread per
  output element when it cannot be tiled);
- a full reduction (to a scalar, two-stage) never reads another full
  reduction of its kernel: every block of the first stage would need the
  other's result before it exists (a grid-wide barrier).
- a decomposition (cholesky, lu, triangular_solve) is a kernel of its own
  (linalg.py: one block per matrix, or one thread per right-hand side);
  eigh, qr and svd are `unsupported`: their group raises when emitted.
Other groups are judged by the CPU rules.
"""
from ...ir.core import Var
from ..cpu.backend import CpuBackend
from . import emit as emit_mod, kernels, linalg
from .strategy import emit_kernel


def _chained_full_reductions(eqns):
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


class CudaBackend(CpuBackend):
    name = "cuda"
    library = {}
    parallel_min_size = 1 << 62        # a CUDA kernel is parallel by construction
    # Primitives with no CUDA kernel: compiling one raises, naming it (linalg.py).
    unsupported = frozenset(linalg.NO_KERNEL)

    def lowering_settings(self):
        # the block kernels' fixed shapes: the simulator's, a GPU's, a test's
        return (repr(emit_mod.tuning()),)

    def judge(self, sub):
        eqns = sub.eqns
        solo = [e.prim.name for e in eqns if e.prim.name in linalg.EMITTERS or
                e.prim.name in self.unsupported]
        if solo:                        # a decomposition's block kernel (linalg.py)
            return None if len(eqns) == 1 else f"{solo[0]} is a CUDA kernel of its own"
        if any(e.prim.name == "dot_general" for e in eqns):
            return None if len(eqns) == 1 else kernels.matmul_group_problem(eqns,
                                                                             sub.outvars)
        # the CPU's cost model (its emitter is not this backend's: not kept)
        return _chained_full_reductions(eqns) or self.verdict(sub)[0]

    def emit(self, sub, name="kernel", parallel=False):
        return emit_kernel(sub, name)


BACKEND = CudaBackend()
