"""Stage passes (autodiff): the transformation-internal primitives and the
"differentiating now" flag.

Input: nothing. Output: `stop_gradient_p`, `custom_vjp_call_p`,
`custom_lin_p`, and `ad_context()` / `ad_active()`.

`needle.stop_gradient(x)` and a `needle.custom_vjp` function only matter to
differentiation. While an autodiff transformation traces the user's function
(`ad_active()` is true) they bind these markers, so the rule is visible in the
Graph the autodiff pass reads; everywhere else (eager code, plain `jit`) they
are the identity / the function itself, so a marker never reaches the pass
pipeline or a backend. Every transformation interprets the markers away:
`stop_gradient` becomes its operand with a zero tangent, `custom_vjp_call`
becomes the user's `fwd` in the primal program and its `bwd` in the backward
one. That is why these primitives are kept out of `ir.PRIMITIVES`, the
registry every backend must cover (a test pins that no marker is left in a
differentiated Graph).
"""
import contextlib
import threading

from ...ir.core import Primitive, Traits
from ...ir.interpreter import run_numpy


class MarkerPrimitive(Primitive):
    """A Primitive that lives only inside graphs being differentiated."""

    def __init__(self, name, multiple_results=False):   # noqa: D107 - no registration
        self.name = name
        self.multiple_results = multiple_results
        self.traits = Traits(kind="autodiff")
        self.abstract_eval = None
        self.impl = None


MARKERS = {}


def _marker(name, multiple_results=False):
    p = MarkerPrimitive(name, multiple_results)
    MARKERS[name] = p
    return p


# stop_gradient(x): the identity with a zero derivative.
stop_gradient_p = _marker("stop_gradient")
stop_gradient_p.abstract_eval = lambda x: [x]
stop_gradient_p.impl = lambda x: [x]

# custom_vjp_call(*consts, *args, graph, n_consts, fwd, bwd, in_tree, out_tree):
# the traced body of a custom_vjp function with the user's fwd / bwd rules.
custom_vjp_call_p = _marker("custom_vjp_call", multiple_results=True)
custom_vjp_call_p.abstract_eval = lambda *avals, graph, **_: [v.aval for v in graph.outvars]
custom_vjp_call_p.impl = lambda *args, graph, n_consts, **_: run_numpy(
    graph, list(args[:n_consts]), list(args[n_consts:]))

# custom_lin(*residuals, *tangents, ...): the tangent of a custom_vjp_call, a
# linear map known only through its transpose (the user's bwd).
custom_lin_p = _marker("custom_lin", multiple_results=True)
custom_lin_p.abstract_eval = lambda *avals, out_avals, **_: list(out_avals)


def _custom_lin_impl(*args, **params):
    raise TypeError("a custom_vjp function was used in forward mode (jvp / jacfwd): "
                    "needle.custom_vjp defines only a reverse-mode rule; differentiate it "
                    "with grad / vjp / jacrev")


custom_lin_p.impl = _custom_lin_impl

class _Depth(threading.local):
    """Per thread, as the tracer's trace stack: a grad traced in one thread
    must not make another thread's plain trace bind the markers."""
    value = 0
    record = 0


_DEPTH = _Depth()


def ad_active():
    """True while an autodiff transformation is tracing a function (in this thread)."""
    return _DEPTH.value > 0


def stop_gradient_recorded():
    """True where needle.stop_gradient must bind its marker: under
    ad_active(), or while a graph that an autodiff pass reads later is
    recorded (record_markers)."""
    return _DEPTH.value > 0 or _DEPTH.record > 0


@contextlib.contextmanager
def record_markers():
    """Bind stop_gradient (only: a custom_vjp function still runs as itself)
    while tracing a graph that an autodiff pass may
    read later (the course API's lazy graphs, whose backward() runs the pass
    on what was recorded): without it the marker would be the identity and
    the later gradient would flow through it."""
    _DEPTH.record += 1
    try:
        yield
    finally:
        _DEPTH.record -= 1


@contextlib.contextmanager
def ad_context(active=True):
    """Mark (or, with active=False, unmark) the extent of an autodiff trace;
    user fwd / bwd rules run unmarked so their bodies are inlined."""
    old = _DEPTH.value
    _DEPTH.value = old + 1 if active else 0
    try:
        yield
    finally:
        _DEPTH.value = old
