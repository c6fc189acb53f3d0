"""Stage runtime: devices and placement.

Input: a device name given by a user ('cpu', 'cuda', 'cuda:0', None).
Output: the canonical device name a jitted function compiles for ('cpu' or
'cuda'), or a clear error when the CUDA backend cannot run here.

CUDA needs numba-cuda (the `cuda` extra: `pip install -e ".[cuda]"`; numba's
own deprecated numba.cuda is not enough), and either a GPU or Numba's CUDA
simulator (NUMBA_ENABLE_CUDASIM=1, read when numba.cuda is first imported).
Nothing here imports numba.cuda until CUDA is asked for.
"""
import importlib.util
import sys

_cuda_state = None          # None: not probed yet; else (available, reason)


def cuda_status():
    """(available, reason): whether the CUDA backend can run in this process."""
    global _cuda_state
    if _cuda_state is None:
        if importlib.util.find_spec("numba_cuda") is None:
            _cuda_state = (False, "numba-cuda is not installed (pip install -e \".[cuda]\", "
                                  "or pip install \"numba-cuda[cu13]\" nvidia-cuda-nvcc)")
        else:
            try:
                from numba.core import config
                if "numba.cuda" not in sys.modules:
                    # numba may be imported already (runtime/prewarm.py): read the
                    # environment again, so NUMBA_ENABLE_CUDASIM set after
                    # `import needle` still counts, as it did before numba loaded
                    config.reload_config()
                from numba import cuda
                if config.ENABLE_CUDASIM:
                    _cuda_state = (True, "Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
                elif cuda.is_available():           # pragma: no cover (needs a GPU)
                    _cuda_state = (True, "a CUDA GPU")
                else:
                    _cuda_state = (False, "no CUDA GPU is available (numba.cuda.is_available() "
                                          "is False; set NUMBA_ENABLE_CUDASIM=1 to run the "
                                          "kernels in Numba's CUDA simulator)")
            except Exception as e:                  # pragma: no cover
                _cuda_state = (False, f"numba.cuda failed to load: {e}")
    return _cuda_state


def cuda_available():
    return cuda_status()[0]


def devices():
    """The devices needle can run on here: 'cpu', and 'cuda' when numba-cuda
    is installed and a GPU (or Numba's CUDA simulator) is available."""
    return ["cpu"] + (["cuda"] if cuda_available() else [])


def default_device():
    """The device `device_put(x)` uses: 'cuda' when available, else 'cpu'."""
    return devices()[-1]


def resolve_device(device, compile_only=False):
    """'cpu' for None or 'cpu'; 'cuda' for 'cuda' / 'cuda:0' when CUDA can
    run here (a clear error otherwise). With `compile_only`, 'cuda' needs
    numba-cuda but no GPU: generating kernels, PTX and ptxas's report does
    not touch a device (jit(f, device="cuda").lower(...)); running them
    raises this error then."""
    if device is None or device == "cpu":
        return "cpu"
    name = str(device)
    if name == "cuda" or name.startswith("cuda:"):
        if name not in ("cuda", "cuda:0"):
            raise ValueError(f"needle uses one CUDA device, 'cuda' (= 'cuda:0'); got {name!r}")
        ok, reason = cuda_status()
        if not ok and not (compile_only and importlib.util.find_spec("numba_cuda")):
            raise RuntimeError(f"the CUDA backend is not available here: {reason}")
        return "cuda"
    raise ValueError(f"unknown device {device!r}; needle knows 'cpu' and 'cuda' "
                     f"(available here: {devices()})")


def require_cuda():
    """Raise the error resolve_device gives when CUDA cannot run here."""
    ok, reason = cuda_status()
    if not ok:
        raise RuntimeError(f"the CUDA backend is not available here: {reason}")
