"""Stage codegen (CPU): the CPU Backend: Numba `njit` kernels, numpy's BLAS
for dot_general, the decompositions' numpy / LAPACK routines (linalg.py),
and the cost model fusion judges CPU groups with.

Input: kernel-group sub-Graphs (judge, emit) and dot_general / cholesky /
lu / triangular_solve equations (library_call). Output: verdicts, KernelSources, host functions.

Cost model: a group must have one loop domain (its results' shapes prefixes
of the largest), a root with a loop of its own (cumsum, a scatter) must be
its only result, and emitting it must not compute a reduction more than
once per output element, or a transcendental / gather more than twice
(`recompute_factors` of the CPU emitter, strategies included: the
emitter's own count of how often each value's code runs). The emitter that
judged an accepted group is kept (codegen/emissions.py), and `emit`
renders it instead of emitting the group a second time.
"""
import os

import numpy as np

from ...ir.config import config
from ...ir.core import ShapedArray
from ...ir.primitives.linalg import dot_general_numpy, dot_general_plan
from .conv import conv_call, conv_wgrad_call
from .gemm import small_gemm_call
from ..backend import Backend
from ..emissions import Emissions
from .emit import cost_emitter, emit_kernel
from .linalg import LINALG_CALLS

def _cores():
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _prefix_shapes(shapes):
    """True if every shape is a prefix of the longest (one loop nest serves all)."""
    longest = max(shapes, key=len, default=())
    return all(tuple(s) == tuple(longest[:len(s)]) for s in shapes)


def dot_general_call(e, allocator, kernels=None):
    """A BLAS call specialised, at compile time, to one dot_general equation.
    Matrix and matrix-vector products without batch axes call np.matmul on
    (transposed) views straight into a pooled buffer: per call, no shape
    arithmetic and no copies (a transposed operand is a strided view BLAS
    reads as is); `call(x, y, out)` writes into a given buffer instead (a
    loop body's destination or scratch buffer: `writes_into`, read by
    runtime/program.py). A float matrix product with both operands in
    row-major order whose right operand fits the cache (SMALL_GEMM_BYTES)
    runs the direct convolution's blocked kernel instead (gemm.py), faster
    than OpenBLAS on the skinny products of a model (an RNN step's 16 x 128
    by 128 x 512: 18 vs 28 us). Other float products (batch axes, operands
    of 3+ dimensions) transpose and reshape to one matmul planned here, once
    (ir.primitives.linalg.dot_general_plan); integer ones go through
    dot_general_numpy."""
    a, b = e.inputs
    dn = e.params["dimension_numbers"]
    (lc, rc), (lb, rb) = dn
    out = e.outs[0].aval
    if not lb and len(lc) == 1 and a.aval.ndim in (1, 2) and b.aval.ndim in (1, 2) \
            and out.ndim >= 1:
        ta = a.aval.ndim == 2 and lc[0] == 0
        tb = b.aval.ndim == 2 and rc[0] == 1
        if kernels is not None and not ta and not tb and a.aval.ndim == b.aval.ndim == 2:
            small = small_gemm_call(a.aval, b.aval, out, allocator, kernels)
            if small is not None:
                return small
        alloc = allocator(out.shape, out.dtype)

        def call(x, y, out=None):
            r = alloc() if out is None else out
            np.matmul(x.T if ta else x, y.T if tb else y, out=r)
            return r
        call.writes_into = True
        return call

    if out.dtype.kind != "f" or not a.aval.dtype == b.aval.dtype == out.dtype:
        return lambda x, y: dot_general_numpy(x, y, dn)
    # batch axes or operands of 3+ dimensions: the permutations and the
    # matmul's shapes worked out here, once (dot_general_numpy per call cost
    # 25-45 us in shape arithmetic: a Transformer step makes dozens)
    pa, sa, pb, sb, so, out_shape = dot_general_plan(a.aval.shape, b.aval.shape, dn)
    if kernels is not None and pa is None and pb is None and len(sa) == len(sb) == 2:
        # (M, K) @ (K, N) after reshapes only: the small-product kernel
        small = small_gemm_call(ShapedArray(sa, a.aval.dtype), ShapedArray(sb, b.aval.dtype),
                                ShapedArray(so, out.dtype), allocator, kernels)
        if small is not None:
            def flat(x, y):
                return small(x.reshape(sa), y.reshape(sb)).reshape(out_shape)
            return flat
    alloc = allocator(so, out.dtype)

    def general(x, y):
        x3 = (x if pa is None else x.transpose(pa)).reshape(sa)
        y3 = (y if pb is None else y.transpose(pb)).reshape(sb)
        r = alloc()
        np.matmul(x3, y3, out=r)
        return r.reshape(out_shape)
    return general


