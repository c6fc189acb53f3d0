"""Stage ir: sorting and the scans beside cumsum: `sort` (JAX's sort_p:
several operands permuted by the stable sort of the first), `cumprod`,
`cummax`, `cummin`.

Input: nothing. Output: `sort_p`, `cumprod_p`, `cummax_p`, `cummin_p` with
abstract eval, numpy implementation and traits, and `CUMULATIVE` (name ->
the reduction whose running value the scan stores).

    sort(*operands; dimension, is_stable, num_keys) -> operands, each
        permuted along `dimension` by the stable ascending sort of the
        first (argsort is sort(x, iota)). numpy's order: NaN last, -0.0
        and 0.0 equal (they keep their order). One key (num_keys=1):
        ties keep the operands' order, which is what a second key would
        mostly be for. Its own loop per row (own_loop): one kernel per sort,
        several results.
    cumprod / cummax / cummin(x; axis, reverse) -> running product /
        maximum / minimum along `axis` (from the end with reverse), as
        cumsum; NaN propagates through cummax / cummin as through
        numpy's maximum.accumulate.
"""
import numpy as np

from .. import dtypes
from ..core import Primitive, ShapedArray, ShapeError, Traits

__all__ = ["sort_p", "cumprod_p", "cummax_p", "cummin_p", "CUMULATIVE"]


def _sort_params(params):
    """Every sort equation holds all three params (JAX's defaults filled in)."""
    out = {"is_stable": True, "num_keys": 1, **params}
    out["is_stable"] = bool(out["is_stable"])
    try:
        out["dimension"], out["num_keys"] = int(out["dimension"]), int(out["num_keys"])
    except (KeyError, TypeError, ValueError):
        pass            # left as given: the abstract eval names it
    return out


def _sort_aval(*operands, dimension, is_stable=True, num_keys=1):
    if not operands:
        raise TypeError("sort: needs at least one operand")
    x = operands[0]
    if any(tuple(o.shape) != tuple(x.shape) for o in operands):
        raise ShapeError(f"sort: operands must have one shape, got "
                         f"{', '.join(o.str_short() for o in operands)}")
    if x.ndim == 0:
        raise ShapeError("sort: cannot sort a 0-d operand")
    if not 0 <= dimension < x.ndim:
        raise ShapeError(f"sort: dimension {dimension} out of range for shape {x.shape}")
    if num_keys != 1:
        raise NotImplementedError(f"sort: num_keys={num_keys}: needle sorts by one key (the "
                                  f"first operand); the others follow its stable order")
    return [ShapedArray(o.shape, o.dtype, o.weak_type) for o in operands]


def sort_numpy(*operands, dimension, is_stable=True, num_keys=1):
    perm = np.argsort(operands[0], axis=dimension, kind="stable")
    return [np.take_along_axis(o, perm, axis=dimension) for o in operands]


# one kernel per sort, with a loop over each row of its own (codegen)
sort_p = Primitive("sort", Traits(kind="reduction", own_loop=True), multiple_results=True)
sort_p.abstract_eval = _sort_aval
sort_p.impl = sort_numpy
sort_p.canonicalize_params = _sort_params

# the reduction whose running value each scan stores (its identity starts it)
CUMULATIVE = {"cumprod": "reduce_prod", "cummax": "reduce_max", "cummin": "reduce_min"}
_NUMPY = {"cumprod": lambda x, axis: np.cumprod(x, axis=axis, dtype=x.dtype),
          "cummax": lambda x, axis: np.maximum.accumulate(x, axis=axis),
          "cummin": lambda x, axis: np.minimum.accumulate(x, axis=axis)}


def _cumulative(name):
    def aval(x, *, axis, reverse=False):
        if not 0 <= axis < x.ndim:
            raise ShapeError(f"{name}: axis {axis} out of range for shape {x.shape}")
        if x.dtype == dtypes.bool_:
            raise TypeError(f"{name}: bool operands are not supported (convert first)")
        return [x]

    def impl(x, *, axis, reverse=False):
        if reverse:
            x = np.flip(x, axis)
        with np.errstate(over="ignore"):
            out = np.asarray(_NUMPY[name](x, axis), dtype=x.dtype)
        return [np.ascontiguousarray(np.flip(out, axis) if reverse else out)]

    # a scan, like cumsum: each element reads a prefix of its row
    p = Primitive(name, Traits(kind="reduction", own_loop=True))
    p.abstract_eval, p.impl = aval, impl
    return p


cumprod_p = _cumulative("cumprod")
cummax_p = _cumulative("cummax")
cummin_p = _cumulative("cummin")
