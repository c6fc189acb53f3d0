"""A CPU kernel that only swaps an input's last two axes runs in square
tiles (codegen/cpu/emit.py `_tiled_transpose`): values against numpy for
shapes that are and are not multiples of the tile, batched or not, every
dtype, rows split across threads, in a scan body, and under
grad (whose backward transposes)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import needle
import needle.numpy as nnp
from needle import lax
from needle.codegen.cpu import emit as cpu_emit

from helpers import jit

DTYPES = [np.float32, np.float64, np.int32, np.bool_]


@st.composite
def cases(draw):
    nd = draw(st.integers(2, 4))
    shape = tuple(draw(st.integers(0 if k >= nd - 2 else 1, 4 if k < nd - 2 else 40))
                  for k in range(nd))
    return shape, draw(st.sampled_from(DTYPES)), draw(st.integers(0, 2**31 - 1))


def _value(shape, dtype, seed):
    r = np.random.default_rng(seed)
    return (r.standard_normal(shape) * 3).astype(dtype)


def _check(shape, dtype, seed):
    x = _value(shape, dtype, seed)
    got = jit(lambda a: nnp.swapaxes(a, -1, -2))(x)
    np.testing.assert_array_equal(got, np.swapaxes(x, -1, -2))


@pytest.mark.on_device
@settings(max_examples=40, deadline=None)
@given(cases())
def test_swapping_the_last_two_axes(case):
    _check(*case)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])   # same config for all
@given(cases())
def test_rows_split_on_threads(config, case):
    config.update("parallel_min_size", 1)
    config.update("num_threads", 3)
    _check(*case)


def test_the_kernel_runs_in_tiles():
    x = np.ones((40, 33), np.float32)
    text = needle.jit(lambda a: a.T).lower(x).as_text("kernels")
    body = text[text.index("def kernel("):]
    assert f"range(lo, hi, {cpu_emit.TRANSPOSE_TILE})" in body, body
    np.testing.assert_array_equal(needle.jit(lambda a: a.T)(x), x.T)


def test_other_permutations_and_fused_transposes_are_untouched():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for f, want in [(lambda a: nnp.transpose(a, (1, 0, 2)), np.transpose(x, (1, 0, 2))),
                    (lambda a: nnp.transpose(a, (2, 0, 1)), np.transpose(x, (2, 0, 1))),
                    (lambda a: nnp.swapaxes(a, 1, 2) * 2.0, np.swapaxes(x, 1, 2) * 2)]:
        text = needle.jit(f).lower(x).as_text("kernels")
        assert "rb_" not in text
        np.testing.assert_array_equal(jit(f)(x), want)


def test_inside_a_scan_body():
    r = np.random.default_rng(0)
    c0 = r.standard_normal((20, 20)).astype(np.float32)
    xs = r.standard_normal((5, 20, 20)).astype(np.float32)

    def f(c0, xs):
        def body(c, x):
            t = c.T                 # stored as a ys: a kernel of its own, written in place
            return nnp.tanh(t @ x), t
        return lax.scan(body, c0, xs)

    assert "rb_" in needle.jit(f).lower(c0, xs).as_text("kernels")
    c, ys = jit(f)(c0, xs)
    want_c, want_ys = c0.astype(np.float64), []
    for x in xs:                    # float64 reference; needle's steps run in float32
        t = want_c.T
        want_ys.append(t)
        want_c = np.tanh(t @ x)
    np.testing.assert_allclose(c, want_c, rtol=0, atol=3e-5)
    np.testing.assert_allclose(ys, np.stack(want_ys), rtol=0, atol=3e-5)


def test_gradient_through_transposes():
    r = np.random.default_rng(1)
    a = r.standard_normal((17, 35))
    b = r.standard_normal((17, 35))

    def loss(a):
        return nnp.sum(nnp.tanh(a.T @ b) ** 2)

    g = jit(needle.grad(loss))(a)
    eps = 1e-6
    fd = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        ap, am = a.copy(), a.copy()
        ap[i] += eps
        am[i] -= eps
        fd[i] = (np.sum(np.tanh(ap.T @ b) ** 2) - np.sum(np.tanh(am.T @ b) ** 2)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6)
