"""needle.distributed: data-parallel training across processes and machines
on MPI (mpi4py over an MPI installed from its wheel: `pip install -e
".[distributed]"`, then `mpiexec -n 2 python train.py`).

Input: one Python process per rank, started by mpiexec, each holding the
same model. Output: the world (`init`, `rank`, `world_size`, `local_rank`,
`is_main`, `barrier`, `info`: world.py), collectives over pytrees in a few
bucketed MPI calls (`all_reduce`, `broadcast`, `all_gather`:
collectives.py, buckets.py), each rank's shard of a data set
(`DistributedSampler`: sampler.py), an optimizer that averages gradients
before its step (`DistributedOptimizer`: optimizer.py), batch norm with
global moments (`SyncBatchNorm`, also `needle.nn.SyncBatchNorm`:
sync_batchnorm.py), and rank-0-only logging and checkpoints (`log`,
`main_only`, `save_checkpoint`: main_rank.py).

Without mpiexec (or without mpi4py) the process is rank 0 of 1 and every
collective returns its input, so the same script runs alone. mpi4py is
imported by `init()`, never by `import needle`.
"""
from .world import (barrier, comm, info, init, is_main, launched_by_mpi,  # noqa: F401
                    local_rank, rank, world_size)
from .collectives import BroadcastMismatchError, all_gather, all_reduce, broadcast  # noqa: F401
from .sampler import DistributedSampler  # noqa: F401
from .optimizer import DistributedOptimizer  # noqa: F401
from .sync_batchnorm import SyncBatchNorm  # noqa: F401
from .main_rank import log, main_only, save_checkpoint  # noqa: F401
