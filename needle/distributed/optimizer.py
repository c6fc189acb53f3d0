"""The public package: needle.distributed's `DistributedOptimizer`, an
optimizer whose step first averages the gradients over all ranks.

Input: an optimizer of needle.optim (SGD, Adam, AdamW, or any with the same
`params` / `step(grads=None)` interface) and at each `step` the local
gradients: a gradient Module from `needle.grad(loss)(model, ...)`, a list
in the parameters' order, or nothing (each parameter's `.grad`, after the
course's `loss.backward()`). Output: the wrapped optimizer's update, made
with the mean of every rank's gradients (one `all_reduce` over all
parameters: a few bucketed MPI calls), so every rank makes the same update
and, started from the same parameters (`broadcast`), the replicas stay
bitwise identical.

Turning a training script data-parallel is then two lines:

    opt = needle.distributed.DistributedOptimizer(needle.optim.SGD(model.parameters(), lr))
    needle.distributed.broadcast((model, opt))

What is averaged: the gradients of the Parameters, nothing else. Buffers
(BatchNorm running statistics) stay per rank; SyncBatchNorm normalizes with
the moments of the global batch instead.
"""
from ..api import jit
from ..state import Stateful
from .collectives import all_reduce
from .world import W, init

__all__ = ["DistributedOptimizer"]


def _step(optimizer, grads):
    optimizer.step(grads)


# one compiled update per optimizer structure: the parameters and moments are
# written back after the call; the gradients (all-reduced, eager) are its inputs
_jitted_step = jit(_step)


class DistributedOptimizer(Stateful):
    """`DistributedOptimizer(optimizer, op="mean", jit=True)`: `step(grads=None)`
    all-reduces the gradients (mean) and calls `optimizer.step` with them,
    compiled with `needle.jit` (jit=False: eagerly); everything else
    (`lr`, `params`, `zero_grad`, `state_dict`, ...) is the wrapped
    optimizer's. It is a pytree holding the optimizer, so `broadcast(opt)`
    sends its moments and step count."""

    def __init__(self, optimizer, op="mean", jit=True):
        if op not in ("mean", "sum"):
            raise ValueError(f"DistributedOptimizer: op must be 'mean' or 'sum', got {op!r}")
        if not hasattr(optimizer, "step") or not hasattr(optimizer, "params"):
            raise TypeError(f"DistributedOptimizer: expected a needle.optim optimizer, got "
                            f"{type(optimizer).__name__}")
        init()
        self.optimizer = optimizer
        self.op = op
        self.jit = bool(jit)

    def step(self, grads=None):
        """Average the gradients over all ranks, then take the wrapped
        optimizer's step with them. A parameter without a gradient (None)
        must lack it on every rank."""
        opt = self.optimizer
        local = opt._grads(grads)
        if W.size > 1:
            avg = all_reduce([g for g in local if g is not None], op=self.op)
            it = iter(avg)
            local = [None if g is None else next(it) for g in local]
        if self.jit:
            _jitted_step(opt, local)
        else:
            opt.step(local)

    def averaged_grads(self, grads=None):
        """The averaged gradients, one per parameter (None where a parameter
        has none), without stepping."""
        local = self.optimizer._grads(grads)
        avg = iter(all_reduce([g for g in local if g is not None], op=self.op))
        return [None if g is None else next(avg) for g in local]

    # -- the wrapped optimizer's interface -------------------------------------------
    @property
    def params(self):
        return self.optimizer.params

    @property
    def lr(self):
        return self.optimizer.lr

    @lr.setter
    def lr(self, value):
        self.optimizer.lr = value

    def reset_grad(self):
        self.optimizer.reset_grad()

    zero_grad = reset_grad

    def state_dict(self):
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict):
        return self.optimizer.load_state_dict(state_dict)

    def __getattr__(self, name):          # hyperparameters, moments: the optimizer's
        if name == "optimizer":
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def __repr__(self):
        return f"DistributedOptimizer({self.optimizer!r}, op={self.op!r}, ranks={W.size})"

