"""needle.models.seq2seq: an encoder-decoder with attention (Luong et al.'s
"general" attention), built from needle.nn's layers.

Stage: the public package (needle/models). Input: sequence-first token ids,
src (S, B) padded at the end with `pad_id`, and for teacher forcing the
decoder's input tgt_in (T, B) (`bos_id` then the target shifted right).
Output: `forward(src, tgt_in)` -> logits (T, B, tgt_vocab); `greedy(src,
max_len)` -> tokens (max_len, B); `beam_search(src, max_len, beam_size)` ->
the best beam's tokens (max_len, B) (numpy; `eos_id` then fills the rest).

Encoder: Embedding -> LSTM or GRU (num_layers). Decoder: Embedding -> the
same kind of layer, its initial h (every layer) tanh(W_b mean_s e_s), the
mean over the source's real positions (c0 = 0 for an LSTM), so a padded
source decodes exactly as the same source alone; each decoder
output s_t attends over the encoder outputs e_s with score s_t . (W_a e_s)
(needle.nn.dot_product_attention, padding masked out), and the logits are
Linear(tanh(W_c [s_t; context_t])). Teacher forcing runs the decoder as one
scan over the whole target; greedy and beam-search decoding are one
`needle.lax.scan` over the output steps (jittable), feeding back the
chosen tokens.
"""
import numpy as np

from .. import nn
from .. import numpy as nnp
from ..control_flow import scan
from ..lax_sorting import top_k

__all__ = ["Seq2Seq"]


