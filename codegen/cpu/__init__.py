"""Stage codegen, CPU backend: kernel groups -> Numba (`numba.njit`) source.

Input: a kernel group's sub-Graph. Output: codegen.cpu.emit.KernelSource.
"""
from .emit import KernelSource, emit_kernel  # noqa: F401
