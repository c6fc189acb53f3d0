"""needle.optim's functional core (issue 14), optax's shape: sgd (momentum,
nesterov), adam, adamw, chain, clip_by_global_norm and apply_updates on a
pytree of arrays, against optax's formulas written out in numpy (float64)
over several steps; eagerly, and as a jitted train step with needle.grad
whose state is a pytree passed in and returned."""
import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle import optim


def _params(rng):
    return {"w": rng.standard_normal((3, 4)).astype(np.float32),
            "b": [rng.standard_normal(4).astype(np.float32)]}


def _leaves(t):
    return [t["b"][0], t["w"]]          # dict children sort by key


def _ref_sgd(lr, momentum, nesterov):
    def step(g, s, p, t):
        if not momentum:
            return -lr * g
        s["t"] = g + momentum * s.get("t", 0.0)
        return -lr * (g + momentum * s["t"] if nesterov else s["t"])
    return step


def _ref_adam(lr, b1, b2, eps, wd=None):
    def step(g, s, p, t):
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        u = s["m"] / (1 - b1 ** t) / (np.sqrt(s["v"] / (1 - b2 ** t)) + eps)
        return -lr * (u + wd * p if wd is not None else u)
    return step


def _ref_clip(max_norm, inner):
    def step(gs, states, ps, t):
        n = np.sqrt(sum((g ** 2).sum() for g in gs))
        gs = gs if n < max_norm else [g * max_norm / n for g in gs]
        return [inner(g, s, p, t) for g, s, p in zip(gs, states, ps)]
    return step


CASES = {
    "sgd": (lambda: optim.sgd(0.1), _ref_sgd(0.1, 0.0, False)),
    "sgd_momentum": (lambda: optim.sgd(0.1, momentum=0.9), _ref_sgd(0.1, 0.9, False)),
    "sgd_nesterov": (lambda: optim.sgd(0.05, momentum=0.8, nesterov=True),
                     _ref_sgd(0.05, 0.8, True)),
    "adam": (lambda: optim.adam(0.01, b1=0.8, b2=0.99, eps=1e-6),
             _ref_adam(0.01, 0.8, 0.99, 1e-6)),
    "adamw": (lambda: optim.adamw(0.01, weight_decay=0.1), _ref_adam(0.01, 0.9, 0.999, 1e-8, 0.1)),
}


def _run(tx, ref_step, rng, steps=4, clip=None):
    params = _params(rng)
    state = tx.init(params)
    ps = [x.astype(np.float64) for x in _leaves(params)]
    refs = [{} for _ in ps]
    for t in range(1, steps + 1):
        grads = _params(rng)
        updates, state = tx.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        gs = [x.astype(np.float64) for x in _leaves(grads)]
        if clip is None:
            us = [ref_step(g, s, p, t) for g, s, p in zip(gs, refs, ps)]
        else:
            us = _ref_clip(clip, ref_step)(gs, refs, ps, t)
        ps = [p + u for p, u in zip(ps, us)]
        for got, want in zip(_leaves(params), ps):
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_transform_matches_optax_formula(name):
    make, ref = CASES[name]
    _run(make(), ref, np.random.default_rng(0))


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_chain_with_clip_by_global_norm(max_norm):
    tx = optim.chain(optim.clip_by_global_norm(max_norm), optim.sgd(0.1, momentum=0.9))
    _run(tx, _ref_sgd(0.1, 0.9, False), np.random.default_rng(1), clip=max_norm)


def test_a_schedule_as_learning_rate_reads_the_count():
    tx = optim.sgd(lambda count: 0.1 / (1.0 + nnp.astype(count, np.float32)))
    p = {"w": np.ones(3, np.float32)}
    s = tx.init(p)
    for k in range(3):
        u, s = tx.update({"w": np.ones(3, np.float32)}, s)
        np.testing.assert_allclose(u["w"], -0.1 / (1 + k), rtol=1e-6)


def test_jitted_train_step_with_grad_equals_numpy():
    """loss = sum((x @ w - y)^2) / 2n; the functional adam step under jit."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 3)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    tx = optim.adam(0.05)

    @needle.jit
    def step(params, state):
        g = needle.grad(lambda p: ((x @ p["w"] - y) ** 2).sum() / 16)(params)
        u, state = tx.update(g, state, params)
        return optim.apply_updates(params, u), state

    params = {"w": rng.standard_normal((3, 2)).astype(np.float32)}
    state = tx.init(params)
    w, ref, s = params["w"].astype(np.float64), _ref_adam(0.05, 0.9, 0.999, 1e-8), {}
    traces = needle.cache_info().traces
    for t in range(1, 6):
        params, state = step(params, state)
        w = w + ref(x.T.astype(np.float64) @ (x @ w - y) / 8, s, w, t)
        np.testing.assert_allclose(params["w"], w, rtol=1e-4, atol=1e-5)
    assert needle.cache_info().traces - traces == 1
    assert int(state[0].count) == 5


def test_update_without_params_names_the_transform():
    tx = optim.adamw(0.1)
    p = {"w": np.ones(2, np.float32)}
    with pytest.raises(ValueError, match="add_decayed_weights: update.*needs params"):
        tx.update(p, tx.init(p))
