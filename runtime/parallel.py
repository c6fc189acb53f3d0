"""Stage runtime: running a large CPU kernel on several threads.

Input: a compiled kernel whose rows may be split (codegen/cpu's KernelSource
`split`: it takes `lo, hi` last and runs rows lo..hi of its outermost loop)
and the chunks of rows to run. Output: a callable taking the kernel's other
arguments, which runs the chunks at once on a pool of threads and returns
when all are done.

Every kernel is compiled once, serial and `nogil` (no `prange`: Numba's
parfor lowering cost seconds of compile per kernel, and OpenMP made fork()
unsafe). The pool is Python threads owned by this module: created at the
first split launch (none at import), `threads - 1` workers; the calling
thread runs the first chunk itself, the workers the others, and the call
waits for every chunk before it returns (or raises the first chunk's error).
The kernels release the GIL, so the chunks run in parallel. Several Python
threads may launch at once: their chunks share the workers, each launch
waits only for its own.

Fork: a child forked by a process that started the pool has none of its
threads; it runs every kernel in one call on its own thread (and so do its
children), which keeps N worker processes (a DataLoader's) from
oversubscribing the cores, as PyTorch's workers do.
"""
import os
import queue
import threading

_state = {"serial": False}      # a forked child of a process that started the pool
_pool = {"tasks": None, "workers": 0}
_lock = threading.Lock()


def _after_fork_in_child():
    global _lock
    _lock = threading.Lock()        # another thread of the parent may have held it
    if _pool["tasks"] is not None:
        _state["serial"] = True     # inherited by this child's own children
    _pool["tasks"], _pool["workers"] = None, 0


os.register_at_fork(after_in_child=_after_fork_in_child)


def serial_only():
    """Whether this process runs every kernel in one call (a child forked
    after its parent started the pool)."""
    return _state["serial"]


def _work(tasks):
    get = tasks.get
    while True:
        fn, args, done = get()
        try:
            fn(*args)
            done.put(None)
        except BaseException as e:      # noqa: BLE001 - re-raised by the launching thread
            done.put(e)


def _tasks(workers):
    """The pool's task queue, with at least `workers` worker threads."""
    tasks = _pool["tasks"]
    if tasks is not None and _pool["workers"] >= workers:
        return tasks
    with _lock:
        if _pool["tasks"] is None:
            _pool["tasks"] = queue.SimpleQueue()
        tasks = _pool["tasks"]
        while _pool["workers"] < workers:
            _pool["workers"] += 1
            threading.Thread(target=_work, args=(tasks,), daemon=True,
                             name=f"needle-kernel-{_pool['workers']}").start()
        return tasks


def pool_threads():
    """Worker threads the pool has started (0 before the first split launch)."""
    return _pool["workers"]


def chunks(extent, n):
    """`n` contiguous [lo, hi) ranges covering 0..extent, sizes differing by
    at most one."""
    return [(extent * k // n, extent * (k + 1) // n) for k in range(n)]


def splitter(fn, extent, n):
    """A callable running kernel `fn` (which takes lo, hi last) over rows
    0..extent in `n` >= 2 chunks at once: chunk 0 on the calling thread, the
    others on the pool's workers."""
    bounds = chunks(extent, n)
    first, rest = bounds[0], bounds[1:]

    def launch(*args):
        if _state["serial"]:
            return fn(*args, 0, extent)
        tasks = _tasks(len(rest))
        done = queue.SimpleQueue()
        for lo, hi in rest:
            tasks.put((fn, args + (lo, hi), done))
        err = None
        try:
            fn(*args, *first)
        except BaseException as e:      # noqa: BLE001 - after the others finished
            err = e
        for _ in rest:                  # the buffers are in use until every chunk is done
            r = done.get()
            if err is None:
                err = r
        if err is not None:
            raise err
    return launch
