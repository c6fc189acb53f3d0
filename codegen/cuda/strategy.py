"""Stage codegen (CUDA): which emitter a kernel group gets.

Input: a group sub-Graph. Output: its CudaKernelSource, from the first of:
a decomposition's kernel (linalg.py: the group is that one equation),
the tiled matmul with its epilogue (kernels.MatmulEmitter), the grid-stride
elemental emitter over the best set of domain axes (emit.CudaKernelEmitter),
turned into a block-per-row kernel when that pays (kernels.RowBlockEmitter).

This module sits above both emitters (emit.py, kernels.py), so neither
imports the other's chooser: kernels.py extends emit.py, and nothing in
emit.py reaches back.
"""
import itertools

from . import kernels, linalg
from .emit import CudaKernelEmitter, tuning


def _recompute(em):
    """How many times over `em`'s emission computes its reductions: the sum
    over reductions of (runs of the loop body) / (operand size); 1 per
    reduction when none is recomputed."""
    total = 0.0
    for v, n in em.executions.items():
        e = em.producer[v]
        if e.prim.kind == "reduction":
            total += n / max(e.inputs[0].aval.size, 1)
    return total


def emit_kernel(graph, name="kernel"):
    """The CudaKernelSource of a group sub-Graph. The grid-stride loop covers
    the largest set of domain axes (most axes first, then outer axes first:
    independent of the sizes, so a new batch size gives the same source) at
    which no reduction is recomputed: all axes for an elementwise group, the
    rows of a softmax, the columns of `x - x.mean(axis=0)`."""
    if linalg.is_linalg_group(graph):          # a decomposition: a kernel of its own
        return linalg.emit_linalg(graph, name)
    tune = tuning()
    plan = kernels.matmul_plan(graph)
    if plan is not None:
        return kernels.MatmulEmitter(graph, name, plan, tune).module()
    rank = max((v.aval.ndim for v in graph.outvars), default=0)
    best = None
    for k in range(rank, -1, -1):
        for axes in itertools.combinations(range(rank), k):
            em = CudaKernelEmitter(graph, name, flat_axes=axes)
            ks = em.module()
            cost = _recompute(em)
            if best is None or cost < best[0] - 1e-9:
                best = (cost, ks, em, axes)
            if cost <= sum(1 for v in em.executions if em.producer[v].prim.kind ==
                           "reduction") + 1e-9:
                best = (cost, ks, em, axes)
                break
        else:
            continue
        break
    _, ks, em, axes = best
    if kernels.wants_row_blocks(em, tune):
        try:
            return kernels.RowBlockEmitter(graph, name, axes, tune).module()
        except kernels.NoBlock:
            pass
    return ks
