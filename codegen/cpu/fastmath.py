"""Stage codegen (CPU): call-free float32 approximations of exp, log, tanh,
logistic, expm1, log1p and erf, written into every generated module that uses them.

Input: nothing (a table of helper source). Output: `HELPERS` (the module text
defining the helpers) and `FAST32` (primitive name -> helper name).

Why: the pip build of llvmlite has no vectorised math library, so
`math.exp` in a Numba loop is a scalar libm call, 6-45x slower per element
than numpy's SIMD ufuncs; a fused kernel calling it loses to unfused numpy.
These helpers are plain arithmetic, selects and integer bit operations, so
LLVM inlines and vectorises them. They are compiled with only the 'contract'
fast-math flag (never 'reassoc': Cody-Waite range reduction and the scaling
by 2^n rely on the order of operations), as separate functions, so the
kernel's own flags do not reach them.

Accuracy (tests/test_fastmath.py sweeps the whole float32 range against
numpy in float64): exp, log, expm1, log1p, logistic within 2-3 ulp, tanh and
erf within 5 ulp; inf, -inf, NaN, +-0, denormal inputs and results, and the overflow
thresholds are exact. float64 kernels keep exact libm math (`math.*`).
Sources of the polynomials: Cephes (expf, logf), Eigen (ptanh_float).
"""

FAST32 = {"exp": "_fexp", "log": "_flog", "tanh": "_ftanh", "logistic": "_flogistic",
          "expm1": "_fexpm1", "log1p": "_flog1p", "erf": "_ferf"}

