"""Stage runtime: warm Numba up in the background while the user's script
goes on.

Input: nothing (started once by `import needle`). Output: a daemon thread
that imports numba and the modules its CPU target loads on first use
(numba.np with its BLAS check, numba.cpython, numba.typed, ...), the ~350 ms
that the first kernel compile or cache load would otherwise spend before its
own work: a script that loads data or builds a model after `import needle`
finds them imported (a cached first call: ~350 ms -> ~100 ms, measured on
the development machine).

Only imports, never a lock of Numba's own: Python's import locks keep a
module from being imported twice and detect cycles between threads, while
taking Numba's global compiler lock here would invert the order in which a
compile takes its locks (a deadlock, seen in testing). The target context
itself is built by the first compile, as before.

`NEEDLE_PREWARM=0` (config.prewarm, read at import) turns it off. A fork
(multiprocessing) waits for the thread first, so a child never inherits an
import half done.
"""
import importlib
import os
import threading

from ..ir.config import config

_thread = None

# What numba.core.cpu.CPUContext.load_additional_registries imports.
MODULES = ("numba", "numba.cpython.builtins", "numba.cpython.unicode", "numba.core.optional",
           "numba.core.inline_closurecall", "numba.np.linalg", "numba.np.arraymath",
           "numba.np.arrayobj", "numba.np.random.generator_methods", "numba.np.random.legacy",
           "numba.np.polynomial.polynomial_functions", "numba.typed.typeddict",
           "numba.typed.typedlist", "numba.typed.typedset", "numba.experimental.jitclass",
           "numba.experimental.function_type", "numba.np.npdatetime", "numba.np.npyimpl",
           "numba.cpython.cmathimpl", "numba.cpython.mathimpl", "numba.cpython.printimpl",
           "numba.cpython.randomimpl", "numba.misc.cffiimpl")


def _run():
    try:
        from . import cpu_target
        cpu_target.configure()      # NUMBA_CPU_FEATURES before numba reads its config
        for name in MODULES:
            importlib.import_module(name)
    except Exception:               # pragma: no cover (the first compile will say why)
        pass


def start():
    """Start the prewarm thread (once; not with NEEDLE_PREWARM=0)."""
    global _thread
    if _thread is not None or not config.prewarm:
        return
    # Numba imports logging, which registers fork hooks of its own (acquire
    # its lock before a fork, release it after). Imported on the thread, that
    # registration could land while a fork runs our `wait` hook, and the child
    # would release a lock that was never acquired; imported here, it is done.
    import logging  # noqa: F401
    _thread = threading.Thread(target=_run, name="needle-prewarm", daemon=True)
    _thread.start()
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=wait)


def wait():
    """Block until the prewarm thread has finished (no-op if none)."""
    if _thread is not None and _thread.is_alive() and \
            threading.current_thread() is not _thread:
        _thread.join()
