"""The cached call of a jitted step(model, opt, x, ...) (issue 14's
dispatch path, needle/api.py _StateFast): every check that prevents a
wrong answer still holds on the fast path (a structural change retraces, a
changed cell shape or dtype retraces, a cell value the user set in between
(non-contiguous, read-only) is used as its numbers, another model of the
same structure is its own state), results equal a numpy reference; and an
optimizer step allocates nothing after warm-up at sizes the pool handles."""
import numpy as np
import pytest

import needle
import needle.nn as nn
from needle import optim
from needle.runtime import memory
from needle.runtime.memory import count_allocations, pool_info


class Affine(nn.Module):
    """y = x @ w + b, and a buffer counting the calls."""

    def __init__(self, w, b):
        super().__init__()
        self.w = nn.Parameter(needle.Tensor(w))
        self.b = nn.Parameter(needle.Tensor(b))
        self.calls = needle.Tensor(np.zeros((), np.int32), requires_grad=False)

    def forward(self, x):
        self.calls = self.calls + 1
        return x @ self.w + self.b


@needle.jit
def _step(model, opt, x):
    loss, g = needle.value_and_grad(lambda m: m(x).sum())(model)
    opt.step(g)
    return loss


class _Ref:
    """The same training in numpy (float64): loss = sum(x @ w + b), so
    dL/dw = colsum(x) in every column and dL/db = batch size."""

    def __init__(self, model):
        self.w, self.b = model.w.numpy().astype(np.float64), model.b.numpy().astype(np.float64)

    def step(self, x, lr):
        x = x.astype(np.float64)
        loss = (x @ self.w + self.b).sum()
        self.w = self.w - lr * np.repeat(x.sum(0)[:, None], self.w.shape[1], axis=1)
        self.b = self.b - lr * x.shape[0]
        return loss


def _make(rng, d=3, k=4):
    return Affine(rng.standard_normal((d, k)), rng.standard_normal(k))


def _check(model, ref, loss, want):
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(model.w.numpy(), ref.w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.b.numpy(), ref.b, rtol=1e-5, atol=1e-6)


def test_cached_calls_equal_numpy_and_trace_once():
    rng = np.random.default_rng(0)
    m = _make(rng)
    opt, ref = optim.SGD(m.parameters(), lr=0.01), _Ref(m)
    traces = needle.cache_info().traces
    for _ in range(5):
        x = rng.standard_normal((5, 3)).astype(np.float32)
        _check(m, ref, _step(m, opt, x), ref.step(x, 0.01))
    assert needle.cache_info().traces - traces == 1
    assert int(m.calls.numpy()) == 5 and int(opt.t.numpy()) == 5


def test_user_writes_between_calls_are_seen():
    """Values set by the user between cached calls: a Fortran-order
    array, a read-only one, a new lr: used as numbers, no retrace."""
    rng = np.random.default_rng(1)
    m = _make(rng)
    opt, ref = optim.SGD(m.parameters(), lr=0.01), _Ref(m)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    _check(m, ref, _step(m, opt, x), ref.step(x, 0.01))
    traces = needle.cache_info().traces
    w = np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32))
    m.w.data = w                                     # same shape and dtype, other layout
    ref.w = w.astype(np.float64)
    _check(m, ref, _step(m, opt, x), ref.step(x, 0.01))
    b = rng.standard_normal(4).astype(np.float32)
    b.flags.writeable = False
    b0 = b.copy()
    m.b.data = b
    ref.b = b.astype(np.float64)
    opt.lr = 0.1
    _check(m, ref, _step(m, opt, x), ref.step(x, 0.1))
    np.testing.assert_array_equal(b, b0)             # the user's array is never written
    x_f = np.asfortranarray(rng.standard_normal((5, 3)).astype(np.float32))
    _check(m, ref, _step(m, opt, x_f), ref.step(x_f, 0.1))
    assert needle.cache_info().traces == traces


def test_structure_shape_and_dtype_changes_retrace():
    rng = np.random.default_rng(2)
    m = _make(rng)
    opt, ref = optim.SGD(m.parameters(), lr=0.01), _Ref(m)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    _step(m, opt, x)
    ref.step(x, 0.01)
    traces = needle.cache_info().traces
    m.extra = 1                                      # a new static attribute
    _check(m, ref, _step(m, opt, x), ref.step(x, 0.01))
    assert needle.cache_info().traces == traces + 1
    w = rng.standard_normal((3, 6)).astype(np.float32)
    m.w.data, m.b.data = w, np.zeros(6, np.float32)     # cell shapes change
    opt2 = optim.SGD(m.parameters(), lr=0.01)
    ref.w, ref.b = w.astype(np.float64), np.zeros(6)
    _check(m, ref, _step(m, opt2, x), ref.step(x, 0.01))
    assert needle.cache_info().traces == traces + 2
    m.w.data = m.w.numpy().astype(np.float64)            # a dtype change
    _check(m, ref, _step(m, opt2, x), ref.step(x, 0.01))
    assert m.w.dtype == np.float64 and needle.cache_info().traces == traces + 3
    x6 = rng.standard_normal((7, 3)).astype(np.float32)  # a new argument shape
    _check(m, ref, _step(m, opt2, x6), ref.step(x6, 0.01))
    assert needle.cache_info().traces == traces + 4


