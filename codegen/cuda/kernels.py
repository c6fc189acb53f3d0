"""Stage codegen (CUDA): the block kernels, the performance-critical shapes
that a grid-stride loop of independent threads cannot express.

Input: a group sub-Graph, the axes choice of `strategy.emit_kernel`, the Tuning
(block shapes, fixed in the source). Output: a CudaKernelSource whose entry
needs a fixed block size (`threads`), its work items counting blocks' worth
of work (rows, tiles); any grid is correct (block-stride loops).

1. Row blocks (`RowBlockEmitter`): one block per output row. The rows (the
   axes the grid-stride choice of emit_kernel flattens) become a block-stride
   loop, uniform across the block; a reduction placed at the row (softmax's
   max and sum, layernorm's mean and variance, a row sum) runs a
   thread-strided loop over its flattened reduced axes, then combines the
   per-thread partials: warp shuffles (xor butterfly, so every lane holds the
   total), one shared-memory slot per warp, a barrier, a second butterfly
   over the warp totals, a barrier (so the slots can be reused). Every thread
   then holds the row's value; the fused epilogue (softmax's division) runs
   over the row's elements with all threads of the block (thread-strided,
   coalesced); a value stored at the row (a row sum) is stored by thread 0.
   Reductions nested below the row (inside a thread's strided loop) stay
   serial in that thread.
   argmax / argmin along a row combine (value, index) pairs the same way
   (first maximum, first NaN, as numpy).
   A full reduction (0-d result) is TWO-STAGE: a first entry whose
   `Tuning.partials` blocks (a block-stride loop over them, so any grid is
   correct) each reduce a strided share of the operand into one partial (a
   scratch array the runtime allocates), then the group's kernel, one block,
   reduces the partials and runs the epilogue (a mean's division, a loss).
   Chosen over atomics because it is deterministic (the same sum every run),
   works for every reduction and dtype a shuffle moves (max, min, prod have
   no float atomics), and keeps the epilogue in the second stage instead of
   needing a third launch or a last-block-done counter.
   When (`wants_row_blocks`): some reduction sits at the row level and
   reduces its operand's innermost (contiguous) axis, over a row length
   (product of its reduced extents) of at least `Tuning.row_min`; or the
   result is 0-d. The row length is a feature size, never the number of rows,
   so a new batch size reuses the kernel. Column reductions keep one thread
   per output (neighbouring threads read neighbouring columns, coalesced),
   as do short rows and dtypes a shuffle cannot move (bool, 8/16-bit).
2. Matmul (`MatmulEmitter`): a group holding one dot_general (one
   contracted axis and one free axis per operand, any batch axes, float)
   and its elementwise epilogue (bias, activation, residual: `matmul_plan`).
   Each block computes BM x BN output tiles (a block-stride loop over batch x
   tiles of M x tiles of N): K advances in BK-deep steps, each staging an A
   tile (BK x BM) and a B tile (BK x BN) in shared memory (loads ordered so
   neighbouring threads read neighbouring addresses of the operand's own
   layout: transposed operands are read in place through the dimension
   numbers), then every thread accumulates a TM x TN register block (rows
   ty + i*BM/TM, columns tx + j*BN/TN: conflict-free shared reads, coalesced
   stores) in scalar registers. The epilogue is evaluated per accumulator
   with the emitter's `value_at` (the dot's value at that index is the
   accumulator), guarded by the M, N bounds, and stored.
"""
import numpy as np

from ...ir.core import Var
from ...ir.primitives import reduce_identity
from ..loops import Idx, Scope
from ..exprs import const
from .emit import CudaKernelEmitter

SHUFFLE_DTYPES = {np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64)}


class NoBlock(Exception):
    """The group cannot be a row-block kernel (falls back to threads)."""


def _prod(xs):
    return int(np.prod(xs, dtype=np.int64)) if xs else 1


def wants_row_blocks(em, tune):
    """Whether the thread-per-row emission `em` (emit_kernel's choice) becomes
    a block-per-row kernel (see the module docstring)."""
    if not em.entries or len(em.entries) != 1:
        return False
    rank = max((v.aval.ndim for v in em.g.outvars), default=0)
    for e, parent, axes in em.red_sites:
        if parent is not em.root:
            continue
        if rank == 0:
            return True
        x = e.inputs[0]
        if (x.aval.ndim - 1) in axes and \
                _prod([x.aval.shape[d] for d in axes]) >= tune.row_min:
            return True
    return False


