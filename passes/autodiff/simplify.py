"""Stage passes (autodiff): cleanup of differentiated programs.

Input: a ClosedGraph fresh from a transformation. Output: the same program
after the shared simplification pass (passes/simplify.py: zero / one
propagation, identities, canonical operand order), CSE and DCE.

Zeros of tangents are already symbolic in the transformations, so what
reaches the cleanup are seeds (grad's 1.0), broadcasts of them and
operations that became identities.
"""
from ..cse import cse
from ..dce import dce
from ..simplify import simplify  # noqa: F401  (re-exported for passes.autodiff)


def cleanup(cg):
    """simplify, then compute each expression once, then drop dead code."""
    return dce(cse(simplify(cg)))
