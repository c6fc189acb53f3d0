"""Stage codegen (CPU): the per-primitive emit table: how one elementwise
primitive becomes a Numba-typed Python expression.

Input: operand expressions (strings naming already-typed scalars), their
dtypes, the output dtype and the equation's params.
Output: an expression string; the emitter wraps it in the output dtype's
constructor so Numba never widens float32 to float64 or int32 to int64.

Structural, reduction and indexing primitives (by their `kind` trait) are
handled by the emitter itself: they change how elements are indexed, not how
they are combined. `EMITTERS` names them, with the elementwise primitives
whose rule takes params (`ELEMENTWISE_WITH_PARAMS`), so the registry test
sees every primitive covered.
"""
import numpy as np

from ...ir.core import PRIMITIVES
from ...ir.primitives import BINARY, COMPARE, UNARY
from ..exprs import CTOR, const, fmax, fmin  # noqa: F401  (re-exported)
from .fastmath import FAST32
from . import special_rules

# Typed constants and numpy's maximum / minimum are backend-neutral (codegen/exprs.py).
_fmax, _fmin = fmax, fmin


def _sign(x, dt):
    if dt.kind == "f":
        return (f"({const(1, dt)} if {x} > 0 else ({const(-1, dt)} if {x} < 0 else {x}))")
    if dt.kind == "u":
        return f"({const(1, dt)} if {x} > 0 else {const(0, dt)})"
    return f"({const(1, dt)} if {x} > 0 else ({const(-1, dt)} if {x} < 0 else {const(0, dt)}))"


def _logistic(x, dt):
    one = const(1, dt)
    return f"({one} / ({one} + math.exp(-{x})))"


def _not(x, dt):
    return f"(not {x})" if dt == np.bool_ else f"(~{x})"


def _div(x, y, dt):
    if dt.kind == "f":
        return f"({x} / {y})"
    if dt == np.int64:
        # INT64_MIN // -1 overflows: numpy wraps to INT64_MIN, numba's division
        # gives 0; negation wraps the same as numpy (narrower ints divide in
        # 64 bits and wrap when cast back)
        return f"(-{x} if {y} == -1 else {x} // {y})"
    return f"({x} // {y})"


# Each rule: (*operand exprs, operand dtype) -> expression.
UNARY_RULES = {
    "neg": lambda x, dt: f"(-{x})",
    "exp": lambda x, dt: f"math.exp({x})",
    "log": lambda x, dt: f"math.log({x})",
    "log1p": lambda x, dt: f"math.log1p({x})",
    "expm1": lambda x, dt: f"math.expm1({x})",
    "sin": lambda x, dt: f"math.sin({x})",
    "cos": lambda x, dt: f"math.cos({x})",
    "tan": lambda x, dt: f"math.tan({x})",
    "tanh": lambda x, dt: f"math.tanh({x})",
    "logistic": _logistic,
    "sqrt": lambda x, dt: f"math.sqrt({x})",
    "rsqrt": lambda x, dt: f"({const(1, dt)} / math.sqrt({x}))",
    "abs": lambda x, dt: f"abs({x})",
    "sign": _sign,
    "floor": lambda x, dt: f"np.floor({x})",
    "ceil": lambda x, dt: f"np.ceil({x})",
    "round": lambda x, dt: f"np.rint({x})",
    "erf": lambda x, dt: f"math.erf({x})",
    "erf_inv": special_rules.erf_inv_rule("_flog1p"),     # float32: fastmath's log1p
    "not": _not,
    "isnan": lambda x, dt: f"({x} != {x})",
    "isinf": lambda x, dt: f"(abs({x}) == {const(np.inf, dt)})",
}

def unary(name, x, dt):
    """Expression for unary primitive `name`: float32 transcendental functions
    use needle's vectorisable approximations (codegen/cpu/fastmath.py)."""
    if np.dtype(dt) == np.float32 and name in FAST32:
        return f"{FAST32[name]}({x})"
    return UNARY_RULES[name](x, dt)


BINARY_RULES = {
    "add": lambda x, y, dt: f"({x} + {y})",
    "sub": lambda x, y, dt: f"({x} - {y})",
    "mul": lambda x, y, dt: f"({x} * {y})",
    "div": _div,
    "rem": lambda x, y, dt: f"({x} % {y})",
    "pow": lambda x, y, dt: f"({x} ** {y})",
    "max": _fmax,
    "min": _fmin,
    "atan2": lambda x, y, dt: f"math.atan2({x}, {y})",
    "and": lambda x, y, dt: f"({x} & {y})",
    "or": lambda x, y, dt: f"({x} | {y})",
    "xor": lambda x, y, dt: f"({x} ^ {y})",
    **special_rules.SHIFT_RULES,        # shift_left, shift_right_logical / _arithmetic
    "eq": lambda x, y, dt: f"({x} == {y})",
    "ne": lambda x, y, dt: f"({x} != {y})",
    "lt": lambda x, y, dt: f"({x} < {y})",
    "le": lambda x, y, dt: f"({x} <= {y})",
    "gt": lambda x, y, dt: f"({x} > {y})",
    "ge": lambda x, y, dt: f"({x} >= {y})",
}


def integer_pow(x, y, dt):
    if y == 0:
        return const(1, dt)
    if abs(y) <= 8:
        prod = " * ".join([x] * abs(y))
        return f"({prod})" if y > 0 else f"({const(1, dt)} / ({prod}))"
    return f"({x} ** {const(y, dt)})"


def convert(x, src, dst):
    src, dst = np.dtype(src), np.dtype(dst)
    if dst == np.bool_:
        return f"({x} != 0)"
    return f"{CTOR[dst]}({x})"


def select(p, x, y):
    return f"({x} if {p} else {y})"


bitcast = special_rules.bitcast       # bitcast_convert_type (CUDA: libdevice)
threefry2x32 = special_rules.threefry2x32


# Elementwise primitives whose rule is one of the functions above: it reads
# params or more than one dtype, so it is not in UNARY_RULES / BINARY_RULES.
ELEMENTWISE_WITH_PARAMS = {"integer_pow": integer_pow, "convert_element_type": convert,
                           "select": select, "bitcast_convert_type": bitcast,
                           "threefry2x32": threefry2x32}
# Primitives the emitter handles itself (no expression rule in the tables above).
INDEXED_KINDS = ("structural", "reduction", "indexing")
EMITTERS = {n for n, p in PRIMITIVES.items() if p.kind in INDEXED_KINDS} | \
    set(ELEMENTWISE_WITH_PARAMS)

assert set(UNARY) <= set(UNARY_RULES) and set(BINARY) | set(COMPARE) <= set(BINARY_RULES)