class RowBlockEmitter(CudaKernelEmitter):
    def __init__(self, graph, name, flat_axes, tune):
        super().__init__(graph, name, flat_axes)
        self.T = tune.row_threads
        assert self.T % 32 == 0 and (self.T & (self.T - 1)) == 0, "a power of two warps"
        self.threads = self.T
        self.uniform = set()
        self.smem = {}
        self.P = tune.partials
        self.full = max((v.aval.ndim for v in graph.outvars), default=0) == 0
        self.scratch = []               # (dtype name, size) of each partials array
        self.stage1 = None              # the first stage's (top, block loop)

    def emit_body(self):
        super().emit_body()
        if self.stage1 is not None:     # the partials are computed first
            self.entries.insert(0, (self.stage1[0], ((None, self.P),)))

    def array_params(self):
        names, types = super().array_params()
        return (names + [f"s{k}" for k in range(len(self.scratch))],
                types + [f"{dt}[::1]" for dt, _ in self.scratch])

    def _open_grid(self, extents):
        if self.entries:
            raise NoBlock("one entry only")
        top = Scope(None, None)
        top.emit(f"n_ = {' * '.join(extents) or 'i64(1)'}")
        top.emit("tid_ = cuda.threadIdx.x")
        size = _prod([self.dim_values[int(x[1:])] for x in extents])
        grid = top.child("for t_ in range(cuda.blockIdx.x, n_, cuda.gridDim.x):", size)
        self.entries.append((top, tuple(int(x[1:]) for x in extents)))
        self.top = top
        self.root = self.cur = grid
        self.uniform = {top, grid}
        return grid

    def _thread_loop(self, parent, extents, sizes):
        """A loop over the flattened `extents` (dims names), strided across
        the block's threads, last axis fastest; returns (loop, index names)."""
        f = self.fresh("f")
        loop = parent.child(f"for {f} in range(tid_, {' * '.join(extents)}, {self.T}):",
                            max(1, _prod(sizes)))
        return loop, self._unravel(loop, f, extents)

    def _domain(self, shape_var, skip_axis=None, allow_prange=True):
        ndim = shape_var.aval.ndim
        flat = [d for d in range(ndim) if d in self.flat_axes]
        serial = [d for d in range(ndim) if d not in flat]
        ext = [self.dim(shape_var, d) for d in flat]
        grid = self._open_grid(ext)
        idx = [None] * ndim
        for d, i in zip(flat, self._unravel(grid, "t_", ext)):
            idx[d] = Idx(i, grid)
        scope = grid
        if serial:
            scope, names = self._thread_loop(
                grid, [self.dim(shape_var, d) for d in serial],
                [shape_var.aval.shape[d] for d in serial])
            for d, n in zip(serial, names):
                idx[d] = Idx(n, scope)
        return idx, scope

    def _store(self, out_name, idx, val, scope):
        scope = self.deepest([scope] + [i.scope for i in idx])
        sub = ", ".join(i.text for i in idx) if idx else self.index_0d
        if scope in self.uniform:       # a row's value: every thread holds it
            scope.emit(f"if tid_ == 0:\n    {out_name}[{sub}] = {val}")
        else:
            scope.emit(f"{out_name}[{sub}] = {val}")

    def _smem(self, dt, top):
        if (top, dt) not in self.smem:
            name = f"sm_{dt.name}"
            top.emit(f"{name} = cuda.shared.array({self.T // 32}, np.{dt.name})")
            self.smem[top, dt] = name
        return self.smem[top, dt]

    def _block_combine(self, scope, name, acc, dt, acc_dt, top=None):
        """Combine every thread's `acc` across the block; all threads get the total."""
        lines = []
        for off in (16, 8, 4, 2, 1):
            o = self.fresh("w")
            lines += [f"{o} = shfl_xor({acc}, {off})", self._combine(name, acc, o, dt)]
        nw = self.T // 32
        if nw > 1:
            sm = self._smem(acc_dt, top or self.top)
            # lane l reads warp total l % nw: a butterfly over nw lanes then
            # gives every lane the block's total
            lines += [f"if tid_ % 32 == 0:\n    {sm}[tid_ // 32] = {acc}",
                      "cuda.syncthreads()",
                      f"{acc} = {sm}[tid_ % {nw}]"]
            off = nw // 2
            while off:
                o = self.fresh("w")
                lines += [f"{o} = shfl_xor({acc}, {off})", self._combine(name, acc, o, dt)]
                off //= 2
            lines.append("cuda.syncthreads()")
        for ln in lines:
            scope.emit(ln)

    def _emit_reduction(self, e, idx, axes):
        parent = self.deepest(i.scope for i in idx)
        if parent not in self.uniform:
            return super()._emit_reduction(e, idx, axes)       # nested: serial
        x = e.inputs[0]
        dt, name = x.aval.dtype, e.prim.name
        if dt not in SHUFFLE_DTYPES:
            raise NoBlock(f"no shuffle for {dt}")
        # numba widens an int32 accumulator to int64 (its int + int is intp)
        acc_dt = np.dtype(np.int64) if dt.kind in "iu" else dt
        acc = self.fresh("acc")
        ident = const(reduce_identity(name, dt), acc_dt)
        parent.emit(f"{acc} = {ident}")
        axes = tuple(sorted(axes))
        self.red_sites.append((e, parent, axes))
        if self.full:
            return self._two_stage(e, parent, acc, acc_dt, ident)
        loop, names = self._thread_loop(parent, [self.dim(x, d) for d in axes],
                                        [x.aval.shape[d] for d in axes])
        it = iter(idx)
        full = []
        for d in range(x.aval.ndim):
            full.append(Idx(names[axes.index(d)], loop) if d in axes else next(it))
        self._count(e.outs[0], loop)

        def body():
            v, _ = self.value_at(x, tuple(full))
            loop.emit(self._combine(name, acc, v, dt))
        self._with_scope(loop, body)
        parent.close(loop)
        self._block_combine(parent, name, acc, dt, acc_dt)
        if dt.kind in "iu" and dt.itemsize < 8:
            return self.define(acc, parent, dt), parent
        return acc, parent


    def _emit_argmax(self, e, idx):
        """argmax / argmin along a row: each thread keeps the first best of
        its strided share (value, index; index -1 while empty), then the
        pairs combine across the block under the total order "larger value
        (a NaN beats any number), then smaller index": numpy's first
        maximum, first NaN."""
        parent = self.deepest(i.scope for i in idx)
        x = e.inputs[0]
        dt = x.aval.dtype
        if parent not in self.uniform or self.full:
            return CudaKernelEmitter._emit_argmax(self, e, idx)
        if dt not in SHUFFLE_DTYPES:
            raise NoBlock(f"no shuffle for {dt}")
        axis = e.params["axis"]
        cmp = ">" if e.prim.name == "argmax" else "<"
        init = reduce_identity("reduce_max" if cmp == ">" else "reduce_min", dt)
        best, bi = self.fresh("best"), self.fresh("bi")
        parent.emit(f"{best} = {const(init, dt)}\n{bi} = i64(-1)")
        loop, (r,) = self._thread_loop(parent, [self.dim(x, axis)], [x.aval.shape[axis]])
        it = iter(idx)
        full = tuple(Idx(r, loop) if d == axis else next(it) for d in range(x.aval.ndim))
        self._count(e.outs[0], loop)
        self.red_sites.append((e, parent, (axis,)))
        isf = dt.kind == "f"

        def body():
            v, _ = self.value_at(x, full)
            nan = f" or ({v} != {v} and {best} == {best})" if isf else ""
            loop.emit(f"if {bi} < 0 or {v} {cmp} {best}{nan}:\n    {best} = {v}\n"
                      f"    {bi} = i64({r})")
        self._with_scope(loop, body)
        parent.close(loop)

        def take(ov, oi):
            if isf:
                better = (f"({ov} != {ov} and ({best} == {best} or {oi} < {bi})) or "
                          f"({best} == {best} and ({ov} {cmp} {best} or "
                          f"({ov} == {best} and {oi} < {bi})))")
            else:
                better = f"{ov} {cmp} {best} or ({ov} == {best} and {oi} < {bi})"
            return (f"if {oi} >= 0 and ({bi} < 0 or {better}):\n"
                    f"    {best} = {ov}\n    {bi} = {oi}")

        def butterfly(offs):
            for off in offs:
                ov, oi = self.fresh("w"), self.fresh("wi")
                parent.emit(f"{ov} = shfl_xor({best}, {off})\n{oi} = shfl_xor({bi}, {off})")
                parent.emit(take(ov, oi))
        butterfly((16, 8, 4, 2, 1))
        nw = self.T // 32
        if nw > 1:
            sv, si = self._smem(dt, self.top), self._smem(np.dtype(np.int64), self.top)
            if sv == si:
                raise NoBlock("argmax of int64 needs two shared arrays")
            parent.emit(f"if tid_ % 32 == 0:\n    {sv}[tid_ // 32] = {best}\n"
                        f"    {si}[tid_ // 32] = {bi}")
            parent.emit("cuda.syncthreads()")
            parent.emit(f"{best} = {sv}[tid_ % {nw}]\n{bi} = {si}[tid_ % {nw}]")
            off, offs = nw // 2, []
            while off:
                offs.append(off)
                off //= 2
            butterfly(offs)
            parent.emit("cuda.syncthreads()")
        return self.define(f"max({bi}, 0)", parent, e.outs[0].aval.dtype), parent

    _emit_argmin = _emit_argmax

    def _two_stage(self, e, parent, acc, acc_dt, ident):
        """A full reduction in two launches: the first stage's P blocks (a
        block-stride loop over P, so any grid works) each reduce a strided
        share of the operand and store one partial; then this kernel's one
        block reduces the P partials. Deterministic, any reduction, the
        epilogue in the second stage, one scratch array of P values."""
        x = e.inputs[0]
        dt, name = x.aval.dtype, e.prim.name
        k = len(self.scratch)
        part = f"s{k}"
        self.scratch.append((acc_dt.name, self.P))
        if self.stage1 is None:
            top = Scope(None, None)
            top.emit("tid_ = cuda.threadIdx.x")
            vb = top.child(f"for vb_ in range(cuda.blockIdx.x, {self.P}, cuda.gridDim.x):",
                           self.P)
            self.stage1 = (top, vb)
            self.uniform |= {top, vb}
        top, vb = self.stage1
        a1 = self.fresh("acc")
        vb.emit(f"{a1} = {ident}")
        ext = " * ".join(self.dim(x, d) for d in range(x.aval.ndim)) or "1"
        f = self.fresh("f")
        loop = vb.child(f"for {f} in range(vb_ * {self.T} + tid_, {ext}, "
                        f"{self.P * self.T}):", max(1, x.aval.size // self.P))
        names = self._unravel(loop, f, [self.dim(x, d) for d in range(x.aval.ndim)])
        full = [Idx(i, loop) for i in names]
        self._count(e.outs[0], loop)

        def body():
            v, _ = self.value_at(x, tuple(full))
            loop.emit(self._combine(name, a1, v, dt))
        root, self.root = self.root, vb     # index-free values go to this stage's loop
        try:
            self._with_scope(loop, body)
        finally:
            self.root = root
        vb.close(loop)
        self._block_combine(vb, name, a1, dt, acc_dt, top=top)
        vb.emit(f"if tid_ == 0:\n    {part}[vb_] = {a1}")
        # the second stage: this block reduces the partials
        g = self.fresh("g")
        loop2 = parent.child(f"for {g} in range(tid_, {self.P}, {self.T}):", 1)
        loop2.emit(self._combine(name, acc, f"{part}[{g}]", dt))
        parent.close(loop2)
        self._block_combine(parent, name, acc, dt, acc_dt)
        if dt.kind in "iu" and dt.itemsize < 8:
            return self.define(acc, parent, dt), parent
        return acc, parent


# --- matmul ------------------------------------------------------------------------

def matmul_plan(graph):
    """The dot_general equation if `graph` is a tiled-matmul group (see the
    module docstring), else None."""
    dots = [e for e in graph.eqns if e.prim.name == "dot_general"]
    if len(dots) != 1:
        return None
    return dots[0] if matmul_group_problem(graph.eqns, graph.outvars) is None else None


def matmul_group_problem(eqns, outs):
    """Why equations `eqns` with results `outs` cannot be one tiled matmul
    kernel with its epilogue, or None if they can (also fusion's CUDA rule)."""
    dots = [e for e in eqns if e.prim.name == "dot_general"]
    if len(dots) != 1:
        return "a CUDA matmul kernel holds one dot_general"
    d = dots[0]
    a, b = d.inputs
    (lc, rc), (lb, rb) = d.params["dimension_numbers"]
    dt = d.outs[0].aval.dtype
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)) or \
            a.aval.dtype != dt or b.aval.dtype != dt:
        return "the tiled matmul is for float32 / float64"
    if len(lc) != 1 or a.aval.ndim - len(lb) - 1 != 1 or b.aval.ndim - len(rb) - 1 != 1:
        return "the tiled matmul needs one contracted and one free axis per operand"
    defined = {v for e in eqns for v in e.outs}
    if any(isinstance(x, Var) and x in defined for x in d.inputs):
        return "a tiled matmul reads its operands from memory (no prologue)"
    shape = d.outs[0].aval.shape
    dep = set(d.outs)
    for e in eqns:
        if e is d:
            continue
        reads_dot = any(isinstance(x, Var) and x in dep for x in e.inputs)
        if reads_dot:
            if e.prim.kind != "elementwise" or any(v.aval.shape != shape for v in e.outs):
                return f"{e.prim.name} is not an elementwise epilogue of the matmul"
            dep.update(e.outs)
        elif e.prim.kind not in ("elementwise", "structural") or \
                e.prim.name in ("transpose", "reshape"):
            return f"{e.prim.name} in a matmul epilogue"
    if any(v not in dep or v.aval.shape != shape for v in outs):
        return "every result of a matmul kernel is its epilogue's"
    return None


