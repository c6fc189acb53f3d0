"""needle.nn Modules (issue 14): the course's layers against numpy formulas
written out here, gradients against central differences, and state at
transform boundaries: writes under jit / grad / vmap / scan come back,
structure keys the compile cache, closures are lifted."""
import numpy as np
import pytest

import needle
import needle.nn as nn
from needle import Tensor, lax


@pytest.fixture(autouse=True)
def _seed():
    needle.random.seed(0)
    np.random.seed(0)


def _x(*shape, dtype=np.float32):
    return np.random.randn(*shape).astype(dtype)


# --- values against the course's formulas -------------------------------------------

def test_linear_is_x_w_plus_b_with_course_shapes_and_init():
    lin = nn.Linear(20, 30)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    assert w.shape == (20, 30) and b.shape == (1, 30) and w.dtype == np.float32
    bound = np.sqrt(2) * np.sqrt(3 / 20)                 # kaiming_uniform, fan_in = 20
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    assert np.abs(b).max() <= np.sqrt(2) * np.sqrt(3 / 30)   # the course: fan_in = out
    x = _x(5, 20)
    np.testing.assert_allclose(lin(x), x @ w + b, rtol=1e-5, atol=1e-6)
    assert nn.Linear(3, 4, bias=False).bias is None


def test_activations_flatten_identity_residual_sequential():
    x = _x(2, 3, 4)
    np.testing.assert_allclose(nn.ReLU()(x), np.maximum(x, 0))
    np.testing.assert_allclose(nn.Tanh()(x), np.tanh(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nn.Sigmoid()(x), 1 / (1 + np.exp(-x)), rtol=1e-5, atol=1e-6)
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Identity()(x) is x
    lin = nn.Linear(4, 4)
    np.testing.assert_allclose(nn.Residual(lin)(x), lin(x) + x, rtol=1e-6)
    seq = nn.Sequential(lin, nn.ReLU())
    np.testing.assert_allclose(seq(x), np.maximum(lin(x), 0))


def test_losses():
    z, y = _x(6, 5), np.random.randint(0, 5, 6)
    lse = np.log(np.exp(z).sum(1))
    np.testing.assert_allclose(nn.SoftmaxLoss()(z, y), np.mean(lse - z[np.arange(6), y]),
                               rtol=1e-5)
    logp = z - lse[:, None]
    s = 0.1
    want = np.mean(-(1 - s) * logp[np.arange(6), y] - s * logp.mean(1))
    np.testing.assert_allclose(nn.CrossEntropyLoss(label_smoothing=s)(z, y), want, rtol=1e-5)
    p, t = _x(4, 3), _x(4, 3)
    np.testing.assert_allclose(nn.MSELoss()(p, t), np.mean((p - t) ** 2), rtol=1e-5)


def test_batchnorm1d_course_semantics():
    bn = nn.BatchNorm1d(4, momentum=0.1)
    x = _x(8, 4) * 3 + 1
    y = bn(x)
    mean, var = x.mean(0), x.var(0)                      # biased, as the course
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * var, rtol=1e-5)
    bn.eval()
    rm, rv = bn.running_mean.numpy(), bn.running_var.numpy()
    np.testing.assert_allclose(bn(x), (x - rm) / np.sqrt(rv + 1e-5), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(bn.running_mean.numpy(), rm)     # eval: no update


def test_batchnorm2d_and_layernorm():
    x = _x(2, 3, 4, 5)
    bn = nn.BatchNorm2d(3)
    m, v = x.mean((0, 2, 3), keepdims=True), x.var((0, 2, 3), keepdims=True)
    np.testing.assert_allclose(bn(x), (x - m) / np.sqrt(v + 1e-5), rtol=1e-4, atol=1e-5)
    ln = nn.LayerNorm1d(5)
    m, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(ln(x), (x - m) / np.sqrt(v + 1e-5), rtol=1e-4, atol=1e-5)


def test_dropout_draws_fresh_masks_under_jit_and_is_identity_in_eval():
    d = nn.Dropout(0.5)
    x = np.ones((64, 64), np.float32)
    f = needle.jit(lambda d, x: d(x))
    a, b = np.asarray(f(d, x)), np.asarray(f(d, x))
    assert set(np.unique(a)) <= {0.0, 2.0} and 0.4 < (a == 0).mean() < 0.6
    assert (a != b).any()                                # the counter cell advanced
    assert int(d.rng.counter.numpy()) == 2
    d.eval()
    np.testing.assert_array_equal(f(d, x), x)
    e = nn.Dropout(0.5, rng=7)
    e2 = nn.Dropout(0.5, rng=7)
    np.testing.assert_array_equal(e(x), e2(x))           # seeded: reproducible


# --- gradients against central differences ---------------------------------------------

def _fd_check(model, loss, n_dirs=3, eps=1e-6):
    g = needle.grad(loss)(model)
    assert type(g) is type(model)
    params = model.parameters()
    grads = {id(p): q for p, q in zip(params, g.parameters())}
    rng = np.random.default_rng(0)
    for _ in range(n_dirs):
        dirs = [rng.standard_normal(p.shape) for p in params]
        base = [p.numpy().copy() for p in params]
        for p, b, d in zip(params, base, dirs):
            p.data = b + eps * d
        up = float(loss(model))
        for p, b, d in zip(params, base, dirs):
            p.data = b - eps * d
        down = float(loss(model))
        for p, b in zip(params, base):
            p.data = b
        want = (up - down) / (2 * eps)
        got = sum(float((grads[id(p)].numpy() * d).sum()) for p, d in zip(params, dirs))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Linear(5, 6, dtype="float64"), nn.ReLU(),
                          nn.Linear(6, 3, dtype="float64")),
    lambda: nn.Sequential(nn.Linear(5, 6, dtype="float64"), nn.LayerNorm1d(6, dtype="float64"),
                          nn.Tanh(), nn.Linear(6, 3, dtype="float64")),
    lambda: nn.Sequential(nn.Linear(5, 6, dtype="float64"), nn.BatchNorm1d(6, dtype="float64"),
                          nn.Sigmoid(), nn.Residual(nn.Linear(6, 6, dtype="float64")),
                          nn.Linear(6, 3, dtype="float64")),
], ids=["mlp", "layernorm", "batchnorm-residual"])
def test_gradients_match_finite_differences(make):
    model = make()
    model.eval()                  # eval: the function is pure, so differences are exact
    x, y = _x(7, 5, dtype=np.float64), np.random.randint(0, 3, 7)
    _fd_check(model, lambda m: nn.SoftmaxLoss()(m(x), y))


