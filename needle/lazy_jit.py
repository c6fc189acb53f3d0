"""The public package: `Tensor.backward()` inside a transform (a course-style
loop body wrapped in `needle.jit`), issue 16.

Input: a Tensor whose value is a tracer of the open trace (the loss), and
its cotangent. Output: `.grad` of the state cells (parameters, and other
Tensors the transform lifted) that require grad and that the loss reads,
as tracers of the same trace: an optimizer step after it reads them, and
the whole step compiles into one program.

The equations the loss depends on are already in the trace (recorded as
the forward ran); they are cut out as a Graph from the trace's own inputs,
differentiated with needle.vjp (lazy.vjp_program, the same function the
lazy backward compiles) and the result is bound into the trace. The
forward is bound again by the VJP; the pipeline's CSE merges the copies.
After the call `.grad` holds a tracer of the finished trace: read the
gradients inside the step (as the optimizer does).
"""
import numpy as np

from .ir.core import Graph, Var
from .lazy import vjp_program
from .tensor import FRAMES, Tensor, is_traced
from .tracer.core import Tracer

__all__ = ["traced_backward"]


def _cut(trace, out_var):
    """(eqns the value of out_var needs, in trace order; the Vars they read
    that no such eqn makes: the trace's inputs and constants)."""
    made = {}
    for e in trace.eqns:
        for v in e.outs:
            made[v] = e
    need, stack = set(), [out_var]
    while stack:
        v = stack.pop()
        e = made.get(v)
        if e is None or id(e) in need:
            continue
        need.add(id(e))
        stack.extend(a for a in e.inputs if isinstance(a, Var))
    eqns = [e for e in trace.eqns if id(e) in need]
    inputs, seen = [], set()
    for e in eqns:
        for a in e.inputs:
            if isinstance(a, Var) and a not in made and id(a) not in seen:
                seen.add(id(a))
                inputs.append(a)
    if out_var not in made and id(out_var) not in seen:
        inputs.append(out_var)
    return eqns, inputs


def traced_backward(tensor, out_grad):
    loss = tensor.value
    if not is_traced(loss):
        raise TypeError("Tensor.backward() inside a transform: the Tensor's value is not "
                        "traced (a constant has no gradient)")
    trace = loss._trace
    eqns, inputs = _cut(trace, loss._var)
    cells = {}
    for fr in FRAMES.stack:
        for c, _ in fr.saved.values():
            v = c._value
            if isinstance(c, Tensor) and c.requires_grad and is_traced(v) and \
                    v._trace is trace and v.dtype.kind == "f":
                cells.setdefault(id(v._var), c)
    pos = {id(v): k for k, v in enumerate(inputs)}
    wrt, owners = [], []
    for vid, c in cells.items():
        if vid in pos:
            wrt.append(pos[vid])
            owners.append(c)
    order = sorted(range(len(wrt)), key=lambda k: wrt[k])
    wrt, owners = tuple(wrt[k] for k in order), [owners[k] for k in order]
    aval = loss.aval.strong()
    ct = np.ones(aval.shape, aval.dtype) if out_grad is None else \
        np.asarray(out_grad, aval.dtype)
    fwd = Graph([], list(inputs), eqns, [loss._var])
    outs = vjp_program(fwd, wrt)(*[Tracer(trace, v) for v in inputs], ct)
    for c, g in zip(owners, outs[1:]):
        c.grad = Tensor._make(g, False)


# --- opt.step() after a lazy backward: the update as one compiled program ------------

_STEPS = {}             # optimizer class -> needle.jit of its step


def _step_of(cls):
    j = _STEPS.get(cls)
    if j is None:
        from .api import jit

        def step(opt, grads):
            cls.step(opt, grads)
        j = _STEPS[cls] = jit(step)
    return j


def compiled_step(opt):
    """`opt.step()` (gradients from each parameter's `.grad`) as a jitted call
    when every gradient was written by a lazy backward (`grad._origin` is
    its parameter): the whole update (moments, decay, parameters) is one
    cached program instead of an eager operation per array. Returns False
    (nothing done) otherwise: the caller takes its eager path."""
    params = opt.params
    grads = []
    for p in params:
        g = p.grad
        if g is None:
            grads.append(None)
        elif g._origin is p:
            grads.append(g.realize_cached_data())
        else:
            return False
    if all(g is None for g in grads):
        return False
    _step_of(type(opt))(opt, grads)
    return True
