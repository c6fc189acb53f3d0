"""An LSTM language model written with `needle.lax.scan` (examples/lstm_scan.py):
its program does not grow with the sequence length, its input projection is
hoisted out of the loop, each step is one BLAS call and one fused gate
kernel, and its loss and gradients equal the same model unrolled with a
Python loop (which needle already differentiates correctly)."""
import importlib.util
import os

import numpy as np
import pytest

import needle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load():
    spec = importlib.util.spec_from_file_location("needle_example_lstm_scan",
                                                  os.path.join(ROOT, "examples", "lstm_scan.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


L = _load()


def _count(graph):
    """Equations of a graph, those of loop bodies and branches included."""
    n = 0
    for e in graph.eqns:
        n += 1
        for v in e.params.values():
            for s in (v if isinstance(v, tuple) else (v,)):
                if hasattr(s, "graph") and hasattr(s.graph, "eqns"):
                    n += _count(s.graph)
    return n


def _tokens(T, B=3, vocab=11, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, (T + 1, B)).astype(np.int32)


def test_training_step_size_does_not_depend_on_length():
    p = L.init_params(11, 8)
    sizes = []
    for T in (10, 1000):
        lo = L.make_step(L.loss).lower(p, _tokens(T))
        sizes.append((_count(lo._graphs["traced"]), _count(lo._graphs["fused"]),
                      lo.kernel_count, lo.library_call_count))
    assert sizes[0] == sizes[1]


def test_unrolled_program_grows_with_length():
    p = L.init_params(11, 8)
    counts = [_count(needle.jit(L.loss_unrolled).lower(p, _tokens(T))._graphs["traced"])
              for T in (3, 6)]
    assert counts[1] > counts[0]


def _scan_eqns(graph):
    return [e for e in graph.eqns if e.prim.name == "scan"]


def test_forward_is_one_hoisted_matmul_then_one_blas_and_one_kernel_per_step():
    p = L.init_params(11, 8)
    xs = np.random.default_rng(1).standard_normal((7, 3, 8)).astype(np.float32)

    def forward(p, xs):
        h0 = needle.numpy.zeros((3, 8), np.float32)
        return needle.lax.scan(lambda c, x: L.cell(p, c, x), (h0, h0), xs)[1]

    fused = needle.jit(forward).lower(p, xs)._graphs["fused"]
    (scan,) = _scan_eqns(fused)
    outside = [e for e in fused.eqns if e.prim.name == "dot_general"]
    assert len(outside) == 1 and outside[0].outs[0].aval.shape == (7, 3, 32)
    body = scan.params["body"].graph
    names = sorted(e.prim.name for e in body.eqns)
    assert names == ["dot_general", "kernel"], names


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_scan_lstm_equals_the_unrolled_loop(jit):
    p = L.init_params(11, 8, seed=3)
    tok = _tokens(5, seed=4)
    vg_scan = needle.value_and_grad(L.loss)
    vg_loop = needle.value_and_grad(L.loss_unrolled)
    if jit:
        vg_scan, vg_loop = needle.jit(vg_scan), needle.jit(vg_loop)
    (v1, g1), (v2, g2) = vg_scan(p, tok), vg_loop(p, tok)
    np.testing.assert_allclose(v1, v2, rtol=1e-5, atol=1e-6)
    for k in p:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_training_reduces_the_loss():
    out = L.main(steps=30, seq=12, batch=4, hidden=16, verbose=False)
    losses = out["losses"]
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def _residual_bytes(loss_fn, p, tokens):
    """Bytes of the values reverse mode stores between the forward and the
    backward program (the linearized primal program's residual outputs)."""
    from needle.passes.autodiff import linearize
    from needle.tracer import pytree
    from needle.tracer.core import trace_to_graph, abstractify
    leaves, tree = pytree.tree_flatten(p)

    def flat(*ls):
        return loss_fn(pytree.tree_unflatten(tree, ls), tokens)
    cg, _ = trace_to_graph(flat, [abstractify(x) for x in leaves])
    lin = linearize(cg, [True] * len(leaves), cts=[np.float32(1)])
    res = lin.primal.graph.outvars[len(lin.primal.graph.outvars) - lin.n_res:]
    return sum(v.aval.size * v.aval.dtype.itemsize for v in res)


def test_checkpoint_stores_less_and_gives_the_same_gradients():
    p = L.init_params(11, 16, seed=5)
    tok = _tokens(40, B=4, seed=6)
    plain = _residual_bytes(L.loss, p, tok)
    remat = _residual_bytes(lambda p, t: L.loss(p, t, remat=True), p, tok)
    assert remat < 0.6 * plain, (remat, plain)
    g1 = needle.jit(needle.grad(L.loss))(p, tok)
    g2 = needle.jit(needle.grad(lambda p, t: L.loss(p, t, remat=True)))(p, tok)
    for k in p:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-4, atol=1e-6, err_msg=k)
