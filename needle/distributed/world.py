"""The public package: needle.distributed's MPI world: who this process is
among the ranks `mpiexec` started, and what happens when one of them fails.

Input: the environment a launcher sets (`mpiexec -n 2 python train.py`: the
PMI / PMIx / Open MPI variables) and, when present, mpi4py. Output: `init()`,
`rank()`, `world_size()`, `local_rank()`, `is_main()`, `barrier()`, `comm()`
(the mpi4py communicator, None on a single rank) and `info()` (which MPI, which
path device arrays take).

Without a launcher, or without mpi4py, `init()` is a no-op and the process is
rank 0 of 1: every collective returns its input, so one script runs both ways,
and `import needle` never imports mpi4py (it is imported here, on the first
call). Every other function calls `init()` itself; calling it first, early,
installs the fault handler sooner.

Faults: `init()` wraps `sys.excepthook`: an uncaught exception on any rank
prints its traceback, then a line naming the rank, and calls `MPI_Abort`,
which makes `mpiexec` end every other rank within seconds, rather than leave
them waiting forever in a collective the failed rank will never join. It
also wraps `sys.exit`: a rank leaving with a failure status (`sys.exit(2)`,
argparse's errors) aborts the job the same way at exit.

Devices: on a machine with CUDA GPUs each rank selects GPU
`local_rank() % n_gpus` (local_rank: the rank among the ranks on the same
host; on one host it is the rank), before needle makes a CUDA context.
"""
import os
import sys
import warnings

__all__ = ["init", "rank", "world_size", "local_rank", "is_main", "barrier", "comm", "info",
           "launched_by_mpi"]

# Variables a launcher sets in each rank's environment: MPICH / Intel MPI (PMI),
# PMIx (MPICH with PMIx, Open MPI 5, Slurm), Open MPI, MVAPICH.
_LAUNCHER_VARS = ("PMI_SIZE", "PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE",
                  "MV2_COMM_WORLD_SIZE")


class _World:
    initialized = False
    comm = None            # mpi4py COMM_WORLD, or None on a single rank
    MPI = None             # the mpi4py.MPI module
    rank, size, local_rank = 0, 1, 0
    cuda_aware = False
    gpu = None             # the CUDA device index this rank selected, or None
    exit_status = None     # what this rank passed to sys.exit
    why_single = ""


W = _World()


def launched_by_mpi():
    """Whether a launcher (mpiexec, mpirun, srun) started this process."""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def init():
    """Join the MPI world (idempotent). Returns (rank, world_size)."""
    if W.initialized:
        return W.rank, W.size
    W.initialized = True
    if not launched_by_mpi():
        W.why_single = "not started by mpiexec"
        return W.rank, W.size
    try:
        from mpi4py import MPI
    except ImportError:
        n = os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE") or "?"
        W.why_single = "mpi4py is not installed"
        warnings.warn(f"needle.distributed: started by mpiexec ({n} ranks) but mpi4py is not "
                      f"installed, so every rank trains alone as rank 0 of 1; install it with "
                      f"pip install -e \".[distributed]\"", RuntimeWarning, stacklevel=2)
        return W.rank, W.size
    W.MPI, W.comm = MPI, MPI.COMM_WORLD
    W.rank, W.size = W.comm.Get_rank(), W.comm.Get_size()
    try:
        W.local_rank = W.comm.Split_type(MPI.COMM_TYPE_SHARED, key=W.rank).Get_rank()
    except Exception:                     # pragma: no cover (an MPI without shared-memory split)
        W.local_rank = W.rank
    W.cuda_aware = _query_cuda_aware()
    _install_abort_hook()
    _select_gpu()
    return W.rank, W.size


def rank():
    """This process's rank, 0 .. world_size() - 1."""
    init()
    return W.rank


def world_size():
    """The number of ranks (1 without mpiexec)."""
    init()
    return W.size


def local_rank():
    """The rank among the ranks on this host."""
    init()
    return W.local_rank


