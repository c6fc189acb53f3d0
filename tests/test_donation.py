"""Donation (donate_argnums) and aliasing: a donated buffer is written in
place only by the output that reads it element for element, never while
another argument still reads it, in the serial and the parallel (prange)
kernel variants; results never share memory with the caller's arrays.
References are the same functions compiled without donation, or numpy."""
import warnings

import numpy as np
import pytest

import needle
import needle.numpy as nnp

rng = np.random.default_rng(0)
SMALL, LARGE = 128, 1 << 17        # serial variant / prange variant (>= 65536 elements)


def _donated(f, n=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return needle.jit(f, donate_argnums=n)


def test_same_array_passed_twice_is_not_written_while_read():
    f = _donated(lambda a, b: (a * 2.0, b.sum()))
    x = np.ones(1000, np.float32)
    np.testing.assert_allclose(f(x, x)[1], 1000.0)
    g = _donated(lambda a, b: a + b[::-1])
    for n in (SMALL, LARGE):
        x = np.arange(n, dtype=np.float32)
        want = x + x[::-1]
        np.testing.assert_array_equal(g(x, x), want)


def test_donated_buffer_shared_with_a_view_argument():
    g = _donated(lambda a, b: (a * 3.0, b.sum()))
    x = np.ones(LARGE, np.float32)
    np.testing.assert_allclose(g(x, x[::2])[1], LARGE // 2)
    np.testing.assert_array_equal(x, 1.0)          # a copy was written, not x


def test_donated_buffer_read_by_a_constant():
    x = np.ones(SMALL, np.float32)
    f = _donated(lambda a: (a * 2.0, nnp.sum(x)))  # x closed over: a constant
    np.testing.assert_allclose(f(x)[1], SMALL)


@pytest.mark.parametrize("rows", [8, 1024], ids=["serial", "prange"])
def test_donated_buffer_goes_to_the_output_that_reads_it(rows):
    """(x + b).sum(axis=0) has m's shape, but only b - 0.1 * m reads m."""
    x = rng.standard_normal((rows, 128)).astype(np.float32)
    b = rng.standard_normal(128).astype(np.float32)
    m0 = rng.standard_normal(128).astype(np.float32)

    def step(m, b, x):
        return (x + b).sum(axis=0), b - 0.1 * m
    ref = needle.jit(step)(m0.copy(), b, x)
    out = _donated(step)(m0.copy(), b, x)
    for r, o in zip(ref, out):
        np.testing.assert_array_equal(o, r)


@pytest.mark.parametrize("n", [SMALL, LARGE], ids=["serial", "prange"])
def test_two_outputs_reading_the_donated_input(n):
    """Both outputs read p: neither may overwrite it (the other's load could
    be ordered after the store)."""
    p0 = rng.standard_normal(n).astype(np.float32)
    f = _donated(lambda p: (p * 2.0, p + 1.0))
    a, b = f(p0.copy())
    np.testing.assert_array_equal(a, p0 * np.float32(2.0))
    np.testing.assert_array_equal(b, p0 + np.float32(1.0))


@pytest.mark.parametrize("n", [SMALL, LARGE], ids=["serial", "prange"])
def test_adam_steps_with_donation_match_without(n):
    def adam(p, m, v, g, t):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        mh = m / (1 - 0.9 ** t)
        vh = v / (1 - 0.999 ** t)
        return p - 1e-2 * mh / (nnp.sqrt(vh) + 1e-8), m, v

    def loss(p, x):
        return nnp.sum(nnp.tanh(p * x) ** 2)

    def step(p, m, v, x, t):
        g = needle.grad(loss)(p, x)
        return adam(p, m, v, g, t)
    x = rng.standard_normal(n).astype(np.float32)
    p0 = rng.standard_normal(n).astype(np.float32)
    plain, donated = needle.jit(step), _donated(step, (0, 1, 2))
    s_ref = (p0.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32))
    s_don = tuple(a.copy() for a in s_ref)
    for t in range(1, 5):
        s_ref = plain(*s_ref, x, float(t))
        s_don = donated(*s_don, x, float(t))
        for r, d in zip(s_ref, s_don):
            np.testing.assert_array_equal(d, r)
            assert np.isfinite(d).all()


def test_donation_warns_once_about_the_callers_array():
    from needle.runtime import executable
    executable._donation_warned.clear()
    f = needle.jit(lambda p, g: p - g, donate_argnums=0)
    with pytest.warns(UserWarning, match="donated numpy array") as rec:
        f(np.ones(SMALL, np.float32), np.ones(SMALL, np.float32))
    assert rec[0].filename == __file__            # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f(np.ones(SMALL, np.float32), np.ones(SMALL, np.float32))


@pytest.mark.parametrize("n", [6, LARGE])
def test_results_never_alias_arguments(n):
    x = np.arange(n, dtype=np.float64)
    for fn in (lambda a: a.reshape(2, -1), lambda a: a, lambda a: a.reshape(-1, 1)[:, 0],
               lambda a: (a, a.reshape(2, -1))):
        out = needle.jit(fn)(x)
        for o in (out if isinstance(out, tuple) else (out,)):
            assert not np.shares_memory(o, x)
            np.testing.assert_array_equal(o.ravel(), x)


def test_results_never_alias_captured_constants():
    c = np.arange(6.0)
    out = needle.jit(lambda: c.reshape(3, 2))()
    assert not np.shares_memory(out, c)
    out[0, 0] = 99.0
    assert c[0] == 0.0
