"""needle's differentiation API: grad, value_and_grad, vjp, jvp, jacfwd,
jacrev, hessian, stop_gradient, custom_vjp.

Input: a user's Python function over arrays (pytrees of them) and the point
to differentiate at. Output: values, gradients with the structure of the
arguments, Jacobians, or a `vjp_fn`.

Transformations act at trace time (DESIGN.md): `grad(f)(*args)` traces `f`
into a Graph (outer tracers are closed over as constants), runs the autodiff
pass (needle.passes.autodiff: linearize = JVP + partial evaluation, then
transpose the linear part), cleans the result, and evaluates it with
`ir.eval_graph`. Eagerly that runs numpy; under `jit` (or under another
`grad`) it records the primal and backward programs into the outer trace,
so `jit(grad(f))`, `grad(jit(f))`, `grad(grad(f))` and `jit(grad(jit(f)))`
all work.

As in JAX: `grad` needs a scalar floating-point output and floating-point
arguments; `vjp` and `jvp` accept integer inputs (their cotangents /
tangents are zeros); jacfwd / jacrev run the linearized / backward program
once, batched over the basis vectors with vmap's rules (passes/batching).
"""
import functools

import numpy as np

from .ir.interpreter import eval_graph
from .passes.batching import batch_graph
from .passes.batching.rules import bcast_batch
from .passes.autodiff import stop_gradient_recorded
from .passes.autodiff import (ad_active, ad_context, cleanup, custom_vjp_call_p,
                              jvp_graph, linearize, stop_gradient_p)
from .passes.autodiff.markers import custom_lin_p
from . import state as _state
from .tracer import pytree
from .tracer.core import Tracer, abstractify, trace_to_graph

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "jacfwd", "jacrev", "hessian",
           "stop_gradient", "custom_vjp"]


# --- tracing a function of pytrees ------------------------------------------------

def _fname(f):
    return getattr(f, "__name__", type(f).__name__)


class _Traced:
    """`f` traced at flat arguments: its ClosedGraph and the pytree bookkeeping
    (with has_aux, the aux outputs are traced but not differentiated)."""

    def __init__(self, f, args, has_aux=False, what="grad", paths=None):
        self.flat_args, self.in_tree = pytree.tree_flatten(args)
        self.paths = paths or [f"argument{p}" for p in pytree.leaf_paths(self.in_tree)]
        self.in_avals = [abstractify(x, f"{what}({_fname(f)}): {p}")
                         for x, p in zip(self.flat_args, self.paths)]
        # Eager evaluation must see the traced dtypes (a Python float is f32).
        self.flat_args = [x if isinstance(x, Tracer) else np.asarray(x, dtype=a.dtype)
                          for x, a in zip(self.flat_args, self.in_avals)]
        self.has_aux = has_aux
        self.name = _fname(f)
        trees = {}

        def flat_f(*leaves):
            trees["args"] = pytree.tree_unflatten(self.in_tree, leaves)
            out = f(*trees["args"])
            if has_aux:
                if not (isinstance(out, (tuple, list)) and len(out) == 2):
                    raise TypeError(f"{what}({_fname(f)}, has_aux=True): the function must "
                                    f"return a pair (output, aux), got "
                                    f"{type(out).__name__}")
                out, aux = out
            else:
                aux = None
            outs, trees["out"] = pytree.tree_flatten(out)
            auxs, trees["aux"] = pytree.tree_flatten(aux)
            self.n_out = len(outs)
            return outs + auxs

        # grad / value_and_grad catch the function's state writes in a frame
        # of their own (their aux outputs); any other transform here cannot
        # return them yet: a write is an error, not a traced value left behind
        with ad_context(), _state.Frame(what, self.name) as fr:
            self.cg, _ = trace_to_graph(flat_f, self.in_avals, _fname(f), self.paths)
        if fr.writes:
            # (a module argument is rebuilt around the traced values: its
            # cells are those of the rebuilt copy)
            cells = ", ".join(_written_paths(f, trees["args"], [c for c, _ in fr.writes]))
            raise _state.StateWriteError(
                f"{what}({self.name}): the function writes the state cell(s) {cells}, "
                f"which {what} cannot write back; use needle.grad / value_and_grad, or "
                f"put the modules in eval mode")
        trees.pop("args", None)          # the traced copies: not kept alive
        self.out_tree, self.aux_tree = trees["out"], trees["aux"]
        self.out_avals = self.cg.graph.out_avals[:self.n_out]
        self.out_wrt = [i < self.n_out for i in range(len(self.cg.graph.outvars))]

    def split(self, outs):
        out = pytree.tree_unflatten(self.out_tree, outs[:self.n_out])
        aux = pytree.tree_unflatten(self.aux_tree, outs[self.n_out:]) if self.has_aux else None
        return out, aux


