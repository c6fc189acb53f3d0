"""needle's public transformations: jit, make_ir, eval_shape.

Input: a user's Python function and its arguments.
Output: compiled callables (`jit`), printed programs (`make_ir`), abstract
results (`eval_shape`), and the `Lowered` view of every compilation stage.

A jitted call flattens its arguments, looks its signature up (pytree
structure, shapes, dtypes, weak types, static values, device) in a per-
function cache, and on a miss traces, runs the pass pipeline and builds an
Executable through the runtime. A `jit` met inside another trace is inlined.
"""
import functools
import inspect
import os
import sys

import numpy as np

from . import runtime
from .passes import run_pipeline
from .tracer import pytree
from .tracer.core import TracingError, abstractify, current_trace, trace_to_graph

_FLOAT_SIG = ("py", float)
_INT_SIG = ("py", int)
_BOOL_SIG = ("py", bool)


def _leaf_sig(x):
    t = type(x)
    if t is np.ndarray:
        return (x.shape, x.dtype)
    if t is float:
        return _FLOAT_SIG
    if t is int:
        return _INT_SIG
    if t is bool:
        return _BOOL_SIG
    if isinstance(x, np.generic):
        return ((), x.dtype)
    if isinstance(x, np.ndarray):
        return (x.shape, x.dtype)
    return None


def _log_compiles():
    return os.environ.get("NEEDLE_LOG_COMPILES", "") not in ("", "0")


class Lowered:
    """One compilation of a jitted function: every stage, printable."""

    def __init__(self, name, stage_graphs, executable):
        self.name = name
        self._graphs = stage_graphs
        self.executable = executable

    @property
    def stages(self):
        return list(self._graphs) + self.executable.stage_names()

    def as_text(self, stage=None):
        stage = stage or self.stages[-1]
        if stage in self._graphs:
            return str(self._graphs[stage])
        return self.executable.stage_text(stage)

    @property
    def kernel_count(self):
        return self.executable.kernel_count

    @property
    def library_call_count(self):
        return self.executable.library_call_count

    def __call__(self, *flat_args):
        return self.executable(*flat_args)


