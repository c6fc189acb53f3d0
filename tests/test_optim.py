"""needle.optim (issue 14): SGD and Adam against the course's update
formulas written out in numpy (also per parameter group), the learning
rate as an array cell (changing it never recompiles), jitted steps equal
eager ones, gradient clipping against numpy's norm, and state_dict round
trips that reproduce the next step exactly."""
import numpy as np
import pytest

import needle
import needle.nn as nn
from needle import optim


@pytest.fixture(autouse=True)
def _seed():
    needle.random.seed(1)
    np.random.seed(1)


def _model():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _grads(model):
    return [np.random.randn(*p.shape).astype(np.float32) for p in model.parameters()]


def _run(opt_cls, kwargs, reference, steps=4):
    model = _model()
    opt = opt_cls(model.parameters(), **kwargs)
    ps = [p.numpy().astype(np.float64) for p in model.parameters()]
    state = [dict() for _ in ps]
    for t in range(1, steps + 1):
        gs = _grads(model)
        opt.step(gs)
        ps = [reference(p, g.astype(np.float64), s, t) for p, g, s in zip(ps, gs, state)]
        for p, q in zip(model.parameters(), ps):
            np.testing.assert_allclose(p.numpy(), q, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("momentum,wd,damp", [(0.0, 0.0, None), (0.9, 0.0, None),
                                              (0.9, 0.01, None), (0.9, 0.0, 0.0)])
def test_sgd_matches_the_course_formula(momentum, wd, damp):
    lr = 0.1

    def ref(p, g, s, t):
        g = g + wd * p
        if momentum:
            d = momentum if damp is None else damp
            s["u"] = momentum * s.get("u", 0.0) + (1 - d) * g     # the course's EMA
            g = s["u"]
        return p - lr * g
    _run(optim.SGD, dict(lr=lr, momentum=momentum, weight_decay=wd, dampening=damp), ref)


@pytest.mark.parametrize("cls,wd", [(optim.Adam, 0.0), (optim.Adam, 0.01), (optim.AdamW, 0.01)])
def test_adam_matches_the_course_formula(cls, wd):
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8

    def ref(p, g, s, t):
        if cls is optim.Adam:
            g = g + wd * p                                        # L2 in the gradient
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g ** 2
        upd = (s["m"] / (1 - b1 ** t)) / (np.sqrt(s["v"] / (1 - b2 ** t)) + eps)
        if cls is optim.AdamW:
            upd = upd + wd * p
        return p - lr * upd
    _run(cls, dict(lr=lr, weight_decay=wd), ref)


def test_step_takes_a_grad_module_a_list_or_dot_grad():
    x, y = np.random.randn(5, 3).astype(np.float32), np.random.randint(0, 2, 5)
    loss = nn.SoftmaxLoss()
    a, b, c = _model(), _model(), _model()
    b.load_state_dict(a.state_dict())
    c.load_state_dict(a.state_dict())
    g = needle.grad(lambda m: loss(m(x), y))(a)
    optim.SGD(a.parameters(), lr=0.5).step(g)
    optim.SGD(b.parameters(), lr=0.5).step([q.numpy() for q in g.parameters()])
    for p, q in zip(c.parameters(), g.parameters()):
        p.grad = q
    oc = optim.SGD(c.parameters(), lr=0.5)
    oc.step()
    for p, q, r in zip(a.parameters(), b.parameters(), c.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
        np.testing.assert_array_equal(p.numpy(), r.numpy())
    oc.reset_grad()
    assert all(p.grad is None for p in c.parameters())


def _step(model, opt, x, y):
    loss, g = needle.value_and_grad(lambda m: nn.SoftmaxLoss()(m(x), y))(model)
    opt.step(g)
    return loss


def test_lr_changed_every_step_compiles_once_and_matches_eager():
    a, b = _model(), _model()
    b.load_state_dict(a.state_dict())
    oa, ob = optim.Adam(a.parameters(), lr=0.01), optim.Adam(b.parameters(), lr=0.01)
    step = needle.jit(_step)
    x, y = np.random.randn(8, 3).astype(np.float32), np.random.randint(0, 2, 8)
    traces = needle.cache_info().traces
    for k in range(200):
        lr = 0.01 / (1 + k)
        ob.lr = lr
        lb = step(b, ob, x, y)
        if k < 5:                    # eager steps are slow: compare the first few
            oa.lr = lr
            np.testing.assert_allclose(float(_step(a, oa, x, y)), float(lb), rtol=1e-5)
            for p, q in zip(a.parameters(), b.parameters()):
                np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-4, atol=1e-6)
    assert needle.cache_info().traces - traces == 1
    assert int(ob.t.numpy()) == 200
    assert float(ob.lr) == pytest.approx(0.01 / 200)


def test_state_dict_round_trip_reproduces_the_next_step():
    x, y = np.random.randn(8, 3).astype(np.float32), np.random.randint(0, 2, 8)
    a = _model()
    oa = optim.Adam(a.parameters(), lr=0.02)
    step = needle.jit(_step)
    for _ in range(3):
        step(a, oa, x, y)
    b = _model()
    ob = optim.Adam(b.parameters(), lr=0.5)
    b.load_state_dict(a.state_dict())
    ob.load_state_dict(oa.state_dict())
    assert float(ob.lr) == pytest.approx(0.02) and int(ob.t.numpy()) == 3
    assert float(step(a, oa, x, y)) == float(step(b, ob, x, y))
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    hyper = {f"param_groups.0.{k}" for k in ("lr", "beta1", "beta2", "eps", "weight_decay")}
    assert set(oa.state_dict()) == {"t"} | hyper | {f"{k}.{i}" for k in "mv" for i in range(4)}


def _groups_model():
    """A model, its parameters split into weights and biases (no decay)."""
    m = _model()
    named = m.named_parameters()
    w = [p for n, p in named if n.endswith("weight")]
    b = [p for n, p in named if n.endswith("bias")]
    return m, w, b


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW])
def test_parameter_groups_use_their_own_lr_and_decay(cls):
    """Weights: the constructor's lr and decay; biases: their own lr, no decay."""
    m, w, b = _groups_model()
    lr, wd, blr = 0.05, 0.1, 0.2
    kw = dict(momentum=0.9) if cls is optim.SGD else {}
    opt = cls([{"params": w}, {"params": b, "lr": blr, "weight_decay": 0.0}],
              lr=lr, weight_decay=wd, **kw)
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    assert opt.param_groups[1]["weight_decay"] == 0.0 and opt.param_groups[0]["weight_decay"] == wd
    assert float(opt.param_groups[1]["lr"]) == pytest.approx(blr)
    b1, b2, eps = 0.9, 0.999, 1e-8
    ref = {id(p): (p.numpy().astype(np.float64), lr if p in w else blr, wd if p in w else 0.0,
                   {}) for p in opt.params}
    for t in range(1, 4):
        gs = [np.random.randn(*p.shape).astype(np.float32) for p in opt.params]
        opt.step(gs)                                 # a list in the groups' order
        for p, g in zip(opt.params, gs):
            q, plr, pwd, s = ref[id(p)]
            g = g.astype(np.float64)
            if cls is optim.SGD:
                g = g + pwd * q
                s["u"] = 0.9 * s.get("u", 0.0) + 0.1 * g
                q = q - plr * s["u"]
            else:
                if cls is optim.Adam:
                    g = g + pwd * q
                s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
                s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
                upd = s["m"] / (1 - b1 ** t) / (np.sqrt(s["v"] / (1 - b2 ** t)) + eps)
                q = q - plr * (upd + (pwd * q if cls is optim.AdamW else 0.0))
            ref[id(p)] = (q, plr, pwd, s)
            np.testing.assert_allclose(p.numpy(), q, rtol=2e-5, atol=2e-6)


