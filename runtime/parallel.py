"""Stage runtime: running parallel (prange) kernels safely from several
Python threads and in forked children.

Input: a compiled parallel kernel (and, optionally, a loader of its serial
variant). Output: a callable that is safe to call concurrently and after
fork().

Before Numba compiles or loads the first parallel kernel (which starts its
threading layer), `prepare` asks Numba for a thread-safe threading layer
(omp or tbb) and sets OMP_WAIT_POLICY=passive unless the user set it (idle
OpenMP threads spinning slow the next BLAS call 1.6x). Not at import: a
program that never runs a parallel kernel keeps its environment as it was.
If only the workqueue layer exists, parallel launches are serialised by a
lock, since workqueue aborts on concurrent use.

Fork: GNU OpenMP is not fork-safe. A child made with fork() (a DataLoader
worker pool, multiprocessing's "fork" context) by a process that started
Numba's threading layer is killed at its first parallel launch ("Terminating:
fork() called from a process already using GNU OpenMP"). So such a child, and
its own children, run the serial variant of every kernel: the loader given
to `guard` (the cached serial kernel), else the parallel kernel's Python
function compiled once more without `parallel`. Worker processes running
one thread each is also what keeps N workers from oversubscribing the cores
(PyTorch's DataLoader workers do the same).
"""
import os
import sys
import threading

_lock = threading.Lock()
_state = {"safe": None, "serial": False}


def prepare():
    """Settings that must precede Numba's threading layer: called before a
    parallel kernel is compiled or loaded (kernel_cache) and when one is
    wrapped (`guard`). Idempotent."""
    if _state["safe"] is None:
        # libgomp reads OMP_WAIT_POLICY once, when the layer loads it.
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
        import numba
        if not os.environ.get("NUMBA_THREADING_LAYER"):
            numba.config.THREADING_LAYER = "threadsafe"
        _state["safe"] = True
    return _state["safe"]


def _threading_layer_started():
    par = sys.modules.get("numba.np.ufunc.parallel")
    return bool(par is not None and getattr(par, "_is_initialized", False))


def _after_fork_in_child():
    global _lock
    _lock = threading.Lock()        # another thread of the parent may have held it
    if _threading_layer_started():
        _state["serial"] = True     # inherited by this child's own children


os.register_at_fork(after_in_child=_after_fork_in_child)


def serial_only():
    """Whether this process runs the serial variant of parallel kernels
    (a child forked after its parent started Numba's threading layer)."""
    return _state["serial"]


def _recompiled_serial(fn):
    """The parallel dispatcher `fn`'s function compiled without `parallel`
    (prange then runs as range); not cached on disk, whose index would not
    tell the two variants of one function apart."""
    import numba
    opts = {k: v for k, v in fn.targetoptions.items() if k != "nopython"}
    opts["parallel"] = False
    return numba.njit(list(fn.signatures), **opts)(fn.py_func)


def guard(fn, serial=None):
    """A callable running parallel kernel `fn`. `serial`: a function of no
    arguments returning the kernel's serial variant, loaded on first use in a
    forked child (see the module docstring)."""
    prepare()
    state = {"checked": False, "serial": None}

    def run_serial(args):
        s = state["serial"]
        if s is None:
            s = state["serial"] = serial() if serial is not None else _recompiled_serial(fn)
        return s(*args)

    def call(*args):
        if _state["serial"]:
            return run_serial(args)
        if not state["checked"]:
            with _lock:
                try:
                    fn(*args)
                except ValueError as e:
                    if "threading layer" not in str(e):
                        raise
                    import numba
                    numba.config.THREADING_LAYER = "workqueue"
                    _state["safe"] = False
                    fn(*args)
                state["checked"] = True
            return None
        if _state["safe"]:
            return fn(*args)
        with _lock:
            return fn(*args)
    return call