class Jitted:
    def __init__(self, fun, static_argnums=(), static_argnames=(), donate_argnums=(),
                 device=None):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.name = getattr(fun, "__name__", "f")
        if isinstance(static_argnums, int):
            static_argnums = (static_argnums,)
        if isinstance(static_argnames, str):
            static_argnames = (static_argnames,)
        self.static_argnums = tuple(sorted(set(static_argnums)))
        self.static_argnames = tuple(static_argnames)
        try:
            self._sig = inspect.signature(fun)
        except (TypeError, ValueError):
            self._sig = None
        if self._sig is not None:
            params = list(self._sig.parameters)
            for name in self.static_argnames:
                if name in params:
                    i = params.index(name)
                    if i not in self.static_argnums:
                        self.static_argnums += (i,)
        self.device = runtime.resolve_device(device)
        self._cache = {}
        self._last_key = None
        self._simple = not self.static_argnums and not self.static_argnames

    # -- calling --------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if current_trace() is not None:
            return self.fun(*args, **kwargs)          # inlined into the outer trace
        if self._simple and not kwargs:
            leaves, treedef = pytree.tree_flatten(args)
            sigs = tuple(_leaf_sig(x) for x in leaves)
            entry = self._cache.get((treedef, sigs))
            if entry is not None:
                runtime.stats.hits += 1
                return pytree.tree_unflatten(entry[1], entry[0](*leaves))
            key, statics = (treedef, sigs), ()
        else:
            statics, leaves, treedef = self._split(args, kwargs)
            sigs = tuple(_leaf_sig(x) for x in leaves)
            key = (treedef, sigs, statics)
            entry = self._cache.get(key)
            if entry is not None:
                runtime.stats.hits += 1
                return pytree.tree_unflatten(entry[1], entry[0](*leaves))
        entry = self._compile(key, args, kwargs, leaves, treedef)
        return pytree.tree_unflatten(entry[1], entry[0](*leaves))

    def _split(self, args, kwargs):
        statics = []
        dyn_args = []
        for i, a in enumerate(args):
            if i in self.static_argnums:
                try:
                    hash(a)
                except TypeError:
                    raise TypeError(f"{self.name}: static argument {i} has unhashable type "
                                    f"{type(a).__name__}; static arguments must be "
                                    f"hashable") from None
                statics.append((i, a))
            else:
                dyn_args.append(a)
        dyn_kwargs = {}
        for k, v in kwargs.items():
            if k in self.static_argnames:
                statics.append((k, v))
            else:
                dyn_kwargs[k] = v
        leaves, treedef = pytree.tree_flatten((tuple(dyn_args), dyn_kwargs))
        return tuple(statics), leaves, treedef

    def _flat_fun(self, statics, treedef, split):
        nums = {k: v for k, v in statics if isinstance(k, int)}
        names = {k: v for k, v in statics if isinstance(k, str)}

        def flat(*leaves):
            tree = pytree.tree_unflatten(treedef, leaves)
            if not split:
                return self.fun(*tree)
            dyn_args, dyn_kwargs = tree
            it = iter(dyn_args)
            n = len(dyn_args) + len(nums)
            args = [nums[i] if i in nums else next(it) for i in range(n)]
            return self.fun(*args, **dyn_kwargs, **names)
        return flat

    def _arg_paths(self, treedef, split):
        paths = pytree.leaf_paths(treedef)
        if self._sig is None:
            return [f"args{p}" for p in paths]
        names = list(self._sig.parameters)
        out = []
        for p in paths:
            # p looks like "[i]..." for positional args (or "[0][i]..." when split)
            if split and p.startswith("[0]"):
                p = p[3:]
            elif split and p.startswith("[1]"):
                out.append(p[3:].replace("['", "", 1).replace("']", "", 1))
                continue
            i = int(p[1:p.index("]")])
            pos = [k for k in range(len(names) + 64) if k not in self.static_argnums]
            j = pos[i] if i < len(pos) else i
            name = names[j] if j < len(names) else f"args[{j}]"
            out.append(name + p[p.index("]") + 1:])
        return out

    def _abstract(self, leaves, paths):
        return [abstractify(x, f"{self.name}: argument {p}") for x, p in zip(leaves, paths)]

    def _trace(self, args, kwargs):
        split = not (self._simple and not kwargs)
        if not split:
            leaves, treedef = pytree.tree_flatten(args)
            statics = ()
        else:
            statics, leaves, treedef = self._split(args, kwargs)
        paths = self._arg_paths(treedef, split)
        avals = self._abstract(leaves, paths)
        runtime.stats.traces += 1
        cg, out_tree = trace_to_graph(self._flat_fun(statics, treedef, split), avals,
                                      self.name, paths)
        return cg, out_tree, leaves, paths

    def _compile(self, key, args, kwargs, leaves, treedef):
        if _log_compiles():
            self._explain_miss(key, treedef)
        cg, out_tree, _, _ = self._trace(args, kwargs)
        cg, stages = run_pipeline(cg)
        exe = runtime.compile_executable(cg, self.device, name=self.name)
        runtime.dump_stages(self.name, stages, exe)
        entry = (exe, out_tree, Lowered(self.name, stages, exe))
        self._cache[key] = entry
        self._last_key = (key, treedef)
        return entry

    def _explain_miss(self, key, treedef):
        msg = f"needle: compiling {self.name}"
        if self._last_key is None:
            msg += " for the first time"
        else:
            (old, old_tree) = self._last_key
            reasons = []
            if old_tree != treedef:
                reasons.append(f"argument structure changed {old_tree} -> {treedef}")
            else:
                paths = self._arg_paths(treedef, len(key) > 2)
                for p, a, b in zip(paths, old[1], key[1]):
                    if a != b:
                        reasons.append(f"argument {p} changed {_fmt_sig(a)} -> {_fmt_sig(b)}")
                if len(old) > 2 and old[2] != key[2]:
                    reasons.append(f"static arguments changed {old[2]} -> {key[2]}")
            msg += ": " + ("; ".join(reasons) if reasons else "new signature")
        print(msg, file=sys.stderr)

    # -- inspection -----------------------------------------------------------
    def lower(self, *args, **kwargs):
        """Trace and compile for these arguments; return the Lowered stages."""
        if self._simple and not kwargs:
            leaves, treedef = pytree.tree_flatten(args)
            key = (treedef, tuple(_leaf_sig(x) for x in leaves))
        else:
            statics, leaves, treedef = self._split(args, kwargs)
            key = (treedef, tuple(_leaf_sig(x) for x in leaves), statics)
        entry = self._cache.get(key) or self._compile(key, args, kwargs, leaves, treedef)
        return entry[2]

    def trace(self, *args, **kwargs):
        return self._trace(args, kwargs)[0]

    def clear_cache(self):
        self._cache.clear()


def _fmt_sig(s):
    if s is None:
        return "unsupported"
    if s[0] == "py":
        return f"Python {s[1].__name__}"
    return f"{tuple(s[0])} {s[1].name}"


def jit(fun=None, *, static_argnums=(), static_argnames=(), donate_argnums=(), device=None):
    """Compile `fun` on first call for each argument signature.

    Arguments are numpy arrays, numpy or Python scalars (weakly typed), in
    pytrees; static arguments are hashable Python values that the function
    may branch on. Arrays the function closes over are captured as constants
    at trace time: changing them later does not retrace (as in JAX).
    """
    if fun is None:
        return lambda f: jit(f, static_argnums=static_argnums, static_argnames=static_argnames,
                             donate_argnums=donate_argnums, device=device)
    return Jitted(fun, static_argnums, static_argnames, donate_argnums, device)


def make_ir(fun, static_argnums=(), static_argnames=()):
    """make_ir(f)(*args) -> the traced ClosedGraph (prints like a jaxpr)."""
    j = fun if isinstance(fun, Jitted) else Jitted(fun, static_argnums, static_argnames)

    def make(*args, **kwargs):
        return j.trace(*args, **kwargs)
    return make


def eval_shape(fun, *args, **kwargs):
    """Abstract results of fun(*args): a pytree of ShapedArray, nothing computed.
    Arguments may be arrays or ShapedArray-like objects (with .shape, .dtype)."""
    cg, out_tree, _, _ = Jitted(fun)._trace(args, kwargs)
    return pytree.tree_unflatten(out_tree, [v.aval for v in cg.graph.outvars])


__all__ = ["jit", "make_ir", "eval_shape", "Jitted", "Lowered", "TracingError"]