def _written_paths(f, args, cells):
    """Where `f` reaches each of `cells`, for messages: through its arguments
    ("argument 0.modules[1].running_mean") or by closure ("model.running_mean");
    a cell reached neither way is named by its holder's class and attribute."""
    flat, tree = pytree.tree_flatten(tuple(args), is_leaf=_state.is_state)
    named = [(p, x) for x, p in zip(flat, _arg_paths_flat(tree, range(len(args))))
             if _state.is_state(x)] + _state.closure_objects(f)
    g = _state.gather([x for _, x in named], [p for p, _ in named])
    return [g.paths[g.index[id(c)]] if id(c) in g.index else _state.path_of(c) for c in cells]


def _concrete(vals, avals):
    """Outputs of an eager evaluation as numpy arrays of the declared dtype."""
    return [v if isinstance(v, Tracer) else np.asarray(v, dtype=a.dtype)
            for v, a in zip(vals, avals)]


def _zeros(aval):
    return np.zeros(aval.shape, aval.dtype)


def _as_ct(x, aval, path):
    if isinstance(x, Tracer):
        if x.shape != aval.shape:
            raise ValueError(f"cotangent / tangent{path} has shape {x.shape}, expected "
                             f"{aval.shape}")
        if x.dtype != aval.dtype:
            from .numpy._core import cast
            x = cast(x, aval.dtype)
        return x
    arr = np.asarray(x)
    if arr.shape != tuple(aval.shape):
        raise ValueError(f"cotangent / tangent{path} has shape {arr.shape}, expected "
                         f"{tuple(aval.shape)} (the shape of the function's output)")
    return arr.astype(aval.dtype, copy=False)


# --- reverse mode ---------------------------------------------------------------------

class _VJP:
    """Linearize once, evaluate the primal program, keep the residuals; each
    call of the backward program pulls one cotangent back."""

    def __init__(self, traced, keep_outputs=True, seed=None):
        self.t = traced
        cg = traced.cg
        wrt = [a.dtype.kind == "f" for a in traced.in_avals]
        self.lin = linearize(cg, wrt, traced.out_wrt, keep_outputs=keep_outputs, cts=seed,
                             name=traced.name)
        vals = eval_graph(self.lin.primal.graph, self.lin.primal.consts, traced.flat_args)
        n = len(vals) - self.lin.n_res
        self.outs = _concrete(vals[:n], cg.graph.out_avals)
        self.res = vals[n:]

    def pull(self, cts=None):
        """Cotangents of the flat inputs, given those of the differentiated
        outputs (None when the seed was fixed at linearization)."""
        lin = self.lin
        ct_in = [] if cts is None else [c for c, nz in zip(cts, lin.nonzero) if nz]
        grads = eval_graph(lin.backward.graph, lin.backward.consts, list(self.res) + ct_in)
        it = iter(grads)
        out = []
        for a, w in zip(self.t.in_avals, lin.wrt):
            out.append(next(it) if w else _zeros(a))
        return _concrete(out, self.t.in_avals)


def vjp(f, *primals, has_aux=False):
    """(f(*primals), vjp_fn) where vjp_fn(ct) returns one cotangent per primal
    (a tuple, each with that primal's structure). With has_aux, f returns
    (out, aux) and vjp returns (out, vjp_fn, aux)."""
    t = _Traced(f, primals, has_aux, "vjp")
    v = _VJP(t)
    out, aux = t.split(v.outs)

    def vjp_fn(ct):
        leaves, tree = pytree.tree_flatten(ct)
        if tree != t.out_tree:
            raise ValueError(f"vjp: the cotangent's structure {tree} differs from the "
                             f"output's {t.out_tree}")
        paths = pytree.leaf_paths(tree)
        cts = [_as_ct(c, a, p) for c, a, p in zip(leaves, t.out_avals, paths)]
        cts += [None] * (len(t.cg.graph.outvars) - t.n_out)
        return pytree.tree_unflatten(t.in_tree, v.pull(cts))

    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


