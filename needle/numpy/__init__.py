"""needle.numpy: numpy's names and semantics over needle's primitives.

Input: numpy arrays, Python scalars and tracers. Output: numpy arrays when
called eagerly on concrete values (computed at once with the primitives'
numpy implementations), tracers under a trace.

Broadcasting follows numpy; type promotion follows JAX's lattice with 64-bit
types (float32 is the default float, Python scalars are weakly typed). Arrays
are immutable: use `x.at[idx].set(v)` (or `needle.numpy.at(x)[idx].set(v)` on
numpy arrays) instead of assignment.
"""
import numpy as _np

from ..ir.dtypes import promote_types  # noqa: F401
from .scalar_types import (bool_, float32, float64, int8, int16, int32, int64,  # noqa: F401
                           uint8, uint16, uint32, uint64)
from ._core import broadcast_shapes, result_type as _result_type  # noqa: F401
from ._methods import attach as _attach
from .creation import *  # noqa: F401,F403
from .indexing import at, take, take_along_axis  # noqa: F401
from .linalg_ops import dot, einsum, inner, matmul, outer, tensordot, vdot  # noqa: F401
from .math import *  # noqa: F401,F403
from .math import abs, round  # noqa: F401,A004
from .reductions import *  # noqa: F401,F403
from .reductions import all, any, max, min, sum  # noqa: F401,A004
from .shape import *  # noqa: F401,F403
from .shape import broadcast_arrays  # noqa: F401  (numpy's, not _core's: 0-d broadcast too)
from .more import *  # noqa: F401,F403
from .sorting import *  # noqa: F401,F403  (sort, argsort, searchsorted, nonzero, unique, ...)
from . import linalg  # noqa: F401,E402  (needle.numpy.linalg: norm)
# last: the star imports above carry _core's operand-form asarray
from .creation import array, asarray, iota  # noqa: F401,E402

pi, e, inf, nan, newaxis = _np.pi, _np.e, _np.inf, _np.nan, None
ndarray = _np.ndarray
dtype = _np.dtype


def result_type(*args):
    """The dtype of an operation on `args`, by needle's (JAX's) promotion."""
    return _result_type(*args)[0]


def shape(a):
    return tuple(a.shape) if hasattr(a, "shape") else _np.shape(a)


def ndim(a):
    return len(shape(a))


def size(a):
    return int(_np.prod(shape(a), dtype=_np.int64))


def astype(x, dtype):
    from ._core import cast
    return cast(asarray(x), dtype)


_attach()

# The star imports above also bring the helpers those modules use; they are
# not part of needle.numpy's API.
for _name in ("BINARY", "COMPARE", "UNARY", "ShapeError", "Tracer", "binary", "unary",
              "broadcast_in_dim_p", "integer_pow_p", "iota_p", "select_p", "cast", "promote",
              "typeof", "shape_of", "current_trace", "dtypes", "normalize_axis", "np",
              "user_line", "with_location"):
    globals().pop(_name, None)
del _name
