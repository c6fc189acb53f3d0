"""A kernel group whose one result is a concatenation along a non-leading
axis stores each part in loops of its own (codegen/cpu/emit.py
`_concat_by_parts`): values and gradients against numpy (float64) for
random part programs, shapes and axes, with the rows split across threads
and not, and the generated kernel checked to take that path."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import needle
import needle.numpy as nnp
from needle.codegen.cpu import emit as cpu_emit

from helpers import jit

# Each part: (needle fn, numpy fn) of the inputs a, b (same shape) -> a part
# of that shape; some read one input twice or reduce along the last axis.
PARTS = [
    (lambda a, b: a * b, lambda a, b: a * b),
    (lambda a, b: nnp.exp(a), lambda a, b: np.exp(a)),
    (lambda a, b: a + 1.5, lambda a, b: a + 1.5),
    (lambda a, b: nnp.tanh(b) * a, lambda a, b: np.tanh(b) * a),
    (lambda a, b: b - nnp.sum(a, axis=-1, keepdims=True),
     lambda a, b: b - np.sum(a, axis=-1, keepdims=True)),
    (lambda a, b: nnp.maximum(a, b), lambda a, b: np.maximum(a, b)),
    (lambda a, b: b, lambda a, b: b),
]


@st.composite
def programs(draw):
    nd = draw(st.integers(2, 4))
    axis = draw(st.integers(1, nd - 1))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(nd))
    parts = draw(st.lists(st.sampled_from(range(len(PARTS))), min_size=1, max_size=4))
    # a part may be sliced along the axis, to a different (even zero) width
    widths = [draw(st.integers(0, shape[axis])) for _ in parts]
    return shape, axis, parts, widths


def build(shape, axis, parts, widths, lib):
    def f(a, b):
        out = []
        for k, w in zip(parts, widths):
            v = PARTS[k][0 if lib is nnp else 1](a, b)
            sl = [slice(None)] * len(shape)
            sl[axis] = slice(0, w)
            out.append(v[tuple(sl)])
        return lib.concatenate(out, axis=axis)
    return f


def _check(prog, seed):
    shape, axis, parts, widths = prog
    r = np.random.default_rng(seed)
    a, b = (r.uniform(-1.5, 1.5, shape) for _ in range(2))
    want = build(*prog, np)(a, b)
    f = build(*prog, nnp)
    got = jit(f)(a.astype(np.float32), b.astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    got64 = jit(f)(a, b)
    np.testing.assert_allclose(got64, want, rtol=1e-12, atol=1e-12)
    # the gradient of a weighted sum, against numpy's by central differences
    wts = r.uniform(-1, 1, want.shape)

    def loss(a, b):
        return nnp.sum(f(a, b) * wts)

    ga, gb = jit(needle.grad(loss, argnums=(0, 1)))(a, b)

    def np_loss(a, b):
        return float(np.sum(build(*prog, np)(a, b) * wts))

    eps = 1e-6
    for x, g, which in ((a, ga, 0), (b, gb, 1)):
        fd = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[i] += eps
            xm[i] -= eps
            args_p = (xp, b) if which == 0 else (a, xp)
            args_m = (xm, b) if which == 0 else (a, xm)
            fd[i] = (np_loss(*args_p) - np_loss(*args_m)) / (2 * eps)
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.on_device
@settings(max_examples=30, deadline=None)
@given(programs(), st.integers(0, 2**31 - 1))
def test_random_concatenations_value_and_grad(prog, seed):
    _check(prog, seed)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])   # same config for all
@given(programs(), st.integers(0, 2**31 - 1))
def test_random_concatenations_rows_split_on_threads(config, prog, seed):
    config.update("parallel_min_size", 1)
    config.update("num_threads", 3)
    _check(prog, seed)


def test_the_kernel_stores_each_part_in_its_own_loop():
    def f(a, b):
        return nnp.concatenate([a * b, nnp.exp(a), b + 1.0], axis=1)
    a = np.ones((4, 8), np.float32)
    text = needle.jit(f).lower(a, a).as_text("kernels")
    body = text[text.index("def kernel("):]
    # one row loop, one loop per part under it, no select among the parts
    assert body.count("for ") == 4, body
    assert " if " not in body, body
    np.testing.assert_allclose(needle.jit(f)(a, a), np.concatenate([a, np.e * a, a + 1], 1),
                               rtol=1e-6)


def test_switch_off_gives_the_same_values(monkeypatch):
    r = np.random.default_rng(1)
    a, b = r.standard_normal((2, 3, 6)).astype(np.float32), r.standard_normal((2, 3, 6))

    def f(a, b):
        return nnp.concatenate([a * 2.0, nnp.tanh(b.astype(nnp.float32)), a - b[:, :, :1]],
                               axis=2)
    on = needle.jit(f)(a, b)
    monkeypatch.setattr(cpu_emit, "CONCAT_BY_PARTS", False)
    off = needle.jit(lambda a, b: f(a, b) + 0.0)(a, b)
    np.testing.assert_array_equal(on, off)
