"""needle.nn.dot_product_attention (JAX's name, layout and semantics) and
the scaled-dot-product core that the course's MultiHeadAttention shares.

Stage: the public package (needle/nn). Input: query (B, T, N, H), key and
value (B, S, K, H) with N a multiple of K (K < N: grouped-query attention),
or the same without the batch axis; an optional additive `bias` and
boolean `mask` (True: attend) broadcastable to (B, N, T, S); `scale`
(default 1 / sqrt(H)); `is_causal` (query t attends keys s <= t, JAX's
top-left aligned lower triangle). Output: (B, T, N, H) (or (T, N, H)), the
query's dtype.

Program: two batched matmuls (the scores and the weighted sum, BLAS calls
on CPU, reading (B, T, N, H) in place) around one fused kernel that scales
the scores, adds the bias, applies the mask and computes the row softmax,
then one kernel writing the result back to (B, T, N, H); masked scores take JAX's
large negative value (-0.7 * the dtype's max), so a row with every key
masked gets uniform weights, as in JAX, not NaN.
"""
import numpy as np

from .. import numpy as nnp
from ..numpy._core import asarray, typeof
from . import functional as F

__all__ = ["dot_product_attention"]


def _large_negative(dtype):
    return float(-0.7 * np.finfo(np.dtype(dtype)).max)


def attend(q, k, v, scale, bias=None, keep=None, dropout=None, heads_first=True):
    """softmax(q k^T * scale + bias, masked where `keep` is False) @ v and
    the weights (B, N, T, S). heads_first: q (B, N, T, H), k and v
    (B, N, S, H), the result (B, N, T, H) (the course's layout); else q
    (B, T, N, H), k and v (B, S, N, H), the result (B, T, N, H) (JAX's),
    read and written by the matmuls in place, without transposes.
    `dropout` (a callable) is applied to the weights after the softmax, as
    in the course."""
    if heads_first:
        logits = nnp.matmul(q, nnp.swapaxes(k, -1, -2))
    else:
        logits = nnp.einsum("btnh,bsnh->bnts", q, k)
    logits = nnp.multiply(logits, scale)
    if bias is not None:
        logits = nnp.add(logits, bias)
    if keep is not None:
        logits = nnp.where(keep, logits, _large_negative(typeof(logits)[0]))
    probs = F.softmax(logits, axis=-1)
    if dropout is not None:
        probs = dropout(probs)
    if heads_first:
        return nnp.matmul(probs, v), probs
    return nnp.einsum("bnts,bsnh->btnh", probs, v), probs


def _shape(x):
    return tuple(nnp.shape(x))


def dot_product_attention(query, key, value, bias=None, mask=None, *, scale=None,
                          is_causal=False):
    """softmax(query key^T * scale + bias, masked) value, per head (see the
    module docstring for the layouts)."""
    query, key, value = asarray(query), asarray(key), asarray(value)
    qs, ks, vs = _shape(query), _shape(key), _shape(value)
    where = "dot_product_attention"
    if len(qs) not in (3, 4) or len(ks) != len(qs) or len(vs) != len(qs):
        raise ValueError(f"{where}: query, key and value must all be (B, T, N, H) or all "
                         f"(T, N, H); got query {qs}, key {ks}, value {vs}")
    batched = len(qs) == 4
    if not batched:
        query, key, value = (nnp.expand_dims(a, 0) for a in (query, key, value))
        qs, ks, vs = _shape(query), _shape(key), _shape(value)
    B, T, N, H = qs
    if ks != vs or ks[0] != B or ks[3] != H or N % ks[2]:
        raise ValueError(f"{where}: key and value must be (B, S, K, H) with query's B={B} and "
                         f"H={H} and N={N} a multiple of K; got query {qs}, key {ks}, "
                         f"value {vs}")
    S, K = ks[1], ks[2]
    if K != N:                                  # grouped-query: each kv head serves N // K
        key = nnp.repeat(key, N // K, axis=2)
        value = nnp.repeat(value, N // K, axis=2)
    scale = float(1.0 / np.sqrt(H)) if scale is None else float(scale)
    keep = None
    if mask is not None:
        mask = asarray(mask)
        if typeof(mask)[0] != np.bool_:
            raise TypeError(f"{where}: mask must be boolean (True: attend), got "
                            f"{typeof(mask)[0].name} of shape {_shape(mask)}")
        keep = mask
    if is_causal:
        causal = np.tril(np.ones((T, S), bool))
        keep = causal if keep is None else nnp.logical_and(keep, causal)
    for name, a in (("bias", bias), ("mask", keep)):
        if a is not None:
            try:
                np.broadcast_shapes(_shape(a), (B, N, T, S))
            except ValueError:
                raise ValueError(f"{where}: {name} of shape {_shape(a)} does not broadcast "
                                 f"to (B, N, T, S) = {(B, N, T, S)}") from None
    out, _ = attend(query, key, value, scale, bias, keep, heads_first=False)
    return out if batched else out[0]
