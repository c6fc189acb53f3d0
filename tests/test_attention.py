"""needle.nn.dot_product_attention (JAX's semantics, (B, T, N, H)) and the
course's MultiHeadAttention ((B, H, T, D), returning (result, probs)):
values against float64 numpy formulas, gradients against central
differences of those formulas, and the fused program pinned by its kernel
and library-call counts."""
import numpy as np
import pytest

import needle
import needle.nn as nn
from helpers import jit


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _ref_dpa(q, k, v, bias=None, mask=None, scale=None, is_causal=False):
    """JAX's documented semantics in float64: (B, T, N, H) layout, K kv heads
    each serving N // K query heads, masked logits at -0.7 * float32 max."""
    B, T, N, H = q.shape
    S, K = k.shape[1], k.shape[2]
    k, v = np.repeat(k, N // K, axis=2), np.repeat(v, N // K, axis=2)
    scale = 1 / np.sqrt(H) if scale is None else scale
    logits = np.einsum("btnh,bsnh->bnts", q, k) * scale
    if bias is not None:
        logits = logits + bias
    keep = np.ones((T, S), bool)
    if is_causal:
        keep = np.tril(keep)
    if mask is not None:
        keep = keep & mask
    logits = np.where(keep, logits, -0.7 * np.finfo(np.float32).max)
    return np.einsum("bnts,bsnh->btnh", _softmax(logits), v)


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _close(got, want, rel=2e-5):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.abs(got - want).max()
    assert err <= rel * np.abs(want).max(), (err, np.abs(want).max())


CASES = [  # name, T, S, N, K, with bias, with mask, causal, scale
    ("plain", 5, 7, 2, 2, False, False, False, None),
    ("causal", 6, 6, 2, 2, False, False, True, None),
    ("bias-mask-scale", 4, 6, 4, 4, True, True, False, 0.3),
    ("gqa-causal-bias", 5, 5, 4, 2, True, False, True, None),
    ("mqa-mask", 3, 4, 3, 1, False, True, False, None),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c[0], marks=[pytest.mark.on_device])
                                  for c in CASES])
