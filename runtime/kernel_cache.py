"""Stage runtime: the kernel cache, in memory and on disk.

Input: a KernelSource from codegen.
Output: the compiled Numba dispatcher, from (in order) this process's memory,
Numba's on-disk cache of the module file, or a fresh compile.

On disk, each kernel is one module file named by the hash of its source,
`<cache>/<backend>/nk_<hash>.py`, written atomically (temp file +
os.replace), with an explicit signature and `cache=True`: a new process
loads the machine code in milliseconds instead of compiling it. Modules are
self-contained (Numba's cache does not notice edits to imported helpers).
The cache root is `config.cache_dir` (NEEDLE_CACHE_DIR, else
$XDG_CACHE_HOME/needle, else ~/.cache/needle), read at each load.

The cache holds code that every later process runs, so it is trusted the
way ssh trusts ~/.ssh:
- A folder is used only if it, and each folder from it up to the cache root,
  is owned by this user or root and writable by no one else. Otherwise (or
  when it cannot be created or written: read-only, full, a file in the way)
  needle warns once, naming the folder and the reason, and compiles into a
  private temporary cache (tempfile.mkdtemp, removed at exit). A read-only
  cache that holds the kernels is used as it is: loading writes nothing.
- needle creates folders 0700 and files 0600 whatever the umask (Numba's
  own files are chmod-ed after it writes them).
- A kernel module is executed from the source text needle generated, not
  imported: its folder never goes on sys.path (a `wave.py` there shadows
  nothing) and no .pyc is read (a planted timestamp .pyc never runs). Its
  code object is cached in `__pycache__/nk_<hash>.pyXY.code`, checked by
  the sha256 of the source and of the code.
- Numba's .nbi/.nbc files are pickles. They stay in the checked __pycache__
  (needle's locator comes before Numba's: never NUMBA_CACHE_DIR or Numba's
  user-wide folder). After Numba writes a CPU kernel's files, needle records
  their sha256 in `__pycache__/nk_<hash>.sha256` (one file per kernel,
  sha256sum's format, written atomically), and before loading the kernel
  deletes its Numba files unless they match. (CUDA kernels are jitted, and
  their files written, later, by cuda_runtime: the folder rule covers them.)
A damaged cache never breaks a program: a module file that differs from the
kernel's source is rewritten, Numba files that do not match their record or
fail to load are deleted and the kernel compiled again, once; the
NEEDLE_LOG_COMPILES log says so.

`fewer_full_collections()`: while kernels compile (a program's compile loop,
runtime/program.py, and each load here) the cyclic garbage collector's
full collections are ten times rarer (its oldest generation's threshold
raised; the young generations, where most of a compile's garbage dies, are
collected as usual). Numba allocates hundreds of thousands of objects per
kernel, and each full collection walked the whole heap (the traced program,
Numba's state): a Transformer's cold first call (bench_models.py, in-process
compiles) spent 3.0 s in the collector, 13 full collections; 0.7-0.9 s now,
2-3 (peak RSS 333 -> 390 MB). Nothing changes in what is compiled. (A
gc.set_threshold call inside such a block is undone when it ends.)
"""
import atexit
import contextlib
import gc
import glob
import hashlib
import importlib.util
import marshal
import os
import shutil
import stat
import sys
import tempfile
import threading
import types
import warnings

from ..ir.config import config
from . import cpu_target
from .stats import stats


class KernelCompileError(RuntimeError):
    """Numba failed to compile a generated kernel."""


_loaded = {}
_lock = threading.Lock()
_dir_lock = threading.RLock()
_chosen = {}          # (cache root, backend) -> the folder its kernels load from
_in_use = set()       # those folders: Numba's files of their modules stay beside them
_warned = set()
_private = None       # this process's private temporary cache, once one is needed
_by_workers = set()   # keys compiled into the disk cache by compile workers, not yet loaded


_gc_lock = threading.Lock()
_gc_depth = 0         # fewer_full_collections() blocks open, in every thread
_gc_saved = None      # the thresholds the outermost one replaced


