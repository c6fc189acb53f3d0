"""Derivatives through needle.lax control flow (passes/autodiff/control.py and
partial_eval.py), in float64, against central finite differences.

The finite differences evaluate the traced loss with the numpy interpreter
(`run_numpy` on `needle.make_ir(loss)`, so the primitives' reference
implementations), eps 1e-6, as tests/test_random_programs.py does.

Covered: grad of scan through the final carry, through the ys, through
captured constants and through xs, forward and reverse, lengths 0, 1 and
more, carries as an array, a tuple, a dict and a namedtuple (hypothesis);
cond and switch (every branch, a traced predicate, an out-of-range index);
fori_loop with static bounds; checkpoint (equal to the plain function's
gradient; its backward program keeps a `checkpoint` equation); scan in scan;
cond in scan; jvp and jacfwd through while_loop; grad of grad and hessian
through scan (against the same function as an unrolled Python loop and
against finite differences).

Every check has an eager and a jit twin.
"""
from collections import namedtuple

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

import needle
import needle.numpy as nnp
from needle import lax
from needle.ir.interpreter import run_numpy
from needle.tree_util import tree_flatten, tree_unflatten

from helpers import jit

# The jit twins also run compiled for $NEEDLE_TEST_DEVICE (CUDA in the simulator).
pytestmark = pytest.mark.on_device

MODES = ["eager", "jit"]

EPS = 1e-6
State = namedtuple("State", ["h", "g"])


def interpreted(f, *args):
    """f traced once at args' types, as a numpy function of args (pytrees)
    run by the interpreter: the finite differences' forward function."""
    cg = needle.make_ir(f)(*args)

    def value(*a):
        return np.asarray(run_numpy(cg.graph, cg.consts, tree_flatten(list(a))[0])[0],
                          np.float64)
    return value


def fd_grads(loss, args):
    """Central differences of the scalar `loss` with respect to every leaf of
    every argument (a tuple of pytrees of float64 arrays)."""
    value = interpreted(loss, *args)
    leaves, tree = tree_flatten(tuple(args))
    leaves = [np.asarray(v, np.float64) for v in leaves]
    out = []
    for i, v in enumerate(leaves):
        g = np.zeros(v.shape)
        for idx in np.ndindex(v.shape):
            vals = []
            for sign in (1, -1):
                moved = list(leaves)
                moved[i] = v.copy()
                moved[i][idx] += sign * EPS
                vals.append(float(value(*tree_unflatten(tree, moved))))
            g[idx] = (vals[0] - vals[1]) / (2 * EPS)
        out.append(g)
    return tree_unflatten(tree, out)


def assert_tree_close(got, want, rtol=1e-5, atol=1e-7):
    g_leaves, g_tree = tree_flatten(got)
    w_leaves, w_tree = tree_flatten(want)
    assert g_tree == w_tree, (g_tree, w_tree)
    for g, w in zip(g_leaves, w_leaves):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, (g.shape, w.shape)
        assert g.dtype == np.float64, g.dtype
        scale = 1 + np.max(np.abs(w), initial=0)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol * scale)


def check_grad(loss, args, mode, **tol):
    """grad of `loss` with respect to all of `args` (eagerly or under jit)
    against central differences."""
    g = needle.grad(loss, argnums=tuple(range(len(args))))
    got = jit(g)(*args) if mode == "jit" else g(*args)
    assert_tree_close(tuple(got), fd_grads(loss, args), **tol)
    return got


# --- scan --------------------------------------------------------------------------------

CARRIES = ["array", "tuple", "dict", "namedtuple"]


def _pack(kind, h, g):
    return {"array": lambda: h, "tuple": lambda: (h, g), "dict": lambda: {"h": h, "g": g},
            "namedtuple": lambda: State(h, g)}[kind]()


def _unpack(kind, c):
    if kind == "array":
        return c, None
    if kind == "dict":
        return c["h"], c["g"]
    return tuple(c)


def _scan_problem(case):
    """(loss(init, W, xs), (init, W, xs)): a tanh RNN whose carry is `kind`
    (h a vector, g a scalar), W a captured constant; the loss reads the final
    carry, the ys or both."""
    kind, length, reverse, on, n, seed = case
    rng = np.random.default_rng(seed)
    wc, wg = rng.standard_normal(n), 1.3
    wy = rng.standard_normal(length)

    def loss(init, W, xs):
        def body(c, x):
            h, g = _unpack(kind, c)
            gg = 0.5 if g is None else g
            z = nnp.tanh(h @ W + x * gg)
            y = (z * z).sum() + nnp.sin(x[0] * gg)
            if g is not None:
                g = g * 0.9 + 0.1 * nnp.sum(z * h)
            return _pack(kind, z, g), y
        c, ys = lax.scan(body, init, xs, reverse=reverse)
        h, g = _unpack(kind, c)
        out = 0.0
        if on in ("carry", "both"):
            out = out + (h * wc).sum() + (0.0 if g is None else g * wg)
        if on in ("ys", "both"):
            out = out + (ys * wy).sum()
        return out

    init = _pack(kind, rng.standard_normal(n), np.float64(rng.standard_normal()))
    W = rng.standard_normal((n, n)) / n
    xs = rng.standard_normal((length, n))
    return loss, (init, W, xs)