HELPERS = '''
from numba.core import types as _types
from numba.extending import intrinsic as _intrinsic


def _bitcast(name, src, dst):
    """An intrinsic reinterpreting a `src` value's bits as `dst`."""
    def cast(typingctx, x):
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], context.get_value_type(dst))
        return dst(src), codegen
    cast.__name__ = cast.__qualname__ = name
    return _intrinsic(cast)


_i2f = _bitcast("_i2f", _types.int32, _types.float32)
_f2i = _bitcast("_f2i", _types.float32, _types.int32)
_l2f = _bitcast("_l2f", _types.int64, _types.float64)
_f2l = _bitcast("_f2l", _types.float64, _types.int64)


_FM = {"contract"}


@numba.njit(error_model="numpy", fastmath=_FM)
def _fexp(x):
    # exp(x) = 2^n * exp(r), r = x - n ln2 in [-ln2/2, ln2/2] (Cody-Waite).
    xc = f32(-104.0) if x < f32(-104.0) else (f32(89.0) if x > f32(89.0) else x)
    n = np.rint(xc * f32(1.44269504088896341))
    r = xc - n * f32(0.693359375) - n * f32(-2.12194440e-4)
    z = r * r
    y = ((((((f32(1.9875691500e-4) * r + f32(1.3981999507e-3)) * r + f32(8.3334519073e-3)) * r
            + f32(4.1665795894e-2)) * r + f32(1.6666665459e-1)) * r + f32(5.0000001201e-1)) * z
         + r + f32(1.0))
    ni = i32(n)
    # Normal results: add n to y's exponent field. Denormal results: one
    # multiply by 2^n, itself a denormal, so the result rounds once.
    rb = _f2i(y) + (ni << 23)
    res = _i2f(rb)
    res = y * _i2f(i32(1) << (ni + 149)) if ni < -125 else res
    res = f32(INF) if (x > f32(88.72283935546875) or rb >= 2139095040) else res
    res = f32(0.0) if x < f32(-103.97208404541015625) else res
    return x if x != x else res


@numba.njit(error_model="numpy", fastmath=_FM)
def _flog(x):
    # log(x) = e ln2 + log(m), m in [sqrt(1/2), sqrt(2)); denormals scaled first.
    small = x < f32(1.17549435e-38)
    xs = x * f32(8388608.0) if small else x
    bits = _f2i(xs)
    e = f32(((bits >> 23) & 255) - 127) - (f32(23.0) if small else f32(0.0))
    m = _i2f(i32((bits & 8388607) | 1065353216))
    big = m > f32(1.41421356)
    m = m * f32(0.5) if big else m
    e = e + f32(1.0) if big else e
    f = m - f32(1.0)
    z = f * f
    y = ((((((((f32(7.0376836292e-2) * f - f32(1.1514610310e-1)) * f + f32(1.1676998740e-1)) * f
             - f32(1.2420140846e-1)) * f + f32(1.4249322787e-1)) * f - f32(1.6668057665e-1)) * f
          + f32(2.0000714765e-1)) * f - f32(2.4999993993e-1)) * f + f32(3.3333331174e-1)) * f * z
    y = y + f32(-2.12194440e-4) * e - f32(0.5) * z
    r = f + y + f32(0.693359375) * e
    r = x if x == f32(INF) else r
    r = f32(-INF) if x == f32(0.0) else r
    return f32(NAN) if (x < f32(0.0) or x != x) else r


@numba.njit(error_model="numpy", fastmath=_FM)
def _ftanh(x):
    # Rational minimax approximation on [-7.9, 7.9] (Eigen's ptanh_float).
    c = f32(7.90531110763549805)
    xc = -c if x < -c else (c if x > c else x)
    x2 = xc * xc
    p = f32(-2.76076847742355e-16)
    p = p * x2 + f32(2.00018790482477e-13)
    p = p * x2 + f32(-8.60467152213735e-11)
    p = p * x2 + f32(5.12229709037114e-08)
    p = p * x2 + f32(1.48572235717979e-05)
    p = p * x2 + f32(6.37261928875436e-04)
    p = p * x2 + f32(4.89352455891786e-03)
    q = f32(1.19825839466702e-06)
    q = q * x2 + f32(1.18534705686654e-04)
    q = q * x2 + f32(2.26843463243900e-03)
    q = q * x2 + f32(4.89352518554385e-03)
    r = p * xc / q
    r = x if abs(x) < f32(0.0004) else r
    return (f32(1.0) if x > f32(0.0) else f32(-1.0)) if abs(x) > f32(9.0) else r


@numba.njit(error_model="numpy", fastmath=_FM)
def _flogistic(x):
    # With e = exp(-|x|) <= 1 nothing overflows: 1/(1+e) for x >= 0, e/(1+e) below,
    # so results down to the denormals keep their precision.
    e = _fexp(-abs(x))
    d = f32(1.0) + e
    return f32(1.0) / d if x >= f32(0.0) else e / d


@numba.njit(error_model="numpy", fastmath=_FM)
def _fexpm1(x):
    # Taylor series on |x| < 1 (where exp(x) - 1 would cancel), exp(x) - 1 elsewhere.
    p = f32(1.0 / 479001600.0)
    p = p * x + f32(1.0 / 39916800.0)
    p = p * x + f32(1.0 / 3628800.0)
    p = p * x + f32(1.0 / 362880.0)
    p = p * x + f32(1.0 / 40320.0)
    p = p * x + f32(1.0 / 5040.0)
    p = p * x + f32(1.0 / 720.0)
    p = p * x + f32(1.0 / 120.0)
    p = p * x + f32(1.0 / 24.0)
    p = p * x + f32(1.0 / 6.0)
    p = p * x + f32(0.5)
    small = x * (f32(1.0) + p * x)
    return small if abs(x) < f32(1.0) else _fexp(x) - f32(1.0)


@numba.njit(error_model="numpy", fastmath=_FM)
def _flog1p(x):
    # log(u) - ((u - 1) - x) / u with u = 1 + x corrects u's rounding error.
    u = f32(1.0) + x
    d = u - f32(1.0)
    r = _flog(u) - (d - x) / u
    r = x if d == f32(0.0) else r
    r = f32(-INF) if u == f32(0.0) else r
    return x if x == f32(INF) else r

@numba.njit(error_model="numpy", fastmath=_FM)
def _ferf(x):
    # |x| < 1: x P(x^2); 1 <= |x| <= 4: 1 - exp(-x^2) R(x), R fitted (least squares,
    # relative, needle's own fit) in s = (|x| - 2.5) / 1.5; beyond 4: +-1.
    a = abs(x)
    t = a * a
    p = f32(-9.68958829616895e-06)
    p = p * t + f32(0.00011274685675743967)
    p = p * t + f32(-0.0008485431899316609)
    p = p * t + f32(0.005221138242632151)
    p = p * t + f32(-0.02686547487974167)
    p = p * t + f32(0.11283783614635468)
    p = p * t + f32(-0.37612637877464294)
    p = p * t + f32(1.128379225730896)
    s = (a - f32(2.5)) / f32(1.5)
    r = f32(1.2445789252524264e-05)
    r = r * s + f32(-3.6655379517469555e-05)
    r = r * s + f32(5.9020225307904184e-05)
    r = r * s + f32(-0.00014469305460806936)
    r = r * s + f32(0.0004099894722457975)
    r = r * s + f32(-0.0010163822444155812)
    r = r * s + f32(0.0024040043354034424)
    r = r * s + f32(-0.005567649845033884)
    r = r * s + f32(0.01248917542397976)
    r = r * s + f32(-0.027005670592188835)
    r = r * s + f32(0.05611051619052887)
    r = r * s + f32(-0.11152100563049316)
    r = r * s + f32(0.21080636978149414)
    big = f32(1.0) - _fexp(-t) * r
    big = f32(1.0) if a > f32(4.0) else big
    big = -big if x < f32(0.0) else big
    return x * p if a < f32(1.0) else big
'''
