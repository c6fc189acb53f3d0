"""The public package: the bit-level lax functions, with JAX's names and
semantics: `shift_left`, `shift_right_logical`, `shift_right_arithmetic`,
`bitcast_convert_type` (between types of one width), and `erf_inv`.
needle.lax re-exports them.

Input: arrays, scalars or tracers. Output: arrays (or tracers) made by the
primitives of ir/primitives/bits.py and special.py.

As lax's, these do not promote: the operands of a shift have one integer
dtype (a Python int amount takes the other operand's), and a shift by the
bit width or more (a negative amount included) shifts every bit out: 0, or
the sign for shift_right_arithmetic. erf_inv(+-1) is +-inf; integers become
the default float.
"""
import numpy as np

from . import numpy as nnp
from .ir.primitives import (bitcast_convert_type_p, erf_inv_p, shift_left_p,
                            shift_right_arithmetic_p, shift_right_logical_p)
from .numpy._core import broadcast_arrays, promote

__all__ = ["shift_left", "shift_right_logical", "shift_right_arithmetic", "bitcast_convert_type",
           "erf_inv"]


def _shift(prim):
    def fn(x, y):
        # a Python int is weak: it takes the other operand's dtype
        if isinstance(y, int) and not isinstance(x, int):
            y = np.asarray(y, nnp.asarray(x).dtype)
        elif isinstance(x, int) and not isinstance(y, int):
            x = np.asarray(x, nnp.asarray(y).dtype)
        x, y = nnp.asarray(x), nnp.asarray(y)
        if x.dtype != y.dtype:
            raise TypeError(f"lax.{prim.name}: operands must have one dtype, got {x.dtype} and "
                            f"{y.dtype}")
        return prim.bind(*broadcast_arrays(x, y, name=prim.name))
    fn.__name__ = prim.name
    fn.__doc__ = f"lax.{prim.name}: see the module docstring."
    return fn


shift_left = _shift(shift_left_p)
shift_right_logical = _shift(shift_right_logical_p)
shift_right_arithmetic = _shift(shift_right_arithmetic_p)


def bitcast_convert_type(operand, new_dtype):
    """The bits of `operand` read as `new_dtype`, a type of the same width."""
    return bitcast_convert_type_p.bind(nnp.asarray(operand), new_dtype=np.dtype(new_dtype))


def erf_inv(x):
    """The inverse error function (XLA's polynomial; erf_inv(+-1) = +-inf)."""
    (x,) = promote(nnp.asarray(x), to_float=True)
    return erf_inv_p.bind(x)
