"""Stage passes: automatic differentiation as Graph -> Graph transformations.

Input: a ClosedGraph traced from the user's function. Output: ClosedGraphs
of ordinary primitives: the JVP program, or the primal program plus the
backward program of a VJP, simplified (zero / one propagation, CSE, DCE).

Design (JAX's): one JVP rule per differentiable primitive and one transpose
rule per linear primitive (rules.py). Reverse mode is derived, not written
per primitive: `linearize` (transform.py) traces the JVP with symbolic
tangents, splits it by dependence on the tangents into a primal program and
a linear one (partial evaluation), and transposes the linear one. We chose
this over a VJP rule per primitive because each primitive then needs one
derivative rule, forward and reverse mode cannot disagree, and the linear
primitives' transposes are short and shared (a transpose of a transpose is
the primitive itself). Rules are written with `Primitive.bind`, so every
output is a Graph that can be differentiated again (grad of grad of grad),
simplified and compiled.

Tables (rules.py): `JVP_RULES`, `TRANSPOSE_RULES`, `NOT_DIFFERENTIABLE`
(comparisons, sign, floor, ceil, round, argmax, iota, ...: zero derivative,
marked explicitly). A test walks `ir.PRIMITIVES` and fails for a primitive in
none of them. Transformation-internal markers (stop_gradient, custom_vjp)
live in markers.py.
"""
from .markers import record_markers, stop_gradient_recorded  # noqa: F401
from .markers import (MARKERS, ad_active, ad_context, custom_vjp_call_p,  # noqa: F401
                      stop_gradient_p)
from .rules import (JVP_RULES, NOT_DIFFERENTIABLE, TRANSPOSE_RULES,  # noqa: F401
                    UndefinedPrimal)
from .simplify import cleanup, simplify  # noqa: F401
from . import control  # noqa: F401  (the control-flow rules register themselves)
from . import rules_sort  # noqa: F401  (and sort's, the scans')
from . import rules_linalg  # noqa: F401  (so do the decompositions' rules)
from . import rules_conv  # noqa: F401  (and the convolutions')
from . import rules_callback  # noqa: F401  (pure_callback's: an error naming it)
from .partial_eval import PARTIAL_EVAL_RULES  # noqa: F401
from .transform import Linearized, jvp_eval, jvp_graph, linearize  # noqa: F401
