"""Stage codegen (CPU): a kernel group (a sub-Graph) becomes the source of
one self-contained Python module holding one `numba.njit` kernel.

Input: the group's sub-Graph (its invars are the kernel's input arrays, its
outvars its outputs) and a name.
Output: a KernelSource: module text, the explicit Numba signature, the
`dims` vector (every size the kernel needs, passed at run time, so a new batch
size reuses the compiled kernel), the float literals (`lits`, a float64
vector argument), and `split`: where the kernel's rows can be shared
between threads.

`KernelEmitter` is the backend-neutral elemental emitter (codegen/emitter.py:
loop nests, indexing, reductions, scatters, scans) with the CPU's
strategies:
- a reduction that keeps its operand's last axis (a column sum) is computed
  first, in the operand's memory order, into a temporary (`_strided_reduction`);
- float max / min reductions accumulate in the ordered-integer domain
  (`_ordered_minmax`): LLVM vectorises an integer max, while a NaN-
  propagating float compare-and-select chain stays scalar and latency-bound
  (no 'nnan' flag): 7x faster on a row max;
- a row sum of an expensive value the output also uses (softmax's exp)
  leaves that value in the output buffer for the output's own loop to read
  back (`_plan_output_cache`), instead of computing it twice;
- the row split below; the module (`render`): `njit` with an explicit
  signature, the call-free float32 helpers (fastmath.py) when used.
The fusion cost model (`recompute_factors`, codegen/cpu/backend.py) measures
this emitter, strategies included: a column mean subtracted from its rows
(`x - x.mean(0)`) is fused because its sum is staged, not recomputed.
Threads: every kernel is compiled once, serial and `nogil`. When its
outermost loop (the first axis of its domain, opened at the top of the
function) is the only loop at the top and every output is stored inside it,
the rows of that loop are independent: the loop runs over `range(lo, hi)`,
two extra int64 arguments after dims (and literals), and `split` names the
dims slot of its extent. The runtime then calls the kernel once per chunk of
rows, from a pool of threads (runtime/parallel.py), or once with (0, extent).
A kernel with another loop at the top (a reduction over the split axis: a
full or column sum's accumulation, a scatter's ordered updates, a softmax
row cache filled at the top) or a 0-d output is not split (`split` None, no
extra arguments): it would compute that loop in every chunk, or race on
one element. No `prange`: Numba's parfor lowering cost seconds of compile
per kernel (tens for conv's gradients) and OpenMP made fork() unsafe.
"""
import numpy as np

from ...ir.primitives import reduce_identity
from ..emitter import Emitter, numba_type  # noqa: F401  (numba_type: loop_emit.py)
from ..exprs import CTOR, const
from ..loops import Idx, KernelSource
from . import rules
from .fastmath import FAST32, HELPERS
from .sort import SortRoots


# A kernel that only swaps an input's last two axes runs in tiles of this
# side (`_tiled_transpose`); 1: row by row, as any kernel.
TRANSPOSE_TILE = 16


def _swaps_last_two(perm):
    n = len(perm)
    return n >= 2 and tuple(perm) == tuple(range(n - 2)) + (n - 1, n - 2)


# A kernel group whose one result is a concatenation along a non-leading
# axis stores each part in loops of its own (`_concat_by_parts`) instead of
# selecting among all parts' values per element.
CONCAT_BY_PARTS = True