@contextlib.contextmanager
def fewer_full_collections():
    """Full collections of the cyclic garbage collector ten times rarer in
    the block (its oldest generation's threshold x10; the young generations
    are collected as usual). Nested and concurrent blocks: the thresholds
    come back when the last one ends."""
    global _gc_depth, _gc_saved
    with _gc_lock:
        if _gc_depth == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(_gc_saved[0], _gc_saved[1], max(_gc_saved[2], 1) * 10)
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0:
                gc.set_threshold(*_gc_saved)


def cache_dir():
    """The configured cache root: config.cache_dir (NEEDLE_CACHE_DIR, else
    $XDG_CACHE_HOME/needle, else ~/.cache/needle; ir/config.py)."""
    return config.cache_dir


def _log(msg):
    if config.log_compiles:
        print(f"needle: kernel cache: {msg}", file=sys.stderr)


def _warn(folder, msg):
    """Once per folder: what is wrong with it, and where kernels go instead."""
    if folder not in _warned:
        _warned.add(folder)
        warnings.warn(f"needle: {msg}; compiling into a private temporary cache "
                      f"({_private_root()}, removed at exit)", RuntimeWarning)


def _why(e):
    return f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")


# --- folders -------------------------------------------------------------------------

def _makedirs(path):
    """mkdir -p, 0700 for each folder it creates (os.makedirs gives parents
    the umask's mode, and mkdir's mode is masked by the umask)."""
    if os.path.isdir(path):
        return
    _makedirs(os.path.dirname(path))
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:         # made by a racing process, or a file (found later)
        return
    os.chmod(path, 0o700)


