"""needle.vmap of the control-flow primitives (passes/batching/control.py)
against the un-vmapped function run example by example (eagerly: the
primitives' numpy impls) or plain numpy loops.

Covered: scan with in_axes on the initial carry only, the xs only, a closed
over value only, all of them, out_axes, reverse, length 0 and 1, pytree
carries, unbatched ys, the carry fixpoint (an unbatched initial carry the
body makes batched); cond with an unbatched and a batched predicate, switch
with a batched index (out of range: clamped); while_loop with an unbatched
and a batched predicate (a different trip count per example); fori_loop with
concrete and batched bounds; lax.map; checkpoint; nested vmap; a cond and a
scan inside a scan; grad / jvp of batched loops and branches. Each eager
case has a jit twin.
"""
import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle import lax
from needle.tree_util import tree_flatten, tree_leaves, tree_unflatten
from helpers import jit

# The jit twins also run compiled for $NEEDLE_TEST_DEVICE (CUDA in the simulator).
pytestmark = pytest.mark.on_device

rng = np.random.default_rng(7)
B = 3

MODES = ["eager", "jit"]


def _f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def _vmapped(f, mode, **kw):
    g = needle.vmap(f, **kw)
    return jit(g) if mode == "jit" else g


def _take(a, ax, i):
    """Example i of argument `a` mapped as `ax` (an int, None or a pytree
    prefix of `a`, as vmap's in_axes)."""
    if isinstance(ax, dict):
        return {k: _take(a[k], ax[k], i) for k in a}
    if isinstance(ax, (tuple, list)):
        return type(a)(_take(x, s, i) for x, s in zip(a, ax))
    if ax is None:
        return a
    leaves, tree = tree_flatten(a)
    return tree_unflatten(tree, [np.take(np.asarray(x), i, axis=ax) for x in leaves])


def per_example(f, args, in_axes, size, out_axes=0):
    """np.stack of f on example i of every mapped argument (pytrees of
    arrays as arguments; in_axes an int / None per argument)."""
    in_axes = in_axes if isinstance(in_axes, (tuple, list)) else [in_axes] * len(args)
    outs = []
    for i in range(size):
        outs.append(f(*[_take(a, ax, i) for a, ax in zip(args, in_axes)]))
    if isinstance(out_axes, tuple):          # an axis per top-level output
        return tuple(per_example(lambda *a, k=k: f(*a)[k], args, in_axes, size, ax)
                     for k, ax in enumerate(out_axes))
    leaves0, tree = tree_flatten(outs[0])
    stacked = [np.stack([np.asarray(tree_leaves(o)[k]) for o in outs], axis=out_axes)
               for k in range(len(leaves0))]
    return tree_unflatten(tree, stacked)


def assert_tree_close(got, want, rtol=1e-5, atol=1e-6):
    g_leaves, g_tree = tree_flatten(got)
    w_leaves, w_tree = tree_flatten(want)
    assert g_tree == w_tree, (g_tree, w_tree)
    for g, w in zip(g_leaves, w_leaves):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, (g.shape, w.shape)
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def check(f, args, in_axes=0, mode="eager", out_axes=0, size=B):
    got = _vmapped(f, mode, in_axes=in_axes, out_axes=out_axes)(*args)
    assert_tree_close(got, per_example(f, args, in_axes, size, out_axes))
    return got


# --- scan --------------------------------------------------------------------------------

def _rnn(w, c, xs, reverse=False):
    def body(c, x):
        c = nnp.tanh(c * w + x)
        return c, (c.sum(), x * 2.0)        # x * 2: batched only when xs is
    return lax.scan(body, c, xs, reverse=reverse)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("in_axes", [(0, None, None), (None, 0, None), (None, None, 0),
                                     (0, 0, 0), (None, 0, 1)],
                         ids=["consts", "init", "xs", "all", "xs-axis1"])
def test_scan_in_axes(in_axes, mode):
    w, c, xs = _f32(2), _f32(2), _f32(4, 2)
    args = [w, c, xs]
    for k, ax in enumerate(in_axes):
        if ax is not None:
            args[k] = np.stack([args[k] * (1 + 0.3 * i) for i in range(B)], axis=ax)
    check(_rnn, args, in_axes, mode)


