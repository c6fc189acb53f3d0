"""Stage ir: erf_inv, the inverse error function (needle.random.normal is
sqrt(2) * erf_inv(u) of a uniform u in (-1, 1), as JAX's).

Input: nothing. Output: `erf_inv_p` (also in the `UNARY` table; float
operands; expensive), and `ERF_INV32` / `ERF_INV64`, the coefficients the
backends' emit rules share with the numpy impl here.

The approximation is XLA's (M. Giles, "Approximating the erfinv function",
GPU Computing Gems, 2011), so a kernel computes what JAX computes: with
w = -log1p(-x*x), a degree-8 polynomial in w - 2.5 (w < 5) or in
sqrt(w) - 3 (float32); three pieces (w < 6.25, w < 16, beyond) for float64.
erf_inv(+-1) = +-inf; |x| > 1 and NaN give NaN.
"""
import numpy as np

from ..core import Primitive, Traits
from .elementwise import UNARY, FLOAT_ONLY, _unary_aval

__all__ = ["erf_inv_p", "ERF_INV32", "ERF_INV64"]

# float32: (w < 5 coefficients, w >= 5 coefficients), highest degree first
ERF_INV32 = (
    (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
     -0.00125372503, -0.00417768164, 0.246640727, 1.50140941),
    (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
     -0.0076224613, 0.00943887047, 1.00167406, 2.83297682),
)
# float64: (w < 6.25: 23 coefficients, w < 16: 19, w >= 16: 17), highest first.
# As XLA's ErfInv64: one Horner loop of 23 steps picks step i's coefficient
# by piece, and a piece past its last coefficient keeps its value.
ERF_INV64 = (
    (-3.6444120640178196996e-21, -1.685059138182016589e-19, 1.2858480715256400167e-18,
     1.115787767802518096e-17, -1.333171662854620906e-16, 2.0972767875968561637e-17,
     6.6376381343583238325e-15, -4.0545662729752068639e-14, -8.1519341976054721522e-14,
     2.6335093153082322977e-12, -1.2975133253453532498e-11, -5.4154120542946279317e-11,
     1.051212273321532285e-09, -4.1126339803469836976e-09, -2.9070369957882005086e-08,
     4.2347877827932403518e-07, -1.3654692000834678645e-06, -1.3882523362786468719e-05,
     0.0001867342080340571352, -0.00074070253416626697512, -0.0060336708714301490533,
     0.24015818242558961693, 1.6536545626831027356),
    (2.2137376921775787049e-09, 9.0756561938885390979e-08, -2.7517406297064545428e-07,
     1.8239629214389227755e-08, 1.5027403968909827627e-06, -4.013867526981545969e-06,
     2.9234449089955446044e-06, 1.2475304481671778723e-05, -4.7318229009055733981e-05,
     6.8284851459573175448e-05, 2.4031110387097893999e-05, -0.0003550375203628474796,
     0.00095328937973738049703, -0.0016882755560235047313, 0.0024914420961078508066,
     -0.0037512085075692412107, 0.005370914553590063617, 1.0052589676941592334,
     3.0838856104922207635),
    (-2.7109920616438573243e-11, -2.5556418169965252055e-10, 1.5076572693500548083e-09,
     -3.7894654401267369937e-09, 7.6157012080783393804e-09, -1.4960026627149240478e-08,
     2.9147953450901080826e-08, -6.7711997758452339498e-08, 2.2900482228026654717e-07,
     -9.9298272942317002539e-07, 4.5260625972231537039e-06, -1.9681778105531670567e-05,
     7.5995277030017761139e-05, -0.00021503011930044477347, -0.00013871931833623122026,
     1.0103004648645343977, 4.8499064014085844221),
)


def _erf_inv32(x):
    # As compiled code computes it, XLA's included: log1p rounded once, and
    # each Horner step a fused multiply-add (float64 holds p * t exactly).
    f = np.float32
    w = -np.log1p((-x * x).astype(np.float64)).astype(f)
    lt = w < f(5)
    t = np.where(lt, w - f(2.5), np.sqrt(w) - f(3))
    lo, hi = ERF_INV32
    p = np.where(lt, f(lo[0]), f(hi[0]))
    for a, b in zip(lo[1:], hi[1:]):
        p = (p.astype(np.float64) * t + np.where(lt, f(a), f(b))).astype(f)
    return np.where(np.abs(x) == 1, x * f(np.inf), p * x)


def _erf_inv64(x):
    a6, a16, a_big = ERF_INV64
    w = -np.log1p(-x * x)
    lt6, lt16 = w < 6.25, w < 16.0
    t = np.where(lt6, w - 3.125, np.sqrt(w) - np.where(lt16, 3.25, 5.0))
    p = np.where(lt6, a6[0], np.where(lt16, a16[0], a_big[0]))
    for i in range(1, 23):      # the w >= 16 piece ends at 17 terms, w < 16 at 19
        c = np.where(lt6, a6[i], a16[i] if i < 19 else 0.0)
        c = np.where(lt16, c, a_big[i] if i < 17 else 0.0)
        step = c + p * t
        p = step if i < 17 else np.where(lt16 if i < 19 else lt6, step, p)
    return np.where(np.abs(x) == 1, x * np.inf, p * x)


def _erf_inv_impl(x):
    x = np.asarray(x)
    with np.errstate(all="ignore"):
        out = _erf_inv32(x) if x.dtype == np.float32 else _erf_inv64(x)
    return [np.asarray(out, dtype=x.dtype)]


erf_inv_p = Primitive("erf_inv", Traits(kind="elementwise", expensive=True))
erf_inv_p.abstract_eval = _unary_aval("erf_inv", "f")
erf_inv_p.impl = _erf_inv_impl
UNARY["erf_inv"] = erf_inv_p
FLOAT_ONLY.add(erf_inv_p)
