"""Stage runtime (CPU): compiling a new program's kernels in worker processes.

Input: the KernelSources of a program about to be planned (with the context
naming each one's group and the user's line), from runtime/cpu_device.py's
`precompile`. Output: those missing from the disk cache compiled into it,
several at once, by worker processes; the compile loop (runtime/program.py)
then loads them from the cache as a warm start does. Nothing is returned.

Numba's compiler holds the GIL, so concurrent compiles need processes. A
worker is `python -c` importing needle.runtime (not the user's __main__: no
fork of a threaded process, no re-run of an unguarded script), started with
subprocess (fork + exec) lazily at the first cold compile with two or more
missing kernels, and kept for the process's lifetime (none at import). It
reads pickled jobs (KernelSource fields, the parent's checked kernel folder,
the context) on stdin and answers on its own pipe: "ok", or the text of the
KernelCompileError (raised in the parent with the same message as an
in-process compile), or another error (the parent compiles that kernel
itself). The worker writes the files an in-process compile writes (module,
Numba's files, needle's sha256 record): the parent's load checks them as
usual (runtime/kernel_cache.py).

How many: config.compile_workers (NEEDLE_COMPILE_WORKERS; None: the cores
this process may use, whatever NEEDLE_NUM_THREADS says: that caps the
threads a kernel runs on, while compiling is a burst of one-thread
processes; as PyTorch's compile_threads, which ignores its
set_num_threads) kernels at once, at most one per
missing kernel: this process compiles from the same list as N-1 workers (so
it starts at once, while the workers start: a program never waits for a
worker's start-up); 0 or 1 compiles in-process as before. Off for a single missing kernel, for CUDA
(its kernels are jitted later by cuda_runtime) and in a child forked after
its parent started workers (the child starts its own if it needs them).

A worker that dies (killed, out of memory) is noticed at once (end of its
pipe); one that hangs (its start-up or one kernel taking longer than
config.compile_timeout, NEEDLE_COMPILE_TIMEOUT seconds) is killed. Either
way needle warns once, naming the kernel the worker had (and the exit code
or the timeout), and the parent compiles the kernels it did not finish
in-process; the next cold compile starts a new one.
"""
import atexit
import math
import os
import pickle
import subprocess
import sys
import threading
import warnings
from types import SimpleNamespace

from ..ir.config import config
from . import kernel_cache

_workers = []                   # live Worker objects, this process's
_lock = threading.Lock()
_run_lock = threading.Lock()    # one precompile at a time talks to the workers
_pid = os.getpid()

WORKER_CODE = ("import sys; sys.path[:0] = {path!r}; "
               "from needle.runtime.compile_workers import worker_main; worker_main()")


def _after_fork_in_child():
    global _lock, _run_lock, _workers
    _lock, _run_lock = threading.Lock(), threading.Lock()
    _workers = []                   # the parent's; this child starts its own if needed


os.register_at_fork(after_in_child=_after_fork_in_child)


def worker_count():
    """How many compile workers a program with many missing kernels uses."""
    n = config.compile_workers
    if n is None:
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            n = os.cpu_count() or 1
    return n