class MatmulEmitter(CudaKernelEmitter):
    def __init__(self, graph, name, dot, tune):
        super().__init__(graph, name)
        self.dot = dot
        self.BM, self.BN, self.BK, self.TM, self.TN = tune.tile
        self.threads = (self.BM // self.TM) * (self.BN // self.TN)

    def emit_body(self):
        e = self.dot
        a, b = e.inputs
        out = e.outs[0]
        (lc, rc), (lb, rb) = e.params["dimension_numbers"]
        dt = out.aval.dtype
        BM, BN, BK, TM, TN, NT = self.BM, self.BN, self.BK, self.TM, self.TN, self.threads
        nb = len(lb)
        fa = [d for d in range(a.aval.ndim) if d not in lc and d not in lb][0]
        fb = [d for d in range(b.aval.ndim) if d not in rc and d not in rb][0]
        M, N, K = self.dim(out, nb), self.dim(out, nb + 1), self.dim(a, lc[0])
        bdims = [self.dim(out, k) for k in range(nb)]
        top = Scope(None, None)
        self.root = self.cur = top
        npdt = f"np.{dt.name}"
        zero = const(0, dt)
        top.emit(f"sa_ = cuda.shared.array(({BK}, {BM}), {npdt})\n"
                 f"sb_ = cuda.shared.array(({BK}, {BN}), {npdt})\n"
                 f"tid_ = cuda.threadIdx.x\n"
                 f"tx_ = tid_ % {BN // TN}\n"
                 f"ty_ = tid_ // {BN // TN}\n"
                 f"gm_ = ({M} + {BM - 1}) // {BM}\n"
                 f"gn_ = ({N} + {BN - 1}) // {BN}\n"
                 f"n_ = {' * '.join(bdims + ['gm_', 'gn_'])}")
        ntiles = _prod(list(out.aval.shape[:nb])) * -(-out.aval.shape[nb] // BM) * \
            -(-out.aval.shape[nb + 1] // BN)
        grid = top.child("for t_ in range(cuda.blockIdx.x, n_, cuda.gridDim.x):", ntiles)
        grid.emit("tn_ = t_ % gn_\nq_ = t_ // gn_\ntm_ = q_ % gm_\nq_ = q_ // gm_")
        bidx = [None] * nb
        for k in range(nb - 1, -1, -1):
            i = f"b{k}_"
            grid.emit(f"{i} = q_ % {bdims[k]}" if k else f"{i} = q_")
            if k:
                grid.emit(f"q_ = q_ // {bdims[k]}")
            bidx[k] = Idx(i, grid)
        accs = [[f"c{i}_{j}_" for j in range(TN)] for i in range(TM)]
        grid.emit("\n".join(f"{accs[i][j]} = {zero}" for i in range(TM) for j in range(TN)))
        kloop = grid.child(f"for k0_ in range(0, {K}, {BK}):", 1)

        def stage(x, xc, xf, xb, tile, rows, base, smem):
            """Load the BK x tile slice of operand x into shared `smem`; the
            flattened load index runs along x's innermost axis."""
            k_fast = xc == x.aval.ndim - 1
            lv = self.fresh("l")
            loop = kloop.child(f"for {lv} in range(tid_, {BK * tile}, {NT}):", 1)
            if k_fast:
                loop.emit(f"kk_ = {lv} % {BK}\nrr_ = {lv} // {BK}")
            else:
                loop.emit(f"rr_ = {lv} % {tile}\nkk_ = {lv} // {tile}")
            loop.emit(f"gr_ = {base} + rr_\ngk_ = k0_ + kk_\n"
                      f"ok_ = gr_ < {rows} and gk_ < {K}")
            ix = [None] * x.aval.ndim
            ix[xc] = Idx(f"min(gk_, {K} - 1)", loop)
            ix[xf] = Idx(f"min(gr_, {rows} - 1)", loop)
            for k, d in enumerate(xb):
                ix[d] = bidx[k]
            v, _ = self._with_scope(loop, lambda: self.value_at(x, tuple(ix)))
            loop.emit(f"{smem}[kk_, rr_] = {v} if ok_ else {zero}")
            kloop.close(loop)

        stage(a, lc[0], fa, lb, BM, M, f"tm_ * {BM}", "sa_")
        stage(b, rc[0], fb, rb, BN, N, f"tn_ * {BN}", "sb_")
        kloop.emit("cuda.syncthreads()")
        inner = kloop.child(f"for kk_ in range({BK}):", 1)
        ra = [f"ra{i}_" for i in range(TM)]
        rb_ = [f"rb{j}_" for j in range(TN)]
        inner.emit("\n".join([f"{ra[i]} = sa_[kk_, ty_ + {i * (BM // TM)}]" for i in range(TM)] +
                             [f"{rb_[j]} = sb_[kk_, tx_ + {j * (BN // TN)}]"
                              for j in range(TN)] +
                             [f"{accs[i][j]} += {ra[i]} * {rb_[j]}"
                              for i in range(TM) for j in range(TN)]))
        kloop.close(inner)
        kloop.emit("cuda.syncthreads()")
        grid.close(kloop)
        # The epilogue: every result at each accumulator's index.
        self._count(out, grid)
        outs = self.g.outvars
        for i in range(TM):
            grid.emit(f"m{i}_ = tm_ * {BM} + ty_ + {i * (BM // TM)}")
        for j in range(TN):
            grid.emit(f"n{j}_ = tn_ * {BN} + tx_ + {j * (BN // TN)}")
        for i in range(TM):
            for j in range(TN):
                guard = grid.child(f"if m{i}_ < {M} and n{j}_ < {N}:", 1)
                idx = tuple(bidx) + (Idx(f"m{i}_", guard), Idx(f"n{j}_", guard))
                self.memo[(out, tuple(t.text for t in idx))] = (accs[i][j], guard)
                self.cur = guard
                vals = [self.value_at(v, idx)[0] for v in outs]
                for k, val in enumerate(vals):
                    guard.emit(f"o{k}[{', '.join(t.text for t in idx)}] = {val}")
                grid.close(guard)
        self.cur = top
        self.entries.append((top, tuple(self.dim_slots[(out, k)] for k in range(nb)) +
                             ((self.dim_slots[(out, nb)], BM),
                              (self.dim_slots[(out, nb + 1)], BN))))
