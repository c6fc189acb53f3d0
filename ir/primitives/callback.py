"""Stage ir: the pure host callback primitive behind `needle.pure_callback`.

Input: nothing. Output: `pure_callback_p`.

`pure_callback(*xs, callback, result_avals, vmap_method)` calls
`callback(*host_arrays)` when the program runs and returns its results, one
array per aval of `result_avals` (JAX's pure_callback). Unlike
debug_callback it has results and is pure (not `effectful`): an equation
whose results nobody reads is dropped (DCE), one whose results are read is
kept (each call is its own equation: its callback param is a new object, so
CSE merges none), and one whose operands are all constants may run at trace
or compile time. It is of kind 'host': fusion never puts it
in a kernel; the runtime runs it as a host step between kernels, with host
copies of its operands (staged from the device on CUDA) and its results
copied into fresh arrays (staged back to the device on CUDA).

`callback` takes and returns flat lists of numpy arrays (needle/callback.py
wraps the user's function, whose arguments and results may be pytrees); its
repr is what the IR printer shows. `vmap_method` is read by its batching
rule (passes/batching/rules_callback.py).
"""
import numpy as np

from ..core import Primitive, ShapedArray, Traits

__all__ = ["pure_callback_p", "VMAP_METHODS"]

# JAX's vmap methods (jax.pure_callback); None: vmap of it is an error.
VMAP_METHODS = (None, "sequential", "expand_dims", "broadcast_all")

pure_callback_p = Primitive("pure_callback", Traits(kind="host"), multiple_results=True)


def _abstract_eval(*avals, callback, result_avals, vmap_method=None):
    if vmap_method not in VMAP_METHODS:
        raise ValueError(f"pure_callback({callback!r}): vmap_method={vmap_method!r} is none "
                         f"of {list(VMAP_METHODS)}")
    return [ShapedArray(a.shape, a.dtype) for a in result_avals]


def _impl(*args, callback, result_avals, vmap_method=None):
    outs = list(callback(*args))
    if len(outs) != len(result_avals):
        raise TypeError(f"pure_callback({callback!r}): the callback returned {len(outs)} "
                        f"arrays, its result_shape_dtypes declare {len(result_avals)}")
    res = []
    for k, (o, a) in enumerate(zip(outs, result_avals)):
        o = np.asarray(o)
        if o.shape != tuple(a.shape) or o.dtype != a.dtype:
            raise TypeError(f"pure_callback({callback!r}): result {k} is "
                            f"{o.dtype}{list(o.shape)}, its result_shape_dtypes declare "
                            f"{np.dtype(a.dtype)}{list(a.shape)}")
        res.append(np.array(o, dtype=a.dtype, order="C"))     # a fresh array, never theirs
    return res


pure_callback_p.abstract_eval = _abstract_eval
pure_callback_p.impl = _impl
