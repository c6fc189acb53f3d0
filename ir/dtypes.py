"""Stage ir: the dtypes needle supports and JAX's type-promotion lattice.

Input: numpy dtypes, Python scalars and weak-type flags.
Output: canonical numpy dtypes and (dtype, weak_type) results of promotion.

Promotion follows JAX's lattice with 64-bit types enabled: Python scalars are
weakly typed (they adopt the dtype of the array they meet), float32 is the
default float, int64 the default int. float64 appears only when an input is
float64 or a caller asks for it.
"""
import numpy as np

bool_ = np.dtype(np.bool_)
int8, int16, int32, int64 = (np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))
uint8, uint16, uint32, uint64 = (np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64))
float32, float64 = np.dtype(np.float32), np.dtype(np.float64)

SUPPORTED = (bool_, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64)
DEFAULT_FLOAT = float32
DEFAULT_INT = int64

_SHORT = {bool_: "bool", int8: "i8", int16: "i16", int32: "i32", int64: "i64",
          uint8: "u8", uint16: "u16", uint32: "u32", uint64: "u64",
          float32: "f32", float64: "f64"}


class DTypeError(TypeError):
    """An unsupported dtype or an impossible conversion."""


def short_name(dtype):
    """'f32' for float32, as the IR printer writes types."""
    return _SHORT[np.dtype(dtype)]


def canonicalize(dtype, what="value"):
    """Return the numpy dtype for `dtype`, or raise naming what carried it."""
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise DTypeError(f"{what}: {dtype!r} is not a dtype") from e
    if not dt.isnative:
        # A byte-swapped dtype ('>f4' on a little-endian host): numpy computes
        # in native order, so needle takes it as its native twin; values are
        # converted where arrays enter (np.asarray to the canonical dtype).
        dt = dt.newbyteorder("=")
    if dt not in SUPPORTED:
        names = ", ".join(sorted(d.name for d in SUPPORTED))
        raise DTypeError(f"{what} has dtype {dt.name}, which needle does not support "
                         f"(supported: {names})")
    return dt


def is_float(dtype):
    return np.dtype(dtype).kind == "f"


def is_int(dtype):
    return np.dtype(dtype).kind in "iu"


def is_bool(dtype):
    return np.dtype(dtype) == bool_


# --- the lattice -----------------------------------------------------------
# Nodes are dtypes plus the two weak kinds 'i*' (Python int) and 'f*' (Python
# float). Edges point from a type to the types it promotes to directly.
_WEAK_INT, _WEAK_FLOAT = "i*", "f*"
_EDGES = {
    bool_: [_WEAK_INT],
    _WEAK_INT: [uint8, int8],
    uint8: [uint16, int16], uint16: [uint32, int32], uint32: [uint64, int64],
    uint64: [_WEAK_FLOAT],
    int8: [int16], int16: [int32], int32: [int64], int64: [_WEAK_FLOAT],
    _WEAK_FLOAT: [float32], float32: [float64], float64: [],
}


def _upper_bounds():
    ub = {}

    def visit(n):
        if n not in ub:
            s = {n}
            for m in _EDGES[n]:
                s |= visit(m)
            ub[n] = frozenset(s)
        return ub[n]

    for n in _EDGES:
        visit(n)
    return ub


_UB = _upper_bounds()


def _node(dtype, weak):
    dt = np.dtype(dtype)
    if weak and dt.kind in "iu":
        return _WEAK_INT
    if weak and dt.kind == "f":
        return _WEAK_FLOAT
    return dt


def _join(a, b):
    common = _UB[a] & _UB[b]
    # The least upper bound is the common bound that every other common bound
    # lies above.
    for n in common:
        if common <= _UB[n]:
            return n
    raise AssertionError(f"lattice has no join for {a}, {b}")  # pragma: no cover


def result_type(*typed):
    """Promote (dtype, weak_type) pairs; return (dtype, weak_type).

    >>> result_type((int32, False), (float32, True))   # int32 array + 1.5
    (dtype('float32'), True)
    """
    node = None
    for dtype, weak in typed:
        n = _node(dtype, weak)
        node = n if node is None else _join(node, n)
    if node == _WEAK_INT:
        return DEFAULT_INT, True
    if node == _WEAK_FLOAT:
        return DEFAULT_FLOAT, True
    return node, False


def promote_types(a, b):
    """numpy-style promote_types on the JAX lattice (both strong)."""
    return result_type((np.dtype(a), False), (np.dtype(b), False))[0]


def scalar_type(x):
    """(dtype, weak) of a Python scalar, numpy scalar or array."""
    if isinstance(x, (np.ndarray, np.generic)):
        # First: np.float64 subclasses Python's float, but is strongly typed.
        return canonicalize(x.dtype), False
    if isinstance(x, bool):
        return bool_, False
    if isinstance(x, int):
        return DEFAULT_INT, True
    if isinstance(x, float):
        return DEFAULT_FLOAT, True
    if isinstance(x, complex):
        raise DTypeError("complex numbers are not supported by needle")
    return canonicalize(x.dtype), False
