"""Stage runtime: running parallel (prange) kernels safely from several
Python threads.

Input: a compiled parallel kernel. Output: a callable that is safe to call
concurrently.

needle asks Numba for a thread-safe threading layer (omp or tbb) before the
first parallel kernel runs, and sets OMP_WAIT_POLICY=passive (idle OpenMP
threads spinning slow the next BLAS call 1.6x). If only the workqueue layer
exists, parallel launches are serialised by a lock, since workqueue aborts on
concurrent use.
"""
import os
import threading

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

_lock = threading.Lock()
_state = {"safe": None}


def _layer_is_safe():
    if _state["safe"] is None:
        import numba
        if not os.environ.get("NUMBA_THREADING_LAYER"):
            numba.config.THREADING_LAYER = "threadsafe"
        _state["safe"] = True
    return _state["safe"]


def guard(fn):
    _layer_is_safe()
    state = {"checked": False}

    def call(*args):
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