dot_general_call.needs_kernels = True


class CpuBackend(Backend):
    name = "cpu"
    library = {"dot_general": dot_general_call, **LINALG_CALLS,    # BLAS; LAPACK / numpy
               "conv": conv_call, "conv_wgrad": conv_wgrad_call}   # conv.py
    @property
    def parallel_min_size(self):
        """Elements of work per thread below which a kernel's rows are not
        split further (NEEDLE_PARALLEL_MIN_SIZE)."""
        return config.parallel_min_size

    def split_count(self, ks, work):
        """How many chunks of rows kernel `ks`, touching `work` elements (its
        largest array), runs as: each at least parallel_min_size elements of
        work, at most one per thread (NEEDLE_NUM_THREADS, default the cores
        this process may run on), at most one per row; 1: one call."""
        if ks.split is None:
            return 1
        return self.chunks_for(ks.dims[ks.split], work)

    def chunks_for(self, extent, work):
        """Chunks of `extent` independent rows, touching `work` elements
        in all, to run on threads (split_count's rule; the convolution
        library calls use it too)."""
        threads = config.num_threads or _cores()
        return max(1, min(threads, extent, work // max(1, self.parallel_min_size)))

    @property
    def emissions(self):
        """The emitters of the groups this backend judged acceptable
        (codegen/emissions.py), one store per backend object."""
        kept = self.__dict__.get("_emissions")
        if kept is None:
            kept = self.__dict__["_emissions"] = Emissions()
        return kept

    @emissions.setter
    def emissions(self, kept):
        self.__dict__["_emissions"] = kept

    def judge(self, sub):
        why, em = self.verdict(sub)
        if why is None:
            self.emissions.keep(sub, em.for_render())
        return why

    def verdict(self, sub):
        """(why the group is not acceptable or None, the KernelEmitter that
        measured it or None)."""
        eqns, outs = sub.eqns, sub.outvars
        if not _prefix_shapes([v.aval.shape for v in outs]):
            return "their results' shapes are not prefixes of one loop domain", None
        roots = [e for e in eqns if e.prim.traits.own_loop]
        if roots and (len(roots) > 1 or any(v not in roots[0].outs for v in outs)):
            return f"{roots[0].prim.name} must be its kernel's only result", None
        try:
            em = cost_emitter(sub)
        except NotImplementedError as e:
            return str(e), None
        prims = {v: e.prim for e in eqns for v in e.outs}
        for v, f in em.recompute_factors().items():
            p = prims[v]
            if p.kind == "reduction" and f > self.max_reduction_recompute + 1e-9:
                return f"{p.name} would be recomputed {f:g}x", em
            if p.traits.expensive and f > self.max_expensive_recompute + 1e-9:
                return f"{p.name} would be recomputed {f:g}x", em
        return None, em

    def same_group(self, judged, sub):
        self.emissions.alias(judged, sub)

    def emit(self, sub, name="kernel"):
        kept = self.emissions.get(sub)         # the judge's emitter, or its rendering
        if hasattr(kept, "source"):
            if kept.name == name:
                return kept
            kept = None                         # another name: emitted afresh
        ks = emit_kernel(sub, name, kept)
        if kept is not None:
            self.emissions.rendered(sub, ks)
        return ks

    def emit_loop(self, eqn):
        """The LoopSource of a scan / while whose bodies are kernels and views
        only (one generated Numba function running every step:
        codegen/cpu/loop_emit.py), or None (the runtime loops in Python)."""
        from .loop_emit import emit_loop
        return emit_loop(eqn, self)


BACKEND = CpuBackend()
