"""Stage passes (batching): the batching rule of pure_callback
(ir/primitives/callback.py), registered into `BATCH_RULES`.

Input: nothing. Output: the entry of `rules.BATCH_RULES` for pure_callback,
by its `vmap_method`, as JAX documents it: None: an error naming the
callback; 'sequential': one equation whose callback calls the user's once
per example (unbatched operands as they are) and stacks the results;
'expand_dims': the callback called once, an unbatched operand given a
leading axis of size 1; 'broadcast_all': called once, every operand with
the whole batch axis. Every result is batched (a leading axis of `size`).
"""
import numpy as np

from ...ir.core import ShapedArray
from ...ir.primitives.callback import pure_callback_p
from .rules import BATCH_RULES, batch_all, reshape, shape_of


class _Sequential:
    """A pure_callback's callback run once per example of the batched
    operands (axis 0), its results stacked."""

    def __init__(self, callback, batched, size):
        self.callback, self.batched, self.size = callback, tuple(batched), size

    def __call__(self, *arrays):
        rows = [self.callback(*[a[i] if b else a for a, b in zip(arrays, self.batched)])
                for i in range(self.size)]
        return [np.stack([np.asarray(r[k]) for r in rows]) for k in range(len(rows[0]))] \
            if rows else []

    def __repr__(self):
        return f"sequential({self.callback!r})"


def _pure_callback(args, batched, size, *, callback, result_avals, vmap_method=None):
    out = tuple(ShapedArray((size,) + tuple(a.shape), a.dtype) for a in result_avals)
    if vmap_method is None:
        raise NotImplementedError(
            f"vmap of pure_callback({callback!r}): it has no vmap_method; pass "
            f"vmap_method='sequential' (one call per example), 'expand_dims' or "
            f"'broadcast_all' (one call on the batch) to needle.pure_callback")
    if vmap_method == "sequential":
        if size == 0:
            raise ValueError(f"vmap of pure_callback({callback!r}) with "
                             f"vmap_method='sequential' over an axis of size 0")
        return pure_callback_p.bind(*args, callback=_Sequential(callback, batched, size),
                                    result_avals=out, vmap_method=vmap_method)
    if vmap_method == "expand_dims":
        args = [x if b else reshape(x, (1,) + shape_of(x)) for x, b in zip(args, batched)]
    else:                                           # broadcast_all
        args = batch_all(args, batched, size)
    return pure_callback_p.bind(*args, callback=callback, result_avals=out,
                                vmap_method=vmap_method)


BATCH_RULES[pure_callback_p] = _pure_callback
