"""passes/loop_operands.py (part of the 'hoisted' stage): a scan body's
product by a constant matrix's transpose (`g @ W.T`) reads a transposed
copy made once before the loop (BLAS's NN kernel instead of NT).

Pinned: the rewrite fires on an RNN's gradient (the reverse scan's body
product reads a new constant with its first axis contracted, a transpose
before the loop) and not on a one-step scan; values and gradients equal
float64 numpy loops and central differences, eagerly and under jit; a
body reading W both ways, and W.T products of several shapes (hypothesis).
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import needle
import needle.numpy as nnp
from needle import lax

from helpers import jit

rng = np.random.default_rng(5)


def _rnn_loss(w, u, xs):
    def cell(h, x):
        h = nnp.tanh(x @ u + h @ w)
        return h, h
    h0 = nnp.zeros((xs.shape[1], w.shape[0]), xs.dtype)
    h, hs = lax.scan(cell, h0, xs)
    return nnp.sum(hs * hs) * 0.5 + nnp.sum(h)


def _rnn_loss_np(w, u, xs):
    h = np.zeros((xs.shape[1], w.shape[0]))
    total = 0.0
    for x in xs:
        h = np.tanh(x @ u + h @ w)
        total += 0.5 * np.sum(h * h)
    return total + np.sum(h)


def _fd(f, args, k, eps=1e-6):
    a = [np.asarray(x, np.float64) for x in args]
    g = np.zeros_like(a[k])
    for i in np.ndindex(a[k].shape):
        hi, lo = [x.copy() for x in a], [x.copy() for x in a]
        hi[k][i] += eps
        lo[k][i] -= eps
        g[i] = (f(*hi) - f(*lo)) / (2 * eps)
    return g


def _body_dots(graph, reverse):
    scans = [e for e in graph.eqns if e.prim.name == "scan" and e.params["reverse"] == reverse]
    assert len(scans) == 1
    body = scans[0].params["body"].graph
    return scans[0], [e for e in body.eqns if e.prim.name == "dot_general"]


def test_an_rnn_gradient_multiplies_by_a_pretransposed_matrix():
    w = rng.standard_normal((6, 6)) * 0.3
    u = rng.standard_normal((4, 6)) * 0.3
    xs = rng.standard_normal((5, 3, 4))
    g = needle.grad(_rnn_loss, argnums=(0, 1))
    lo = needle.jit(g).lower(w, u, xs)
    hoisted = lo._graphs["hoisted"]
    scan, dots = _body_dots(hoisted, reverse=True)
    nc = scan.params["num_consts"]
    consts = set(scan.params["body"].graph.invars[:nc])
    to_const = [d for d in dots if d.inputs[1] in consts]
    assert to_const, "the reverse body multiplies by W_hh"
    for d in to_const:
        (lc, rc), _ = d.params["dimension_numbers"]
        assert tuple(rc) == (0,), "the body reads W.T made before the loop (NN)"
    assert any(e.prim.name == "transpose" for e in hoisted.eqns)
    got = needle.jit(g)(w, u, xs)
    for k in (0, 1):
        np.testing.assert_allclose(got[k], _fd(_rnn_loss_np, (w, u, xs), k),
                                   rtol=1e-6, atol=1e-8)
    eager = g(w, u, xs)
    np.testing.assert_allclose(eager[0], got[0], rtol=1e-10)


def test_a_one_step_scan_is_left_alone():
    w = rng.standard_normal((6, 6)) * 0.3
    u = rng.standard_normal((4, 6)) * 0.3
    xs = rng.standard_normal((1, 3, 4))
    g = needle.grad(_rnn_loss)
    hoisted = needle.jit(g).lower(w, u, xs)._graphs["hoisted"]
    assert not any(e.prim.name == "transpose" and e.inputs[0].aval.shape == (6, 6)
                   for e in hoisted.eqns)
    np.testing.assert_allclose(needle.jit(g)(w, u, xs), _fd(_rnn_loss_np, (w, u, xs), 0),
                               rtol=1e-6, atol=1e-8)


@pytest.mark.on_device
@given(m=st.integers(1, 5), k=st.integers(1, 6), n=st.integers(1, 6), t=st.integers(2, 4),
       seed=st.integers(0, 2**16))
def test_w_and_w_transposed_in_one_body(m, k, n, t, seed):
    r = np.random.default_rng(seed)
    w = r.standard_normal((n, k)).astype(np.float32)          # read as W.T and as W
    xs = r.standard_normal((t, m, k)).astype(np.float32)

    def f(w, xs):
        def body(c, x):
            y = nnp.tanh(x @ w.T + c)                            # (m, n)
            return y * 0.5, y @ w                                # (m, k)
        c, ys = lax.scan(body, nnp.zeros((m, n), np.float32), xs)
        return c, ys

    c, ys = jit(f)(w, xs)
    cn, yn = np.zeros((m, n)), []
    for x in xs.astype(np.float64):
        y = np.tanh(x @ w.T.astype(np.float64) + cn)
        cn = y * 0.5
        yn.append(y @ w)
    np.testing.assert_allclose(c, cn, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(ys, np.stack(yn), rtol=2e-5, atol=2e-6)
    gw = jit(needle.grad(lambda w: nnp.sum(f(w, xs)[1] ** 2)))(w)
    gw_eager = needle.grad(lambda w: nnp.sum(f(w, xs)[1] ** 2))(w)
    np.testing.assert_allclose(gw, gw_eager, rtol=2e-4, atol=2e-5)
