"""Kernels whose rows are split across the runtime's threads (runtime/parallel.py,
codegen/cpu/emit.py `split`) give numpy's answers.

Every test forces the split at tiny sizes (parallel_min_size 1: any kernel
whose rows are independent runs in chunks; 3 threads on a 2-core machine,
so chunks are uneven and the workers really interleave) and checks that the
kernels it expects were split (the `kernels` stage says so), against numpy
formulas in float64 or central finite differences. Kernels that must not be
split (a column or full reduction, a scatter's ordered updates, a 0-d
result, a softmax over a 1-d array) are checked to run serially and right.
"""
import importlib
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle import lax
from needle.runtime import parallel

F32 = np.float32
rng = np.random.default_rng(0)


@pytest.fixture
def split(config):
    config.update("parallel_min_size", 1)
    config.update("num_threads", 3)
    return config


def u(*shape, dtype=F32):
    return rng.uniform(-2, 2, shape).astype(dtype)


def kernels(f, *args):
    """(split, serial) kernel counts of jitted f's program."""
    text = f.lower(*args).as_text("kernels")
    return text.count("(parallel, rows in "), text.count("(serial, ")


def close(got, want, dtype=F32):
    t = dict(rtol=2e-5, atol=2e-6) if dtype == F32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.asarray(got), want, **t)


# --- the chunks ----------------------------------------------------------------------

def test_chunks_cover_the_rows_once():
    for extent in range(1, 40):
        for n in range(1, 6):
            rows = [r for lo, hi in parallel.chunks(extent, n) for r in range(lo, hi)]
            assert rows == list(range(extent))


def test_an_error_in_a_chunk_reaches_the_caller_after_every_chunk_ran():
    ran = []

    def fn(out, lo, hi):
        ran.append((lo, hi))
        if lo == 4:
            raise ValueError("chunk 4..8")
        out[lo:hi] = 1

    out = np.zeros(12)
    with pytest.raises(ValueError, match="chunk 4..8"):
        parallel.splitter(fn, 12, 3)(out)
    assert sorted(ran) == [(0, 4), (4, 8), (8, 12)]
    assert out[:4].all() and out[8:].all()


# --- elementwise, broadcast, views ------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_and_broadcast(split, dtype):
    x, y, b = u(7, 5, dtype=dtype), u(5, dtype=dtype), u(7, 1, dtype=dtype)
    f = needle.jit(lambda x, y, b: nnp.tanh(x * 2.0 + y) * b - nnp.exp(-x * x))
    x64, y64, b64 = (a.astype(np.float64) for a in (x, y, b))
    close(f(x, y, b), np.tanh(x64 * 2 + y64) * b64 - np.exp(-x64 * x64), dtype)
    assert kernels(f, x, y, b) == (1, 0)


def test_views_inside_kernels(split):
    x, z = u(6, 4), u(4, 6)
    def g(x, z):
        a = x.reshape(3, 8).T.reshape(4, 6) + z      # a reshape that regroups rows
        c = nnp.concatenate([a[:, ::-1], nnp.pad(z, ((0, 0), (1, 0)))[:, :6]], axis=0)
        return c[::2] * 3.0
    f = needle.jit(g)
    a = x.reshape(3, 8).T.reshape(4, 6) + z
    c = np.concatenate([a[:, ::-1], np.pad(z, ((0, 0), (1, 0)))[:, :6]], axis=0)
    close(f(x, z), c[::2] * 3)
    assert kernels(f, x, z)[0] >= 1


# --- reductions --------------------------------------------------------------------------

REDUCTIONS = {
    "row sum": (lambda x: x.sum(axis=-1), lambda x: x.sum(-1)),
    "row max": (lambda x: x.max(axis=-1), lambda x: x.max(-1)),
    "x - rowmax": (lambda x: x - x.max(axis=-1, keepdims=True),
                   lambda x: x - x.max(-1, keepdims=True)),
    "mean over 0 and -1": (lambda x: x.mean(axis=(0, -1)), lambda x: x.mean((0, -1))),
    "column sum": (lambda x: x.sum(axis=0), lambda x: x.sum(0)),
    "x - column min": (lambda x: x - x.min(axis=0), lambda x: x - x.min(0)),
    "full sum": (lambda x: x.sum(), lambda x: x.sum()),
    "x / full sum": (lambda x: x / nnp.abs(x).sum(), lambda x: x / np.abs(x).sum()),
    "softmax rows": (lambda x: needle.nn.softmax(x, axis=-1),
                     lambda x: np.exp(x - x.max(-1, keepdims=True)) /
                     np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)),
}


@pytest.mark.parametrize("name", list(REDUCTIONS))
@pytest.mark.parametrize("shape", [(7, 5), (5, 3, 4)], ids=["2d", "3d"])
def test_reductions(split, name, shape):
    ours, ref = REDUCTIONS[name]
    x = u(*shape)
    close(needle.jit(ours)(x), ref(x.astype(np.float64)))