def test_another_model_of_the_same_structure_is_its_own_state():
    rng = np.random.default_rng(3)
    a, b = _make(rng), _make(rng)
    oa, ob = optim.SGD(a.parameters(), lr=0.01), optim.SGD(b.parameters(), lr=0.02)
    ra, rb = _Ref(a), _Ref(b)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    traces = needle.cache_info().traces
    for _ in range(3):
        _check(a, ra, _step(a, oa, x), ra.step(x, 0.01))
        _check(b, rb, _step(b, ob, x), rb.step(x, 0.02))
    assert needle.cache_info().traces - traces <= 1       # one signature for both
    _step.clear_cache()
    _check(a, ra, _step(a, oa, x), ra.step(x, 0.01))
    assert needle.cache_info().traces - traces == 2


def _mlp():
    # weights of distinct sizes above the pool's threshold (256 KiB); a small
    # batch keeps the activations below it
    return nn.Sequential(nn.Linear(256, 320), nn.ReLU(), nn.Linear(320, 288), nn.ReLU(),
                         nn.Linear(288, 10))


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.01, momentum=0.9, weight_decay=1e-4),
    lambda ps: optim.Adam(ps, lr=1e-3),
    lambda ps: optim.AdamW([{"params": ps[:2]}, {"params": ps[2:], "weight_decay": 0.0}],
                           lr=1e-3)], ids=["sgd", "adam", "adamw"])
def test_optimizer_step_allocates_nothing_after_warm_up(make):
    """Every allocation one jitted step makes (count_allocations) is the same
    each step, and none is a fresh pool-sized block: each parameter-sized
    buffer (parameters, moments, gradients, their new values) is a reused
    pool block. Adam holds 7 buffers of a parameter's size at its peak (old
    p, m, v, the gradient, new p, m, v): the pool keeps up to
    MAX_BLOCKS_PER_SIZE = 8 blocks per size (runtime/memory.py)."""
    assert memory.MAX_BLOCKS_PER_SIZE >= 7
    needle.random.seed(0)
    rng = np.random.default_rng(4)
    model = _mlp()
    opt = make(model.parameters())
    assert all(p.numpy().nbytes >= memory.MIN_BYTES for p in model.parameters()[:3:2])
    x = rng.standard_normal((16, 256)).astype(np.float32)
    y = rng.integers(0, 10, 16)

    @needle.jit
    def step(model, opt, x, y):
        loss, g = needle.value_and_grad(lambda m: nn.SoftmaxLoss()(m(x), y))(model)
        opt.step(g)
        return loss
    for _ in range(3):
        step(model, opt, x, y)
    counts, fresh = [], pool_info()[3]
    for _ in range(4):
        with count_allocations() as c:
            step(model, opt, x, y)
        counts.append((c.arrays, c.bytes))
    assert pool_info()[3] == fresh, "a pool-sized buffer was allocated fresh"
    assert len(set(counts)) == 1, counts
    assert counts[0][1] < sum(p.numpy().nbytes for p in model.parameters()), counts


def test_the_call_path_keeps_no_dropped_model_alive():
    """Once another model is stepped, a dropped model is freed by its
    reference count alone (no reference cycle through the cache holds it
    or its arrays, which the buffer pool could not reuse)."""
    import gc
    import weakref
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    first = _make(rng)                      # traced with this one (the trace keeps it)
    _step(first, optim.Adam(first.parameters(), lr=0.01), x)
    gc.disable()
    try:
        a = _make(rng)
        oa = optim.Adam(a.parameters(), lr=0.01)
        for _ in range(3):
            _step(a, oa, x)
        gone = [weakref.ref(a), weakref.ref(oa), weakref.ref(a.w.value)]
        b = _make(rng)
        ob = optim.Adam(b.parameters(), lr=0.01)
        for _ in range(3):
            _step(b, ob, x)
        del a, oa
        assert all(r() is None for r in gone)
    finally:
        gc.enable()
