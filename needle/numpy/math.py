"""needle.numpy: elementwise math with numpy's names (ufunc-style functions).

Input: arrays, scalars or tracers. Output: the result, eagerly (numpy) or as
a tracer under a trace. Broadcasting and JAX type promotion as in _core;
transcendental functions of integers return the default float (float32).
"""
import math as _math

import numpy as np

from ..ir import dtypes
from ..ir.primitives import (BINARY, COMPARE, UNARY, integer_pow_p, select_p)
from ._core import (asarray, binary, broadcast_arrays, cast, promote, result_type, typeof,
                    unary)

_U, _B = UNARY, {**BINARY, **COMPARE}

negative = unary(_U["neg"])
exp = unary(_U["exp"], to_float=True)
log = unary(_U["log"], to_float=True)
log1p = unary(_U["log1p"], to_float=True)
expm1 = unary(_U["expm1"], to_float=True)
sin = unary(_U["sin"], to_float=True)
cos = unary(_U["cos"], to_float=True)
tan = unary(_U["tan"], to_float=True)
tanh = unary(_U["tanh"], to_float=True)
sqrt = unary(_U["sqrt"], to_float=True)
floor = unary(_U["floor"], to_float=True)
ceil = unary(_U["ceil"], to_float=True)
isnan_ = unary(_U["isnan"], to_float=True)


def rint(x):
    """Round half to even; integers become the default float (as jnp.rint)."""
    return _U["round"].bind(promote(x, to_float=True)[0])


def round(x, decimals=0):  # noqa: A001 - numpy's name
    """Round half to even. Integers keep their dtype: unchanged for decimals >= 0,
    rounded to a multiple of 10**-decimals otherwise (numpy; computed in
    float64, exact for |x| < 2**53)."""
    dt = typeof(x)[0]
    if dt.kind != "f":
        if decimals >= 0:
            return asarray(x)
        return cast(round(cast(asarray(x), dtypes.float64), decimals), dt)
    if decimals == 0:
        return rint(x)
    scale = 10.0 ** decimals
    return divide(rint(multiply(x, scale)), scale)


around = round


def absolute(x):
    dt, _ = typeof(x)
    if dt == np.bool_:
        return asarray(x)
    return _U["abs"].bind(promote(x)[0])


abs = absolute  # noqa: A001


def sign(x):
    return _U["sign"].bind(promote(x)[0])


def isnan(x):
    dt, _ = typeof(x)
    return isnan_(x) if dt.kind == "f" else _false_like(x)


def isinf(x):
    dt, _ = typeof(x)
    return _U["isinf"].bind(promote(x)[0]) if dt.kind == "f" else _false_like(x)


def isfinite(x):
    return logical_not(logical_or(isnan(x), isinf(x)))


def _false_like(x):
    from .creation import zeros
    return zeros(np.shape(x) if not hasattr(x, "shape") else x.shape, dtype=np.bool_)


# On bools, add and maximum are `or`, multiply and minimum are `and` (numpy, JAX).
add = binary(_B["add"], bool_prim=_B["or"])
subtract = binary(_B["sub"], "subtract")
multiply = binary(_B["mul"], "multiply", bool_prim=_B["and"])
maximum = binary(_B["max"], "maximum", bool_prim=_B["or"])
minimum = binary(_B["min"], "minimum", bool_prim=_B["and"])
remainder = binary(_B["rem"], "remainder")
mod = remainder
arctan2 = binary(_B["atan2"], "arctan2", to_float=True)
equal = binary(_B["eq"], "equal")
not_equal = binary(_B["ne"], "not_equal")
less = binary(_B["lt"], "less")
less_equal = binary(_B["le"], "less_equal")
greater = binary(_B["gt"], "greater")
greater_equal = binary(_B["ge"], "greater_equal")
bitwise_and = binary(_B["and"], "bitwise_and")
bitwise_or = binary(_B["or"], "bitwise_or")
bitwise_xor = binary(_B["xor"], "bitwise_xor")


def true_divide(x, y):
    """x / y; integers divide as the default float (JAX's rule)."""
    return binary(_B["div"], "divide", to_float=True)(x, y)


