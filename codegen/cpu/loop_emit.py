"""Stage codegen (CPU): a loop whose bodies are kernels and views only (a
scan, a while_loop) becomes ONE generated Numba function running every
step, with no Python per step.

Input: a control equation of the fused graph (scan or while: its bodies
are fused ClosedGraphs) and the CPU Backend (which emits each group's
serial KernelSource). Output: a `LoopSource` (a KernelSource whose module
holds the driver `kernel`, the bodies' kernels inlined into it), or None
when a body holds a library call, a host step, a nested
control step, a view of a literal, or a group big enough to split across
threads (those keep the runtime's Python loop: runtime/loops.py).

The driver is called once per run of the loop with every buffer it needs,
in the order of `LoopSource.args`, descriptors `(kind, what, shape)` the
runtime fills (`shape`: the driver's shape of that array, see below):
- ("operand", i, shape): the control equation's operand i (a loop
  constant, or a stacked xs whose row xs[t] the driver takes as a view);
- ("carry", j, shape): carry j's buffer holding the initial value, where
  the driver leaves the final value; ("next", j, shape): carry j's second
  buffer (the two swap every step);
- ("ys", k, shape): the stacked ys k, shape (length, ...), row ys[t]
  written in place;
- ("scratch", dtype, shape): a buffer for a value no result holds
  (allocated per run, reused by every step);
- ("fixed", array, None): an array known at compile time (the bodies'
  constants, each kernel's dims and float literals, a literal result);
- ("length", None, None), ("reverse", None, None): the scan's trip count
  and direction (arguments, so a forward and a reverse scan of one body
  share the code).
0-d values are passed as 1-element arrays (shape (1,); a stacked (T,) array
as (T, 1)) and the kernels index them `[0]` instead of `[()]`: a 0-d view of
xs[t] inside Numba (`xs[t:t+1].reshape(())`) costs ~0.4 s of compile.

Per step, every kernel writes its result straight into place when it is a
result (the next carry buffer, or the row ys[t]); a result no kernel
computes (a pass-through, a literal, a second use of a value) is copied
into place (plain loops: Numba compiles `dst[...] = src` for seconds). A
carry whose new value is also a ys (`return h, h`) is written once, into
ys[t], and the next step reads its carry from that row (no copy per step;
`aliased`). The kernels run every row in the driver's thread (a kernel
that may split its rows gets lo = 0, hi = its extent), inlined into the driver (their
locals prefixed `k<n>_`, their parameters bound by assignments): one
function for Numba to compile, where a function per kernel would cost
~0.1 s of compile each; a kernel that cannot be inlined stays a function
of the module (its decorator less the signature and `cache`). The driver
has the kernels' decorator, the explicit signature and `cache=True`: the
kernel cache loads it in a new process without compiling anything. The
groups' modules are merged by their top-level statements (imports,
helpers): equal text once; two different definitions of one name refuse
the loop (None). A generated loop costs ~0.1-0.2 s more to compile than
its kernels alone (measured on 7 small bodies: 1.6 s -> 3.0 s of CPU).
"""
import ast
from dataclasses import dataclass, field

import numpy as np

from ...ir.core import Lit
from ..loops import KernelSource
from .emit import numba_type


@dataclass
class LoopSource(KernelSource):
    """The module of a generated loop (its `kernel` is the driver)."""
    kind: str = "scan"
    args: tuple = ()             # descriptors, in the driver's parameter order
    groups: tuple = ()           # (part, group name, KernelSource, function name or None:
    #                              inlined into the driver)
    aliased: dict = field(default_factory=dict)     # carry j -> the ys k it reads back
    loop_driver = True


class NotLoopable(Exception):
    """A body the generated loop does not handle (the Python loop runs it)."""


@dataclass(frozen=True)
class _Aval:
    shape: tuple
    dtype: np.dtype

    @property
    def ndim(self):
        return len(self.shape)


def _dshape(shape):
    """The driver's shape of an array of `shape`: 0-d as (1,)."""
    return tuple(shape) or (1,)


