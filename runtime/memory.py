"""Stage runtime: the buffer pool behind every large array needle allocates
(kernel outputs, intermediates, BLAS results).

Input: (shape, dtype) requests. Output: numpy arrays that are views of pooled
blocks.

Fresh pages cost a page fault each (1-2 us per 4 KiB here): a 64 MB result
can cost more to allocate than to compute. The pool keeps blocks of at least
MIN_BYTES and hands a block out again once nothing references it any more,
which CPython's reference count tells exactly: every array given out is a
view whose base is the block, so a block whose count is back to the pool's own
references is free. Results a user drops (as a training loop rebinding
`params = step(params)` does) and intermediates the executable releases after
their last use come back without any explicit call.
"""
import sys
import threading

import numpy as np

MIN_BYTES = 1 << 18           # smaller arrays: malloc's own free lists are fast enough
MAX_BLOCKS_PER_SIZE = 6       # beyond this, allocate untracked (nothing is leaked)

_lock = threading.Lock()
_blocks = {}                  # nbytes -> [np.ndarray of uint8]
_stats = {"reused": 0, "fresh": 0}


def empty(shape, dtype):
    """np.empty(shape, dtype), from the pool when large."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < MIN_BYTES:
        return np.empty(shape, dtype)
    with _lock:
        blocks = _blocks.setdefault(nbytes, [])
        for blk in blocks:
            # References: the list, this loop variable, getrefcount's argument.
            if sys.getrefcount(blk) == 3:
                _stats["reused"] += 1
                return blk.view(dtype).reshape(shape)
        blk = np.empty(nbytes, np.uint8)
        _stats["fresh"] += 1
        if len(blocks) < MAX_BLOCKS_PER_SIZE:
            blocks.append(blk)
        return blk.view(dtype).reshape(shape)


def allocator(shape, dtype):
    """A function of no arguments returning a fresh array of (shape, dtype):
    plain np.empty below the pool's threshold, decided once, at compile time."""
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize < MIN_BYTES:
        return lambda: np.empty(shape, dtype)
    return lambda: empty(shape, dtype)


def pool_info():
    """(blocks held, bytes held, allocations served by reuse, fresh blocks)."""
    with _lock:
        n = sum(len(b) for b in _blocks.values())
        size = sum(k * len(b) for k, b in _blocks.items())
    return n, size, _stats["reused"], _stats["fresh"]


def clear_pool():
    with _lock:
        _blocks.clear()
