"""The public package: `needle.backend_ndarray`, the course's names for the
arrays behind a Tensor and for devices (issue 16).

Input: array data and a device. Output: `NDArray` (the array types a
Tensor holds: numpy's ndarray on the CPU, `needle.Array` on the CUDA
device), `array(data, dtype="float32", device=None)`, and the device
objects `cpu()`, `cuda()`, `default_device()`, `all_devices()`.

The course's own strided NDArray class is not part of needle's design: a
Tensor holds a numpy array or a device Array, and its operations compile
through needle's lowering. The device objects are the course's: they print
as `cpu()` / `cuda()`, compare equal to their names ('cpu', 'cuda'), and
`cuda()` never raises when constructed (course code builds it at import
time); `cuda().enabled()` is False on a machine without a GPU unless
Numba's CUDA simulator is on, and allocating on a disabled device is an
error naming it.
"""
import numpy as np

from .array import Array

__all__ = ["NDArray", "array", "BackendDevice", "cpu", "cuda", "cpu_numpy", "default_device",
           "all_devices"]

NDArray = (np.ndarray, Array)


class BackendDevice:
    """A device: `name` ('cpu' or 'cuda'), `enabled()`, and the course's
    allocation helpers (`zeros`, `ones`, `randn`, `rand`, `one_hot`, `empty`,
    `full`) returning arrays on it."""
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def enabled(self):
        if self.name == "cpu":
            return True
        from .runtime.devices import cuda_available
        return bool(cuda_available())

    def __repr__(self):
        return f"{self.name}()"

    def __eq__(self, other):
        if isinstance(other, BackendDevice):
            return other.name == self.name
        if isinstance(other, str):
            return other == self.name or (self.name == "cuda" and other == "cuda:0")
        return NotImplemented

    def __hash__(self):
        return hash(self.name)

    def _place(self, a, dtype):
        a = np.asarray(a, dtype=dtype)
        if self.name == "cpu":
            return a
        if not self.enabled():
            raise RuntimeError(f"{self}: the CUDA device is not enabled on this machine "
                               f"(no GPU, and NUMBA_ENABLE_CUDASIM is off)")
        from .array import device_put
        return device_put(a, "cuda")

    def empty(self, shape, dtype="float32"):
        return self._place(np.empty(shape), dtype)

    def full(self, shape, fill_value, dtype="float32"):
        return self._place(np.full(shape, fill_value), dtype)

    def zeros(self, *shape, dtype="float32"):
        return self._place(np.zeros(_shape(shape)), dtype)

    def ones(self, *shape, dtype="float32"):
        return self._place(np.ones(_shape(shape)), dtype)

    def randn(self, *shape, dtype="float32"):
        return self._place(np.random.randn(*_shape(shape)), dtype)

    def rand(self, *shape, dtype="float32"):
        return self._place(np.random.rand(*_shape(shape)), dtype)

    def one_hot(self, n, i, dtype="float32"):
        return self._place(np.eye(n)[np.asarray(i)], dtype)


def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) \
        else tuple(shape)


_CPU, _CUDA = BackendDevice("cpu"), BackendDevice("cuda")


def cpu():
    """The CPU (numpy arrays, compiled Numba kernels)."""
    return _CPU


def cpu_numpy():
    """The course's numpy backend: needle's CPU device."""
    return _CPU


def cuda():
    """The CUDA device (never raises; see `.enabled()`)."""
    return _CUDA


def default_device():
    """cpu(), as the course's Tensor default."""
    return _CPU


def all_devices():
    """The devices enabled here."""
    return [d for d in (_CPU, _CUDA) if d.enabled()]


def array(a, dtype="float32", device=None):
    """An array of `a` on `device` (default cpu())."""
    return (device or _CPU)._place(a, dtype)
