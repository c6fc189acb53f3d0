"""Stage codegen: backend-neutral expression text shared by every emitter
and expression table: typed constants, and numpy's NaN-propagating maximum /
minimum (reductions and scatters combine with them on every backend).

Input: values, dtypes, operand expressions (strings naming typed scalars).
Output: expression strings for a generated Numba module (which binds the
constructor names f32, i64, ... and INF, NAN: codegen/cpu/emit.py,
codegen/cuda/emit.py).
"""
import numpy as np

# Names the generated module defines for typed constructors.
CTOR = {np.dtype(np.bool_): "np.bool_", np.dtype(np.int8): "i8", np.dtype(np.int16): "i16",
        np.dtype(np.int32): "i32", np.dtype(np.int64): "i64", np.dtype(np.uint8): "u8",
        np.dtype(np.uint16): "u16", np.dtype(np.uint32): "u32", np.dtype(np.uint64): "u64",
        np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def const(value, dtype):
    """A typed constant: f32(1.5), never a bare Python float (which would turn
    float32 arithmetic into float64)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return "True" if bool(value) else "False"
    if dtype.kind == "f":
        v = float(value)
        if np.isnan(v):
            return f"{CTOR[dtype]}(NAN)"
        if np.isinf(v):
            return f"{CTOR[dtype]}({'-' if v < 0 else ''}INF)"
        return f"{CTOR[dtype]}({v!r})"
    return f"{CTOR[dtype]}({int(value)})"


def fmax(x, y, dt):
    """numpy's maximum: NaN in either operand gives NaN."""
    if dt.kind == "f":
        return f"({x} if ({x} > {y} or {x} != {x}) else {y})"
    return f"max({x}, {y})"


def fmin(x, y, dt):
    """numpy's minimum: NaN in either operand gives NaN."""
    if dt.kind == "f":
        return f"({x} if ({x} < {y} or {x} != {x}) else {y})"
    return f"min({x}, {y})"