@st.composite
def scan_cases(draw):
    return (draw(st.sampled_from(CARRIES)), draw(st.sampled_from([0, 1, 2, 4])),
            draw(st.booleans()), draw(st.sampled_from(["carry", "ys", "both"])),
            draw(st.integers(1, 3)), draw(st.integers(0, 2**16)))


@given(scan_cases())
@example(("dict", 0, False, "both", 2, 1))
@example(("namedtuple", 3, True, "carry", 2, 2))
@example(("array", 1, True, "ys", 3, 3))
def test_scan_grad_eager(case):
    loss, args = _scan_problem(case)
    got = check_grad(loss, args, "eager")
    if case[1] == 0:             # no step: the carry's gradient passes through unchanged
        assert np.asarray(got[2]).shape == (0, case[4])
        assert not np.any(got[1])


@pytest.mark.parametrize("case", [("dict", 3, False, "both", 2, 1),
                                  ("namedtuple", 2, True, "ys", 3, 2),
                                  ("array", 0, False, "carry", 2, 3)],
                         ids=["dict", "namedtuple-reverse", "len0"])
def test_scan_grad_jit(case):
    loss, args = _scan_problem(case)
    check_grad(loss, args, "jit")


# --- cond / switch -------------------------------------------------------------------------

M = np.array([[0.5, -1.0, 0.25], [1.5, 0.5, -0.5], [0.0, 1.0, 1.0]])
WV = np.array([1.0, -2.0, 0.5])
BRANCHES = [lambda x, a: nnp.sin(x) * a,
            lambda x, a: (x * x) @ M + a,
            lambda x, a: nnp.tanh(x * a.sum()) * M[0]]


def _switch_loss(x, a, j):
    return (lax.switch(j, BRANCHES, x, a) * WV).sum()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("j", [0, 1, 2, 5])
def test_switch_grad_each_branch(j, mode):
    x, a = np.array([0.3, -1.2, 0.8]), np.array([1.1, 0.4, -0.7])
    g = needle.grad(_switch_loss, argnums=(0, 1))
    got = jit(g)(x, a, np.int32(j)) if mode == "jit" else g(x, a, j)
    assert_tree_close(tuple(got), fd_grads(lambda x, a: _switch_loss(x, a, j), (x, a)))


def _cond_loss(x, a):
    # a traced predicate: which branch runs depends on x
    out = lax.cond(x.sum() > 0, lambda x, a: nnp.exp(x * 0.5) * a, lambda x, a: x @ M - a * a,
                   x, a)
    return (out * WV).sum()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sign", [1, -1], ids=["true", "false"])
def test_cond_grad_each_branch(sign, mode):
    x, a = sign * np.array([0.3, 1.2, 0.8]), np.array([1.1, 0.4, -0.7])
    check_grad(_cond_loss, (x, a), mode)


# --- fori_loop, checkpoint ------------------------------------------------------------------

def _fori_loss(x, w):
    return (lax.fori_loop(0, 4, lambda i, c: nnp.sin(c * w) + i * 0.1, x) ** 2).sum()


@pytest.mark.parametrize("mode", MODES)
def test_fori_loop_static_bounds_grad(mode):
    check_grad(_fori_loss, (np.array([0.3, -0.7]), np.array([1.2, 0.9])), mode)


def _layer(x, W):
    return nnp.tanh(x @ W) * 1.5


def _ckpt_loss(remat):
    layer = needle.checkpoint(_layer) if remat else _layer

    def loss(x, W):
        y = layer(layer(x, W), W)
        c, _ = lax.scan(lambda c, r: (c + layer(r, W).sum() * c, None), 1.0, x)
        return (y * y).sum() + c
    return loss


@pytest.mark.parametrize("mode", MODES)
def test_checkpoint_grad_equals_the_plain_grad(mode):
    rng = np.random.default_rng(4)
    x, W = rng.standard_normal((2, 3)) * 0.5, rng.standard_normal((3, 3)) * 0.5
    got = check_grad(_ckpt_loss(True), (x, W), mode)
    plain = needle.grad(_ckpt_loss(False), argnums=(0, 1))(x, W)
    assert_tree_close(tuple(got), tuple(plain), rtol=1e-12, atol=1e-13)


def test_checkpoint_backward_program_keeps_a_checkpoint_equation():
    W = np.array([[0.5, -1.0], [0.3, 0.8]])
    f = needle.checkpoint(lambda x: nnp.sin(nnp.tanh(x @ W)) * 2.0)
    text = str(needle.make_ir(needle.grad(lambda x: f(x).sum()))(np.ones(2)))
    assert "checkpoint[" in text, text
    plain = str(needle.make_ir(needle.grad(lambda x: nnp.sin(nnp.tanh(x @ W)).sum()))(np.ones(2)))
    assert "checkpoint[" not in plain


