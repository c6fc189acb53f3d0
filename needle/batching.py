"""needle.vmap: map a function over an axis of its arguments (JAX's vmap).

Input: a function of arrays (pytrees), `in_axes`, `out_axes`, `axis_size`.
Output: the batched function. Calling it traces the function once at the
per-example shapes and evaluates that Graph with the batching rules
(passes/batching), so one call runs whole-batch primitives (one matmul, not
one per example); under jit the batched program is what compiles.
"""
import functools

import numpy as np

from . import state as _state
from .passes.batching import batch_graph
from .passes.batching.rules import bcast_batch, moveaxis
from .tracer import pytree
from .tracer.core import Tracer, abstractify, trace_to_graph

__all__ = ["vmap"]


def _fname(f):
    return getattr(f, "__name__", type(f).__name__)


def _is_axis(v):
    return v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool))


def _prefix_leaves(spec, tree, what, state_leaves=True):
    """The axis spec of every leaf of `tree`, from `spec`, an int / None or a
    pytree prefix of `tree` with ints / None at its leaves (JAX's in_axes)."""
    if _is_axis(spec):
        return [spec] * len(pytree.tree_leaves(
            tree, is_leaf=_state.is_state if state_leaves else None))
    if state_leaves and _state.is_state(tree):
        raise ValueError(f"vmap {what}: a {type(tree).__name__} is mapped as a whole: its "
                         f"in_axes must be an int or None, got {spec!r}")
    rule_s, rule_t = pytree._node_rule(type(spec)), pytree._node_rule(type(tree))
    if rule_s is None or type(spec) is not type(tree):
        raise ValueError(f"vmap {what}: {spec!r} is neither an int, None nor a container "
                         f"matching the argument's structure ({type(tree).__name__})")
    cs, aux_s = rule_s[0](spec)
    ct, aux_t = rule_t[0](tree)
    if aux_s != aux_t or len(cs) != len(ct):
        raise ValueError(f"vmap {what}: the structure of {spec!r} does not match the "
                         f"argument's")
    return [a for s, t in zip(cs, ct) for a in _prefix_leaves(s, t, what, state_leaves)]