def _argnums_tuple(argnums, nargs, name):
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for i in nums:
        if not isinstance(i, int) or not -nargs <= i < nargs:
            raise ValueError(f"{name}: argnums {argnums!r} out of range for {nargs} "
                             f"positional arguments")
    return tuple(i % nargs for i in nums)


def _partial_args(f, args, kwargs, nums):
    """f as a function of the arguments at `nums` only; the others are closed
    over as they are (Python values stay usable in Python control flow)."""
    def g(*diff):
        full = list(args)
        for i, d in zip(nums, diff):
            full[i] = d
        return f(*full, **kwargs)
    return g


def _arg_paths(diff, nums):
    """'argument 2['w']' for each leaf of the differentiated arguments."""
    out = []
    for p in pytree.leaf_paths(pytree.tree_structure(diff)):
        close = p.index("]")
        out.append(f"argument {nums[int(p[1:close])]}{p[close + 1:]}")
    return out


def _check_float_args(fname, name, args, nums):
    for i, a in zip(nums, args):
        leaves, tree = pytree.tree_flatten(a)
        _check_float_leaves(fname, name, leaves,
                            [f"argument {i}{p}" for p in pytree.leaf_paths(tree)])


def value_and_grad(f, argnums=0, has_aux=False):
    """value_and_grad(f)(*args) -> (f(*args), gradient of f w.r.t. args[argnums]);
    with has_aux, ((value, aux), gradient)."""
    name = "value_and_grad"

    @functools.wraps(f)
    def vg(*args, **kwargs):
        return _value_and_grad(f, argnums, has_aux, args, kwargs, name, keep=True)
    return vg


def grad(f, argnums=0, has_aux=False):
    """grad(f)(*args): the gradient of a scalar function w.r.t. args[argnums]
    (an int, or a tuple giving a tuple of gradients), with the structure of
    those arguments; with has_aux, (gradient, aux)."""
    @functools.wraps(f)
    def g(*args, **kwargs):
        value, gr = _value_and_grad(f, argnums, has_aux, args, kwargs, "grad", keep=False)
        return (gr, value[1]) if has_aux else gr
    return g


def _value_and_grad(f, argnums, has_aux, args, kwargs, name, keep):
    """Modules, optimizers and Tensors among the differentiated arguments are
    state (needle/state.py): their trainable cells (requires_grad
    Parameters, bare requires_grad Tensors) are differentiated, and each
    such object's gradient is a copy of it holding gradient cells (None for
    buffers). Cells the function writes (BatchNorm statistics, a
    GeneratorCell's counter), whether reached by argument or by closure, are
    extra outputs, not differentiated, written back after the call."""
    fname = _fname(f)
    nums = _argnums_tuple(argnums, len(args), f"{name}({fname})")
    diff = tuple(args[i] for i in nums)
    flat, tree = pytree.tree_flatten(diff, is_leaf=_state.is_state)
    leaf_paths = _arg_paths_flat(tree, nums)
    spos = [k for k, x in enumerate(flat) if _state.is_state(x)]
    g = _state.gather([flat[k] for k in spos], [leaf_paths[k] for k in spos]) if spos \
        else None
    apos = [k for k in range(len(flat)) if k not in set(spos)]
    arrays = [flat[k] for k in apos]
    _check_float_leaves(fname, name, arrays, [leaf_paths[k] for k in apos])
    tcells = [g.cells[i] for i in g.trainable()] if g is not None else []
    tpaths = [g.paths[i] for i in g.trainable()] if g is not None else []
    rec = {}

    def pure(arrs, cvals):
        full = list(flat)
        for k, a in zip(apos, arrs):
            full[k] = a
        all_args = list(args)
        for i, d in zip(nums, pytree.tree_unflatten(tree, full)):
            all_args[i] = d
        with _state.Frame("grad", fname) as fr:
            fr.swap_in(tcells, cvals)
            out = f(*all_args, **kwargs)
            if has_aux:
                if not (isinstance(out, (tuple, list)) and len(out) == 2):
                    raise TypeError(f"{name}({fname}, has_aux=True): the function must "
                                    f"return a pair (output, aux), got {type(out).__name__}")
                out, aux = out
            else:
                aux = None
            # Tensors and Modules in the results hold the traced values now
            out, aux = pytree.tree_map(_same, (out, aux))
        rec["written"] = [c for c, _ in fr.writes]
        return out, (aux, [v for _, v in fr.writes])

    pure.__name__ = fname
    t = _Traced(pure, (arrays, [c.value for c in tcells]), True, name,
                paths=[leaf_paths[k] for k in apos] + tpaths)
    if t.n_out != 1 or t.out_avals[0].shape != ():
        shapes = ", ".join(a.str_short() for a in t.out_avals) or "nothing"
        raise TypeError(f"{name}({fname}): the function must return a scalar (a 0-d "
                        f"array), got {shapes}; for non-scalar outputs use needle.vjp or "
                        f"needle.jacrev")
    if t.out_avals[0].dtype.kind != "f":
        raise TypeError(f"{name}({fname}): the function must return a floating-point "
                        f"scalar, got {t.out_avals[0].str_short()}")
    seed = [np.ones((), t.out_avals[0].dtype)] + [None] * (len(t.cg.graph.outvars) - 1)
    outputs = keep or has_aux or bool(rec["written"])
    v = _VJP(t, keep_outputs=outputs, seed=seed)
    agrads, cgrads = pytree.tree_unflatten(t.in_tree, v.pull())
    if outputs:
        out, (aux, written) = t.split(v.outs)
        for c, val in zip(rec["written"], written):
            c._write(val)
    gflat = list(flat)
    for k, gr in zip(apos, agrads):
        gflat[k] = gr
    if spos:
        by_cell = {id(c): gr for c, gr in zip(tcells, cgrads)}

        def grad_cell(c):
            gr = by_cell.get(id(c), _NONE)
            if gr is _NONE:
                return None
            gc = type(c)._make(gr, False)
            gc._origin = c
            return gc
        for k in spos:
            gflat[k] = _state.rebuild(flat[k], grad_cell)
    grads = pytree.tree_unflatten(tree, gflat)
    gr = grads[0] if isinstance(argnums, int) else grads
    if not (keep or has_aux):
        return None, gr
    return ((out, aux) if has_aux else out), gr


