"""Stage runtime: kernel cache (memory + disk), compilation of graphs into
executables, launches, devices, stage dumps and the cache counters.

Input: ir.ClosedGraph after the fusion pass and its codegen Backend.
Output: through the one compile loop (program.compile_program) and a device
(cpu_device; cuda_runtime, with device arrays in cuda_array, the
device pool in cuda_memory, PTX and ptxas reports in cuda_inspect; all of
them import numba.cuda only when used); loops and branches (scan, while,
cond) run as control steps over their bodies' compiled plans (loops, with
cuda_loops on CUDA), the one Executable (executable) running them all.
"""
from . import parallel  # noqa: F401
from . import prewarm  # noqa: F401
from .program import compile_program  # noqa: F401
from .devices import devices, resolve_device  # noqa: F401
from .dump import dump_stages  # noqa: F401
from .kernel_cache import KernelCompileError, cache_dir, clear_memory_cache  # noqa: F401
from .stats import cache_info, reset_cache_info, stats  # noqa: F401
