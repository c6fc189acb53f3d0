"""The `accumulated` pass (passes/scan_accumulate.py): a scan carry updated
only as `acc + dot(x_t, y_t)` (or `+ reduce_sum(v_t)`) becomes one product
(one reduction) over the stacked time axis after the loop.

Pinned: it fires on an LSTM's gradient (the reverse scan's body keeps one
matrix product instead of two, W_hh's gradient is one product after the
loop); it leaves a carry alone that the body reads elsewhere (by a ys, by
another carry); values and gradients equal float64 numpy loops and central
differences, and the unrewritten program (the numpy interpreter on the
traced graph) within float32 tolerance: the sum over steps is re-associated.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import needle
import needle.numpy as nnp
from helpers import jit
from needle import lax
from needle.ir.interpreter import run_numpy

F32 = dict(rtol=2e-4, atol=2e-5)        # re-associated float32 sums over T*B terms


def _scans(graph):
    return [e for e in graph.eqns if e.prim.name == "scan"]


def _dots(graph):
    return [e for e in graph.eqns if e.prim.name == "dot_general"]


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


# --- an LSTM: the pass fires on its gradient --------------------------------------

def _lstm_loss(p, xs):
    """Mean of the last hidden state and of all outputs; xs (T, B, D)."""
    H = p["w_hh"].shape[0]

    def cell(carry, x):
        h, c = carry
        g = x @ p["w_ih"] + h @ p["w_hh"] + p["b"]
        i, f = needle.nn.sigmoid(g[:, :H]), needle.nn.sigmoid(g[:, H:2 * H])
        u, o = nnp.tanh(g[:, 2 * H:3 * H]), needle.nn.sigmoid(g[:, 3 * H:])
        c = f * c + i * u
        h = o * nnp.tanh(c)
        return (h, c), h
    h0 = nnp.zeros((xs.shape[1], H), xs.dtype)
    (h, _), hs = lax.scan(cell, (h0, h0), xs)
    return (hs * hs).mean() + h.sum()


def _lstm_loss_np(p, xs):
    H = p["w_hh"].shape[0]
    h = c = np.zeros((xs.shape[1], H))
    hs = []
    for x in xs:
        g = x @ p["w_ih"] + h @ p["w_hh"] + p["b"]
        i, f, u, o = _sig(g[:, :H]), _sig(g[:, H:2 * H]), np.tanh(g[:, 2 * H:3 * H]), \
            _sig(g[:, 3 * H:])
        c = f * c + i * u
        h = o * np.tanh(c)
        hs.append(h)
    hs = np.stack(hs)
    return (hs * hs).mean() + h.sum()


def _central(fn, p, eps=1e-6):
    """Central differences of fn(p) (float64) for every entry of every array of p."""
    g = {}
    for k, v in p.items():
        d = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            up, dn = dict(p), dict(p)
            up[k], dn[k] = v.copy(), v.copy()
            up[k][idx] += eps
            dn[k][idx] -= eps
            d[idx] = (fn(up) - fn(dn)) / (2 * eps)
        g[k] = d
    return g


def _lstm_params(D, H, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {"w_ih": rng.uniform(-0.5, 0.5, (D, 4 * H)).astype(dtype),
            "w_hh": rng.uniform(-0.5, 0.5, (H, 4 * H)).astype(dtype),
            "b": rng.uniform(-0.5, 0.5, 4 * H).astype(dtype)}


def test_fires_on_an_lstm_gradient_one_product_per_step_left():
    p = _lstm_params(3, 4, np.float32)
    xs = np.random.default_rng(1).standard_normal((5, 2, 3)).astype(np.float32)
    lo = needle.jit(needle.grad(_lstm_loss)).lower(p, xs)
    before, after = lo._graphs["hoisted"], lo._graphs["dce"]
    (rev_before,) = [e for e in _scans(before) if e.params["reverse"]]
    (rev_after,) = [e for e in _scans(after) if e.params["reverse"]]
    # before: x_t^T @ dgates and h_{t-1}^T @ dgates accumulated in carries (W_ih's
    # and W_hh's gradients), dgates summed into b's, and dgates @ W_hh^T, per step
    assert len(_dots(rev_before.params["body"].graph)) == 3
    assert rev_before.params["num_carry"] == 5
    # after: only dgates @ W_hh^T; the carries left are h's and c's cotangents
    assert len(_dots(rev_after.params["body"].graph)) == 1
    assert rev_after.params["num_carry"] == 2
    # after the loop: one (T*B, D) x (T*B, 4H) and one (T*B, H) x (T*B, 4H) product
    assert len(_dots(after)) == len(_dots(before)) + 2
    assert sorted(e.outs[0].aval.shape for e in _dots(after) if
                  e.params["dimension_numbers"].contracting == ((0, 1), (0, 1))) == \
        [(3, 16), (4, 16)]
    # and the compiled step: one BLAS call less per reverse step
    fused = [e for e in _scans(lo._graphs["fused"]) if e.params["reverse"]][0]
    assert len(_dots(fused.params["body"].graph)) == 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lstm_gradient_equals_central_differences(dtype):
    p64 = _lstm_params(3, 4, np.float64, seed=2)
    xs64 = np.random.default_rng(3).standard_normal((6, 2, 3))
    want = _central(lambda q: _lstm_loss_np(q, xs64), p64)
    p = {k: v.astype(dtype) for k, v in p64.items()}
    xs = xs64.astype(dtype)
    val, got = jit(needle.value_and_grad(_lstm_loss))(p, xs)
    tol = dict(rtol=1e-7, atol=1e-8) if dtype == np.float64 else F32
    np.testing.assert_allclose(val, _lstm_loss_np(p64, xs64), **tol)
    for k in p:
        assert got[k].dtype == dtype
        np.testing.assert_allclose(got[k], want[k], err_msg=k, **tol)


# --- random programs: accumulations forward and reverse, zero or given init -------

def _program(reverse, zero_init):
    def f(W, xs, h0, acc0, bacc0):
        B, H = h0.shape
        if zero_init:
            acc0, bacc0 = nnp.zeros((H, H), xs.dtype), nnp.zeros((H,), xs.dtype)

        def body(carry, x):
            h, acc, bacc = carry
            g = nnp.tanh(x + h @ W)
            acc = acc + h.T @ g             # a carry (h) and a body value (g): stacked
            bacc = bacc + g.sum(axis=0)     # a reduction of a body value
            return (g, acc, bacc), g * 2.0
        (h, acc, bacc), ys = lax.scan(body, (h0, acc0, bacc0), xs, reverse=reverse)
        return h, acc, bacc, ys
    return f


def _program_np(W, xs, h0, acc0, bacc0, reverse, zero_init):
    if zero_init:
        acc0, bacc0 = np.zeros_like(acc0), np.zeros_like(bacc0)
    h, acc, bacc = h0, acc0, bacc0
    ys = [None] * len(xs)
    for t in (reversed(range(len(xs))) if reverse else range(len(xs))):
        g = np.tanh(xs[t] + h @ W)
        acc = acc + h.T @ g
        bacc = bacc + g.sum(axis=0)
        h = g
        ys[t] = 2.0 * g
    return h, acc, bacc, np.stack(ys)


def _inputs(T, B, H, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s) * 0.5).astype(dtype)
            for s in ((H, H), (T, B, H), (B, H), (H, H), (H,))]


@pytest.mark.on_device
@given(T=st.integers(1, 5), B=st.integers(1, 3), H=st.integers(1, 4),
       reverse=st.booleans(), zero_init=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_random_accumulations_equal_numpy_and_the_unrewritten_program(T, B, H, reverse,
                                                                       zero_init, seed):
    f = _program(reverse, zero_init)
    args = _inputs(T, B, H, seed)
    lo = needle.jit(f).lower(*args)
    (scan,) = _scans(lo._graphs["dce"])
    assert scan.params["num_carry"] == 1            # acc and bacc left the loop
    assert len(_dots(scan.params["body"].graph)) == 1
    got = jit(f)(*args)
    want = _program_np(*[a.astype(np.float64) for a in args], reverse, zero_init)
    traced = needle.make_ir(f)(*args)
    plain = run_numpy(traced.graph, traced.consts, args)   # the loop, step by step
    for g, w, q in zip(got, want, plain, strict=True):
        np.testing.assert_allclose(g, w, **F32)
        np.testing.assert_allclose(g, q, **F32)


@pytest.mark.on_device
@given(T=st.integers(1, 4), H=st.integers(1, 3), reverse=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_random_gradients_equal_central_differences(T, H, reverse, seed):
    B = 2
    f = _program(reverse, False)
    args = _inputs(T, B, H, seed, np.float64)

    def loss(W, xs, h0, acc0, bacc0):
        h, acc, bacc, ys = f(W, xs, h0, acc0, bacc0)
        return (h * h).sum() + (acc * acc).sum() + bacc.sum() + (ys * ys).mean()

    def loss_np(p):
        h, acc, bacc, ys = _program_np(p["W"], p["xs"], p["h0"], p["acc0"], p["bacc0"],
                                       reverse, False)
        return (h * h).sum() + (acc * acc).sum() + bacc.sum() + (ys * ys).mean()

    names = ["W", "xs", "h0", "acc0", "bacc0"]
    got = jit(needle.grad(loss, argnums=(0, 1, 2, 3, 4)))(*args)
    want = _central(loss_np, dict(zip(names, args)))
    for k, g in zip(names, got):
        np.testing.assert_allclose(g, want[k], rtol=1e-6, atol=1e-7, err_msg=k)


# --- where it must not fire, and partial moves --------------------------------------

def _body_reads(read):
    def f(W, xs, h0, acc0):
        def body(carry, x):
            h, acc = carry
            g = nnp.tanh(x + h @ W)
            if read == "carry":                 # another carry reads acc
                g = g + acc[0, 0]
            new = acc + h.T @ g
            y = new.sum() if read == "ys" else g.sum()    # a ys reads the new acc
            return (g, new), y
        return lax.scan(body, (h0, acc0), xs)
    return f


@pytest.mark.parametrize("read", ["carry", "ys"])
def test_a_carry_read_elsewhere_in_the_body_stays(read):
    W, xs, h0, acc0, _ = _inputs(4, 2, 3, seed=5)
    f = _body_reads(read)
    lo = needle.jit(f).lower(W, xs, h0, acc0)
    (before,), (after,) = _scans(lo._graphs["hoisted"]), _scans(lo._graphs["accumulated"])
    assert after is before                      # the scan untouched
    assert len(_dots(after.params["body"].graph)) == 2
    got = jit(f)(W, xs, h0, acc0)
    traced = needle.make_ir(f)(W, xs, h0, acc0)
    want = run_numpy(traced.graph, traced.consts, [W, xs, h0, acc0])
    for g, w in zip(needle.tree_util.tree_leaves(got), want, strict=True):
        np.testing.assert_allclose(g, w, **F32)


def test_other_terms_stay_in_the_carry_and_the_product_moves():
    W, xs, h0, acc0, _ = _inputs(5, 2, 3, seed=7)

    def f(W, xs, h0, acc0):
        def body(carry, x):
            h, acc = carry
            g = nnp.tanh(x + h @ W)
            return (g, acc + h.T @ g + nnp.sin(W)), g     # sin(W): elementwise, stays
        return lax.scan(body, (h0, acc0), xs)

    (scan,) = _scans(needle.jit(f).lower(W, xs, h0, acc0)._graphs["dce"])
    assert scan.params["num_carry"] == 2 and len(_dots(scan.params["body"].graph)) == 1
    (h, acc), ys = jit(f)(W, xs, h0, acc0)
    W64, xs64, h64, a64 = (a.astype(np.float64) for a in (W, xs, h0, acc0))
    for x in xs64:
        g = np.tanh(x + h64 @ W64)
        a64 = a64 + h64.T @ g + np.sin(W64)
        h64 = g
    np.testing.assert_allclose(h, h64, **F32)
    np.testing.assert_allclose(acc, a64, **F32)


def test_a_loop_invariant_operand_is_left_in_the_loop():
    W, xs, h0, acc0, _ = _inputs(3, 2, 3, seed=9)

    def f(W, xs, h0, acc0):
        def body(carry, x):
            h, acc = carry
            g = nnp.tanh(x + h @ W)
            return (g, acc + W @ nnp.sin(W)), g     # invariant: hoisting's business
        return lax.scan(body, (h0, acc0), xs)

    lo = needle.jit(f).lower(W, xs, h0, acc0)
    assert _scans(lo._graphs["accumulated"])[0] is _scans(lo._graphs["hoisted"])[0]


def test_nested_scans_inner_accumulation_moves():
    W, xs, h0, acc0, _ = _inputs(3, 2, 3, seed=11)
    xss = np.stack([xs, xs * 0.5])                  # (2, T, B, H)

    def f(W, xss, h0, acc0):
        def outer(acc, xs):
            def inner(carry, x):
                h, a = carry
                g = nnp.tanh(x + h @ W)
                return (g, a + h.T @ g), None
            (h, a), _ = lax.scan(inner, (h0, acc), xs)
            return a, h.sum()
        return lax.scan(outer, acc0, xss)

    lo = needle.jit(f).lower(W, xss, h0, acc0)
    (outer,) = _scans(lo._graphs["accumulated"])
    (inner,) = _scans(outer.params["body"].graph)
    assert inner.params["num_carry"] == 1
    acc, sums = jit(f)(W, xss, h0, acc0)
    a64, W64 = acc0.astype(np.float64), W.astype(np.float64)
    want_sums = []
    for xs_ in xss.astype(np.float64):
        h = h0.astype(np.float64)
        for x in xs_:
            g = np.tanh(x + h @ W64)
            a64 = a64 + h.T @ g
            h = g
        want_sums.append(h.sum())
    np.testing.assert_allclose(acc, a64, **F32)
    np.testing.assert_allclose(sums, want_sums, **F32)


@pytest.mark.on_device
def test_a_loop_without_products_carry_stacked_sums_move():
    """No library call in the body (one generated loop on CPU): the sum of a
    value the scan outputs per step anyway (g) moves out as one reduction;
    sums of values it does not stack (h_{t-1}, x * g) stay: stacking them
    would cost T times their size for a cheap per-step sum."""
    rng = np.random.default_rng(13)
    xs, h0 = rng.standard_normal((6, 3, 4)).astype(np.float32), \
        rng.standard_normal((3, 4)).astype(np.float32)
    w = rng.standard_normal(4).astype(np.float32)

    def f(w, xs, h0):
        def body(carry, x):
            h, s1, s2, s3 = carry
            g = nnp.tanh(x + h * w)
            return (g, s1 + g.sum(axis=0), s2 + h.sum(axis=0), s3 + (x * g).sum(axis=0)), g
        z = nnp.zeros((4,), np.float32)
        return lax.scan(body, (h0, z, z + 1.0, z), xs, reverse=True)

    lo = needle.jit(f).lower(w, xs, h0)
    (scan,) = _scans(lo._graphs["dce"])
    assert scan.params["num_carry"] == 3            # h, and the sums of h and x * g
    assert len(scan.params["body"].graph.outvars) == 4      # no new per-step output
    (h, s1, s2, s3), ys = jit(f)(w, xs, h0)
    h64, a, b, c = h0.astype(np.float64), np.zeros(4), np.ones(4), np.zeros(4)
    ys64 = [None] * len(xs)
    for t in reversed(range(len(xs))):
        x = xs[t].astype(np.float64)
        g = np.tanh(x + h64 * w)
        a, b, c, h64, ys64[t] = a + g.sum(0), b + h64.sum(0), c + (x * g).sum(0), g, g
    for got, want in ((h, h64), (s1, a), (s2, b), (s3, c), (ys, np.stack(ys64))):
        np.testing.assert_allclose(got, want, **F32)


@pytest.mark.on_device
def test_products_with_batch_axes_move():
    """acc[n] += x_t[n]^T @ g_t[n]: the batch axis n stays a batch axis and
    time is contracted with B."""
    rng = np.random.default_rng(17)
    N, T, B, H = 2, 4, 3, 2
    xs = rng.standard_normal((T, N, B, H)).astype(np.float32)
    W = rng.standard_normal((H, H)).astype(np.float32)
    acc0 = rng.standard_normal((N, H, H)).astype(np.float32)

    def f(W, xs, acc0):
        def body(carry, x):
            h, acc = carry
            g = nnp.tanh(x @ W + h)                              # (N, B, H)
            return (g, acc + nnp.einsum("nbh,nbk->nhk", x, g)), None
        return lax.scan(body, (nnp.zeros((N, B, H), np.float32), acc0), xs)[0]

    lo = needle.jit(f).lower(W, xs, acc0)
    (scan,) = _scans(lo._graphs["dce"])
    assert scan.params["num_carry"] == 1
    after = [e for e in _dots(lo._graphs["dce"]) if e.params["dimension_numbers"].batch[0]]
    assert len(after) == 1 and after[0].outs[0].aval.shape == (N, H, H)
    assert after[0].inputs[0].aval.shape[0] == T
    h, want = np.zeros((N, B, H)), acc0.astype(np.float64)
    for x in xs.astype(np.float64):
        h = np.tanh(x @ W.astype(np.float64) + h)
        want = want + np.einsum("nbh,nbk->nhk", x, h)
    got_h, got = jit(f)(W, xs, acc0)
    np.testing.assert_allclose(got_h, h, **F32)
    np.testing.assert_allclose(got, want, **F32)