_NONE = object()


def _same(x):
    return x


def _arg_paths_flat(tree, nums):
    """'argument 2['w']' for each leaf of `tree` (the differentiated
    arguments, state objects as leaves)."""
    out = []
    for p in pytree.leaf_paths(tree):
        close = p.index("]")
        out.append(f"argument {nums[int(p[1:close])]}{p[close + 1:]}")
    return out


def _check_float_leaves(fname, name, leaves, paths):
    for leaf, p in zip(leaves, paths):
        dt = leaf.dtype if hasattr(leaf, "dtype") else abstractify(leaf).dtype
        if np.dtype(dt).kind != "f":
            raise TypeError(
                f"{name}({fname}): {p} has dtype {np.dtype(dt).name}; {name} "
                f"differentiates only with respect to floating-point inputs. Pass it as "
                f"a float (e.g. x.astype(numpy.float32)), leave it out of argnums, or "
                f"use needle.vjp, which gives integer inputs zero cotangents.")


# --- forward mode ------------------------------------------------------------------------

def jvp(f, primals, tangents, has_aux=False):
    """(f(*primals), the directional derivative along `tangents`); tangents have
    the primals' structure (shapes must match; integer inputs' tangents are
    ignored, integer outputs get zero tangents)."""
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp: primals and tangents must be tuples (one entry per argument)")
    t = _Traced(f, tuple(primals), has_aux, "jvp")
    tleaves, ttree = pytree.tree_flatten(tuple(tangents))
    if ttree != t.in_tree:
        raise ValueError(f"jvp: tangents' structure {ttree} differs from primals' "
                         f"{t.in_tree}")
    wrt = [a.dtype.kind == "f" for a in t.in_avals]
    tvals = []
    for tv, a, p, w in zip(tleaves, t.in_avals, t.paths, wrt):
        if w:
            tvals.append(_as_ct(tv, a, p))
    J, nonzero = jvp_graph(t.cg, wrt, t.out_wrt, name=f"jvp({_fname(f)})")
    J = cleanup(J)
    if any(e.prim is custom_lin_p for e in J.graph.eqns):
        raise TypeError(f"jvp({_fname(f)}): the function calls a needle.custom_vjp function, "
                        f"which has no forward-mode rule; use grad / vjp / jacrev")
    vals = eval_graph(J.graph, J.consts, list(t.flat_args) + tvals)
    n = len(t.cg.graph.outvars)
    outs = _concrete(vals[:n], t.cg.graph.out_avals)
    it = iter(vals[n:])
    touts = [next(it) if nz else _zeros(a) for nz, a in zip(nonzero, t.cg.graph.out_avals)]
    touts = _concrete(touts, t.cg.graph.out_avals)
    out, aux = t.split(outs)
    tout = pytree.tree_unflatten(t.out_tree, touts[:t.n_out])
    return (out, tout, aux) if has_aux else (out, tout)


