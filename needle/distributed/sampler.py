"""The public package: needle.distributed's `DistributedSampler`: which
samples of a data set this rank reads (PyTorch's semantics).

Input: a data set (anything with `len()`, or its length), the number of
ranks and this rank (from the MPI world by default), shuffle, seed,
drop_last; `set_epoch(epoch)` before each epoch. Output: an iterable of int
indices, the protocol of `needle.data.DataLoader(..., sampler=...)`
(`__iter__`, `__len__`, `set_epoch`).

Every rank draws the same permutation of range(n) from seed + epoch
(numpy's PCG64), so the shards need no communication: rank r takes
positions r, r + R, r + 2R, ... of it. Without drop_last the permutation is
first padded by repeating its start up to a multiple of R (every rank gets
ceil(n / R) samples, a few samples twice per epoch); with drop_last its
tail is cut to a multiple of R (floor(n / R) each, n % R samples unread
that epoch). So the shards of one epoch are disjoint (up to that padding)
and together cover the data set; a new epoch reshuffles.
"""
import math

import numpy as np

from .world import rank as _rank
from .world import world_size as _world_size

__all__ = ["DistributedSampler"]


class DistributedSampler:
    """`DistributedSampler(dataset, num_replicas=None, rank=None,
    shuffle=True, seed=0, drop_last=False)`: this rank's indices of
    `dataset` for the current epoch (module docstring)."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        self.dataset = dataset
        self.num_replicas = _world_size() if num_replicas is None else int(num_replicas)
        self.rank = _rank() if rank is None else int(rank)
        if self.num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas={num_replicas} must be >= 1")
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"DistributedSampler: rank={self.rank} is not in "
                             f"[0, {self.num_replicas - 1}] (num_replicas={self.num_replicas})")
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0
        n = self._n()
        if self.drop_last and n % self.num_replicas:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def _n(self):
        return int(self.dataset) if isinstance(self.dataset, (int, np.integer)) \
            else len(self.dataset)

    def set_epoch(self, epoch):
        """Make the next `iter()` use the permutation of seed + epoch (call
        it at the start of every epoch, with the same value on every rank)."""
        self.epoch = int(epoch)

    def indices(self):
        """This rank's indices for the current epoch, as an int64 array."""
        n = self._n()
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            order = np.arange(n)
        if self.total_size > n:                       # pad by repeating the start
            reps = math.ceil((self.total_size - n) / max(n, 1))
            order = np.concatenate([order] + [order] * reps)[:self.total_size]
        else:
            order = order[:self.total_size]
        return order[self.rank:self.total_size:self.num_replicas]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples

    def __repr__(self):
        return (f"DistributedSampler({self._n()} samples, rank {self.rank} of "
                f"{self.num_replicas}, {self.num_samples} per rank, shuffle={self.shuffle}, "
                f"seed={self.seed}, drop_last={self.drop_last}, epoch={self.epoch})")
