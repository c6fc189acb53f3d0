"""Compile the CUDA kernels of the representative programs (programs.py) to
PTX with `numba.cuda.compile_ptx` and assemble each with ptxas; print one
JSON object per kernel and arch (or one {"skip": reason}).

Runs WITHOUT the CUDA simulator (it must be unset before numba.cuda is
imported) and needs no GPU: numba-cuda's cu13 extra ships NVVM, the
nvidia-cuda-nvcc wheel ships ptxas. tests_cuda/test_cuda_ptx.py runs this
file in a subprocess; to read the table by hand:

    python tests_cuda/ptx_report.py --table
"""
import json
import os
import re
import subprocess
import sys
import tempfile

from needle.runtime.cuda_inspect import ptxas_path

ARCHS = ((8, 0), (9, 0))
# An instruction on float64 (optionally predicated): add.f64, cvt.f64.f32, ...
F64 = re.compile(r"^\s*(?:@!?%\w+\s+)?[a-z][\w.]*\.f64\b", re.M)


def assemble(ptxas, ptx, cc, tmp):
    src = os.path.join(tmp, "k.ptx")
    with open(src, "w") as f:
        f.write(ptx)
    arch = f"sm_{cc[0]}{cc[1]}"
    r = subprocess.run([ptxas, f"-arch={arch}", "-v", "-O3", src, "-o",
                        os.path.join(tmp, "k.cubin")], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"ptxas failed for {arch}:\n{r.stderr}")
    info = r.stderr + r.stdout
    num = lambda pat: sum(int(x) for x in re.findall(pat, info))       # noqa: E731
    return {"registers": max([int(x) for x in re.findall(r"Used (\d+) registers", info)] or [0]),
            "shared_bytes": num(r"(\d+) bytes smem"),
            "spill_stores": num(r"(\d+) bytes spill stores"),
            "spill_loads": num(r"(\d+) bytes spill loads"),
            "stack": num(r"(\d+) bytes stack frame"), "ptxas": info.strip()}


def _kernel_programs():
    """The block kernels (codegen/cuda/kernels.py) at sizes that select them
    with the real tuning (rows of 512 get a 256-thread block; 64x64 tiles):
    (function, arguments) makers."""
    import numpy as np

    import needle.nn as nnn
    import needle.numpy as nnp
    rng = np.random.default_rng(0)
    u = lambda *s: rng.uniform(-1, 1, s).astype(np.float32)           # noqa: E731

    def layernorm(x, g, b):
        mu = nnp.mean(x, axis=-1, keepdims=True)
        var = nnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
        return (x - mu) / nnp.sqrt(var + 1e-5) * g + b
    return {
        "row_softmax": lambda: (lambda x: nnn.softmax(x, axis=-1), (u(8, 512),)),
        "row_log_softmax": lambda: (lambda x: nnn.log_softmax(x, axis=-1), (u(8, 512),)),
        "row_layernorm": lambda: (layernorm, (u(8, 512), u(512), u(512))),
        "row_sum_max": lambda: (lambda x: (nnp.sum(x, axis=-1), nnp.max(x, axis=-1)),
                                (u(8, 512),)),
        "row_argmax": lambda: (lambda x: nnp.argmax(x, axis=-1), (u(8, 512),)),
        "full_sum": lambda: (lambda x: nnp.mean(x * x), (u(64, 512),)),
        "tiled_matmul": lambda: (lambda a, b: a @ b, (u(200, 300), u(300, 100))),
        "tiled_matmul_batched_T": lambda: (lambda a, b: nnp.matmul(nnp.swapaxes(a, 1, 2), b),
                                           (u(4, 300, 200), u(4, 300, 100))),
        "matmul_bias_relu": lambda: (lambda a, w, b: nnn.relu(a @ w + b),
                                     (u(200, 300), u(300, 100), u(100))),
    }


KERNEL_PROGRAMS = _kernel_programs()


def _kernels(graph):
    """The kernel equations of a fused graph, those in loop bodies and
    branches (their own fused sub-graphs) included."""
    for e in graph.eqns:
        if e.prim.name == "kernel":
            yield e
        for v in e.params.values():
            for sub in (v if isinstance(v, tuple) else (v,)):
                if e.prim.name != "kernel" and hasattr(sub, "graph") and \
                        hasattr(sub.graph, "eqns"):
                    yield from _kernels(sub.graph)


def report():
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        raise SystemExit("ptx_report.py must run without NUMBA_ENABLE_CUDASIM")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from numba import cuda

    from needle.codegen.cuda import emit_kernel
    from needle.lowering import fuse_for
    from needle.runtime.kernel_cache import import_kernel_module
    from programs import FLOAT32, PROGRAMS, program, traced

    progs = [(name, lambda name=name: program(name)) for name in PROGRAMS]
    progs += [(name, lambda name=name: traced(*KERNEL_PROGRAMS[name]()))
              for name in KERNEL_PROGRAMS]

    ptxas = ptxas_path()
    if ptxas is None:
        yield {"skip": "no ptxas (pip install nvidia-cuda-nvcc)"}
        return
    seen = set()
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in progs:
            opt, _, _ = make()
            for e in _kernels(fuse_for(opt, "cuda").graph):
                ks = emit_kernel(e.params["graph"])
                if (name, ks.key) in seen:
                    continue
                seen.add((name, ks.key))
                mod = import_kernel_module(ks, "cuda")
                for entry in mod.ENTRIES:
                    for cc in ARCHS:
                        try:
                            ptx, _ = cuda.compile_ptx(
                                getattr(mod, entry), mod.SIGNATURE, cc=cc,
                                launch_bounds=getattr(mod, "LAUNCH_BOUNDS", None))
                        except Exception as exc:          # no NVVM: report, then skip
                            if "NVVM" in str(exc) or "libnvvm" in str(exc):
                                yield {"skip": f"no NVVM: {exc}"}
                                return
                            raise
                        row = {"program": name, "group": e.params["name"], "entry": entry,
                               "arch": f"sm_{cc[0]}{cc[1]}",
                               "float32": name in FLOAT32 or name in KERNEL_PROGRAMS,
                               "threads": ks.threads[mod.ENTRIES.index(entry)],
                               "f64": F64.findall(ptx)[:5], "module": f"nk_{ks.key}.py"}
                        row.update(assemble(ptxas, ptx, cc, tmp))
                        yield row


def table(rows):
    lines = [f"{'program':<22} {'kernel group':<44} {'arch':<6} {'block':>5} {'regs':>4} "
             f"{'smem':>6} {'spill':>5} {'stack':>5}"]
    for r in rows:
        lines.append(f"{r['program']:<22} {(r['group'] + ('' if r['entry'] == 'kernel' else '/' + r['entry']))[:44]:<44} "
                     f"{r['arch']:<6} {r.get('threads') or '-':>5} {r['registers']:>4} "
                     f"{r.get('shared_bytes', 0):>6} "
                     f"{r['spill_stores'] + r['spill_loads']:>5} {r['stack']:>5}")
    return "\n".join(lines)


if __name__ == "__main__":
    rows = []
    for row in report():
        if "--table" in sys.argv:
            rows.append(row)
            if "skip" in row:
                print(row["skip"])
        else:
            print(json.dumps(row), flush=True)
    if "--table" in sys.argv and rows and "skip" not in rows[0]:
        print(table(rows))
