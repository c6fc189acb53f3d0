"""Stage codegen (CPU): a kernel group (a sub-Graph) becomes the source of
one self-contained Python module holding one `numba.njit` kernel.

Input: the group's sub-Graph (its invars are the kernel's input arrays, its
outvars its outputs) and a name.
Output: a KernelSource: module text, the explicit Numba signature, the
`dims` vector (every size the kernel needs, passed at run time, so a new batch
size reuses the compiled kernel), and `split`: where the kernel's rows can be
shared between threads.

How it works: the kernel loops over the outputs' shape (the domain) and asks
for each output's value at the loop indices. `value_at(var, index)` emits the
statements computing `var` at an index, recursing into producers; each
statement is placed in the outermost loop its inputs depend on (so a row
maximum is computed once per row, before the inner loop), and memoised per
(var, index). A reduction opens its own loop at the place its index allows.
This is the elemental emitter of XLA's CPU backend, in miniature: fusing more
equations into a group needs no new code here.

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

from ...ir.core import Lit
from ..loops import Idx, KernelSource, Scope, reshape_groups
from ...ir.primitives import SCATTERS, ScatterMode, reduce_identity
from . import rules
from .fastmath import FAST32, HELPERS
from .rules import CTOR, const
from .sort import SortRoots

def numba_type(aval):
    base = "boolean" if aval.dtype == np.bool_ else aval.dtype.name
    if aval.ndim == 0:
        return f"Array({base}, 0, 'C')"
    return f"{base}[{', '.join([':'] * (aval.ndim - 1) + ['::1'])}]"


class KernelEmitter(SortRoots):
    # The per-primitive expression table for binary primitives; a backend that
    # extends this emitter (codegen/cuda) swaps it, and overrides unary_expr.
    binary_rules = rules.BINARY_RULES
    # Column sums go through a temporary array (see _strided_reduction).
    stage_strided_reductions = True
    # Float max / min reductions accumulate in the ordered-integer domain
    # (`_ordered_minmax`): LLVM vectorises an integer max, while a NaN-
    # propagating float compare-and-select chain stays scalar and latency-
    # bound (no 'nnan' flag): 7x faster on a row max.
    ordered_int_minmax = True
    # A row sum of an expensive value the output also uses (softmax's exp)
    # leaves that value in the output buffer for the output's own loop to
    # read back (`_plan_output_cache`), instead of computing it twice.
    reuse_output_cache = True
    # How a 0-d array parameter is indexed.
    index_0d = "()"
    # Float literals are kernel arguments, not source text: programs that
    # differ only in a constant (mean's 1/N for a new batch size, a step
    # size) share one compiled kernel. Integer literals stay in the source,
    # where LLVM turns a division by a constant into a multiply.
    runtime_literals = True

    def __init__(self, graph, name="kernel", parallel=False):
        self.g = graph
        self.name = name
        self.parallel = parallel        # unused on CPU (no prange); CUDA passes False
        self.split_loop = None          # (Scope, index, extent) of the loop over rows lo..hi
        self.producer = {v: e for e in graph.eqns for v in e.outs}
        self.args = {v: f"a{k}" for k, v in enumerate(graph.invars)}
        self.root = Scope(None, None)
        self.cur = self.root
        self.memo = {}
        self.dim_slots = {}
        self.dim_values = []
        self.counter = 0
        self.executions = {}     # Var -> how often its defining code runs
        self.reads = {}          # input Var -> set of index tuples read
        self.domain_idx = None
        self.cached = {}         # Var -> the output array holding its values per element
        self.cache_stored = set()    # cached Vars whose store the row sum's loop emitted
        self.cache_read = set()      # cached Vars the output's loop reads back
        self.lit_names = {}      # (bits, dtype) -> name of a runtime literal
        self.lit_values = []     # [(value, dtype name)], in argument order

    # -- helpers --------------------------------------------------------------
    def fresh(self, prefix="v"):
        self.counter += 1
        return f"{prefix}_{self.counter}"     # "_" keeps clear of f32, i8, ...

    def dim(self, var, axis):
        key = (var, axis)
        if key not in self.dim_slots:
            self.dim_slots[key] = len(self.dim_values)
            self.dim_values.append(int(var.aval.shape[axis]))
        return f"d{self.dim_slots[key]}"

    def deepest(self, scopes):
        best = self.root
        for s in scopes:
            if s.level > best.level:
                best = s
        return best

    def literal(self, value, dtype):
        """A float literal as a kernel argument `cK` (see runtime_literals)."""
        dtype = np.dtype(dtype)
        if not self.runtime_literals or dtype not in (np.float32, np.float64):
            return const(value, dtype)
        key = (np.float64(value).tobytes(), dtype.name)
        if key not in self.lit_names:
            self.lit_names[key] = f"c{len(self.lit_values)}"
            self.lit_values.append((float(value), dtype.name))
        return self.lit_names[key]

    def define(self, expr, scope, dtype=None, prefix="v"):
        name = self.fresh(prefix)
        if dtype is not None and np.dtype(dtype) != np.bool_:
            expr = f"{CTOR[np.dtype(dtype)]}({expr})"
        scope.emit(f"{name} = {expr}")
        return name

    def open_loop(self, parent, var, extent, split=False):
        """A loop over `extent` (a dims name `dK`) inside `parent`; with
        `split`, over the rows lo..hi the caller passes (see the module
        docstring)."""
        size = self.dim_values[int(extent[1:])] if extent.startswith("d") else 1
        return parent.child(f"for {var} in range({'lo, hi' if split else extent}):", size)

    def _count(self, var, scope):
        self.executions[var] = self.executions.get(var, 0) + scope.count

    # -- values ---------------------------------------------------------------
    def value_at(self, var, idx):
        """(name, scope) of `var` at index `idx` (tuple of Idx)."""
        if isinstance(var, Lit):
            return self.literal(var.val, var.aval.dtype), self.root
        key = (var, tuple(i.text for i in idx))
        hit = self.memo.get(key)
        if hit is not None and hit[1] in self.cur.chain():
            return hit
        if var in self.cached and key[1] == self.domain_idx:
            # left in the output by the row sum's loop, which runs before
            # (checked once the body is emitted: `output_cache_complete`)
            self.cache_read.add(var)
            scope = self.deepest(i.scope for i in idx)
            out = (self.define(f"{self.cached[var]}[{', '.join(key[1])}]", scope), scope)
            self.memo[key] = out
            return out
        if var in self.args:
            self.reads.setdefault(var, set()).add(key[1])
            scope = self.deepest(i.scope for i in idx)
            sub = ", ".join(i.text for i in idx) if idx else self.index_0d
            out = (self.define(f"{self.args[var]}[{sub}]", scope), scope)
        else:
            e = self.producer[var]
            rule = getattr(self, "_emit_" + e.prim.name, None)
            if rule is None:
                rule = self._emit_elementwise
            out = rule(e, idx)
            if e.prim.kind != "reduction":
                self._count(var, out[1])
        self.memo[key] = out
        return out

    def operand(self, x, idx):
        return self.value_at(x, () if x.aval.ndim == 0 else idx)

    def _emit_elementwise(self, e, idx):
        vals = [self.operand(x, idx) for x in e.inputs]
        scope = self.deepest(s for _, s in vals)
        names = [n for n, _ in vals]
        dt_in = e.inputs[0].aval.dtype
        name = e.prim.name
        if name == "div" and dt_in.kind == "f" and vals[1][1].level < vals[0][1].level:
            # Dividing by a value of an outer loop (softmax's row sum): take
            # its reciprocal once there and multiply inside (within 1 ulp for
            # normal divisors; the reciprocal of a denormal overflows).
            r = self.define(f"{const(1, dt_in)} / {names[1]}", vals[1][1], dt_in)
            return self.define(f"{names[0]} * {r}", scope, e.outs[0].aval.dtype), scope
        if name in rules.UNARY_RULES:
            expr = self.unary_expr(name, names[0], dt_in)
        elif name in self.binary_rules:
            expr = self.binary_rules[name](names[0], names[1], dt_in)
        else:
            raise NotImplementedError(f"{self.backend} codegen has no emit rule for "
                                      f"primitive '{name}'")
        return self.define(expr, scope, e.outs[0].aval.dtype), scope

    backend = "CPU"

    def unary_expr(self, name, x, dt):
        return rules.unary(name, x, dt)

    def _emit_integer_pow(self, e, idx):
        n, s = self.operand(e.inputs[0], idx)
        dt = e.outs[0].aval.dtype
        return self.define(rules.integer_pow(n, e.params["y"], dt), s, dt), s

    def _emit_convert_element_type(self, e, idx):
        n, s = self.operand(e.inputs[0], idx)
        src, dst = e.inputs[0].aval.dtype, e.outs[0].aval.dtype
        return self.define(rules.convert(n, src, dst), s), s

    def _emit_bitcast_convert_type(self, e, idx):
        n, s = self.operand(e.inputs[0], idx)
        src, dst = e.inputs[0].aval.dtype, e.outs[0].aval.dtype
        return self.define(self.bitcast_expr(n, src, dst), s), s

    def bitcast_expr(self, x, src, dst):
        return rules.bitcast(x, src, dst)

    def _emit_threefry2x32(self, e, idx):
        vals = [self.operand(x, idx) for x in e.inputs]
        kscope = self.deepest(s for _, s in vals[:2])      # the key schedule: once
        scope = self.deepest(s for _, s in vals)
        expr = rules.threefry2x32([n for n, _ in vals], e.params["output"],
                                  kscope.emit, scope.emit, self.fresh)
        return self.define(expr, scope, e.outs[0].aval.dtype), scope

    def _emit_select(self, e, idx):
        vals = [self.operand(x, idx) for x in e.inputs]
        scope = self.deepest(s for _, s in vals)
        return self.define(rules.select(*[n for n, _ in vals]), scope), scope

    # -- structural: remap the index ---------------------------------------------
    def _emit_broadcast_in_dim(self, e, idx):
        x = e.inputs[0]
        bd = e.params["broadcast_dimensions"]
        xi = tuple(Idx("0", self.root) if x.aval.shape[i] == 1 else idx[b]
                   for i, b in enumerate(bd))
        return self.value_at(x, xi)

    def _emit_transpose(self, e, idx):
        perm = e.params["permutation"]
        xi = [None] * len(perm)
        for k, p in enumerate(perm):
            xi[p] = idx[k]
        return self.value_at(e.inputs[0], tuple(xi))

    def _emit_slice(self, e, idx):
        xi = []
        for i, s, st in zip(idx, e.params["start_indices"],
                            e.params["strides"] or (1,) * len(idx)):
            t = i.text if st == 1 else f"{i.text} * {st}"
            xi.append(Idx(f"({t} + {s})" if s else t, i.scope))
        return self.value_at(e.inputs[0], tuple(xi))

    def _emit_rev(self, e, idx):
        x = e.inputs[0]
        xi = list(idx)
        for d in e.params["dimensions"]:
            xi[d] = Idx(f"({self.dim(x, d)} - 1 - {idx[d].text})", idx[d].scope)
        return self.value_at(x, tuple(xi))

    def _emit_reshape(self, e, idx):
        x, out = e.inputs[0], e.outs[0]
        xs, os_ = x.aval.shape, out.aval.shape
        groups = reshape_groups(xs, os_)
        if groups is None:              # (zero-size axes) one group: flatten all
            groups = [(list(range(len(xs))), list(range(len(os_))))]
        xi = [None] * len(xs)
        for ins, outs in groups:
            # the group's flat index over its output axes, unravelled over its
            # input axes: a split (576 -> 9 x 64) costs a multiply-add, a merge
            # one divmod; axes mapped one to one cost nothing
            real_in = [d for d in ins if xs[d] != 1]
            real_out = [d for d in outs if os_[d] != 1]
            for d in ins:
                if xs[d] == 1:
                    xi[d] = Idx("0", self.root)
            if not real_in:
                continue
            if len(real_in) == 1 and len(real_out) == 1:
                xi[real_in[0]] = idx[real_out[0]]
                continue
            scope = self.deepest([self.root] + [idx[d].scope for d in real_out])
            flat = None
            for d in real_out:
                flat = idx[d].text if flat is None else \
                    f"({flat}) * {self.dim(out, d)} + {idx[d].text}"
            f = self.define(flat or "0", scope, prefix="f")
            for k, d in enumerate(reversed(real_in)):
                if k == len(real_in) - 1:
                    xi[d] = Idx(f, scope)
                    break
                n = self.dim(x, d)
                xi[d] = Idx(self.define(f"{f} % {n}", scope, prefix="f"), scope)
                f = self.define(f"{f} // {n}", scope, prefix="f")
        return self.value_at(x, tuple(xi))

    def _emit_iota(self, e, idx):
        i = idx[e.params["dimension"]]
        return self.define(i.text, i.scope, e.outs[0].aval.dtype), i.scope

    def _clamp(self, t, n):
        return f"min(max({t}, 0), {n} - 1)"

    def _emit_concatenate(self, e, idx):
        d = e.params["dimension"]
        i = idx[d]
        parts, off = [], "0"            # (value, scope, first index of the part)
        for x in e.inputs:
            if x.aval.shape[d] == 0:
                continue
            n = self.dim(x, d)
            local = i.text if off == "0" else f"({i.text} - ({off}))"
            xi = list(idx)
            xi[d] = Idx(self._clamp(local, n), i.scope)
            val, s = self.value_at(x, tuple(xi))
            parts.append((val, s, off))
            off = n if off == "0" else f"{off} + {n}"
        if not parts:                   # an empty result: the loop never runs
            return const(0, e.outs[0].aval.dtype), self.root
        expr = parts[-1][0]
        for k in range(len(parts) - 2, -1, -1):
            expr = f"({parts[k][0]} if {i.text} < {parts[k + 1][2]} else {expr})"
        scope = self.deepest([i.scope] + [p[1] for p in parts])
        return self.define(expr, scope), scope

    def _emit_pad(self, e, idx):
        x, padval = e.inputs
        pv, ps = self.value_at(padval, ())
        if x.aval.size == 0:
            return pv, ps
        conds, xi = [], []
        for d, (i, (lo, hi, it)) in enumerate(zip(idx, e.params["padding_config"])):
            n = self.dim(x, d)
            t = f"({i.text} - {lo})" if lo else i.text
            if it == 0 and lo == 0 and hi == 0:
                xi.append(i)
                continue
            if it:
                conds.append(f"{t} >= 0 and {t} % {it + 1} == 0 and {t} // {it + 1} < {n}")
                src = f"{t} // {it + 1}"
            else:
                conds.append(f"{t} >= 0 and {t} < {n}")
                src = t
            xi.append(Idx(self._clamp(src, n), i.scope))
        xv, xs = self.value_at(x, tuple(xi))
        if not conds:                   # no axis padded (or 0-d): `if ()` would be False
            return xv, xs
        scope = self.deepest([xs, ps] + [i.scope for i in idx])
        return self.define(f"({xv} if ({' and '.join(conds)}) else {pv})", scope), scope

    def _emit_gather(self, e, idx):
        x, ind = e.inputs
        axis = e.params["axis"]
        k = ind.aval.ndim
        j, js = self.operand(ind, idx[axis:axis + k])
        n = self.dim(x, axis)
        jj = self.define(f"min(max(i64({j}) + {n} if {j} < 0 else i64({j}), 0), {n} - 1)", js,
                         prefix="j")
        xi = idx[:axis] + (Idx(jj, js),) + idx[axis + k:]
        return self.value_at(x, xi)

    # -- reductions: a loop of their own ----------------------------------------
    def _reduce_loops(self, x, keep_idx, axes):
        """Open loops over `axes` of x inside the scope `keep_idx` allows; return
        (parent scope, innermost loop scope, full index of x)."""
        parent = self.deepest(i.scope for i in keep_idx)
        it = iter(keep_idx)
        full, scope = [], parent
        loops = {}
        for d in range(x.aval.ndim):
            if d in axes:
                r = self.fresh("r")
                scope = self.open_loop(scope, r, self.dim(x, d))
                loops[d] = scope
                full.append(Idx(r, scope))
            else:
                full.append(next(it))
        return parent, scope, tuple(full), loops

    def _close(self, parent, inner):
        s = inner
        while s is not parent:
            s.parent.close(s)
            s = s.parent

    def _with_scope(self, scope, fn):
        saved, self.cur = self.cur, scope
        try:
            return fn()
        finally:
            self.cur = saved

    def _combine(self, name, acc, v, dt):
        """The statement folding v into accumulator `acc` (a name or element)."""
        if name == "reduce_sum":
            return f"{acc} += {v}"
        if name == "reduce_prod":
            return f"{acc} *= {v}"
        if name == "reduce_max":
            return f"{acc} = {rules._fmax(v, acc, dt)}"
        return f"{acc} = {rules._fmin(v, acc, dt)}"

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

    def _emit_reduction(self, e, idx, axes):
        x = e.inputs[0]
        dt = x.aval.dtype
        name = e.prim.name
        if self.stage_strided_reductions and e.outs[0].aval.ndim and \
                (x.aval.ndim - 1) not in axes:
            tmp = self._strided_reduction(e, axes)
            scope = self.deepest(i.scope for i in idx)
            return self.define(f"{tmp}[{', '.join(i.text for i in idx)}]", scope), scope
        parent = self.deepest(i.scope for i in idx)
        acc = self.fresh("acc")
        parent.emit(f"{acc} = {const(reduce_identity(name, dt), dt)}")
        if name in ("reduce_max", "reduce_min") and dt.kind == "f" and self.ordered_int_minmax:
            return self._ordered_minmax(e, idx, axes, acc, parent)
        parent, inner, full, _ = self._reduce_loops(x, idx, axes)

        self._count(e.outs[0], inner)

        def body():
            v, _ = self.value_at(x, full)
            inner.emit(self._combine(name, acc, v, dt))
            if x in self.cached and \
                    tuple(i.text for i in full[:-1]) == self.domain_idx[:-1]:
                inner.emit(f"{self.cached[x]}[{', '.join(i.text for i in full)}] = {v}")
                self.cache_stored.add(x)
        self._with_scope(inner, body)
        self._close(parent, inner)
        if dt != np.bool_ and dt.kind in "iu" and dt.itemsize < 8:
            return self.define(acc, parent, dt), parent
        return acc, parent

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

    def _reaches(self, var, target, elementwise_only=False):
        """Whether `var` is computed from `target`; with elementwise_only, through
        elementwise equations of one shape only (it reads `target` at its own
        index)."""
        seen, todo = set(), [var]
        while todo:
            v = todo.pop()
            if v is target:
                return True
            e = self.producer.get(v)
            if e is None or v in seen or (elementwise_only and e.prim.kind != "elementwise"):
                continue
            seen.add(v)
            todo += [x for x in e.inputs if hasattr(x, "aval") and
                     (not elementwise_only or x.aval.shape == v.aval.shape)]
        return False

    def _ordered_minmax(self, e, idx, axes, acc, parent):
        """max / min of floats as integers: a float's bits k, with the other
        bits flipped when the sign is set (k ^ ((k >> 31) & 0x7fffffff)),
        order as the floats do, and -0.0 just below +0.0; a NaN lands above
        +inf (sign clear) or below -inf (sign set). So one loop keeps the
        largest and the smallest key (both vectorise), the result is NaN
        when either is beyond an infinity (numpy: any NaN gives NaN), else
        the float of the wanted key. Empty: -inf for max, +inf for min."""
        x, name, dt = e.inputs[0], e.prim.name, e.inputs[0].aval.dtype
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

    def _emit_reduce_sum(self, e, idx):
        return self._emit_reduction(e, idx, e.params["axes"])

    _emit_reduce_prod = _emit_reduce_max = _emit_reduce_min = _emit_reduce_sum

    def _emit_argmax(self, e, idx):
        x = e.inputs[0]
        dt = x.aval.dtype
        axis = e.params["axis"]
        parent = self.deepest(i.scope for i in idx)
        best, bi = self.fresh("best"), self.fresh("bi")
        init = reduce_identity("reduce_max" if e.prim.name == "argmax" else "reduce_min", dt)
        parent.emit(f"{best} = {const(init, dt)}\n{bi} = 0")
        parent, inner, full, loops = self._reduce_loops(x, idx, (axis,))
        r = full[axis].text
        cmp = ">" if e.prim.name == "argmax" else "<"
        self._count(e.outs[0], inner)

        def body():
            v, _ = self.value_at(x, full)
            nan = f" or ({v} != {v} and {best} == {best})" if dt.kind == "f" else ""
            inner.emit(f"if {v} {cmp} {best}{nan}:\n    {best} = {v}\n    {bi} = {r}")
        self._with_scope(inner, body)
        self._close(parent, inner)
        return self.define(bi, parent, e.outs[0].aval.dtype), parent

    _emit_argmin = _emit_argmax

    # -- roots with their own loop structure ------------------------------------
    def _domain(self, shape_var, skip_axis=None):
        """Open the loops of the domain (the shape of `shape_var`). The first
        loop opened at the top of the function is the candidate split loop
        (`split_slot` decides)."""
        idx, scope = [], self.root
        for d in range(shape_var.aval.ndim):
            if d == skip_axis:
                idx.append(None)
                continue
            i = self.fresh("i")
            ext = self.dim(shape_var, d)
            split = scope is self.root and self.split_loop is None
            scope = self.open_loop(scope, i, ext, split=split)
            if split:
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
            scope.header = f"for {var} in range({ext}):"
            return None
        return int(ext[1:])

    def _store(self, out_name, idx, val, scope):
        sub = ", ".join(i.text for i in idx) if idx else self.index_0d
        scope.emit(f"{out_name}[{sub}] = {val}")

    def emit_body(self):
        outs = self.g.outvars
        roots = [self.producer.get(v) for v in outs]
        special = [e for e in roots if e is not None and e.prim.traits.own_loop]
        if special:
            if any(self.producer.get(v) is not special[0] for v in outs):
                raise NotImplementedError(f"{special[0].prim.name} must be alone in its "
                                          f"kernel group")
            root = special[0].prim.name
            getattr(self, "_root_" + ("scatter" if root in SCATTERS else root))(special[0])
            return
        # The domain is the largest output; every other output's shape must be a
        # prefix of it (a row sum beside the rows), stored in the loop of its
        # last axis, or at the top for a 0-d result.
        dom = max(outs, key=lambda v: v.aval.ndim)
        shape = dom.aval.shape
        bad = [v.aval.shape for v in outs if v.aval.shape != shape[:v.aval.ndim]]
        if bad:
            raise NotImplementedError(f"kernel group outputs of shapes {bad} and {shape}: "
                                      f"not prefixes of one loop domain")
        self.domain_shape = shape
        self._plan_output_cache(list(outs), dom)
        idx, scope = self._domain(dom)
        self.cur = scope
        self.domain_idx = tuple(i.text for i in idx)
        # Every value first, then the stores: an output may share its buffer
        # with an aligned input (donation), which must be read before written.
        vals = [self.value_at(v, tuple(idx[:v.aval.ndim]))[0] for v in outs]
        for k, (v, val) in enumerate(zip(outs, vals)):
            n = v.aval.ndim
            self._store(f"o{k}", idx[:n], val, idx[n - 1].scope if n else self.root)

    def _root_scatter(self, e):
        x, ind, upd = e.inputs
        out = e.outs[0]
        axis = e.params["axis"]
        idx, scope = self._domain(out)
        self.cur = scope
        v, _ = self.value_at(x, tuple(idx))
        self._store("o0", idx, v, scope)
        self._close(self.root, scope)          # the copy finishes before any update
        # Updates in order, serially: the last write wins, repeated adds accumulate.
        self.cur = self.root
        uidx, uscope = self._domain(upd)
        self.cur = uscope
        k = ind.aval.ndim
        j, js = self.operand(ind, tuple(uidx[axis:axis + k]))
        n = self.dim(x, axis)
        wrapped = f"i64({j}) + {n} if {j} < 0 else i64({j})"
        drop = e.params["mode"] == ScatterMode.DROP
        jj = self.define(wrapped if drop else f"min(max({wrapped}, 0), {n} - 1)", js,
                         prefix="j")
        u, _ = self.value_at(upd, tuple(uidx))
        target = uidx[:axis] + [Idx(jj, js)] + uidx[axis + k:]
        if drop:                # an update out of range is skipped (mode="drop")
            guard = uscope.child(f"if {jj} >= 0 and {jj} < {n}:")
            self._update("o0", target, u, guard, e.prim.name)
            uscope.close(guard)
        else:
            self._update("o0", target, u, uscope, e.prim.name)

    def _update(self, out_name, idx, val, scope, how):
        """One scatter update of out[idx] by `val`: scatter writes it, the
        others combine it with the current value (add, mul, NaN-propagating
        min / max)."""
        sub = ", ".join(i.text for i in idx)
        cur = f"{out_name}[{sub}]"
        dt = self.g.outvars[0].aval.dtype
        if how == "scatter":
            scope.emit(f"{cur} = {val}")
        elif how == "scatter_add":
            scope.emit(f"{cur} += {val}")
        elif how == "scatter_mul":
            scope.emit(f"{cur} *= {val}")
        else:
            u = self.define(val, scope, dt) if not val.isidentifier() else val
            combine = rules._fmax if how == "scatter_max" else rules._fmin
            scope.emit(f"{cur} = {combine(u, cur, dt)}")

    # -- the module ---------------------------------------------------------------
    def array_params(self):
        """(names, Numba types) of the kernel's array parameters: inputs a0.., outputs o0.."""
        names = [f"a{k}" for k in range(len(self.g.invars))] + \
                [f"o{k}" for k in range(len(self.g.outvars))]
        types = [numba_type(v.aval) for v in self.g.invars + self.g.outvars]
        return names, types

    def module(self):
        self.emit_body()
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
            f"           fastmath={flags})",
            f"def {self.name}({', '.join(params)}):",
            *body,
            "",
        ])
        return KernelSource(self.name, src, sig, list(self.dim_values), False,
                            self.aligned_inputs(), tuple(self.lit_values), split=split)

    def output_cache_complete(self):
        """Whether every value read back from an output (the output cache)
        was stored there by its row sum's loop: the plan is made before the
        body is emitted, and the store needs the sum's loop to run over the
        output's own row (a size-1 axis read through a broadcast as index 0
        does not), so a read without its store is possible."""
        return self.cache_read <= self.cache_stored

    def aligned_inputs(self):
        """(input, output) position pairs where the output may take the
        input's buffer when the caller donates it: the input has the
        output's shape and dtype, the kernel reads it only at the element it
        stores (the domain index), and no other output reads it. The store
        of that output depends on the loads of its element, so no variant
        (a vectorised loop, chunks on threads) can reorder it before them; a
        second output reading the same input could be stored first."""
        shape = getattr(self, "domain_shape", None)
        if self.cached or self.domain_idx is None:
            return ()           # the output is written before the inputs are all read
        pairs = []
        for k, v in enumerate(self.g.invars):
            if v.aval.shape != shape or not self.reads.get(v, set()) <= {self.domain_idx}:
                continue
            readers = [j for j, o in enumerate(self.g.outvars) if self._reaches(o, v)]
            if len(readers) == 1 and self.g.outvars[readers[0]].aval.dtype == v.aval.dtype \
                    and self.g.outvars[readers[0]].aval.shape == shape:
                pairs.append((k, readers[0]))
        return tuple(pairs)


def emit_kernel(graph, name="kernel"):
    """The KernelSource of a group sub-Graph."""
    em = KernelEmitter(graph, name)
    ks = em.module()
    if not em.output_cache_complete():
        em = KernelEmitter(graph, name)
        em.reuse_output_cache = False      # compute the value twice instead
        ks = em.module()
    return ks


def recompute_factors(graph):
    """{Var: how many times the kernel computes each element of it}, measured
    by emitting the group: 1.0 means no recomputation. A reduction counts the
    runs of its loop body against the size of its operand."""
    em = KernelEmitter(graph)
    em.emit_body()
    out = {}
    producer = em.producer
    for v, n in em.executions.items():
        e = producer[v]
        natural = e.inputs[0].aval.size if e.prim.kind == "reduction" else v.aval.size
        out[v] = n / max(natural, 1)
    return out
