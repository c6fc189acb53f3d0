"""The one Executable (runtime/executable.py): CPU and CUDA lowerings give the
same class over their device objects; its calls (`__call__`, `to_device` +
`run`, `call_prepared`) agree with numpy; its stages and errors name the
function and the device.

CUDA executables are lowered on any machine (lower() needs no GPU); they run
only in Numba's simulator (NUMBA_ENABLE_CUDASIM=1) or on a GPU, and refuse
to run elsewhere.
"""
import importlib.util
import warnings

import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle.runtime.executable import Executable


def f(x, w):
    return nnp.tanh(x @ w) * 2.0 + nnp.sum(x, axis=1, keepdims=True)


def f_ref(x, w):
    x, w = x.astype(np.float64), w.astype(np.float64)
    return np.tanh(x @ w) * 2.0 + x.sum(axis=1, keepdims=True)


def args(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((3, 4)).astype(np.float32), \
        rng.standard_normal((4, 5)).astype(np.float32)


def lower_for_cuda(fn, *a):
    """fn lowered for CUDA, or a skip (after the test's CPU part ran) where
    numba-cuda is not installed (the CPU stage of CI)."""
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed: the CUDA half of this test")
    return needle.jit(fn, device="cuda").lower(*a)


def cuda_runs():
    from needle.runtime.devices import cuda_status
    return cuda_status()[0]


@pytest.mark.on_device      # also in CI's simulator stage, where numba-cuda is installed
def test_cpu_and_cuda_lower_to_the_one_executable_class():
    x, w = args()
    cpu = needle.jit(f).lower(x, w)
    assert type(cpu.executable) is Executable and cpu.device == "cpu"
    assert cpu.executable.stage_names() == ["fused", "kernels"]
    assert cpu.executable.host_arrays and "kernel" in cpu.as_text("kernels")
    cuda = lower_for_cuda(f, x, w)
    assert type(cuda.executable) is Executable and cuda.device == "cuda"
    assert cuda.executable.stage_names() == ["fused", "kernels", "ptx"]
    assert cpu.executable.host_arrays and not cuda.executable.host_arrays
    # dot_general: a BLAS call on CPU, a kernel on CUDA
    assert cpu.library_call_count == 1 and cuda.library_call_count == 0
    assert cuda.kernel_count == len(cuda.executable.kernels) >= 1
    assert "kernel" in cuda.as_text("kernels") and "kernel" in cpu.as_text("kernels")


@pytest.mark.on_device      # also in CI's simulator stage, where numba-cuda is installed
def test_calls_match_numpy_on_every_device():
    x, w = args(1)
    want = f_ref(x, w)
    got = needle.jit(f)(x, w)
    assert type(got) is np.ndarray
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    cuda = lower_for_cuda(f, x, w)
    if cuda_runs():
        (r,) = cuda(x, w)                       # Lowered: the flat results
        assert isinstance(r, needle.Array)
        np.testing.assert_allclose(np.asarray(r), want, rtol=1e-5, atol=1e-5)
    else:
        with pytest.raises(RuntimeError, match="CUDA backend is not available"):
            cuda(x, w)


def test_to_device_and_run_split_a_call():
    x, w = args(2)
    x64 = x.astype(np.float64)[:, ::-1][:, ::-1]           # float64, not C-contiguous
    w_ro = w.copy()
    w_ro.flags.writeable = False
    exe = needle.jit(f).lower(x, w).executable
    ins = exe.to_device(x64, w_ro)
    for a, aval in zip(ins, exe.in_avals):
        assert type(a) is np.ndarray and a.dtype == aval.dtype
        assert a.flags.c_contiguous and a.flags.writeable
    (r1,), (r2,) = exe.run(*ins), exe(x64, w_ro)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_allclose(r1, f_ref(x, w), rtol=1e-5, atol=1e-5)


@pytest.mark.on_device      # also in CI's simulator stage, where numba-cuda is installed
def test_a_wrong_argument_count_names_the_function():
    x, w = args()

    def two(x, w):
        return x @ w

    exe = needle.jit(two).lower(x, w).executable
    with pytest.raises(TypeError, match="two takes 2 arrays, got 1"):
        exe(x)
    cuda = lower_for_cuda(two, x, w).executable
    if cuda_runs():
        with pytest.raises(TypeError, match="two takes 2 arrays, got 3"):
            cuda(x, w, w)


def test_stages_and_cuda_only_reports_name_the_device():
    x, w = args()
    exe = needle.jit(f).lower(x, w).executable
    assert "kernel" in exe.stage_text("fused")
    with pytest.raises(KeyError, match=r"no stage 'ptx'; stages are \['fused', 'kernels'\]"):
        exe.stage_text("ptx")
    with pytest.raises(ValueError, match="f was compiled for cpu: a resource report"):
        exe.resource_report()
    with pytest.raises(ValueError, match="f was compiled for cpu: PTX"):
        exe.ptx()


def test_call_prepared_donation_never_overwrites_a_shared_argument():
    # the cached state call (needle/api.py) enters through call_prepared:
    # a donated buffer another input reads is copied, not written
    g = needle.jit(lambda a, b: (a * 3.0, nnp.sum(b)), donate_argnums=0)
    x = np.ones(64, np.float32)
    exe = g.lower(x, x).executable
    assert exe.donated == (0,) and exe.donated_in_place == (0,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r, s = exe.call_prepared([x, x])
        np.testing.assert_array_equal(x, 1.0)
        np.testing.assert_array_equal(r, 3.0)
        assert float(s) == 64.0
        y = np.ones(64, np.float32)
        r, _ = exe.call_prepared([y, x])        # alone: written in place
    assert np.shares_memory(r, y)
    np.testing.assert_array_equal(r, 3.0)


def test_a_call_with_another_shape_is_refused_not_misread():
    # the kernels' loop bounds and signatures are the compiled shapes: a
    # larger array was read in part (a silent wrong sum), another rank
    # crashed; jit itself retraces for a new shape
    g = needle.jit(lambda x: nnp.sum(x * 2.0, axis=0))
    x = np.ones((3, 4), np.float32)
    lo = g.lower(x)
    for bad in (np.ones((5, 4), np.float32), np.ones(12, np.float32),
                np.ones((3, 4, 1), np.float32), [[1.0] * 4] * 5):
        for call in (lo, lo.executable, lambda a: lo.executable.to_device(a)):
            with pytest.raises(TypeError, match=r"argument 0 has shape .*compiled for shape \(3, 4\)"):
                call(bad)
    np.testing.assert_array_equal(g(np.ones((5, 4), np.float32)), np.full(4, 10.0))
    (r,) = lo(np.ones((3, 4), np.float64))          # another dtype of the same shape: cast
    np.testing.assert_array_equal(r, np.full(4, 6.0))