def is_main():
    """True on rank 0 (the rank that logs and writes checkpoints)."""
    return rank() == 0


def barrier():
    """Wait until every rank has called barrier()."""
    init()
    if W.comm is not None and W.size > 1:
        W.comm.Barrier()


def comm():
    """The mpi4py communicator of all ranks (MPI.COMM_WORLD), or None on a single rank."""
    init()
    return W.comm


def info():
    """A dict describing the world: rank, size, local_rank, the MPI library,
    whether it is CUDA-aware, the GPU this rank selected and the path device
    arrays take through collectives."""
    init()
    lib = None
    if W.MPI is not None:
        lib = W.MPI.Get_library_version().splitlines()[0].strip()
    return {"rank": W.rank, "world_size": W.size, "local_rank": W.local_rank,
            "mpi": lib, "single_rank_because": W.why_single or None,
            "cuda_aware_mpi": W.cuda_aware, "gpu": W.gpu,
            "device_arrays": "staged through host memory (numpy) around each MPI call"
            + (" (the MPI library is CUDA-aware, but needle does not hand it device "
               "pointers yet)" if W.cuda_aware else " (the MPI library is not CUDA-aware)")}


# --- faults -----------------------------------------------------------------------

def _install_abort_hook():
    if W.size < 2 or getattr(sys.excepthook, "_needle_abort", False):
        return
    previous = sys.excepthook
    _install_exit_hook()

    def hook(exc_type, exc, tb):
        try:
            previous(exc_type, exc, tb)
            sys.stderr.write(f"needle.distributed: rank {W.rank} of {W.size} raised "
                             f"{exc_type.__name__}: {exc}; calling MPI_Abort so that every "
                             f"rank ends instead of waiting for this one\n")
            sys.stderr.flush()
            sys.stdout.flush()
        finally:
            W.comm.Abort(1)
    hook._needle_abort = True
    sys.excepthook = hook


def _install_exit_hook():
    """sys.exit(status) with a failure status on one rank (argparse's
    errors, a script's own checks) would leave the other ranks waiting
    too: remember the status, and at exit abort the job if it is one."""
    import atexit
    real_exit = sys.exit

    def exit(status=None):               # noqa: A001 - replaces sys.exit
        W.exit_status = status
        real_exit(status)
    exit._needle_abort = True
    sys.exit = exit

    def abort_on_failure():
        status = W.exit_status
        if status is None or status == 0:
            return
        sys.stderr.write(f"needle.distributed: rank {W.rank} of {W.size} exited with "
                         f"sys.exit({status!r}); calling MPI_Abort so that every rank ends "
                         f"instead of waiting for this one\n")
        sys.stderr.flush()
        W.comm.Abort(status if isinstance(status, int) else 1)
    atexit.register(abort_on_failure)     # runs before mpi4py's MPI_Finalize


# --- devices ----------------------------------------------------------------------

def _query_cuda_aware():
    """MPIX_Query_cuda_support() of the loaded MPI library (MPICH, Open MPI);
    False where the library has no such extension."""
    import ctypes
    import re
    try:
        with open("/proc/self/maps") as f:
            paths = sorted(set(re.findall(r"(/\S*libmpi\S*\.so[\d.]*)", f.read())))
    except OSError:                        # pragma: no cover (not Linux)
        return False
    for p in paths:
        try:
            fn = getattr(ctypes.CDLL(p), "MPIX_Query_cuda_support")
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_int
        return bool(fn())
    return False


def _select_gpu():
    import importlib.util
    if importlib.util.find_spec("numba_cuda") is None:
        return
    try:
        from numba.core import config
        if config.ENABLE_CUDASIM:
            return
        from numba import cuda
        if not cuda.is_available():
            return
        n = len(cuda.gpus)
        if n:
            W.gpu = W.local_rank % n
            cuda.select_device(W.gpu)
    except Exception as e:                 # pragma: no cover (a broken CUDA install)
        warnings.warn(f"needle.distributed: rank {W.rank} could not select a GPU: {e}",
                      RuntimeWarning, stacklevel=3)
