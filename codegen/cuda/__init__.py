"""Stage codegen, CUDA backend: kernel groups -> `numba.cuda` kernel source.

Input: a kernel group's sub-Graph. Output: codegen.cuda.emit.CudaKernelSource.
The CUDA emitter extends the backend-neutral one (codegen/emitter.py) and
overrides what differs.
"""
from .emit import CudaKernelSource, CudaKernelEmitter  # noqa: F401
from .strategy import emit_kernel  # noqa: F401
