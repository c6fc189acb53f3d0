"""needle.models.LanguageModel (the course's hw4) and Seq2Seq (issue 15):
LanguageModel against the course's composition written out in numpy,
its hidden state carried between calls, a training step that lowers the
loss; Seq2Seq's step-by-step decoder against its teacher-forced forward,
beam search against exhaustive search, padding masked out."""
import itertools

import numpy as np
import pytest

import needle
import needle.nn as nn
from helpers import jit
from needle.models import LanguageModel, Seq2Seq


def _ids(shape, n, seed=0):
    return np.random.default_rng(seed).integers(0, n, shape).astype(np.int32)


def _np_rnn(x, cell, h):
    W_ih, W_hh = cell.W_ih.numpy().astype(np.float64), cell.W_hh.numpy().astype(np.float64)
    b = cell.bias_ih.numpy().astype(np.float64) + cell.bias_hh.numpy().astype(np.float64)
    out = []
    for t in range(x.shape[0]):
        h = np.tanh(x[t] @ W_ih + h @ W_hh + b)
        out.append(h)
    return np.stack(out), h


@pytest.mark.on_device
def test_rnn_language_model_is_embedding_rnn_linear_and_carries_h():
    needle.random.seed(0)
    lm = LanguageModel(5, 11, 6, num_layers=1, seq_model="rnn")
    x1, x2 = _ids((4, 3), 11, 1), _ids((4, 3), 11, 2)
    f = jit(lambda m, x, h: m(x, h))
    logits, h = f(lm, x1, None)
    logits2, h2 = f(lm, x2, h)
    E = lm.embedding.weight.numpy().astype(np.float64)
    W, b = lm.linear.weight.numpy().astype(np.float64), lm.linear.bias.numpy()
    cell = lm.seq_model.rnn_cells[0]
    o1, hr = _np_rnn(E[x1], cell, np.zeros((3, 6)))
    o2, hr2 = _np_rnn(E[x2], cell, hr)
    assert logits.shape == (12, 11)
    np.testing.assert_allclose(logits, o1.reshape(12, 6) @ W + b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits2, o2.reshape(12, 6) @ W + b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h2[0], hr2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_language_model_shapes_state_and_a_training_step(kind):
    needle.random.seed(1)
    lm = LanguageModel(8, 7, 12, num_layers=2, seq_model=kind, seq_len=6)
    if kind == "transformer":
        assert lm.linear.weight.shape == (8, 7)
        assert lm.seq_model.positional_embedding.weight.shape == (6, 8)
    else:
        assert lm.linear.weight.shape == (12, 7) and len(lm.seq_model.lstm_cells) == 2
    seq = np.arange(7, dtype=np.int32)[np.arange(7 * 3) % 7].reshape(7, 3)  # 0..6 cycling
    x, y = seq[:-1], seq[1:].reshape(-1)
    loss_fn = nn.SoftmaxLoss()

    def loss(m, x, y):
        return loss_fn(m(x)[0], y)

    step = needle.jit(needle.value_and_grad(loss))
    lr = {"lstm": 2.0, "transformer": 0.1}[kind]
    first = None
    for _ in range(40):
        value, g = step(lm, x, y)
        first = float(value) if first is None else first
        for p, gp in zip(lm.parameters(), g.parameters()):
            p.data = p.numpy() - lr * np.asarray(gp.numpy())
    assert float(loss(lm, x, y)) < 0.2 * first
    out, h = lm(x)
    assert out.shape == (18, 7)
    if kind == "lstm":
        assert h[0].shape == (2, 3, 12) and h[1].shape == (2, 3, 12)
    else:
        np.testing.assert_array_equal(h, 0)
    with pytest.raises(ValueError, match="seq_model must be"):
        LanguageModel(4, 5, 6, seq_model="gru")


def _seq2seq(cell, V=5, seed=2):
    needle.random.seed(seed)
    return Seq2Seq(7, V, 6, 8, num_layers=2, cell=cell)


@pytest.mark.parametrize("cell", ["gru"])       # the LSTM's decoding: the beam test below
def test_greedy_decoding_agrees_with_teacher_forcing(cell):
    m = _seq2seq(cell, V=9)
    src = _ids((5, 3), 7, 3) + 0
    src[src == 0] = 3
    src[3:, 1] = 0                              # a shorter, padded source
    toks = np.asarray(jit(lambda m, s: m.greedy(s, 6))(m, src))
    assert toks.shape == (6, 3)
    tgt_in = np.concatenate([np.full((1, 3), m.bos_id, np.int32), toks[:-1]]).astype(np.int32)
    logits = np.asarray(jit(lambda m, s, t: m(s, t))(m, src, tgt_in))
    np.testing.assert_array_equal(np.argmax(logits, -1), toks)
    # padding is masked out: a padded source decodes as the same source alone
    alone = np.asarray(m(src[:3, 1:2], tgt_in[:, 1:2]))
    np.testing.assert_allclose(alone[:, 0], logits[:, 1], rtol=1e-5, atol=1e-5)


def _sequence_logprob(m, src, seqs):
    """log p(seq | src) of each candidate (T, N) under teacher forcing, the
    steps after the first eos_id not counted (as beam search scores them)."""
    N = seqs.shape[1]
    srcs = np.repeat(src, N, axis=1)
    tgt_in = np.concatenate([np.full((1, N), m.bos_id, np.int32), seqs[:-1]]).astype(np.int32)
    logp = np.asarray(nn.log_softmax(m(srcs, tgt_in), axis=-1), np.float64)
    picked = np.take_along_axis(logp, seqs[..., None], -1)[..., 0]
    ended = np.cumsum(seqs == m.eos_id, axis=0)
    live = np.concatenate([np.ones((1, N)), ended[:-1] == 0]).astype(bool)
    return (picked * live).sum(0)


@pytest.mark.parametrize("cell", ["lstm"])
def test_beam_search_finds_the_exhaustive_best_and_width_one_is_greedy(cell):
    m = _seq2seq(cell, V=5)
    src = np.array([[3], [4], [5], [6]], np.int32)             # (S, 1)
    T = 3
    greedy = np.asarray(m.greedy(src, T))
    np.testing.assert_array_equal(m.beam_search(src, T, beam_size=1), greedy)
    # every sequence of 3 tokens (those continuing past eos_id with eos_id only)
    cands = np.array([s for s in itertools.product(range(5), repeat=T)
                      if all(s[i + 1] == m.eos_id for i in range(T - 1)
                             if s[i] == m.eos_id)], np.int32).T
    scores = _sequence_logprob(m, src, cands)
    best = cands[:, np.argmax(scores)]
    beam = m.beam_search(src, T, beam_size=25)                 # wide enough to be exact
    np.testing.assert_array_equal(beam[:, 0], best)
    _, _, final = m.beam_scan(src, T, beam_size=25)
    np.testing.assert_allclose(np.max(np.asarray(final)), scores.max(), rtol=1e-4)
