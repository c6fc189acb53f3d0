"""Stage codegen: kernel group -> the source of one self-contained Numba
module, per backend: codegen/cpu (`numba.njit`) and codegen/cuda
(`numba.cuda.jit`), both extending the backend-neutral elemental emitter
(codegen/emitter.py, with reductions.py and roots.py). Each backend package exports
a Backend value (codegen/backend.py): its cost model, emitter, library
calls, views and tuning.

Input: ir.Graph of one kernel group. Output: KernelSource.
"""


def backend_for(device):
    """The Backend of device 'cpu' or 'cuda' (imported on first use)."""
    if device == "cpu":
        from .cpu.backend import BACKEND
        return BACKEND
    if device == "cuda":
        from .cuda.backend import BACKEND
        return BACKEND
    raise ValueError(f"no backend for device {device!r} (devices: 'cpu', 'cuda')")