# --- Jacobians -------------------------------------------------------------------------

def _move_leading_to_back(x, n_lead):
    from . import numpy as nnp
    nd = len(x.shape)
    return nnp.transpose(x, tuple(range(n_lead, nd)) + tuple(range(n_lead)))


def _jac_setup(f, argnums, args, kwargs, name):
    fname = _fname(f)
    nums = _argnums_tuple(argnums, len(args), f"{name}({fname})")
    diff = tuple(args[i] for i in nums)
    _check_float_args(fname, name, diff, nums)
    t = _Traced(_partial_args(f, args, kwargs, nums), diff, False, name)
    return t, nums


def _jac_tree(t, argnums, blocks):
    """blocks[k][j]: d out_k / d in_j -> the pytree JAX returns: the output's
    structure, each leaf holding the argument(s)' structure."""
    per_out = []
    for row in blocks:
        arg_tree = pytree.tree_unflatten(t.in_tree, row)
        per_out.append(arg_tree[0] if isinstance(argnums, int) else arg_tree)
    return pytree.tree_unflatten(t.out_tree, per_out)


def _basis(aval):
    """The a.size unit vectors of `aval`'s shape, stacked: (size, *shape)."""
    return np.eye(aval.size, dtype=aval.dtype).reshape((aval.size,) + tuple(aval.shape))


def _unstack(x, flag, size, shape):
    """A batched result (size, *s) as shape + s; an unbatched one repeated."""
    from . import numpy as nnp
    if not flag:
        x = bcast_batch(x if isinstance(x, Tracer) else np.asarray(x), size)
    return nnp.reshape(x, tuple(shape) + tuple(x.shape[1:]))


def jacrev(f, argnums=0):
    """The Jacobian by reverse mode: the backward program run once, batched
    over the basis of each output (vmap's rules: one batched pass, not one
    per element). Each block has shape out.shape + arg.shape."""
    @functools.wraps(f)
    def jac(*args, **kwargs):
        t, _ = _jac_setup(f, argnums, args, kwargs, "jacrev")
        v = _VJP(t)
        lin = v.lin
        blocks = []
        for k, a in enumerate(t.out_avals):
            if a.size == 0 or not lin.nonzero[k]:
                blocks.append([np.zeros(tuple(a.shape) + tuple(ia.shape), ia.dtype)
                               for ia in t.in_avals])
                continue
            cts, flags = [], []
            for m, (b, nz) in enumerate(zip(t.out_avals, lin.nonzero)):
                if nz:
                    cts.append(_basis(b) if m == k else _zeros(b))
                    flags.append(m == k)
            grads, gflags = batch_graph(lin.backward, list(v.res) + cts,
                                        [False] * len(v.res) + flags, a.size, _fname(f))
            it = iter(zip(grads, gflags))
            row = []
            for ia, w in zip(t.in_avals, lin.wrt):
                if w:
                    g, fl = next(it)
                    row.append(_unstack(g, fl, a.size, a.shape))
                else:
                    row.append(np.zeros(tuple(a.shape) + tuple(ia.shape), ia.dtype))
            blocks.append(row)
        return _jac_tree(t, argnums, blocks)
    return jac


