"""The simplify rule pad(a1) + ... + pad(an) -> concatenate (passes/pad_concat.py):
it fires on zero pads that exactly tile one axis (the LSTM gates' gradient),
leaves every other sum of pads alone, and keeps values and gradients (checked
against numpy in float64 and central finite differences)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import needle
import needle.numpy as nnp
from needle.ir import check_graph, run_numpy
from needle.ir.primitives import pad_p
from needle.passes import dce, simplify

from helpers import jit

RNG = np.random.default_rng(0)


def simplified(f, *args):
    """Primitive names left after simplify + DCE; the values must not change."""
    cg = needle.make_ir(f)(*args)
    out = dce(simplify(cg))
    check_graph(out.graph)
    for g, w in zip(run_numpy(out.graph, out.consts, list(args)),
                    run_numpy(cg.graph, cg.consts, list(args))):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=0)
    return [e.prim.name for e in out.graph.eqns]


def np_pad(a, axis, lo, hi):
    w = [(0, 0)] * a.ndim
    w[axis] = (lo, hi)
    return np.pad(a, w)


def nd_pad(a, axis, lo, hi):
    w = [(0, 0)] * a.ndim
    w[axis] = (lo, hi)
    return nnp.pad(a, w)


def lstm_gates(z, c):
    """The course's LSTM cell update from the (B, 4H) gate pre-activations."""
    H = z.shape[1] // 4
    i, f = nnp.tanh(z[:, :H]) * 0.5 + 0.5, nnp.tanh(z[:, H:2 * H]) * 0.5 + 0.5
    g, o = nnp.tanh(z[:, 2 * H:3 * H]), nnp.tanh(z[:, 3 * H:]) * 0.5 + 0.5
    c2 = f * c + i * g
    return nnp.sum(o * nnp.tanh(c2))


def test_fires_on_lstm_gate_gradient():
    z, c = RNG.standard_normal((3, 8)), RNG.standard_normal((3, 2))
    names = simplified(needle.grad(lstm_gates), z, c)
    assert names.count("concatenate") == 1 and "pad" not in names, names
    text = needle.jit(needle.grad(lstm_gates)).lower(z, c).as_text("simplified")
    assert text.count("concatenate[") == 1 and "pad[" not in text, text


