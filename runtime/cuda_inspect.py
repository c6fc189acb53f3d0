"""Stage runtime (CUDA): inspection of compiled CUDA kernels: their PTX and
ptxas's resource report (registers, shared memory, spills, stack) per
kernel entry, for a chosen compute capability. No GPU is needed.

Input: the (group name, CudaKernelSource) list of a CUDA Executable (`kernels`).
Output: PTX text per entry (`compile_ptx`, `ptx_text`) and a
ResourceReport (`resource_report`).

PTX comes from `numba.cuda.compile_ptx(kernel, SIGNATURE, cc=cc)` (NVVM
ships with numba-cuda's cu13 extra). That needs the real numba.cuda: in a
process running Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) numba.cuda
*is* the simulator, so the kernels are compiled in a subprocess with the
simulator off (the module files are already in the kernel cache folder), and
the PTX text says so. The report assembles each PTX with `ptxas -v` from the
nvidia-cuda-nvcc wheel (same CUDA version as NVVM; an older system ptxas
rejects newer PTX), found next to the `nvidia` package or on PATH.

The default compute capability is config.cuda_cc (NEEDLE_CUDA_CC: "8.0" or
"sm_80") if set, else the current GPU's when one is attached, else (9, 0).
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from ..ir.config import config

DEFAULT_CC = (9, 0)
_ptx_cache = {}                 # (source hash, entry, cc) -> PTX text


def _simulator_on():
    import numba
    return bool(numba.config.ENABLE_CUDASIM)


def default_cc():
    """config.cuda_cc (NEEDLE_CUDA_CC), else the GPU's, else DEFAULT_CC."""
    if config.cuda_cc is not None:
        return config.cuda_cc
    if not _simulator_on():
        try:
            from numba import cuda
            if cuda.is_available():                 # pragma: no cover (needs a GPU)
                return tuple(cuda.get_current_device().compute_capability)
        except Exception:                           # pragma: no cover
            pass
    return DEFAULT_CC


# Runs each kernel module from its source text, as kernel_cache does: never
# from sys.path or a .pyc.
_CHILD = r"""
import json, sys, types
from numba import cuda
req = json.load(sys.stdin)
out = {}
for modname, path, source, entries in req["modules"]:
    mod = sys.modules[modname] = types.ModuleType(modname)
    mod.__file__ = path
    exec(compile(source, path, "exec", dont_inherit=True), mod.__dict__)
    for entry in entries:
        ptx, _ = cuda.compile_ptx(getattr(mod, entry), mod.SIGNATURE, cc=tuple(req["cc"]),
                                  launch_bounds=getattr(mod, "LAUNCH_BOUNDS", None))
        out[modname + ":" + entry] = ptx
json.dump(out, sys.stdout)
"""


