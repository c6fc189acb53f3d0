"""Equality tests read stored values (passes/exact_compare.py): the gradient
masks of max / min (over an axis, and elementwise) compare a value with
something computed from it; fusion must not hand the two sides copies that
fastmath kernels may round differently. Checked on the graphs (what is
stored) and on values (against the numpy interpreter and float64 finite
differences)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import needle
import needle.nn as nnn
import needle.numpy as nnp
from needle.ir import run_numpy
from needle.passes.exact_compare import exact_values

from helpers import jit


def _stored(f, *args):
    """(Vars the rule pins in the graph fusion saw, Vars the fused graph's
    top-level steps store)."""
    lo = needle.jit(f).lower(*args)
    before, fused = lo._graphs["dce"], lo._graphs["fused"]
    pinned = exact_values(before, lambda e: e.prim.name == "dot_general")
    outs = {v for e in fused.eqns for v in e.outs}
    return pinned, outs


def _kernel_tests_share_no_computed_value(fused):
    """No kernel computes, inside itself, a value both sides of one of its
    equality tests are computed from."""
    for e in fused.eqns:
        if e.prim.name != "kernel":
            continue
        sub = e.params["graph"]
        sub = getattr(sub, "graph", sub)
        if exact_values(sub, lambda _: False):
            return False
    return True


def _max_grad_of_normalized(x):
    q = x / nnp.sum(nnp.abs(x), axis=-1, keepdims=True)
    return nnp.sum(nnp.max(q, axis=-1) * 1.5) + nnp.sum(nnp.min(q * 0.3, axis=0))


def test_the_compared_value_is_stored_once():
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    g = needle.grad(_max_grad_of_normalized)
    pinned, outs = _stored(g, x)
    assert pinned, "max's gradient mask compares q with max(q): q must be pinned"
    assert pinned <= outs
    assert _kernel_tests_share_no_computed_value(needle.jit(g).lower(x)._graphs["fused"])


def test_self_compare_and_literal_compare_pin_nothing():
    # x != x (isnan) reads one copy; a test against a literal shares nothing
    def f(x):
        y = nnp.tanh(x) * 2.0
        return nnp.where(nnp.isnan(y), 0.0, y) + (y == 0.5)
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    pinned, _ = _stored(f, x)
    assert not pinned
    assert needle.jit(f).lower(x).kernel_count == 1


def _fd(f, x, eps=1e-6):
    x = x.astype(np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        g[i] = (float(f(x + d)) - float(f(x - d))) / (2 * eps)
    return g


@pytest.mark.on_device
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=3),
       axis=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_extremum_gradients_match_interpreter(shape, axis, seed):
    axis = axis % len(shape)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) + 0.1

    def f(x):
        q = x / (nnp.sum(x * x, axis=axis, keepdims=True) + 1.0)
        r = nnp.reshape(q, tuple(reversed(q.shape)))
        return (nnp.sum(nnp.max(q, axis=axis) ** 2) + nnp.sum(nnp.min(r, axis=0))
                + nnp.sum(nnp.maximum(q, q * 0.5 + 0.01)))
    g = needle.grad(f)
    cg = needle.make_ir(g)(x)
    want = run_numpy(cg.graph, cg.consts, [x])[0]
    np.testing.assert_allclose(jit(g)(x), want, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(g(x), want, rtol=2e-4, atol=2e-5)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(jit(g)(x64), _fd(f, x64), rtol=1e-5, atol=1e-7)


@pytest.mark.on_device
@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_max_pool_gradient_of_a_computed_input(padding):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 5, 3))
    s = rng.standard_normal(3)

    def f(x):
        y = nnn.relu(x * s + 0.1)
        return nnp.sum(nnn.max_pool(y, (2, 2), (1, 1), padding) ** 2)
    np.testing.assert_allclose(jit(needle.grad(f))(x), _fd(f, x), rtol=1e-5, atol=1e-7)
    g = needle.grad(f)
    x32 = x.astype(np.float32)
    cg = needle.make_ir(g)(x32)
    want = run_numpy(cg.graph, cg.consts, [x32])[0]
    np.testing.assert_allclose(jit(g)(x32), want, rtol=2e-4, atol=2e-5)
