"""needle.nn.attention: the course's (hw4) attention and Transformer layers,
MultiHeadAttention, AttentionLayer, TransformerLayer and Transformer.

Stage: the public package (needle/nn). Input: MultiHeadAttention takes
heads-first q (B, H, T, D), k and v (B, H, S, D); AttentionLayer and
TransformerLayer take (B, T, features); Transformer takes (T, B, D)
(batch_first=False, the course's default) or (B, T, D). Arrays, tracers or
Tensors. Output: MultiHeadAttention returns (result (B, H, T, D), probs
(B, H, T, S)); AttentionLayer (B, T, out_features); TransformerLayer the
input's shape; Transformer (x, zeros_like(x)), so it slots into
LanguageModel where an RNN returns (output, h). A layer returns the kind it
was given (Tensors for a Tensor input).

The scores, mask and softmax are one fused kernel between two batched
matmuls (needle/nn/dot_attention.py's `attend`, shared with
needle.nn.dot_product_attention).
"""
import numpy as np

from .. import numpy as nnp
from ..tensor import Tensor
from .dot_attention import attend
from .embedding import Embedding
from .layers import Dropout, LayerNorm1d, Linear, ReLU, Sequential
from .module import Module

__all__ = ["MultiHeadAttention", "AttentionLayer", "TransformerLayer", "Transformer"]


def _val(x):
    return x.value if isinstance(x, Tensor) else x


def _like(x, y):
    return Tensor._make(y, True) if isinstance(x, Tensor) else y


def _shape(x):
    return tuple(nnp.shape(x))


class MultiHeadAttention(Module):
    """The course's parameter-free attention activation: probs =
    softmax(q k^T / sqrt(D) + causal mask), dropout on probs, result =
    probs @ v. The causal mask is the course's: query i of T may not see key
    j of S when j > i + (S - T) (aligned at the end)."""

    def __init__(self, *, dropout=0.0, causal=False, device=None, dtype="float32"):
        super().__init__()
        self.causal = bool(causal)
        self.dropout = Dropout(dropout)

    @staticmethod
    def create_causal_mask(i, j):
        """(1, 1, i, j) booleans, True where attention is allowed."""
        return ~np.triu(np.ones((1, 1, i, j), bool), j - i + 1)

    def forward(self, q, k, v):
        qv, kv, vv = _val(q), _val(k), _val(v)
        qs, ks, vs = _shape(qv), _shape(kv), _shape(vv)
        if len(qs) != 4 or len(ks) != 4 or ks != vs or ks[:2] != qs[:2] or ks[3] != qs[3]:
            raise ValueError(f"MultiHeadAttention.forward: q must be (B, H, T, D) and k, v "
                             f"(B, H, S, D) with the same B, H, D; got q {qs}, k {ks}, v {vs}")
        keep = self.create_causal_mask(qs[2], ks[2]) if self.causal else None
        result, probs = attend(qv, kv, vv, float(1.0 / np.sqrt(qs[3])), keep=keep,
                               dropout=self.dropout)
        return _like(q, result), _like(q, probs)


