"""needle.scipy: scipy's names over needle (special functions, linalg solvers).

Input/Output: as needle.numpy.
"""
from . import linalg, special  # noqa: F401
