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

Bounds: at most MAX_BLOCKS_PER_SIZE blocks per size, and at most a byte
budget for all blocks it tracks, free or in use (config.pool_bytes, i.e.
NEEDLE_POOL_BYTES or `needle.config.update("pool_bytes", n)`; default 1 GiB or
a quarter of the RAM if that is less; `set_budget`). A new block
that would pass the budget first makes the pool forget the blocks of the
least recently requested sizes (one still in use stays valid and is freed by
numpy when its last view goes); a block larger than the budget is never
pooled. So a program that meets many sizes (a shape sweep, variable batch
sizes) does not keep 8 blocks of every size it ever saw.
"""
import os
import sys
import threading
from collections import OrderedDict
from functools import partial

import numpy as np

from ..ir.config import config

MIN_BYTES = 1 << 18           # smaller arrays: malloc's own free lists are fast enough
MAX_BLOCKS_PER_SIZE = 8       # beyond this, allocate untracked (nothing is leaked); 8: an
                              # Adam step holds 7 parameter-sized buffers at its peak


def _default_budget():
    if config.pool_bytes is not None:
        return config.pool_bytes
    budget = 1 << 30
    try:
        budget = min(budget, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4)
    except (ValueError, OSError, AttributeError):      # pragma: no cover (no sysconf)
        pass
    return budget


_lock = threading.Lock()
_blocks = OrderedDict()       # nbytes -> [np.ndarray of uint8], least recently requested first
_state = {"held": 0, "budget": _default_budget()}
_stats = {"reused": 0, "fresh": 0, "evicted": 0}


def _refs(blocks, i):
    return sys.getrefcount(blocks[i])


# The count of a block referenced by its list only (CPython: the list and
# the subscript's temporary), measured rather than assumed.
_FREE_REFS = _refs([np.empty(1, np.uint8)], 0)


def _is_free(blocks, i):
    return _refs(blocks, i) == _FREE_REFS


def _make_room(nbytes):
    """Forget the blocks of the least recently requested sizes until `nbytes`
    more fit the budget; whether they fit. A forgotten block still in use
    stays valid: numpy frees it when its last view goes. Holds _lock."""
    budget = _state["budget"]
    while _blocks and _state["held"] + nbytes > budget:
        size, blocks = _blocks.popitem(last=False)
        _state["held"] -= size * len(blocks)
        _stats["evicted"] += len(blocks)
    return _state["held"] + nbytes <= budget


def empty(shape, dtype):
    """np.empty(shape, dtype), from the pool when large."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < MIN_BYTES:
        return np.empty(shape, dtype)
    return _pooled(nbytes, shape, dtype)


def _pooled(nbytes, shape, dtype):
    """A pool block of `nbytes` viewed as (shape, dtype)."""
    with _lock:
        # Out of the LRU order while it is served (so _make_room spares it),
        # back in as the most recent.
        blocks = _blocks.pop(nbytes, None) or []
        try:
            for i in range(len(blocks)):
                if _is_free(blocks, i):
                    _stats["reused"] += 1
                    return blocks[i].view(dtype).reshape(shape)
            blk = np.empty(nbytes, np.uint8)
            _stats["fresh"] += 1
            if len(blocks) < MAX_BLOCKS_PER_SIZE and _make_room(nbytes):
                blocks.append(blk)
                _state["held"] += nbytes
            return blk.view(dtype).reshape(shape)
        finally:
            if blocks:
                _blocks[nbytes] = blocks


def allocator(shape, dtype):
    """A function of no arguments returning a fresh array of (shape, dtype):
    plain np.empty below the pool's threshold, decided once, at compile time."""
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    # partial, not a lambda: no Python frame per allocation (about 0.1 us)
    if nbytes < MIN_BYTES:
        return partial(np.empty, shape, dtype)
    return partial(_pooled, nbytes, shape, dtype)      # sizes worked out once, here


def pool_info():
    """(blocks held, bytes held, allocations served by reuse, fresh blocks)."""
    with _lock:
        n = sum(len(b) for b in _blocks.values())
        size = _state["held"]
    return n, size, _stats["reused"], _stats["fresh"]


def pool_bytes():
    """(bytes the pool holds, in use or free; its budget)."""
    return _state["held"], _state["budget"]


def set_budget(nbytes):
    """Set the pool's byte budget (config.pool_bytes at start-up and on its
    updates), forgetting
    the least recently requested sizes' blocks beyond it now. Returns the
    previous budget."""
    with _lock:
        old, _state["budget"] = _state["budget"], int(nbytes)
        _make_room(0)
    return old


