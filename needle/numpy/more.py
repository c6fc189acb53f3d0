"""needle.numpy: numpy functions composed from the other needle.numpy functions.

Stage: library code run at call time (eagerly on numpy arrays, or while
tracing under jit / grad / vmap). Input: arrays, scalars or tracers. Output:
numpy arrays eagerly, tracers under a trace. No primitives of their own: every
function here is written with needle.numpy's functions, so autodiff, batching
and code generation come from those. Type promotion as JAX (float32 default
float, Python scalars weak).
"""
import math as _math

import numpy as _np

from ..ir import dtypes as _dtypes
from . import math as _m
from . import reductions as _r
from . import shape as _s
from ._core import asarray as _asarray, cast as _cast, promote as _promote, shape_of as _shape_of
from ._core import typeof as _typeof

__all__ = [
    "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh", "cbrt", "fabs", "trunc",
    "fix", "deg2rad", "radians", "rad2deg", "degrees", "hypot", "fmax", "fmin", "fmod",
    "heaviside", "sinc", "logaddexp2", "float_power", "isneginf", "isposinf", "nan_to_num",
    "ldexp", "divmod",
    "nansum", "nanmean", "nanmax", "nanmin", "nanprod", "nanvar", "nanstd", "nanargmax",
    "nanargmin", "count_nonzero", "average", "ptp", "isclose", "allclose", "array_equal",
    "diff", "roll", "atleast_2d", "atleast_3d", "append",
]

_LN2 = _math.log(2.0)


def _f(x):
    """x as an array of its float dtype (ints and bools: float32)."""
    return _promote(x, to_float=True)[0]


def _fdt(x):
    return _typeof(_f(x))[0]


# --- elementwise -------------------------------------------------------------

def arctan(x):
    x = _f(x)
    return _m.arctan2(x, _cast(_asarray(1.0), _typeof(x)[0]))


def arcsin(x):
    """atan2(x, sqrt((1 - x)(1 + x))): accurate near +-1, NaN for |x| > 1."""
    x = _f(x)
    return _m.arctan2(x, _m.sqrt(_m.multiply(_m.subtract(1, x), _m.add(1, x))))


def arccos(x):
    x = _f(x)
    return _m.arctan2(_m.sqrt(_m.multiply(_m.subtract(1, x), _m.add(1, x))), x)


def arctanh(x):
    x = _f(x)
    return _m.multiply(0.5, _m.subtract(_m.log1p(x), _m.log1p(_m.negative(x))))


def arcsinh(x):
    """sign(x) log1p(a + a^2 / (1 + sqrt(1 + a^2))), a = |x|; log(a) + log 2
    for a > 1e8 (where a^2 would lose or overflow)."""
    x = _f(x)
    a = _m.absolute(x)
    big = _m.greater(a, 1e8)
    s = _m.where(big, 1.0, a)
    small = _m.log1p(_m.add(s, _m.divide(_m.multiply(s, s),
                                         _m.add(1, _m.sqrt(_m.add(1, _m.multiply(s, s)))))))
    r = _m.where(big, _m.add(_m.log(a), _LN2), small)
    return _m.where(_m.equal(x, 0), x, _m.where(_m.less(x, 0), _m.negative(r), r))  # keep -0


def arccosh(x):
    """log1p(t + sqrt(t (t + 2))), t = x - 1 (accurate near 1); log(x) + log 2
    for x > 1e8; NaN below 1."""
    x = _f(x)
    big = _m.greater(x, 1e8)
    t = _m.subtract(_m.where(big, 2.0, x), 1)
    small = _m.log1p(_m.add(t, _m.sqrt(_m.multiply(t, _m.add(t, 2)))))
    out = _m.where(big, _m.add(_m.log(x), _LN2), small)
    return _m.where(_m.less(x, 1), _np.nan, out)


def cbrt(x):
    x = _f(x)
    r = _m.power(_m.absolute(x), 1.0 / 3.0)
    return _m.where(_m.equal(x, 0), x, _m.where(_m.less(x, 0), _m.negative(r), r))  # keep -0