def test_param_groups_lr_writes_the_cell_and_options_retrace():
    m, w, b = _groups_model()
    opt = optim.SGD([{"params": w}, {"params": b, "weight_decay": 0.0}], lr=0.1,
                    weight_decay=0.01)
    step = needle.jit(_step)
    x, y = np.random.randn(8, 3).astype(np.float32), np.random.randint(0, 2, 8)
    step(m, opt, x, y)
    traces = needle.cache_info().traces
    for k, g in enumerate(opt.param_groups):
        g["lr"] = 0.01 * (k + 1)                 # PyTorch's way of setting a group's lr
    step(m, opt, x, y)
    assert needle.cache_info().traces == traces
    assert [float(g["lr"]) for g in opt.param_groups] == pytest.approx([0.01, 0.02])
    opt.param_groups[1]["weight_decay"] = 0.5   # a static option: traced again
    step(m, opt, x, y)
    assert needle.cache_info().traces == traces + 1


def test_group_and_gradient_errors_name_the_problem():
    m, w, b = _groups_model()
    with pytest.raises(KeyError, match="unknown options.*momentun"):
        optim.SGD([{"params": w, "momentun": 0.9}])
    with pytest.raises(ValueError, match="already in a group"):
        optim.SGD([{"params": w}, {"params": w[:1]}])
    with pytest.raises(TypeError, match=r"params\[0\] is a ndarray"):
        optim.SGD([np.zeros(3)])
    opt = optim.SGD(m.parameters())
    with pytest.raises(ValueError, match=r"Linear.weight has shape \(4, 3\), the parameter "
                                         r"\(3, 4\)"):
        opt.step([np.zeros(p.shape[::-1], np.float32) for p in m.parameters()])
    with pytest.raises(ValueError, match="3 gradients for 4 parameters"):
        opt.step(_grads(m)[:3])


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_scales_to_the_global_norm(max_norm):
    x, y = np.random.randn(8, 3).astype(np.float32), np.random.randint(0, 2, 8)
    m = _model()
    g = needle.grad(lambda m: nn.SoftmaxLoss()(m(x), y))(m)
    before = [q.numpy().astype(np.float64) for q in g.parameters()]
    norm = np.sqrt(sum((v ** 2).sum() for v in before))
    coef = min(1.0, max_norm / (norm + 1e-6))                  # PyTorch's clip_grad_norm_
    got = optim.clip_grad_norm(g, max_norm)                    # a gradient Module, in place
    np.testing.assert_allclose(float(got), norm, rtol=1e-5)
    for q, v in zip(g.parameters(), before):
        np.testing.assert_allclose(q.numpy(), v * coef, rtol=1e-5, atol=1e-7)
    # the method, on each parameter's .grad
    for p, v in zip(m.parameters(), before):
        p.grad = v.astype(np.float32)
    opt = optim.SGD(m.parameters(), lr=1.0)
    np.testing.assert_allclose(float(opt.clip_grad_norm(max_norm)), norm, rtol=1e-5)
    for p, v in zip(m.parameters(), before):
        np.testing.assert_allclose(p.grad, v * coef, rtol=1e-5, atol=1e-7)


