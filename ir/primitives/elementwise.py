"""Stage ir: elementwise primitives (unary, binary, comparisons, select,
convert_element_type), each with its abstract eval and numpy implementation.

Input: nothing. Output: `<name>_p` Primitive objects, and the tables
`UNARY`, `BINARY`, `COMPARE` (name -> Primitive) used by tests and backends.

Each declaration line states the primitive's traits (ir.core.Traits) beyond
`kind="elementwise"`: `expensive=True` (a transcendental function, pow,
atan2, sqrt: worth computing once), `commutative=True`.
"""
import math

import numpy as np

from .. import dtypes
from ..core import Primitive, ShapedArray, ShapeError, Traits

__all__ = ["UNARY", "BINARY", "COMPARE", "FLOAT_ONLY", "select_p", "convert_element_type_p",
           "integer_pow_p"]

UNARY, BINARY, COMPARE = {}, {}, {}
FLOAT_ONLY = set()


def _kind_ok(prim, dt, kinds):
    if np.dtype(dt).kind not in kinds:
        need = {"f": "floating-point", "fiu": "numeric", "biu": "boolean or integer",
                "fiub": "any", "iu": "integer"}.get(kinds, kinds)
        raise TypeError(f"{prim}: needs {need} operands, got {np.dtype(dt).name}")


def _unary_aval(name, kinds, out_dtype=None):
    def abstract_eval(x):
        _kind_ok(name, x.dtype, kinds)
        return [ShapedArray(x.shape, out_dtype or x.dtype, x.weak_type and out_dtype is None)]
    return abstract_eval


def _same(name, *avals):
    """Operands share one shape, except that 0-d operands broadcast (as in JAX's
    lax); returns that shape."""
    shapes = {a.shape for a in avals if a.shape != ()}
    if len(shapes) > 1:
        raise ShapeError(f"{name}: operand shapes differ: "
                         + " vs ".join(str(a.shape) for a in avals))
    dts = {a.dtype for a in avals}
    if len(dts) > 1:
        raise TypeError(f"{name}: operand dtypes differ: "
                        + " vs ".join(a.dtype.name for a in avals))
    return shapes.pop() if shapes else ()


def _binary_aval(name, kinds, out_dtype=None):
    def abstract_eval(x, y):
        shape = _same(name, x, y)
        _kind_ok(name, x.dtype, kinds)
        weak = x.weak_type and y.weak_type and out_dtype is None
        return [ShapedArray(shape, out_dtype or x.dtype, weak)]
    return abstract_eval


def _def_unary(name, np_fn, kinds="fiu", out_dtype=None, **traits):
    p = Primitive(name, Traits(kind="elementwise", **traits))
    p.abstract_eval = _unary_aval(name, kinds, out_dtype)
    dt_out = out_dtype

    def impl(x):
        return [np.asarray(np_fn(x), dtype=dt_out or x.dtype)]
    p.impl = impl
    UNARY[name] = p
    if kinds == "f":
        FLOAT_ONLY.add(p)
    globals()[name + "_p"] = p
    __all__.append(name + "_p")
    return p


def _def_binary(name, np_fn, kinds="fiu", out_dtype=None, table=BINARY, **traits):
    p = Primitive(name, Traits(kind="elementwise", **traits))
    p.abstract_eval = _binary_aval(name, kinds, out_dtype)
    dt_out = out_dtype

    def impl(x, y):
        return [np.asarray(np_fn(x, y), dtype=dt_out or np.result_type(x, y))]
    p.impl = impl
    table[name] = p
    if kinds == "f":
        FLOAT_ONLY.add(p)
    globals()[name + "_p"] = p
    __all__.append(name + "_p")
    return p


_erf = np.frompyfunc(math.erf, 1, 1)


def _logistic(x):
    # exp(-|x|) never overflows; the two branches agree at 0.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _round(x):
    return np.round(x) if x.dtype.kind == "f" else x


def _not(x):
    return np.logical_not(x) if x.dtype == np.bool_ else np.invert(x)


# name, numpy function, operand kinds, traits
_def_unary("neg", np.negative, "fiu")
_def_unary("exp", np.exp, "f", expensive=True)
_def_unary("log", np.log, "f", expensive=True)
_def_unary("log1p", np.log1p, "f", expensive=True)
_def_unary("expm1", np.expm1, "f", expensive=True)
_def_unary("sin", np.sin, "f", expensive=True)
_def_unary("cos", np.cos, "f", expensive=True)
_def_unary("tan", np.tan, "f", expensive=True)
_def_unary("tanh", np.tanh, "f", expensive=True)
_def_unary("logistic", _logistic, "f", expensive=True)
_def_unary("sqrt", np.sqrt, "f", expensive=True)
_def_unary("rsqrt", lambda x: 1 / np.sqrt(x), "f", expensive=True)
_def_unary("abs", np.abs, "fiu")
_def_unary("sign", np.sign, "fiu")
_def_unary("floor", np.floor, "f")
_def_unary("ceil", np.ceil, "f")
_def_unary("round", _round, "f")
_def_unary("erf", lambda x: np.asarray(_erf(x), np.float64).astype(x.dtype), "f",
           expensive=True)