def test_grad_returns_the_module_type_with_none_for_buffers():
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))
    x, y = _x(6, 4), np.random.randint(0, 2, 6)
    before = model.modules[1].running_mean.numpy().copy()
    g = needle.grad(lambda m, x, y: nn.SoftmaxLoss()(m(x), y))(model, x, y)
    assert type(g) is nn.Sequential and type(g.modules[1]) is nn.BatchNorm1d
    assert g.modules[1].running_mean is None and g.modules[1].running_var is None
    assert g.modules[0].weight.shape == (4, 5)
    assert [q._origin for q in g.parameters()] == model.parameters()
    # the training-mode forward updated the running statistics (written back)
    assert not np.allclose(model.modules[1].running_mean.numpy(), before)


# --- state under jit ------------------------------------------------------------------

def _mlp_bn():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _train_step(model, opt, x, y):
    loss, g = needle.value_and_grad(lambda m: nn.SoftmaxLoss()(m(x), y))(model)
    opt.step(g)
    return loss


def test_jitted_steps_equal_eager_steps_with_batchnorm_statistics():
    a, b = _mlp_bn(), _mlp_bn()
    b.load_state_dict(a.state_dict())
    oa = needle.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    ob = needle.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    step = needle.jit(_train_step)
    for _ in range(5):
        x, y = _x(16, 4), np.random.randint(0, 3, 16)
        la = _train_step(a, oa, x, y)
        lb = step(b, ob, x, y)
        np.testing.assert_allclose(float(la), float(lb), rtol=1e-5)
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-6, err_msg=n)
    np.testing.assert_allclose(a.modules[1].running_var.numpy(),
                               b.modules[1].running_var.numpy(), rtol=1e-5)


