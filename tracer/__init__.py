"""Stage tracer: abstract values, tracers, pytrees and tracing Python
functions into graphs.

Input: Python functions and their arguments. Output: ir.ClosedGraph.
"""
from . import pytree  # noqa: F401
from .core import (ConcretizationError, LeakedTracerError, NeedleError,  # noqa: F401
                   Tracer, TracingError, abstractify, bind, current_trace, trace_to_graph)
