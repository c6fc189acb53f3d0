"""Recompiles stay bounded: sizes and size-derived constants (mean's 1/N, a
float literal) are kernel arguments, so a new batch size or a new constant
traces again but compiles no kernel (README: "sizes are runtime arguments")."""
import numpy as np

import needle
import needle.nn as nnn
import needle.numpy as nnp


def _compiled():
    return needle.cache_info().kernels_compiled


def test_grad_step_over_20_batch_sizes_compiles_its_kernels_once():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 3)).astype(np.float32)

    def loss(w, x, y):
        logp = nnn.log_softmax(nnp.tanh(x @ w), axis=-1)
        return -nnp.mean(nnp.sum(logp * y, axis=-1)) + 0.01 * nnp.mean(x * x)

    step = needle.jit(lambda w, x, y: w - 0.1 * needle.grad(loss)(w, x, y))

    def batch(n):
        x = rng.standard_normal((n, 5)).astype(np.float32)
        return x, np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    step(w, *batch(2))
    before = _compiled()
    for n in range(3, 23):
        x, y = batch(n)
        got = step(w, x, y)
        cg = needle.make_ir(lambda w, x, y: w - 0.1 * needle.grad(loss)(w, x, y))(w, x, y)
        from needle.ir.interpreter import run_numpy
        np.testing.assert_allclose(got, run_numpy(cg.graph, cg.consts, [w, x, y])[0],
                                   rtol=1e-5, atol=1e-6)
    assert _compiled() == before


def test_a_new_float_constant_reuses_the_kernel():
    x = np.linspace(-1, 1, 7, dtype=np.float32)
    outs = []
    needle.jit(lambda x: nnp.tanh(x * 0.5) + 0.25)(x)
    before = _compiled()
    for c in (0.1, 0.2, 1e-3, 3.0, -2.5):
        outs.append(needle.jit(lambda x: nnp.tanh(x * c) + 0.25)(x))
        np.testing.assert_allclose(outs[-1], np.tanh(x * np.float32(c)) + np.float32(0.25),
                                   rtol=1e-6, atol=1e-7)
    assert _compiled() == before


def test_float_literals_keep_their_dtype():
    """A float32 program's literal is a float32 kernel argument: x * 0.1 in
    float32 equals numpy's float32 product, bit for bit."""
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    got = needle.jit(lambda x: (x * 0.1, x + 1e-3))(x)     # (no fma contraction)
    assert got[0].dtype == np.float32
    np.testing.assert_array_equal(got[0], x * np.float32(0.1))
    np.testing.assert_array_equal(got[1], x + np.float32(1e-3))
    x64 = x.astype(np.float64)
    np.testing.assert_array_equal(needle.jit(lambda x: x * 0.1)(x64), x64 * 0.1)
