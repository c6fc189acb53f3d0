"""The public package: `needle.pure_callback`, a call of host Python (numpy,
MPI, any library) from inside traced and compiled code, with results (JAX's
jax.pure_callback).

Input: `pure_callback(callback, result_shape_dtypes, *args, vmap_method=None,
**kwargs)`: a Python function, the pytree of its results' shapes and dtypes
(anything with .shape and .dtype: numpy arrays, `needle.ShapeDtypeStruct`,
ShapedArray), and its arguments (pytrees of arrays, traced values or Python
numbers; other leaves, such as strings, are passed as they are). Output: the
callback's results, a pytree of arrays of those shapes and dtypes: numpy
arrays eagerly, traced values under jit / grad / vmap, where one
`pure_callback` equation (ir/primitives/callback.py) runs the callback
between kernels at every call of the compiled program.

Its contract is JAX's: the function is pure (no effect anyone relies on), so
a call whose results are unused is dropped (each call that is used runs,
at every call of the compiled program), and one whose operands are all
constants may run at trace time. It is not
differentiable (an error naming it; wrap the function calling it in
`needle.custom_vjp`); under `vmap` it follows `vmap_method`: None (an error),
'sequential' (called once per example), 'expand_dims' (called once, an
unbatched argument with a leading axis of size 1), 'broadcast_all' (called
once, every argument with the whole batch axis).
"""
import numpy as np

from . import numpy as nnp
from .ir.core import ShapedArray
from .ir.primitives.callback import VMAP_METHODS, pure_callback_p
from .tracer import pytree
from .tracer.core import Tracer
from .tracer.source import user_line

__all__ = ["pure_callback", "ShapeDtypeStruct"]


class ShapeDtypeStruct:
    """A result's shape and dtype (JAX's jax.ShapeDtypeStruct)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)

    def __repr__(self):
        return f"ShapeDtypeStruct(shape={self.shape}, dtype={self.dtype})"


def _dynamic(leaf):
    if isinstance(leaf, (Tracer, bool, int, float)):
        return True
    return isinstance(leaf, (np.ndarray, np.generic)) and leaf.dtype.kind in "biuf"


class _FlatCallback:
    """The `callback` param of a pure_callback equation: flat host arrays in,
    the user's function called on its pytrees, flat results out (checked
    against the declared structure)."""

    def __init__(self, fn, tree, static, n, out_tree, source):
        self.fn, self.tree, self.static, self.n = fn, tree, static, n
        self.out_tree, self.source = out_tree, source

    def __call__(self, *arrays):
        it = iter(arrays)
        leaves = [self.static[k] if k in self.static else next(it) for k in range(self.n)]
        args, kwargs = pytree.tree_unflatten(self.tree, leaves)
        try:
            out = self.fn(*args, **kwargs)
        except Exception as e:
            e.add_note(f"in needle.pure_callback({self!r}) at {self.source}")
            raise
        flat, tree = pytree.tree_flatten(out)
        if tree != self.out_tree:
            raise TypeError(f"pure_callback({self!r}): the callback returned the structure "
                            f"{tree}, its result_shape_dtypes are {self.out_tree}")
        return flat

    def __repr__(self):
        return getattr(self.fn, "__name__", type(self.fn).__name__)


def _aval(spec, path):
    if not (hasattr(spec, "shape") and hasattr(spec, "dtype")):
        raise TypeError(f"pure_callback: result_shape_dtypes{path} is {type(spec).__name__}, "
                        f"not a shape and dtype (needle.ShapeDtypeStruct, a numpy array)")
    return ShapedArray(tuple(int(d) for d in spec.shape), np.dtype(spec.dtype))


def pure_callback(callback, result_shape_dtypes, *args, vmap_method=None, **kwargs):
    """Call `callback(*args, **kwargs)` on host numpy arrays, eagerly or when
    the compiled program runs, and return its results (module docstring)."""
    if not callable(callback):
        raise TypeError(f"pure_callback: callback is {type(callback).__name__}, not callable")
    if vmap_method not in VMAP_METHODS:
        raise ValueError(f"pure_callback({getattr(callback, '__name__', callback)}): "
                         f"vmap_method={vmap_method!r} is none of {list(VMAP_METHODS)}")
    specs, out_tree = pytree.tree_flatten(result_shape_dtypes)
    avals = tuple(_aval(s, p) for s, p in zip(specs, pytree.leaf_paths(out_tree)))
    leaves, tree = pytree.tree_flatten((args, kwargs))
    static = {k: x for k, x in enumerate(leaves) if not _dynamic(x)}
    dynamic = [x if isinstance(x, Tracer) else nnp.asarray(x)
               for k, x in enumerate(leaves) if k not in static]
    cb = _FlatCallback(callback, tree, static, len(leaves), out_tree, user_line(2))
    outs = pure_callback_p.bind(*dynamic, callback=cb, result_avals=avals,
                                vmap_method=vmap_method)
    return pytree.tree_unflatten(out_tree, list(outs))
