"""The public package: `needle.nn.SyncBatchNorm`, batch normalization
whose batch moments are those of the global batch (all ranks' shards).

Input: in training, this rank's shard of a batch, (B, C) or (B, C, *spatial)
(channels on axis 1, as BatchNorm1d / BatchNorm2d), as concrete arrays or
Tensors. Output: the shard normalized with the mean and biased variance over
every rank's shard (two all-reduces of per-channel sums, in float64), and
running statistics updated with those moments, the same on every rank. In
eval, or on one rank, it is BatchNorm1d / BatchNorm2d.

By default (BatchNorm1d, BatchNorm2d) the batch statistics and the running
statistics stay per rank: each rank normalizes its shard with the shard's
moments, and the running buffers drift apart (they are not averaged, since
the optimizer averages only gradients). SyncBatchNorm is the layer that
makes the statistics global.

Limit: the moments are all-reduced eagerly with MPI, so training mode needs
concrete values: inside `needle.grad` / `jit` (a traced input) it raises,
since needle has no host callback with results yet through which a
collective could run inside compiled code (and its VJP all-reduce the
cotangents of the moments).
"""
import numpy as np

from .. import numpy as nnp
from ..nn.layers import BatchNorm1d, _like, _val
from ..tensor import is_traced
from .collectives import all_reduce
from .world import W, init

__all__ = ["SyncBatchNorm"]


class SyncBatchNorm(BatchNorm1d):
    """`SyncBatchNorm(dim, eps=1e-5, momentum=0.1, device=None,
    dtype="float32")`: BatchNorm over axis 0 and the axes after the channel
    axis 1, with the moments of the batch of all ranks (module docstring)."""

    def _shape(self, v):
        return (1, self.dim) + (1,) * (len(v.shape) - 2)

    def forward(self, x):
        init()
        v = _val(x)
        axes = (0,) + tuple(range(2, len(v.shape)))
        if self.__dict__.get("_axes") != axes:      # a structural change only when the rank changes
            self._axes = axes
        if not self.training or W.size == 1:
            return super().forward(x)
        if is_traced(v):
            raise TypeError(
                f"SyncBatchNorm({self.dim}): its input {tuple(v.shape)} is traced (inside grad "
                f"or jit); the global batch moments are all-reduced eagerly with MPI, which "
                f"needs concrete arrays (use BatchNorm1d / BatchNorm2d, whose statistics stay "
                f"per rank, inside compiled training steps)")
        if len(v.shape) < 2 or v.shape[1] != self.dim:
            raise ValueError(f"SyncBatchNorm({self.dim}): input shape {tuple(v.shape)} has no "
                             f"channel axis 1 of size {self.dim}")
        h = np.asarray(v)
        n_local = h.size // self.dim
        s, n = all_reduce([h.sum(axis=self._axes, dtype=np.float64),
                           np.asarray([n_local], np.int64)], op="sum")
        count = int(n[0])
        mean64 = s / count
        d64 = h.astype(np.float64) - mean64.reshape(self._shape(h))
        (ss,) = all_reduce([np.sum(d64 * d64, axis=self._axes)], op="sum")
        dt = h.dtype
        mean, var = mean64.astype(dt), (ss / count).astype(dt)
        m = self.momentum
        self.running_mean = nnp.add(nnp.multiply(1.0 - m, self.running_mean.value),
                                    nnp.multiply(m, mean))
        self.running_var = nnp.add(nnp.multiply(1.0 - m, self.running_var.value),
                                   nnp.multiply(m, var))
        shape = self._shape(h)
        d = nnp.subtract(v, nnp.reshape(mean, shape))
        y = nnp.multiply(d, nnp.reshape(nnp.rsqrt(nnp.add(var, self.eps)), shape))
        y = nnp.add(nnp.multiply(y, nnp.reshape(self.weight.value, shape)),
                    nnp.reshape(self.bias.value, shape))
        return _like(x, y)