def _distrust(path):
    """Why folder `path` must not be trusted, or None (ssh's rule)."""
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid not in (0, os.geteuid()):
        return f"{path} is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"{path} is writable by {'others' if st.st_mode & 0o002 else 'its group'} " \
               f"(mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _private_root():
    global _private
    with _dir_lock:
        if _private is None:
            _private = tempfile.mkdtemp(prefix="needle-cache-")
            atexit.register(_remove_private, _private, os.getpid())
        return _private


def _remove_private(path, pid):
    if os.getpid() == pid:          # not from a forked child
        shutil.rmtree(path, ignore_errors=True)


def _private_dir(backend):
    d = os.path.join(_private_root(), backend)
    _makedirs(os.path.join(d, "__pycache__"))
    _in_use.add(d)
    return d


def _kernel_dir(backend):
    """The folder `backend`'s kernels load from: <cache root>/<backend> if it
    can be trusted, else (with a warning) a private temporary one."""
    root = os.path.abspath(cache_dir())
    with _dir_lock:
        d = _chosen.get((root, backend))
        if d is None:
            d = os.path.join(root, backend)
            pycache = os.path.join(d, "__pycache__")
            try:
                _makedirs(pycache)
                why = next((w for w in map(_distrust, (root, d, pycache)) if w), None)
            except OSError as e:
                why = f"cannot create it ({_why(e)})"
            if why:
                _warn(d, f"not using the kernel cache {d}: {why}")
                d = _private_dir(backend)
            _in_use.add(d)
            _chosen[root, backend] = d
        return d


def kernel_folder(backend):
    """The checked folder `backend`'s kernels load from (a private temporary
    one when the cache cannot be trusted); runtime/plan_cache.py keeps its
    plans in its __pycache__."""
    return _kernel_dir(backend)


# --- files ---------------------------------------------------------------------------

def _write_atomic(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")   # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


write_atomic = _write_atomic


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _numba_files(pycache, modname):
    return glob.glob(os.path.join(glob.escape(pycache), modname + ".*.nb[ic]"))


def _record(pycache, modname):
    return os.path.join(pycache, modname + ".sha256")


def _seal(pycache, modname):
    """After Numba wrote a kernel's files: make them private and record their hashes."""
    lines = []
    for path in sorted(_numba_files(pycache, modname)):
        try:
            os.chmod(path, 0o600)
            lines.append(f"{_sha256(path)}  {os.path.basename(path)}\n")
        except FileNotFoundError:       # deleted meanwhile by another process's check
            pass
    _write_atomic(_record(pycache, modname), "".join(lines).encode())


def _purge(pycache, modname, why):
    """Delete a kernel's Numba files (and their record) so that it compiles again."""
    doomed = _numba_files(pycache, modname)
    if doomed:
        for path in doomed + [_record(pycache, modname)]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        _log(f"{modname}: {why}; deleted {', '.join(sorted(map(os.path.basename, doomed)))}, "
             f"recompiling")


def _verify(pycache, modname):
    """Delete the kernel's Numba files unless each matches needle's record: a
    damaged (or foreign) file is never unpickled."""
    try:
        with open(_record(pycache, modname), "rb") as f:
            entries = [line.split("  ", 1) for line in f.read().decode().splitlines()]
        if all(_sha256(os.path.join(pycache, name)) == digest for digest, name in entries):
            return
        why = "Numba's cache files differ from needle's record of them (damaged?)"
    except FileNotFoundError as e:
        why = ("Numba's cache files are not recorded by needle" if e.filename.endswith(".sha256")
               else f"{os.path.basename(e.filename)} is missing")
    except ValueError:                  # undecodable or malformed record
        why = "needle's record of Numba's cache files is damaged"
    _purge(pycache, modname, why)


def _ensure_source(path, source):
    try:
        with open(path, "rb") as f:
            old = f.read()
    except FileNotFoundError:
        old = None
    if old != source:
        if old is not None:
            _log(f"{os.path.basename(path)} differs from the kernel's source (damaged?); "
                 f"rewriting it")
        _write_atomic(path, source)


def _code(path, source):
    """The code object of module file `path`, whose text is `source`: from
    __pycache__/nk_<hash>.pyXY.code (Python's magic number, the sha256 of the
    source and of the marshal data, the marshal data: a damaged or stale file
    is not used), else compiled (1.4 ms for a kernel with the approximation
    helpers, a quarter of its load time) and written there."""
    folder, name = os.path.split(path)
    cpath = os.path.join(folder, "__pycache__", f"{name[:-3]}.py{sys.version_info[0]}"
                                                f"{sys.version_info[1]}.code")
    head = importlib.util.MAGIC_NUMBER + hashlib.sha256(source).digest()
    try:
        with open(cpath, "rb") as f:
            data = f.read()
    except OSError:
        data = None
    if data is not None:
        body = data[len(head) + 32:]
        if data[:len(head) + 32] == head + hashlib.sha256(body).digest():
            return marshal.loads(body)
        _log(f"{os.path.basename(cpath)} is damaged; compiling the module's source")
    code = compile(source, path, "exec", dont_inherit=True)
    body = marshal.dumps(code)
    try:
        _write_atomic(cpath, head + hashlib.sha256(body).digest() + body)
    except OSError:                     # a read-only cache: compile in each process
        pass
    return code


def _exec_module(modname, path, source):
    """Run the kernel's source as module `modname`; registered in sys.modules,
    where Numba's cache looks its globals up when it loads the machine code."""
    mod = types.ModuleType(modname)
    mod.__file__ = path
    sys.modules[modname] = mod
    try:
        exec(_code(path, source), mod.__dict__)
    except BaseException:
        sys.modules.pop(modname, None)
        raise
    return mod


def _install_locator():
    """Put needle's locator first in Numba's list: the cache files of a module
    in a needle folder go to its __pycache__, which needle checked, never to
    NUMBA_CACHE_DIR or Numba's user-wide folder; and loading them needs no
    write access (Numba's in-tree locator probes for it, so a read-only
    prebuilt cache would be skipped)."""
    import numba                    # first: importing its caching module alone is circular
    caching = numba.core.caching
    if any(getattr(c, "needle", False) for c in caching.CacheImpl._locator_classes):
        return

    class NeedleLocator(caching.InTreeCacheLocator):
        needle = True

        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.dirname(py_file) in _in_use:
                return cls(py_func, py_file)
            return None

        def ensure_cache_path(self):        # before Numba saves: no probe file
            _makedirs(self.get_cache_path())

    caching.CacheImpl._locator_classes.insert(0, NeedleLocator)


def compile_error_text(ks, path, context, error):
    """The message of a KernelCompileError (in-process or from a compile worker)."""
    return (f"Numba failed to compile the kernel for {ks.name}{context}.\n"
            f"Generated source: {path}\nReproduce with: python {path}\n"
            f"--- source ---\n{ks.source}\n--- error ---\n{error}")


def _load(ks, d, backend, context):
    """Module nk_<hash> from folder `d`. OSError: `d` cannot be written."""
    modname = f"nk_{ks.key}"
    path = os.path.join(d, modname + ".py")
    pycache = os.path.join(d, "__pycache__")
    source = ks.source.encode()
    _makedirs(pycache)              # again: someone may have deleted the cache meanwhile
    _ensure_source(path, source)
    cpu = backend == "cpu"          # CUDA kernels are jitted (and cached) by cuda_runtime
    if cpu:
        _install_locator()
        _verify(pycache, modname)
    for attempt in (1, 2):      # the second after deleting Numba's files, if loading failed
        try:
            mod = _exec_module(modname, path, source)
            break
        except OSError:
            raise
        except Exception as e:
            if attempt == 1 and _numba_files(pycache, modname):
                _purge(pycache, modname, f"loading failed ({type(e).__name__}: {e})")
                continue
            raise KernelCompileError(compile_error_text(ks, path, context, e)) from e
    if cpu and not sum(mod.kernel.stats.cache_hits.values()):
        _seal(pycache, modname)
    return mod


def import_kernel_module(ks, backend="cpu", context=""):
    """The module of `ks`, from <cache>/<backend>/nk_<hash>.py (written if
    not there), or from a private cache when that folder cannot be used."""
    if backend == "cpu":
        cpu_target.configure()
    mod = sys.modules.get(f"nk_{ks.key}")
    if mod is not None:
        return mod
    d = _kernel_dir(backend)
    try:
        return _load(ks, d, backend, context)
    except OSError as e:
        if _private and d.startswith(_private):
            raise
        _warn(d, f"cannot write to the kernel cache {d} ({_why(e)})")
        return _load(ks, _private_dir(backend), backend, context)


def cpu_kernel_folder():
    """The folder CPU kernels load from (cpu_target configured first: a
    compile worker inherits the parent's NUMBA_CPU_FEATURES)."""
    cpu_target.configure()
    return _kernel_dir("cpu")


def is_missing(ks, d):
    """True if kernel `ks` is neither loaded in this process nor in folder
    `d`'s disk cache (no recorded Numba files: it would be compiled)."""
    modname = f"nk_{ks.key}"
    if ks.key in _loaded or modname in sys.modules:
        return False
    # needle's record lists Numba's files once they are written (one stat,
    # not a listing of the folder: a warm start asks this of every kernel;
    # a record whose files are gone is found by the load, which compiles)
    try:
        return os.path.getsize(_record(os.path.join(d, "__pycache__"), modname)) == 0
    except OSError:
        return True


def compile_into(ks, d, context=""):
    """In a compile worker: compile `ks` into folder `d` (the parent's
    checked kernel folder) as a first load would, writing and sealing its
    Numba files; raises KernelCompileError as an in-process compile does."""
    cpu_target.configure()
    _in_use.add(d)
    with fewer_full_collections():
        _load(ks, d, "cpu", context)


def compiled_by_worker(key):
    """Count kernel `key`, when this process loads it, as compiled (a compile
    worker compiled it for this process), not as loaded from the cache."""
    _by_workers.add(key)


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
        with fewer_full_collections():
            fn = import_kernel_module(ks, backend, context).kernel
        if sum(fn.stats.cache_hits.values()) and key not in _by_workers:
            stats.kernels_loaded += 1
        else:
            stats.kernels_compiled += 1
        _by_workers.discard(key)
        _loaded[key] = fn
        return fn


def clear_memory_cache():
    """Forget loaded kernels (the disk cache stays); for tests."""
    _loaded.clear()
