"""Stage runtime (CUDA): run an optimised program on the CUDA backend: in
Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) on machines without a GPU,
on the device where one is attached.

Input: a ClosedGraph after the fusion pass for the CUDA Backend (as `compile_executable` takes).
Output: `CudaDevice`, the CUDA device of the compile loop (runtime/program.py)
and of the Executable (runtime/executable.py, the same class as on CPU): its
steps launch kernels on device Arrays; inputs come in as needle Arrays
(host values copied over), results stay on the device.

The graph is partitioned for "cuda" (dot_general is a kernel there, not a
library call), each group is emitted by codegen/cuda, written to the kernel
cache folder `<NEEDLE_CACHE_DIR>/cuda/` and loaded from there
(runtime/kernel_cache.py: executed, never imported from sys.path); its plain Python
kernel functions are wrapped with `cuda.jit`: lazily in the simulator, with
the module's explicit signature and `cache=True` on a GPU (a new process
loads the cubin from Numba's cache next to the module). Loads are counted in
`needle.cache_info()` like CPU kernels.

Execution: every Var gets a slot holding a needle Array; a kernel step takes
its outputs from the device pool (runtime/cuda_memory.py), a view step
reshapes without copying (the view shares its source's pool block). Each
intermediate is dropped from its slot after its last reader, so its block
returns to the pool for the next allocation of its size class, in the same
call or the next one.

Launch configuration (`launch_config`): the kernels are grid-stride loops,
so any grid is correct; on a GPU the block size is min(256,
MAX_THREADS_PER_BLOCK) and the grid is capped at two full waves
(MULTIPROCESSOR_COUNT x resident blocks per SM x 2); in the simulator, which
runs a Python thread per CUDA thread, THREADS_PER_BLOCK and MAX_BLOCKS
below.
"""
from collections import namedtuple

import numpy as np

from ..ir.core import Lit
from . import cuda_memory
from .cuda_array import DeviceArray, dev_shape, make_array, to_device
from .cuda_loops import CUDA_OPS
from .kernel_cache import import_kernel_module
from .stats import stats

THREADS_PER_BLOCK = 128         # the simulator's launch limits (and the fallback)
MAX_BLOCKS = 1024

_jitted = {}                    # source hash -> launchable kernels

LaunchLimits = namedtuple("LaunchLimits", "threads_per_block max_blocks")


