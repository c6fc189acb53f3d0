"""State cells written inside cond / switch / while_loop / fori_loop /
checkpoint bodies (needle/control_flow.py, DESIGN "State"): each written
cell is carried (a branch that does not write it passes it through; a loop
carries it), under jit and eagerly. References: the same programs written
in numpy with explicit carries (float64), the course's BatchNorm and SGD
formulas, central finite differences."""
import numpy as np
import pytest

import needle
import needle.nn as nn
import needle.numpy as nnp
from needle import lax, optim


class Acc(nn.Module):
    """Two buffers a body updates: a step count and a running total."""

    def __init__(self, n=3):
        super().__init__()
        self.count = np.zeros((), np.float32)
        self.total = np.zeros(n, np.float32)


def _maybe_jit(f, mode):
    return needle.jit(f) if mode == "jit" else f


@pytest.mark.parametrize("mode", ["jit", "eager"])
def test_cond_writes_a_cell_in_one_branch_the_other_passes_it_through(mode):
    m = Acc()

    def f(m, x, p):
        def yes(x):
            m.count = m.count + 1.0
            return x * 2.0

        def no(x):
            m.total = m.total + x
            return x - 1.0
        return lax.cond(p, yes, no, x)
    f = _maybe_jit(f, mode)
    rng = np.random.default_rng(0)
    count, total = 0.0, np.zeros(3)
    for p in [True, False, False, True, False]:
        x = rng.standard_normal(3).astype(np.float32)
        out = f(m, x, np.bool_(p))
        if p:                       # the reference: explicit carries in numpy
            count, want = count + 1.0, 2.0 * x.astype(np.float64)
        else:
            total, want = total + x, x - 1.0
        np.testing.assert_allclose(out, want, rtol=1e-6)
        np.testing.assert_allclose(m.count.numpy(), count)
        np.testing.assert_allclose(m.total.numpy(), total, rtol=1e-6)


@pytest.mark.parametrize("mode", ["jit", "eager"])
def test_switch_branches_write_different_cells(mode):
    m = Acc(2)

    def f(m, i, x):
        def b0(x):
            m.count = m.count + 1.0
            return x

        def b1(x):
            m.total = m.total * 2.0 + x
            return -x

        def b2(x):
            m.count = m.count * 3.0
            m.total = m.total - x
            return x + 1.0
        return lax.switch(i, [b0, b1, b2], x)
    f = _maybe_jit(f, mode)
    count, total = 0.0, np.zeros(2)
    x = np.array([1.5, -2.0], np.float32)
    for i in [0, 1, 2, 2, 1, 0, 5]:          # 5 clamps to the last branch
        out = f(m, np.int32(i), x)
        k = min(i, 2)
        if k == 0:
            count, want = count + 1.0, x
        elif k == 1:
            total, want = total * 2.0 + x, -x
        else:
            count, total, want = count * 3.0, total - x, x + 1.0
        np.testing.assert_allclose(out, want)
        np.testing.assert_allclose(m.count.numpy(), count)
        np.testing.assert_allclose(m.total.numpy(), total, rtol=1e-6)


def _bn_reference(x, rm, rv, w, b, mom, eps):
    """The course's BatchNorm1d in training: biased batch variance, running
    statistics (1 - m) * running + m * batch."""
    mean, var = x.mean(0), x.var(0)
    y = (x - mean) / np.sqrt(var + eps) * w + b
    return y, (1 - mom) * rm + mom * mean, (1 - mom) * rv + mom * var


