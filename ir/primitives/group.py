"""Stage ir: the kernel-group primitive. Fusion turns a set of equations into
one `kernel` equation whose params hold the sub-Graph it computes, so a fused
program prints and checks like any other.

Input: nothing. Output: `kernel_p` (multiple results: the sub-Graph's outputs).
"""
from ..core import Primitive, Traits
from ..interpreter import run_numpy

__all__ = ["kernel_p"]

kernel_p = Primitive("kernel", Traits(kind="group"), multiple_results=True)
kernel_p.abstract_eval = lambda *avals, graph, name="kernel", why="": [
    v.aval for v in graph.outvars]
kernel_p.impl = lambda *args, graph, name="kernel", why="": run_numpy(graph, [], list(args))