class AttentionLayer(Module):
    """The course's multi-head attention layer: pre-norm LayerNorm1d on q, k
    and v, bias-free projections to num_head * dim_head, MultiHeadAttention,
    a bias-free output projection. forward(q (B, T, q_features), k=None,
    v=None) (k, v default to q) -> (B, T, out_features)."""

    def __init__(self, q_features, num_head, dim_head, *, k_features=None, v_features=None,
                 out_features=None, dropout=0.0, causal=True, device=None, dtype="float32"):
        super().__init__()
        k_features = q_features if k_features is None else k_features
        v_features = q_features if v_features is None else v_features
        out_features = q_features if out_features is None else out_features
        self.q_features, self.k_features, self.v_features = int(q_features), \
            int(k_features), int(v_features)
        self.out_features, self.num_head, self.dim_head = int(out_features), int(num_head), \
            int(dim_head)
        kw = dict(device=device, dtype=dtype)
        self.prenorm_q = LayerNorm1d(self.q_features, **kw)
        self.prenorm_k = LayerNorm1d(self.k_features, **kw)
        self.prenorm_v = LayerNorm1d(self.v_features, **kw)
        inner = self.num_head * self.dim_head
        self.q_projection = Linear(self.q_features, inner, bias=False, **kw)
        self.k_projection = Linear(self.k_features, inner, bias=False, **kw)
        self.v_projection = Linear(self.v_features, inner, bias=False, **kw)
        self.attn = MultiHeadAttention(dropout=dropout, causal=causal, **kw)
        self.out_projection = Linear(inner, self.out_features, bias=False, **kw)

    def _heads(self, x):
        B, T, _ = _shape(x)
        return nnp.transpose(nnp.reshape(x, (B, T, self.num_head, self.dim_head)),
                             (0, 2, 1, 3))

    def forward(self, q, k=None, v=None):
        qv = _val(q)
        kv = qv if k is None else _val(k)
        vv = qv if v is None else _val(v)
        for name, a, f in (("q", qv, self.q_features), ("k", kv, self.k_features),
                           ("v", vv, self.v_features)):
            s = _shape(a)
            if len(s) != 3 or s[-1] != f:
                raise ValueError(f"AttentionLayer.forward: {name} must be (B, T, {f}), got "
                                 f"shape {s}")
        B, T, _ = _shape(qv)
        qh = self._heads(self.q_projection(self.prenorm_q(qv)))
        kh = self._heads(self.k_projection(self.prenorm_k(kv)))
        vh = self._heads(self.v_projection(self.prenorm_v(vv)))
        result, _ = self.attn(qh, kh, vh)
        result = nnp.reshape(nnp.transpose(result, (0, 2, 1, 3)),
                             (B, T, self.num_head * self.dim_head))
        return _like(q, self.out_projection(result))


class TransformerLayer(Module):
    """The course's pre-norm Transformer block:
    x = x + dropout(attn(x)); x = x + dropout(linear2(dropout(relu(linear1(
    layer_norm(x)))))). Input and output (B, T, q_features)."""

    def __init__(self, q_features, num_head, dim_head, hidden_size, *, dropout=0.0,
                 causal=True, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.attn = AttentionLayer(q_features, num_head, dim_head, dropout=dropout,
                                   causal=causal, **kw)
        self.layer_norm = LayerNorm1d(q_features, **kw)
        self.linear1 = Linear(q_features, hidden_size, **kw)
        self.linear2 = Linear(hidden_size, q_features, **kw)
        self.relu = ReLU()
        self.dropout = Dropout(dropout)

    def forward(self, x):
        xv = _val(x)
        xv = nnp.add(xv, self.dropout(self.attn(xv)))
        y = self.linear2(self.dropout(self.relu(self.linear1(self.layer_norm(xv)))))
        return _like(x, nnp.add(xv, self.dropout(y)))


class Transformer(Module):
    """The course's decoder-only Transformer: a learned positional
    embedding (Embedding(sequence_len, embedding_size)) added to the input,
    then num_layers TransformerLayers. forward(x, h=None) -> (x,
    zeros_like(x)); x is (T, B, D) unless batch_first."""

    def __init__(self, embedding_size, hidden_size, num_layers, *, num_head=8, dim_head=32,
                 dropout=0.0, causal=True, device=None, dtype="float32", batch_first=False,
                 sequence_len=2048):
        super().__init__()
        self.embedding_size, self.batch_first = int(embedding_size), bool(batch_first)
        self.sequence_len = int(sequence_len)
        kw = dict(device=device, dtype=dtype)
        self.positional_embedding = Embedding(self.sequence_len, self.embedding_size, **kw)
        self.layers = Sequential(*[
            TransformerLayer(embedding_size, num_head, dim_head, hidden_size, dropout=dropout,
                             causal=causal, **kw) for _ in range(int(num_layers))])

    def forward(self, x, h=None):
        xv = _val(x)
        s = _shape(xv)
        if len(s) != 3 or s[-1] != self.embedding_size:
            lay = "(B, T, D)" if self.batch_first else "(T, B, D)"
            raise ValueError(f"Transformer.forward: x must be {lay} with D="
                             f"{self.embedding_size}, got shape {s}")
        if not self.batch_first:
            xv = nnp.swapaxes(xv, 0, 1)
        T = _shape(xv)[1]
        if T > self.sequence_len:
            raise ValueError(f"Transformer.forward: the sequence has {T} steps, more than "
                             f"sequence_len={self.sequence_len} positions")
        pos = self.positional_embedding(np.arange(T, dtype=np.int32))       # (T, D)
        xv = self.layers(nnp.add(xv, pos))
        if not self.batch_first:
            xv = nnp.swapaxes(xv, 0, 1)
        return _like(x, xv), _like(x, nnp.zeros_like(xv))