def fabs(x):
    return _m.absolute(_f(x))


def trunc(x):
    """Round toward zero; integers unchanged (numpy, JAX)."""
    dt = _typeof(x)[0]
    if dt.kind != "f":
        return _asarray(x)
    x = _asarray(x)
    return _m.where(_m.less(x, 0), _m.ceil(x), _m.floor(x))


fix = trunc


def deg2rad(x):
    return _m.multiply(_f(x), _math.pi / 180.0)


def rad2deg(x):
    return _m.multiply(_f(x), 180.0 / _math.pi)


radians, degrees = deg2rad, rad2deg


def _pair(x, y, to_float):
    x, y = _promote(x, y, to_float=to_float)
    return x, y


def hypot(x1, x2):
    """sqrt(x1^2 + x2^2) without overflow: m sqrt(1 + (n/m)^2), m = max(|x1|, |x2|);
    inf if either is infinite (even with a NaN), as numpy."""
    x, y = _pair(x1, x2, True)
    a, b = _m.absolute(x), _m.absolute(y)
    hi, lo = _m.maximum(a, b), _m.minimum(a, b)
    r = _m.divide(lo, _m.where(_m.equal(hi, 0), 1.0, hi))
    out = _m.multiply(hi, _m.sqrt(_m.add(1, _m.multiply(r, r))))
    return _m.where(_m.logical_or(_m.isinf(a), _m.isinf(b)), _np.inf, out)


def fmax(x1, x2):
    """maximum ignoring NaN: the other operand where one is NaN."""
    x, y = _pair(x1, x2, False)
    return _m.where(_m.isnan(y), x, _m.where(_m.isnan(x), y, _m.maximum(x, y)))


def fmin(x1, x2):
    x, y = _pair(x1, x2, False)
    return _m.where(_m.isnan(y), x, _m.where(_m.isnan(x), y, _m.minimum(x, y)))


def fmod(x1, x2):
    """C's fmod: the remainder with the sign of the dividend."""
    x, y = _pair(x1, x2, False)
    r = _m.remainder(_m.absolute(x), _m.absolute(y))
    return _m.where(_m.less(x, 0), _m.negative(r), r)


def heaviside(x1, x2):
    x, y = _pair(x1, x2, True)          # floating point, as jnp.heaviside
    out = _m.where(_m.less(x, 0), 0, _m.where(_m.greater(x, 0), 1, y))
    return _m.where(_m.isnan(x), x, out)


def sinc(x):
    x = _f(x)
    px = _m.multiply(x, _math.pi)
    zero = _m.equal(x, 0)
    safe = _m.where(zero, 1.0, px)
    return _m.where(zero, 1.0, _m.divide(_m.sin(safe), safe))


def logaddexp2(x1, x2):
    x, y = _pair(x1, x2, True)
    mx = _m.maximum(x, y)
    safe = _m.where(_m.isinf(mx), 0.0, mx)
    return _m.add(safe, _m.divide(_m.log(_m.add(_m.exp2(_m.subtract(x, safe)),
                                                _m.exp2(_m.subtract(y, safe)))), _LN2))


def float_power(x1, x2):
    return _m.power(_cast(_asarray(x1), _dtypes.float64), _cast(_asarray(x2), _dtypes.float64))


def isposinf(x):
    return _m.logical_and(_m.isinf(x), _m.greater(x, 0))


def isneginf(x):
    return _m.logical_and(_m.isinf(x), _m.less(x, 0))


def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    x = _asarray(x)
    dt = _typeof(x)[0]
    if dt.kind != "f":
        return x
    fi = _np.finfo(dt)
    posinf = fi.max if posinf is None else posinf
    neginf = fi.min if neginf is None else neginf
    x = _m.where(_m.isnan(x), _cast(_asarray(nan), dt), x)
    x = _m.where(isposinf(x), _cast(_asarray(posinf), dt), x)
    return _m.where(isneginf(x), _cast(_asarray(neginf), dt), x)