def test_a_1d_softmax_runs_serially(split):
    """Its row sum over the only axis sits at the top of the kernel (and
    leaves exp in the output): the kernel must not be split."""
    x = u(11)
    f = needle.jit(lambda x: needle.nn.softmax(x))
    e = np.exp(x.astype(np.float64) - x.max())
    close(f(x), e / e.sum())
    assert kernels(f, x)[0] == 0


def test_column_and_full_reductions_are_not_split(split):
    x = u(9, 4)
    f = needle.jit(lambda x: (x.sum(axis=0), x.sum()))
    s0, s = f(x)
    close(s0, x.astype(np.float64).sum(0))
    close(s, x.astype(np.float64).sum())
    assert kernels(f, x)[0] == 0


# --- dot_general epilogues, gathers, scatters, scans, sorts ------------------------------

def test_matmul_epilogues(split):
    x, w, b = u(10, 6), u(6, 5), u(5)
    a, c = u(3, 4, 6), u(3, 6, 2)
    f = needle.jit(lambda x, w, b, a, c: (nnp.maximum(x @ w + b, 0.0), nnp.tanh(a @ c)))
    r1, r2 = f(x, w, b, a, c)
    d = lambda *t: [v.astype(np.float64) for v in t]     # noqa: E731
    x64, w64, b64, a64, c64 = d(x, w, b, a, c)
    close(r1, np.maximum(x64 @ w64 + b64, 0))
    close(r2, np.tanh(a64 @ c64))
    assert kernels(f, x, w, b, a, c)[0] >= 2


def test_gathers(split):
    x = u(8, 3)
    idx = np.array([[0, -1], [5, 2], [7, -8], [3, 3]], np.int32)
    f = needle.jit(lambda x, i: nnp.take(x, i, axis=0) * 2.0 + x[i[:, 0]][:, None])
    want = x.astype(np.float64)[idx % 8] * 2 + x.astype(np.float64)[idx[:, 0] % 8][:, None]
    close(f(x, idx), want)
    assert kernels(f, x, idx)[0] >= 1


@pytest.mark.parametrize("how", ["set", "add", "mul", "max"])
def test_scatters_with_repeated_indices(split, how):
    x, v = u(9, 4), u(6, 4)
    idx = np.array([1, 4, 1, 8, 4, 1], np.int32)
    f = needle.jit(lambda x, i, v: getattr(x.at[i], how)(v) * 2.0)
    want = x.astype(np.float64)
    for k, j in enumerate(idx):          # in order: the last write wins, the rest combine
        vk = v[k].astype(np.float64)
        want[j] = vk if how == "set" else want[j] + vk if how == "add" else \
            want[j] * vk if how == "mul" else np.maximum(want[j], vk)
    close(f(x, idx, v), want * 2)


def test_cumulative_and_sort_along_either_axis(split):
    x = u(6, 5)
    f = needle.jit(lambda x: (nnp.cumsum(x, axis=0), nnp.cumsum(x, axis=1),
                              nnp.sort(x, axis=0), nnp.argsort(x, axis=1)))
    c0, c1, s0, a1 = f(x)
    x64 = x.astype(np.float64)
    close(c0, np.cumsum(x64, 0))
    close(c1, np.cumsum(x64, 1))
    np.testing.assert_array_equal(s0, np.sort(x, 0))
    np.testing.assert_array_equal(a1, np.argsort(x, 1, kind="stable"))
    assert kernels(f, x)[0] >= 3


def test_scan_whose_body_kernels_split(split):
    w, h0, xs = u(6, 6) / 3, u(5, 6), u(4, 5, 6)

    def f(h, xs):
        def cell(h, x):
            h = nnp.tanh(h @ w + x)
            return h, h * 2.0
        return lax.scan(cell, h, xs)
    h, ys = needle.jit(f)(h0, xs)
    hh, want = h0.astype(np.float64), []
    for x in xs.astype(np.float64):
        hh = np.tanh(hh @ w + x)
        want.append(hh * 2)
    close(h, hh)
    close(ys, np.stack(want))


# --- donation, gradients, threads --------------------------------------------------------

def test_donated_input_written_in_place(split, monkeypatch):
    from needle.runtime import executable
    monkeypatch.setattr(executable, "_donation_warned", [])    # warned once per process
    x, y = u(10, 8), u(10, 8)
    want = np.tanh(x.astype(np.float64)) * 2 + y
    f = needle.jit(lambda x, y: nnp.tanh(x) * 2.0 + y, donate_argnums=0)
    xd = x.copy()
    with pytest.warns(UserWarning, match="donated"):
        got = f(xd, y)
    close(got, want)
    assert np.shares_memory(got, xd)    # the chunks wrote the donated buffer
    z = u(10, 8)                        # donated and also passed as the other argument
    close(f(z, z), np.tanh(z.astype(np.float64)) * 2 + z)


