"""Compile-time measures (issue 13's cold first call): generated source that
Numba types and lowers once per value (codegen/emitter.py's named index
arithmetic) with no C wrapper (codegen/cpu/emit.py), the garbage collector's
full collections kept rare while kernels compile (runtime/kernel_cache.py's
fewer_full_collections), compile workers as many as the cores
(runtime/compile_workers.py). The programs compute numpy's answers (float64
formulas written out here, central differences); the structure checks read
the generated source or the settings, never a time."""
import gc
import re
import threading

import numpy as np

import needle
import needle.nn as nnn
import needle.numpy as nnp
from needle.runtime.kernel_cache import fewer_full_collections

rng = np.random.default_rng(0)


def im2col(x):
    """3x3 patches of a zero-padded NHWC image, channels last (conv's im2col)."""
    h, w = x.shape[1], x.shape[2]
    xp = nnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return nnp.concatenate([xp[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)],
                           axis=-1)


def im2col_ref(x):
    h, w = x.shape[1], x.shape[2]
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    return np.concatenate([xp[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)],
                          axis=-1)


def kernel_sources(f, *args):
    text = needle.jit(f).lower(*args).as_text("kernels")
    return [part for part in text.split("# ---- kernel ")[1:]]


def test_im2col_values_and_index_arithmetic_named_once():
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(needle.jit(im2col)(x), im2col_ref(x))
    srcs = kernel_sources(im2col, x)
    assert srcs
    for src in srcs:
        lines = src.splitlines()
        reads = [ln for ln in lines if re.search(r"\ba\d+\[", ln)]
        assert reads
        # every clamp and bounds test is a name: no array read repeats them
        assert not [ln for ln in reads if "min(" in ln or "max(" in ln or " and " in ln]
        clamps = [ln.split("=", 1)[1].strip() for ln in lines if "min(max(" in ln]
        assert clamps and len(clamps) == len(set(clamps))      # each defined once
        # each defined in the loop of the deepest loop index it reads (hoisted
        # out of the loops inside it), the concatenation's offsets at the top
        assert_defined_in_their_loops(lines, ("min(max(", " >= 0 and ", "n_"))


def assert_defined_in_their_loops(lines, marks):
    depth = lambda ln: len(ln) - len(ln.lstrip())
    body = {}                       # loop index -> the indentation of its body
    for ln in lines:
        m = re.match(r"\s*for (\w+) in range", ln)
        if m:
            body[m.group(1)] = depth(ln) + 4
    top = 4                         # the function's body
    checked = 0
    for ln in lines:
        m = re.match(r"\s*([jpn]_\d+) = (.*)", ln)
        if not m or not any(k in ln for k in marks):
            continue
        loops = [v for v in re.findall(r"\bi_\d+\b", m.group(2))]
        assert depth(ln) == max([body[v] for v in loops], default=top), ln
        checked += 1
    assert checked


def test_kernels_skip_the_unused_c_wrapper():
    # the runtime calls the CPython wrapper; Numba's C-callable one is not built
    x = rng.standard_normal((3, 4)).astype(np.float32)
    f = lambda x: nnp.tanh(x) * 2.0 + x.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(needle.jit(f)(x), np.tanh(x.astype(np.float64)) * 2 +
                               x.astype(np.float64).sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    srcs = kernel_sources(f, x)
    assert srcs and all("no_cfunc_wrapper=True" in src for src in srcs)


def test_max_pool_gradient_matches_numpy():
    # the gradient reads the pooled windows through interior padding (strided
    # bounds tests) and the tie masks: each named once per loop
    n, h, w, c = 2, 6, 4, 3
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    up = rng.standard_normal((n, h // 2, w // 2, c)).astype(np.float32)

    def loss(x):
        return (nnn.max_pool(x, 2) * up).sum()
    g = needle.jit(needle.grad(loss))(x)
    ref = np.zeros((n, h, w, c))
    win = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(
        n, h // 2, w // 2, c, 4)
    k = win.argmax(-1)
    for b, i, j, ch in np.ndindex(n, h // 2, w // 2, c):
        di, dj = divmod(k[b, i, j, ch], 2)
        ref[b, 2 * i + di, 2 * j + dj, ch] = up[b, i, j, ch]
    np.testing.assert_allclose(g, ref, rtol=1e-6, atol=1e-6)
    for src in kernel_sources(needle.grad(loss), x):
        body = [ln for ln in src.splitlines() if re.search(r"\ba\d+\[", ln)]
        assert not [ln for ln in body if "min(" in ln or "//" in ln or "%" in ln]


def test_conv_gradient_matches_finite_differences():
    # conv's im2col and its gradient: pads and concatenations of named indices
    x = rng.standard_normal((1, 4, 4, 2))
    w = rng.standard_normal((3, 3, 2, 3))
    up = rng.standard_normal((1, 4, 4, 3))

    def loss(x, w):
        return (nnn.conv(x, w, 1, 1) * up).sum()
    gx, gw = needle.jit(needle.grad(loss, argnums=(0, 1)))(x, w)

    def f(x, w):            # the convolution written out, float64
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        out = sum(np.einsum("nhwc,co->nhwo", xp[:, i:i + 4, j:j + 4, :], w[i, j])
                  for i in range(3) for j in range(3))
        return (out * up).sum()
    eps = 1e-6
    for arr, g in ((x, gx), (w, gw)):
        num = np.zeros_like(arr)
        for ix in np.ndindex(arr.shape):
            d = np.zeros_like(arr)
            d[ix] = eps
            plus = f(x + d, w) if arr is x else f(x, w + d)
            minus = f(x - d, w) if arr is x else f(x, w - d)
            num[ix] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-6)


def test_fewer_full_collections_nests_and_restores():
    before = gc.get_threshold()
    with fewer_full_collections():
        inside = gc.get_threshold()
        assert inside[:2] == before[:2] and inside[2] == 10 * before[2]
        with fewer_full_collections():
            assert gc.get_threshold() == inside
        assert gc.get_threshold() == inside
    assert gc.get_threshold() == before


def test_fewer_full_collections_keeps_a_disabled_collector_and_restores_on_error():
    before = gc.get_threshold()
    gc.set_threshold(0, before[1], before[2])      # threshold 0: automatic collection off
    try:
        with fewer_full_collections():
            assert gc.get_threshold()[0] == 0
        assert gc.get_threshold() == (0, before[1], before[2])
    finally:
        gc.set_threshold(*before)
    try:
        with fewer_full_collections():
            raise KeyError("x")
    except KeyError:
        pass
    assert gc.get_threshold() == before


def test_fewer_full_collections_concurrent_threads():
    before = gc.get_threshold()
    entered, release = threading.Barrier(3), threading.Event()
    seen = []

    def work():
        with fewer_full_collections():
            entered.wait()
            release.wait()
            seen.append(gc.get_threshold())
    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    entered.wait()
    assert gc.get_threshold()[2] == 10 * before[2]
    release.set()
    for t in threads:
        t.join()
    assert [s[2] for s in seen] == [10 * before[2]] * 2 and gc.get_threshold() == before


def test_compile_workers_default_is_the_cores_whatever_num_threads():
    # NEEDLE_NUM_THREADS caps the threads a kernel runs on; a cold compile's
    # workers are one-thread processes, as many as the cores (issue 13)
    import os
    from needle.runtime import compile_workers
    cores = len(os.sched_getaffinity(0))
    with needle.config.override(compile_workers=None, num_threads=1):
        assert compile_workers.worker_count() == cores
    with needle.config.override(compile_workers=3, num_threads=1):
        assert compile_workers.worker_count() == 3