class Worker:
    """One compile worker process and its pipes."""

    def __init__(self):
        path = [p for p in sys.path if p]
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER_CODE.format(path=path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.ready = False
        self.timed_out = None           # the timeout (s) after which a watchdog killed it

    def _expire(self, seconds):
        self.timed_out = seconds
        try:
            self.proc.kill()            # its pipe ends: the blocked read raises EOFError
        except OSError:
            pass

    def _watched(self, fn, timeout):
        """fn() with the worker killed if it takes more than `timeout` s."""
        if timeout is None or math.isinf(timeout):
            return fn()
        timer = threading.Timer(timeout, self._expire, (timeout,))
        timer.daemon = True
        timer.start()
        try:
            return fn()
        finally:
            timer.cancel()

    def wait_ready(self, timeout=None):
        """Block until the worker has imported Numba (EOFError if it died or
        took more than `timeout` seconds)."""
        if not self.ready:
            self._watched(lambda: pickle.load(self.proc.stdout), timeout)
            self.ready = True

    def compile(self, job, timeout=None):
        """('ok' | 'compile_error' | 'error', text); EOFError / OSError if it died
        or took more than `timeout` seconds (then it is killed)."""
        def call():
            pickle.dump(job, self.proc.stdin)
            self.proc.stdin.flush()
            return pickle.load(self.proc.stdout)
        return self._watched(call, timeout)

    def close(self):
        """End the worker: it exits at the end of its input (a compile under
        way finishes first; one still running after 10 s is killed)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def _close_all():
    if os.getpid() == _pid:
        for w in _workers:
            w.close()


atexit.register(_close_all)


def _take_workers(n):
    """n workers for one precompile (started if fewer are alive)."""
    with _lock:
        alive = [w for w in _workers if w.proc.poll() is None]
        while len(alive) < n:
            alive.append(Worker())
        _workers[:] = alive
        return alive[:n]


def precompile(jobs):
    """Compile the kernels of `jobs` [(KernelSource, context)] that the disk
    cache lacks, in worker processes and in this one (which loads those it
    compiled); raise KernelCompileError for the first
    (in program order) that fails to compile. A no-op where it cannot help."""
    n = worker_count()
    if n <= 1:
        return
    with _run_lock:             # (another thread's precompile may compile some of ours)
        _precompile(jobs, n)


def _precompile(jobs, n):
    d = kernel_cache.cpu_kernel_folder()
    todo, seen = [], set()
    for ks, ctx in jobs:
        if ks.key not in seen and kernel_cache.is_missing(ks, d):
            seen.add(ks.key)
            todo.append((ks, ctx))
    if len(todo) < 2:
        return
    # the largest first (source length: a proxy for compile time), so that
    # the last to finish are short and no one waits long at the end
    order = sorted(range(len(todo)), key=lambda i: -len(todo[i][0].source))
    workers = _take_workers(min(n, len(todo)) - 1)
    results = [None] * len(todo)
    nxt = iter(order)
    take = threading.Lock()
    died = []                       # (worker, index of the kernel it had, or None)
    timeout = config.compile_timeout

    def feed(w):
        try:
            w.wait_ready(timeout)   # meanwhile this process compiles the first kernels
        except (EOFError, OSError, pickle.UnpicklingError):
            died.append((w, None))
            return
        while True:
            with take:
                i = next(nxt, None)
            if i is None:
                return
            ks, ctx = todo[i]
            try:
                results[i] = w.compile((ks.key, ks.name, ks.source, d, ctx), timeout)
            except (EOFError, OSError, pickle.UnpicklingError):
                died.append((w, i))
                return              # this kernel (and any left) compile in-process
            if w.timed_out is not None:     # killed just as it answered: use no more
                died.append((w, i))
                return

    threads = [threading.Thread(target=feed, args=(w,), daemon=True,
                                name=f"needle-compile-feed-{k}") for k, w in enumerate(workers)]
    for t in threads:
        t.start()
    while True:                     # this process compiles too, from the same list
        with take:
            i = next(nxt, None)
        if i is None:
            break
        ks, ctx = todo[i]
        try:
            kernel_cache.import_kernel_module(ks, "cpu", context=ctx)
            results[i] = ("loaded", "")
        except kernel_cache.KernelCompileError as e:
            results[i] = ("compile_error", e)
    for t in threads:
        t.join()
    if died:
        warnings.warn(_died_message(died, todo), RuntimeWarning, stacklevel=2)
    for (ks, _), r in zip(todo, results):
        if r is None:
            continue
        kind, text = r
        if kind == "loaded":
            continue
        if kind == "ok":
            kernel_cache.compiled_by_worker(ks.key)
        elif kind == "compile_error":
            if isinstance(text, BaseException):
                raise text
            raise kernel_cache.KernelCompileError(text)
        else:
            kernel_cache._log(f"nk_{ks.key}: the compile worker failed ({text}); "
                              f"compiling in this process")


def _died_message(died, todo):
    """One warning's text for the workers of one precompile that died or hung."""
    parts = []
    for w, i in died:
        what = "while starting" if i is None else \
            f"while compiling kernel nk_{todo[i][0].key}{todo[i][1]}"
        if w.timed_out is not None:
            parts.append(f"timed out after {w.timed_out:g} s {what} and was killed "
                         f"(NEEDLE_COMPILE_TIMEOUT)")
        else:
            parts.append(f"died (exit code {w.proc.wait()}) {what}")
    return (f"needle: {len(died)} kernel compile worker(s) failed: " + "; ".join(parts) +
            ". Compiling their kernels in this process")


def _warm_up(x):
    return x + 1


def worker_main():
    """A compile worker's loop: jobs on stdin, answers on the original stdout
    (anything a compile prints goes to stderr)."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    from . import prewarm
    prewarm._run()                  # Numba and its CPU target's modules, and its one-time
    import numba                    # first-compile set-up, before "ready": the parent
    numba.njit("int64(int64)")(_warm_up)    # compiles meanwhile
    pickle.dump("ready", out)
    out.flush()
    while True:
        try:
            key, name, source, d, ctx = pickle.load(inp)
        except EOFError:
            return
        ks = SimpleNamespace(key=key, name=name, source=source)
        try:
            kernel_cache.compile_into(ks, d, ctx)
            r = ("ok", "")
        except kernel_cache.KernelCompileError as e:
            r = ("compile_error", str(e))
        except Exception as e:          # noqa: BLE001 - the parent compiles it itself
            r = ("error", f"{type(e).__name__}: {e}")
        pickle.dump(r, out)
        out.flush()
