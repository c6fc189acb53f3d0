"""needle.nn.embedding: the course library's `Embedding` layer.

Stage: the public package (needle/nn). Input: integer indices of any shape
(the course's (T, B)), as an array, a tracer or a Tensor. Output: the rows
of `weight` they pick, shape indices.shape + (embedding_dim,), the kind the
indices were given as (a Tensor for a Tensor).

The lookup is one `gather` (needle.numpy.take along axis 0), so its
gradient with respect to the weight is one `scatter_add` of the output's
cotangent into the rows picked (a repeated index adds up), never a one-hot
matrix product. Indices outside [0, num_embeddings) are clamped into range
and negative ones count from the end, as every traced index in needle (a
compiled kernel cannot raise).
"""
import numpy as np

from .. import init
from .. import numpy as nnp
from ..numpy._core import typeof
from ..tensor import Parameter, Tensor
from .module import Module

__all__ = ["Embedding"]


class Embedding(Module):
    """Embedding(num_embeddings, embedding_dim): weight (num_embeddings,
    embedding_dim) drawn from init.randn (N(0, 1), the course's). Float
    indices (the course's data loaders give float Tensors) are cast to
    int32 first."""

    def __init__(self, num_embeddings, embedding_dim, device=None, dtype="float32"):
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.weight = Parameter(init.randn(self.num_embeddings, self.embedding_dim,
                                           device=device, dtype=dtype))

    def forward(self, x):
        idx = x.value if isinstance(x, Tensor) else x
        kind = typeof(idx)[0].kind
        if kind == "f":
            idx = nnp.astype(idx, np.int32)
        elif kind not in "iu":
            raise TypeError(f"Embedding.forward: indices must be integers (or integer-valued "
                            f"floats), got {typeof(idx)[0].name} of shape "
                            f"{tuple(nnp.shape(idx))}")
        out = nnp.take(self.weight.value, idx, axis=0)
        return Tensor._make(out, True) if isinstance(x, Tensor) else out

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"
