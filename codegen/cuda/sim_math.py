"""Stage codegen (CUDA): what generated CUDA kernels use in Numba's CUDA
simulator. It lives in codegen because generated code imports it: a kernel
module depends on its code generator's helpers, never on the runtime.

Input: calls from a generated CUDA kernel module (codegen/cuda/emit.py) run by
the simulator (NUMBA_ENABLE_CUDASIM=1), which executes the kernel as Python.
Output: `math`, a stand-in for Python's math module with the GPU's IEEE
answers where Python raises: on a GPU `math.log(0.0)` is -inf, `math.exp(1e3)`
is inf and `math.sqrt(-1.0)` is nan (libdevice), while Python's math raises
ValueError or OverflowError. Each function tries Python's math first and
falls back to the numpy ufunc (IEEE semantics, warnings off) when it raises,
so the simulator checks a kernel's special values as the GPU computes them.
Nothing here is used when kernels are compiled for a real GPU.
"""
import math as _math

import numpy as _np

# math functions that raise in Python where IEEE (and libdevice) return
# inf or nan, with the numpy ufunc that answers instead
_IEEE = {"exp": _np.exp, "expm1": _np.expm1, "log": _np.log, "log1p": _np.log1p,
         "log2": _np.log2, "log10": _np.log10, "sqrt": _np.sqrt, "sin": _np.sin,
         "cos": _np.cos, "tan": _np.tan, "asin": _np.arcsin, "acos": _np.arccos,
         "acosh": _np.arccosh, "atanh": _np.arctanh, "cosh": _np.cosh,
         "sinh": _np.sinh, "pow": _np.power, "fmod": _np.fmod}


def _ieee(name, py, ufunc):
    def f(*args):
        try:
            return py(*args)
        except (ValueError, OverflowError):
            with _np.errstate(all="ignore"):
                return float(ufunc(*(_np.float64(a) for a in args)))
    f.__name__ = name
    return f


class _IEEEMath:
    """Python's math module, with the functions of _IEEE made total."""

    def __getattr__(self, name):
        return getattr(_math, name)


math = _IEEEMath()
for _name, _ufunc in _IEEE.items():
    setattr(math, _name, _ieee(_name, getattr(_math, _name), _ufunc))

