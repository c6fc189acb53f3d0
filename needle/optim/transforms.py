"""The public package: `needle.optim`'s functional core, in optax's shape.

Input: a pytree of parameters (arrays, or a Module: its cells' values) and
a pytree of gradients of the same structure. Output: a
`GradientTransformation(init, update)`: `init(params)` gives the state (a
pytree of arrays), `update(grads, state, params=None)` gives `(updates,
new_state)`; `apply_updates(params, updates)` adds them. As in optax the
updates are the negative scaled step (`sgd(lr)` gives `-lr * g`). Pure
functions of arrays: they work eagerly and under jit / grad / vmap.
"""
from typing import Any, Callable, NamedTuple

import numpy as np

from .. import numpy as nnp
from ..tracer.pytree import tree_leaves, tree_map

__all__ = ["GradientTransformation", "EmptyState", "TraceState", "ScaleByAdamState",
           "ScaleByScheduleState", "scale", "scale_by_learning_rate", "trace",
           "scale_by_adam", "add_decayed_weights", "clip_by_global_norm", "chain", "sgd",
           "adam", "adamw", "apply_updates", "global_norm"]


class GradientTransformation(NamedTuple):
    init: Callable
    update: Callable


class EmptyState(NamedTuple):
    pass


class TraceState(NamedTuple):
    trace: Any


class ScaleByAdamState(NamedTuple):
    count: Any
    mu: Any
    nu: Any


class ScaleByScheduleState(NamedTuple):
    count: Any


def _zeros_like(tree):
    return tree_map(lambda p: nnp.zeros_like(p), tree)


def _count0():
    return np.zeros((), np.int32)


def _need_params(name, params):
    if params is None:
        raise ValueError(f"needle.optim.{name}: update(grads, state, params) needs params")


def global_norm(tree):
    """sqrt of the sum of squares of every leaf (float32 for float32 leaves)."""
    leaves = tree_leaves(tree)
    if not leaves:
        return np.float32(0.0)
    total = None
    for g in leaves:
        s = nnp.sum(nnp.multiply(g, g))
        total = s if total is None else nnp.add(total, s)
    return nnp.sqrt(total)


def scale(step_size):
    """updates = step_size * grads."""
    def update(grads, state, params=None):
        return tree_map(lambda g: nnp.multiply(step_size, g), grads), state
    return GradientTransformation(lambda params: EmptyState(), update)


def scale_by_learning_rate(learning_rate, *, flip_sign=True):
    """updates = -lr * grads; `learning_rate` a number or a schedule
    (a function of the step count, as optax)."""
    m = -1.0 if flip_sign else 1.0
    if not callable(learning_rate):
        return scale(m * learning_rate)

    def init(params):
        return ScaleByScheduleState(_count0())

    def update(grads, state, params=None):
        lr = learning_rate(state.count)
        out = tree_map(lambda g: nnp.multiply(nnp.astype(nnp.multiply(m, lr), g.dtype), g),
                       grads)
        return out, ScaleByScheduleState(nnp.add(state.count, np.int32(1)))
    return GradientTransformation(init, update)


def trace(decay, nesterov=False):
    """Momentum (optax's trace, PyTorch's form): t = g + decay * t; updates
    = t, or g + decay * t with nesterov."""
    def init(params):
        return TraceState(_zeros_like(params))

    def update(grads, state, params=None):
        t = tree_map(lambda g, t: nnp.add(g, nnp.multiply(decay, t)), grads, state.trace)
        out = tree_map(lambda g, t: nnp.add(g, nnp.multiply(decay, t)), grads, t) \
            if nesterov else t
        return out, TraceState(t)
    return GradientTransformation(init, update)


def _bias_correction(decay, count, dtype):
    return nnp.subtract(1.0, nnp.power(np.asarray(decay, dtype), nnp.astype(count, dtype)))


