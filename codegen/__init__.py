"""Stage codegen: kernel group -> the source of one self-contained Numba
module, per backend (cpu now; cuda extends it later).

Input: ir.Graph of one kernel group. Output: KernelSource.
"""
