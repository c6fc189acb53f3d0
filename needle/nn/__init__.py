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
from . import functional  # noqa: F401
