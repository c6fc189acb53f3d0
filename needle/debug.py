"""needle.debug: looking inside compiled code: `print` and `callback` that run
when the program runs, and `debug_nans`, which names the operation that
first made a NaN.

Input: a user's traced (or eager) values; a mode switch. Output: text on
sys.stdout at every call of a jitted function; a FloatingPointError naming
the primitive, its params, its operand shapes and the user's source line.

`print(fmt, *args, **kwargs)` is JAX's `jax.debug.print`: it binds the
effectful primitive `debug_callback` (ir/primitives/debug.py), so under
`jit` it is an equation of the program that the passes keep and keep in
order, that fusion leaves out of every kernel, and that the runtime runs on
the host between kernels (runtime/host.py; on CUDA its operands are copied
to the host first). Under `grad` it prints the primal values once (its JVP
rule re-emits it on the primals, so it sits in the forward program); under
`vmap` it prints once per example, as JAX does. Eagerly it prints at once.

`debug_nans(True)` (or NEEDLE_DEBUG_NANS=1, `needle.config.update("debug_nans",
True)`, or `with debug_nans(True):`) checks the floating outputs of every jitted call for NaN; on one, it traces
the call again and runs the traced (pre-fusion) program equation by equation
with each primitive's numpy implementation, and raises a FloatingPointError
that names the first equation that made a NaN from operands without one (or
the argument that already held one). Eager primitives are checked as they
run. When the mode is off nothing of this is on the call path: switching it
swaps `Jitted.__call__` for a checking version and back, and sets the eager
hook of `bind` (tracer/core.py); the mode is the config option `debug_nans`,
whose updates this module watches.
"""
import builtins

import numpy as np

from . import api
from .ir.config import config
from .ir.core import Graph, Lit, aval_of
from .ir.primitives.debug import debug_callback_p
from .tracer import pytree
from .tracer.core import Tracer, current_trace, set_eager_hook
from .tracer.source import user_line

__all__ = ["print", "callback", "debug_nans"]


# --- print and callback --------------------------------------------------------------

def _dynamic(leaf):
    """An array operand of the callback (traced, numpy, or a Python number);
    anything else (a string, a dtype) is a static part of the callback."""
    if isinstance(leaf, (Tracer, bool, int, float)):
        return True
    return isinstance(leaf, (np.ndarray, np.generic)) and leaf.dtype.kind in "biuf"


class _Callback:
    """The `callback` param of a debug_callback equation: calls `fn` with the
    arguments rebuilt (pytree structure, static leaves) from the host arrays."""

    def __init__(self, fn, args, kwargs, source, label):
        leaves, self.tree = pytree.tree_flatten((args, kwargs))
        self.static = {k: x for k, x in enumerate(leaves) if not _dynamic(x)}
        self.n = len(leaves)
        self.dynamic = [x for k, x in enumerate(leaves) if k not in self.static]
        self.fn, self.source, self.label = fn, source, label

    def __call__(self, *arrays):
        it = iter(arrays)
        leaves = [self.static[k] if k in self.static else next(it) for k in range(self.n)]
        args, kwargs = pytree.tree_unflatten(self.tree, leaves)
        try:
            self.fn(*args, **kwargs)
        except Exception as e:
            e.add_note(f"in needle.debug.{self.label} at {self.source}")
            raise

    def __repr__(self):
        return self.label


def _bind(fn, args, kwargs, label):
    cb = _Callback(fn, args, kwargs, user_line(3), label)
    debug_callback_p.bind(*cb.dynamic, callback=cb)


def print(fmt, *args, **kwargs):   # noqa: A001 - JAX's name
    """Print `fmt.format(*args, **kwargs)` when the program runs: at every
    call of a jitted function (not only while it is traced), in program order
    with the other debug prints. Args are arrays, traced values or pytrees of
    them; they are formatted as numpy arrays (`{}`, `{x}`, `{:.3f}` for a
    0-d value). Under grad it prints the forward values; under vmap one line
    per example."""
    def show(*a, **k):
        builtins.print(fmt.format(*a, **k))
    _bind(show, args, kwargs, f"print({fmt!r})")


def callback(fn, *args, **kwargs):
    """Call `fn(*args, **kwargs)` on the host when the program runs, with the
    arrays as numpy arrays (JAX's jax.debug.callback); its result is ignored."""
    _bind(fn, args, kwargs, f"callback({getattr(fn, '__name__', 'fn')})")


# --- debug_nans ----------------------------------------------------------------------

_PLAIN_CALL = api.Jitted.__call__


class debug_nans:   # noqa: N801 - used as a function, like numpy.errstate
    """`needle.debug_nans(True)` turns NaN checking on (False: off); as a
    context manager, `with needle.debug_nans(True): ...`, it restores the
    previous mode on exit. It sets the config option `debug_nans`
    (NEEDLE_DEBUG_NANS=1 turns it on at import; `needle.config.update(
    "debug_nans", True)` is the same switch).

    When on, a jitted call whose floating results hold a NaN raises a
    FloatingPointError naming the first equation of the traced program
    that made a NaN from operands without one: its primitive, params,
    operand shapes and your source line; or the argument that already held
    a NaN. Eager primitives on host arrays are checked as they run. Costs a
    NaN scan of every result (a host copy on CUDA) and nothing when off."""

    def __init__(self, enabled=True):
        self._previous = config.debug_nans
        config.update("debug_nans", bool(enabled))      # calls _set (watched below)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        config.update("debug_nans", self._previous)


