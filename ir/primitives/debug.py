"""Stage ir: the effectful primitive behind needle.debug.print / callback.

Input: nothing. Output: `debug_callback_p`.

`debug_callback(*xs, callback)` calls `callback(*host_arrays)` when the
program runs and has no results (JAX's debug_callback). It is the one
effectful primitive (`Traits.effectful`): it is kept though nothing reads
it, never merged with an equal one, never evaluated at compile time, and its
order among the other effects is program order. `callback` is any callable
of the flat operands as numpy arrays; its repr is what the IR printer shows
(needle.debug gives print a readable one: `callback=print('x={}')`).
"""
from ..core import Primitive, Traits

__all__ = ["debug_callback_p"]

debug_callback_p = Primitive("debug_callback", Traits(kind="host", effectful=True),
                             multiple_results=True)
debug_callback_p.abstract_eval = lambda *avals, callback: []


def _impl(*args, callback):
    callback(*args)
    return []


debug_callback_p.impl = _impl