def _domain_size(sub):
    return max((int(np.prod(v.aval.shape, dtype=np.int64)) for v in sub.outvars + sub.invars),
               default=0)


def _bound_names(node):
    """Names a top-level statement binds."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    out = set()
    for t in getattr(node, "targets", None) or [getattr(node, "target", None)]:
        if t is not None:
            out |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return out


class _ZeroDim(ast.NodeTransformer):
    """x[()] -> x[0]: a 0-d parameter is a 1-element array in the loop."""

    def visit_Subscript(self, node):
        self.generic_visit(node)
        if isinstance(node.slice, ast.Tuple) and not node.slice.elts:
            node.slice = ast.Constant(0)
        return node


def _split_module(ks):
    """([(statement text, names it binds)], decorator keywords, function) of
    a group's kernel module: its top-level statements less the docstring and
    the kernel; the keywords of the kernel's decorator less the signature,
    `cache` and `parallel`; the kernel's ast.FunctionDef, undecorated, with
    its 0-d parameters indexed [0]."""
    tree = ast.parse(ks.source)
    lines = ks.source.split("\n")
    pre, fn = [], None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == ks.name:
            fn = node
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue                                    # the docstring
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])
        pre.append(("\n".join(lines[start - 1:node.end_lineno]), _bound_names(node)))
    if fn is None or len(fn.decorator_list) != 1 or \
            not isinstance(fn.decorator_list[0], ast.Call):
        raise NotLoopable(f"the kernel module of {ks.name} has an unexpected shape")
    kws = tuple(f"{k.arg}={ast.unparse(k.value)}" for k in fn.decorator_list[0].keywords
                if k.arg not in ("cache", "parallel"))
    fn.decorator_list = []
    return pre, kws, ast.fix_missing_locations(_ZeroDim().visit(fn))


# What a kernel inlined into the driver must not hold (its statements run
# in the driver's scope, its parameters bound by assignments).
_NOT_INLINED = (ast.Return, ast.Yield, ast.YieldFrom, ast.Await, ast.Lambda, ast.FunctionDef,
                ast.AsyncFunctionDef, ast.ClassDef, ast.Global, ast.Nonlocal, ast.comprehension)


def _inline(fn, prefix, args):
    """The statements of kernel `fn` called with argument expressions
    `args`, its locals renamed prefix + name; None if it cannot be inlined."""
    a = fn.args
    if a.posonlyargs or a.vararg or a.kwonlyargs or a.kwarg or a.defaults or \
            len(a.args) != len(args) or \
            any(isinstance(n, _NOT_INLINED) for n in ast.walk(fn) if n is not fn):
        return None
    params = [x.arg for x in a.args]
    local = set(params) | {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and
                           isinstance(n.ctx, (ast.Store, ast.Del))}
    for n in ast.walk(fn):
        if isinstance(n, ast.Name) and n.id in local:
            n.id = prefix + n.id
    lines = [f"{prefix}{p} = {x}" for p, x in zip(params, args)]
    for stmt in fn.body:
        lines += ast.unparse(stmt).split("\n")
    return lines


def _copy_lines(dst, src, nd):
    """A copy of C-contiguous array `src` into `dst` of its shape (rank nd,
    0-d as 1-element) as plain loops: Numba compiles `dst[...] = src` for
    seconds."""
    nd = max(nd, 1)
    lines = ["    " * k + f"for q{k} in range({dst}.shape[{k}]):" for k in range(nd)]
    idx = ", ".join(f"q{k}" for k in range(nd))
    return lines + ["    " * nd + f"{dst}[{idx}] = {src}[{idx}]"]


class _Module:
    """The generated module being built: the merged top-level statements,
    the kernels, the driver's parameters."""

    def __init__(self, backend):
        self.backend = backend
        self.pre = {"import numba": None, "import numpy as np": None}   # text -> None, ordered
        self.names = {"numba": "import numba", "np": "import numpy as np"}  # name -> its text
        self.funcs = []
        self.groups = []
        self.kws = None          # the driver's decorator keywords (the kernels')
        self.params = []         # (name, Numba type, descriptor)
        self.counter = 0

    def fresh(self, prefix):
        self.counter += 1
        return f"{prefix}{self.counter}"

    def param(self, prefix, ntype, desc):
        name = self.fresh(prefix)
        self.params.append((name, ntype, desc))
        return name

    def array(self, prefix, kind, what, shape, dtype, dshape=None):
        """A parameter for an array of (shape, dtype), reshaped to `dshape`
        (by default _dshape(shape)) for the driver."""
        ds = tuple(dshape or _dshape(shape))
        return self.param(prefix, numba_type(_Aval(ds, np.dtype(dtype))),
                          (kind, what, ds if ds != tuple(shape) else None))

    def fixed(self, prefix, array):
        a = np.array(array, order="C", copy=True).reshape(_dshape(np.shape(array)))
        return self.param(prefix, numba_type(_Aval(a.shape, a.dtype)), ("fixed", a, None))

    def kernel(self, part, gname, sub, args):
        """The statements running kernel group `sub` (its serial variant) on
        argument expressions `args` (inputs, outputs; dims and literals are
        added): its body inlined into the driver, or a call of it as a
        function of the module when it cannot be (or its decorator differs
        from the first inlined kernel's, which the driver takes)."""
        ks = self.backend.emit(sub, "kernel")
        if self.backend.split_count(ks, _domain_size(sub)) > 1:
            raise NotLoopable(f"group {gname} is large enough to split across threads")
        pre, kws, fn = _split_module(ks)
        for stmt, names in pre:
            if stmt in self.pre:
                continue
            for n in names:
                if self.names.get(n, stmt) != stmt:
                    raise NotLoopable(f"the kernel modules define {n} differently")
            self.pre[stmt] = None
            self.names.update(dict.fromkeys(names, stmt))
        dims = self.fixed("d", np.array(ks.dims, dtype=np.int64).reshape(-1))
        args = list(args) + [dims]
        if ks.lits:
            args.append(self.fixed("l", np.array([x for x, _ in ks.lits], np.float64)))
        if ks.split is not None:            # every row, in the driver's thread
            args += ["0", f"{dims}[{ks.split}]"]
        n = len(self.groups)
        fname = f"_k{n}"
        if self.kws is None:
            self.kws = kws
        lines = _inline(fn, f"k{n}_", args) if kws == self.kws else None
        if lines is None:               # a function of the module
            fn.name = fname
            self.funcs.append(f"@numba.njit({', '.join(kws + ('no_cpython_wrapper=True',))})\n"
                              f"{ast.unparse(fn)}")
            lines = [f"{fname}({', '.join(args)})"]
        else:
            fname = None
        self.groups.append((part, gname, ks, fname))
        return lines

    def value(self, loc, v):
        """The expression of result `v` (a Lit: a fixed array of its shape)."""
        if isinstance(v, Lit):
            return self.fixed("L", np.full(v.aval.shape, v.val, dtype=v.aval.dtype))
        return loc[v]

    def block(self, part, closed, env, dests, lines, prefer_last=False):
        """Emit the statements of one run of fused graph `closed` into
        `lines`. env: {invar: expression}; dests: {result position:
        expression} where a kernel may write that result. Returns ({Var:
        expression}, {result position: the Var a kernel wrote there})."""
        g = closed.graph
        loc = dict(env)
        for v, c in zip(g.constvars, closed.consts):
            loc[v] = self.fixed("g", np.asarray(c, dtype=v.aval.dtype))
        positions = {}
        for j, v in enumerate(g.outvars):
            if not isinstance(v, Lit) and j in dests:
                positions.setdefault(v, []).append(j)
        direct = {}
        for e in g.eqns:
            if e.prim.name == "kernel":
                if any(isinstance(x, Lit) for x in e.inputs):
                    raise NotLoopable("kernel group inputs must be variables")
                outs = []
                for v in e.outs:
                    free = [j for j in positions.get(v, ()) if j not in direct]
                    if free:
                        j = free[-1] if prefer_last else free[0]
                        direct[j] = v
                        loc[v] = dests[j]
                    else:
                        ds = _dshape(v.aval.shape)
                        loc[v] = self.param("m", numba_type(_Aval(ds, v.aval.dtype)),
                                            ("scratch", v.aval.dtype, ds))
                    outs.append(loc[v])
                lines += self.kernel(part, e.params["name"], e.params["graph"],
                                     [loc[x] for x in e.inputs] + outs)
            elif self.backend.is_view(e) and e.prim.name == "reshape" and \
                    not self.backend.is_library(e) and not isinstance(e.inputs[0], Lit):
                v = e.outs[0]
                loc[v] = self.fresh("w")
                lines.append(f"{loc[v]} = {loc[e.inputs[0]]}.reshape("
                             f"{_dshape(v.aval.shape)!r})")
            else:
                raise NotLoopable(f"{e.prim.name} is not a kernel or a view")
        return loc, direct

    def source(self, kind, driver):
        sig = "void(" + ", ".join(t for _, t, _ in self.params) + ")"
        args = ", ".join(n for n, _, _ in self.params)
        kws = ", ".join(self.kws or ("error_model='numpy'", "nogil=True"))
        src = "\n\n".join([
            f'"""needle CPU generated loop ({kind}): its bodies\' kernels inlined into a '
            f'driver running every step; generated, do not edit."""',
            *self.pre, *self.funcs,
            f"@numba.njit({sig!r}, cache=True, {kws})\n"
            f"def kernel({args}):\n" + "".join(f"    {ln}\n" for ln in driver)])
        return src, sig

    def finish(self, kind, driver, aliased):
        src, sig = self.source(kind, driver)
        return LoopSource("kernel", src, sig, [], False, (), (), kind=kind,
                          args=tuple(d for _, _, d in self.params), groups=tuple(self.groups),
                          aliased=aliased)


