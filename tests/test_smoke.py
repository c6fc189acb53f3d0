"""End-to-end: a jitted function matches numpy."""
import numpy as np

import needle
import needle.numpy as nnp


def test_tanh_matmul_sum():
    @needle.jit
    def f(x, w, b):
        return nnp.tanh(x @ w + b).sum(axis=1)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    w = rng.standard_normal((5, 3)).astype(np.float32)
    b = rng.standard_normal((3,)).astype(np.float32)
    np.testing.assert_allclose(f(x, w, b), np.tanh(x @ w + b).sum(1), rtol=1e-5, atol=1e-6)
