"""Stage codegen (CUDA): a kernel group (a sub-Graph) becomes the source of
one self-contained Python module holding one `numba.cuda` kernel (two for a
scatter: copy, then update).

Input: the group's sub-Graph and a name.
Output: a CudaKernelSource: module text, the explicit Numba signature, the
`dims` (every size, passed as int64 scalar arguments so a new batch size
reuses the kernel), the entry points in launch order, and for each the dims
slots whose product is its number of work items (threads to launch).

How it works: `CudaKernelEmitter` extends the backend-neutral `Emitter`
(codegen/emitter.py, the elemental emitter: `value_at(var, idx)` with
statements placed in the outermost loop they depend on; none of the CPU's
strategies: no temporaries, threads read columns coalesced; float max / min
compare in registers; no output cache, recomputing beats a global-memory
round trip) and overrides what differs:
- the domain: a set of its axes becomes one grid-stride loop over their
  flattened extent (`for t_ in range(cuda.grid(1), n_, cuda.gridsize(1))`,
  the multi-index recovered with `//` and `%`); the other axes, if any, stay
  serial loops inside it. `strategy.emit_kernel` picks the largest set at which no
  reduction is recomputed: an elementwise group flattens every axis; a
  softmax over rows flattens the row axis, so each thread computes its
  row's maximum and sum once and writes the row; `x - x.mean(axis=0)`
  flattens the column axis (one thread per column, coalesced).
- reductions: one thread per output element running the neutral emitter's
  serial reduction loop (a column sum reads coalesced: neighbouring threads
  read neighbouring columns), unless the group is a row kernel: then
  codegen/cuda/kernels.py makes it one block per row (shared memory and warp
  shuffles), and a full reduction two-stage (per-block partials, then one
  block); see `kernels.wants_row_blocks` for the choice.
- dot_general: a group holding a dot_general with one contracted and one
  free axis per operand (any batch axes, float) and its elementwise
  epilogue is the tiled shared-memory matmul with register blocking of
  kernels.py (fusion lets it absorb its epilogue on CUDA); any other
  dot_general is one thread per output element with a serial loop over the
  contracted axes.
- scatter_add updates with `cuda.atomic.add`, scatter with a plain store
  (with a repeated index, which update wins is unspecified, as in JAX on
  GPU), integer scatter_min / max with `cuda.atomic.min / max`; scatter_mul
  and float scatter_min / max (no atomic multiply; numba's float atomic max
  drops a NaN update) apply the updates in order along the index axes, one
  thread per position of the other axes (exact, deterministic; serial for
  a flat `x.at[idx].mul(v)`). The copy of the operand is a first kernel,
  the updates a second, so every copy lands before any update.
- cumsum (and cumprod / cummax / cummin): one thread per scan line.
- sort: one block per row, a rank sort in shared memory (sort.py).
- expressions: float32 `math.*` (libdevice), typed constants (`f32(...)`,
  the CPU `const`), so a float32 program has no float64 arithmetic.

Block kernels are written for a fixed block size (`threads` per entry) and
fixed tile shapes: the `Tuning` (GPU_TUNING; SIM_TUNING, smaller, under the
simulator, which runs a Python thread per CUDA thread; `TUNING` overrides).
Their `launch(entry, limits)` gives the runtime (blocks, threads); a scratch
array (`scratch`) is allocated by the runtime for the call.

The module keeps the kernel a plain Python function with its signature in
`SIGNATURE`: the runtime wraps it with `cuda.jit` (lazily in the simulator,
with the signature on a GPU) and the PTX tests pass it to `cuda.compile_ptx`.
"""
from dataclasses import dataclass

import numpy as np

from ..emitter import Emitter
from ..exprs import CTOR, const
from ..loops import Idx, KernelSource, Scope
from . import rules
from .sort import CudaSortRoot

# Python's math raises where the GPU gives inf or nan (log(0), exp(1e3)):
# in the simulator the module's `math` answers as libdevice does.
SIM_MATH = (
    "if config.ENABLE_CUDASIM:      # Python's math raises where a GPU gives inf / nan\n"
    "    from needle.codegen.cuda.sim_math import math")

