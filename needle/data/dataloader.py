"""The public package `needle.data`: `DataLoader`, which turns a Dataset
into minibatches of Tensors, and the samplers that order it.

Input: a Dataset (`__getitem__`, `__len__`), a batch size, an order
(sequential, shuffled, or a sampler), optionally worker processes.
Output: an iterable; each pass (an epoch) yields batches, by default a
tuple of `needle.Tensor`s (requires_grad=False; float data as float32,
the course's default), which `needle.jit` takes as array arguments.

Order and seeding. The loader has an integer `seed`: the one given, or,
with `seed=None`, one drawn from needle.random's global generator when the
loader is made (`needle.random.seed(n)` first reproduces a run). Epoch e
(the e-th `iter(loader)`, from 0) with `shuffle=True` visits a fresh
permutation seeded from (seed, e); the transforms of batch b of epoch e
draw from a numpy Generator seeded from (seed, e, b) (transforms.py). The
batches therefore do not depend on `num_workers` or `prefetch`.

The sampler protocol (`sampler=`, e.g. a DistributedSampler): any object
with `__iter__` yielding int indices into the dataset and `__len__`; if it
has `set_epoch(epoch)` the loader calls it at the start of every epoch
with the epoch number (0, 1, ...), before iterating it. `sampler` with
`shuffle=True` is an error (as in PyTorch): the sampler decides the order.

Loading. `num_workers=0, prefetch=0`: batches load in the caller's thread
when asked for. `num_workers=0, prefetch=k > 0` (the default, k=2): a
background thread loads up to k batches ahead, overlapping loading with
the training step, except where a batch is one fancy index of arrays in
memory (a `batched_getitem` dataset without transforms, default
collation: NDArrayDataset, MNISTDataset, CIFAR10Dataset), which loads in
the caller's thread: handing a batch over from a thread costs more than
that (benchmarks/bench_data.py). `num_workers=n > 0`: n worker processes, forked when
an epoch starts and stopped when it ends (or the iteration is dropped);
batch b goes to worker b % n, up to `prefetch` batches in flight per
worker (at least one), and batches come back in order. Workers are forked
(they inherit the dataset and the transforms, lambdas included); needle's
fork handlers make a forked child safe to run needle kernels (it runs
every kernel on its own thread: README "Fork safety"), so a transform
may call jitted functions. A worker's exception is raised in the caller
with the worker's traceback attached; a worker that dies is reported with
its exit code, never waited on forever.

Collation: with `collate_fn=None`, samples that are tuples (or lists)
become a tuple of stacked arrays, one per field; a dict sample a dict; a
single array a 1-tuple; then each array becomes a Tensor. A dataset with
`batched_getitem` (NDArrayDataset, MNISTDataset, CIFAR10Dataset) is
indexed once per batch with the index array instead. A `collate_fn` gets
the list of samples and its result is yielded as it is.
"""
import collections
import os
import queue
import signal
import threading
import traceback

import numpy as np

from ..runtime import prewarm
from ..tensor import Tensor
from .transforms import batch_random, key_entropy

__all__ = ["DataLoader", "SequentialSampler", "RandomSampler", "default_collate"]

_SHUFFLE, _TRANSFORMS = 0, 1        # tags keeping the two seed streams apart


def _global_seed():
    from .. import random as nrandom
    k0, k1 = key_entropy(nrandom.next_key())
    return (k0 << 32) | k1


def _seed(name, seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name}: seed must be None or an int, got {seed!r}")
    return int(seed) & (2 ** 64 - 1)          # numpy seeds are non-negative


class SequentialSampler:
    """Indices 0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler:
    """A permutation of range(len(data_source)), a new one each epoch:
    epoch e's is seeded from (seed, e). `seed=None` draws one from
    needle.random's global generator."""

    def __init__(self, data_source, seed=None):
        self.data_source = data_source
        self.seed = _global_seed() if seed is None else _seed("RandomSampler", seed)
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch, _SHUFFLE))
        return iter(rng.permutation(len(self.data_source)).tolist())

    def __len__(self):
        return len(self.data_source)


# --- collation ---------------------------------------------------------------------------

def _stack(field, values):
    try:
        return np.stack([np.asarray(v) for v in values])
    except ValueError as e:
        shapes = sorted({np.shape(v) for v in values})
        raise ValueError(f"DataLoader: cannot batch field {field!r}: the samples' shapes "
                         f"differ ({', '.join(map(str, shapes[:4]))}); pass a collate_fn") \
            from e