def clear_pool():
    with _lock:
        _blocks.clear()
        _state["held"] = 0


def _after_fork_in_child():
    global _lock
    _lock = threading.Lock()        # another thread of the parent may have held it


os.register_at_fork(after_in_child=_after_fork_in_child)
# needle.config.update("pool_bytes", n) applies at once (None: the default).
config.watch("pool_bytes", lambda n: set_budget(_default_budget()))


# --- counting allocations (benchmarks, tests) ----------------------------------------
_counting = {}                # the handler's parts, built on first use (kept alive)


def _counting_handler():
    """A numpy data-memory handler (NEP 49) that counts each allocation and
    forwards to libc; (capsule, numpy's PyDataMem_SetHandler, counts)."""
    if _counting:
        return _counting["capsule"], _counting["set"], _counting["counts"]
    import ctypes
    libc = ctypes.CDLL(None)
    libc.malloc.restype = libc.calloc.restype = libc.realloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    counts = {"arrays": 0, "bytes": 0}
    vp, size = ctypes.c_void_p, ctypes.c_size_t

    def malloc(ctx, n, _malloc=libc.malloc, _c=counts):
        _c["arrays"] += 1
        _c["bytes"] += n
        return _malloc(n)

    def calloc(ctx, n, s, _calloc=libc.calloc, _c=counts):
        _c["arrays"] += 1
        _c["bytes"] += n * s
        return _calloc(n, s)

    def realloc(ctx, p, n, _realloc=libc.realloc, _c=counts):
        _c["arrays"] += 1
        _c["bytes"] += n
        return _realloc(p, n)

    def free(ctx, p, n, _free=libc.free):
        _free(p)

    fns = [ctypes.CFUNCTYPE(vp, vp, size)(malloc), ctypes.CFUNCTYPE(vp, vp, size, size)(calloc),
           ctypes.CFUNCTYPE(vp, vp, vp, size)(realloc), ctypes.CFUNCTYPE(None, vp, vp, size)(free)]

    class Allocator(ctypes.Structure):
        _fields_ = [("ctx", vp), ("malloc", vp), ("calloc", vp), ("realloc", vp), ("free", vp)]

    class Handler(ctypes.Structure):        # PyDataMem_Handler, numpy/ndarraytypes.h
        _fields_ = [("name", ctypes.c_char * 127), ("version", ctypes.c_uint8),
                    ("allocator", Allocator)]

    handler = Handler(b"needle_counting", 1,
                      Allocator(None, *[ctypes.cast(f, vp).value for f in fns]))
    new_capsule = ctypes.pythonapi.PyCapsule_New
    new_capsule.restype = ctypes.py_object
    new_capsule.argtypes = [vp, ctypes.c_char_p, vp]
    capsule = new_capsule(ctypes.addressof(handler), b"mem_handler", None)
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = vp
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:                     # pragma: no cover (numpy 1.x)
        from numpy.core import _multiarray_umath as umath
    api = ctypes.cast(get_pointer(umath._ARRAY_API, None), ctypes.POINTER(vp))
    # PyDataMem_SetHandler is entry 304 of numpy's C API table (a stable ABI)
    set_handler = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object)(api[304])
    # Arrays made under the handler free through it later, possibly while
    # the interpreter shuts down: its parts are never freed (one reference
    # each is leaked on purpose).
    keep = (fns, handler, capsule, counts, libc)
    ctypes.pythonapi.Py_IncRef.argtypes = [ctypes.py_object]
    ctypes.pythonapi.Py_IncRef(keep)
    _counting.update(capsule=capsule, set=set_handler, counts=counts, keep=keep)
    return capsule, set_handler, counts


class count_allocations:
    """`with count_allocations() as c: ...`: c.arrays / c.bytes count every
    numpy data allocation (array buffers: np.empty, results, copies; not
    views) made in this thread inside the block, through a counting numpy
    memory handler (NEP 49). For benchmarks and tests: "no allocation per
    step" is one call's count not growing with the trip count."""

    def __enter__(self):
        self._capsule, self._set, self._counts = _counting_handler()
        self._start = dict(self._counts)
        self._old = self._set(self._capsule)
        self.arrays = self.bytes = 0
        return self

    def __exit__(self, *exc):
        self._set(self._old)
        self.arrays = self._counts["arrays"] - self._start["arrays"]
        self.bytes = self._counts["bytes"] - self._start["bytes"]
        return False