class Seq2Seq(nn.Module):
    """Seq2Seq(src_vocab, tgt_vocab, embedding_size, hidden_size,
    num_layers=1, cell="lstm" | "gru", pad_id=0, bos_id=1, eos_id=2)."""

    def __init__(self, src_vocab, tgt_vocab, embedding_size, hidden_size, num_layers=1,
                 cell="lstm", pad_id=0, bos_id=1, eos_id=2, device=None, dtype="float32"):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"Seq2Seq: cell must be 'lstm' or 'gru', got {cell!r}")
        kw = dict(device=device, dtype=dtype)
        self.cell, self.hidden_size, self.tgt_vocab = cell, int(hidden_size), int(tgt_vocab)
        self.pad_id, self.bos_id, self.eos_id = int(pad_id), int(bos_id), int(eos_id)
        layer = nn.LSTM if cell == "lstm" else nn.GRU
        self.src_embedding = nn.Embedding(src_vocab, embedding_size, **kw)
        self.tgt_embedding = nn.Embedding(tgt_vocab, embedding_size, **kw)
        self.encoder = layer(embedding_size, hidden_size, num_layers, **kw)
        self.decoder = layer(embedding_size, hidden_size, num_layers, **kw)
        self.num_layers = int(num_layers)
        self.bridge = nn.Linear(hidden_size, self.num_layers * hidden_size, **kw)  # W_b
        self.attn_key = nn.Linear(hidden_size, hidden_size, bias=False, **kw)     # W_a
        self.combine = nn.Linear(2 * hidden_size, hidden_size, bias=False, **kw)  # W_c
        self.out = nn.Linear(hidden_size, tgt_vocab, **kw)

    # -- pieces ----------------------------------------------------------------------
    def encode(self, src):
        """src (S, B) -> (memory: encoder outputs (B, S, H), their keys
        W_a e_s (B, S, H), the attention mask (B, 1, 1, S)), and the
        decoder's initial state."""
        src = src.value if isinstance(src, nn.Tensor) else src
        shape = tuple(nnp.shape(src))
        if len(shape) != 2:
            raise ValueError(f"Seq2Seq.encode: src must be (S, B) token ids, got shape {shape}")
        enc, _ = self.encoder(self.src_embedding(src))
        enc = nnp.swapaxes(enc, 0, 1)                                    # (B, S, H)
        real = nnp.swapaxes(nnp.not_equal(src, self.pad_id), 0, 1)       # (B, S)
        w = nnp.astype(real, enc.dtype)[..., None]
        mean = nnp.divide(nnp.sum(nnp.multiply(enc, w), axis=1),
                          nnp.maximum(nnp.sum(w, axis=1), 1.0))
        B, L, H = shape[1], self.num_layers, self.hidden_size
        h0 = nnp.swapaxes(nnp.reshape(nnp.tanh(self.bridge(mean)), (B, L, H)), 0, 1)
        state = (h0, nnp.zeros_like(h0)) if self.cell == "lstm" else h0
        return (enc, self.attn_key(enc), real[:, None, None, :]), state

    def _readout(self, dec, memory):
        """dec (B, T, H) decoder outputs -> logits (B, T, V)."""
        enc, keys, mask = memory
        ctx = nn.dot_product_attention(dec[:, :, None, :], keys[:, :, None, :],
                                       enc[:, :, None, :], mask=mask, scale=1.0)[:, :, 0, :]
        comb = nnp.tanh(self.combine(nnp.concatenate([dec, ctx], axis=-1)))
        return self.out(comb)

    def _step(self, tok, state):
        """One decoder step for tokens tok (N,) through every layer's cell."""
        x = self.tgt_embedding(tok)
        if self.cell == "lstm":
            hs, cs = [], []
            for k, cell in enumerate(self.decoder.lstm_cells):
                h, c = cell(x, (state[0][k], state[1][k]))
                hs.append(h)
                cs.append(c)
                x = h
            return x, (nnp.stack(hs), nnp.stack(cs))
        hs = []
        for k, cell in enumerate(self.decoder.gru_cells):
            x = cell(x, state[k])
            hs.append(x)
        return x, nnp.stack(hs)

    # -- teacher forcing -------------------------------------------------------------
    def forward(self, src, tgt_in):
        """Teacher forcing: src (S, B), tgt_in (T, B) -> logits (T, B, V)
        (a Tensor for a Tensor src)."""
        memory, state = self.encode(src)
        tgt = tgt_in.value if isinstance(tgt_in, nn.Tensor) else tgt_in
        dec, _ = self.decoder(self.tgt_embedding(tgt), state)
        logits = nnp.swapaxes(self._readout(nnp.swapaxes(dec, 0, 1), memory), 0, 1)
        return nn.Tensor._make(logits, True) if isinstance(src, nn.Tensor) else logits

    # -- decoding ----------------------------------------------------------------------
    def greedy(self, src, max_len):
        """The most likely token at every step, fed back: (max_len, B)."""
        memory, state = self.encode(src)
        B = nnp.shape(src)[1]
        tok0 = nnp.full((B,), self.bos_id, dtype=np.int32)

        def greedy_step(carry, _):
            tok, state = carry
            h, state = self._step(tok, state)
            logits = self._readout(h[:, None, :], memory)[:, 0, :]
            tok = nnp.astype(nnp.argmax(logits, axis=-1), np.int32)
            return (tok, state), tok
        _, toks = scan(greedy_step, (tok0, state), None, length=int(max_len))
        return toks

    def beam_search(self, src, max_len, beam_size=4):
        """Beam search over summed log-probabilities (a finished beam keeps
        its score and emits eos_id): the best beam's tokens (max_len, B),
        as numpy. The search is one scan; the back-tracking is numpy."""
        toks, parents, scores = self.beam_scan(src, max_len, beam_size)
        toks, parents, scores = (np.asarray(a) for a in (toks, parents, scores))
        T, B, K = toks.shape
        best = np.argmax(scores, axis=1)                    # (B,)
        out = np.zeros((T, B), np.int64)
        beam = best
        for t in range(T - 1, -1, -1):
            out[t] = toks[t, np.arange(B), beam]
            beam = parents[t, np.arange(B), beam]
        return out

    def beam_scan(self, src, max_len, beam_size=4):
        """The scan of beam_search: per step the chosen tokens (T, B, K) and
        their parent beams (T, B, K); and the final scores (B, K)."""
        K, V = int(beam_size), self.tgt_vocab
        memory, state = self.encode(src)
        B = nnp.shape(src)[1]
        memory = tuple(nnp.repeat(m, K, axis=0) for m in memory)        # (B*K, ...)
        state = (tuple(nnp.repeat(s, K, axis=1) for s in state) if self.cell == "lstm"
                 else nnp.repeat(state, K, axis=1))
        neg = -1e9
        scores0 = nnp.asarray(np.tile(np.array([0.0] + [neg] * (K - 1), np.float32), (B, 1)))
        done0 = nnp.zeros((B, K), dtype=bool)
        tok0 = nnp.full((B * K,), self.bos_id, dtype=np.int32)
        eos_row = np.full((V,), neg, np.float32)
        eos_row[self.eos_id] = 0.0
        base = np.repeat(np.arange(B, dtype=np.int32) * K, K).reshape(B, K)

        def beam_step(carry, _):
            tok, state, scores, done = carry
            h, state = self._step(tok, state)
            logp = nn.log_softmax(self._readout(h[:, None, :], memory)[:, 0, :], axis=-1)
            logp = nnp.where(done[..., None], eos_row, nnp.reshape(logp, (B, K, V)))
            cand = nnp.reshape(nnp.add(scores[..., None], logp), (B, K * V))
            scores, idx = top_k(cand, K)
            parent = nnp.astype(idx // V, np.int32)
            tok = nnp.astype(idx % V, np.int32)
            flat = nnp.reshape(nnp.add(parent, base), (B * K,))
            state = (tuple(nnp.take(s, flat, axis=1) for s in state) if self.cell == "lstm"
                     else nnp.take(state, flat, axis=1))
            done = nnp.logical_or(nnp.take_along_axis(done, parent, axis=1),
                                  nnp.equal(tok, self.eos_id))
            return (nnp.reshape(tok, (B * K,)), state, scores, done), (tok, parent)
        carry, (toks, parents) = scan(beam_step, (tok0, state, scores0, done0), None,
                                      length=int(max_len))
        return toks, parents, carry[2]