def default_collate(samples):
    """Stack a list of samples field by field into numpy arrays: tuple (or
    list) samples give a tuple, dict samples a dict, array samples a
    1-tuple."""
    first = samples[0]
    if isinstance(first, (tuple, list)):
        n = len(first)
        for s in samples:
            if not isinstance(s, (tuple, list)) or len(s) != n:
                raise ValueError(f"DataLoader: samples have different numbers of fields "
                                 f"({n} and {len(s) if isinstance(s, (tuple, list)) else 1})")
        return tuple(_stack(k, [s[k] for s in samples]) for k in range(n))
    if isinstance(first, dict):
        return {k: _stack(k, [s[k] for s in samples]) for k in first}
    return (_stack(0, samples),)


def _as_tensor(a):
    a = np.asarray(a)
    if a.dtype.kind == "f" and a.dtype != np.float32:
        a = a.astype(np.float32)
    elif not (a.flags.owndata and a.flags.c_contiguous and a.flags.writeable):
        a = np.array(a)                 # the Tensor owns its buffer (a view, read-only data)
    return Tensor._make(a, requires_grad=False)


def _to_tensors(batch):
    if isinstance(batch, dict):
        return {k: _as_tensor(v) for k, v in batch.items()}
    return tuple(_as_tensor(v) for v in batch)


def _load(dataset, collate_fn, indices, entropy):
    """One batch as numpy arrays (default collation) or collate_fn's result."""
    with batch_random(entropy):
        if collate_fn is None and getattr(dataset, "batched_getitem", False):
            out = dataset[np.asarray(indices, dtype=np.int64)]
            return tuple(out) if isinstance(out, (tuple, list)) else (out,)
        samples = [dataset[i] for i in indices]
        return (collate_fn or default_collate)(samples)


# --- worker processes -----------------------------------------------------------------------

def _worker_main(wid, dataset, collate_fn, tasks, results, inherited):
    """A worker's loop: batches from its task queue, each result sent down
    its own pipe (a synchronous send: a worker that dies has delivered
    every batch it finished). Ctrl-C is the parent's to handle; a worker
    whose parent is gone exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for conn in inherited:          # the parent's read ends: a closed one must mean EPIPE
        conn.close()
    parent = os.getppid()
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        if task is None:
            return
        b, indices, entropy = task
        try:
            try:
                out = _load(dataset, collate_fn, indices, entropy)
                results.send((b, "ok", out))
            except (BrokenPipeError, EOFError):
                raise
            except BaseException as e:     # noqa: BLE001 - reported to the parent
                text = traceback.format_exc()
                try:
                    results.send((b, "err", (e, text)))
                except (BrokenPipeError, EOFError):
                    raise
                except Exception:          # noqa: BLE001 - the exception does not pickle
                    results.send((b, "err", (RuntimeError(f"{type(e).__name__}: {e}"), text)))
        except (BrokenPipeError, EOFError):    # the parent closed the epoch
            return


class _Workers:
    """n forked worker processes, each with a task queue and a result pipe.
    A worker handles its batches in order, so the next result on worker
    w's pipe is its oldest batch still pending."""

    def __init__(self, loader):
        # Let needle's prewarm thread finish before forking, not inside the fork
        # hooks: the modules it imports there (logging) register at-fork hooks
        # mid-fork, whose parent half then runs without its first half.
        prewarm.wait()
        import multiprocessing as mp        # here: `import needle` does not pay for it
        ctx = mp.get_context("fork")
        self.n = loader.num_workers
        self.tasks = [ctx.Queue() for _ in range(self.n)]
        self.pipes, self.procs = [], []
        for w in range(self.n):
            reader, writer = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_worker_main, name=f"needle-data-worker-{w}", daemon=True,
                            args=(w, loader.dataset, loader.collate_fn, self.tasks[w], writer,
                                  self.pipes + [reader]))
            p.start()
            writer.close()              # the worker holds the only writer: EOF when it dies
            self.pipes.append(reader)
            self.procs.append(p)

    def submit(self, b, indices, entropy):
        self.tasks[b % self.n].put((b, indices, entropy))

    def _dead(self, w, b):
        p = self.procs[w]
        p.join(timeout=1.0)
        return RuntimeError(f"DataLoader: worker {w} (pid {p.pid}) exited unexpectedly with "
                            f"exit code {p.exitcode} while loading batch {b}")

    def result(self, b):
        """Batch b's arrays (or collate_fn's result); a worker's exception is
        raised here with its traceback attached."""
        w = b % self.n
        pipe, p = self.pipes[w], self.procs[w]
        while not pipe.poll(0.5):
            if not p.is_alive() and not pipe.poll(0):
                raise self._dead(w, b)
        try:
            got, kind, value = pipe.recv()
        except EOFError:
            raise self._dead(w, b) from None
        assert got == b, (got, b)
        if kind == "err":
            e, text = value
            if hasattr(e, "add_note"):
                e.add_note(f"(raised in DataLoader worker {w} loading batch {b}; "
                           f"its traceback:)\n{text}")
            raise e
        return value

    def close(self):
        for q in self.tasks:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        for pipe in self.pipes:         # a worker still sending gets BrokenPipeError, exits
            pipe.close()
        for p in self.procs:
            p.join(timeout=1.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=1.0)
        for q in self.tasks:
            q.cancel_join_thread()
            q.close()