def limits_from_properties(props):
    """Launch limits of a device from its properties (anything with the
    numba device attributes MULTIPROCESSOR_COUNT, MAX_THREADS_PER_BLOCK and,
    optionally, MAX_THREADS_PER_MULTIPROCESSOR)."""
    max_threads = int(props.MAX_THREADS_PER_BLOCK)
    sms = int(props.MULTIPROCESSOR_COUNT)
    tpb = max(32, min(256, max_threads) // 32 * 32)
    per_sm = int(getattr(props, "MAX_THREADS_PER_MULTIPROCESSOR", 2048) or 2048)
    resident = max(1, per_sm // tpb)
    return LaunchLimits(tpb, max(1, sms * resident * 2))


_device_limits = None


def device_limits():
    """The launch limits here: from the current device on a GPU, the fixed
    THREADS_PER_BLOCK / MAX_BLOCKS in the simulator (read at each call, so
    tests can change them)."""
    global _device_limits
    from numba import config
    if config.ENABLE_CUDASIM:
        return LaunchLimits(THREADS_PER_BLOCK, MAX_BLOCKS)
    if _device_limits is None:                      # pragma: no cover (needs a GPU)
        from numba import cuda
        _device_limits = limits_from_properties(cuda.get_current_device())
    return _device_limits                           # pragma: no cover


def launch_config(n, threads_per_block=None, max_blocks=None, limits=None):
    """(blocks, threads) for `n` work items: grid-stride kernels accept any
    grid, so the grid is capped and small launches use a multiple of a warp."""
    lim = limits or device_limits()
    tpb = threads_per_block or lim.threads_per_block
    threads = min(tpb, 32 * -(-n // 32))
    return max(1, min(-(-n // threads), max_blocks or lim.max_blocks)), threads


def load_cuda_kernels(ks, context=""):
    """The launchable kernels of CudaKernelSource `ks`, in launch order;
    counted in cache_info (compiled, loaded from disk, reused)."""
    fns = _jitted.get(ks.key)
    if fns is not None:
        stats.kernels_reused += 1
        return fns
    from numba import config, cuda
    mod = import_kernel_module(ks, "cuda", context)
    if config.ENABLE_CUDASIM:
        fns = [cuda.jit(getattr(mod, name)) for name in mod.ENTRIES]
        stats.kernels_compiled += 1         # the simulator has no machine code to load
    elif not cuda.is_available():
        # No device (jit(f, device="cuda").lower(...) on a machine without a
        # GPU): the module file is what the kernels, PTX and ptxas stages
        # read; a program holding None refuses to run (Executable.runnable).
        return None
    else:                                   # pragma: no cover (needs a GPU)
        # block kernels (codegen/cuda/kernels.py) declare their launch bounds
        lb = getattr(mod, "LAUNCH_BOUNDS", None)
        fns = [cuda.jit(mod.SIGNATURE, cache=True, launch_bounds=lb)(getattr(mod, name))
               for name in mod.ENTRIES]
        if all(sum(f.stats.cache_hits.values()) for f in fns):
            stats.kernels_loaded += 1
        else:
            stats.kernels_compiled += 1
    _jitted[ks.key] = fns
    return fns


def clear_memory_cache():
    """Forget loaded CUDA kernels (the disk cache stays); for tests."""
    _jitted.clear()


def _as_array(x, aval):
    """An argument as an Array of `aval` (host values are copied over)."""
    if isinstance(x, DeviceArray):
        x._check_alive()
        if x.aval.shape != tuple(aval.shape) or x.dtype != aval.dtype:
            raise TypeError(f"device array {x.aval.str_short()} where {aval.str_short()} "
                            f"is expected")
        return x
    x = np.asarray(x, dtype=aval.dtype)
    if x.shape != tuple(aval.shape):
        raise TypeError(f"argument of shape {x.shape}, expected {tuple(aval.shape)}")
    return to_device(x)


def _kernel_step(ks, fns, ins, outs, avals, inplace=None):
    # Hook for codegen: a kernel source with a `launch(entry, limits)` method
    # (e.g. one block per row of a block reduction) chooses its own
    # (blocks, threads); the others are grid-stride loops (launch_config).
    # `inplace` {output position: input slot}: the output takes the buffer
    # in that slot (a donated argument the call owns: CudaDevice.donation;
    # a loop body's destination or scratch buffer).
    custom = getattr(ks, "launch", None)
    inplace = inplace or {}
    lits = [np.dtype(dt).type(v) for v, dt in ks.lits]

    def run(env):
        results = []
        for j, aval in enumerate(avals):
            src = inplace.get(j)
            if src is not None:
                x = env[src]
                results.append(make_array(x._buf, aval, x._block))
                continue
            buf, block = cuda_memory.allocate(dev_shape(aval.shape), aval.dtype)
            results.append(make_array(buf, aval, block))
        # Scratch arrays of the kernel (codegen/cuda: a two-stage full
        # reduction's partials), pool blocks held for this call only.
        scratch = [cuda_memory.allocate((n,), np.dtype(dt)) for dt, n in
                   getattr(ks, "scratch", ())]
        args = [env[i]._buf for i in ins] + [r._buf for r in results] + \
            [buf for buf, _ in scratch] + [int(d) for d in ks.dims] + lits
        for k, fn in enumerate(fns):
            n = ks.work_items(k)
            if n:
                blocks, threads = custom(k, device_limits()) if custom else launch_config(n)
                fn[blocks, threads](*args)
        for slot, r in zip(outs, results):
            env[slot] = r
    return run


def _view_step(src, out, aval):
    shape = dev_shape(aval.shape)

    def run(env):
        if isinstance(src, Lit):
            env[out] = to_device(np.reshape(np.asarray(src.val, aval.dtype), aval.shape))
        else:
            x = env[src]
            env[out] = make_array(x._buf.reshape(shape), aval, x._block)
    return run


def kernels_text(kernels):
    return "\n".join(f"# ---- kernel {gname} (nk_{ks.key}.py) ----\n{ks.source}"
                     for gname, ks in kernels) or "# no kernels"


class CudaDevice:
    """The CUDA device of the compile loop (runtime/program.py) and the
    Executable: kernels loaded with `cuda.jit` (lazily in the simulator),
    launched on pooled device buffers; views share their source's block;
    no library calls. Arguments may be Arrays (used in place) or host
    values (copied over); results are Arrays. Stages: 'ptx' (compiled for
    compute capability `cc`, default the GPU's, else (9, 0));
    `resource_report(cc)` gives ptxas's registers, shared memory and spills
    per kernel (runtime/cuda_inspect.py)."""
    name = "cuda"
    host_arrays = False                 # needle Arrays in and out
    copies_results = False              # Arrays are immutable: a result may be an argument
    stages = ("ptx",)
    kernels_text = staticmethod(kernels_text)
    allocator = None
    loop_ops = CUDA_OPS                 # the control steps' operations (runtime/loops.py)
    from_host = staticmethod(to_device)     # a host step's results (pure_callback), staged over

    @staticmethod
    def load(sub, backend, context):
        ks = backend.emit(sub, "kernel")
        return ks, load_cuda_kernels(ks, context=context)

    @staticmethod
    def kernel_step(ks, fns, ins, outs, avals, inplace):
        return _kernel_step(ks, fns, ins, outs, avals, inplace)

    @staticmethod
    def library_step(fn, ins, out):
        raise NotImplementedError("the CUDA runtime has no library calls")

    @staticmethod
    def view_step(src, out, aval):
        return _view_step(src, out, aval)

    # -- the Executable's part (runtime/executable.py) ---------------------------
    const = staticmethod(CUDA_OPS.const)    # copied to the device at the first call

    @staticmethod
    def literal(v):
        return to_device(v)

    @staticmethod
    def runnable(launchers):
        # None: compiled where no device can run it (lower() without a GPU)
        return all(fns is not None for fns in launchers)

    @staticmethod
    def refuse(exe):
        from .devices import require_cuda
        require_cuda()
        raise RuntimeError(f"{exe.name} was compiled where no CUDA device was "
                           f"available; compile it again to run it")

    @classmethod
    def inputs(cls, exe, donation=True):
        """prepare(args): each an Array of its input's shape and dtype (a
        host value copied over), then the donated ones taken (`donation`)."""
        name, avals = exe.name, exe.in_avals
        if not exe.runnable:
            return lambda args: cls.refuse(exe)
        take = cls.donation(exe) if donation else None

        def prepare(args):
            if len(args) != len(avals):
                raise TypeError(f"{name} takes {len(avals)} arrays, got {len(args)}")
            try:
                arrays = [_as_array(x, a) for x, a in zip(args, avals)]
            except TypeError as e:
                raise TypeError(f"{name}: {e}") from None
            return arrays if take is None else take(arrays)
        return prepare

    @staticmethod
    def donation(exe):
        """take(arrays): the call takes the donated arguments' buffers. A
        donated Array is deleted (using it afterwards is an error, as in
        JAX) and its buffer belongs to the call: it returns to the pool after
        its last reader, mid-call, or a kernel writes a result into it (the
        positions `donated_in_place`). A buffer that other Arrays still share
        (a reshape view; the same Array passed twice) is never overwritten:
        such a kernel writes into a device copy of it. A donated host value's
        device copy is the call's own."""
        donated, in_place, avals = exe.donated, exe.donated_in_place, exe.in_avals
        if not donated:
            return None

        def take(arrays):
            arrays, private = list(arrays), {}
            for k in donated:
                x = arrays[k]
                if id(x) not in private:
                    alone = x._exclusive() and sum(a is x for a in arrays) == 1
                    private[id(x)] = (make_array(x._buf, x.aval, x._block), alone, x)
            given = list(arrays)
            for j, a in enumerate(given):
                if id(a) in private:
                    arrays[j] = private[id(a)][0]
            for k in in_place:
                own, alone, _ = private[id(given[k])]
                if not alone:
                    arrays[k] = CUDA_OPS.copy_of(own, avals[k])
            for _, _, x in private.values():
                x._delete()
            return arrays
        return take

    @staticmethod
    def stage_text(exe, stage, cc=None):
        # 'ptx': a text; says why when PTX cannot be made here
        from .cuda_inspect import ptx_text
        try:
            return ptx_text(exe.kernels, cc)
        except Exception as e:
            return f"// no PTX: {type(e).__name__}: {e}"

    @staticmethod
    def ptx(exe, cc=None):
        """{(group, entry): PTX text} for compute capability `cc`."""
        from .cuda_inspect import compile_ptx
        return compile_ptx(exe.kernels, cc)

    @staticmethod
    def resource_report(exe, cc=None):
        from .cuda_inspect import resource_report
        return resource_report(exe.kernels, cc)


DEVICE = CudaDevice()
