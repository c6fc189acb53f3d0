"""Stage codegen, CUDA backend: kernel groups -> `numba.cuda` kernel source.

Input: a kernel group's sub-Graph. Output: codegen.cuda.emit.CudaKernelSource.
The CUDA emitter extends the CPU one (codegen/cpu) and overrides what differs.
"""
from .emit import CudaKernelSource, CudaKernelEmitter, emit_kernel  # noqa: F401