def ldexp(x1, x2):
    """x1 * 2**x2 (x2 integers), in two exact halves so 2**x2 does not overflow
    where the product does not."""
    x = _f(x1)
    dt = _typeof(x)[0]
    n = _asarray(x2)
    if _typeof(n)[0].kind not in "iub":
        raise TypeError(f"ldexp: x2 must be integers, got {_typeof(n)[0]}")
    n = _cast(n, _dtypes.int64)
    h = _m.floor_divide(n, 2)
    p1 = _m.power(_cast(_asarray(2.0), dt), _cast(h, dt))
    p2 = _m.power(_cast(_asarray(2.0), dt), _cast(_m.subtract(n, h), dt))
    return _m.multiply(_m.multiply(x, p1), p2)


def divmod(x1, x2):  # noqa: A001 - numpy's name
    return _m.floor_divide(x1, x2), _m.remainder(x1, x2)


# --- reductions --------------------------------------------------------------

def _is_float(a):
    return _typeof(a)[0].kind == "f"


def nansum(a, axis=None, keepdims=False, dtype=None):
    a = _asarray(a)
    if _is_float(a):
        a = _m.where(_m.isnan(a), 0, a)
    return _r.sum(a, axis=axis, keepdims=keepdims, dtype=dtype)


def nanprod(a, axis=None, keepdims=False, dtype=None):
    a = _asarray(a)
    if _is_float(a):
        a = _m.where(_m.isnan(a), 1, a)
    return _r.prod(a, axis=axis, keepdims=keepdims, dtype=dtype)


def _nancount(a, axis, keepdims, dt):
    return _r.sum(_cast(_m.logical_not(_m.isnan(a)), dt), axis=axis, keepdims=keepdims)


def nanmean(a, axis=None, keepdims=False, dtype=None):
    a = _asarray(a)
    dt = _np.dtype(dtype) if dtype is not None else _fdt(a)
    a = _cast(a, dt)
    s = _r.sum(_m.where(_m.isnan(a), 0, a), axis=axis, keepdims=keepdims)
    return _m.divide(s, _nancount(a, axis, keepdims, dt))


def nanvar(a, axis=None, keepdims=False, ddof=0, dtype=None):
    a = _asarray(a)
    dt = _np.dtype(dtype) if dtype is not None else _fdt(a)
    a = _cast(a, dt)
    nan = _m.isnan(a)
    mu = nanmean(a, axis=axis, keepdims=True)
    c = _m.where(nan, 0, _m.subtract(a, mu))
    ss = _r.sum(_m.multiply(c, c), axis=axis, keepdims=keepdims)
    n = _m.subtract(_nancount(a, axis, keepdims, dt), ddof)
    return _m.divide(ss, _m.maximum(n, 0))


def nanstd(a, axis=None, keepdims=False, ddof=0, dtype=None):
    return _m.sqrt(nanvar(a, axis=axis, keepdims=keepdims, ddof=ddof, dtype=dtype))


def _nanext(red, fill):
    def fn(a, axis=None, keepdims=False):
        a = _asarray(a)
        if not _is_float(a):
            return red(a, axis=axis, keepdims=keepdims)
        nan = _m.isnan(a)
        out = red(_m.where(nan, fill, a), axis=axis, keepdims=keepdims)
        return _m.where(_r.all(nan, axis=axis, keepdims=keepdims), _np.nan, out)
    return fn


nanmax = _nanext(_r.max, -_np.inf)
nanmax.__name__ = "nanmax"
nanmin = _nanext(_r.min, _np.inf)
nanmin.__name__ = "nanmin"


def nanargmax(a, axis=None, keepdims=False):
    """argmax ignoring NaN (an all-NaN slice gives 0: numpy raises, a compiled
    kernel cannot)."""
    a = _asarray(a)
    if _is_float(a):
        a = _m.where(_m.isnan(a), -_np.inf, a)
    return _r.argmax(a, axis=axis, keepdims=keepdims)


