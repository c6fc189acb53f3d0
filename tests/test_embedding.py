"""needle.nn.Embedding (issue 14): the course's layout and init, values
against numpy indexing, the weight gradient against np.add.at (repeated
indices add up), and its program: a gather whose gradient is a scatter_add,
with no one-hot matrix and no matmul."""
import numpy as np
import pytest

import needle
import needle.nn as nn
from helpers import jit


def _idx(shape, n, seed=0):
    return np.random.default_rng(seed).integers(0, n, shape).astype(np.int32)


def test_course_layout_and_values():
    needle.random.seed(0)
    emb = nn.Embedding(50, 6)
    w = emb.weight.numpy()
    assert w.shape == (50, 6) and w.dtype == np.float32
    assert 0.8 < w.std() < 1.2 and abs(w.mean()) < 0.2          # init.randn: N(0, 1)
    x = _idx((7, 3), 50)
    np.testing.assert_array_equal(emb(x), w[x])
    assert emb(x).shape == (7, 3, 6)
    t = emb(needle.Tensor(x.astype(np.float32)))                   # the course's float ids
    assert isinstance(t, needle.Tensor)
    np.testing.assert_array_equal(t.numpy(), w[x])
    with pytest.raises(TypeError, match=r"Embedding.forward: indices must be integers.*bool"):
        emb(np.zeros((2, 2), bool))


@pytest.mark.on_device
def test_weight_gradient_is_a_scatter_add_of_the_cotangent():
    needle.random.seed(1)
    emb = nn.Embedding(5, 3)
    x = np.array([[0, 4, 4], [2, 4, 0]], np.int32)                 # repeats add up
    ct = np.random.default_rng(2).standard_normal((2, 3, 3)).astype(np.float32)
    g = jit(needle.grad(lambda m, x: (m(x) * ct).sum()))(emb, x)
    want = np.zeros((5, 3))
    np.add.at(want, x.reshape(-1), ct.reshape(-1, 3).astype(np.float64))
    np.testing.assert_allclose(g.weight.numpy(), want, rtol=1e-6, atol=1e-6)
    assert not g.weight.numpy()[[1, 3]].any()                      # rows never picked


def _prims(graph, out):
    for e in graph.eqns:
        out.append(e.prim.name)
        for v in e.params.values():
            for s in (v if isinstance(v, tuple) else (v,)):
                if hasattr(s, "graph") and hasattr(s.graph, "eqns"):
                    _prims(s.graph, out)
    return out


def test_gradient_program_is_gather_and_scatter_add_not_one_hot_matmul():
    needle.random.seed(3)
    emb = nn.Embedding(1000, 8)
    x = _idx((20, 4), 1000)
    fwd = _prims(needle.jit(lambda m, x: m(x)).lower(emb, x)._graphs["traced"], [])
    assert "gather" in fwd and "dot_general" not in fwd
    lo = needle.jit(needle.grad(lambda m, x: (m(x) ** 2).sum())).lower(emb, x)
    prims = _prims(lo._graphs["traced"], [])
    assert "scatter_add" in prims
    assert "dot_general" not in prims and "eq" not in prims and "equal" not in prims
    assert lo.library_call_count == 0