def test_clipped_jitted_step_equals_the_eager_one():
    def step(model, opt, x, y):
        loss, g = needle.value_and_grad(lambda m: nn.SoftmaxLoss()(m(x), y))(model)
        n = opt.clip_grad_norm(0.1, g)
        opt.step(g)
        return loss, n
    a, b = _model(), _model()
    b.load_state_dict(a.state_dict())
    oa, ob = optim.Adam(a.parameters(), lr=0.01), optim.Adam(b.parameters(), lr=0.01)
    x, y = np.random.randn(8, 3).astype(np.float32), np.random.randint(0, 2, 8)
    jstep = needle.jit(step)
    for _ in range(3):
        la, na = step(a, oa, x, y)
        lb, nb = jstep(b, ob, x, y)
        np.testing.assert_allclose(float(na), float(nb), rtol=1e-5)
        for p, q in zip(a.parameters(), b.parameters()):
            np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda ps: optim.AdamW([{"params": ps[:2]}, {"params": ps[2:], "weight_decay": 0.0}],
                           lr=0.02)])
def test_resume_from_state_dicts_is_bitwise_identical(make):
    """Train k steps, save model and optimizer, load both into new objects:
    the next step equals continuing, bit for bit."""
    x, y = np.random.randn(8, 3).astype(np.float32), np.random.randint(0, 2, 8)
    a = _model()
    oa = make(a.parameters())
    step = needle.jit(_step)
    for _ in range(4):
        step(a, oa, x, y)
    b = _model()
    ob = make(b.parameters())
    ob.param_groups[0]["lr"] = 0.5                      # overwritten by the load
    b.load_state_dict(a.state_dict())
    ob.load_state_dict(oa.state_dict())
    for _ in range(2):
        assert float(step(a, oa, x, y)) == float(step(b, ob, x, y))
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    with pytest.raises(KeyError, match="missing"):
        ob.load_state_dict({})


def test_add_param_group_trains_the_new_group_with_its_options():
    m, w, b = _groups_model()
    opt = optim.SGD(w, lr=0.1, momentum=0.5)
    before = [p.numpy().astype(np.float64) for p in b]
    opt.add_param_group({"params": b, "lr": 0.2, "momentum": 0.0})
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["momentum"] == 0.0
    gs = [np.random.randn(*p.shape).astype(np.float32) for p in opt.params]
    opt.step(gs)
    for p, q, g in zip(b, before, gs[2:]):
        np.testing.assert_allclose(p.numpy(), q - 0.2 * g, rtol=1e-6, atol=1e-7)
    assert {"u.0", "u.1"} <= set(opt.state_dict()) and "u.2" not in opt.state_dict()
