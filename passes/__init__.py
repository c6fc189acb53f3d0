"""Stage passes: Graph -> Graph transformations (constant folding, CSE, DCE;
simplification, fusion; autodiff joins with its issue) and the ordered pipeline.
Each pass also works inside control-flow bodies (passes/subgraphs.py).

Input: ir.ClosedGraph. Output: ir.ClosedGraph.
"""
from .cse import cse  # noqa: F401
from .dce import dce  # noqa: F401
from .fold import fold_constants  # noqa: F401
from .pipeline import PIPELINE, run_pipeline  # noqa: F401
from .simplify import simplify  # noqa: F401
