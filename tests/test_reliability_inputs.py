"""Reliability: inputs numpy accepts get numpy's answer or a clear error, and
what needle keeps between calls stays bounded.

- read-only arrays (np.frombuffer of bytes, read-only memmaps,
  setflags(write=False)) and byte-swapped ones ('>f4') are accepted, eagerly
  and under jit;
- a Python int outside int64 is an OverflowError naming the argument;
- a value larger than any memory is a MemoryError at once (not a kernel
  looping for days);
- the per-function trace cache keeps at most NEEDLE_TRACE_CACHE_SIZE
  signatures, the CPU buffer pool at most NEEDLE_POOL_BYTES, and
  needle.cache_info() reports both.
"""
import gc
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle.runtime import memory

F32 = np.float32


def read_only(x):
    x = np.array(x)
    x.setflags(write=False)
    return x


# --- read-only and byte-swapped arrays ---------------------------------------------

def test_read_only_arrays_are_accepted(tmp_path):
    x = np.arange(1 << 17, dtype=F32)        # large: the parallel kernel variant too
    np.save(tmp_path / "x.npy", x)
    inputs = {"frombuffer": np.frombuffer(x.tobytes(), F32),
              "setflags": read_only(x),
              "memmap": np.load(tmp_path / "x.npy", mmap_mode="r")}
    f = needle.jit(lambda a, b: a * 2.0 + b)
    tree = needle.jit(lambda t, s=1.0: t["a"] - t["b"] * s)
    for name, ro in inputs.items():
        assert not ro.flags.writeable, name
        np.testing.assert_array_equal(f(ro, x), x * 3, err_msg=name)       # positional arrays
        np.testing.assert_array_equal(f(x, ro), x * 3, err_msg=name)
        np.testing.assert_array_equal(tree({"a": ro, "b": ro}), 0 * x, err_msg=name)  # pytree
        np.testing.assert_array_equal(tree({"a": ro, "b": x}, s=2.0), -x, err_msg=name)
        np.testing.assert_array_equal(f.lower(x, x)(ro, ro)[0], x * 3, err_msg=name)
        np.testing.assert_allclose(nnp.sin(ro), np.sin(x), rtol=1e-6, err_msg=name)  # eager
        np.testing.assert_array_equal(nnp.asarray(ro) + 1, x + 1, err_msg=name)
    # a donated read-only argument: the call works on a copy, the caller's
    # array is untouched
    step = needle.jit(lambda p, g: p - 0.5 * g, donate_argnums=0)
    p = read_only(np.ones(1 << 17, F32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # donation's once-per-process warning
        out = step(p, np.full(1 << 17, 2.0, F32))
    np.testing.assert_array_equal(out, 0.0)
    np.testing.assert_array_equal(p, 1.0)


@pytest.mark.parametrize("dt", [">f4", ">f8", ">i4", ">i8", ">u2"])
def test_byte_swapped_arrays_get_numpys_answer(dt):
    x = np.arange(12, dtype=dt).reshape(3, 4)
    native = x.astype(np.dtype(dt).newbyteorder("="))
    want = native * 2 + 1
    got = needle.jit(lambda a: a * 2 + 1)(x)
    assert got.dtype == want.dtype and got.dtype.isnative
    np.testing.assert_array_equal(got, want)
    for got, want in [(nnp.sum(x, axis=0), native.sum(axis=0)),
                      (nnp.asarray(x) * 2 + 1, want),
                      (nnp.reshape(x, (4, 3)), native.reshape(4, 3)),
                      (nnp.maximum(x, native), native)]:
        assert got.dtype == want.dtype and got.dtype.isnative, (got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want)
    if x.dtype.kind == "f":
        np.testing.assert_allclose(nnp.mean(x), native.mean(), rtol=1e-6)
        np.testing.assert_allclose(nnp.matmul(x, native.T), native @ native.T, rtol=1e-6)


# --- Python ints outside int64 -------------------------------------------------------

def test_python_int_too_large_names_the_argument():
    f = needle.jit(lambda a: a + 1)
    with pytest.raises(OverflowError, match=r"argument a: Python int too large to convert "
                                            r"to int64"):
        f(2 ** 70)
    assert f(2 ** 63 - 1) == 2 ** 63 - 1 + 1 - 2 ** 64        # int64 wraps, as in numpy
    with pytest.raises(OverflowError, match=r"argument a: .* int64"):   # after a cache hit
        f(-2 ** 63 - 1)
    g = needle.jit(lambda t, k=0: t[0] + t[1] + k)
    with pytest.raises(OverflowError, match=r"argument t\[1\]: "):
        g((np.ones(2, F32), 2 ** 64))
    with pytest.raises(OverflowError, match=r"argument k: "):
        g((np.ones(2, F32), 1), k=2 ** 64)


# --- bounded caches ------------------------------------------------------------------

def test_many_shapes_keep_the_trace_cache_and_the_pool_bounded():
    budget = 32 << 20
    old = memory.set_budget(budget)
    try:
        f = needle.jit(lambda x: x * 2.0 + 1.0)
        hot = np.ones(1 << 16, F32)
        traces = needle.cache_info().traces
        for k in range(200):                  # 200 sizes of 256-456 KiB: 71 MB in all
            n = (1 << 16) + 256 * k
            r = f(np.full(n, k, F32))
            assert r.shape == (n,) and r[0] == r[-1] == 2 * k + 1
            np.testing.assert_array_equal(f(hot), 3.0)   # the hot signature stays cached
            del r
        gc.collect()
        info = needle.cache_info()
        assert info.traces - traces == 200           # 199 new sizes, 1 hot, 0 retraces
        assert f._entries == needle.config.trace_cache_size == 64
        assert info.trace_entries >= f._entries
        assert info.pool_budget == budget
        assert info.pool_bytes == memory.pool_bytes()[0] <= budget
        assert memory.pool_info()[1] <= budget
        # an evicted signature is traced again, and still right
        np.testing.assert_array_equal(f(np.full((1 << 16) + 256, 1, F32)), 3.0)
        assert needle.cache_info().traces - traces == 201
    finally:
        memory.set_budget(old)


def test_trace_cache_evicts_the_least_recently_called_signature(config):
    config.update("trace_cache_size", 3)
    f = needle.jit(lambda x: x + 1)
    xs = [np.ones(n, F32) for n in range(1, 6)]
    for x in xs[:3]:
        f(x)
    f(xs[0])                                 # recently used: survives the next insertion
    traces = needle.cache_info().traces
    f(xs[3])                                 # evicts xs[1]
    f(xs[0])
    f(xs[2])
    assert needle.cache_info().traces - traces == 1
    f(xs[1])
    assert needle.cache_info().traces - traces == 2 and f._entries == 3
    f.clear_cache()
    assert f._entries == 0


def test_pool_budget_forgets_least_recently_requested_sizes():
    old = memory.set_budget(4 * memory.MIN_BYTES)
    try:
        memory.clear_pool()
        a = memory.empty((memory.MIN_BYTES,), np.uint8)
        b = memory.empty((memory.MIN_BYTES * 2,), np.uint8)
        del a, b
        assert memory.pool_bytes() == (3 * memory.MIN_BYTES, 4 * memory.MIN_BYTES)
        c = memory.empty((memory.MIN_BYTES * 3,), np.uint8)     # forgets a's size first
        assert memory.pool_bytes()[0] == 3 * memory.MIN_BYTES
        d = memory.empty((memory.MIN_BYTES * 5,), np.uint8)     # over budget: untracked
        assert d.nbytes == 5 * memory.MIN_BYTES and memory.pool_bytes()[0] <= 4 * memory.MIN_BYTES
        del c, d
    finally:
        memory.set_budget(old)
        memory.clear_pool()


# --- subprocess checks: sizes larger than memory, environment variables -------------

CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import needle, needle.numpy as nnp
    from needle.runtime import memory
    out = {}
    for name, fn in [("jit_sum", lambda: needle.jit(lambda: nnp.ones((2**62,)).sum())()),
                     ("jit_mean", lambda: needle.jit(lambda x: (x + nnp.zeros((2**40, 2**20))
                                                                ).mean())(np.float32(1))),
                     ("eager", lambda: nnp.ones((2**62,)).sum())]:
        try:
            fn()
            out[name] = "no error"
        except (MemoryError, ValueError) as e:
            out[name] = type(e).__name__ + ": " + str(e)
    out["pool_budget"] = needle.cache_info().pool_budget
    out["cap"] = needle.config.trace_cache_size
    f = needle.jit(lambda x: x * 2)
    for n in range(1, 12):
        assert (f(np.ones(n, np.float32)) == 2).all()
    out["entries"] = f._entries
    print(json.dumps(out))
""")


def test_huge_sizes_fail_at_once_and_bounds_come_from_the_environment():
    env = dict(os.environ, NEEDLE_POOL_BYTES="5e6", NEEDLE_TRACE_CACHE_SIZE="5")
    r = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for name in ("jit_sum", "jit_mean"):
        assert out[name].startswith("MemoryError: ") and "larger than any memory" in out[name]
    assert "shape (4611686018427387904,)" in out["jit_sum"]
    assert out["eager"].startswith(("MemoryError", "ValueError"))       # numpy's own error
    assert out["pool_budget"] == 5_000_000
    assert out["cap"] == 5 and out["entries"] == 5
