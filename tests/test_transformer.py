"""needle.nn AttentionLayer / TransformerLayer / Transformer (issue 15,
the course's hw4): outputs against the course's formulas written out in
float64 numpy, every parameter's gradient against central differences of
those formulas, and the course's conventions (pre-norm, bias-free
projections, (x, zeros_like(x)), batch_first)."""
import numpy as np
import pytest

import needle
import needle.nn as nn
from helpers import jit


def _ln(x, w, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    var = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(var + eps) * w + b


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _ref_attention_layer(P, pre, x, heads, dh, causal):
    """The course's AttentionLayer on (B, T, F) with k = v = q."""
    B, T, _ = x.shape

    def split(y):
        return y.reshape(B, T, heads, dh).transpose(0, 2, 1, 3)
    q = split(_ln(x, P[pre + "prenorm_q.weight"], P[pre + "prenorm_q.bias"])
              @ P[pre + "q_projection.weight"])
    k = split(_ln(x, P[pre + "prenorm_k.weight"], P[pre + "prenorm_k.bias"])
              @ P[pre + "k_projection.weight"])
    v = split(_ln(x, P[pre + "prenorm_v.weight"], P[pre + "prenorm_v.bias"])
              @ P[pre + "v_projection.weight"])
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)
    if causal:
        logits = logits - np.finfo(np.float32).max * np.triu(np.ones((T, T)), 1)
    out = (_softmax(logits) @ v).transpose(0, 2, 1, 3).reshape(B, T, heads * dh)
    return out @ P[pre + "out_projection.weight"]


def _ref_transformer_layer(P, pre, x, heads, dh, causal):
    x = x + _ref_attention_layer(P, pre + "attn.", x, heads, dh, causal)
    h = _ln(x, P[pre + "layer_norm.weight"], P[pre + "layer_norm.bias"])
    h = np.maximum(h @ P[pre + "linear1.weight"] + P[pre + "linear1.bias"], 0)
    return x + h @ P[pre + "linear2.weight"] + P[pre + "linear2.bias"]


def _ref_transformer(P, x, n_layers, heads, dh, causal=True):
    """The course's Transformer on (T, B, D): positions 0..T-1 embedded and
    added, then the layers, batch-first inside."""
    T = x.shape[0]
    y = x.transpose(1, 0, 2) + P["positional_embedding.weight"][:T][None]
    for i in range(n_layers):
        y = _ref_transformer_layer(P, f"layers.modules.{i}.", y, heads, dh, causal)
    return y.transpose(1, 0, 2)


def _params64(model):
    return {n: p.numpy().astype(np.float64) for n, p in model.named_parameters()}


def _close(got, want, rel=2e-5):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.abs(got - want).max()
    assert err <= rel * np.abs(want).max(), (err, np.abs(want).max())


def _check_grads(model, loss, ref_loss, rel=1e-4, eps=1e-6):
    """Every parameter's gradient of `loss` (needle, float32) against central
    differences of `ref_loss` (a float64 numpy function of the parameters),
    within `rel` of the largest reference gradient (some are exactly zero:
    the bias of the key's pre-norm shifts every score of a row equally)."""
    g = jit(needle.grad(loss))(model)
    got = dict(g.named_parameters())
    P = _params64(model)
    assert set(got) == set(P)
    fds = {}
    for name, w in P.items():
        fd = np.zeros(w.shape)
        for j in range(w.size):
            for sign in (1, -1):
                Q = dict(P)
                Q[name] = w.copy()
                Q[name].reshape(-1)[j] += sign * eps
                fd.reshape(-1)[j] += sign * ref_loss(Q) / (2 * eps)
        fds[name] = fd
    scale = max(np.abs(fd).max() for fd in fds.values())
    for name, fd in fds.items():
        err = np.abs(got[name].numpy() - fd).max()
        assert err <= rel * scale, (name, err, scale)


@pytest.mark.on_device
@pytest.mark.parametrize("causal", [True, False])
def test_attention_layer_is_the_course_formula(causal):
    needle.random.seed(0)
    rng = np.random.default_rng(0)
    layer = nn.AttentionLayer(4, 2, 3, causal=causal)
    for n, p in layer.named_parameters():           # non-trivial norms
        if "prenorm" in n:
            p.data = rng.standard_normal(p.shape).astype(np.float32)
    assert layer.q_projection.bias is None and layer.out_projection.weight.shape == (6, 4)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    out = jit(lambda m, x: m(x))(layer, x)
    want = _ref_attention_layer(_params64(layer), "", x.astype(np.float64), 2, 3, causal)
    _close(out, want)
    R = rng.standard_normal(want.shape)
    _check_grads(layer, lambda m: (m(x) * R.astype(np.float32)).sum(),
                 lambda P: (_ref_attention_layer(P, "", x.astype(np.float64), 2, 3, causal)
                            * R).sum())


