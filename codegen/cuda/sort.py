"""Stage codegen (CUDA): the sort kernel: one block per row, the row's keys
in shared memory, each element's place found by counting (a rank sort).

Input: a group whose root is a `sort` equation, inside the CudaKernelEmitter
(which mixes `CudaSortRoot` in, where the CPU emitter has its per-row
merge sort; cumprod / cummax / cummin keep the neutral emitter's scan, one
thread per scan line). Output: the kernel's one entry, written for
`Tuning.row_threads` threads per block.

Per row (a block-stride loop over the rows, so any grid is correct): the
block's threads store the first operand's values (any fused producer
computed there) into a shared array, a barrier; then each thread takes
elements strided by the block size and counts the row's elements that sort
before its own: smaller (numpy's order: NaN above every number, -0.0 equal
to 0.0), or equal and earlier in the row. That count is the element's
position, so the sort is stable and needs no further barrier; every result
is stored there (the first from its key, the others computed at the
element's own index: argsort's iota is the element's index). A barrier
ends the row, before the next overwrites the keys.

The work is n^2 / threads comparisons per row, read from shared memory by
every thread at once (a broadcast, no bank conflicts): chosen for its
simplicity and for the rows a model sorts (top-k of a few thousand logits);
the keys must fit the shared array (`MAX_ROW` elements). A longer row is an
error naming the primitive, the shape and the device.
"""
import numpy as np

from ...ir.primitives import sort_p
from ..loops import Idx, Scope

MAX_ROW = 4096          # keys per row in shared memory: 32 KiB of float64


def _prod(xs):
    return int(np.prod(xs, dtype=np.int64)) if xs else 1


class CudaSortRoot:
    """Mixed into CudaKernelEmitter, before the neutral Emitter."""

    def _root_sort(self, e):
        from .emit import tuning           # emit.py imports this module
        T = tuning().row_threads
        dim = e.params["dimension"]
        ops, first = e.inputs, e.outs[0]
        shape = first.aval.shape
        if shape[dim] > MAX_ROW:
            raise NotImplementedError(
                f"{sort_p.name}: rows of {shape[dim]} elements (axis {dim} of "
                f"{first.aval.str_short()}) exceed the CUDA sort kernel's {MAX_ROW} (one block "
                f"per row, the row in shared memory) on device cuda; sort on the CPU "
                f"(jit(..., device='cpu')) or split the row")
        self.threads = T
        kdt = ops[0].aval.dtype
        sdt = np.dtype(np.uint8) if kdt == np.bool_ else kdt     # bool keys as bytes
        axes = [d for d in range(first.aval.ndim) if d != dim]
        ext = [self.dim(first, d) for d in axes]
        top = Scope(None, None)
        top.emit(f"n_ = {' * '.join(ext) or 'i64(1)'}")
        top.emit("tid_ = cuda.threadIdx.x")
        sk = "sk_"
        top.emit(f"{sk} = cuda.shared.array({MAX_ROW}, np.{sdt.name})")
        rows = top.child("for t_ in range(cuda.blockIdx.x, n_, cuda.gridDim.x):",
                         _prod([shape[d] for d in axes]))
        self.entries.append((top, tuple(int(x[1:]) for x in ext)))
        self.root = self.cur = rows
        idx = [None] * first.aval.ndim
        for d, i in zip(axes, self._unravel(rows, "t_", ext)):
            idx[d] = Idx(i, rows)
        n = self.dim(first, dim)
        # the keys of the row, into shared memory
        f = self.fresh("f")
        fill = rows.child(f"for {f} in range(tid_, {n}, {T}):", max(1, shape[dim] // T))
        idx[dim] = Idx(f, fill)
        self.cur = fill
        v, _ = self.value_at(ops[0], tuple(idx))
        fill.emit(f"{sk}[{f}] = {'u8(' + v + ')' if kdt == np.bool_ else v}")
        rows.close(fill)
        rows.emit("cuda.syncthreads()")
        # each element's place: how many of the row sort before it
        g, kv, r, j, kj = (self.fresh(p) for p in ("f", "kv", "r", "j", "kj"))
        put = rows.child(f"for {g} in range(tid_, {n}, {T}):", max(1, shape[dim] // T))
        if kdt.kind == "f":
            before = (f"{kj} < {kv} or ({kv} != {kv} and {kj} == {kj}) or ({j} < {g} and "
                      f"({kj} == {kv} or ({kj} != {kj} and {kv} != {kv})))")
        else:
            before = f"{kj} < {kv} or ({kj} == {kv} and {j} < {g})"
        put.emit(f"{kv} = {sk}[{g}]\n{r} = 0\n"
                 f"for {j} in range({n}):\n    {kj} = {sk}[{j}]\n"
                 f"    if {before}:\n        {r} += 1")
        self.cur = put
        src, dst = list(idx), list(idx)
        src[dim], dst[dim] = Idx(g, put), Idx(r, put)
        for name, pos in self._sort_stores(e):
            if pos == 0:
                val = f"({kv} != 0)" if kdt == np.bool_ else kv
            else:
                val = self.value_at(ops[pos], tuple(src))[0]
            self._store(name, dst, val, put)
        rows.close(put)
        rows.emit("cuda.syncthreads()")