# --- nesting -------------------------------------------------------------------------------

def _scan_in_scan_loss(x, w):
    def row(c, r):
        inner, ys = lax.scan(lambda a, v: (nnp.sin(a * w + v), a * v), c, r)
        return inner * 0.5 + c, ys.sum()
    c, ys = lax.scan(row, np.float64(0.3), x)
    return c + (ys * ys).sum()


def _cond_in_scan_loss(c, xs, w):
    def body(c, x):
        c = lax.cond(x > 0, lambda c: nnp.tanh(c * x * w), lambda c: c * w - x, c)
        return c, c.sum()
    c, ys = lax.scan(body, c, xs)
    return (c * c).sum() + ys.sum()


@pytest.mark.parametrize("mode", MODES)
def test_scan_in_scan_grad(mode):
    x = np.array([[0.1, -0.4, 0.3], [0.5, 0.2, -0.6]])
    check_grad(_scan_in_scan_loss, (x, np.float64(0.8)), mode)


@pytest.mark.parametrize("mode", MODES)
def test_cond_in_scan_grad(mode):
    xs = np.array([0.5, -0.3, 1.2, -0.8])
    check_grad(_cond_in_scan_loss, (np.array([0.2, -0.4]), xs, np.array([0.9, 1.1])), mode)


# --- forward mode through while_loop --------------------------------------------------------

def _grow(x):
    def body(s):
        return s[0] * 1.3 + 0.1 * nnp.sin(s[0]), s[1] + 1
    return lax.while_loop(lambda s: (s[0] ** 2).sum() < 10.0, body, (x, np.int32(0)))[0]


X_WHILE = np.array([0.5, -0.3, 0.8])        # 4 steps; the last is far from the bound


def _fd_jacobian(f, x):
    value = interpreted(f, x)
    cols = []
    for k in range(x.size):
        e = np.zeros_like(x)
        e.flat[k] = EPS
        cols.append((value(x + e) - value(x - e)).ravel() / (2 * EPS))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("mode", MODES)
def test_jvp_through_while_loop(mode):
    t = np.array([1.0, -0.5, 2.0])
    f = lambda x, t: needle.jvp(_grow, (x,), (t,))
    out, tout = jit(f)(X_WHILE, t) if mode == "jit" else f(X_WHILE, t)
    assert_tree_close(out, np.asarray(_grow(X_WHILE), np.float64), rtol=1e-12, atol=1e-14)
    assert_tree_close(tout, _fd_jacobian(_grow, X_WHILE) @ t)


@pytest.mark.parametrize("mode", MODES)
def test_jacfwd_through_while_loop(mode):
    f = needle.jacfwd(_grow)
    got = jit(f)(X_WHILE) if mode == "jit" else f(X_WHILE)
    assert_tree_close(got, _fd_jacobian(_grow, X_WHILE))


# --- second order through scan -----------------------------------------------------------------

WS = np.array([0.7, -1.1, 0.4, 1.3])


def _second_scan(x):
    c, ys = lax.scan(lambda c, w: (nnp.sin(c * w) + c * 0.5, (c * c).sum()), x, WS)
    return (c * c).sum() + ys.sum() + (c * x).sum()


def _second_unrolled(x):
    c, total = x, 0.0
    for w in WS:
        c, y = nnp.sin(c * w) + c * 0.5, (c * c).sum()
        total = total + y
    return (c * c).sum() + total + (c * x).sum()


def _fd_hessian(f, x, h=1e-4):
    """Second central differences of f (4 evaluations per entry)."""
    value = interpreted(f, x)
    n = x.size
    H = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            s = 0.0
            for si, sj, w in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)):
                d = np.zeros(n)
                d[i] += si * h
                d[j] += sj * h
                s += w * float(value((x.ravel() + d).reshape(x.shape)))
            H[i, j] = s / (4 * h * h)
    return H


@pytest.mark.parametrize("mode", MODES)
def test_grad_of_grad_of_scan(mode):
    x = np.float64(0.6)
    f = needle.grad(needle.grad(_second_scan))
    got = jit(f)(x) if mode == "jit" else f(x)
    want = needle.grad(needle.grad(_second_unrolled))(x)
    assert_tree_close(got, want, rtol=1e-10, atol=1e-12)
    assert_tree_close(got, np.float64(_fd_hessian(_second_scan, np.asarray(x))[0, 0]),
                      rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_hessian_through_scan(mode):
    x = np.array([0.6, -0.2, 0.9])
    f = needle.hessian(_second_scan)
    got = jit(f)(x) if mode == "jit" else f(x)
    assert_tree_close(got, needle.hessian(_second_unrolled)(x), rtol=1e-10, atol=1e-12)
    assert_tree_close(got, _fd_hessian(_second_scan, x), rtol=1e-5, atol=1e-6)
