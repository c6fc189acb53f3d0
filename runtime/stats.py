"""Stage runtime: process-wide counters behind `needle.cache_info()`.

Input: increments from tracing, compiling and calling; the sizes of the
bounded caches (the CPU buffer pool here, jitted functions' trace caches
through `trace_entries_source`). Output: a CacheInfo snapshot (traces,
kernels compiled, kernels loaded from disk, hits; trace-cache entries, pool
bytes held and the pool's budget).
"""
from collections import namedtuple

from . import memory

# New fields go at the end: existing code reads the first five by name.
CacheInfo = namedtuple("CacheInfo", "traces kernels_compiled kernels_loaded kernels_reused hits "
                                    "trace_entries pool_bytes pool_budget")


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
        held, budget = memory.pool_bytes()
        return CacheInfo(self.traces, self.kernels_compiled, self.kernels_loaded,
                         self.kernels_reused, self.hits, trace_entries_source[0](),
                         held, budget)


stats = _Stats()

# A function of no arguments counting the compiled signatures that live
# jitted functions hold (set by needle/api.py: the runtime cannot import it).
trace_entries_source = [lambda: 0]


def cache_info():
    """Counts since the process started (or `reset_cache_info()`), and the
    current sizes: compiled signatures held by live jitted functions
    (trace_entries; at most NEEDLE_TRACE_CACHE_SIZE per function), bytes the
    CPU buffer pool holds and its budget (NEEDLE_POOL_BYTES)."""
    return stats.info()


def reset_cache_info():
    stats.reset()