def test_lstm_gate_gradient_matches_finite_differences():
    z, c = RNG.standard_normal((2, 8)), RNG.standard_normal((2, 2))
    got = jit(needle.grad(lstm_gates))(z, c)
    want, eps = np.zeros_like(z), 1e-6
    for idx in np.ndindex(*z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += eps
        zm[idx] -= eps
        want[idx] = (float(lstm_gates(zp, c)) - float(lstm_gates(zm, c))) / (2 * eps)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


def test_two_terms_and_any_order():
    a, b = RNG.standard_normal((2, 3)), RNG.standard_normal((2, 5))
    names = simplified(lambda a, b: nd_pad(b, 1, 3, 0) + nd_pad(a, 1, 0, 5), a, b)
    assert names == ["concatenate"], names


def _interior(a):
    return pad_p.bind(a, np.zeros((), a.dtype), padding_config=((0, 0, 0), (0, 1, 1)))


@pytest.mark.parametrize("name, f", [
    ("overlap", lambda a, b: nd_pad(a, 1, 0, 2) + nd_pad(b, 1, 2, 0)),      # [0,3) and [2,5)
    ("gap", lambda a, b: nd_pad(a, 1, 0, 5) + nd_pad(b, 1, 5, 0)),          # [0,3), [5,8)
    ("nonzero_value", lambda a, b: nnp.pad(a, [(0, 0), (0, 3)], constant_values=1.0)
     + nd_pad(b, 1, 3, 0)),
    ("interior", lambda a, b: _interior(a) + nd_pad(b, 1, 3, 0)),   # a at 0, 2, 4; b at 3-5
    ("two_axes", lambda a, b: nnp.pad(a, [(0, 1), (0, 3)]) + nnp.pad(b, [(0, 1), (3, 0)])),
    ("different_axes", lambda a, b: nd_pad(a[:, :2], 1, 0, 1) + nd_pad(b[:1, :3], 0, 1, 0)),
])
def test_does_not_fire(name, f):
    a, b = RNG.standard_normal((2, 3)), RNG.standard_normal((2, 3))
    names = simplified(f, a, b)
    assert "concatenate" not in names and "pad" in names, names
    np.testing.assert_allclose(jit(f)(a, b), f(a, b), rtol=1e-12)


def test_inner_sum_read_elsewhere_keeps_its_value():
    parts = [RNG.standard_normal((2, n)) for n in (1, 2, 3)]

    def f(a, b, c):
        inner = nd_pad(a, 1, 0, 5) + nd_pad(b, 1, 1, 3)                     # [0,3) only
        return inner, inner + nd_pad(c, 1, 3, 0)

    names = simplified(f, *parts)
    assert "concatenate" in names, names
    inner, full = jit(f)(*parts)
    np.testing.assert_array_equal(full, np.concatenate(parts, axis=1))
    np.testing.assert_array_equal(inner, np_pad(parts[0], 1, 0, 5) + np_pad(parts[1], 1, 1, 3))


@pytest.mark.parametrize("n, fires", [(40, True), (100, False)])
def test_long_sums(n, fires):
    """A running sum of n one-column pads: joined up to MAX_TERMS (64) terms,
    left alone (and not walked to its start at each add) past it."""
    parts = [RNG.standard_normal((2, 1)) for _ in range(n)]

    def f(*ps):
        total = nd_pad(ps[0], 1, 0, n - 1)
        for k in range(1, n):
            total = total + nd_pad(ps[k], 1, k, n - 1 - k)
        return total

    names = simplified(f, *parts)
    assert ("concatenate" in names) == fires and ("pad" in names) != fires, names
    np.testing.assert_array_equal(f(*parts), np.concatenate(parts, axis=1))


@st.composite
def tilings(draw):
    """A shape (1-3 axes), an axis, its lengths cut into pieces, an order."""
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    axis = draw(st.integers(0, len(shape) - 1))
    n = draw(st.integers(2, 4))
    cuts = sorted(draw(st.lists(st.integers(0, shape[axis] + 2), min_size=n - 1,
                                max_size=n - 1)))
    total = shape[axis] + 2
    lens = [b - a for a, b in zip([0] + cuts, cuts + [total])]
    shape[axis] = total
    order = draw(st.permutations(range(n)))
    return tuple(shape), axis, lens, order


@settings(max_examples=25, deadline=None)
@given(tilings(), st.integers(0, 2**31 - 1))
def test_random_tilings_value_and_grad(tiling, seed):
    shape, axis, lens, order = tiling
    rng = np.random.default_rng(seed)
    starts = np.cumsum([0] + lens[:-1])
    parts = [rng.standard_normal(tuple(n if d == axis else s for d, s in enumerate(shape)))
             for n in lens]
    w = rng.standard_normal(shape)

    def f(*ps):
        total = None
        for k in order:
            t = nd_pad(ps[k], axis, int(starts[k]), shape[axis] - int(starts[k]) - lens[k])
            total = t if total is None else total + t
        return nnp.sum(nnp.tanh(total) * w)

    full = np.concatenate(parts, axis=axis)                 # the tiling's sum, in numpy
    want = np.sum(np.tanh(full) * w)
    dfull = (1 - np.tanh(full) ** 2) * w
    want_grads = np.split(dfull, starts[1:], axis=axis)
    names = simplified(needle.grad(f, argnums=tuple(range(len(parts)))), *parts)
    assert ("concatenate" in names) == (sum(n > 0 for n in lens) > 1), names
    grad = needle.value_and_grad(f, argnums=tuple(range(len(parts))))
    for run in (grad, jit(grad)):
        val, grads = run(*parts)
        np.testing.assert_allclose(val, want, rtol=1e-12)
        for g, wg in zip(grads, want_grads):
            np.testing.assert_allclose(g, wg, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("tiles", [True, False])
def test_slice_heavy_grad_matches_finite_differences(tiles):
    x = RNG.standard_normal((3, 7))
    k = 3

    def f(x):
        extra = 0.0 if tiles else x[:, k:k + 1] * x[:, 1:2]     # overlapping reads
        y = nnp.tanh(x[:, :k]) * x[:, k:2 * k] + nnp.sin(x[:, 2 * k:]) + extra
        return nnp.sum(y ** 2)

    names = simplified(needle.grad(f), x)     # the part of the sum that tiles is joined,
    assert "concatenate" in names, names      # the overlapping extras stay pads
    assert names.count("pad") == (0 if tiles else 2), names
    got, eps = jit(needle.grad(f))(x), 1e-6
    want = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        want[idx] = (float(f(xp)) - float(f(xm))) / (2 * eps)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
