"""needle.models.language: the course's (hw4) `LanguageModel`: Embedding ->
sequence model (RNN, LSTM or Transformer) -> Linear.

Stage: the public package (needle/models). Input: token ids (T, B)
(integers, or the course's float ids) and an optional hidden state (the
sequence model's: (L, B, H) for the RNN, a tuple (h0, c0) for the LSTM,
ignored by the Transformer). Output: (logits (T * B, output_size), the new
hidden state), the kind given (Tensors for a Tensor input).
"""
from .. import numpy as nnp
from .. import nn
from ..tensor import Tensor

__all__ = ["LanguageModel"]


class LanguageModel(nn.Module):
    """LanguageModel(embedding_size, output_size, hidden_size, num_layers=1,
    seq_model="rnn" | "lstm" | "transformer", seq_len=40): the course's.
    output_size is the vocabulary; for the Transformer the model width is
    embedding_size (hidden_size is its feed-forward width) and seq_len its
    number of learned positions."""

    def __init__(self, embedding_size, output_size, hidden_size, num_layers=1, seq_model="rnn",
                 seq_len=40, device=None, dtype="float32"):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.embedding_size, self.output_size = int(embedding_size), int(output_size)
        self.hidden_size, self.seq_model_name = int(hidden_size), seq_model
        self.embedding = nn.Embedding(output_size, embedding_size, **kw)
        if seq_model == "rnn":
            self.seq_model = nn.RNN(embedding_size, hidden_size, num_layers, **kw)
            out_in = hidden_size
        elif seq_model == "lstm":
            self.seq_model = nn.LSTM(embedding_size, hidden_size, num_layers, **kw)
            out_in = hidden_size
        elif seq_model == "transformer":
            self.seq_model = nn.Transformer(embedding_size, hidden_size, num_layers,
                                            sequence_len=seq_len, **kw)
            out_in = embedding_size
        else:
            raise ValueError(f"LanguageModel: seq_model must be 'rnn', 'lstm' or "
                             f"'transformer', got {seq_model!r}")
        self.linear = nn.Linear(out_in, output_size, **kw)

    def forward(self, x, h=None):
        """x (T, B) ids, h the sequence model's state or None -> (logits
        (T * B, output_size), h)."""
        xv = x.value if isinstance(x, Tensor) else x
        shape = tuple(nnp.shape(xv))
        if len(shape) != 2:
            raise ValueError(f"LanguageModel.forward: x must be (T, B) token ids, got shape "
                             f"{shape}")
        T, B = shape
        y, h = self.seq_model(self.embedding(xv), h)
        logits = self.linear(nnp.reshape(y, (T * B, nnp.shape(y)[-1])))
        if isinstance(x, Tensor):
            wrap = (lambda v: v if v is None or isinstance(v, Tensor) else Tensor._make(v, True))
            h = tuple(wrap(e) for e in h) if isinstance(h, tuple) else wrap(h)
            return Tensor._make(logits, True), h
        return logits, h