def test_dot_product_attention_matches_jax_semantics(case):
    _, T, S, N, K, with_bias, with_mask, causal, scale = case
    rng = np.random.default_rng(0)
    B, H = 2, 3
    q, k, v = _rand(rng, B, T, N, H), _rand(rng, B, S, K, H), _rand(rng, B, S, K, H)
    bias = _rand(rng, 1, N, T, S) if with_bias else None
    mask = rng.random((B, 1, T, S)) > 0.3 if with_mask else None
    if with_mask:
        mask[0, 0, 0, :] = False                 # a fully masked row: uniform weights
    out = jit(lambda q, k, v, b, m: nn.dot_product_attention(
        q, k, v, b, m, scale=scale, is_causal=causal))(q, k, v, bias, mask)
    f64 = [None if a is None else a.astype(np.float64) for a in (q, k, v, bias)]
    want = _ref_dpa(*f64, mask=mask, scale=scale, is_causal=causal)
    _close(out, want)
    if with_mask:
        np.testing.assert_allclose(out[0, 0], np.repeat(v, N // K, 2)[0].mean(0), rtol=1e-5,
                                   atol=1e-6)

    # gradients of sum(out * R) with respect to q, k, v (and bias): central
    # differences of the float64 formula
    R = rng.standard_normal(want.shape)
    args = [q, k, v] + ([bias] if with_bias else [])
    argnums = tuple(range(len(args)))

    def loss(*a):
        b = a[3] if with_bias else None
        return (nn.dot_product_attention(a[0], a[1], a[2], b, mask, scale=scale,
                                         is_causal=causal) * R.astype(np.float32)).sum()
    grads = jit(needle.grad(loss, argnums=argnums))(*args)
    eps = 1e-6
    for i, (a, g) in enumerate(zip(args, grads)):
        base = [x.astype(np.float64) for x in args]
        fd = np.zeros(a.shape)
        for j in range(a.size):
            for sign in (1, -1):
                p = [x.copy() for x in base]
                p[i].reshape(-1)[j] += sign * eps
                b = p[3] if with_bias else None
                fd.reshape(-1)[j] += sign * (_ref_dpa(p[0], p[1], p[2], b, mask, scale,
                                                       causal) * R).sum() / (2 * eps)
        _close(g, fd, rel=1e-4)


def test_unbatched_inputs_and_errors():
    rng = np.random.default_rng(1)
    q, k, v = _rand(rng, 4, 2, 3), _rand(rng, 5, 2, 3), _rand(rng, 5, 2, 3)
    out = nn.dot_product_attention(q, k, v)
    _close(out, _ref_dpa(q[None].astype(np.float64), k[None].astype(np.float64),
                         v[None].astype(np.float64))[0])
    with pytest.raises(ValueError, match=r"dot_product_attention: key and value must be "
                                         r"\(B, S, K, H\)"):
        nn.dot_product_attention(q[None], _rand(rng, 1, 5, 3, 3), _rand(rng, 1, 5, 3, 3))
    with pytest.raises(TypeError, match="mask must be boolean"):
        nn.dot_product_attention(q, k, v, mask=np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"bias of shape \(3, 5\) does not broadcast"):
        nn.dot_product_attention(q, k, v, bias=np.ones((3, 5), np.float32))


def test_fused_into_one_softmax_kernel_between_two_matmuls():
    rng = np.random.default_rng(2)
    q, k, v = _rand(rng, 2, 16, 4, 8), _rand(rng, 2, 16, 4, 8), _rand(rng, 2, 16, 4, 8)
    bias, mask = _rand(rng, 1, 4, 16, 16), rng.random((2, 1, 16, 16)) > 0.5
    lo = needle.jit(lambda q, k, v, b, m: nn.dot_product_attention(
        q, k, v, b, m, is_causal=True)).lower(q, k, v, bias, mask)
    # scale, bias, mask and the softmax in one kernel; the second writes (B, T, N, H)
    assert (lo.kernel_count, lo.library_call_count) == (2, 2)


# --- the course's MultiHeadAttention -----------------------------------------------

def _ref_mha(q, k, v, causal):
    """The course's formula: softmax(q k^T / sqrt(D) + mask) with the additive
    mask -finfo(float32).max * triu(ones(T, S), S - T + 1)."""
    T, S, D = q.shape[2], k.shape[2], q.shape[3]
    logits = q @ np.swapaxes(k, -1, -2) / np.sqrt(D)
    if causal:
        logits = logits - np.finfo(np.float32).max * np.triu(np.ones((T, S)), S - T + 1)
    probs = _softmax(logits)
    return probs @ v, probs


@pytest.mark.on_device
@pytest.mark.parametrize("T,S,causal", [(5, 5, True), (3, 6, True), (4, 6, False)])
def test_multihead_attention_is_the_course_formula(T, S, causal):
    rng = np.random.default_rng(3)
    q, k, v = _rand(rng, 2, 3, T, 4), _rand(rng, 2, 3, S, 4), _rand(rng, 2, 3, S, 4)
    mha = nn.MultiHeadAttention(causal=causal)
    result, probs = jit(lambda m, q, k, v: m(q, k, v))(mha, q, k, v)
    want, want_p = _ref_mha(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64),
                            causal)
    _close(result, want)
    _close(probs, want_p)
    R = rng.standard_normal(want.shape)
    gq = jit(needle.grad(lambda q: (mha(q, k, v)[0] * R.astype(np.float32)).sum()))(q)
    fd, eps = np.zeros(q.shape), 1e-6
    q64 = q.astype(np.float64)
    for j in range(q.size):
        p, m = q64.copy(), q64.copy()
        p.reshape(-1)[j] += eps
        m.reshape(-1)[j] -= eps
        fd.reshape(-1)[j] = ((_ref_mha(p, k, v, causal)[0] - _ref_mha(m, k, v, causal)[0])
                             * R).sum() / (2 * eps)
    _close(gq, fd, rel=1e-4)


def test_multihead_attention_dropout_acts_on_probs_and_tensors_stay_tensors():
    needle.random.seed(4)
    rng = np.random.default_rng(4)
    q, k, v = _rand(rng, 1, 2, 6, 3), _rand(rng, 1, 2, 6, 3), _rand(rng, 1, 2, 6, 3)
    mha = nn.MultiHeadAttention(dropout=0.5)
    result, probs = mha(needle.Tensor(q), needle.Tensor(k), needle.Tensor(v))
    assert isinstance(result, needle.Tensor) and isinstance(probs, needle.Tensor)
    p = probs.numpy()
    full = _ref_mha(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64),
                    False)[1]
    kept = p != 0
    assert 0.2 < kept.mean() < 0.8
    np.testing.assert_allclose(p[kept], 2 * full[kept], rtol=1e-5)      # inverted dropout
    np.testing.assert_allclose(result.numpy(), p @ v, rtol=1e-5, atol=1e-6)
    mha.eval()
    np.testing.assert_allclose(mha(q, k, v)[1], full, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"MultiHeadAttention.forward: q must be"):
        mha(q[0], k, v)