def _indent(lines, n=1):
    return ["    " * n + ln for ln in lines]


def _scan(e, backend):
    p = e.params
    body = p["body"]
    g = body.graph
    nc, nk = p["num_consts"], p["num_carry"]
    ny = len(g.outvars) - nk
    length = int(p["length"])
    m = _Module(backend)
    ins = g.invars
    env = {}
    for i, v in enumerate(ins[:nc]):
        env[v] = m.array("k", "operand", i, v.aval.shape, v.aval.dtype)
    car = [m.array("c", "carry", j, v.aval.shape, v.aval.dtype)
           for j, v in enumerate(ins[nc:nc + nk])]
    xs = [m.array("x", "operand", nc + nk + i, (length,) + tuple(v.aval.shape), v.aval.dtype,
                  (length,) + _dshape(v.aval.shape)) for i, v in enumerate(ins[nc + nk:])]
    ys = [m.array("y", "ys", k, (length,) + tuple(v.aval.shape), v.aval.dtype,
                  (length,) + _dshape(v.aval.shape)) for k, v in enumerate(g.outvars[nk:])]
    for j, v in enumerate(ins[nc:nc + nk]):
        env[v] = f"cur{j}"
    for i, v in enumerate(ins[nc + nk:]):
        env[v] = f"xr{i}"
    dests = {j: f"nx{j}" for j in range(nk)}
    dests.update({nk + k: f"yr{k}" for k in range(ny)})
    step = []
    loc, direct = m.block("scan.body", body, env, dests, step, prefer_last=True)
    # a carry whose new value a kernel wrote into the row of a ys reads that
    # row as its value at the next step
    aliased = {}
    for j in range(nk):
        v = g.outvars[j]
        if j not in direct and not isinstance(v, Lit):
            k = next((k for k in range(nk, nk + ny) if direct.get(k) is v), None)
            if k is not None:
                aliased[j] = k - nk
    nxt = {j: m.array("n", "next", j, ins[nc + j].aval.shape, ins[nc + j].aval.dtype)
           for j in range(nk) if j not in aliased}
    for j in range(nk + ny):
        if j not in direct and j not in aliased:
            step += _copy_lines(dests[j], m.value(loc, g.outvars[j]), g.outvars[j].aval.ndim)
    for j in range(nk):
        step.append(f"cur{j} = yr{aliased[j]}" if j in aliased else
                    f"cur{j}, nx{j} = nx{j}, cur{j}")
    n_len = m.param("T", "int64", ("length", None, None))
    n_rev = m.param("R", "int64", ("reverse", None, None))
    drv = [f"cur{j} = {car[j]}" for j in range(nk)]
    drv += [f"nx{j} = {nxt[j]}" for j in nxt]
    drv.append(f"for i_ in range({n_len}):")
    loop = [f"t = {n_len} - 1 - i_ if {n_rev} else i_"]
    loop += [f"xr{i} = {x}[t]" for i, x in enumerate(xs)]
    loop += [f"yr{k} = {y}[t]" for k, y in enumerate(ys)]
    drv += _indent(loop + step)
    for j in range(nk):                 # the final value into the first buffer
        drv.append(f"if {n_len} > 0:" if j in aliased else f"if {n_len} % 2 == 1:")
        drv += _indent(_copy_lines(car[j], f"cur{j}", ins[nc + j].aval.ndim))
    return m.finish("scan", drv, aliased)


