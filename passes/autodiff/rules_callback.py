"""Stage passes (autodiff): pure_callback's JVP rule (ir/primitives/callback.py),
registered into `JVP_RULES`.

Input: nothing. Output: the entry of `rules.JVP_RULES` for pure_callback: a
rule that raises, naming the callback, as soon as a tangent reaches one of
its operands (as in JAX, a host callback has no derivative of its own; the
function calling it is wrapped in needle.custom_vjp, whose backward may call
host code again). A callback none of whose operands carries a tangent is
bound as it is (transform.jvp_eval), so it may sit anywhere in a
differentiated program.
"""
from ...ir.primitives.callback import pure_callback_p
from .rules import JVP_RULES


def _pure_callback_jvp(primals, tangents, *, callback, result_avals, vmap_method=None):
    shapes = ", ".join(f"{getattr(x, 'dtype', '?')}{list(getattr(x, 'shape', ()))}"
                       for x in primals)
    raise TypeError(
        f"pure_callback({callback!r}) is not differentiable: a derivative reaches its operands "
        f"({shapes}). Wrap the function that calls it in needle.custom_vjp and give its "
        f"backward rule (which may call pure_callback itself), or stop_gradient its operands")


JVP_RULES[pure_callback_p] = _pure_callback_jvp