def _compile_in_subprocess(todo, cc):
    """`todo`: (KernelSource, its module file) pairs."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    req = {"cc": list(cc),
           "modules": [(f"nk_{ks.key}", path, ks.source, list(ks.entries)) for ks, path in todo]}
    r = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(req), env=env,
                       capture_output=True, text=True, timeout=600)
    if r.returncode:
        raise RuntimeError("compiling the CUDA kernels to PTX (in a subprocess without the "
                           f"simulator) failed:\n{r.stderr[-4000:]}")
    got = json.loads(r.stdout)
    return {(ks.key, e): got[f"nk_{ks.key}:{e}"] for ks, _ in todo for e in ks.entries}


def compile_ptx(kernels, cc=None):
    """{(group name, entry): PTX} of every kernel entry, for `cc`."""
    from .kernel_cache import import_kernel_module
    cc = tuple(cc or default_cc())
    todo = {}
    for _, ks in kernels:
        if any((ks.key, e, cc) not in _ptx_cache for e in ks.entries):
            todo[ks.key] = ks
    if todo:
        try:
            if _simulator_on():                     # the module files, written if needed
                got = _compile_in_subprocess(
                    [(ks, import_kernel_module(ks, "cuda").__file__) for ks in todo.values()], cc)
            else:
                from numba import cuda
                got = {}
                for ks in todo.values():
                    mod = import_kernel_module(ks, "cuda")
                    for e in ks.entries:
                        got[ks.key, e] = cuda.compile_ptx(
                            getattr(mod, e), mod.SIGNATURE, cc=cc,
                            launch_bounds=getattr(mod, "LAUNCH_BOUNDS", None))[0]
        except Exception as exc:
            if "NVVM" in str(exc) or "libnvvm" in str(exc):
                raise RuntimeError("PTX needs NVVM: install numba-cuda with its cu13 extra "
                                   "(pip install -e \".[cuda]\")") from exc
            raise
        for (key, e), ptx in got.items():
            _ptx_cache[key, e, cc] = ptx
    return {(g, e): _ptx_cache[ks.key, e, cc] for g, ks in kernels for e in ks.entries}


def ptx_text(kernels, cc=None):
    """The 'ptx' stage of a lowered CUDA function."""
    cc = tuple(cc or default_cc())
    ptx = compile_ptx(kernels, cc)
    note = ("  (compiled in a subprocess: this process runs the CUDA simulator, whose "
            "numba.cuda cannot compile)" if _simulator_on() else "")
    keys = {g: ks.key for g, ks in kernels}
    parts = [f"// ---- kernel {g} / {e} (nk_{keys[g]}.py), sm_{cc[0]}{cc[1]}{note} ----\n{text}"
             for (g, e), text in ptx.items()]
    return "\n".join(parts) or "// no kernels"


# --- ptxas --------------------------------------------------------------------------

def ptxas_path():
    """The ptxas of the nvidia-cuda-nvcc wheel, else the one on PATH, else None."""
    try:
        import nvidia
        for root in nvidia.__path__:
            hits = sorted(glob.glob(os.path.join(root, "cu*", "bin", "ptxas")))
            if hits:
                return hits[-1]
    except ImportError:
        pass
    return shutil.which("ptxas")


def parse_ptxas(info):
    """registers, shared memory, spills and stack from `ptxas -v` output."""
    num = lambda pat: sum(int(x) for x in re.findall(pat, info))       # noqa: E731
    return {"registers": max([int(x) for x in re.findall(r"Used (\d+) registers", info)] or [0]),
            "shared_bytes": num(r"(\d+) bytes smem"),
            "spill_stores": num(r"(\d+) bytes spill stores"),
            "spill_loads": num(r"(\d+) bytes spill loads"),
            "stack": num(r"(\d+) bytes stack frame")}


def assemble(ptx, cc, ptxas=None):
    """Run `ptxas -v` on one PTX text; return (parsed report, ptxas output)."""
    ptxas = ptxas or ptxas_path()
    if ptxas is None:
        raise RuntimeError("no ptxas found: pip install nvidia-cuda-nvcc (the cuda extra)")
    arch = f"sm_{cc[0]}{cc[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        r = subprocess.run([ptxas, f"-arch={arch}", "-v", "-O3", src, "-o",
                            os.path.join(tmp, "k.cubin")], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"ptxas failed for {arch}:\n{r.stderr}")
    info = (r.stderr + r.stdout).strip()
    return parse_ptxas(info), info


class ResourceReport(list):
    """One dict per kernel entry: group, entry, arch, registers,
    shared_bytes, spill_stores, spill_loads, stack, ptxas (the raw output).
    Prints as a table."""

    def table(self):
        lines = [f"{'kernel group':<48} {'arch':<6} {'regs':>4} {'smem':>6} {'spill':>5} "
                 f"{'stack':>5}"]
        for r in self:
            name = r["group"] + ("" if r["entry"] == "kernel" else "/" + r["entry"])
            lines.append(f"{name[:48]:<48} {r['arch']:<6} {r['registers']:>4} "
                         f"{r['shared_bytes']:>6} {r['spill_stores'] + r['spill_loads']:>5} "
                         f"{r['stack']:>5}")
        return "\n".join(lines)

    __str__ = table


def resource_report(kernels, cc=None):
    cc = tuple(cc or default_cc())
    out = ResourceReport()
    for (g, e), ptx in compile_ptx(kernels, cc).items():
        rep, info = assemble(ptx, cc)
        out.append({"group": g, "entry": e, "arch": f"sm_{cc[0]}{cc[1]}", **rep, "ptxas": info})
    return out


# --- the device's peaks (what benchmarks compare against) -------------------------

# FP32 lanes (FMA units) per SM by compute capability: Volta, Turing, A100 64;
# GA10x, Ada, Hopper, Blackwell 128.
FP32_LANES_PER_SM = {(7, 0): 64, (7, 2): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128,
                     (8, 7): 128, (8, 9): 128, (9, 0): 128, (10, 0): 128, (10, 3): 128,
                     (12, 0): 128}


def device_peaks(dev):
    """The theoretical peaks of a device from its properties (anything with
    numba's device attributes): {'name', 'cc', 'bandwidth_GBps' (DRAM: 2
    transfers per memory clock x bus width), 'fp32_GFLOPs' (SMs x FP32
    lanes x 2 flops per FMA x SM clock; None for an unknown architecture)}.
    The clocks are the boost clocks the driver reports, so these are upper
    bounds, as vendors quote them."""
    cc = tuple(dev.compute_capability)
    mem_khz, bus_bits = int(dev.MEMORY_CLOCK_RATE), int(dev.GLOBAL_MEMORY_BUS_WIDTH)
    lanes = FP32_LANES_PER_SM.get(cc)
    sm_khz, sms = int(dev.CLOCK_RATE), int(dev.MULTIPROCESSOR_COUNT)
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return {"name": name, "cc": cc,
            "bandwidth_GBps": 2 * mem_khz * 1e3 * bus_bits / 8 / 1e9,
            "fp32_GFLOPs": None if lanes is None else sms * lanes * 2 * sm_khz * 1e3 / 1e9}
