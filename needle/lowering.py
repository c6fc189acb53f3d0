"""The public package: the whole lowering of a traced program, top to bottom.

Input: a ClosedGraph from the tracer, a device name ('cpu' or 'cuda'), the
function's name and the flat input positions the caller donated.
Output: the Graph of every stage (printable as text and DOT) and the
Executable, whose own stages ('kernels', and 'ptx' on CUDA) print too.

    traced -> folded -> simplified -> cse -> dce -> fused -> kernels -> executable

The Graph -> Graph part is passes.pipeline.PIPELINE; fusion is an ordinary
entry that receives the device's Backend (codegen) as a value; the runtime
compiles the fused graph with the same Backend. This module may import every
stage, so the list lives here and no lower stage reaches upward.
"""
from . import runtime
from .codegen import backend_for
from .ir.check import check_graph
from .ir.config import config
from .passes.fusion import fuse
from .passes.pipeline import PIPELINE


def stages(backend):
    """The ordered (stage name, ClosedGraph -> ClosedGraph) entries down to
    the fused graph, for `backend`."""
    return [*PIPELINE, ("fused", lambda cg: fuse(cg, backend))]


def device_for(backend):
    """The runtime Device that runs what `backend` compiles."""
    if backend.name == "cuda":
        from .runtime.cuda_runtime import DEVICE
        return DEVICE
    from .runtime.cpu_device import DEVICE
    return DEVICE


def compile_graph(fused, backend, name="f", donated=()):
    """The Executable of a fused graph (stages 'kernels', 'executable'): kernels
    emitted and loaded, steps planned, by the one runtime compile loop."""
    return runtime.compile_program(fused, backend, device_for(backend), name, donated)


def _run_stages(cg, backend, name, check):
    """(fused ClosedGraph, {stage: Graph}); with `check` (default:
    config.checks, NEEDLE_CHECKS), ir.check_graph runs after every pass."""
    check = config.checks if check is None else check
    graphs = {"traced": cg.graph}
    for stage, fn in stages(backend):
        cg = fn(cg)
        if check:
            try:
                check_graph(cg.graph)
            except Exception as e:
                if hasattr(e, "add_note"):          # Python 3.11+
                    e.add_note(f"(found after the {stage!r} pass of {name})")
                raise
        graphs[stage] = cg.graph
    return cg, graphs


def lower(cg, device="cpu", name="f", donated=(), check=None):
    """({stage: Graph}, Executable) of the traced ClosedGraph `cg`."""
    backend = backend_for(device)
    cg, graphs = _run_stages(cg, backend, name, check)
    return graphs, compile_graph(cg, backend, name, donated)


def fuse_for(cg, device):
    """The fusion pass alone, for `device`'s backend."""
    return fuse(cg, backend_for(device))


def compile_optimised(cg, device="cpu", name="f", donated=()):
    """The Executable of an already optimised ClosedGraph: fusion, then compile."""
    backend = backend_for(device)
    return compile_graph(fuse(cg, backend), backend, name, donated)


def cuda_program(cg, name="f"):
    """The CudaProgram (device arrays in and out, `program(*host_arrays)` ->
    numpy results) of an optimised ClosedGraph: fusion, then compile."""
    return compile_optimised(cg, "cuda", name).program


def eager_cuda_program(cg, name):
    """A CudaProgram for an eager operation on device arrays (needle/array.py)."""
    backend = backend_for("cuda")
    return compile_graph(_run_stages(cg, backend, name, None)[0], backend, name).program