def test_attention_layer_cross_attention_features():
    needle.random.seed(1)
    rng = np.random.default_rng(1)
    layer = nn.AttentionLayer(4, 2, 3, k_features=5, v_features=6, out_features=7,
                              causal=False)
    q = rng.standard_normal((2, 3, 4)).astype(np.float32)
    k = rng.standard_normal((2, 5, 5)).astype(np.float32)
    v = rng.standard_normal((2, 5, 6)).astype(np.float32)
    P = _params64(layer)
    B = 2

    def split(y, T):
        return y.reshape(B, T, 2, 3).transpose(0, 2, 1, 3)
    qh = split(_ln(q, P["prenorm_q.weight"], P["prenorm_q.bias"]) @ P["q_projection.weight"], 3)
    kh = split(_ln(k, P["prenorm_k.weight"], P["prenorm_k.bias"]) @ P["k_projection.weight"], 5)
    vh = split(_ln(v, P["prenorm_v.weight"], P["prenorm_v.bias"]) @ P["v_projection.weight"], 5)
    att = _softmax(qh @ kh.transpose(0, 1, 3, 2) / np.sqrt(3)) @ vh
    want = att.transpose(0, 2, 1, 3).reshape(B, 3, 6) @ P["out_projection.weight"]
    _close(layer(q, k, v), want)
    with pytest.raises(ValueError, match=r"AttentionLayer.forward: k must be \(B, T, 5\)"):
        layer(q, q, v)


@pytest.mark.on_device
def test_transformer_values_and_every_parameter_gradient():
    needle.random.seed(2)
    rng = np.random.default_rng(2)
    model = nn.Transformer(4, 5, 2, num_head=2, dim_head=2, sequence_len=8)
    for n, p in model.named_parameters():           # non-trivial norms and biases
        if "norm" in n or "bias" in n:
            p.data = (0.5 * rng.standard_normal(p.shape)).astype(np.float32) + \
                (1.0 if n.endswith("weight") else 0.0)
    x = rng.standard_normal((6, 2, 4)).astype(np.float32)
    out, h = jit(lambda m, x: m(x))(model, x)
    want = _ref_transformer(_params64(model), x.astype(np.float64), 2, 2, 2)
    _close(out, want)
    np.testing.assert_array_equal(h, np.zeros_like(want))
    R = rng.standard_normal(want.shape)
    _check_grads(model, lambda m: (m(x)[0] * R.astype(np.float32)).sum(),
                 lambda P: (_ref_transformer(P, x.astype(np.float64), 2, 2, 2) * R).sum())


def test_transformer_batch_first_layer_structure_and_errors():
    needle.random.seed(3)
    rng = np.random.default_rng(3)
    a = nn.Transformer(4, 6, 1, num_head=2, dim_head=2, sequence_len=5)
    b = nn.Transformer(4, 6, 1, num_head=2, dim_head=2, sequence_len=5, batch_first=True)
    b.load_state_dict(a.state_dict())
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(b(x.transpose(1, 0, 2))[0], a(x)[0].transpose(1, 0, 2),
                               rtol=1e-5, atol=1e-6)
    # a later position never changes an earlier output (causal)
    y = x.copy()
    y[3:] += 1.0
    np.testing.assert_allclose(a(y)[0][:3], a(x)[0][:3], rtol=1e-5, atol=1e-6)
    layer = a.layers.modules[0]
    assert layer.attn.attn.causal and layer.linear1.weight.shape == (4, 6)
    assert a.positional_embedding.weight.shape == (5, 4)
    t = a(needle.Tensor(x))
    assert isinstance(t[0], needle.Tensor) and isinstance(t[1], needle.Tensor)
    with pytest.raises(ValueError, match="6 steps, more than sequence_len=5"):
        a(np.zeros((6, 1, 4), np.float32))
    with pytest.raises(ValueError, match=r"x must be \(T, B, D\) with D=4"):
        a(np.zeros((5, 4), np.float32))