_def_unary("not", _not, "biu")
_def_unary("isnan", np.isnan, "f", out_dtype=dtypes.bool_)
_def_unary("isinf", np.isinf, "f", out_dtype=dtypes.bool_)


def _floordiv(x, y):
    return np.floor_divide(x, y) if x.dtype.kind in "iu" else np.true_divide(x, y)


def _rem(x, y):
    # numpy's remainder: the result takes the sign of the divisor.
    return np.remainder(x, y)


def _pow(x, y):
    if x.dtype.kind == "f":
        return np.power(x, y)
    # numpy raises for negative integer exponents; a kernel cannot, so needle
    # truncates 1 / x**n toward zero (as C and Numba do): 1 for x == 1, +-1 for
    # x == -1, 0 otherwise (0 also for x == 0).
    neg = y < 0
    r = np.power(x, np.where(neg, 0, y).astype(y.dtype))
    odd = (np.abs(y) % 2).astype(bool)
    inv = np.where(x == 1, 1, np.where(x == -1, np.where(odd, -1, 1), 0))
    return np.where(neg, inv, r)


_def_binary("add", np.add, commutative=True)
_def_binary("sub", np.subtract)
_def_binary("mul", np.multiply, commutative=True)
_def_binary("div", _floordiv)            # true division on floats, floor division on ints
_def_binary("rem", _rem)
_def_binary("pow", _pow, "fiu", expensive=True)   # integers: x ** -n truncates 1 / x**n
_def_binary("max", np.maximum, commutative=True)  # NaN-propagating, as numpy's maximum
_def_binary("min", np.minimum, commutative=True)
_def_binary("atan2", np.arctan2, "f", expensive=True)
_def_binary("and", np.bitwise_and, "biu", commutative=True)
_def_binary("or", np.bitwise_or, "biu", commutative=True)
_def_binary("xor", np.bitwise_xor, "biu", commutative=True)
_def_binary("eq", np.equal, "fiub", out_dtype=dtypes.bool_, table=COMPARE, commutative=True)
_def_binary("ne", np.not_equal, "fiub", out_dtype=dtypes.bool_, table=COMPARE, commutative=True)
for _n, _f in [("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
               ("ge", np.greater_equal)]:
    _def_binary(_n, _f, "fiub", out_dtype=dtypes.bool_, table=COMPARE)


# integer_pow: x ** y for a static Python int y (any dtype but bool).
integer_pow_p = Primitive("integer_pow", Traits(kind="elementwise"))


def _integer_pow_aval(x, *, y):
    _kind_ok("integer_pow", x.dtype, "fiu")
    if not isinstance(y, int):
        raise TypeError(f"integer_pow: exponent must be a Python int, got {y!r}")
    if y < 0 and x.dtype.kind != "f":
        raise ValueError(f"integer_pow: integers to a negative power ({y}) are not allowed")
    return [x]


def _integer_pow_impl(x, *, y):
    return [np.asarray(np.power(x, x.dtype.type(y)) if y >= 0 else 1 / np.power(x, -y),
                       dtype=x.dtype)]


integer_pow_p.abstract_eval = _integer_pow_aval
integer_pow_p.impl = _integer_pow_impl

# select(pred, on_true, on_false): numpy's where.
select_p = Primitive("select", Traits(kind="elementwise"))


def _select_aval(pred, x, y):
    if pred.dtype != dtypes.bool_:
        raise TypeError(f"select: predicate must be bool, got {pred.dtype.name}")
    shape = _same("select", pred.update(dtype=x.dtype), x, y)
    return [ShapedArray(shape, x.dtype, x.weak_type and y.weak_type)]


select_p.abstract_eval = _select_aval
select_p.impl = lambda pred, x, y: [np.asarray(np.where(pred, x, y), dtype=np.result_type(x, y))]

# convert_element_type(x, new_dtype, weak_type): 0 and 1 stay 0 and 1 (shape_only)
convert_element_type_p = Primitive("convert_element_type",
                                   Traits(kind="elementwise", shape_only=True))


def _convert_aval(x, *, new_dtype, weak_type=False):
    return [ShapedArray(x.shape, dtypes.canonicalize(new_dtype, "convert_element_type"),
                        weak_type)]


def _convert_impl(x, *, new_dtype, weak_type=False):
    new_dtype = np.dtype(new_dtype)
    if new_dtype == np.bool_:
        return [x != 0]
    if new_dtype.kind in "iu" and x.dtype.kind == "f":
        # Truncation toward zero; NaN and out-of-range values are undefined
        # (as in C and JAX). Produce a deterministic value without warnings.
        with np.errstate(invalid="ignore"):
            return [np.trunc(x).astype(new_dtype)]
    return [x.astype(new_dtype)]


convert_element_type_p.abstract_eval = _convert_aval
convert_element_type_p.impl = _convert_impl
