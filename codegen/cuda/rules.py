"""Stage codegen (CUDA): the per-primitive expression table, the CPU table
(codegen/cpu/rules.py) with what differs on a GPU overridden.

Input: operand expressions, their dtype. Output: an expression string.

What differs:
- float32 transcendental functions use `math.*`, never the CPU's call-free
  approximations (codegen/cpu/fastmath.py): numba.cuda lowers `math.exp` of
  a float32 to libdevice's `__nv_expf`, already fast and float32 throughout;
- an integer `pow` calls `ipow`, a device function (see emit.IPOW);
- floor, ceil and round call libdevice (numba.cuda has no numpy ufuncs in
  kernels, and `math.floor` returns an integer); the generated module
  substitutes numpy for them under the CUDA simulator, whose libdevice
  functions are stubs.
Structural, reduction, indexing primitives and dot_general are handled by
the emitter (`EMITTERS`).
"""
import numpy as np

from ..cpu import rules as cpu
from ..cpu import special_rules

def _pow(x, y, dt):
    # an integer power is `ipow`, a device function with the CPU's semantics
    # for negative exponents (see emit.IPOW)
    return f"ipow({x}, {y})" if np.dtype(dt).kind in "iu" else cpu.BINARY_RULES["pow"](x, y, dt)


BINARY_RULES = {**cpu.BINARY_RULES, "pow": _pow}


def _libdevice(fn):
    def rule(x, dt):
        if np.dtype(dt).kind != "f":
            return x                    # already integral
        return f"libdevice.{fn}{'f' if np.dtype(dt) == np.float32 else ''}({x})"
    return rule


UNARY_RULES = {**cpu.UNARY_RULES, "floor": _libdevice("floor"), "ceil": _libdevice("ceil"),
               "round": _libdevice("rint"),
               "erf_inv": special_rules.erf_inv_rule("math.log1p")}   # libdevice's log1pf

# bitcast_convert_type through libdevice (float_as_int, ...): see special_rules
bitcast = special_rules.cuda_bitcast
# the same text on a GPU as on the CPU
integer_pow, convert, select, threefry2x32 = cpu.integer_pow, cpu.convert, cpu.select, \
    cpu.threefry2x32


def unary(name, x, dt):
    """Expression for unary primitive `name` (no fastmath helpers on CUDA)."""
    return UNARY_RULES[name](x, dt)


EMITTERS = cpu.EMITTERS | {"dot_general"} | {"cholesky", "lu", "triangular_solve"}  # linalg.py

# Names the module binds to numpy under the simulator (see emit.SIM_LIBDEVICE).
LIBDEVICE = ("floorf", "floor", "ceilf", "ceil", "rintf", "rint", "float_as_int", "int_as_float",
             "double_as_longlong", "longlong_as_double")

assert set(cpu.UNARY_RULES) == set(UNARY_RULES)
