"""Stage runtime (CUDA): the pool of device buffers behind every needle
device array (kernel outputs, intermediates of a compiled program, results
of eager operations).

Input: (shape, dtype) requests. Output: (typed device array, Block): a
numba device array viewing a pooled raw allocation, and the Block that owns
that allocation.

Why not the CPU pool's trick (runtime/memory.py reads CPython's reference
count of the numpy block): a numba DeviceNDArray's lifetime is not that of
its memory (views share a MemoryPointer, numba defers frees, the simulator's
arrays are numpy wrappers with other internals), so counting references to
numba's objects is neither portable nor exact. Instead needle owns the
allocation: every raw allocation is held by one `Block`, and every needle
Array made from it (and every view of that Array: reshape, 0-d results)
holds a reference to that Block. When the last Array goes away, CPython
calls `Block.__del__`, which puts the raw allocation back on the free list
of its size class; the next request of that size class takes it again
without a cudaMalloc. The typed numba array is never handed out without its
owning Array (`__cuda_array_interface__` consumers keep the Array alive, as
the protocol requires), so a buffer cannot be reused while anything can
still read it.

Ordering on a GPU: every launch and copy goes to the default stream, in
program order, so a buffer reused by a later kernel is written only after
every earlier kernel that read it has finished.

`Block.__del__` can run inside any allocation (the garbage collector), so
the free lists take no lock: `list.append` / `list.pop` are atomic under the
GIL. Requests are rounded up to a size class (256 bytes, then eighths of a
power of two: at most 12.5% waste) so that similar sizes share blocks.
"""
import gc

import numpy as np

MAX_FREE_PER_CLASS = 8        # beyond this, a returned block is freed (numba frees it)

_free = {}                    # size class in bytes -> [raw uint8 device array]
_stats = {"reused": 0, "fresh": 0, "returned": 0}


class Block:
    """Owner of one pooled raw device allocation (see the module docstring)."""
    __slots__ = ("raw", "nbytes")

    def __init__(self, raw, nbytes):
        self.raw, self.nbytes = raw, nbytes

    def __del__(self):
        try:
            give_back(self.raw, self.nbytes)
        except Exception:             # pragma: no cover (interpreter shutdown)
            pass


def size_class(nbytes):
    """The pooled size for a request of `nbytes` (>= 1)."""
    if nbytes <= 256:
        return 256
    step = max(256, (1 << (nbytes.bit_length() - 1)) // 8)   # eighths of the power of two below
    return -(-nbytes // step) * step


def give_back(raw, nbytes):
    lst = _free.setdefault(nbytes, [])
    if len(lst) < MAX_FREE_PER_CLASS:
        lst.append(raw)
        _stats["returned"] += 1


def _fresh(nbytes):
    from numba import cuda
    try:
        return cuda.device_array(nbytes, np.uint8)
    except Exception:                 # out of memory: drop what the pool holds, retry once
        clear_pool()
        gc.collect()
        return cuda.device_array(nbytes, np.uint8)


def allocate(shape, dtype):
    """(device array of `shape` and `dtype`, its owning Block or None).
    `shape` is a device shape (at least 1-d)."""
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes == 0:
        from numba import cuda
        return cuda.device_array(shape, dtype), None
    cls = size_class(nbytes)
    raw = None
    lst = _free.get(cls)
    if lst:
        try:
            raw = lst.pop()
            _stats["reused"] += 1
        except IndexError:            # taken by another thread meanwhile
            raw = None
    if raw is None:
        raw = _fresh(cls)
        _stats["fresh"] += 1
    arr = raw[:nbytes].view(dtype).reshape(shape)
    return arr, Block(raw, cls)


def pool_info():
    """{'free_blocks', 'free_bytes', 'reused', 'fresh', 'returned'}: blocks on
    the free lists now, and counts since the process started."""
    free = [(k, len(v)) for k, v in list(_free.items())]
    return {"free_blocks": sum(n for _, n in free), "free_bytes": sum(k * n for k, n in free),
            **_stats}


def clear_pool():
    """Forget the free blocks (numba then frees them)."""
    _free.clear()