# Integer power as the CPU computes it: a negative exponent gives
# 1 / a**-b truncated toward zero (0 unless a is 1 or -1). Written out rather
# than numba's `a ** b`, whose CUDA lowering returns the most negative integer
# for 0 ** -1 and goes through float64 `math.pow` for large exponents, and
# which numpy (the simulator) refuses for negative exponents.
IPOW = (
    "def ipow(a, b):\n"
    "    if b < 0:\n"
    "        return (a if b & 1 else a * a) if (a == 1 or a == -1) else a - a\n"
    "    r = a - a + 1\n"
    "    while b:                     # square and multiply, in the integer type\n"
    "        if b & 1:\n"
    "            r *= a\n"
    "        b >>= 1\n"
    "        a *= a\n"
    "    return r\n"
    "\n"
    "\n"
    "if not config.ENABLE_CUDASIM:\n"
    "    ipow = cuda.jit(device=True, inline=True)(ipow)")

SIM_LIBDEVICE = (
    "if config.ENABLE_CUDASIM:      # the simulator's libdevice functions are stubs\n"
    "    from types import SimpleNamespace\n"
    "    libdevice = SimpleNamespace(floorf=np.floor, floor=np.floor, ceilf=np.ceil,\n"
    "                                ceil=np.ceil, rintf=np.rint, rint=np.rint,\n"
    "        float_as_int=lambda v: np.float32(v).view(np.int32),\n"
    "        int_as_float=lambda v: np.int32(v).view(np.float32),\n"
    "        double_as_longlong=lambda v: np.float64(v).view(np.int64),\n"
    "        longlong_as_double=lambda v: np.int64(v).view(np.float64))\n"
    "else:\n"
    "    from numba.cuda import libdevice")

# Warp shuffles (block reductions): the real intrinsic on a GPU; in the
# simulator, which has none, an exchange through shared memory (every thread
# of the block calls it, as the generated block reductions do).
SHUFFLE = (
    "if config.ENABLE_CUDASIM:\n"
    "    import threading as _th\n"
    "    def shfl_xor(v, off):\n"
    "        # two buffers used in turn: one barrier per exchange\n"
    "        buf = cuda.shared.array((2, 1024), np.object_)\n"
    "        me = _th.current_thread()\n"
    "        p = me.needle_parity = 1 - getattr(me, 'needle_parity', 0)\n"
    "        t = cuda.threadIdx.x\n"
    "        buf[p, t] = v\n"
    "        cuda.syncthreads()\n"
    "        return buf[p, t ^ off]\n"
    "else:\n"
    "    @cuda.jit(device=True, inline=True)\n"
    "    def shfl_xor(v, off):\n"
    "        return cuda.shfl_xor_sync(0xffffffff, v, off)")

# The simulator allocates a block's shared array on the first thread's call,
# without a lock: two threads starting together can each get their own. This
# makes the lookup atomic (same keying: the calling line); simulator only.
SIM_SHARED = (
    "if config.ENABLE_CUDASIM:\n"
    "    from numba.cuda.simulator import kernelapi as _ka\n"
    "    if not getattr(_ka.FakeCUDAShared, 'needle_locked', False):\n"
    "        import sys, threading\n"
    "        _lock = threading.Lock()\n"
    "        def _array(self, shape, dtype, alignment=None):\n"
    "            f = sys._getframe(1)\n"
    "            key = (f.f_code.co_filename, f.f_lineno)\n"
    "            with _lock:\n"
    "                res = self._allocations.get(key)\n"
    "                if res is None:\n"
    "                    res = self._allocations[key] = np.empty(shape, dtype)\n"
    "            return res\n"
    "        _ka.FakeCUDAShared.array = _array\n"
    "        _ka.FakeCUDAShared.needle_locked = True")

INT_ATOMIC_DTYPES = {np.dtype(t) for t in (np.int32, np.uint32, np.int64, np.uint64)}
ATOMIC_DTYPES = {np.dtype(t) for t in (np.int32, np.uint32, np.int64, np.uint64, np.float32,
                                       np.float64)}


