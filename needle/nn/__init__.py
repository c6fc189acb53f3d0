"""needle.nn: JAX-named neural-network functions (relu, gelu, softmax,
log_softmax, logsumexp, one_hot, conv, max_pool, avg_pool, ...: functional.py)
and, beside them, the course library's Module classes (module.py, layers.py):
Module, Parameter, Linear, Sequential, BatchNorm1d, Dropout, ...

Input: arrays, tracers or Tensors. Output: the functions return arrays; a
layer returns the kind it was given (an array for an array, a Tensor for a
Tensor). Modules are pytrees of their cells at every transform boundary
(needle/state.py).
"""
from .functional import (avg_pool, conv, elu, gelu, leaky_relu, log_softmax,  # noqa: F401
                         logsumexp, max_pool, one_hot, relu, relu6, sigmoid, silu, softmax,
                         softplus, standardize, swish)
from ..tensor import Parameter, Tensor  # noqa: F401
from .module import GeneratorCell, Module  # noqa: F401
from .layers import *  # noqa: F401,F403
from .conv_layers import AvgPool2d, Conv, MaxPool2d  # noqa: F401
from .norm_layers import BatchNorm2d, LayerNorm  # noqa: F401
from .embedding import Embedding  # noqa: F401
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell  # noqa: F401
from .attention import (AttentionLayer, MultiHeadAttention, Transformer,  # noqa: F401
                        TransformerLayer)
from .dot_attention import dot_product_attention  # noqa: F401
from . import functional  # noqa: F401


def __getattr__(name):   # nn.SyncBatchNorm: needle.distributed, imported on first use
    if name == "SyncBatchNorm":
        from ..distributed.sync_batchnorm import SyncBatchNorm
        return SyncBatchNorm
    raise AttributeError(f"module 'needle.nn' has no attribute {name!r}")
