"""needle.scipy: scipy's names over needle (special functions).

Input/Output: as needle.numpy.
"""
from . import special  # noqa: F401