def test_train_eval_switches_compile_exactly_twice():
    model = _mlp_bn()
    f = needle.jit(lambda m, x: m(x))
    x = _x(5, 4)
    before = needle.cache_info().traces
    for k in range(100):
        model.train() if k % 2 == 0 else model.eval()
        f(model, x)
    assert needle.cache_info().traces - before == 2


def test_two_models_of_one_structure_share_the_compiled_step():
    a, b = _mlp_bn(), _mlp_bn()
    f = needle.jit(lambda m, x: m(x))
    x = _x(5, 4)
    before = needle.cache_info().traces
    want = _eager_train_forward(b, x)
    f(a, x)
    np.testing.assert_allclose(f(b, x), want, rtol=1e-5, atol=1e-5)
    assert needle.cache_info().traces - before == 1
    b.eval(), a.eval()
    np.testing.assert_allclose(f(a, x), a(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f(b, x), b(x), rtol=1e-5, atol=1e-6)


def test_tied_weights_are_one_cell():
    l1, l2 = nn.Linear(4, 4), nn.Linear(4, 4)
    l2.weight = l1.weight
    model = nn.Sequential(l1, nn.Tanh(), l2)
    assert len(model.parameters()) == 3
    x = _x(3, 4)
    g = needle.grad(lambda m: (m(x) ** 2).sum())(model)
    assert g.modules[0].weight is g.modules[2].weight
    assert len(g.parameters()) == 3


def test_closure_modules_are_lifted_and_written_back():
    model = _mlp_bn()
    x = _x(5, 4)
    f = needle.jit(lambda x: model(x))
    f(x)
    m1 = model.modules[1].running_mean.numpy().copy()
    f(x)
    assert not np.allclose(model.modules[1].running_mean.numpy(), m1)  # written back
    lin = model.modules[3]
    traces = needle.cache_info().traces
    lin.bias.data = lin.bias.numpy() + 1.0               # a value change: no retrace
    nn.Linear(2, 2)                                      # an unrelated structure: neither
    np.testing.assert_allclose(f(x), _eager_train_forward(model, x), rtol=1e-5, atol=1e-5)
    assert needle.cache_info().traces == traces
    model.eval()                                         # a structural change: retrace
    np.testing.assert_allclose(f(x), model(x), rtol=1e-5, atol=1e-5)
    assert needle.cache_info().traces == traces + 1


def _eager_train_forward(model, x):
    """model(x) in training mode without touching its statistics."""
    saved = model.state_dict()
    out = model(x)
    model.load_state_dict(saved)
    return out


def test_state_dict_round_trip_reproduces_outputs(tmp_path):
    a = _mlp_bn()
    a(_x(9, 4))                                          # non-trivial running stats
    a.eval()
    b = _mlp_bn()
    b.eval()
    path = tmp_path / "model.npz"
    a.save(path)
    b.load(path)
    x = _x(3, 4)
    np.testing.assert_array_equal(a(x), b(x))
    assert set(a.state_dict()) == {"modules.0.weight", "modules.0.bias", "modules.1.weight",
                                   "modules.1.bias", "modules.1.running_mean",
                                   "modules.1.running_var", "modules.3.weight",
                                   "modules.3.bias"}
    with pytest.raises(KeyError):
        b.load_state_dict({"modules.0.weight": a.state_dict()["modules.0.weight"]})
    b.load_state_dict({"modules.0.weight": np.zeros((4, 8))}, strict=False)
    assert b.modules[0].weight.numpy().sum() == 0


def test_module_api():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.1),
                          nn.Linear(8, 2))
    assert [n for n, _ in model.named_parameters()] == [
        "modules.0.weight", "modules.0.bias", "modules.1.weight", "modules.1.bias",
        "modules.3.weight", "modules.3.bias"]
    assert len(model.buffers()) == 4                     # running stats, key, counter
    assert [type(c).__name__ for c in model.children()] == ["Linear", "BatchNorm1d",
                                                             "Dropout", "Linear"]
    model.eval()
    assert not any(m.training for m in model.children())
    model.train()
    assert all(m.training for m in model.children())
    text = repr(model)
    assert "(0): Linear(in_features=4, out_features=8, bias=True)" in text
    assert "74 parameters" in text                       # 40 + 16 + 18
    assert model.to("cpu") is model


