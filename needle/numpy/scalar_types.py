"""needle.numpy: the scalar types (`float32`, `int32`, `uint8`, `bool_`, ...),
callable as in numpy and JAX and usable wherever a dtype is.

Input: the dtypes needle supports (ir/dtypes.py). Output: one class per
dtype, JAX's `_ScalarMeta` design: `nnp.float32(x)` converts an array, a
tracer, a device array or a Python value (a strongly typed result: a 0-d
array for a scalar); `nnp.float32.dtype` is the numpy dtype, so
`np.dtype(nnp.float32)`, `x.astype(nnp.float32)`, `nnp.zeros(3, nnp.float32)`
and `np.zeros(3, nnp.float32)` all see float32; it compares equal (and
hashes equal) to that dtype and to numpy's `np.float32`;
`isinstance(np.float32(1), nnp.float32)` holds.
"""
import numpy as np

from ..ir import dtypes

__all__ = ["bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float32", "float64"]


class _ScalarMeta(type):
    dtype: np.dtype

    def __hash__(cls):
        return hash(cls.dtype)

    def __eq__(cls, other):
        if isinstance(other, _ScalarMeta):
            return cls is other
        if other is None:               # np.dtype(None) is float64
            return False
        try:
            return cls.dtype == np.dtype(other)
        except (TypeError, ValueError):
            return False

    def __ne__(cls, other):
        return not cls == other

    def __call__(cls, x):
        from ._core import asarray
        return asarray(x, cls.dtype)

    def __instancecheck__(cls, instance):
        return isinstance(instance, cls.dtype.type)

    def __repr__(cls):
        return f"needle.numpy.{cls.__name__}"


def _scalar_type(name, dtype):
    return _ScalarMeta(name, (), {"dtype": np.dtype(dtype), "__module__": "needle.numpy",
                                  "__doc__": f"The {np.dtype(dtype).name} scalar type: a "
                                             f"dtype, and a function converting to it."})


bool_ = _scalar_type("bool_", dtypes.bool_)
int8 = _scalar_type("int8", dtypes.int8)
int16 = _scalar_type("int16", dtypes.int16)
int32 = _scalar_type("int32", dtypes.int32)
int64 = _scalar_type("int64", dtypes.int64)
uint8 = _scalar_type("uint8", dtypes.uint8)
uint16 = _scalar_type("uint16", dtypes.uint16)
uint32 = _scalar_type("uint32", dtypes.uint32)
uint64 = _scalar_type("uint64", dtypes.uint64)
float32 = _scalar_type("float32", dtypes.float32)
float64 = _scalar_type("float64", dtypes.float64)
