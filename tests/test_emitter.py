"""The kernel emitters (codegen/emitter.py, the CPU's and CUDA's strategies
on it) and the judge hand-off (codegen/emissions.py): a kernel group fusion
accepted is compiled by rendering the emission its cost model made, which
must be exactly the text a fresh emission gives; the programs behind the
groups compute numpy's answers (float64 formulas)."""
import gc

import numpy as np
import pytest

import needle
import needle.nn as nnn
import needle.numpy as nnp
from needle.codegen.cpu.backend import CpuBackend
from needle.codegen.cpu.emit import KernelEmitter, emit_kernel
from needle.codegen.cuda.emit import CudaKernelEmitter
from needle.codegen.emitter import Emitter
from needle.ir.core import ClosedGraph
from needle.passes.fusion import fuse
from needle.passes.pipeline import PIPELINE

rng = np.random.default_rng(0)
X = rng.standard_normal((6, 5)).astype(np.float32)
W = rng.standard_normal((5, 5)).astype(np.float32)
B = rng.standard_normal(5).astype(np.float32)
IDX = np.array([0, 3, 3, 1], np.int32)


def layernorm(x, g, b):
    m = nnp.mean(x, axis=-1, keepdims=True)
    v = nnp.mean((x - m) ** 2, axis=-1, keepdims=True)
    return (x - m) * nnp.rsqrt(v + 1e-5) * g + b


def mlp_loss(w, x, b):
    h = nnn.relu(x @ w + b)
    return (nnn.log_softmax(h @ w, axis=1) * x).sum()


def attention(x, w):
    q = x @ w
    return nnn.softmax(q @ x.T / np.float32(np.sqrt(5)), axis=-1) @ x


# (name, function, args, the numpy float64 formula)
PROGRAMS = [
    ("softmax", lambda x: nnn.softmax(x, axis=1), (X,),
     lambda x: np.exp(x - x.max(1, keepdims=True)) /
     np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)),
    ("column mean", lambda x: x - x.mean(axis=0), (X,), lambda x: x - x.mean(0)),
    ("row max and min", lambda x: nnp.max(x, axis=1) - nnp.min(x, axis=1), (X,),
     lambda x: x.max(1) - x.min(1)),
    ("layernorm", layernorm, (X, B, B),
     lambda x, g, b: (x - x.mean(-1, keepdims=True)) /
     np.sqrt(x.var(-1, keepdims=True) + 1e-5) * g + b),
    ("cumsum", lambda x: nnp.cumsum(x * 2.0, axis=1), (X,), lambda x: np.cumsum(2 * x, 1)),
    ("scatter add", lambda x, i: x.at[i].add(1.5), (X, IDX),
     lambda x, i: x + 1.5 * np.bincount(i, minlength=len(x))[:, None]),
    ("mlp gradient", lambda w, x, b: needle.grad(mlp_loss)(w, x, b), (W, X, B), None),
    ("attention", attention, (X, W), None),
]


def _optimised(f, args):
    cg = needle.jit(f).trace(*args)
    for _, stage in PIPELINE:
        cg = stage(cg)
    return cg


def _groups(g):
    for e in g.eqns:
        if e.prim.name == "kernel":
            yield e.params["graph"]
        for v in e.params.values():
            for s in (v if isinstance(v, (list, tuple)) else [v]):
                if isinstance(s, ClosedGraph):
                    yield from _groups(s.graph)


@pytest.mark.parametrize("name, f, args, ref", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_a_kept_emission_renders_as_a_fresh_one(name, f, args, ref):
    backend = CpuBackend()                      # its own kept emissions
    fused = fuse(_optimised(f, args), backend)
    subs = list(_groups(fused.graph))
    assert subs
    for sub in subs:
        kept = backend.emit(sub, "kernel")
        again = backend.emit(sub, "kernel")     # the rendered source, kept in turn
        fresh = emit_kernel(sub, "kernel")      # a new emitter, as before the hand-off
        for ks in (kept, again):
            assert ks.source == fresh.source
            assert (ks.signature, ks.dims, ks.lits, ks.split, ks.aligned) == \
                (fresh.signature, fresh.dims, fresh.lits, fresh.split, fresh.aligned)
        assert again is not kept                # the runtime annotates its own copy
    # a group of more than one equation was judged, and compiled from that emission
    judged = [s for s in subs if len(s.eqns) > 1]
    assert backend.emissions.hits >= 2 * len(judged) > 0


@pytest.mark.parametrize("name, f, args, ref", [p for p in PROGRAMS if p[3] is not None],
                         ids=[p[0] for p in PROGRAMS if p[3] is not None])
def test_programs_match_numpy(name, f, args, ref):
    got = needle.jit(f)(*args)
    want = ref(*[np.asarray(a, np.float64) if a.dtype.kind == "f" else a for a in args])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_mlp_gradient_matches_central_differences():
    g = np.asarray(needle.jit(lambda w: needle.grad(mlp_loss)(w, X, B))(W), np.float64)

    def loss64(w):                               # the same loss in float64 numpy
        h = np.maximum(X.astype(np.float64) @ w + B, 0)
        z = h @ w
        z = z - z.max(1, keepdims=True)
        return ((z - np.log(np.exp(z).sum(1, keepdims=True))) * X).sum()
    w64, eps, num = W.astype(np.float64), 1e-6, np.zeros(W.shape)
    for i in np.ndindex(*W.shape):
        d = np.zeros(W.shape)
        d[i] = eps
        num[i] = (loss64(w64 + d) - loss64(w64 - d)) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=2e-3, atol=2e-3)


def test_kept_emissions_go_with_the_fused_graph():
    backend = CpuBackend()
    fused = fuse(_optimised(layernorm, (X, B, B)), backend)
    subs = list(_groups(fused.graph))
    backend.emit(subs[0], "kernel")
    del fused, subs
    gc.collect()
    assert len(backend.emissions.kept) == 0     # weakly kept: nothing outlives the graph


def _source(emitter_cls, f, args):
    fused = fuse(_optimised(f, args), CpuBackend())
    [sub] = [s for s in _groups(fused.graph) if len(s.eqns) > 1]
    return emitter_cls(sub).module().source


def test_cpu_strategies_sit_on_the_neutral_emitter_cuda_has_none():
    assert issubclass(KernelEmitter, Emitter) and issubclass(CudaKernelEmitter, Emitter)
    assert not issubclass(CudaKernelEmitter, KernelEmitter)
    # a column sum staged through a temporary; float max / min as ordered integers
    col = (lambda x: x - x.mean(axis=0), (X,))
    mx = (lambda x: nnp.max(x, axis=1) - nnp.min(x, axis=1), (X,))
    assert "np.empty(" in _source(KernelEmitter, *col)
    assert "_f2i(" in _source(KernelEmitter, *mx)
    assert "np.empty(" not in _source(CudaKernelEmitter, *col)
    assert "_f2i(" not in _source(CudaKernelEmitter, *mx)