def _iter_workers(loader, tasks):
    per_worker = max(1, loader.prefetch)
    workers = _Workers(loader)
    try:
        pending = collections.deque()
        for t in tasks:
            workers.submit(*t)
            pending.append(t[0])
            if len(pending) >= per_worker * workers.n:
                break
        while pending:
            b = pending.popleft()
            out = workers.result(b)
            nxt = next(tasks, None)
            if nxt is not None:
                workers.submit(*nxt)
                pending.append(nxt[0])
            yield out
    finally:
        workers.close()


# --- a prefetch thread -------------------------------------------------------------------------

def _iter_thread(loader, tasks):
    q = queue.Queue(maxsize=loader.prefetch)
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def run():
        try:
            for b, indices, entropy in tasks:
                if not put(("ok", _load(loader.dataset, loader.collate_fn, indices, entropy))):
                    return
            put(("end", None))
        except BaseException as e:     # noqa: BLE001 - raised in the caller
            put(("err", e))

    th = threading.Thread(target=run, name="needle-data-prefetch", daemon=True)
    th.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "err":
                raise value
            yield value
    finally:
        stop.set()
        th.join()


# --- the loader -------------------------------------------------------------------------------

class DataLoader:
    """Minibatches of a Dataset (see the module docstring for the order,
    the sampler protocol, workers and collation).

    `DataLoader(dataset, batch_size=1, shuffle=False, drop_last=False,
    sampler=None, collate_fn=None, num_workers=0, prefetch=2, seed=None)`.
    `len(loader)` is the number of batches per epoch; `loader.epoch` the
    number of epochs started."""

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, sampler=None,
                 collate_fn=None, num_workers=0, prefetch=2, seed=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        for name, v in (("num_workers", num_workers), ("prefetch", prefetch)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"DataLoader: {name} must be an int >= 0, got {v!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler is mutually exclusive with shuffle=True "
                             "(the sampler decides the order)")
        if sampler is not None:
            missing = [a for a in ("__iter__", "__len__") if not hasattr(sampler, a)]
            if missing:
                raise TypeError(f"DataLoader: sampler {type(sampler).__name__} has no "
                                f"{' or '.join(missing)} (a sampler yields int indices and has "
                                f"a length)")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"DataLoader: collate_fn must be callable, got {collate_fn!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn
        self.num_workers = int(num_workers)
        self.prefetch = int(prefetch)
        self.seed = _global_seed() if seed is None else _seed("DataLoader", seed)
        if sampler is None:
            sampler = RandomSampler(dataset, self.seed) if shuffle else SequentialSampler(dataset)
        self.sampler = sampler
        self.epoch = 0

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _batches(self):
        """The index lists of this epoch's batches."""
        order = [int(i) for i in self.sampler]
        bs = self.batch_size
        stop = len(order) - len(order) % bs if self.drop_last else len(order)
        return [order[i:i + bs] for i in range(0, stop, bs)]

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        batches = self._batches()
        tasks = ((b, idx, (self.seed, epoch, _TRANSFORMS, b)) for b, idx in enumerate(batches))
        if self.num_workers > 0 and batches:
            raw = _iter_workers(self, tasks)
        elif self.prefetch > 0 and not self._in_memory():
            raw = _iter_thread(self, tasks)
        else:
            raw = (_load(self.dataset, self.collate_fn, idx, ent) for _, idx, ent in tasks)
        return self._wrap(raw) if self.collate_fn is None else raw

    def _in_memory(self):
        """Batches that are one fancy index of arrays in memory (a batched
        dataset, no transforms, default collation): loading costs
        microseconds, less than handing a batch over from a thread."""
        return self.collate_fn is None and getattr(self.dataset, "batched_getitem", False) \
            and getattr(self.dataset, "transforms", None) is None

    @staticmethod
    def _wrap(raw):
        try:
            for batch in raw:
                yield _to_tensors(batch)
        finally:
            raw.close()

    def __repr__(self):
        return (f"DataLoader({type(self.dataset).__name__} of {len(self.dataset)}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, num_workers={self.num_workers}, "
                f"prefetch={self.prefetch}, seed={self.seed})")