@pytest.mark.parametrize("mode", MODES)
def test_scan_closure_over_a_batched_value(mode):
    def f(w, c, xs):
        return lax.scan(lambda c, x: (c * w + x, nnp.dot(c, w)), c, xs)
    check(f, [_f32(B, 2), _f32(2), _f32(5, 2)], (0, None, None), mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("out_axes", [1, (0, 1), (None, 2)])
def test_scan_out_axes(out_axes, mode):
    def f(c, xs):
        return lax.scan(lambda c, x: (c, c * x), c, xs)
    c, xs = _f32(2), _f32(B, 4, 2)
    if out_axes == (None, 2):      # the carry is not mapped: out_axes None is allowed
        got = _vmapped(f, mode, in_axes=(None, 0), out_axes=(None, 2))(c, xs)
        want = per_example(f, [c, xs], (None, 0), B)
        assert_tree_close(got[0], want[0][0])
        assert_tree_close(got[1], np.moveaxis(want[1], 0, 2))
        return
    cs = np.stack([c] * B)
    check(f, [cs, xs], 0, mode, out_axes=out_axes)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("in_axes", [(0, None, None), (None, None, 0), (0, 0, 0)])
def test_scan_reverse(in_axes, mode):
    w, c, xs = _f32(2), _f32(2), _f32(5, 2)
    args = [w, c, xs]
    for k, ax in enumerate(in_axes):
        if ax is not None:
            args[k] = np.stack([args[k] + i for i in range(B)])
    got = check(lambda w, c, xs: _rnn(w, c, xs, reverse=True), args, in_axes, mode)
    # against numpy: from the last step to the first, ys in xs' order
    for i in range(B):
        wi, ci, xsi = [a[i] if ax == 0 else a for a, ax in zip(args, in_axes)]
        hs = []
        for t in range(4, -1, -1):
            ci = np.tanh(ci * wi + xsi[t])
            hs.append(ci.sum())
        np.testing.assert_allclose(got[1][0][i], hs[::-1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("length", [0, 1])
def test_scan_length_0_and_1(length, mode):
    w, c, xs = _f32(B, 2), _f32(B, 2), _f32(B, length, 2)
    got = check(_rnn, [w, c, xs], 0, mode)
    assert got[1][0].shape == (B, length)
    if length == 0:
        np.testing.assert_array_equal(got[0], c)


@pytest.mark.parametrize("mode", MODES)
def test_scan_without_xs(mode):
    def f(c):
        return lax.scan(lambda c, _: (c * 0.5 + 1.0, c), c, None, length=3)
    check(f, [_f32(B, 2)], 0, mode)


@pytest.mark.parametrize("mode", MODES)
def test_scan_pytree_carry(mode):
    def f(state, xs):
        def body(s, x):
            h, (n, acc) = s["h"], s["rest"]
            h = h * 0.9 + x["a"] * x["b"]
            return {"h": h, "rest": (n + 1, acc + h.sum())}, {"h": h, "n": n}
        return lax.scan(body, state, xs)
    state = {"h": _f32(B, 2), "rest": (np.int32(0), np.float32(0.0))}
    xs = {"a": _f32(B, 4, 2), "b": _f32(4, 2)}
    check(f, [state, xs], ({"h": 0, "rest": (None, None)}, {"a": 0, "b": None}), mode)


def test_scan_carry_fixpoint_and_unbatched_outputs():
    """An unbatched initial carry the body makes batched is batched inside the
    scan; a counter the body never mixes with mapped values stays unbatched
    (one scalar per step, not one per example)."""
    def f(x, xs):
        def body(c, x_t):
            i, h = c
            return (i + 1, h + x_t), i
        return lax.scan(body, (np.int32(0), np.float32(0.0)), xs)
    xs = _f32(B, 5)
    cg = needle.make_ir(needle.vmap(f, in_axes=(None, 0)))(np.float32(0), xs)
    (scan,) = [e for e in cg.graph.eqns if e.prim.name == "scan"]
    body = scan.params["body"].graph
    assert [v.aval.shape for v in body.invars] == [(), (B,), (B,)]   # i, h, x_t
    assert [v.aval.shape for v in scan.outs] == [(), (B,), (5,)]     # i, h, ys
    (i, h), ys = needle.vmap(f, in_axes=(None, 0))(np.float32(0), xs)
    np.testing.assert_array_equal(i, np.full(B, 5, np.int32))
    np.testing.assert_allclose(h, xs.sum(1), rtol=1e-5)
    np.testing.assert_array_equal(ys, np.tile(np.arange(5, dtype=np.int32), (B, 1)))


@pytest.mark.parametrize("mode", MODES)
def test_map(mode):
    check(lambda xs: lax.map(lambda x: nnp.sin(x) * x.sum(), xs), [_f32(B, 4, 3)], 0, mode)


# --- cond / switch --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_cond_unbatched_predicate(mode):
    def f(p, x, y):
        return lax.cond(p, lambda x, y: (x * 2, y), lambda x, y: (x - 1, y + 1.0), x, y)
    for p in (True, False):
        got = check(f, [np.bool_(p), _f32(B, 3), _f32(2)], (None, 0, None), mode)
        assert got[1].shape == (B, 2)


@pytest.mark.parametrize("mode", MODES)
def test_cond_batched_predicate(mode):
    def f(x, w):
        return lax.cond(x.sum() > 0, lambda x: nnp.exp(x) * w, lambda x: -x, x)
    x = _f32(6, 3)
    x[0] = np.abs(x[0])
    x[1] = -np.abs(x[1])
    check(f, [x, _f32(3)], (0, None), mode, size=6)


@pytest.mark.parametrize("mode", MODES)
def test_switch_batched_index_clamped(mode):
    branches = [lambda x, y: x + y, lambda x, y: x * y, lambda x, y: x - 2.0 * y]

    def f(i, x, y):
        return lax.switch(i, branches, x, y)
    idx = np.array([-3, 0, 1, 2, 3, 9], np.int32)
    x, y = _f32(6, 2), _f32(2)
    got = check(f, [idx, x, y], (0, 0, None), mode, size=6)
    want = np.stack([branches[min(max(int(i), 0), 2)](x[k], y) for k, i in enumerate(idx)])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # only the index mapped: the operands are the same for every example
    got = _vmapped(f, mode, in_axes=(0, None, None))(idx, x[0], y)
    want = np.stack([branches[min(max(int(i), 0), 2)](x[0], y) for i in idx])
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_cond_with_a_closure_in_each_branch(mode):
    def f(a, b, x):
        return lax.cond(x[0] > 0, lambda x: x * a, lambda x: x + b, x)
    check(f, [_f32(B, 2), _f32(2), _f32(B, 2)], (0, None, 0), mode)
    check(f, [_f32(B, 2), _f32(2), _f32(2)], (0, None, None), mode)


# --- while_loop / fori_loop --------------------------------------------------------------------

def _collatz(n):
    def body(c):
        n, steps = c
        return nnp.where(n % 2 == 0, n // 2, 3 * n + 1), steps + 1
    return lax.while_loop(lambda c: c[0] != 1, body, (n, np.int32(0)))


def _collatz_np(n):
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return n, steps


@pytest.mark.parametrize("mode", MODES)
def test_while_batched_predicate_different_trip_counts(mode):
    ns = np.array([1, 2, 3, 6, 7, 27], np.int32)
    got = check(_collatz, [ns], 0, mode, size=len(ns))
    np.testing.assert_array_equal(got[1], [_collatz_np(int(n))[1] for n in ns])


@pytest.mark.parametrize("mode", MODES)
def test_while_batched_predicate_through_a_const(mode):
    """The predicate depends on a mapped closed-over limit; the carry starts
    unmapped."""
    def f(limit, x):
        return lax.while_loop(lambda c: c[0] < limit, lambda c: (c[0] + 1, c[1] * 1.5),
                              (np.int32(0), x))
    limits = np.array([0, 1, 4], np.int32)
    got = check(f, [limits, np.float32(2.0)], (0, None), mode)
    np.testing.assert_array_equal(got[0], limits)
    np.testing.assert_allclose(got[1], 2.0 * 1.5 ** limits, rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_while_unbatched_predicate(mode):
    def f(x):
        return lax.while_loop(lambda c: c[0] < 4, lambda c: (c[0] + 1, nnp.sin(c[1]) + c[1]),
                              (np.int32(0), x))
    got = check(f, [_f32(B, 2)], 0, mode)
    np.testing.assert_array_equal(got[0], np.full(B, 4, np.int32))

    def g(w, x):                   # a mapped value closed over by the body only
        return lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * w + 1.0),
                              (0, x))
    got = check(g, [_f32(B, 2), _f32(2)], (0, None), mode)
    np.testing.assert_array_equal(got[0], np.full(B, 3, np.int32))


@pytest.mark.parametrize("mode", MODES)
def test_while_batched_predicate_python_scalar_carry(mode):
    def f(x):
        return lax.while_loop(lambda c: c[1] < x, lambda c: (c[0] + 1, c[1] + 0.5), (0, 0.0))
    xs = np.array([-1.0, 0.0, 0.7, 2.2], np.float32)
    got = check(f, [xs], 0, mode, size=4)
    np.testing.assert_array_equal(got[0], [0, 0, 2, 5])


@pytest.mark.parametrize("mode", MODES)
def test_fori_loop(mode):
    def f(x, w):
        return lax.fori_loop(0, 4, lambda i, c: c * w + i.astype(np.float32), x)
    check(f, [_f32(B, 2), _f32(2)], (0, None), mode)
    check(f, [_f32(2), _f32(B, 2)], (None, 0), mode)


@pytest.mark.parametrize("mode", MODES)
def test_fori_loop_batched_bounds(mode):
    def f(hi, x):
        return lax.fori_loop(0, hi, lambda i, c: c + i.astype(np.float32) * x, np.float32(0))
    his = np.array([0, 1, 3, 5], np.int32)
    got = check(f, [his, np.float32(2.0)], (0, None), mode, size=4)
    np.testing.assert_allclose(got, [2.0 * sum(range(h)) for h in his])


# --- checkpoint, nesting ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_checkpoint(mode):
    def f(x, w):
        return needle.checkpoint(lambda x: nnp.tanh(x @ w) * 2.0)(x) + 1.0
    check(f, [_f32(B, 3), _f32(3, 2)], (0, None), mode)
    check(f, [_f32(3), _f32(B, 3, 2)], (None, 0), mode)


@pytest.mark.parametrize("mode", MODES)
def test_nested_vmap_of_scan(mode):
    def f(c, xs):
        return lax.scan(lambda c, x: (c * 0.5 + x, c.sum()), c, xs)
    c, xs = _f32(2, B, 3), _f32(2, B, 4, 3)
    g = needle.vmap(needle.vmap(f))
    got = jit(g)(c, xs) if mode == "jit" else g(c, xs)
    want = [[f(c[i, j], xs[i, j]) for j in range(B)] for i in range(2)]
    for k in range(2):
        np.testing.assert_allclose(got[k], np.stack([np.stack([w[k] for w in row])
                                                     for row in want]), rtol=1e-5, atol=1e-6)
    # the inner vmap over the carry only, the outer over the xs only
    g = needle.vmap(needle.vmap(f, in_axes=(0, None)), in_axes=(None, 0))
    got = jit(g)(c[0], xs[:, 0]) if mode == "jit" else g(c[0], xs[:, 0])
    for i in range(2):
        for j in range(B):
            w = f(c[0, j], xs[i, 0])
            np.testing.assert_allclose(got[0][i, j], w[0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got[1][i, j], w[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_nested_vmap_of_while(mode):
    ns = np.array([[1, 2, 3], [6, 7, 9]], np.int32)
    g = needle.vmap(needle.vmap(_collatz))
    got = jit(g)(ns) if mode == "jit" else g(ns)
    np.testing.assert_array_equal(got[1], [[_collatz_np(int(n))[1] for n in row]
                                           for row in ns])


@pytest.mark.parametrize("mode", MODES)
def test_scan_of_cond(mode):
    def f(c, xs):
        def body(c, x):
            c = lax.cond(x.sum() > 0, lambda c: c + x, lambda c: c * 0.5, c)
            return c, lax.switch(nnp.argmax(x).astype(np.int32),
                                 [lambda c: c.sum(), lambda c: c.max(), lambda c: c.min()], c)
        return lax.scan(body, c, xs)
    check(f, [_f32(B, 3), _f32(B, 6, 3)], 0, mode)
    check(f, [_f32(B, 3), _f32(6, 3)], (0, None), mode)
    check(f, [_f32(3), _f32(B, 6, 3)], (None, 0), mode)


@pytest.mark.parametrize("mode", MODES)
def test_scan_of_scan_and_while(mode):
    def f(c, xs):
        def body(c, x):
            c, _ = lax.scan(lambda h, xi: (h * 0.5 + xi, None), c, x)
            k = lax.while_loop(lambda k: k * k < c.sum() * 10.0, lambda k: k + 1.0,
                               np.float32(0.0))
            return c, k
        return lax.scan(body, c, xs)
    xs = np.abs(_f32(B, 3, 4, 2)) + 0.5
    check(f, [np.abs(_f32(B, 2)), xs], 0, mode)


# --- differentiated after batching ------------------------------------------------------------

def test_grad_of_vmap_of_scan():
    def loss(w, xs):
        ys = needle.vmap(lambda xs: lax.scan(lambda c, x: (nnp.tanh(c * w + x), c), xs[0],
                                             xs)[1])(xs)
        return (ys ** 2).sum()
    w, xs = _f32(2), _f32(B, 4, 2)
    g = needle.grad(loss)(w, xs)
    eps, num = 1e-3, np.zeros(2)
    for i in range(2):
        d = np.zeros(2, np.float32)
        d[i] = eps
        num[i] = (loss(w + d, xs) - loss(w - d, xs)) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=2e-2, atol=2e-3)


def test_per_example_grad_of_scan():
    def loss(w, xs):
        return lax.scan(lambda c, x: (c * w + x, None), np.float32(0.0), xs)[0] ** 2
    w, xs = np.float32(0.7), _f32(B, 4)
    got = needle.vmap(needle.grad(loss), in_axes=(None, 0))(w, xs)
    want = np.stack([needle.grad(loss)(w, x) for x in xs])
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_grads_and_batched_cond():
    def g(x):
        return lax.cond(x.sum() > 0, lambda x: nnp.sin(x), lambda x: x * x, x).sum()
    x = _f32(4, 3)
    want = np.stack([needle.grad(g)(xi) for xi in x])
    np.testing.assert_allclose(needle.vmap(needle.grad(g))(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(needle.grad(lambda x: needle.vmap(g)(x).sum())(x), want,
                               rtol=1e-5, atol=1e-6)


def test_jvp_of_vmap_of_while_batched_predicate():
    def f(x):
        return lax.while_loop(lambda c: c[0] < 3.0, lambda c: (c[0] + c[1], c[1] * 1.1),
                              (x, x * 0 + 1.0))[0]
    xs = np.array([0.0, 1.0, 2.5, 4.0], np.float32)
    p, t = needle.jvp(needle.vmap(f), (xs,), (np.ones(4, np.float32),))
    want = [needle.jvp(f, (x,), (np.float32(1),)) for x in xs]
    np.testing.assert_allclose(p, [w[0] for w in want], rtol=1e-6)
    np.testing.assert_allclose(t, [w[1] for w in want], rtol=1e-6)


def test_vmap_of_jit_of_scan():
    def f(c, xs):
        return lax.scan(lambda c, x: (c * 0.5 + x, c.sum()), c, xs)
    c, xs = _f32(B, 2), _f32(B, 4, 2)
    got = needle.vmap(jit(f))(c, xs)
    assert_tree_close(got, per_example(f, [c, xs], 0, B))


def test_jit_vmap_while_equals_per_example_loops():
    ns = np.arange(1, 12, dtype=np.int32)
    got = jit(needle.vmap(_collatz))(ns)
    np.testing.assert_array_equal(got[0], np.ones_like(ns))
    np.testing.assert_array_equal(got[1], [_collatz_np(int(n))[1] for n in ns])