def test_vjp_and_jvp_state_writes_name_the_path():
    # vjp / jvp cannot write state back: the error names where the function
    # reached each cell, through an argument or by closure
    model = _mlp_bn()
    x = _x(5, 4)
    with pytest.raises(needle.StateWriteError,
                       match=r"vjp\(f\).*argument 0\.modules\[1\]\.running_mean"):
        def f(m, x):
            return m(x).sum()
        needle.vjp(f, model, x)
    with pytest.raises(needle.StateWriteError, match=r"jvp.*model\.modules\[1\]\.running_var"):
        needle.jvp(lambda x: model(x).sum(), (x,), (x,))
    model.eval()
    out, _ = needle.jvp(lambda x: model(x).sum(), (x,), (np.ones_like(x),))
    np.testing.assert_allclose(out, np.asarray(model(x)).sum(), rtol=1e-5)


# --- vmap and scan -------------------------------------------------------------------

def test_vmap_state_write_into_an_unbatched_cell_names_the_path():
    model = _mlp_bn()
    x = _x(5, 4)
    with pytest.raises(needle.StateWriteError, match=r"modules\[1\]\.running_mean"):
        needle.vmap(lambda m, x: m(x[None]), in_axes=(None, 0))(model, x)
    model.eval()
    out = needle.vmap(lambda m, x: m(x[None])[0], in_axes=(None, 0))(model, x)
    np.testing.assert_allclose(out, model(x), rtol=1e-5, atol=1e-6)


def test_per_example_gradients_of_a_module():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x, y = _x(5, 4), np.random.randint(0, 3, 5)
    loss = nn.SoftmaxLoss()
    pe = needle.vmap(needle.grad(lambda m, x, y: loss(m(x[None]), y[None])),
                     in_axes=(None, 0, 0))(model, x, y)
    assert type(pe) is nn.Sequential and pe.modules[0].weight.shape == (5, 4, 6)
    full = needle.grad(lambda m: loss(m(x), y))(model)
    np.testing.assert_allclose(pe.modules[0].weight.numpy().mean(0),
                               full.modules[0].weight.numpy(), rtol=1e-5, atol=1e-6)