def _set(on):
    api.Jitted.__call__ = _checked_call if on else _PLAIN_CALL
    set_eager_hook(_check_eager if on else None)


def _nan_index(x):
    """Index of the first NaN of a floating array, or None."""
    a = np.asarray(x)
    if a.dtype.kind != "f":
        return None
    mask = np.isnan(a)
    if not mask.any():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), a.shape))


def _host_copy(x):
    return np.array(x) if isinstance(x, (np.ndarray, Tracer)) else x


def _checked_call(self, *args, **kwargs):
    if current_trace() is not None:
        return _PLAIN_CALL(self, *args, **kwargs)     # inlined: the outermost call checks
    # A donated argument's buffer may hold a result afterwards (or be deleted,
    # on CUDA): keep a copy for the rerun.
    before = pytree.tree_map(_host_copy, args) if self.donate_argnums else args
    out = _PLAIN_CALL(self, *args, **kwargs)
    for k, leaf in enumerate(pytree.tree_leaves(out)):
        if _nan_index(leaf) is not None:
            _explain(self, before, kwargs, k)
    return out


def _describe(prim, params, in_avals, out_avals):
    ps = " ".join(f"{k}={v.name if isinstance(v, np.dtype) else v}"
                  for k, v in sorted(params.items()) if not isinstance(v, Graph))
    return (f"{prim.name}{f'[{ps}]' if ps else ''} on "
            f"({', '.join(a.str_short() for a in in_avals)}) -> "
            f"({', '.join(a.str_short() for a in out_avals)})")


def _at_index(prim, ins, outs, index):
    """`sqrt(-1.0) = nan` at the first NaN, for elementwise primitives."""
    if not prim.traits.elementwise or any(np.ndim(x) not in (0, len(index)) for x in ins):
        return ""
    vals = [np.asarray(x)[index] if np.ndim(x) else np.asarray(x)[()] for x in ins]
    return (f"\n  first NaN at index {index}: {prim.name}"
            f"({', '.join(repr(v.item()) for v in vals)}) = nan")


def _first_nan_eqn(graph, consts, args):
    """Run `graph` equation by equation on numpy values; return the first
    (equation, operands, results) whose results hold a NaN made from operands
    without one, or None. Effects are not run again."""
    env = dict(zip(graph.constvars, consts))
    env.update(zip(graph.invars, args))
    with np.errstate(all="ignore"):
        for e in graph.eqns:
            if e.prim.effectful:
                continue
            ins = [np.asarray(x.val) if isinstance(x, Lit) else np.asarray(env[x])
                   for x in e.inputs]
            outs = [np.asarray(o) for o in e.prim.impl(*ins, **e.params)]
            env.update(zip(e.outs, outs))
            if any(_nan_index(o) is not None for o in outs) and \
                    all(_nan_index(x) is None for x in ins):
                return e, ins, outs
    return None


def _explain(jitted, args, kwargs, out_k):
    cg, _, leaves, paths = jitted._trace(args, kwargs)
    g = cg.graph
    host = [np.asarray(x, dtype=v.aval.dtype) for x, v in zip(leaves, g.invars)]
    consts = [np.asarray(c) for c in cg.consts]
    how = (f"(result {out_k} of jitted function {jitted.name} held NaN; found by running "
           f"its traced program equation by equation)")
    found = _first_nan_eqn(g, consts, host)
    held = [(p, i) for p, x in zip(paths, host) for i in [_nan_index(x)] if i is not None]
    held += [(f"(a captured constant {c.dtype.name}{list(c.shape)})", i)
             for c in consts for i in [_nan_index(c)] if i is not None]
    if found is not None:
        e, ins, outs = found
        first = next(i for o in outs for i in [_nan_index(o)] if i is not None)
        msg = (f"needle.debug_nans: {e.prim.name} made a NaN from operands without one\n  "
               + _describe(e.prim, e.params, [x.aval for x in e.inputs], [v.aval for v in e.outs])
               + f"\n  at {e.source or '(unknown source line)'}"
               + _at_index(e.prim, ins, outs, first) + f"\n  {how}")
        if held:
            msg += f"\n  (input {held[0][0]} also holds NaN, at index {held[0][1]})"
        raise FloatingPointError(msg)
    if held:
        raise FloatingPointError(f"needle.debug_nans: input {held[0][0]} already contains NaN "
                                 f"(first at index {held[0][1]}); no equation made a new one\n"
                                 f"  {how}")
    raise FloatingPointError(f"needle.debug_nans: result {out_k} of jitted function "
                             f"{jitted.name} held NaN, but its traced program run equation by "
                             f"equation with numpy gives none: the compiled code and the "
                             f"reference interpreter disagree (a bug in needle: please report "
                             f"it)")


def _check_eager(prim, vals, outs, params):
    bad = [i for o in outs for i in [_nan_index(o)] if i is not None]
    if bad and all(_nan_index(v) is None for v in vals):
        raise FloatingPointError(
            f"needle.debug_nans: {prim.name} made a NaN from operands without one\n"
            f"  {_describe(prim, params, [_aval(v) for v in vals], [_aval(o) for o in outs])}"
            f"\n  at {user_line(2) or '(unknown source line)'}"
            + _at_index(prim, vals, outs, bad[0]))


def _aval(x):
    return aval_of(np.asarray(x))


config.watch("debug_nans", _set)
if config.debug_nans:           # NEEDLE_DEBUG_NANS=1
    _set(True)