divide = true_divide


def floor_divide(x, y):
    """x // y. Integers: floor division, 0 where y == 0 (numpy). Floats: the
    quotient of numpy's divmod, (x - remainder(x, y)) / y rounded to an integer,
    which floor(x / y) is not when x / y rounds up to one (1.0 // 0.1 is 9)."""
    x, y = promote(x, y)
    x, y = broadcast_arrays(x, y, name="floor_divide")
    if typeof(x)[0].kind != "f":
        return _B["div"].bind(x, y)
    q = rint(_B["div"].bind(subtract(x, remainder(x, y)), y))
    # remainder(-1, inf) is inf (numpy), so the formula fails for an infinite
    # divisor: there the quotient is -1 when the signs differ, else 0.
    q = where(logical_and(isinf(y), isfinite(x)),
              where(less(multiply(x, y), 0), -1.0, 0.0), q)
    return where(equal(y, 0), _B["div"].bind(x, y), q)


def power(x, y):
    """x ** y. A Python int y is integer_pow (any dtype, no negative powers of
    integers); integer arrays to integer arrays stay integers (numpy, JAX);
    otherwise the result is floating point."""
    if isinstance(y, int) and not isinstance(y, bool):
        (x,) = promote(x) if typeof(x)[0] != np.bool_ else [cast(asarray(x), dtypes.DEFAULT_INT)]
        if y < 0 and typeof(x)[0].kind != "f":
            raise ValueError("power: integers to negative integer powers are not allowed")
        return integer_pow_p.bind(x, y=y)
    dt, _ = result_type(x, y)
    if dt.kind in "iu":
        return binary(_B["pow"], "power")(x, y)
    return binary(_B["pow"], "power", to_float=True)(x, y)


def square(x):
    return power(x, 2)


def reciprocal(x):
    return true_divide(1, x)


def _to_bool(x):
    return cast(asarray(x), np.bool_) if typeof(x)[0] != np.bool_ else asarray(x)


def logical_and(x, y):
    return bitwise_and(_to_bool(x), _to_bool(y))


def logical_or(x, y):
    return bitwise_or(_to_bool(x), _to_bool(y))


def logical_xor(x, y):
    return bitwise_xor(_to_bool(x), _to_bool(y))


def logical_not(x):
    return _U["not"].bind(_to_bool(x))


def invert(x):
    return _U["not"].bind(asarray(x))


bitwise_not = invert


def where(condition, x=None, y=None, *, size=None, fill_value=None):
    """Select x where condition holds, else y (both broadcast). With one
    argument, nonzero(condition): under a trace it needs JAX's `size=`
    (needle/numpy/sorting.py)."""
    if x is None and y is None:
        from .sorting import nonzero
        return nonzero(condition, size=size, fill_value=fill_value)
    if x is None or y is None:
        raise TypeError("where: give both x and y, or neither (nonzero(condition))")
    x, y = promote(x, y)
    c, x, y = broadcast_arrays(_to_bool(condition), x, y, name="where")
    return select_p.bind(c, x, y)


def clip(a, a_min=None, a_max=None):
    if a_min is not None:
        a = maximum(a, a_min)
    if a_max is not None:
        a = minimum(a, a_max)
    return a


def sigmoid(x):
    return _U["logistic"].bind(promote(x, to_float=True)[0])


def erf(x):
    return _U["erf"].bind(promote(x, to_float=True)[0])


def rsqrt(x):
    return _U["rsqrt"].bind(promote(x, to_float=True)[0])


def exp2(x):
    return exp(multiply(promote(x, to_float=True)[0], _math.log(2.0)))


def log2(x):
    return divide(log(x), _math.log(2.0))


def log10(x):
    return divide(log(x), _math.log(10.0))


def sinh(x):
    return divide(subtract(exp(x), exp(negative(x))), 2.0)


def cosh(x):
    return divide(add(exp(x), exp(negative(x))), 2.0)


def logaddexp(x, y):
    m = maximum(x, y)
    safe = where(isinf(m), 0.0, m)
    return add(safe, log(add(exp(subtract(x, safe)), exp(subtract(y, safe)))))


def positive(x):
    return asarray(x)