def test_batchnorm_inside_a_jitted_cond_branch_updates_its_statistics_when_taken():
    needle.random.seed(0)
    bn = nn.BatchNorm1d(4, momentum=0.2)
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    bn.weight.data = w
    bn.bias.data = b

    @needle.jit
    def f(bn, x, use):
        return lax.cond(use, lambda x: bn(x), lambda x: x * 1.0, x)
    rm, rv = np.zeros(4), np.ones(4)
    for use in [True, True, False, True, False]:
        x = rng.standard_normal((6, 4)).astype(np.float32)
        out = f(bn, x, np.bool_(use))
        if use:
            want, rm, rv = _bn_reference(x.astype(np.float64), rm, rv, w, b, 0.2, 1e-5)
        else:
            want = x
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bn.running_var.numpy(), rv, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["jit", "eager"])
def test_while_loop_carries_written_cells_and_cond_fun_reads_them(mode):
    m = Acc(2)

    def f(m, limit, x):
        def body(v):
            m.count = m.count + 1.0
            m.total = m.total + v * m.count
            return v * 0.5
        # the loop stops on a cell the body writes
        return lax.while_loop(lambda v: m.count < limit, body, x)
    f = _maybe_jit(f, mode)
    count, total = 0.0, np.zeros(2)
    for limit in [3.0, 5.0, 5.0, 9.0]:
        x = np.array([1.0, -4.0], np.float32)
        v = x.astype(np.float64)
        while count < limit:         # the reference
            count += 1.0
            total = total + v * count
            v = v * 0.5
        out = f(m, np.float32(limit), x)
        np.testing.assert_allclose(out, v, rtol=1e-6)
        np.testing.assert_allclose(m.count.numpy(), count)
        np.testing.assert_allclose(m.total.numpy(), total, rtol=1e-6)


@pytest.mark.parametrize("traced", [True, False], ids=["traced-bounds", "static-bounds"])
def test_fori_loop_carries_written_cells(traced):
    m = Acc(3)
    x = np.array([0.5, 1.0, -2.0], np.float32)

    if traced:                        # a while_loop
        @needle.jit
        def f(m, n, x):
            def body(i, v):
                m.total = m.total + v * i
                m.count = m.count + 1.0
                return v + 1.0
            return lax.fori_loop(0, n, body, x)
        out = f(m, np.int32(4), x)
    else:                             # a scan
        @needle.jit
        def f(m, x):
            def body(i, v):
                m.total = m.total + v * i
                m.count = m.count + 1.0
                return v + 1.0
            return lax.fori_loop(0, 4, body, x)
        out = f(m, x)
    v, total = x.astype(np.float64), np.zeros(3)
    for i in range(4):
        total, v = total + v * i, v + 1.0
    np.testing.assert_allclose(out, v)
    np.testing.assert_allclose(m.total.numpy(), total, rtol=1e-6)
    np.testing.assert_allclose(m.count.numpy(), 4.0)


