"""The runtime's memory: pooled result buffers, the intermediate-release
plan, and donate_argnums."""
import gc

import numpy as np

import needle
import needle.numpy as nnp
from needle.runtime import memory

N = 1 << 17          # 512 KiB of float32: above the pool's threshold


def test_dropped_results_are_reused():
    f = needle.jit(lambda x: x * 2.0 + 1.0)
    x = np.ones(N, np.float32)
    y = f(x)
    _, _, reused0, fresh0 = memory.pool_info()
    for _ in range(5):
        y = f(x)                      # the previous y is dropped on rebinding
    _, _, reused1, fresh1 = memory.pool_info()
    assert fresh1 - fresh0 <= 1 and reused1 - reused0 >= 4
    np.testing.assert_array_equal(y, 3.0)


def test_live_results_are_never_overwritten():
    f = needle.jit(lambda x, s: x * s)
    x = np.ones(N, np.float32)
    ys = [f(x, float(k)) for k in range(4)]
    view = f(x, 9.0)[::2]             # a view keeps its block alive too
    ys.append(f(x, 5.0))
    gc.collect()
    for k in range(4):
        np.testing.assert_array_equal(ys[k], k)
    np.testing.assert_array_equal(view, 9.0)
    np.testing.assert_array_equal(ys[4], 5.0)


def test_intermediates_are_released_within_a_call():
    # a matmul between two kernels: the chain of intermediates needs fewer
    # blocks than it has steps, since each is released after its last reader.
    def f(x, w):
        h = nnp.tanh(x @ w)
        h = nnp.tanh(h @ w)
        return nnp.tanh(h @ w).sum()
    x = np.ones((512, 256), np.float32) * 0.01
    w = np.eye(256, dtype=np.float32)
    g = needle.jit(f)
    want = np.tanh(np.tanh(np.tanh(x @ w) @ w) @ w).sum()
    for _ in range(3):
        np.testing.assert_allclose(g(x, w), want, rtol=1e-4)  # float32 sums of 131072 terms


def test_donated_argument_buffer_becomes_the_result():
    step = needle.jit(lambda p, g: p - 0.5 * g, donate_argnums=(0,))
    p = np.ones(N, np.float32)
    g = np.full(N, 2.0, np.float32)
    out = step(p, g)
    assert np.shares_memory(out, p)
    np.testing.assert_array_equal(out, 0.0)
    plain = needle.jit(lambda p, g: p - 0.5 * g)
    p2 = np.ones(N, np.float32)
    assert not np.shares_memory(plain(p2, g), p2)


def test_donation_is_skipped_when_unsafe():
    # The donated input is read at other positions (a reversal): no aliasing.
    f = needle.jit(lambda p: nnp.flip(p, 0) + p, donate_argnums=0)
    p = np.arange(N, dtype=np.float32)
    want = p[::-1] + p
    out = f(p.copy())
    np.testing.assert_array_equal(out, want)
