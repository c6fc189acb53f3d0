"""Stage codegen: the backend-neutral elemental emitter: a kernel group (a
sub-Graph) becomes the statements of a loop nest, which a backend's emitter
(codegen/cpu/emit.py, codegen/cuda/emit.py) renders as one Numba module.

Input: the group's sub-Graph (its invars are the kernel's input arrays a0..,
its outvars its outputs o0..) and a name.
Output: after `emit_body()`, the emitter's state: the Scope tree of
statements (`root`), the sizes the kernel reads at run time (`dim_values`,
named d0..), the float literals passed as arguments (`lit_values`, named
c0..), how often each value's code runs (`executions`: fusion's recompute
measure) and which input elements are read (`reads`: donation); `module()`
= `emit_body()` then the backend's `render()`, a KernelSource.

How it works: the kernel loops over the outputs' shape (the domain) and asks
for each output's value at the loop indices. `value_at(var, index)` emits the
statements computing `var` at an index, recursing into producers; each
statement is placed in the outermost loop its inputs depend on (so a row
maximum is computed once per row, before the inner loop), and memoised per
(var, index). A reduction opens its own loop at the place its index allows
(reductions.py); a root with a loop of its own (a scatter, a scan) is
emitted by its `_root_<name>` (roots.py; sort: each backend's sort.py). This
is the elemental emitter of XLA's CPU backend, in miniature: fusing more
equations into a group needs no new code here.

What a backend provides (hooks): `rules`, its expression table (a module:
UNARY_RULES, unary, BINARY_RULES, bitcast, integer_pow, convert, select,
threefry2x32); `_domain` (how the domain's loops are opened: plain loops
here, a grid-stride loop on CUDA); `_store`; `_plan_output_cache` (keeping
an expensive value in the output buffer: none here, CPU's strategy);
`_root_sort`; `render()`.
"""
import numpy as np

from ..ir.core import Graph, Lit
from ..ir.primitives import SCATTERS
from .exprs import CTOR, const
from .loops import Idx, Scope, reshape_groups
from .reductions import Reductions
from .roots import OwnLoopRoots


def numba_type(aval):
    base = "boolean" if aval.dtype == np.bool_ else aval.dtype.name
    if aval.ndim == 0:
        return f"Array({base}, 0, 'C')"
    return f"{base}[{', '.join([':'] * (aval.ndim - 1) + ['::1'])}]"