def _while(e, backend):
    p = e.params
    ncc, nbc = p["cond_nconsts"], p["body_nconsts"]
    cond, body = p["cond"], p["body"]
    m = _Module(backend)
    cg, bg = cond.graph, body.graph
    nk = len(bg.outvars)
    cenv, benv = {}, {}
    for i, v in enumerate(cg.invars[:ncc]):
        cenv[v] = m.array("k", "operand", i, v.aval.shape, v.aval.dtype)
    for i, v in enumerate(bg.invars[:nbc]):
        benv[v] = m.array("k", "operand", ncc + i, v.aval.shape, v.aval.dtype)
    carries = bg.invars[nbc:]
    car = [m.array("c", "carry", j, v.aval.shape, v.aval.dtype) for j, v in enumerate(carries)]
    nxt = [m.array("n", "next", j, v.aval.shape, v.aval.dtype) for j, v in enumerate(carries)]
    for j in range(nk):
        cenv[cg.invars[ncc + j]] = f"cur{j}"
        benv[bg.invars[nbc + j]] = f"cur{j}"
    test = []
    cloc, _ = m.block("while.cond", cond, cenv, {}, test)
    pred = m.value(cloc, cg.outvars[0])
    step = []
    loc, direct = m.block("while.body", body, benv, {j: f"nx{j}" for j in range(nk)}, step)
    for j in range(nk):
        if j not in direct:
            step += _copy_lines(f"nx{j}", m.value(loc, bg.outvars[j]), bg.outvars[j].aval.ndim)
    step += [f"cur{j}, nx{j} = nx{j}, cur{j}" for j in range(nk)]
    drv = [f"cur{j} = {car[j]}" for j in range(nk)]
    drv += [f"nx{j} = {nxt[j]}" for j in range(nk)]
    drv += ["n_ = 0", "while True:"]
    drv += _indent(test + [f"if not {pred}[0]:", "    break"] + step + ["n_ += 1"])
    for j in range(nk):                 # the final value into the first buffer
        drv.append("if n_ % 2 == 1:")
        drv += _indent(_copy_lines(car[j], f"cur{j}", carries[j].aval.ndim))
    return m.finish("while", drv, {})


def emit_loop(e, backend):
    """The LoopSource of control equation `e` (scan or while), or None if
    its bodies need the runtime's Python loop."""
    rule = {"scan": _scan, "while": _while}.get(e.prim.name)
    if rule is None:
        return None
    try:
        return rule(e, backend)
    except NotLoopable:
        return None