class KernelEmitter(SortRoots, Emitter):
    rules = rules
    backend = "CPU"
    # The output cache (see the module docstring); emit_kernel emits again
    # without it when a value read back was not stored (`output_cache_complete`).
    reuse_output_cache = True

    def __init__(self, graph, name="kernel"):
        super().__init__(graph, name)
        self.split_loop = None          # (Scope, index, extent) of the loop over rows lo..hi
        self.tiled_rows = False         # the split loop steps over row tiles (_tiled_transpose)

    # -- the domain: its first loop may be split across threads ---------------------
    def _domain(self, shape_var, skip_axis=None, upto=None):
        """Open the loops of the domain (the shape of `shape_var`; only its
        axes before `upto` if given). The first loop opened at the top of
        the function is the candidate split loop (`split_slot` decides)."""
        idx, scope = [], self.root
        for d in range(shape_var.aval.ndim if upto is None else upto):
            if d == skip_axis:
                idx.append(None)
                continue
            i = self.fresh("i")
            ext = self.dim(shape_var, d)
            split = scope is self.root and self.split_loop is None
            scope = self.open_loop(scope, i, ext)
            if split:
                scope.header = f"for {i} in range(lo, hi):"
                self.split_loop = (scope, i, ext)
            idx.append(Idx(i, scope))
        return idx, scope

    def split_slot(self):
        """The dims slot of the split loop's extent if the kernel's rows may
        run on different threads, else None (and the loop runs over its whole
        extent): the split loop must be the only loop at the top of the
        function, no top-level line may loop, and no output may be 0-d (its
        store would sit outside the loop, in every chunk)."""
        if self.split_loop is None:
            return None
        scope, var, ext = self.split_loop
        top = self.root.items
        ok = [it for it in top if not isinstance(it, str)] == [scope] and \
            not any(ln.lstrip().startswith(("for ", "while ")) for it in top
                    if isinstance(it, str) for ln in it.split("\n")) and \
            all(v.aval.ndim for v in self.g.outvars)
        if not ok:
            if self.tiled_rows:
                scope.header = f"for {var} in range(0, {ext}, {TRANSPOSE_TILE}):"
                self.root.items.insert(0, f"hi = {ext}")
            else:
                scope.header = f"for {var} in range({ext}):"
            return None
        return int(ext[1:])

    # -- a concatenation stored by its parts -----------------------------------------
    def emit_body(self):
        outs = self.g.outvars
        e = self.producer.get(outs[0]) if len(outs) == 1 else None
        if e is not None and e.prim.name == "concatenate" and e.params["dimension"] >= 1 \
                and CONCAT_BY_PARTS:
            return self._concat_by_parts(e)
        if e is not None and e.prim.name == "transpose" and len(self.g.eqns) == 1 and \
                e.inputs[0] in self.args and TRANSPOSE_TILE > 1 and \
                _swaps_last_two(e.params["permutation"]):
            return self._tiled_transpose(e)
        return super().emit_body()

    def _tiled_transpose(self, e):
        """A kernel that only swaps the last two axes of an input (a
        matrix's transpose, batched or not), in TRANSPOSE_TILE-square tiles:
        row by row, the input's column is read with a stride of a whole row,
        and where that stride is a power of two every line maps to the same
        few cache sets, so no line survives until the next row reads its
        next element (a 128x512 float32 transpose: 145 us row by row, 52 us
        in 16x16 tiles; numpy's copy of a.T: 146 us)."""
        x, out = e.inputs[0], e.outs[0]
        nd, t = out.aval.ndim, TRANSPOSE_TILE
        self.domain_shape = out.aval.shape
        self.domain_idx = None
        batch, scope = self._domain(out, upto=nd - 2)   # the first is split across threads
        idx = [i.text for i in batch]
        rows, cols = self.dim(out, nd - 2), self.dim(out, nd - 1)
        rb, cb, r, c = self.fresh("rb"), self.fresh("cb"), self.fresh("i"), self.fresh("i")
        if scope is self.root:          # a matrix: its row tiles are split across threads
            scope = scope.child(f"for {rb} in range(lo, hi, {t}):", 1)
            self.split_loop = (scope, rb, rows)
            self.tiled_rows = True
            stop = "hi"
        else:
            scope = scope.child(f"for {rb} in range(0, {rows}, {t}):", 1)
            stop = rows
        scope = scope.child(f"for {cb} in range(0, {cols}, {t}):", 1)
        scope = scope.child(f"for {r} in range({rb}, min({rb} + {t}, {stop})):", t)
        scope = scope.child(f"for {c} in range({cb}, min({cb} + {t}, {cols})):", t)
        src = ", ".join(idx + [c, r])
        dst = ", ".join(idx + [r, c])
        scope.emit(f"o0[{dst}] = {self.args[x]}[{src}]")
        self.reads.setdefault(x, set()).add(tuple(idx + [c, r]))
        self.cur = scope

    def _concat_by_parts(self, e):
        """A group whose one result is a concatenation along axis d >= 1
        (an LSTM gradient's gates, `concatenate_mul`): the loops of the axes
        before d are shared (the first one split across threads as usual),
        and under them each part has its own loops over axes d.. (axis d
        over the part's extent), storing its values at the part's offset.
        As one loop over the whole axis, every element computed all K parts'
        values (clamped reads) and selected one: K times the work and a
        select chain LLVM does not vectorise (the LSTM step's 16x512 gates
        gradient: see CONCAT_BY_PARTS)."""
        out = e.outs[0]
        d, nd = e.params["dimension"], out.aval.ndim
        self.domain_shape = out.aval.shape
        self.domain_idx = None          # no output shares an input's buffer (aligned_inputs)
        outer, scope = self._domain(out, upto=d)
        off = "0"
        for m, x in enumerate(e.inputs):
            n = self.dim(x, d)
            inner, part = scope, list(outer)
            store = list(outer)
            for k in range(d, nd):
                i = self.fresh("i")
                inner = self.open_loop(inner, i, n if k == d else self.dim(out, k))
                part.append(Idx(i, inner))
                store.append(Idx(i if k > d or off == "0" else f"{off} + {i}", inner))
            self.cur = inner
            val, _ = self.value_at(x, tuple(part))
            self._store("o0", store, val, inner)
            self._close(scope, inner)
            if m + 1 < len(e.inputs):
                off = n if off == "0" else self._named(f"{off} + {n}", self.root, prefix="n")
        self.cur = scope

    # -- reductions: the CPU's strategies ----------------------------------------------
    def _emit_reduction(self, e, idx, axes):
        x = e.inputs[0]
        dt = x.aval.dtype
        if e.outs[0].aval.ndim and (x.aval.ndim - 1) not in axes:
            tmp = self._strided_reduction(e, axes)
            scope = self.deepest(i.scope for i in idx)
            return self.define(f"{tmp}[{', '.join(i.text for i in idx)}]", scope), scope
        if e.prim.name in ("reduce_max", "reduce_min") and dt.kind == "f":
            return self._ordered_minmax(e, idx, axes)
        return super()._emit_reduction(e, idx, axes)

    def _strided_reduction(self, e, axes):
        """A reduction that keeps its operand's last axis (a column sum): looping
        over the reduced axes innermost would stride through memory, so it is
        computed first, in the operand's own order, into a temporary array
        shaped like its result; the kernel then reads that array."""
        var = e.outs[0]
        hit = self.memo.get((var, "accumulated"))
        if hit is not None:
            return hit
        x = e.inputs[0]
        dt, name = x.aval.dtype, e.prim.name
        tmp = self.fresh("t")
        shape = ", ".join(self.dim(var, k) for k in range(var.aval.ndim))
        npdt = "np.bool_" if dt == np.bool_ else f"np.{dt.name}"
        self.root.emit(f"{tmp} = np.empty(({shape},), {npdt})\n"
                       f"{tmp}.fill({const(reduce_identity(name, dt), dt)})")
        scope, full = self.root, []
        for d in range(x.aval.ndim):
            i = self.fresh("s")
            scope = self.open_loop(scope, i, self.dim(x, d))
            full.append(Idx(i, scope))
        sub = ", ".join(full[d].text for d in range(x.aval.ndim) if d not in axes)
        self._count(var, scope)

        def body():
            v, _ = self.value_at(x, tuple(full))
            scope.emit(self._combine(name, f"{tmp}[{sub}]", v, dt))
        self._with_scope(scope, body)
        self._close(self.root, scope)
        self.memo[(var, "accumulated")] = tmp
        return tmp

    def _ordered_minmax(self, e, idx, axes):
        """max / min of floats as integers: a float's bits k, with the other
        bits flipped when the sign is set (k ^ ((k >> 31) & 0x7fffffff)),
        order as the floats do, and -0.0 just below +0.0; a NaN lands above
        +inf (sign clear) or below -inf (sign set). So one loop keeps the
        largest and the smallest key (both vectorise), the result is NaN
        when either is beyond an infinity (numpy: any NaN gives NaN), else
        the float of the wanted key. Empty: -inf for max, +inf for min."""
        x, name, dt = e.inputs[0], e.prim.name, e.inputs[0].aval.dtype
        parent = self.deepest(i.scope for i in idx)
        acc = self.fresh("acc")
        parent.emit(f"{acc} = {const(reduce_identity(name, dt), dt)}")
        bits = dt.itemsize * 8
        it, to_int, to_float = ("i32", "_f2i", "_i2f") if bits == 32 else ("i64", "_f2l", "_l2f")
        mask = f"{it}({(1 << (bits - 1)) - 1})"
        inf_key = (0x7F800000 if bits == 32 else 0x7FF0000000000000)
        top, bottom = f"{it}({inf_key})", f"{it}({-inf_key - 1})"
        hi, lo = self.fresh("hi"), self.fresh("lo")
        parent.emit(f"{hi} = {bottom}\n{lo} = {top}")
        parent, inner, full, _ = self._reduce_loops(x, idx, axes)
        self._count(e.outs[0], inner)

        def body():
            v, _ = self.value_at(x, full)
            k = self.fresh("k")
            inner.emit(f"{k} = {to_int}({v})\n"
                       f"{k} = {it}({k} ^ (({k} >> {bits - 1}) & {mask}))\n"
                       f"{hi} = max({hi}, {k})\n{lo} = min({lo}, {k})")
        self._with_scope(inner, body)
        self._close(parent, inner)
        key = hi if name == "reduce_max" else lo
        parent.emit(f"{acc} = {const(float('nan'), dt)} if ({hi} > {top} or {lo} < {bottom}) "
                    f"else {to_float}({it}({key} ^ (({key} >> {bits - 1}) & {mask})))")
        return acc, parent

    # -- the output cache: softmax's exp computed once --------------------------------
    def _plan_output_cache(self, outs, dom):
        """If the group's one full-shape output uses, element for element, an
        expensive value E that a row sum (over the last axis) also reduces,
        the sum's loop stores E into that output and the output's loop reads
        it back: softmax computes exp once per element, not twice."""
        if not self.reuse_output_cache or dom.aval.ndim == 0 or \
                sum(1 for v in outs if v.aval.shape == dom.aval.shape) != 1:
            return
        last = dom.aval.ndim - 1
        for e in self.g.eqns:
            x = e.inputs[0] if e.inputs else None
            if e.prim.name != "reduce_sum" or tuple(e.params["axes"]) != (last,) or \
                    x in self.args or not hasattr(x, "aval") or \
                    x.aval.shape != dom.aval.shape or x.aval.dtype != dom.aval.dtype or \
                    not (self.producer[x].prim.traits.expensive and
                         self.producer[x].prim.traits.elementwise):
                continue
            if self._reaches(dom, x, elementwise_only=True) and self._row_aligned(dom, e.outs[0]):
                self.cached[x] = f"o{outs.index(dom)}"
                return

    def _row_aligned(self, var, red):
        """Whether every path from the row sum `red` to `var` keeps the row
        (elementwise ops, broadcasts along trailing axes, size-1 reshapes):
        then the sum is computed for the output's own row, in the loop that
        stores E into that row (a shifted row, through a slice or a gather,
        would leave the cache unwritten for this one)."""
        ok, todo, seen = False, [var], set()
        while todo:
            v = todo.pop()
            if v is red:
                ok = True
                continue
            e = self.producer.get(v)
            if e is None or v in seen:
                continue
            seen.add(v)
            name, nd = e.prim.name, v.aval.ndim
            if e.prim.kind == "elementwise":
                pass
            elif name == "broadcast_in_dim":
                dims = tuple(e.params["broadcast_dimensions"])
                if dims != tuple(range(len(dims))):
                    return False
            elif name == "reshape":
                src = e.inputs[0].aval.shape
                if [n for n in src if n != 1] != [n for n in v.aval.shape if n != 1] or \
                        (src and v.aval.shape and src[0] != v.aval.shape[0]):
                    return False
            elif self._reaches(v, red):
                return False        # any other way from the sum to the output
            todo += [x for x in e.inputs if hasattr(x, "aval") and x.aval.ndim <= nd]
        return ok

    # -- the module ---------------------------------------------------------------
    def render(self):
        split = self.split_slot()
        arrays, types = self.array_params()
        params = arrays + ["dims"]
        types = types + ["int64[::1]"]
        if self.lit_values:
            params.append("lits")
            types.append("float64[::1]")
        if split is not None:
            params += ["lo", "hi"]
            types += ["int64", "int64"]
        sig = "void(" + ", ".join(types) + ")"
        body = [f"    d{k} = dims[{k}]" for k in range(len(self.dim_values))]
        body += [f"    c{k} = {CTOR[np.dtype(dt)]}(lits[{k}])"
                 for k, (_, dt) in enumerate(self.lit_values)]
        body += self.root.render(1)
        if not body:
            body = ["    pass"]
        # Not 'arcp' (1/sqrt(x) becomes an rsqrt estimate: NaN at 0 and inf, -inf
        # for denormals) nor 'afn' (pow(x, float(int)) becomes powi, a libcall
        # llvmlite leaves unresolved: the kernel segfaults).
        flags = ("{'reassoc', 'contract', 'nsz'}")
        # no_cfunc_wrapper: the runtime calls a kernel through its CPython
        # wrapper (runtime/cpu_device.py entry_point); the C-callable wrapper
        # Numba also builds by default was never called, and cost 4-6% of a
        # model's cold compile (bench_models.py's kernels, one process)
        uses_fast = any(h + "(" in ln for ln in body
                        for h in list(FAST32.values()) + ["_f2i", "_i2f", "_f2l", "_l2f"])
        src = "\n".join([
            f'"""needle CPU kernel {self.name}: generated; do not edit."""',
            "import math",
            "import numba",
            "import numpy as np",
            "f32, f64 = np.float32, np.float64",
            "i8, i16, i32, i64 = np.int8, np.int16, np.int32, np.int64",
            "u8, u16, u32, u64 = np.uint8, np.uint16, np.uint32, np.uint64",
            "INF, NAN = math.inf, math.nan",
            HELPERS if uses_fast else "",
            "",
            f"@numba.njit({sig!r}, cache=True, error_model='numpy', nogil=True,",
            f"           no_cfunc_wrapper=True, fastmath={flags})",
            f"def {self.name}({', '.join(params)}):",
            *body,
            "",
        ])
        return KernelSource(self.name, src, sig, list(self.dim_values), False,
                            self.aligned_inputs(), tuple(self.lit_values), split=split)


def emit_kernel(graph, name="kernel", emitted=None):
    """The KernelSource of a group sub-Graph; `emitted`: a KernelEmitter of
    this sub-Graph (or one equal up to the names of its Vars) whose body is
    already emitted (the cost model's: codegen/cpu/backend.py), rendered
    instead of emitting the body again."""
    em = emitted
    if em is None:
        em = KernelEmitter(graph, name)
        em.emit_body()
    em.name = name
    ks = em.render()
    if not em.output_cache_complete():
        em = KernelEmitter(graph, name)
        em.reuse_output_cache = False      # compute the value twice instead
        ks = em.module()
    return ks


def cost_emitter(graph):
    """The KernelEmitter of group `graph` with its body emitted: what the
    cost model measures (`recompute_factors`) and `emit_kernel` renders."""
    em = KernelEmitter(graph)
    em.emit_body()
    return em


def recompute_factors(graph):
    """{Var: how many times the kernel computes each element of it}, measured
    by emitting the group: 1.0 means no recomputation. A reduction counts the
    runs of its loop body against the size of its operand."""
    return cost_emitter(graph).recompute_factors()
