"""The public package: the whole lowering of a traced program, top to bottom.

Input: a ClosedGraph from the tracer, a device name ('cpu' or 'cuda'), the
function's name and the flat input positions the caller donated.
Output: the Graph of every stage (printable as text and DOT) and the
Executable, whose own stages ('kernels', and 'ptx' on CUDA) print too.

    traced -> folded -> simplified -> hoisted -> cse -> dce -> fused -> kernels -> executable

A program lowered before (by this or an earlier process: the plan cache,
runtime/plan_cache.py, keyed by the traced graph's structure) skips from
traced to fused: its fused graph is read from disk.

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
import hashlib
import collections.abc
import os
import threading

import numpy as np

from . import codegen, ir, passes, runtime
from .codegen import backend_for
from .ir.check import check_graph
from .ir.config import config
from .ir.core import ClosedGraph, Eqn, Graph, Var, aval_of
from .passes.fusion import fuse
from .passes.simplify import RULES as SIMPLIFY_RULES
from .passes.pipeline import PIPELINE
from .runtime import plan_cache


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


def _run_stages(cg, backend, name, check, entries=None):
    """(fused ClosedGraph, {stage: Graph}); with `check` (default:
    config.checks, NEEDLE_CHECKS), ir.check_graph runs after every pass.
    `entries`: the stages to run (default: all of `stages(backend)`)."""
    check = config.checks if check is None else check
    graphs = {"traced": cg.graph}
    for stage, fn in entries or stages(backend):
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
    """({stage: Graph}, Executable) of the traced ClosedGraph `cg`. With
    config.plan_cache (NEEDLE_PLAN_CACHE) the fused graph of a program that
    a process lowered before comes from the plan cache (runtime/plan_cache.py):
    no pass and no fusion runs, and the stages between 'traced' and 'fused'
    are lowered only when one is read."""
    backend = backend_for(device)
    key = _plan_key(cg, backend, name) if config.plan_cache else None
    fused = plan_cache.load(key, cg, backend.name) if key else None
    if fused is None:
        fused, graphs = _run_stages(cg, backend, name, check)
        if key:
            plan_cache.save(key, cg, fused, backend.name)
    else:
        if config.checks if check is None else check:
            check_graph(fused.graph)
        graphs = _LazyStages(cg, fused, backend, name, check)
    return graphs, compile_graph(fused, backend, name, donated)


# What decides a fused graph besides the traced program: the source of the
# stages that lower it (this file and the plan format included), and the
# settings fusion reads.
_LOWERING_SOURCES = (ir.__path__[0], passes.__path__[0], codegen.__path__[0],
                     plan_cache.__file__, os.path.abspath(__file__))


_RULES_SEEN = [None, None]


def _rule_names():
    """simplify's rule table by name (benchmarks and tests switch rules
    in-process), named again only when the table changed."""
    now = tuple((p, tuple(rs)) for p, rs in SIMPLIFY_RULES.items())
    if now != _RULES_SEEN[0]:
        names = sorted((p, tuple(f"{r.__module__}.{r.__qualname__}" for r in rs))
                       for p, rs in now)
        _RULES_SEEN[:] = [now, hashlib.sha1(repr(names).encode()).hexdigest()]
    return _RULES_SEEN[1]


def _plan_key(cg, backend, name):
    """The plan cache's key of `cg`: besides the program and the source, the
    passes now in the pipeline (by name and function), simplify's rules now
    in its table, and the backend's tuning (its plain attributes: a test or
    user may change them)."""
    version = plan_cache.source_version(_LOWERING_SOURCES)
    passes_now = tuple((s, f"{fn.__module__}.{fn.__qualname__}") for s, fn in PIPELINE)
    tuning = {}
    for klass in reversed(type(backend).__mro__):
        tuning.update(vars(klass))
    tuning.update(vars(backend))
    tuning = tuple(sorted((k, v) for k, v in tuning.items()
                          if type(v) in (bool, int, float, str) and not k.startswith("__")))
    settings = (config.parallel_min_size, passes_now, _rule_names(), tuning,
                backend.lowering_settings())
    return plan_cache.key(cg, backend.name, name, settings, version)


class _LazyStages(collections.abc.Mapping):
    """{stage: Graph} of a program whose fused graph came from the plan
    cache: 'traced' and 'fused' at once, the passes' stages in between
    computed (once, all together, without fusion) when one is first read."""

    def __init__(self, cg, fused, backend, name, check):
        self._names = ["traced"] + [s for s, _ in stages(backend)]
        self._known = {"traced": cg.graph, "fused": fused.graph}
        self._args = (cg, backend, name, check)
        self._lock = threading.Lock()

    def __getitem__(self, stage):
        if stage not in self._names:
            raise KeyError(stage)
        with self._lock:
            if stage not in self._known and self._args is not None:
                cg, backend, name, check = self._args
                for s, g in _run_stages(cg, backend, name, check, PIPELINE)[1].items():
                    self._known.setdefault(s, g)
                self._args = None           # every stage known: the traced consts may go
            return self._known[stage]       # KeyError if the pipeline lost it since

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)


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