def nanargmin(a, axis=None, keepdims=False):
    a = _asarray(a)
    if _is_float(a):
        a = _m.where(_m.isnan(a), _np.inf, a)
    return _r.argmin(a, axis=axis, keepdims=keepdims)


def count_nonzero(a, axis=None, keepdims=False):
    a = _asarray(a)
    return _r.sum(_m.not_equal(a, 0) if _typeof(a)[0] != _np.bool_ else a,
                  axis=axis, keepdims=keepdims)


def average(a, axis=None, weights=None, returned=False, keepdims=False):
    if returned:
        raise NotImplementedError("average: returned=True is not supported")
    a = _asarray(a)
    if weights is None:
        return _r.mean(a, axis=axis, keepdims=keepdims)
    w = _asarray(weights)
    ashape, wshape = _shape_of(a), _shape_of(w)
    if wshape != ashape:
        if axis is None:
            raise TypeError(f"average: axis must be given when the shapes of a {ashape} "
                            f"and weights {wshape} differ")
        if len(wshape) != 1:
            raise TypeError(f"average: 1-D weights expected when shapes differ, got a "
                            f"{ashape} and weights {wshape}")
        (ax,) = _r.normalize_axis(axis, len(ashape), "average")
        if wshape[0] != ashape[ax]:
            raise ValueError(f"average: length of weights {wshape} differs from a {ashape} "
                             f"along axis {ax}")
        w = _s.reshape(w, tuple(wshape[0] if d == ax else 1 for d in range(len(ashape))))
    a, w = _promote(a, w, to_float=True)
    wb = _m.multiply(w, _m.add(_m.multiply(a, 0), 1))
    return _m.divide(_r.sum(_m.multiply(a, w), axis=axis, keepdims=keepdims),
                     _r.sum(wb, axis=axis, keepdims=keepdims))


