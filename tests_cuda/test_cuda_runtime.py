"""The CUDA runtime seen from the user (in Numba's CUDA simulator, tiny sizes):
device arrays (`needle.device_put`, `needle.Array`), eager operations on
them (each a small compiled CUDA program, results on the device),
`jit(device="cuda")` and placement inferred from the arguments, the device
buffer pool, the launch configuration from device properties (a fake
device), cache_info counting CUDA kernels, and inspection: lowered stages,
PTX and the ptxas resource report (compiled in a subprocess without the
simulator).
"""
import gc
import importlib
import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

import needle
import needle.nn as nnn
import needle.numpy as nnp
from needle import array as cuda_array
from needle.runtime import cuda_memory, cuda_runtime
from needle import Array
from needle.lowering import cuda_program

from programs import PROGRAMS, _args, traced

rng = np.random.default_rng(7)
F32 = np.float32
HERE = os.path.dirname(os.path.abspath(__file__))
# The module (needle.runtime.devices is also the name of the function it defines).
devices_mod = importlib.import_module("needle.runtime.devices")


def u(*shape, dtype=F32):
    return rng.uniform(-1.0, 1.0, shape).astype(dtype)


def close(got, want, rtol=1e-5, atol=1e-6):
    assert isinstance(got, Array), type(got)
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, \
        (got.shape, got.dtype, want.shape, want.dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# --- devices and device_put ---------------------------------------------------------

def test_devices_and_resolve():
    assert needle.devices() == ["cpu", "cuda"]
    assert devices_mod.resolve_device("cuda:0") == "cuda"
    with pytest.raises(ValueError, match="one CUDA device"):
        devices_mod.resolve_device("cuda:1")
    with pytest.raises(ValueError, match="unknown device"):
        needle.jit(lambda x: x, device="tpu")


def test_without_numba_cuda_the_error_says_what_to_install(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba_cuda" else real(name, *a))
    monkeypatch.setattr(devices_mod, "_cuda_state", None)
    assert needle.devices() == ["cpu"]
    with pytest.raises(RuntimeError, match=r'pip install -e "\.\[cuda\]"'):
        needle.jit(lambda x: x, device="cuda")
    monkeypatch.setattr(devices_mod, "_cuda_state", None)


@pytest.mark.parametrize("x", [u(3, 4), np.arange(5, dtype=np.int32), np.array([True, False]),
                               np.float32(2.5), u(2, 3, dtype=np.float64),
                               np.zeros((0, 3), F32)])
def test_device_put_round_trip(x):
    d = needle.device_put(x, "cuda")
    assert isinstance(d, Array) and d.device == "cuda"
    assert d.shape == np.shape(x) and d.dtype == np.asarray(x).dtype
    assert d.ndim == np.ndim(x) and d.size == np.size(x)
    back = needle.device_put(d, "cpu")
    assert type(back) is np.ndarray
    np.testing.assert_array_equal(back, x)
    np.testing.assert_array_equal(np.asarray(d), x)
    assert d.block_until_ready() is d


def test_device_put_pytrees_and_scalars():
    tree = needle.device_put({"w": u(2, 2), "n": [1.5, 3]}, "cuda")
    assert isinstance(tree["w"], Array) and tree["n"][0].dtype == F32
    assert needle.device_put(tree, "cpu")["n"][0] == np.float32(1.5)


def test_array_protocols():
    x = u(2, 3)
    d = needle.device_put(x, "cuda")
    iface = d.__cuda_array_interface__
    assert iface["shape"] == (2, 3) and iface["typestr"] == "<f4" and iface["version"] == 3
    assert repr(d).startswith("Array([[") and "dtype=float32, device=cuda" in repr(d)
    assert len(d) == 2 and d.nbytes == 24
    s = needle.device_put(np.float32(4.0), "cuda")
    assert float(s) == 4.0 and s.item() == 4.0 and bool(s) and int(s) == 4
    assert d.tolist() == x.tolist()
    with pytest.raises(TypeError, match="immutable"):
        d[0, 0] = 1.0
    import pickle
    np.testing.assert_array_equal(np.asarray(pickle.loads(pickle.dumps(d))), x)


# --- eager operations ------------------------------------------------------------

def test_eager_operators_match_numpy():
    a, b, v = u(3, 4), u(3, 4), u(4)
    x, y, w = (needle.device_put(t, "cuda") for t in (a, b, v))
    close(x + y, a + b)
    close(x - 2.0, a - F32(2.0))
    close(3.0 * x, F32(3.0) * a)
    close(x / (y + 2.0), a / (b + F32(2.0)))
    close(x ** 2, a ** 2)
    close(-x, -a)
    close(x @ w, a @ v)
    close(x @ x.T, a @ a.T, rtol=1e-5)
    close(x * v, a * v)                           # a host operand is copied over
    close(v + x, v + a)                           # numpy on the left defers to Array
    close(x > y, a > b)
    close(x == x, a == a)
    close(abs(x), np.abs(a))


def test_eager_methods_indexing_and_numpy_calls():
    a = u(3, 4)
    x = needle.device_put(a, "cuda")
    close(x.T, a.T)
    close(x.reshape(4, 3), a.reshape(4, 3))
    close(x.reshape(-1), a.reshape(-1))
    close(x[1], a[1])
    close(x[:, 1:3], a[:, 1:3])
    close(x[::-1, None], a[::-1, None])
    close(x.sum(), a.sum(), rtol=1e-5)
    close(x.sum(axis=1), a.sum(axis=1), rtol=1e-5)
    close(x.mean(axis=0), a.mean(axis=0), rtol=1e-5)
    close(x.max(axis=1), a.max(axis=1))
    close(x.astype(np.int32), a.astype(np.int32))
    close(nnp.exp(x), np.exp(a), rtol=1e-5)
    close(nnp.tanh(x) * nnn.sigmoid(x), np.tanh(a) / (1 + np.exp(-a)), rtol=1e-5)
    close(nnp.where(x > 0, x, 0.0), np.where(a > 0, a, F32(0)))
    close(nnp.concatenate([x, x * 2.0], axis=0), np.concatenate([a, a * 2], axis=0))
    close(x.at[0, 1].set(5.0), np.where(np.arange(12).reshape(3, 4) == 1, F32(5), a))
    close(nnn.softmax(x, axis=-1), np.exp(a) / np.exp(a).sum(-1, keepdims=True), rtol=1e-5)


def test_eager_ops_are_cached_by_signature():
    x = needle.device_put(u(2, 5), "cuda")
    x * 2.0                                               # compile once
    before = dict(cuda_array.eager_stats)
    for c in (2.0, 3.0, 4.5):                             # a new scalar: no new compile
        close(x * c, np.asarray(x) * F32(c))
    assert cuda_array.eager_stats["compiles"] == before["compiles"]
    assert cuda_array.eager_stats["launches"] == before["launches"] + 3
    x.reshape(5, 2) * 2.0                                 # a new shape compiles again
    assert cuda_array.eager_stats["compiles"] == before["compiles"] + 2


def test_eager_grad_of_device_arrays():
    a = u(3, 4)
    g = needle.grad(lambda w: nnp.sum(nnp.tanh(w) ** 2))(needle.device_put(a, "cuda"))
    close(g, 2 * np.tanh(a) * (1 - np.tanh(a) ** 2), rtol=1e-4, atol=1e-6)


def test_eager_shape_error_names_the_line():
    x = needle.device_put(u(2, 3), "cuda")
    with pytest.raises(ValueError, match="test_cuda_runtime.py"):
        x + needle.device_put(u(4), "cuda")


# --- jit on CUDA ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["softmax", "layernorm", "mlp_forward_backward"])
def test_jit_cuda_on_representative_programs(name):
    args = _args(name, np.random.default_rng(0))
    _, _, want = traced(PROGRAMS[name], args)
    f = needle.jit(PROGRAMS[name], device="cuda")
    got = needle.tree_util.tree_leaves(f(*args))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        close(g, w, rtol=1e-4, atol=1e-5)
    # The same function on device arguments: same cache entry kind, same results.
    dev_args = needle.device_put(args, "cuda")
    for g, w in zip(needle.tree_util.tree_leaves(f(*dev_args)), want):
        close(g, w, rtol=1e-4, atol=1e-5)


def test_mlp_training_steps_stay_on_the_device():
    args = _args("mlp_forward_backward", np.random.default_rng(1))
    params = needle.device_put(list(args[:4]), "cuda")
    x, labels = needle.device_put(args[4:], "cuda")

    @needle.jit
    def step(params, x, labels):
        loss, grads = PROGRAMS["mlp_forward_backward"](*params, x, labels)
        return loss, [p - 0.5 * g for p, g in zip(params, grads)]

    losses = []
    for _ in range(3):
        loss, params = step(params, x, labels)
        assert all(isinstance(p, Array) for p in params) and isinstance(loss, Array)
        losses.append(float(loss))
    assert losses[2] < losses[0]
    # The same steps on the CPU, from the same start.
    cpu_params = list(args[:4])
    for k in range(3):
        loss, cpu_params = step(cpu_params, *args[4:])
        np.testing.assert_allclose(float(loss), losses[k], rtol=1e-4)


def test_placement_is_inferred_from_the_arguments(monkeypatch):
    f = needle.jit(lambda a, b: nnp.tanh(a * b).sum(axis=0))
    a, b = u(3, 4), u(4)
    da, db = needle.device_put(a, "cuda"), needle.device_put(b, "cuda")
    want = np.tanh(a * b).sum(axis=0)
    host = f(a, b)
    assert type(host) is np.ndarray
    close(f(da, db), want, rtol=1e-5)
    close(f(da, b), want, rtol=1e-5)                     # the host argument is copied over
    assert f.lower(da, db).device == "cuda" and f.lower(a, b).device == "cpu"
    assert len({id(e[0]) for e in f._cache.values()}) == 3     # cpu, cuda+cuda, cuda+host
    # Explicit placement wins: a CPU function copies device arguments to the host.
    g = needle.jit(lambda a, b: nnp.tanh(a * b).sum(axis=0), device="cpu")
    r = g(da, db)
    assert type(r) is np.ndarray
    np.testing.assert_allclose(r, want, rtol=1e-5)
    # A CUDA function given numpy arguments returns device arrays.
    h = needle.jit(lambda a, b: nnp.tanh(a * b).sum(axis=0), device="cuda")
    close(h(a, b), want, rtol=1e-5)


def test_compile_log_names_the_placement(capfd):
    with needle.config.override(log_compiles=True):    # (NEEDLE_LOG_COMPILES=1)
        f = needle.jit(lambda a: a + 1.0)
        f(u(3))
        f(needle.device_put(u(3), "cuda"))
    assert "argument a changed (3,) float32 -> (3,) float32 on cuda" in capfd.readouterr().err


def test_results_stay_on_the_device(monkeypatch):
    f = needle.jit(lambda a: nnp.exp(a) * 2.0)
    g = needle.jit(lambda a: a.sum(axis=1))
    x = needle.device_put(u(3, 4), "cuda")
    f(x)
    g(f(x))
    copies = []
    monkeypatch.setattr(cuda_runtime, "to_device", lambda v: copies.append(v) or 1 / 0)
    y = g(f(x))                                          # no host->device copy at all
    assert isinstance(y, Array) and not copies


def test_closed_over_device_arrays():
    w = needle.device_put(u(4, 2), "cuda")
    x = u(3, 4)
    want = x @ np.asarray(w)
    close(needle.jit(lambda x: x @ w)(needle.device_put(x, "cuda")), want, rtol=1e-5)
    r = needle.jit(lambda x: x @ w)(x)                   # compiled for the CPU
    assert type(r) is np.ndarray
    np.testing.assert_allclose(r, want, rtol=1e-5)


# --- creation on the device ------------------------------------------------------------

def test_creation_functions_on_the_device(monkeypatch):
    cases = [
        (lambda d: nnp.zeros((3, 4), device=d), np.zeros((3, 4), F32)),
        (lambda d: nnp.ones(5, dtype=np.int32, device=d), np.ones(5, np.int32)),
        (lambda d: nnp.empty((2, 2), device=d), np.zeros((2, 2), F32)),
        (lambda d: nnp.full((2, 3), 7.5, device=d), np.full((2, 3), 7.5, F32)),
        (lambda d: nnp.full((), 3, device=d), np.array(3, np.int64)),
        (lambda d: nnp.zeros((0, 3), device=d), np.zeros((0, 3), F32)),
        (lambda d: nnp.arange(2, 11, 3, device=d), np.arange(2, 11, 3)),
        (lambda d: nnp.linspace(0, 1, 5, device=d), np.linspace(0, 1, 5).astype(F32)),
        (lambda d: nnp.eye(3, 4, k=1, device=d), np.eye(3, 4, k=1, dtype=F32)),
        (lambda d: nnp.identity(2, device=d), np.eye(2, dtype=F32)),
        (lambda d: nnp.tri(3, device=d), np.tri(3, dtype=F32)),
        (lambda d: nnp.array([[1, 2]], device=d), np.array([[1, 2]])),
        (lambda d: nnp.asarray([1.5, 2.0], device=d), np.array([1.5, 2.0], F32)),
    ]
    for make, want in cases:
        got = make("cuda")
        assert isinstance(got, Array), want
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(np.asarray(got), want)
        host = make(None)
        assert type(host) is np.ndarray and host.dtype == want.dtype
    # zeros / ones / full fill on the device: no host array of their size is copied
    copies = []
    real = cuda_array.to_device
    monkeypatch.setattr(cuda_array, "to_device",
                        lambda x, dtype=None: copies.append(np.shape(x)) or real(x, dtype))
    big = nnp.full((64, 33), 2.5, device="cuda")
    np.testing.assert_array_equal(np.asarray(big), np.full((64, 33), 2.5, F32))
    assert all(np.prod(s, dtype=int) <= 1 for s in copies), copies


def test_like_functions_follow_their_argument():
    x = needle.device_put(np.arange(6, dtype=F32).reshape(2, 3), "cuda")
    for fn, want in ((nnp.zeros_like, np.zeros((2, 3), F32)), (nnp.ones_like, np.ones((2, 3), F32)),
                     (lambda a: nnp.full_like(a, 4), np.full((2, 3), 4, F32)),
                     (nnp.empty_like, np.zeros((2, 3), F32))):
        got = fn(x)
        assert isinstance(got, Array)
        np.testing.assert_array_equal(np.asarray(got), want)
    host = nnp.ones_like(x, device="cpu")
    assert type(host) is np.ndarray
    assert type(nnp.asarray(x, device="cpu")) is np.ndarray
    assert type(nnp.zeros_like(np.ones(3))) is np.ndarray
    # under jit the device argument is ignored: the function's placement decides
    f = needle.jit(lambda a: a + nnp.ones(a.shape, device="cuda"), device="cpu")
    assert type(f(np.zeros(3, F32))) is np.ndarray


# --- donation -------------------------------------------------------------------------

def test_donated_array_is_written_in_place_and_deleted():
    w0, g0 = u(4, 5), u(4, 5)
    w, g = needle.device_put(w0, "cuda"), needle.device_put(g0, "cuda")
    step = needle.jit(lambda w, g: w - 0.5 * g, donate_argnums=0)
    buf = w._buf
    w1 = step(w, g)
    assert w.is_deleted() and not g.is_deleted() and not w1.is_deleted()
    assert w1._buf is buf                                # the result took w's buffer
    close(w1, w0 - 0.5 * g0)
    with pytest.raises(RuntimeError, match="donated to a jitted function"):
        np.asarray(w)
    with pytest.raises(RuntimeError, match="donated"):
        step(w, g)
    with pytest.raises(RuntimeError, match="donated"):
        w + 1.0
    w2 = step(w1, g)                                     # a training loop: no fresh buffers
    assert w2._buf is buf
    close(w2, w0 - g0, rtol=1e-6)


def test_donation_never_overwrites_a_shared_buffer():
    w0, g0 = u(4, 5), u(4, 5)
    step = needle.jit(lambda w, g: w - 0.5 * g, donate_argnums=0)
    w = needle.device_put(w0, "cuda")
    view = w.reshape(20)                                 # shares w's block
    w1 = step(w, needle.device_put(g0, "cuda"))
    assert w.is_deleted() and w1._buf is not w._buf
    np.testing.assert_array_equal(np.asarray(view), w0.reshape(20))
    close(w1, w0 - 0.5 * g0)
    # the same array donated and passed again: read, never overwritten
    both = needle.jit(lambda a, b: a * 2.0 + b, donate_argnums=0)
    x = needle.device_put(w0, "cuda")
    close(both(x, x), 3.0 * w0)
    assert x.is_deleted()


def test_donation_of_host_values_and_reading_kernels():
    # a host argument's device copy is the call's own; a kernel that reads the
    # donated input at other elements (a row sum beside it) does not take it
    f = needle.jit(lambda a: (a * 2.0, a - a.sum(axis=1, keepdims=True)), donate_argnums=0,
                   device="cuda")
    x = u(3, 4)
    r1, r2 = f(x)
    close(r1, 2 * x)
    close(r2, x - x.sum(axis=1, keepdims=True), rtol=1e-5)
    d = needle.device_put(x, "cuda")
    r1, r2 = f(d)
    close(r2, x - x.sum(axis=1, keepdims=True), rtol=1e-5)
    assert d.is_deleted()


# --- the device pool ----------------------------------------------------------------

def test_pool_reuses_dropped_results_and_intermediates():
    f = needle.jit(lambda a, b: nnp.sum(nnp.exp(a @ b), axis=1) * 2.0)   # 2+ kernels
    a, b = needle.device_put(u(4, 8), "cuda"), needle.device_put(u(8, 16), "cuda")
    assert f.lower(a, b).kernel_count >= 2
    f(a, b)
    gc.collect()
    before = cuda_memory.pool_info()
    for _ in range(3):
        r = f(a, b)
        del r
    after = cuda_memory.pool_info()
    # Every allocation of the later calls came from the pool.
    assert after["fresh"] == before["fresh"]
    assert after["reused"] >= before["reused"] + 3 * 2


def test_pool_block_lives_as_long_as_any_view():
    cuda_memory.clear_pool()
    x = needle.device_put(np.arange(1000, dtype=F32), "cuda")
    y = x.reshape(10, 100)                               # a view: shares x's block
    assert y._block is x._block
    n = cuda_memory.pool_info()["returned"]
    del x
    gc.collect()
    assert cuda_memory.pool_info()["returned"] == n      # y still holds it
    np.testing.assert_array_equal(np.asarray(y).ravel(), np.arange(1000, dtype=F32))
    del y
    gc.collect()
    info = cuda_memory.pool_info()
    assert info["returned"] == n + 1 and info["free_blocks"] >= 1
    fresh = info["fresh"]
    z = needle.device_put(np.ones(1000, F32), "cuda")    # same size class: reused
    assert cuda_memory.pool_info()["fresh"] == fresh
    np.testing.assert_array_equal(np.asarray(z), np.ones(1000, F32))


def test_size_classes():
    assert cuda_memory.size_class(1) == 256 and cuda_memory.size_class(256) == 256
    assert cuda_memory.size_class(257) == 512
    assert cuda_memory.size_class(4000) == 4096
    assert cuda_memory.size_class(4097) == 4608           # eighths of 4096
    for n in (300, 5000, 10 ** 6, 3 * 10 ** 7):
        c = cuda_memory.size_class(n)
        assert n <= c <= n * 1.125 + 256


# --- launch configuration ---------------------------------------------------------------

H100 = SimpleNamespace(MULTIPROCESSOR_COUNT=132, MAX_THREADS_PER_BLOCK=1024,
                       MAX_THREADS_PER_MULTIPROCESSOR=2048)


def test_launch_limits_from_device_properties():
    lim = cuda_runtime.limits_from_properties(H100)
    assert lim == (256, 132 * 8 * 2)
    assert cuda_runtime.launch_config(10 ** 9, limits=lim) == (2112, 256)
    assert cuda_runtime.launch_config(1000, limits=lim) == (4, 256)
    assert cuda_runtime.launch_config(5, limits=lim) == (1, 32)
    small = SimpleNamespace(MULTIPROCESSOR_COUNT=2, MAX_THREADS_PER_BLOCK=128)
    assert cuda_runtime.limits_from_properties(small) == (128, 2 * 16 * 2)


def test_device_limits_read_the_current_device(monkeypatch):
    from numba import config, cuda
    if config.ENABLE_CUDASIM:                            # the simulator's fixed limits
        assert cuda_runtime.device_limits() == (cuda_runtime.THREADS_PER_BLOCK,
                                                cuda_runtime.MAX_BLOCKS)
    monkeypatch.setattr(config, "ENABLE_CUDASIM", False)
    monkeypatch.setattr(cuda_runtime, "_device_limits", None)
    monkeypatch.setattr(cuda, "get_current_device", lambda: H100, raising=False)
    assert cuda_runtime.device_limits() == (256, 2112)
    assert cuda_runtime.launch_config(300) == (2, 256)


# --- cache_info ------------------------------------------------------------------------

def test_device_peaks_from_properties():
    from needle.runtime.cuda_inspect import device_peaks
    # an H100 SXM as its driver reports it: HBM3 at 2619 MHz on a 5120-bit bus,
    # 132 SMs at 1980 MHz
    h100 = SimpleNamespace(compute_capability=(9, 0), MEMORY_CLOCK_RATE=2619000,
                           GLOBAL_MEMORY_BUS_WIDTH=5120, CLOCK_RATE=1980000,
                           MULTIPROCESSOR_COUNT=132, name=b"NVIDIA H100 80GB HBM3")
    p = device_peaks(h100)
    assert p["name"] == "NVIDIA H100 80GB HBM3" and p["cc"] == (9, 0)
    assert abs(p["bandwidth_GBps"] - 3352) < 1          # the vendor's 3.35 TB/s
    assert abs(p["fp32_GFLOPs"] - 66908) < 1            # and 67 TFLOP/s FP32
    a100 = SimpleNamespace(compute_capability=(8, 0), MEMORY_CLOCK_RATE=1215000,
                           GLOBAL_MEMORY_BUS_WIDTH=5120, CLOCK_RATE=1410000,
                           MULTIPROCESSOR_COUNT=108, name="A100")
    p = device_peaks(a100)
    assert abs(p["bandwidth_GBps"] - 1555) < 1 and abs(p["fp32_GFLOPs"] - 19492) < 1
    assert device_peaks(SimpleNamespace(**{**vars(a100), "compute_capability": (6, 1)})
                        )["fp32_GFLOPs"] is None


def test_benchmark_workloads_run_in_the_simulator():
    # benchmarks/bench_cuda.py's workloads, tiny: every one compiles for CUDA
    # and matches the numpy interpreter (on a GPU the benchmark times them)
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benchmarks"))
    import bench_cuda
    work = bench_cuda._workloads(1, np.random.default_rng(0), d=8, n=8, bn=4, b=4, din=6, h=5)
    assert len(work) == 8
    for name, (fn, args, flops) in work.items():
        if name.startswith(("elementwise", "softmax", "layernorm", "sum_of")):
            args = tuple(a[:4] if a.ndim == 2 else a for a in args)    # 4 rows, not 64
        opt, flat, want = traced(fn, args)
        got = cuda_program(opt, name)(*flat)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=name)
    assert "skipped" in subprocess.run([sys.executable, os.path.join(
        os.path.dirname(HERE), "benchmarks", "bench_cuda.py")], capture_output=True,
        text=True, env=dict(os.environ, NUMBA_ENABLE_CUDASIM="1")).stdout


def test_cache_info_counts_cuda_kernels():
    cuda_runtime.clear_memory_cache()
    needle.reset_cache_info()
    fn = lambda x: nnn.softmax(x * 3.0, axis=-1) + nnp.sum(x)        # noqa: E731
    x = needle.device_put(u(3, 5), "cuda")
    n = needle.jit(fn).lower(x).kernel_count
    info = needle.cache_info()
    assert info.traces == 1 and info.kernels_compiled == n and n >= 1
    needle.jit(fn)(x)                                   # a new jit: same kernels, reused
    info = needle.cache_info()
    assert info.kernels_compiled == n and info.kernels_reused == n


# --- inspection ----------------------------------------------------------------------------

def test_lowered_stages_and_kernels_text():
    lo = needle.jit(lambda x: nnn.softmax(x, axis=-1), device="cuda").lower(u(4, 8))
    assert lo.stages[-3:] == ["fused", "kernels", "ptx"]
    assert lo.device == "cuda" and lo.kernel_count == 1 and lo.library_call_count == 0
    src = lo.as_text("kernels")
    assert "cuda.grid(1)" in src and "SIGNATURE" in src
    assert "kernel" in lo.as_text("fused")
    with pytest.raises(ValueError, match="compiled for cpu"):
        needle.jit(lambda x: x + 1.0).lower(u(3)).resource_report()


@pytest.mark.ptx
def test_ptx_and_resource_report_from_the_simulator_process():
    """In this (simulator) process the PTX is compiled in a subprocess."""
    pytest.importorskip("numba_cuda")
    lo = needle.jit(lambda x, g: (x - x.mean(axis=-1, keepdims=True)) * g,
                    device="cuda").lower(u(4, 8), u(8))
    ptx = lo.as_text("ptx")
    assert ".target sm_90" in ptx and ".f64" not in ptx
    from numba import config
    assert ("subprocess" in ptx) == bool(config.ENABLE_CUDASIM)
    rep = lo.resource_report(cc=(8, 0))
    assert len(rep) == lo.kernel_count
    for row in rep:
        assert row["arch"] == "sm_80" and 0 < row["registers"] <= 255
        assert row["spill_stores"] == row["spill_loads"] == 0
    assert "regs" in str(rep)


CHILD = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {here!r})
    from numba import config
    assert not config.ENABLE_CUDASIM
    from needle.codegen.cuda import emit_kernel
    from needle.lowering import fuse_for
    from needle.runtime.cuda_inspect import compile_ptx, resource_report
    from programs import program
    opt, _, _ = program("mlp_forward_backward")
    kernels = [(e.params["name"], emit_kernel(e.params["graph"]))
               for e in fuse_for(opt, "cuda").graph.eqns if e.prim.name == "kernel"]
    ptx = compile_ptx(kernels, (9, 0))
    rep = resource_report(kernels, (9, 0))
    print(json.dumps({{"n": len(kernels), "ptx": len(ptx),
                      "rows": [{{k: v for k, v in r.items() if k != "ptxas"}} for r in rep]}}))
""")


@pytest.mark.ptx
def test_resource_report_in_a_process_without_the_simulator():
    pytest.importorskip("numba_cuda")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    r = subprocess.run([sys.executable, "-c", CHILD.format(here=HERE)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n"] >= 3 and out["ptx"] == len(out["rows"]) >= out["n"]
    for row in out["rows"]:
        assert row["arch"] == "sm_90" and 0 < row["registers"] <= 255
        assert row["spill_stores"] == 0 and row["spill_loads"] == 0


def test_the_cpu_path_never_imports_numba_cuda():
    code = ("import sys, numpy as np, needle\n"
            "needle.jit(lambda x: x * 2.0)(np.ones(3, np.float32))\n"
            "assert needle.device_put(np.ones(2), 'cpu').shape == (2,)\n"
            "assert 'numba.cuda' not in sys.modules, 'numba.cuda imported'\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