class Emitter(Reductions, OwnLoopRoots):
    rules = None            # the backend's expression table (see the module docstring)
    backend = None          # its name, in errors
    # How a 0-d array parameter is indexed.
    index_0d = "()"

    def __init__(self, graph, name="kernel"):
        self.g = graph
        self.name = name
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
        self.index_names = {}    # (index expression, Scope) -> its name (`_named`)

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
        """A float literal as a kernel argument `cK`: programs that differ
        only in a constant (mean's 1/N for a new batch size, a step size)
        share one compiled kernel. Integer literals stay in the source, where
        LLVM turns a division by a constant into a multiply."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
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

    def open_loop(self, parent, var, extent):
        """A loop over `extent` (a dims name `dK`) inside `parent`."""
        size = self.dim_values[int(extent[1:])] if extent.startswith("d") else 1
        return parent.child(f"for {var} in range({extent}):", size)

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
            sub = ", ".join(i.text if i.text.isidentifier() or i.text.isdigit() else
                            self._named(i.text, i.scope) for i in idx) if idx else self.index_0d
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
            r = self._named(f"{CTOR[np.dtype(dt_in)]}({const(1, dt_in)} / {names[1]})", vals[1][1],
                            prefix="r")         # once per divisor (Adam's bias corrections)
            return self.define(f"{names[0]} * {r}", scope, e.outs[0].aval.dtype), scope
        if name in self.rules.UNARY_RULES:
            expr = self.rules.unary(name, names[0], dt_in)
        elif name in self.rules.BINARY_RULES:
            expr = self.rules.BINARY_RULES[name](names[0], names[1], dt_in)
        else:
            raise NotImplementedError(f"{self.backend} codegen has no emit rule for "
                                      f"primitive '{name}'")
        return self.define(expr, scope, e.outs[0].aval.dtype), scope

    def _emit_integer_pow(self, e, idx):
        n, s = self.operand(e.inputs[0], idx)
        dt = e.outs[0].aval.dtype
        return self.define(self.rules.integer_pow(n, e.params["y"], dt), s, dt), s

    def _emit_convert_element_type(self, e, idx):
        n, s = self.operand(e.inputs[0], idx)
        src, dst = e.inputs[0].aval.dtype, e.outs[0].aval.dtype
        return self.define(self.rules.convert(n, src, dst), s), s

    def _emit_bitcast_convert_type(self, e, idx):
        n, s = self.operand(e.inputs[0], idx)
        src, dst = e.inputs[0].aval.dtype, e.outs[0].aval.dtype
        return self.define(self.rules.bitcast(n, src, dst), s), s

    def _emit_threefry2x32(self, e, idx):
        vals = [self.operand(x, idx) for x in e.inputs]
        kscope = self.deepest(s for _, s in vals[:2])      # the key schedule: once
        scope = self.deepest(s for _, s in vals)
        expr = self.rules.threefry2x32([n for n, _ in vals], e.params["output"],
                                       kscope.emit, scope.emit, self.fresh)
        return self.define(expr, scope, e.outs[0].aval.dtype), scope

    def _emit_select(self, e, idx):
        vals = [self.operand(x, idx) for x in e.inputs]
        scope = self.deepest(s for _, s in vals)
        return self.define(self.rules.select(*[n for n, _ in vals]), scope), scope

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

    def _named(self, expr, scope, prefix="j"):
        """Pure expression `expr` (index arithmetic, a bounds test, a
        reciprocal), valid in `scope` (the loop of the indices it reads), as a
        name defined once there: a padded or concatenated operand read at
        several places (conv's im2col, pooling's gradient) repeats the same
        clamp and bounds test, which Numba would type and lower, and the loop
        compute, at each place (the same value: only where it is computed
        changes). Cold first call of bench_models.py's ConvNet: 11.45 -> 10.24 s
        CPU, one process, same tree otherwise."""
        name = self.index_names.get((expr, scope))
        if name is None:
            name = self.index_names[expr, scope] = self.define(expr, scope, prefix=prefix)
        return name

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
            xi[d] = Idx(self._named(self._clamp(local, n), i.scope), i.scope)
            val, s = self.value_at(x, tuple(xi))
            parts.append((val, s, off))
            off = n if off == "0" else self._named(f"{off} + {n}", self.root, prefix="n")
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
                cond = f"{t} >= 0 and {t} % {it + 1} == 0 and {t} // {it + 1} < {n}"
                src = f"{t} // {it + 1}"
            else:
                cond = f"{t} >= 0 and {t} < {n}"
                src = t
            conds.append(self._named(f"({cond})", i.scope, prefix="p"))
            xi.append(Idx(self._named(self._clamp(src, n), i.scope), i.scope))
        xv, xs = self.value_at(x, tuple(xi))
        if not conds:                   # no axis padded (or 0-d): `if ()` would be False
            return xv, xs
        scope = self.deepest([xs, ps] + [i.scope for i in idx])
        return self.define(f"({xv} if ({' & '.join(conds)}) else {pv})", scope), scope

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

    # -- the domain and the stores ------------------------------------------------
    def _domain(self, shape_var, skip_axis=None):
        """Open the loops of the domain (the shape of `shape_var`, less
        `skip_axis`); returns (index per axis, innermost scope)."""
        idx, scope = [], self.root
        for d in range(shape_var.aval.ndim):
            if d == skip_axis:
                idx.append(None)
                continue
            i = self.fresh("i")
            scope = self.open_loop(scope, i, self.dim(shape_var, d))
            idx.append(Idx(i, scope))
        return idx, scope

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

    def _plan_output_cache(self, outs, dom):
        """Which values the output buffers hold for the output's own loop to
        read back (`cached`): none here (codegen/cpu/emit.py plans softmax's)."""

    # -- the module ---------------------------------------------------------------
    def array_params(self):
        """(names, Numba types) of the kernel's array parameters: inputs a0.., outputs o0.."""
        names = [f"a{k}" for k in range(len(self.g.invars))] + \
                [f"o{k}" for k in range(len(self.g.outvars))]
        types = [numba_type(v.aval) for v in self.g.invars + self.g.outvars]
        return names, types

    def module(self):
        """The KernelSource of the group: the body, then the backend's module."""
        self.emit_body()
        return self.render()

    def render(self):
        """The KernelSource of the emitted body (each backend's module text)."""
        raise NotImplementedError

    def for_render(self):
        """This emitter, less what only emitting the body needs (the memo,
        the counts), kept to be rendered later (codegen/emissions.py), which
        keys it weakly by its sub-Graph: so it holds a Graph of its own with
        the same equations, not that object."""
        self.memo = self.executions = self.dim_slots = self.lit_names = None
        g = self.g
        self.g = Graph(g.constvars, g.invars, g.eqns, g.outvars)
        return self

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

    def recompute_factors(self):
        """{Var: how many times the emitted body computes each element of it}
        (after emit_body): 1.0 means no recomputation. A reduction counts the
        runs of its loop body against the size of its operand."""
        out = {}
        for v, n in self.executions.items():
            e = self.producer[v]
            natural = e.inputs[0].aval.size if e.prim.kind == "reduction" else v.aval.size
            out[v] = n / max(natural, 1)
        return out