def ptp(a, axis=None, keepdims=False):
    return _m.subtract(_r.max(a, axis=axis, keepdims=keepdims),
                       _r.min(a, axis=axis, keepdims=keepdims))


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    a, b = _promote(a, b)
    if _typeof(a)[0].kind != "f":
        a, b = _promote(a, b, to_float=True)
    fin = _m.logical_and(_m.isfinite(a), _m.isfinite(b))
    close = _m.less_equal(_m.absolute(_m.subtract(a, b)),
                          _m.add(atol, _m.multiply(rtol, _m.absolute(b))))
    out = _m.where(fin, close, _m.equal(a, b))
    if equal_nan:
        out = _m.logical_or(out, _m.logical_and(_m.isnan(a), _m.isnan(b)))
    return out


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return _r.all(isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def array_equal(a1, a2, equal_nan=False):
    a1, a2 = _asarray(a1), _asarray(a2)
    if _shape_of(a1) != _shape_of(a2):
        from .creation import asarray
        return asarray(False)
    eq = _m.equal(a1, a2)
    if equal_nan:
        eq = _m.logical_or(eq, _m.logical_and(_m.isnan(a1), _m.isnan(a2)))
    return _r.all(eq)


# --- shape -------------------------------------------------------------------

def diff(a, n=1, axis=-1):
    a = _asarray(a)
    if n < 0:
        raise ValueError(f"diff: order must be non-negative but got {n}")
    shape = _shape_of(a)
    if len(shape) == 0:
        raise ValueError("diff: requires input that is at least one dimensional")
    (ax,) = _r.normalize_axis(axis, len(shape), "diff")
    for _ in range(n):
        k = _shape_of(a)[ax]
        if k == 0:
            break
        hi, lo = _s._slice_axis(a, ax, 1, k), _s._slice_axis(a, ax, 0, k - 1)
        a = _m.not_equal(hi, lo) if _typeof(a)[0] == _np.bool_ else _m.subtract(hi, lo)
    return a


def roll(a, shift, axis=None):
    a = _asarray(a)
    if axis is None:
        shape = _shape_of(a)
        return _s.reshape(roll(_s.reshape(a, (-1,)), shift, 0), shape)
    shifts = (shift,) if isinstance(shift, (int, _np.integer)) else tuple(shift)
    axes = (axis,) if isinstance(axis, (int, _np.integer)) else tuple(axis)
    if len(shifts) == 1:
        shifts = shifts * len(axes)
    if len(axes) == 1:
        axes = axes * len(shifts)
    if len(shifts) != len(axes):
        raise ValueError(f"roll: shift {shift} and axis {axis} have different lengths")
    nd = len(_shape_of(a))
    for sh, ax in zip(shifts, axes):
        if not -nd <= int(ax) < nd:
            raise ValueError(f"roll: axis {ax} is out of bounds for an array of dimension {nd}")
        ax = int(ax) % nd
        k = _shape_of(a)[ax]
        if k == 0:
            continue
        s = int(sh) % k
        if s:
            a = _s.concatenate([_s._slice_axis(a, ax, k - s, k), _s._slice_axis(a, ax, 0, k - s)],
                               axis=ax)
    return a


def atleast_2d(*arys):
    out = []
    for a in arys:
        a = _asarray(a)
        nd = len(_shape_of(a))
        out.append(_s.reshape(a, (1,) * (2 - nd) + _shape_of(a)) if nd < 2 else a)
    return out[0] if len(out) == 1 else out


def atleast_3d(*arys):
    out = []
    for a in arys:
        a = _asarray(a)
        sh = _shape_of(a)
        if len(sh) == 0:
            a = _s.reshape(a, (1, 1, 1))
        elif len(sh) == 1:
            a = _s.reshape(a, (1, sh[0], 1))
        elif len(sh) == 2:
            a = _s.reshape(a, sh + (1,))
        out.append(a)
    return out[0] if len(out) == 1 else out


def append(arr, values, axis=None):
    arr, values = _asarray(arr), _asarray(values)
    if axis is None:
        return _s.concatenate([_s.reshape(arr, (-1,)), _s.reshape(values, (-1,))])
    return _s.concatenate([arr, values], axis=axis)


def _last2(a, axis1, axis2, name):
    sh = _shape_of(a)
    a1, a2 = _r.normalize_axis((axis1, axis2), len(sh), name)
    return _s.moveaxis(a, (a1, a2), (-2, -1))


def diagonal(a, offset=0, axis1=0, axis2=1):
    """The diagonal as the last axis (numpy): a strided slice of the two axes
    flattened, so NaN and inf elsewhere do not leak in."""
    a = _asarray(a)
    if len(_shape_of(a)) < 2:
        raise ValueError(f"diagonal: array must be at least 2-d, got shape {_shape_of(a)}")
    a = _last2(a, axis1, axis2, "diagonal")
    sh = _shape_of(a)
    n, m = sh[-2], sh[-1]
    k = int(offset)
    length = max(0, min(n, m - k)) if k >= 0 else max(0, min(n + k, m))
    flat = _s.reshape(a, sh[:-2] + (n * m,))
    ax = len(sh) - 2
    if length == 0:
        return _s._slice_axis(flat, ax, 0, 0) if n * m else flat
    start = k if k >= 0 else -k * m
    return _s._slice_axis(flat, ax, start, start + (length - 1) * (m + 1) + 1, m + 1)


def diag(v, k=0):
    from .creation import eye
    v = _asarray(v)
    sh = _shape_of(v)
    if len(sh) == 2:
        return diagonal(v, k)
    if len(sh) != 1:
        raise ValueError(f"diag: input must be 1-d or 2-d, got shape {sh}")
    k = int(k)
    n = sh[0] + abs(k)
    row = _s.pad(v, [(0, k)] if k >= 0 else [(-k, 0)])
    return _m.where(eye(n, n, k, dtype=_np.bool_), _s.reshape(row, (n, 1)), 0)


def trace(a, offset=0, axis1=0, axis2=1, dtype=None):
    return _r.sum(diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)


def column_stack(tup):
    return _s.concatenate([_s.reshape(a, (-1, 1)) if len(_shape_of(_asarray(a))) < 2
                           else _asarray(a) for a in tup], axis=1)


def dstack(tup):
    arrs = atleast_3d(*tup)
    arrs = arrs if isinstance(arrs, list) else [arrs]
    return _s.concatenate(arrs, axis=2)


def _splitter(name, axis, min_nd):
    def fn(ary, indices_or_sections):
        ary = _asarray(ary)
        nd = len(_shape_of(ary))
        if nd < min_nd:
            raise ValueError(f"{name}: array must have at least {min_nd} dimensions, "
                             f"got shape {_shape_of(ary)}")
        ax = 0 if (name == "hsplit" and nd == 1) else axis
        return _s.split(ary, indices_or_sections, axis=ax)
    fn.__name__ = name
    return fn


hsplit = _splitter("hsplit", 1, 1)
vsplit = _splitter("vsplit", 0, 2)
dsplit = _splitter("dsplit", 2, 3)


def meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    if indexing not in ("xy", "ij"):
        raise ValueError(f"meshgrid: indexing must be 'xy' or 'ij', got {indexing!r}")
    xs = [_s.reshape(_asarray(x), (-1,)) for x in xi]
    nd = len(xs)
    out = []
    for i, x in enumerate(xs):
        shp = [1] * nd
        shp[i] = _shape_of(x)[0]
        if indexing == "xy" and nd > 1 and i < 2:
            shp[0], shp[1] = shp[1], shp[0]
        out.append(_s.reshape(x, tuple(shp)))
    if sparse:
        return out
    full = tuple(_np.broadcast_shapes(*[_shape_of(o) for o in out]))
    return [_s.broadcast_to(o, full) for o in out]


def logspace(start, stop, num=50, endpoint=True, base=10.0, dtype=None, axis=0):
    """Concrete start / stop (like linspace): computed in float64, cast."""
    from .creation import asarray, _dt
    y = _np.power(base, _np.linspace(start, stop, num, endpoint=endpoint, axis=axis,
                                     dtype=_np.float64))
    return asarray(y.astype(_dt(dtype)))


def geomspace(start, stop, num=50, endpoint=True, dtype=None, axis=0):
    from .creation import asarray, _dt
    y = _np.geomspace(_np.float64(start), _np.float64(stop), num, endpoint=endpoint, axis=axis)
    return asarray(y.astype(_dt(dtype)))


def kron(a, b):
    a, b = _promote(a, b)
    sa, sb = _shape_of(a), _shape_of(b)
    nd = max(len(sa), len(sb))
    sa, sb = (1,) * (nd - len(sa)) + sa, (1,) * (nd - len(sb)) + sb
    ae = _s.reshape(a, tuple(d for n in sa for d in (n, 1)))
    be = _s.reshape(b, tuple(d for n in sb for d in (1, n)))
    return _s.reshape(_m.multiply(ae, be), tuple(x * y for x, y in zip(sa, sb)))


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """Cross product of 3-vectors (numpy's 2-vector forms are not supported)."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = _promote(a, b)
    a, b = _s.moveaxis(a, axisa, -1), _s.moveaxis(b, axisb, -1)
    if _shape_of(a)[-1] != 3 or _shape_of(b)[-1] != 3:
        raise ValueError(f"cross: only 3-vectors are supported, got shapes {_shape_of(a)} "
                         f"and {_shape_of(b)} (vector axis last)")
    a, b = _s.broadcast_arrays(a, b)
    nd = len(_shape_of(a)) - 1

    def c(x, i):
        return _s.squeeze(_s._slice_axis(x, nd, i, i + 1), axis=nd)
    a0, a1, a2 = c(a, 0), c(a, 1), c(a, 2)
    b0, b1, b2 = c(b, 0), c(b, 1), c(b, 2)
    out = _s.stack([_m.subtract(_m.multiply(a1, b2), _m.multiply(a2, b1)),
                    _m.subtract(_m.multiply(a2, b0), _m.multiply(a0, b2)),
                    _m.subtract(_m.multiply(a0, b1), _m.multiply(a1, b0))], axis=-1)
    return _s.moveaxis(out, -1, axisc)


def trapezoid(y, x=None, dx=1.0, axis=-1):
    y = _f(y)
    sh = _shape_of(y)
    (ax,) = _r.normalize_axis(axis, len(sh), "trapezoid")
    n = sh[ax]
    if x is None:
        d = dx
    else:
        x = _asarray(x)
        d = diff(x, axis=ax if len(_shape_of(x)) == len(sh) else -1)
        if len(_shape_of(x)) == 1:
            d = _s.reshape(d, tuple(n - 1 if i == ax else 1 for i in range(len(sh))))
    mid = _m.add(_s._slice_axis(y, ax, 1, n), _s._slice_axis(y, ax, 0, max(n - 1, 0)))
    return _r.sum(_m.multiply(_m.multiply(d, mid), 0.5), axis=ax)


def select(condlist, choicelist, default=0):
    if len(condlist) != len(choicelist):
        raise ValueError(f"select: list of cases must be same length as list of conditions "
                         f"({len(condlist)} != {len(choicelist)})")
    out = default
    for c, v in zip(reversed(list(condlist)), reversed(list(choicelist))):
        out = _m.where(c, v, out)
    return _asarray(out)


def unravel_index(indices, shape):
    """Concrete `shape`; traced indices wrap as integer arithmetic does (numpy
    raises for an index out of range, a compiled kernel cannot)."""
    idx = _asarray(indices)
    out = []
    for d in reversed(tuple(int(s) for s in shape)):
        out.append(_m.remainder(idx, d))
        idx = _m.floor_divide(idx, d)
    return tuple(reversed(out))


def cov(m, y=None, rowvar=True, bias=False, ddof=None, dtype=None):
    from .linalg_ops import matmul
    x = atleast_2d(_f(m))
    if not rowvar and _shape_of(x)[0] != 1:
        x = _s.transpose(x)
    if y is not None:
        yy = atleast_2d(_f(y))
        if not rowvar and _shape_of(yy)[0] != 1:
            yy = _s.transpose(yy)
        x, yy = _promote(x, yy)
        x = _s.concatenate([x, yy], axis=0)
    if dtype is not None:
        x = _cast(x, _np.dtype(dtype))
    n = _shape_of(x)[1]
    ddof = (0 if bias else 1) if ddof is None else ddof
    xc = _m.subtract(x, _r.mean(x, axis=1, keepdims=True))
    c = _m.divide(matmul(xc, _s.transpose(xc)), max(n - ddof, 0))
    return _s.squeeze(c) if _shape_of(c) == (1, 1) else c


def corrcoef(x, y=None, rowvar=True, dtype=None):
    c = cov(x, y, rowvar, dtype=dtype)
    if len(_shape_of(c)) == 0:
        return _m.divide(c, c)
    s = _m.sqrt(diagonal(c))
    c = _m.divide(_m.divide(c, _s.reshape(s, (-1, 1))), _s.reshape(s, (1, -1)))
    return _m.clip(c, -1, 1)


def rot90(m, k=1, axes=(0, 1)):
    m = _asarray(m)
    nd = len(_shape_of(m))
    if len(axes) != 2:
        raise ValueError(f"rot90: len(axes) must be 2, got {axes}")
    a0, a1 = _r.normalize_axis(axes, nd, "rot90")
    k = int(k) % 4
    if k == 0:
        return m
    if k == 2:
        return _s.flip(_s.flip(m, a0), a1)
    perm = list(range(nd))
    perm[a0], perm[a1] = perm[a1], perm[a0]
    if k == 1:
        return _s.transpose(_s.flip(m, a1), perm)
    return _s.flip(_s.transpose(m, perm), a1)


__all__ += ["diagonal", "diag", "trace", "column_stack", "dstack", "hsplit", "vsplit",
            "dsplit", "meshgrid", "logspace", "geomspace", "kron", "cross", "trapezoid",
            "select", "unravel_index", "cov", "corrcoef", "rot90"]