def test_gradient_matches_finite_differences(split):
    x, w = u(12, 5, dtype=np.float64), u(5, 4, dtype=np.float64)

    def loss(w, x):
        h = nnp.tanh(x @ w)
        return (needle.nn.log_softmax(h, axis=-1) * h).sum() + (h.max(axis=0) ** 2).sum()

    def ref(w):
        h = np.tanh(x @ w)
        lsm = h - h.max(-1, keepdims=True)
        lsm = lsm - np.log(np.exp(lsm).sum(-1, keepdims=True))
        return (lsm * h).sum() + (h.max(0) ** 2).sum()

    g = needle.jit(needle.grad(loss))(w, x)
    eps, fd = 1e-6, np.zeros_like(w)
    for k in range(w.size):
        p, m = w.copy(), w.copy()
        p.flat[k] += eps
        m.flat[k] -= eps
        fd.flat[k] = (ref(p) - ref(m)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_concurrent_launches_from_threads(split):
    f = needle.jit(lambda x, y: nnp.tanh(x * 2.0 + y).sum(axis=1))
    xs, ys = [u(9, 7) for _ in range(4)], [u(7) for _ in range(4)]
    f(xs[0], ys[0])
    errors, barrier = [], threading.Barrier(4)

    def work(i):
        try:
            barrier.wait()
            want = np.tanh(xs[i].astype(np.float64) * 2 + ys[i]).sum(1)
            for _ in range(20):
                close(f(xs[i], ys[i]), want)
        except BaseException as e:      # noqa: BLE001 - reported below
            errors.append(e)
    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def test_one_kernel_for_every_size(config):
    """A small and a large shape of one group share one kernel source: the
    size decides only how many chunks run it."""
    import re
    config.update("parallel_min_size", 64)
    config.update("num_threads", 2)
    f = needle.jit(lambda x: nnp.tanh(x) * 2.0)
    texts = [f.lower(np.ones((n, 4), F32)).as_text("kernels") for n in (3, 1 << 12)]
    assert "(serial, " in texts[0] and "(parallel, rows in 2 chunks" in texts[1]
    keys = {k for t in texts for k in re.findall(r"nk_([0-9a-f]+)\.py", t)}
    assert len(keys) == 1
    x = u(1 << 12, 4)
    close(f(x), np.tanh(x.astype(np.float64)) * 2)


# --- fork, import -----------------------------------------------------------------------

FORK = textwrap.dedent("""
    import os
    import numpy as np
    import needle, needle.numpy as nnp
    from needle.runtime import parallel
    needle.config.update("parallel_min_size", 1)
    assert parallel.pool_threads() == 0            # no thread at import
    f = needle.jit(lambda x: nnp.sqrt(nnp.abs(x)) * 2.0 + 1.0)
    x = np.arange(-40, 40, dtype=np.float32).reshape(16, 5)
    want = np.sqrt(np.abs(x)) * 2 + 1
    assert np.allclose(f(x), want) and parallel.pool_threads() == 2
    pid = os.fork()
    if pid == 0:
        ok = parallel.serial_only() and np.allclose(f(x + 1), np.sqrt(np.abs(x + 1)) * 2 + 1)
        ok = ok and parallel.pool_threads() == 0
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert np.allclose(f(x), want)
    print("SPLIT-FORK-OK")
""")


def test_forked_child_runs_split_kernels_in_one_call():
    env = dict(os.environ, NEEDLE_NUM_THREADS="3")
    r = subprocess.run([sys.executable, "-c", FORK], env=env, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0 and "SPLIT-FORK-OK" in r.stdout, r.stdout + r.stderr[-3000:]


# --- the random programs, split ----------------------------------------------------------

@pytest.mark.parametrize("module, name", [
    ("test_random_programs", "test_values_match_interpreter"),
    ("test_random_programs", "test_gradients_match_interpreter_and_finite_differences"),
    ("test_fusion", "test_random_programs_match_interpreter"),
])
def test_random_programs_split(split, module, name):
    """The random-program tests (their drawn programs, their references),
    every kernel that may be split run in chunks."""
    getattr(importlib.import_module(module), name)()


def test_random_bits_split_match_jax(split):
    """needle.random's draws (threefry in the kernels that use them) match the
    JAX reference outputs of tests/test_random.py with their rows split."""
    mod = importlib.import_module("test_random")
    if getattr(mod, "REF", None) is None:
        pytest.skip("no JAX reference file")
    mod.test_reference_file("jit")
    mod.test_more_jax_outputs_jit()
