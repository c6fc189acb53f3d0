"""Stage ir: primitives, the Var / Eqn / Graph IR, its printer, checker and
numpy reference interpreter.

Input: nothing (the vocabulary). Output: see the submodules.
"""
from . import dtypes, primitives  # noqa: F401
from .check import GraphError, check_graph  # noqa: F401
from .core import (PRIMITIVES, ClosedGraph, Eqn, Graph, Lit, Primitive,  # noqa: F401
                   ShapedArray, ShapeError, Traits, Var, aval_of)
from .interpreter import eval_graph, run_numpy  # noqa: F401
from .printer import pp_graph  # noqa: F401