def _shape(x):
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def vmap(fun, in_axes=0, out_axes=0, axis_size=None):
    """Vectorize `fun` over an axis of its arguments (JAX's semantics).

    in_axes: an int (negative counts from the end), None (not mapped), or a
    tuple / list with an entry per positional argument, each an int, None or
    a pytree prefix of that argument. Keyword arguments are mapped over
    axis 0. out_axes: where the mapped axis goes in each output leaf (an int,
    None for an output that must not depend on the mapped axis, or a pytree
    prefix of the output). axis_size: the mapped length when no argument is
    mapped. Outputs that do not depend on a mapped argument are repeated
    along the mapped axis. Composes with jit, grad and vmap itself.
    """
    name = _fname(fun)
    if not (_is_axis(in_axes) or isinstance(in_axes, (tuple, list))):
        raise TypeError(f"vmap({name}): in_axes must be an int, None, or a tuple / list "
                        f"with an entry per positional argument, got {in_axes!r}")

    @functools.wraps(fun)
    def batched(*args, **kwargs):
        if isinstance(in_axes, (tuple, list)):
            if len(in_axes) != len(args):
                raise ValueError(f"vmap({name}): in_axes has {len(in_axes)} entries but the "
                                 f"function was called with {len(args)} positional "
                                 f"arguments")
            specs = list(in_axes)
        else:
            specs = [in_axes] * len(args)
        kw_keys = sorted(kwargs)
        all_args = list(args) + [kwargs[k] for k in kw_keys]
        specs += [0] * len(kw_keys)
        leaves, in_tree = pytree.tree_flatten(all_args, is_leaf=_state.is_state)
        axes = []
        for i, (a, s) in enumerate(zip(all_args, specs)):
            where = f"argument {i}" if i < len(args) else f"keyword argument {kw_keys[i - len(args)]!r}"
            axes += _prefix_leaves(s, a, f"in_axes for {where}")
        paths = [f"argument{p}" for p in pytree.leaf_paths(in_tree)]
        spos = [k for k, x in enumerate(leaves) if _state.is_state(x)]
        g = None
        if spos:
            g = _state.gather([leaves[k] for k in spos], [paths[k] for k in spos])
            cell_axes = {}
            for k in spos:
                for c in _state.cells_of(leaves[k]):
                    ax = cell_axes.setdefault(id(c), axes[k])
                    if ax != axes[k]:
                        raise ValueError(f"vmap({name}): the cell {g.paths[g.index[id(c)]]} is "
                                         f"reached from arguments with different in_axes "
                                         f"({ax} and {axes[k]})")
            sset = set(spos)
            keep = [k for k in range(len(leaves)) if k not in sset]
            objs = leaves
            leaves = [leaves[k] for k in keep] + [c.value for c in g.cells]
            axes = [axes[k] for k in keep] + [cell_axes[id(c)] for c in g.cells]
            paths = [paths[k] for k in keep] + list(g.paths)
        size, moved, flags, avals = None, [], [], []
        sizes = {}
        for x, ax, path in zip(leaves, axes, paths):
            if ax is None:
                moved.append(x)
                flags.append(False)
                avals.append(abstractify(x, f"vmap({name}): {path}"))
                continue
            shape = _shape(x)
            nd = len(shape)
            if not -nd <= ax < nd:
                raise ValueError(f"vmap({name}): in_axes {ax} is out of range for {path} of "
                                 f"shape {shape} (rank {nd})")
            ax = ax % nd
            sizes[path] = shape[ax]
            if not isinstance(x, Tracer):
                x = np.asarray(x)
            x = moveaxis(x, ax, 0)
            moved.append(x)
            flags.append(True)
            a = abstractify(x, f"vmap({name}): {path}")
            avals.append(a.update(shape=a.shape[1:]))
        if len(set(sizes.values())) > 1:
            raise ValueError(f"vmap({name}): the mapped axes have different sizes: "
                             + ", ".join(f"{p} has {n}" for p, n in sizes.items()))
        if sizes:
            size = next(iter(sizes.values()))
            if axis_size is not None and axis_size != size:
                raise ValueError(f"vmap({name}): axis_size={axis_size} but the mapped axes "
                                 f"have size {size}")
        elif axis_size is None:
            raise ValueError(f"vmap({name}): no argument is mapped (in_axes is None for "
                             f"all); pass axis_size")
        else:
            size = int(axis_size)

        rec = {}

        def flat_f(*xs):
            if g is None:
                vals = pytree.tree_unflatten(in_tree, list(xs))
                cells, cvals = [], []
            else:
                full = list(objs)
                for k, x in zip(keep, xs):
                    full[k] = x
                vals = pytree.tree_unflatten(in_tree, full)
                cells, cvals = g.cells, xs[len(keep):]
            with _state.Frame("vmap", name) as fr:
                fr.swap_in(cells, cvals)
                out = fun(*vals[:len(args)], **dict(zip(kw_keys, vals[len(args):])))
                out_leaves, rec["tree"] = pytree.tree_flatten(out)
            rec["n"] = len(out_leaves)
            rec["written"] = [c for c, _ in fr.writes]
            return out_leaves + [v for _, v in fr.writes]

        cg, _ = trace_to_graph(flat_f, avals, name, paths)
        outs, out_flags = batch_graph(cg, moved, flags, size, name)
        n, out_tree = rec["n"], rec["tree"]
        for c, o, b in zip(rec["written"], outs[n:], out_flags[n:]):
            i = g.index.get(id(c)) if g is not None else None
            ax = axes[len(axes) - len(g.cells) + i] if i is not None else None
            if ax is None:
                if b:
                    where = g.paths[i] if i is not None else (c._name or "a Tensor")
                    raise _state.StateWriteError(
                        f"vmap({name}): the function writes a value that depends on the "
                        f"mapped axis into the state cell {where}, which is not mapped "
                        f"(in_axes None, or reached by closure): one cell cannot hold a "
                        f"value per example. Call the module outside vmap, put it in eval "
                        f"mode, or map the module too (in_axes=0 on a stacked copy)")
                c._write(o)
                continue
            if not b:
                o = bcast_batch(o if isinstance(o, Tracer) else np.asarray(o), size)
            c._write(moveaxis(o, 0, ax % len(_shape(o))))
        outs, out_flags = outs[:n], out_flags[:n]
        out_axes_leaves = _prefix_leaves(out_axes, pytree.tree_unflatten(out_tree, outs),
                                         "out_axes", state_leaves=False)
        results = []
        for o, b, ax, path in zip(outs, out_flags, out_axes_leaves,
                                  pytree.leaf_paths(out_tree)):
            if ax is None:
                if b:
                    raise ValueError(f"vmap({name}): out_axes is None for output{path}, "
                                     f"but it depends on a mapped argument")
                results.append(o)
                continue
            if not b:
                o = bcast_batch(o if isinstance(o, Tracer) else np.asarray(o), size)
            nd = len(_shape(o))
            if not -nd <= ax < nd:
                raise ValueError(f"vmap({name}): out_axes {ax} is out of range for "
                                 f"output{path} of rank {nd - 1}")
            results.append(moveaxis(o, 0, ax % nd))
        return pytree.tree_unflatten(out_tree, results)

    return batched
