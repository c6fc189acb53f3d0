"""Stage runtime: kernel cache (memory + disk), compilation of graphs into
executables, launches, devices, stage dumps and the cache counters.

Input: ir.ClosedGraph after the passes. Output: runtime.Executable (CPU), or
runtime.cuda_runtime.CudaExecutable (CUDA: device arrays in cuda_array, the
device pool in cuda_memory, PTX and ptxas reports in cuda_inspect; all of
them import numba.cuda only when used).
"""
from . import parallel  # noqa: F401  (sets OMP_WAIT_POLICY before numba loads)
from . import prewarm  # noqa: F401
from .compile import compile_executable  # noqa: F401
from .devices import devices, resolve_device  # noqa: F401
from .dump import dump_stages  # noqa: F401
from .kernel_cache import KernelCompileError, cache_dir, clear_memory_cache  # noqa: F401
from .stats import cache_info, reset_cache_info, stats  # noqa: F401
