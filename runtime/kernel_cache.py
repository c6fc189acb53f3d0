"""Stage runtime: the kernel cache, in memory and on disk.

Input: a KernelSource from codegen.
Output: the compiled Numba dispatcher, from (in order) this process's memory,
Numba's on-disk cache of the module file, or a fresh compile.

On disk, each kernel is one module file named by the hash of its source,
`<NEEDLE_CACHE_DIR>/cpu/nk_<hash>.py` (default ~/.cache/needle), written
atomically (temp file + os.replace) and imported by name from a folder on
sys.path, with an explicit signature and `cache=True`: a new process loads
the machine code in milliseconds instead of compiling it. Modules are
self-contained (Numba's cache does not notice edits to imported helpers).
"""
import importlib
import os
import sys
import tempfile
import threading

from . import cpu_target
from .stats import stats


class KernelCompileError(RuntimeError):
    """Numba failed to compile a generated kernel."""


_loaded = {}
_lock = threading.Lock()


def cache_dir():
    root = os.environ.get("NEEDLE_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "needle")
    return root


def _kernel_dir(backend):
    d = os.path.join(cache_dir(), backend)
    os.makedirs(d, exist_ok=True)
    if d not in sys.path:
        sys.path.insert(0, d)
    return d


def _write_atomic(path, text):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _ensure_file(path, text):
    try:
        with open(path) as f:
            if f.read() == text:
                return
    except OSError:
        pass
    _write_atomic(path, text)


def import_kernel_module(ks, backend="cpu", context=""):
    """Write `ks` as <cache>/<backend>/nk_<hash>.py (if not there) and import it."""
    if backend == "cpu":
        cpu_target.configure()
    d = _kernel_dir(backend)
    modname = f"nk_{ks.key}"
    path = os.path.join(d, modname + ".py")
    _ensure_file(path, ks.source)
    try:
        return importlib.import_module(modname)
    except Exception as e:
        sys.modules.pop(modname, None)
        raise KernelCompileError(
            f"Numba failed to compile the kernel for {ks.name}{context}.\n"
            f"Generated source: {path}\n"
            f"Reproduce with: python -c \"import sys; sys.path.insert(0, '{d}'); "
            f"import {modname}\"\n--- source ---\n{ks.source}\n--- error ---\n{e}"
        ) from e


def load_kernel(ks, backend="cpu", context=""):
    """The dispatcher for KernelSource `ks`; counts compiled / loaded / reused."""
    key = ks.key
    fn = _loaded.get(key)
    if fn is not None:
        stats.kernels_reused += 1
        return fn
    with _lock:
        fn = _loaded.get(key)
        if fn is not None:
            stats.kernels_reused += 1
            return fn
        fn = import_kernel_module(ks, backend, context).kernel
        if sum(fn.stats.cache_hits.values()):
            stats.kernels_loaded += 1
        else:
            stats.kernels_compiled += 1
        _loaded[key] = fn
        return fn


def clear_memory_cache():
    """Forget loaded kernels (the disk cache stays); for tests."""
    _loaded.clear()