@dataclass
class CudaKernelSource(KernelSource):
    entries: tuple = ("kernel",)        # kernel functions, launched in this order
    # Per entry: the work items as a product over dims slots; a slot may come
    # as (slot, tile), counting ceil(dims[slot] / tile) (matmul tiles).
    work: tuple = ((),)
    # Per entry: the block size the kernel is written for (its shared arrays
    # and barriers assume it), work items then counting blocks' worth of work
    # (rows, tiles); None: any block size, work items counting threads.
    threads: tuple = (None,)
    # Scratch arrays the runtime allocates for the call and passes after the
    # outputs: (dtype name, number of elements) each (a two-stage full
    # reduction's per-block partials).
    scratch: tuple = ()

    def work_items(self, k):
        n = 1
        for s in self.work[k]:
            slot, tile = s if isinstance(s, tuple) else (s, 1)
            n *= tile if slot is None else -(-int(self.dims[slot]) // tile)
        return int(n)

    def block_threads(self, k):
        return self.threads[k] if k < len(self.threads) else None

    def launch(self, k, limits):
        """(blocks, threads) of entry `k` (the runtime's hook) under `limits`
        (threads_per_block, max_blocks): a block kernel gets its own block
        size and a block per work item, up to the cap (its loops stride over
        the rest); a grid-stride kernel a thread per work item."""
        n = self.work_items(k)
        t = self.block_threads(k)
        if t:
            return max(1, min(n, limits.max_blocks)), t
        threads = min(limits.threads_per_block, 32 * -(-n // 32))
        return max(1, min(-(-n // threads), limits.max_blocks)), threads


@dataclass(frozen=True)
class Tuning:
    """The fixed shapes of block kernels (they are in the source, not
    arguments): threads per row block, the row length (product of a
    reduction's extents) from which a row gets a block, and the matmul tile
    (BM, BN, BK, TM, TN: a BM x BN output tile per block, K in BK-deep steps,
    a TM x TN register block per thread, (BM/TM) * (BN/TN) threads)."""
    row_threads: int = 256
    row_min: int = 32
    tile: tuple = (64, 64, 16, 4, 4)
    partials: int = 1024                # blocks of a full reduction's first stage


GPU_TUNING = Tuning()
# The simulator runs a Python thread per CUDA thread: small blocks, same code.
SIM_TUNING = Tuning(row_threads=32, row_min=32, tile=(8, 8, 4, 2, 2), partials=3)
TUNING = None                           # set to a Tuning to override (tests)


def tuning():
    if TUNING is not None:
        return TUNING
    from numba import config
    return SIM_TUNING if config.ENABLE_CUDASIM else GPU_TUNING


class CudaKernelEmitter(CudaSortRoot, Emitter):
    """The neutral elemental emitter with a grid-stride domain (see the module
    docstring). `flat_axes`: which axes of the (first) domain the grid-stride
    loop covers, the others being serial loops inside it (None: all). Later
    domains (a scatter's updates) are flattened whole."""
    backend = "CUDA"
    rules = rules
    # A 0-d array is passed as a 1-element vector (the simulator has no 0-d
    # device arrays; a plain vector is the simpler type on a GPU too).
    index_0d = "0"

    threads = None                      # block size the kernel needs (None: any)
    ordered_axes = ()                   # a scatter's index axes updated serially

    def __init__(self, graph, name="kernel", flat_axes=None):
        super().__init__(graph, name)
        self.flat_axes = None if flat_axes is None else tuple(flat_axes)
        self.entries = []               # (top Scope, dims slots of the work)
        self.red_sites = []             # (reduction eqn, parent scope, reduced axes)

    def _emit_reduction(self, e, idx, axes):
        self.red_sites.append((e, self.deepest(i.scope for i in idx), tuple(axes)))
        return super()._emit_reduction(e, idx, axes)

    def _emit_argmax(self, e, idx):
        self.red_sites.append((e, self.deepest(i.scope for i in idx), (e.params["axis"],)))
        return super()._emit_argmax(e, idx)

    _emit_argmin = _emit_argmax

    # -- the domain: a grid-stride loop -------------------------------------------
    def _open_grid(self, extents):
        """Start a new entry point whose grid-stride loop runs over the product
        of `extents` (dims names); the loop becomes the emitter's root scope,
        so nothing is placed outside it."""
        top = Scope(None, None)
        top.emit(f"n_ = {' * '.join(extents) or 'i64(1)'}")
        size = int(np.prod([self.dim_values[int(x[1:])] for x in extents], dtype=np.int64))
        grid = top.child("for t_ in range(cuda.grid(1), n_, cuda.gridsize(1)):", size)
        # A fresh Scope tree: its levels restart below `top`.
        self.entries.append((top, tuple(int(x[1:]) for x in extents)))
        self.root = self.cur = grid
        return grid

    def _unravel(self, scope, flat, extents):
        """Emit into `scope` the multi-index of flat index `flat` over
        `extents` (last axis fastest); returns the index names."""
        names = [None] * len(extents)
        q = flat
        for k in range(len(extents) - 1, -1, -1):
            i = self.fresh("i")
            if k == 0:
                scope.emit(f"{i} = {q}")
            else:
                scope.emit(f"{i} = {q} % {extents[k]}")
                q2 = self.fresh("q")
                scope.emit(f"{q2} = {q} // {extents[k]}")
                q = q2
            names[k] = i
        return names

    def _domain(self, shape_var, skip_axis=None, allow_prange=True):
        ndim = shape_var.aval.ndim
        axes = [d for d in range(ndim) if d != skip_axis]
        flat = axes
        if self.flat_axes is not None and not self.entries:
            flat = [d for d in axes if d in self.flat_axes]
        if self.entries and self.ordered_axes:      # a scatter's updates, in order
            flat = [d for d in axes if d not in self.ordered_axes]
        serial = [d for d in axes if d not in flat]
        ext = [self.dim(shape_var, d) for d in flat]
        grid = self._open_grid(ext)
        idx = [None] * ndim
        for d, i in zip(flat, self._unravel(grid, "t_", ext)):
            idx[d] = Idx(i, grid)
        scope = grid
        for d in serial:
            i = self.fresh("i")
            scope = self.open_loop(scope, i, self.dim(shape_var, d))
            idx[d] = Idx(i, scope)
        return idx, scope

    def _store(self, out_name, idx, val, scope):
        # The loops are not nested in axis order (flattened axes are outermost):
        # store in the innermost loop of the output's own axes.
        super()._store(out_name, idx, val, self.deepest([scope] + [i.scope for i in idx]))

    # -- what differs per primitive ----------------------------------------------
    def _emit_dot_general(self, e, idx):
        """One output element: a serial loop over the contracted axes."""
        a, b = e.inputs
        (lc, rc), (lb, rb) = e.params["dimension_numbers"]
        dt = e.outs[0].aval.dtype
        fa = [d for d in range(a.aval.ndim) if d not in lc and d not in lb]
        fb = [d for d in range(b.aval.ndim) if d not in rc and d not in rb]
        ia, ib = [None] * a.aval.ndim, [None] * b.aval.ndim
        it = iter(idx)
        for da, db in zip(lb, rb):
            ia[da] = ib[db] = next(it)
        for d in fa:
            ia[d] = next(it)
        for d in fb:
            ib[d] = next(it)
        parent = self.deepest(i.scope for i in idx)
        acc = self.fresh("acc")
        parent.emit(f"{acc} = {const(0, dt)}")
        scope = parent
        for da, db in zip(lc, rc):
            r = self.fresh("r")
            scope = self.open_loop(scope, r, self.dim(a, da))
            ia[da] = ib[db] = Idx(r, scope)
        self._count(e.outs[0], scope)

        def body():
            va, _ = self.value_at(a, tuple(ia))
            vb, _ = self.value_at(b, tuple(ib))
            scope.emit(f"{acc} += {va} * {vb}")
        self._with_scope(scope, body)
        self._close(parent, scope)
        if dt.kind in "iu" and dt.itemsize < 8:
            return self.define(acc, parent, dt), parent
        return acc, parent

    def _root_scatter(self, e):
        # scatter_mul, and scatter_min / max without an integer atomic, update
        # in order along the index axes: one thread per position of the other
        # (column) axes, which never touch the same element (see `_domain`).
        dt = e.outs[0].aval.dtype
        name = e.prim.name
        if name == "scatter_mul" or (name in ("scatter_min", "scatter_max") and
                                     dt not in INT_ATOMIC_DTYPES):
            axis, k = e.params["axis"], e.inputs[1].aval.ndim
            self.ordered_axes = set(range(axis, axis + k))
        return super()._root_scatter(e)

    def _update(self, out_name, idx, val, scope, how):
        dt = self.g.outvars[0].aval.dtype
        sub = idx[0].text if len(idx) == 1 else f"({', '.join(i.text for i in idx)})"
        if how == "scatter_add":
            if dt not in ATOMIC_DTYPES:
                raise NotImplementedError(f"CUDA codegen: scatter_add on {dt.name} needs an "
                                          f"atomic add CUDA does not have")
            scope.emit(f"cuda.atomic.add({out_name}, {sub}, {CTOR[dt]}({val}))")
        elif how in ("scatter_min", "scatter_max") and dt in INT_ATOMIC_DTYPES:
            scope.emit(f"cuda.atomic.{how[-3:]}({out_name}, {sub}, {CTOR[dt]}({val}))")
        else:       # a store, or an ordered update (no other thread has this element)
            super()._update(out_name, idx, val, scope, how)

    # -- the module -----------------------------------------------------------------
    def array_params(self):
        names, types = super().array_params()
        return names, [t.replace("Array(", "").replace(", 0, 'C')", "[::1]")
                       if t.startswith("Array(") else t for t in types]

    def render(self):
        arrays, types = self.array_params()
        dims = [f"d{k}" for k in range(len(self.dim_values))]
        lits = [f"c{k}" for k in range(len(self.lit_values))]     # typed scalars
        sig = "void(" + ", ".join(types + ["int64"] * len(dims) +
                                  [dt for _, dt in self.lit_values]) + ")"
        params = ", ".join(arrays + dims + lits)
        funcs, names = [], []
        for k, (top, _) in enumerate(self.entries):
            fname = self.name if k == 0 else f"{self.name}_{k}"
            names.append(fname)
            funcs += [f"def {fname}({params}):", *top.render(1), "", ""]
        text = "\n".join(funcs)
        src = "\n".join([
            f'"""needle CUDA kernel {self.name}: generated; do not edit."""',
            "import math",
            "import numpy as np",
            "from numba import config, cuda",
            "f32, f64 = np.float32, np.float64",
            "i8, i16, i32, i64 = np.int8, np.int16, np.int32, np.int64",
            "u8, u16, u32, u64 = np.uint8, np.uint16, np.uint32, np.uint64",
            SIM_MATH,
            "INF, NAN = math.inf, math.nan",
            SIM_LIBDEVICE if "libdevice." in text else "",
            IPOW if "ipow(" in text else "",
            SIM_SHARED if "shfl_xor(" in text or "cuda.shared.array" in text else "",
            SHUFFLE if "shfl_xor(" in text else "",
            "",
            f"SIGNATURE = {sig!r}",
            f"ENTRIES = {tuple(names)!r}",
            # A block kernel tells the compiler its block size (maxntid) and
            # asks for 2 resident blocks per SM: at most 128 registers.
            f"LAUNCH_BOUNDS = {(self.threads, 2) if self.threads else None!r}",
            "",
            "",
            text.rstrip() + "\n",
        ])
        # A grid-stride kernel computes an element's values and stores them in
        # one thread, as the CPU loop does: its aligned inputs may be written
        # in place (donation). A block kernel's threads read each other's
        # elements: none.
        aligned = self.aligned_inputs() if self.threads is None and len(names) == 1 else ()
        return CudaKernelSource(self.name, src, sig, list(self.dim_values), False, aligned,
                                tuple(self.lit_values), entries=tuple(names), work=tuple(w for _, w in self.entries),
                                threads=(self.threads,) * len(names),
                                scratch=tuple(getattr(self, "scratch", ())))
