"""Float matrix products on the direct convolution's blocked kernel
(codegen/cpu/gemm.py, issue 13's LSTM step): which products take it, and
their values against numpy in float64 for random shapes (rows off the
8-row block, every vector width the rule accepts), as a plain call, as a
3-d operand reshaped to a matrix, inside a scan body writing into its
destination, under grad, and with rows split across threads.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import needle
import needle.numpy as nnp
from needle import lax

from helpers import DEVICE

pytestmark = pytest.mark.skipif(DEVICE != "cpu", reason="the CPU's library calls")
rng = np.random.default_rng(15)


def tol(dtype):
    return dict(rtol=1e-4, atol=1e-4) if np.dtype(dtype) == np.float32 else \
        dict(rtol=1e-11, atol=1e-11)


@settings(deadline=None)
@given(st.integers(1, 40), st.integers(1, 70), st.sampled_from([8, 16, 24, 48, 64, 5, 12]),
       st.sampled_from([np.float32, np.float64]))
def test_products_against_numpy(m, k, n, dtype):
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    got = needle.jit(lambda a, b: a @ b)(a, b)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, **tol(dtype))


def test_which_products_take_the_kernel():
    from needle.codegen.cpu.conv import fwd_source
    from needle.runtime import kernel_cache
    kernel_cache.clear_memory_cache()
    a = np.ones((20, 30), np.float32)
    needle.jit(lambda a, b: a @ b)(a, np.ones((30, 32), np.float32))
    assert fwd_source(np.float32, 32).key in kernel_cache._loaded
    kernel_cache.clear_memory_cache()
    # N = 10 (vectors of 2 floats), a transposed operand, a y over the size
    # limit: BLAS
    needle.jit(lambda a, b: a @ b)(a, np.ones((30, 10), np.float32))
    needle.jit(lambda a, b: a.T @ b)(np.ones((30, 20), np.float32), np.ones((30, 16), np.float32))
    needle.jit(lambda a, b: a @ b)(np.ones((4, 1024), np.float32),
                                   np.ones((1024, 512), np.float32))
    assert not any(kernel_cache._loaded.get(fwd_source(np.float32, n).key) for n in (16, 512))


def test_three_d_operand_reshaped_to_a_matrix():
    x = rng.standard_normal((3, 5, 7)).astype(np.float32)
    w = rng.standard_normal((7, 16)).astype(np.float32)
    got = needle.jit(lambda x, w: nnp.tensordot(x, w, axes=1))(x, w)
    np.testing.assert_allclose(got, np.tensordot(x.astype(np.float64), w, axes=1), **tol(x.dtype))


def test_in_a_scan_body_and_its_gradient():
    """h @ W every step (the body writes into its carry / stacked output),
    and the reverse scan's products, against a numpy loop and finite
    differences."""
    xs = rng.standard_normal((6, 11, 16))
    w = rng.standard_normal((16, 16)) * 0.3

    def f(w, xs):
        def body(h, x):
            h = nnp.tanh(h @ w + x)
            return h, h
        h, hs = lax.scan(body, nnp.zeros((11, 16), nnp.float64), xs)
        return nnp.sum(hs ** 2)

    def f_np(w):
        h, tot = np.zeros((11, 16)), 0.0
        for x in xs:
            h = np.tanh(h @ w + x)
            tot += np.sum(h ** 2)
        return tot
    np.testing.assert_allclose(needle.jit(f)(w, xs), f_np(w), rtol=1e-10)
    g = needle.jit(needle.grad(f))(w, xs)
    eps = 1e-6
    fd = np.zeros_like(w)
    for i in np.ndindex(*w.shape):
        e = np.zeros_like(w)
        e[i] = eps
        fd[i] = (f_np(w + e) - f_np(w - e)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6)


def test_rows_split_on_threads():
    from needle.ir.config import config
    a = rng.standard_normal((43, 20)).astype(np.float32)
    b = rng.standard_normal((20, 32)).astype(np.float32)
    old = config.num_threads, config.parallel_min_size
    try:
        needle.config.update("num_threads", 3)
        needle.config.update("parallel_min_size", 1)
        got = needle.jit(lambda a, b: a @ b + 0.0)(a, b)
    finally:
        needle.config.update("num_threads", old[0])
        needle.config.update("parallel_min_size", old[1])
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, **tol(a.dtype))