def test_an_optimizer_step_inside_cond_is_skipped_when_the_branch_is_not_taken():
    """A training step that skips the update on a flag: SGD with the
    course's momentum (u = m u + (1 - m) g) inside one branch."""
    needle.random.seed(1)
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    W, b = model.weight.numpy().astype(np.float64), model.bias.numpy().astype(np.float64)
    uW, ub = np.zeros_like(W), np.zeros_like(b)
    rng = np.random.default_rng(2)

    @needle.jit
    def step(model, opt, x, y, ok):
        loss, g = needle.value_and_grad(lambda m: nnp.sum((m(x) - y) ** 2))(model)
        lax.cond(ok, lambda: opt.step(g), lambda: None)
        return loss

    for ok in [True, False, True, True, False]:
        x = rng.standard_normal((5, 3)).astype(np.float32)
        y = rng.standard_normal((5, 2)).astype(np.float32)
        r = x @ W + b - y
        loss = step(model, opt, x, y, np.bool_(ok))
        np.testing.assert_allclose(loss, (r ** 2).sum(), rtol=1e-5)
        if ok:
            gW, gb = 2 * x.T.astype(np.float64) @ r, 2 * r.sum(0, keepdims=True)
            uW, ub = 0.5 * uW + 0.5 * gW, 0.5 * ub + 0.5 * gb
            W, b = W - 0.1 * uW, b - 0.1 * ub
        np.testing.assert_allclose(model.weight.numpy(), W, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(model.bias.numpy(), b, rtol=1e-5, atol=1e-6)


def test_a_cond_inside_a_scan_body_and_a_while_inside_a_cond_branch():
    m = Acc(1)

    @needle.jit
    def f(m, xs):
        def step(c, x):
            def pos(x):
                m.total = m.total + x
                return c + 1.0

            def neg(x):
                # a while loop in a branch: two more counts, up to at most 5
                lax.while_loop(lambda i: nnp.logical_and(i < 2, m.count < 5.0), _inc, 0)
                return c
            return lax.cond(x[0] > 0, pos, neg, x), None

        def _inc(i):
            m.count = m.count + 1.0
            return i + 1
        return lax.scan(step, np.float32(0.0), xs)[0]
    xs = np.array([[1.0], [-1.0], [2.0], [-3.0], [-1.0]], np.float32)
    out = f(m, xs)
    count, total, c = 0.0, 0.0, 0.0
    for x in xs[:, 0]:
        if x > 0:
            total, c = total + x, c + 1.0
        else:
            i = 0
            while i < 2 and count < 5.0:
                count, i = count + 1.0, i + 1
    np.testing.assert_allclose(out, c)
    np.testing.assert_allclose(m.total.numpy(), [total])
    np.testing.assert_allclose(m.count.numpy(), count)


def test_checkpoint_carries_a_batchnorm_write_and_keeps_the_gradient():
    """checkpoint(f) under value_and_grad: the running statistics are
    written once per call (the course's formulas) and the gradient is the
    central finite difference of the loss."""
    needle.random.seed(2)
    bn = nn.BatchNorm1d(3, momentum=0.1)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    t = rng.standard_normal((5, 3))

    @needle.jit
    def step(bn, w, x):
        def loss(w):
            h = needle.checkpoint(lambda v: bn(v * w))(x)
            return nnp.sum(nnp.tanh(h) * t)
        return needle.value_and_grad(loss)(w)
    w = rng.standard_normal(3).astype(np.float32)
    val, g = step(bn, w, x)

    def ref(w):
        y, _, _ = _bn_reference(x.astype(np.float64) * w, 0, 1, 1.0, 0.0, 0.1, 1e-5)
        return (np.tanh(y) * t).sum()
    _, rm, rv = _bn_reference(x.astype(np.float64) * w, np.zeros(3), np.ones(3), 1, 0, 0.1,
                              1e-5)
    np.testing.assert_allclose(val, ref(w.astype(np.float64)), rtol=1e-4)
    h = 1e-6
    fd = [(ref(w + h * e) - ref(w - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(g, fd, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), rv, rtol=1e-5, atol=1e-6)


def test_generator_cell_in_a_while_loop_advances_once_per_iteration():
    """Dropout-style draws from a GeneratorCell inside a traced-trip-count
    loop: its counter is carried, so the next call continues the stream
    (the counter equals the number of draws, in numpy's integers)."""
    g = nn.GeneratorCell(7)

    @needle.jit
    def f(g, n):
        def body(c):
            i, acc = c
            return i + 1, acc + g.uniform((2,))
        return lax.while_loop(lambda c: c[0] < n, body, (np.int32(0), nnp.zeros(2)))[1]
    a = f(g, np.int32(3))
    assert int(g.counter.numpy()) == 3
    b = f(g, np.int32(2))
    assert int(g.counter.numpy()) == 5
    assert a.shape == b.shape == (2,) and np.all((a > 0) & (a < 3)) and not np.allclose(a, b)


def test_cond_fun_writing_a_cell_is_an_error_naming_its_path():
    m = Acc()

    def bad(v):
        m.count = m.count + 1.0
        return v < 3

    f = needle.jit(lambda m, x: lax.while_loop(bad, lambda v: v + 1, x))
    with pytest.raises(needle.StateWriteError, match=r"cond_fun writes the state cell\(s\) "
                                                     r"m\.count"):
        f(m, np.int32(0))


def test_a_branch_writing_another_type_into_a_cell_is_an_error_naming_it():
    m = Acc()

    def widen(x):
        m.total = nnp.zeros(4)          # the cell holds float32[3]
        return x
    f = needle.jit(lambda m, x: lax.cond(x > 0, widen, lambda x: x, x))
    with pytest.raises(TypeError, match=r"state m\.total has type f32\[3\].*f32\[4\]"):
        f(m, np.float32(1.0))


def test_a_batched_write_in_a_cond_under_vmap_into_an_unbatched_cell_is_an_error():
    m = Acc(1)

    def f(x):
        def yes(x):
            m.total = m.total + x
            return x
        return lax.cond(True, yes, lambda x: x, x)
    with pytest.raises(needle.StateWriteError, match="Acc.total"):
        needle.vmap(f)(np.ones((4, 1), np.float32))
