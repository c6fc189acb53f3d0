"""needle: a JIT tracing compiler for deep learning, numpy-style, on Numba.

The public API: `jit`, `make_ir`, `eval_shape`, `cache_info`, `devices`,
`device_put` and `Array` (an array on the CUDA device), the
differentiation transformations (`grad`, `value_and_grad`, `vjp`, `jvp`,
`jacfwd`, `jacrev`, `hessian`, `stop_gradient`, `custom_vjp`), `vmap`,
`debug_nans`, `config` (every option, as `jax.config`: `config.update(name,
value)`; ir/config.py), `Tensor` (a state cell: tensor.py, state.py), and the
modules `needle.numpy`, `needle.nn` (functions and the course's Modules),
`needle.init`, `needle.optim`, `needle.random` (JAX's keys), `needle.scipy`, `needle.tree_util`,
`needle.debug` (`print`, `callback` inside compiled code). Names and semantics follow JAX where they overlap.

`import needle` reads the NEEDLE_* environment variables (once), registers
fork handlers and starts the prewarm thread (NEEDLE_PREWARM=0: not); the
README's "What `import needle` does" lists every effect outside needle.
"""
from .ir.config import config  # noqa: F401  (first: the environment is read once, here)
from . import runtime as _runtime  # noqa: F401
from . import numpy, nn, scipy, tree_util  # noqa: F401,A004
from .api import Jitted, Lowered, eval_shape, jit, make_ir  # noqa: F401
from .autodiff import (custom_vjp, grad, hessian, jacfwd, jacrev, jvp,  # noqa: F401
                       stop_gradient, value_and_grad, vjp)
from .batching import vmap  # noqa: F401
from . import debug  # noqa: F401
from .callback import ShapeDtypeStruct, pure_callback  # noqa: F401  (host code with results)
from . import lax  # noqa: F401
from . import random  # noqa: F401,A004  (needle.random: JAX's keys, threefry)
from .control_flow import checkpoint, remat  # noqa: F401
from .debug import debug_nans  # noqa: F401
from .ir.core import ShapedArray, ShapeError  # noqa: F401
from .ir.dtypes import DTypeError  # noqa: F401
from .numpy._core import Float64PromotionWarning  # noqa: F401
from .runtime import KernelCompileError, cache_info, devices, reset_cache_info  # noqa: F401
from .array import Array, device_put  # noqa: F401
from .tracer.core import (ConcretizationError, LeakedTracerError, NeedleError,  # noqa: F401
                          TracingError)
from .tensor import Tensor  # noqa: F401
# the course's lazy Tensor API (issue 16): needle.ops, needle.autograd, devices
from . import ops, autograd, backend_ndarray  # noqa: F401
from .ops import *  # noqa: F401,F403  (the course's ndl.exp, ndl.summation, ...)
from .tensor import TensorTuple  # noqa: F401
from .lazy import enable_grad, no_grad  # noqa: F401
from .backend_ndarray import cpu, cuda, default_device  # noqa: F401
from .state import StateWriteError  # noqa: F401
from . import init, optim  # noqa: F401
from . import data  # noqa: F401  (needle.data: Dataset, DataLoader, the course's formats)
from . import tensor as _tensor
from .numpy import _methods as _nnp_methods

# needle.numpy and needle.nn functions take Tensors where they take arrays;
# `tracer + tensor` defers to the Tensor.
for _ns in (numpy, numpy.linalg, nn, nn.functional, scipy.special, scipy.linalg):
    _tensor.accept_tensors(_ns)
_nnp_methods.defer_to(Tensor)
del _ns

__version__ = "0.1.0"

_runtime.prewarm.start()    # numba's CPU target loads in the background (NEEDLE_PREWARM=0: off)
