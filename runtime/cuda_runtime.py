"""Stage runtime (CUDA, first step): run an optimised program on the CUDA
backend: in Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) on machines
without a GPU, on the device where one is attached.

Input: a ClosedGraph after the pass pipeline (as `compile_executable` takes).
Output: a CudaProgram. Calling it with numpy arrays copies them to the
device, runs the steps (one kernel launch per group entry point, reshapes as
device views) and copies the results back as numpy arrays.

The graph is partitioned for "cuda" (dot_general is a kernel there, not a
library call), each group is emitted by codegen/cuda, written to the kernel
cache folder `<NEEDLE_CACHE_DIR>/cuda/` and imported; its plain Python
kernel functions are wrapped with `cuda.jit`: lazily in the simulator, with
the module's explicit signature and `cache=True` on a GPU.

Not wired into `needle.jit(device="cuda")` yet (runtime/devices.py refuses
"cuda"): device-resident results as a needle array type, a buffer pool, the
launch configuration from the device's properties and loading cached CUDA
binaries come with the rest of the CUDA issue.
"""
import numpy as np

from ..codegen.cuda import emit_kernel
from ..ir.core import Lit
from ..passes.fusion import is_view, partition
from .kernel_cache import import_kernel_module

THREADS_PER_BLOCK = 128
MAX_BLOCKS = 1024

_jitted = {}                            # source hash -> launchable kernels


def _dev_shape(shape):
    """The device shape of an array: a 0-d array is a 1-element vector (as
    codegen/cuda passes it)."""
    return tuple(shape) or (1,)


def _to_device(x):
    from numba import cuda
    return cuda.to_device(np.ascontiguousarray(x.reshape(_dev_shape(x.shape))))


def launch_config(n, threads_per_block=None, max_blocks=None):
    """(blocks, threads) for `n` work items: grid-stride kernels accept any
    grid, so the grid is capped and small launches use a multiple of a warp."""
    tpb = threads_per_block or THREADS_PER_BLOCK
    threads = min(tpb, 32 * -(-n // 32))
    return max(1, min(-(-n // threads), max_blocks or MAX_BLOCKS)), threads


def load_cuda_kernels(ks, context=""):
    """The launchable kernels of CudaKernelSource `ks`, in launch order."""
    fns = _jitted.get(ks.key)
    if fns is None:
        from numba import config, cuda
        mod = import_kernel_module(ks, "cuda", context)
        if config.ENABLE_CUDASIM:
            wrap = cuda.jit
        else:                           # pragma: no cover (needs a GPU)
            wrap = cuda.jit(mod.SIGNATURE, cache=True)
        fns = _jitted[ks.key] = [wrap(getattr(mod, name)) for name in mod.ENTRIES]
    return fns


class CudaProgram:
    """A compiled program for the CUDA backend: `program(*arrays)` -> list of
    numpy results. `to_device` and `run` split that in two (device arrays in,
    device arrays out: what a benchmark times). `fused` is the partitioned
    graph, `kernels` the (group name, CudaKernelSource) of every kernel, in
    launch order."""

    def __init__(self, name, fused, kernels, steps, n_slots, const_slots, in_slots, outs):
        self.name, self.fused, self.kernels = name, fused, kernels
        self._steps, self._n_slots = steps, n_slots
        self._const_slots, self._in_slots, self._outs = const_slots, in_slots, outs
        self._avals = [v.aval for v in fused.graph.invars]
        self._consts = None

    def __call__(self, *args):
        results = self.run(*self.to_device(*args))
        return [r if isinstance(r, np.ndarray) else r.copy_to_host().reshape(shape)
                for r, (_, _, shape) in zip(results, self._outs)]

    def to_device(self, *args):
        """The arguments as device arrays (0-d arrays as 1-element vectors)."""
        if len(args) != len(self._in_slots):
            raise TypeError(f"{self.name} takes {len(self._in_slots)} arrays, got {len(args)}")
        out = []
        for aval, x in zip(self._avals, args):
            x = np.asarray(x, dtype=aval.dtype)
            if x.shape != aval.shape:
                raise TypeError(f"{self.name}: argument of shape {x.shape}, expected {aval.shape}")
            out.append(_to_device(x))
        return out

    def run(self, *dev_args):
        """Launch every step on device arrays; the results stay on the device
        (a result that is a literal comes back as a numpy array)."""
        env = [None] * self._n_slots
        if self._consts is None:
            self._consts = [_to_device(np.asarray(c)) for c in self.fused.consts]
        for slot, c in zip(self._const_slots, self._consts):
            env[slot] = c
        for slot, x in zip(self._in_slots, dev_args):
            env[slot] = x
        for step in self._steps:
            step(env)
        return [np.array(val) if kind == "value" else env[val] for kind, val, _ in self._outs]

    def kernels_text(self):
        return "\n".join(f"# ---- kernel {gname} (nk_{ks.key}.py) ----\n{ks.source}"
                         for gname, ks in self.kernels) or "# no kernels"


def _kernel_step(ks, fns, ins, outs, specs):
    def run(env):
        from numba import cuda
        results = [cuda.device_array(_dev_shape(shape), dtype) for shape, dtype in specs]
        args = [env[i] for i in ins] + results + [int(d) for d in ks.dims]
        for k, fn in enumerate(fns):
            n = ks.work_items(k)
            if n:
                blocks, threads = launch_config(n)
                fn[blocks, threads](*args)
        for slot, r in zip(outs, results):
            env[slot] = r
    return run


def _view_step(src, out, shape):
    def run(env):
        if isinstance(src, Lit):
            from numba import cuda
            env[out] = _to_device(np.reshape(np.asarray(src.val, src.aval.dtype), shape))
        else:
            env[out] = env[src].reshape(_dev_shape(shape))
    return run


def compile_cuda(cg, name="f"):
    """A CudaProgram running the optimised ClosedGraph `cg` on the CUDA backend."""
    fused = partition(cg, "cuda")
    g = fused.graph
    slots = {}
    for v in g.constvars + g.invars:
        slots.setdefault(v, len(slots))
    steps, kernels = [], []
    for e in g.eqns:
        for v in e.outs:
            slots[v] = len(slots)
        if e.prim.name == "kernel":
            ks = emit_kernel(e.params["graph"], "kernel")
            fns = load_cuda_kernels(ks, context=f" (group {e.params['name']} of {name}, "
                                                f"from {e.source})")
            if any(isinstance(x, Lit) for x in e.inputs):
                raise AssertionError("kernel group inputs must be variables")
            steps.append(_kernel_step(ks, fns, [slots[x] for x in e.inputs],
                                      [slots[v] for v in e.outs],
                                      [(v.aval.shape, v.aval.dtype) for v in e.outs]))
            kernels.append((e.params["name"], ks))
        elif is_view(e):
            x = e.inputs[0]
            steps.append(_view_step(x if isinstance(x, Lit) else slots[x], slots[e.outs[0]],
                                    e.outs[0].aval.shape))
        else:
            raise NotImplementedError(f"the CUDA runtime cannot run equation {e.prim.name}")
    outs = [("value", np.asarray(v.val, dtype=v.aval.dtype), v.aval.shape) if isinstance(v, Lit)
            else ("slot", slots[v], v.aval.shape) for v in g.outvars]
    return CudaProgram(name, fused, kernels, steps, len(slots), [slots[v] for v in g.constvars],
                       [slots[v] for v in g.invars], outs)