def jacfwd(f, argnums=0):
    """The Jacobian by forward mode: the linearized program run once, batched
    over the basis of each input (vmap's rules). Each block has shape
    out.shape + arg.shape."""
    from . import numpy as nnp

    @functools.wraps(f)
    def jac(*args, **kwargs):
        t, _ = _jac_setup(f, argnums, args, kwargs, "jacfwd")
        wrt = [True] * len(t.in_avals)
        lin = linearize(t.cg, wrt, t.out_wrt, keep_outputs=False, name=_fname(f),
                        backward=False)
        res = eval_graph(lin.primal.graph, lin.primal.consts, t.flat_args)
        if any(e.prim is custom_lin_p for e in lin.forward.graph.eqns):
            raise TypeError(f"jacfwd({_fname(f)}): the function calls a needle.custom_vjp "
                            f"function, which has no forward-mode rule; use jacrev")
        cols = []                                    # cols[j][k]: (ia.size, *out_k.shape)
        for j, ia in enumerate(t.in_avals):
            if ia.size == 0:
                cols.append(None)
                continue
            tans = [_basis(b) if m == j else _zeros(b) for m, b in enumerate(t.in_avals)]
            vals, flags = batch_graph(lin.forward, list(res) + tans,
                                      [False] * len(res) + [m == j for m in
                                                            range(len(t.in_avals))],
                                      ia.size, _fname(f))
            it = iter(zip(vals, flags))
            col = []
            for nz, a in zip(lin.nonzero, t.out_avals):
                val, fl = next(it) if nz else (_zeros(a), False)
                col.append(_unstack(val, fl, ia.size, (ia.size,)))
            cols.append(col)
        blocks = []
        for k, a in enumerate(t.out_avals):
            row = []
            for j, ia in enumerate(t.in_avals):
                if ia.size == 0:
                    row.append(np.zeros(tuple(a.shape) + tuple(ia.shape), a.dtype))
                    continue
                stacked = cols[j][k]                 # (ia.size, *a.shape)
                moved = _move_leading_to_back(stacked, 1)
                row.append(_concrete([nnp.reshape(moved, tuple(a.shape) + tuple(ia.shape))],
                                     [a])[0])
            blocks.append(row)
        return _jac_tree(t, argnums, blocks)
    return jac


def hessian(f, argnums=0):
    """The Hessian of a scalar function: jacfwd(jacrev(f))."""
    return jacfwd(jacrev(f, argnums), argnums)


# --- stop_gradient and custom_vjp --------------------------------------------------------

def stop_gradient(x):
    """The identity on values, with a zero derivative (pytrees allowed)."""
    from .lazy import LazyTracer

    def leaf(v):
        # bound while differentiating, while recording a graph differentiated
        # later (a traced Module call of the lazy API), and on a lazy Tensor's
        # tracer (its backward() runs the autodiff pass on the recorded graph)
        if isinstance(v, Tracer) and v.dtype.kind == "f" and \
                (stop_gradient_recorded() or isinstance(v, LazyTracer)):
            return stop_gradient_p.bind(v)
        return v
    return pytree.tree_map(leaf, x)


class custom_vjp:  # noqa: N801 - JAX's name
    """A function with a user-defined reverse-mode rule.

        @needle.custom_vjp
        def f(x): ...
        def f_fwd(x): return f(x), residuals
        def f_bwd(residuals, ct): return (ct_x,)       # one entry per argument
        f.defvjp(f_fwd, f_bwd)

    Outside differentiation `f` runs as written (also under jit). Under grad /
    vjp / jacrev the derivative comes from f_bwd; fwd and bwd are traced
    inline, so a second derivative differentiates through them. Arrays the
    function closes over are treated as constants. Forward mode (jvp,
    jacfwd) is not supported, as in JAX.
    """

    def __init__(self, fun):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.fwd = self.bwd = None

    def defvjp(self, fwd, bwd):
        self.fwd, self.bwd = fwd, bwd
        return self

    def __call__(self, *args):
        if self.fwd is None:
            raise TypeError(f"custom_vjp function {_fname(self.fun)} has no rule: call "
                            f"{_fname(self.fun)}.defvjp(fwd, bwd) first")
        if not ad_active():
            return self.fun(*args)
        leaves, in_tree = pytree.tree_flatten(args)
        avals = [abstractify(x, f"{_fname(self.fun)}: argument{p}")
                 for x, p in zip(leaves, pytree.leaf_paths(in_tree))]
        cg, out_tree = trace_to_graph(lambda *xs: self.fun(*pytree.tree_unflatten(in_tree, xs)),
                                      avals, _fname(self.fun))
        outs = custom_vjp_call_p.bind(*cg.consts, *leaves, graph=cg.graph,
                                      n_consts=len(cg.consts), fwd=self.fwd, bwd=self.bwd,
                                      in_tree=in_tree, out_tree=out_tree)
        return pytree.tree_unflatten(out_tree, list(outs))