def scale_by_adam(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0):
    """Adam's scaling (optax): mu = b1 mu + (1 - b1) g, nu = b2 nu + (1 -
    b2) g^2, count += 1; updates = mu_hat / (sqrt(nu_hat + eps_root) + eps)
    with mu_hat = mu / (1 - b1^count), nu_hat = nu / (1 - b2^count)."""
    def init(params):
        return ScaleByAdamState(_count0(), _zeros_like(params), _zeros_like(params))

    def update(grads, state, params=None):
        mu = tree_map(lambda g, m: ema(m, g, b1), grads, state.mu)
        nu = tree_map(lambda g, v: ema(v, nnp.multiply(g, g), b2), grads, state.nu)
        count = nnp.add(state.count, np.int32(1))

        def step(m, v):
            bc1, bc2 = _bias_correction(b1, count, m.dtype), _bias_correction(b2, count, v.dtype)
            return adam_direction(m, v, bc1, bc2, eps, eps_root)
        return tree_map(step, mu, nu), ScaleByAdamState(count, mu, nu)
    return GradientTransformation(init, update)


def ema(avg, x, decay):
    """decay * avg + (1 - decay) * x (the moments of Adam, the course's momentum)."""
    return nnp.add(nnp.multiply(decay, avg), nnp.multiply(1.0 - decay, x))


def adam_direction(m, v, bc1, bc2, eps, eps_root=0.0):
    """(m / bc1) / (sqrt(v / bc2 + eps_root) + eps)."""
    vh = nnp.divide(v, bc2)
    if eps_root:
        vh = nnp.add(vh, eps_root)
    return nnp.divide(nnp.divide(m, bc1), nnp.add(nnp.sqrt(vh), eps))


def add_decayed_weights(weight_decay=0.0, mask=None):
    """updates = grads + weight_decay * params (where `mask`, a pytree of
    bools like params or a function of params giving one, is True)."""
    def update(grads, state, params=None):
        _need_params("add_decayed_weights", params)
        m = mask(params) if callable(mask) else mask
        if m is None:
            return tree_map(lambda g, p: nnp.add(g, nnp.multiply(weight_decay, p)),
                            grads, params), state
        return tree_map(lambda g, p, k: nnp.add(g, nnp.multiply(weight_decay, p)) if k else g,
                        grads, params, m), state
    return GradientTransformation(lambda params: EmptyState(), update)


def clip_by_global_norm(max_norm):
    """Scale all grads by max_norm / global_norm when the norm exceeds
    max_norm (optax); unchanged otherwise."""
    def update(grads, state, params=None):
        n = global_norm(grads)
        keep = nnp.less(n, max_norm)

        def clip(g):
            scaled = nnp.multiply(g, nnp.astype(nnp.divide(max_norm, n), g.dtype))
            return nnp.where(keep, g, scaled)
        return tree_map(clip, grads), state
    return GradientTransformation(lambda params: EmptyState(), update)


def chain(*transforms):
    """Apply transforms in order; the state is the tuple of their states."""
    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(grads, state, params=None):
        if len(state) != len(transforms):
            raise ValueError(f"needle.optim.chain: a state of {len(state)} parts for "
                             f"{len(transforms)} transforms")
        new = []
        for t, s in zip(transforms, state):
            grads, s = t.update(grads, s, params)
            new.append(s)
        return grads, tuple(new)
    return GradientTransformation(init, update)


def sgd(learning_rate, momentum=0.0, nesterov=False):
    """optax.sgd: -lr * g, with momentum trace(momentum, nesterov) first."""
    parts = [trace(momentum, nesterov)] if momentum else []
    return chain(*parts, scale_by_learning_rate(learning_rate))


def adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0):
    """optax.adam: -lr * scale_by_adam(g)."""
    return chain(scale_by_adam(b1, b2, eps, eps_root), scale_by_learning_rate(learning_rate))


def adamw(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, weight_decay=1e-4,
          mask=None):
    """optax.adamw: -lr * (scale_by_adam(g) + weight_decay * params) (decoupled)."""
    return chain(scale_by_adam(b1, b2, eps, eps_root), add_decayed_weights(weight_decay, mask),
                 scale_by_learning_rate(learning_rate))


def apply_updates(params, updates):
    """params + updates, each leaf keeping its parameter's dtype."""
    return tree_map(lambda p, u: nnp.astype(nnp.add(p, u), p.dtype), params, updates)
