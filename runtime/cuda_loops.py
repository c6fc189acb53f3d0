"""Stage runtime (CUDA): the loop operations of the control steps
(runtime/loops.py) on device arrays.

Input: needle device Arrays (runtime/cuda_array.py) and abstract values.
Output: `CUDA_OPS`: fresh pooled Arrays, device-to-device copies, zero-copy
views `xs[t]` of a stacked array (a 0-d row is the 1-element slice
`buf[t:t+1]`, as codegen/cuda stores a 0-d array), and host reads of one
scalar (a while's predicate, a cond's index: one read back each).
Nothing here imports numba.
"""
import numpy as np

from ..ir.core import ShapedArray
from . import cuda_memory
from .cuda_array import DeviceArray, dev_shape, make_array, to_device


class CudaLoopOps:
    @staticmethod
    def const(c):
        return c if isinstance(c, DeviceArray) else to_device(np.asarray(c))

    @staticmethod
    def alloc(aval, lead=()):
        shape = tuple(lead) + tuple(aval.shape)
        buf, block = cuda_memory.allocate(dev_shape(shape), aval.dtype)
        return make_array(buf, ShapedArray(shape, aval.dtype), block)

    def copy_of(self, x, aval):
        r = self.alloc(aval)
        self.copy(r, x)
        return r

    @staticmethod
    def rows(x, aval):
        """t -> the view x[t] (an Array sharing x's buffer and pool block)."""
        buf, block = x._buf, x._block
        if aval.ndim == 0:
            return lambda t: make_array(buf[t:t + 1], aval, block)
        return lambda t: make_array(buf[t], aval, block)

    @staticmethod
    def copy(dst, src):
        if isinstance(src, DeviceArray):
            dst._buf.copy_to_device(src._buf)
        else:
            dst._buf.copy_to_device(np.asarray(src, dst.dtype).reshape(dev_shape(dst.shape)))

    @staticmethod
    def read(x):
        return np.asarray(x).item()


CUDA_OPS = CudaLoopOps()
