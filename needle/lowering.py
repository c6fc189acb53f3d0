"""The public package: the whole lowering of a traced program, top to bottom.

Input: a ClosedGraph from the tracer, a device name ('cpu' or 'cuda'), the
function's name and the flat input positions the caller donated.
Output: the Graph of every stage (printable as text and DOT) and the
Executable, whose own stages ('kernels', and 'ptx' on CUDA) print too.

    traced -> folded -> simplified -> hoisted -> cse -> dce -> fused -> kernels -> executable

The Graph -> Graph part is passes.pipeline.PIPELINE; fusion is an ordinary
entry that receives the device's Backend (codegen) as a value; the runtime
compiles the fused graph with the same Backend. This module may import every
stage, so the list lives here and no lower stage reaches upward.

`run_control(prim, args, params)` runs one control-flow primitive (scan,
cond, while, checkpoint) on concrete numpy values through this lowering for
the CPU, its Executable cached by the identity of its sub-graphs and the
operands' types.
"""
import collections
import threading

import numpy as np

from . import runtime
from .codegen import backend_for
from .ir.check import check_graph
from .ir.config import config
from .ir.core import ClosedGraph, Eqn, Graph, Var, aval_of
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
    """The CUDA Executable (host values or device Arrays in, device Arrays
    out; `to_device` + `run` split a call in two for benchmarks) of an
    optimised ClosedGraph: fusion, then compile."""
    return compile_optimised(cg, "cuda", name)


def eager_cuda_program(cg, name):
    """The CUDA Executable of an eager operation on device arrays
    (needle/array.py calls its `run_arrays`)."""
    backend = backend_for("cuda")
    return compile_graph(_run_stages(cg, backend, name, None)[0], backend, name)


# (primitive, sub-graph ids, other params, operand types) -> (Executable, the
# sub-graphs, kept alive so that their ids are not reused while cached)
_control_cache = collections.OrderedDict()
_control_lock = threading.Lock()
MAX_CONTROL_CACHE = 64


def _control_key(prim, params, avals):
    subs, rest = [], []
    for k, v in sorted(params.items()):
        if isinstance(v, ClosedGraph) or (isinstance(v, tuple) and v and
                                          all(isinstance(b, ClosedGraph) for b in v)):
            subs.append((k, tuple(id(b) for b in (v if isinstance(v, tuple) else (v,)))))
        else:
            rest.append((k, v))
    return (prim, tuple(subs), tuple(rest), tuple((a.shape, a.dtype.str) for a in avals))


def run_control(prim, args, params):
    """The results of control primitive `prim` (scan, cond, while,
    checkpoint) on concrete operands `args`, compiled for the CPU through
    `lower` (once per sub-graphs and operand types) and run."""
    vals = [np.asarray(a) for a in args]
    avals = [aval_of(v).strong() for v in vals]
    key = _control_key(prim, params, avals)
    hit = _control_cache.get(key)
    if hit is None:
        invars = [Var(a) for a in avals]
        outs = [Var(a) for a in prim.abstract_eval(*avals, **params)]
        g = Graph([], invars, [Eqn(prim, invars, dict(params), outs)], outs)
        exe = lower(ClosedGraph(g, []), "cpu", f"eager {prim.name}")[1]
        hit = (exe, params)
        with _control_lock:
            _control_cache[key] = hit
            while len(_control_cache) > MAX_CONTROL_CACHE:
                _control_cache.popitem(last=False)
    else:
        with _control_lock:
            if key in _control_cache:
                _control_cache.move_to_end(key)
    return hit[0](*vals)
