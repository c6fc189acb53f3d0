"""Stage passes: the ordered pipeline of named passes, with a dump hook.

Input: a ClosedGraph straight from the tracer.
Output: the optimised ClosedGraph, and the Graph of every stage (name -> Graph,
printed lazily) so a user can read the program after each pass.

The pipeline is one plain list, read top to bottom; each entry is
(stage name, pass function ClosedGraph -> ClosedGraph).
"""
from .cse import cse
from .dce import dce
from .fold import fold_constants
from .loop_hoist import hoist_loop_invariants
from .scan_accumulate import hoist_accumulations
from .simplify import simplify

PIPELINE = [
    ("folded", fold_constants),     # evaluate what depends only on constants
    ("simplified", simplify),       # algebraic identities, collapse layout chains
    ("hoisted", hoist_loop_invariants),   # a scan's work without the carry: once, batched
    ("accumulated", hoist_accumulations),  # carry += dot(x_t, y_t): one dot after the loop
    ("cse", cse),                   # compute each distinct expression once
    ("dce", dce),                   # drop what no output needs
]


def run_pipeline(cg, check=False, pipeline=None):
    """Run the passes; return (ClosedGraph, {stage: Graph})."""
    stages = {"traced": cg.graph}
    for name, fn in pipeline or PIPELINE:
        cg = fn(cg)
        if check:
            from ..ir.check import check_graph
            check_graph(cg.graph)
        stages[name] = cg.graph
    return cg, stages
