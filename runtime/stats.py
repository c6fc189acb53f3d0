"""Stage runtime: process-wide counters behind `needle.cache_info()`.

Input: increments from tracing, compiling and calling. Output: a CacheInfo
snapshot (traces, kernels compiled, kernels loaded from disk, hits).
"""
from collections import namedtuple

CacheInfo = namedtuple("CacheInfo", "traces kernels_compiled kernels_loaded kernels_reused hits")


class _Stats:
    __slots__ = ("traces", "kernels_compiled", "kernels_loaded", "kernels_reused", "hits")

    def __init__(self):
        self.reset()

    def reset(self):
        self.traces = 0              # functions traced into graphs
        self.kernels_compiled = 0    # kernels Numba compiled in this process
        self.kernels_loaded = 0      # kernels whose machine code came from the disk cache
        self.kernels_reused = 0      # kernels found already loaded in this process
        self.hits = 0                # jitted calls served from the compile cache

    def info(self):
        return CacheInfo(self.traces, self.kernels_compiled, self.kernels_loaded,
                         self.kernels_reused, self.hits)


stats = _Stats()


def cache_info():
    """Counts since the process started (or `reset_cache_info()`)."""
    return stats.info()


def reset_cache_info():
    stats.reset()