def test_scan_body_writes_become_carries():
    xs = _x(4, 6, 3)
    a, b = nn.BatchNorm1d(3), nn.BatchNorm1d(3)

    def run(bn, xs):
        return lax.scan(lambda c, x: (c + bn(x).sum(), None), 0.0, xs)[0]

    needle.jit(run)(a, xs)
    for x in xs:
        b(x)
    np.testing.assert_allclose(a.running_mean.numpy(), b.running_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(a.running_var.numpy(), b.running_var.numpy(), rtol=1e-5)
    # a cond branch's write is carried too (tests/test_control_flow_state.py)
    lax.cond(True, lambda x: a(x).sum(), lambda x: x.sum(), xs[0])
    b(xs[0])
    np.testing.assert_allclose(a.running_mean.numpy(), b.running_mean.numpy(), rtol=1e-5)


def test_tensor_input_gives_tensor_output_under_jit():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    x = Tensor(_x(2, 4))
    out = needle.jit(lambda m, x: m(x))(model, x)
    assert isinstance(out, Tensor)
    np.testing.assert_allclose(out.numpy(), model(x).numpy(), rtol=1e-6)


def test_log_compiles_names_the_attribute_that_changed(config, capsys):
    config.update("log_compiles", True)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    f = needle.jit(lambda m, x: m(x))
    x = _x(2, 4)
    f(model, x)
    model.modules[1].eps = 1e-3
    f(model, x)
    assert "attribute m.modules[1].eps changed 1e-05 -> 0.001" in capsys.readouterr().err
    shapes = needle.eval_shape(lambda m, x: m(x), model, x)
    assert shapes.shape == (2, 8)


def test_initializer_statistics():
    from needle import init
    n = 200
    u = init.kaiming_uniform(n, 300).numpy()
    b = np.sqrt(2) * np.sqrt(3 / n)
    assert u.shape == (n, 300) and u.dtype == np.float32
    assert np.abs(u).max() <= b and abs(u.std() - b / np.sqrt(3)) < 0.02 * b
    k = init.kaiming_normal(n, 300).numpy()
    assert abs(k.std() - np.sqrt(2 / n)) < 0.02 * np.sqrt(2 / n) and abs(k.mean()) < 0.01
    a = np.sqrt(6 / (n + 300))
    x = init.xavier_uniform(n, 300, gain=1.0).numpy()
    assert np.abs(x).max() <= a and abs(x.std() - a / np.sqrt(3)) < 0.02 * a
    xn = init.xavier_normal(n, 300).numpy()
    assert abs(xn.std() - np.sqrt(2 / (n + 300))) < 0.02 * np.sqrt(2 / (n + 300))
    r = init.rand(1000, low=2.0, high=3.0).numpy()
    assert r.min() >= 2.0 and r.max() < 3.0
    assert init.randb(1000, p=0.25).numpy().mean() == pytest.approx(0.25, abs=0.05)
    assert init.ones(2, 3).numpy().sum() == 6 and init.zeros(4).numpy().sum() == 0
    np.testing.assert_array_equal(init.one_hot(3, np.array([2, 0])).numpy(),
                                  [[0, 0, 1], [1, 0, 0]])
    key = needle.random.PRNGKey(3)
    np.testing.assert_array_equal(init.randn(5, rng=key).numpy(), init.randn(5, rng=key).numpy())
    needle.random.seed(5)
    a1 = init.rand(4).numpy()
    needle.random.seed(5)
    np.testing.assert_array_equal(a1, init.rand(4).numpy())


def test_freezing_a_parameter_retraces_a_cached_jitted_step():
    """`p.requires_grad = False` on an existing cell is a structural change:
    a cached jitted gradient stops differentiating it (as eager grad does)
    and an SGD step leaves it unchanged; unfreezing restores both."""
    needle.random.seed(0)
    m = nn.Linear(3, 2)
    x = np.ones((4, 3), np.float32)
    opt = needle.optim.SGD(m.parameters(), lr=0.1)

    @needle.jit
    def step(m, opt, x):
        g = needle.grad(lambda m: (m(x) ** 2).sum())(m)
        opt.step(g)
        return g

    assert step(m, opt, x).weight is not None
    m.weight.requires_grad = False
    w = m.weight.numpy().copy()
    g = step(m, opt, x)
    assert g.weight is None and g.bias is not None
    assert needle.grad(lambda m: (m(x) ** 2).sum())(m).weight is None
    np.testing.assert_array_equal(m.weight.numpy(), w)
    m.weight.requires_grad = True
    assert step(m, opt, x).weight is not None
    assert not np.array_equal(m.weight.numpy(), w)


# --- the cached call path (needle/api.py _StateFast) -----------------------------------

def _sgd_linear_ref(W, b, x, y, lr):
    """One SGD step on sum((x @ W + b - y)^2) in numpy (float64)."""
    x = x.astype(np.float64)
    r = x @ W + b - y
    return (r ** 2).sum(), W - lr * 2 * x.T @ r, b - lr * 2 * r.sum(0, keepdims=True)


@needle.jit
def _linear_step(model, opt, x, y):
    loss, g = needle.value_and_grad(lambda m: ((m(x) - y) ** 2).sum())(model)
    opt.step(g)
    return loss


def _no_full_path(monkeypatch):
    def full(*a, **k):
        raise AssertionError("the call took the full path (pytree walk and cache key)")
    monkeypatch.setattr(needle.api.Jitted, "_key", full)


def test_fresh_tensor_batches_take_the_cached_path_and_match_numpy(monkeypatch):
    """A DataLoader hands a new Tensor per step: a bare Tensor the step only
    reads is passed like an array (no gather, no retrace)."""
    model = nn.Linear(3, 2)
    opt = needle.optim.SGD(model.parameters(), lr=0.05)
    W, b = model.weight.numpy().astype(np.float64), model.bias.numpy().astype(np.float64)
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((4, 3)).astype(np.float32),
                rng.standard_normal((4, 2)).astype(np.float32)) for _ in range(6)]
    traces = needle.cache_info().traces
    for k, (x, y) in enumerate(batches):
        if k == 2:
            _no_full_path(monkeypatch)      # warmed up: every later call is the cached one
        loss = _linear_step(model, opt, Tensor(x, requires_grad=False),
                            Tensor(y, requires_grad=False))
        want, W, b = _sgd_linear_ref(W, b, x, y, 0.05)
        np.testing.assert_allclose(float(loss), want, rtol=1e-5)
        np.testing.assert_allclose(model.weight.numpy(), W, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(model.bias.numpy(), b, rtol=1e-5, atol=1e-6)
    assert needle.cache_info().traces - traces <= 1


def test_a_bare_tensor_the_step_writes_is_written_not_swapped():
    @needle.jit
    def double(t, s):
        t.data = t * 2.0 + s
        return s
    t1, t2 = Tensor(np.ones(3, np.float32)), Tensor(np.full(3, 5.0, np.float32))
    for _ in range(3):
        double(t1, np.float32(1.0))
    np.testing.assert_allclose(t1.numpy(), 15.0)          # 1 -> 3 -> 7 -> 15
    double(t2, np.float32(0.0))
    np.testing.assert_allclose(t2.numpy(), 10.0)
    np.testing.assert_allclose(t1.numpy(), 15.0)


def test_cells_written_by_another_function_or_the_user_between_cached_calls():
    """Two jitted functions over the same cells, and user writes, in between
    cached calls: each call reads the cells' current values."""
    model = nn.Linear(3, 2)
    opt = needle.optim.SGD(model.parameters(), lr=0.05)

    @needle.jit
    def shrink(model):
        model.weight.data = model.weight * 0.5
    W, b = model.weight.numpy().astype(np.float64), model.bias.numpy().astype(np.float64)
    rng = np.random.default_rng(1)
    for k in range(8):
        x = rng.standard_normal((4, 3)).astype(np.float32)
        y = rng.standard_normal((4, 2)).astype(np.float32)
        want, W, b = _sgd_linear_ref(W, b, x, y, 0.05)
        np.testing.assert_allclose(float(_linear_step(model, opt, x, y)), want, rtol=1e-5)
        if k % 3 == 0:
            shrink(model)
            W = W * 0.5
        elif k % 3 == 1:
            model.bias.data = np.full((1, 2), float(k), np.float32)
            b = np.full((1, 2), float(k))
        np.testing.assert_allclose(model.weight.numpy(), W, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(model.bias.numpy(), b, rtol=1e-5, atol=1e-6)
