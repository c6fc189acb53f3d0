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

Under `needle.grad` / `jit` (a traced input) it works the same way: the
moments are all-reduced by a `needle.pure_callback` that the compiled
program calls between kernels (one MPI all-reduce of the per-channel sums,
sums of squares and the count, in float64), and their derivative is a
`needle.custom_vjp` whose backward all-reduces the two per-channel
cotangent sums (of the mean and of the variance: PyTorch's SyncBatchNorm
backward, which all-reduces sum(dy) and sum(dy * (x - mean))). Each rank's
input gradient is then that of the sum of every rank's loss, so gradients
averaged over ranks (DistributedOptimizer, all_reduce) equal the gradient of
the whole batch's loss in one process. Every rank must run the same program
(the same collectives in the same order), as with any MPI collective.
"""
import numpy as np

from .. import numpy as nnp
from ..autodiff import custom_vjp
from ..callback import ShapeDtypeStruct, pure_callback
from ..nn.layers import BatchNorm1d, _like, _val
from .collectives import all_reduce
from .world import W, init


def _sum_over_ranks(buf):
    """The host side of the callbacks: one MPI all-reduce (sum) of a float64 vector."""
    return all_reduce([np.asarray(buf, np.float64)], op="sum")[0]


def _all_reduce_sum(v):
    return pure_callback(_sum_over_ranks, ShapeDtypeStruct(v.shape, np.float64), v)


_MOMENTS = {}


def _global_moments(axes, ndim):
    """The custom_vjp function x -> (mean, biased var) over `axes` of every
    rank's x, for inputs of `ndim` axes (one per layout, cached)."""
    key = (axes, ndim)
    if key in _MOMENTS:
        return _MOMENTS[key]

    def shape(c):
        return tuple(c if d == 1 else 1 for d in range(ndim))

    def fwd(x):
        c = x.shape[1]
        x64 = x.astype(nnp.float64)
        n_local = np.float64(int(np.prod(x.shape)) // c)
        tot = _all_reduce_sum(nnp.concatenate([nnp.sum(x64, axis=axes),
                                               nnp.sum(x64 * x64, axis=axes),
                                               nnp.full((1,), n_local, nnp.float64)]))
        n = tot[2 * c]
        mean = tot[:c] / n
        var = nnp.maximum(tot[c:2 * c] / n - mean * mean, 0.0)
        return (mean.astype(x.dtype), var.astype(x.dtype)), (x, mean, n)

    def bwd(res, ct):
        x, mean, n = res
        c = x.shape[1]
        g_mean, g_var = ct
        # every rank's cotangents of the global moments, summed: the input's
        # gradient is then that of the sum of all ranks' losses
        g = _all_reduce_sum(nnp.concatenate([nnp.asarray(g_mean).astype(nnp.float64),
                                             nnp.asarray(g_var).astype(nnp.float64)]))
        dx = nnp.reshape(g[:c] / n, shape(c)) + nnp.reshape(2.0 * g[c:] / n, shape(c)) * \
            (x.astype(nnp.float64) - nnp.reshape(mean, shape(c)))
        return (dx.astype(x.dtype),)

    @custom_vjp
    def moments(x):
        return fwd(x)[0]

    moments.defvjp(fwd, bwd)
    _MOMENTS[key] = moments
    return moments

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
        if len(v.shape) < 2 or v.shape[1] != self.dim:
            raise ValueError(f"SyncBatchNorm({self.dim}): input shape {tuple(v.shape)} has no "
                             f"channel axis 1 of size {self.dim}")
        mean, var = _global_moments(self._axes, len(v.shape))(v)
        m = self.momentum
        self.running_mean = nnp.add(nnp.multiply(1.0 - m, self.running_mean.value),
                                    nnp.multiply(m, mean))
        self.running_var = nnp.add(nnp.multiply(1.0 - m, self.running_var.value),
                                   nnp.multiply(m, var))
        shape = self._shape(v)
        d = nnp.subtract(v, nnp.reshape(mean, shape))
        y = nnp.multiply(d, nnp.reshape(nnp.rsqrt(nnp.add(var, self.eps)), shape))
        y = nnp.add(nnp.multiply(y, nnp.reshape(self.weight.value, shape)),
                    nnp.reshape(self.bias.value, shape))
        return _like(x, y)
