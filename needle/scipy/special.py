"""needle.scipy.special: logsumexp, erf, erfinv, expit, logit.

Input: arrays or tracers. Output: arrays or tracers.
"""
from .. import numpy as nnp
from ..nn import logsumexp  # noqa: F401


def erf(x):
    return nnp.erf(x)


def erfinv(x):
    from ..lax_bits import erf_inv
    return erf_inv(x)


def expit(x):
    return nnp.sigmoid(x)


def logit(x):
    return nnp.log(nnp.divide(x, nnp.subtract(1, x)))
