"""Control flow compiled, never unrolled: scan, while_loop, fori_loop, cond,
switch and map under `needle.jit` against the numpy interpreter (the
primitives' numpy impls on the traced graph) or plain numpy loops; the
fused stage shows each body nested with its own kernels; a scan's program
does not grow with its length; results never alias the arguments.

The differential tests are marked `on_device`: with NEEDLE_TEST_DEVICE=cuda
(NUMBA_ENABLE_CUDASIM=1 without a GPU) they run again on the CUDA backend
(conftest.py), so shapes stay small.
"""
import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle import lax
from needle.ir import run_numpy
from needle.ir.primitives import checkpoint_p, cond_p, scan_p, while_p

from helpers import DEVICE, assert_close, jit

rng = np.random.default_rng(3)
F32, F64, I32, I64 = np.float32, np.float64, np.int32, np.int64


def reference(f, *args):
    """f's results by the numpy interpreter on its traced graph."""
    cg = needle.make_ir(f)(*args)
    leaves = needle.tree_util.tree_leaves(args)
    return run_numpy(cg.graph, cg.consts, [np.asarray(x) for x in leaves])


def check(f, *args):
    got = needle.tree_util.tree_leaves(jit(f)(*args))
    want = reference(f, *args)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_close(g, w, dtype=w.dtype)
    return got


def _rnn(c, x):
    h = nnp.tanh(c * 0.5 + x)
    return h, h * 2.0


# --- scan --------------------------------------------------------------------------------

@pytest.mark.on_device
@pytest.mark.parametrize("length", [0, 1, 5])
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_lengths_and_reverse(length, reverse):
    xs = rng.standard_normal((length, 3)).astype(F32)
    h0 = rng.standard_normal(3).astype(F32)
    got = check(lambda h, xs: lax.scan(_rnn, h, xs, reverse=reverse), h0, xs)
    assert got[1].shape == (length, 3)
    if length == 0:
        np.testing.assert_array_equal(got[0], h0)
    h, ys = h0.astype(F64), []                       # a plain numpy loop too
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        h = np.tanh(h * 0.5 + xs[t])
        ys.append((t, h * 2))
    np.testing.assert_allclose(got[0], h, rtol=1e-5, atol=1e-6)
    for t, y in ys:
        np.testing.assert_allclose(got[1][t], y, rtol=1e-5, atol=1e-6)


@pytest.mark.on_device
@pytest.mark.parametrize("dtype", [F32, F64, I32, I64])
def test_scan_pytree_carries_and_dtypes(dtype):
    def f(init, xs):
        def body(c, x):
            a, (b, n) = c["a"], c["bn"]
            a2 = a + x["u"] * b
            return {"a": a2, "bn": (b + 1, n + 1)}, (a2, x["v"] * 2)
        return lax.scan(body, init, xs)
    init = {"a": np.ones(2, dtype), "bn": (np.asarray(2, dtype), np.asarray(0, I32))}
    xs = {"u": np.arange(8, dtype=dtype).reshape(4, 2), "v": np.arange(4, dtype=dtype)}
    check(f, init, xs)


@pytest.mark.on_device
def test_scan_captured_constants_and_outer_values():
    w = rng.standard_normal((3, 3)).astype(F32)        # a numpy array: a graph constant

    def f(b, xs):
        s = nnp.sum(b)                                   # an outer traced value
        return lax.scan(lambda c, x: (nnp.tanh(w @ c + x + s), c.sum() * 2.0), b, xs)
    check(f, rng.standard_normal(3).astype(F32), rng.standard_normal((4, 3)).astype(F32))


@pytest.mark.on_device
def test_scan_passthrough_and_literal_outputs():
    """Results no kernel computes: a carry passed through, swapped carries, a
    scanned input returned, a constant."""
    def f(a, b, xs):
        def body(c, x):
            a, b, k = c
            return (b, a, k), (x, np.float32(3.0), a + x)
        return lax.scan(body, (a, b, np.float32(1.0)), xs)
    check(f, np.ones(2, F32), np.zeros(2, F32), rng.standard_normal((3, 2)).astype(F32))


@pytest.mark.on_device
def test_nested_scan_and_cond_in_scan():
    def f(x0, xss):
        def outer(c, xs):
            inner_c, ys = lax.scan(lambda d, x: (d * 0.9 + x, d - x), c, xs)
            k = lax.cond(nnp.sum(inner_c) > 0, lambda v: v * 2.0, lambda v: v - 1.0, inner_c)
            return k, ys.sum(axis=0)
        return lax.scan(outer, x0, xss)
    check(f, np.ones(2, F32), rng.standard_normal((3, 4, 2)).astype(F32))


@pytest.mark.on_device
def test_scan_inside_cond():
    def f(i, h, xs):
        def run(h, xs):
            return lax.scan(lambda c, x: (c + x, c), h, xs)[0]
        return lax.switch(i, [run, lambda h, xs: h * 0.0], h, xs)
    xs = rng.standard_normal((4, 2)).astype(F32)
    for i in (0, 1):
        check(f, np.asarray(i, I32), np.ones(2, F32), xs)


@pytest.mark.on_device
def test_map():
    xs = rng.standard_normal((4, 3)).astype(F32)
    got = check(lambda xs: lax.map(lambda x: nnp.exp(x) / nnp.sum(nnp.exp(x)), xs), xs)
    assert_close(got[0], np.exp(xs) / np.exp(xs).sum(1, keepdims=True), dtype=F32)


# --- while, fori, cond ---------------------------------------------------------------------

@pytest.mark.on_device
def test_while_loop():
    def f(x, limit):
        return lax.while_loop(lambda c: c[1] < limit, lambda c: (c[0] * 1.5 + 1.0, c[1] + 1),
                              (x, np.asarray(0, I32)))
    got = check(f, np.ones(3, F32), np.asarray(4, I32))
    assert got[1] == 4
    got = check(f, np.ones(3, F32), np.asarray(0, I32))      # no iteration
    np.testing.assert_array_equal(got[0], np.ones(3, F32))


@pytest.mark.on_device
@pytest.mark.parametrize("bounds", ["static", "traced"])
def test_fori_loop(bounds):
    def body(i, v):
        return v * 0.5 + i.astype(np.float32)

    if bounds == "static":
        def f(v):
            return lax.fori_loop(2, 7, body, v)
        got = check(f, np.ones(2, F32))
    else:
        def f(v, lo, hi):
            return lax.fori_loop(lo, hi, body, v)
        got = check(f, np.ones(2, F32), np.asarray(2, I32), np.asarray(7, I32))
    v = np.ones(2)
    for i in range(2, 7):
        v = v * 0.5 + i
    np.testing.assert_allclose(got[0], v, rtol=1e-6)


@pytest.mark.on_device
@pytest.mark.parametrize("index", [-3, 0, 1, 2, 7])
def test_switch_clamps_its_index(index):
    branches = [lambda x: x + 1.0, lambda x: nnp.sin(x), lambda x: x * x]

    def f(i, x):
        return lax.switch(i, branches, x)
    x = rng.standard_normal(3).astype(F32)
    got = check(f, np.asarray(index, I32), x)
    k = min(max(index, 0), 2)
    assert_close(got[0], [x + 1, np.sin(x), x * x][k], dtype=F32)


@pytest.mark.on_device
def test_cond_results_never_alias_the_arguments():
    f = jit(lambda p, x: lax.cond(p, lambda v: v, lambda v: v * 2.0, x))
    x = np.ones(3, F32)
    y = f(np.asarray(True), x)
    np.testing.assert_array_equal(y, x)
    if DEVICE == "cpu":
        assert not np.shares_memory(y, x)


def test_outputs_never_alias_inputs():
    x, xs = np.ones(3, F32), np.zeros((0, 3), F32)
    c, ys = needle.jit(lambda c, xs: lax.scan(lambda c, x: (c, x), c, xs))(x, xs)
    assert not np.shares_memory(c, x) and ys.shape == (0, 3)
    (w,) = needle.jit(lambda c: lax.while_loop(lambda c: c[0][0] > 5.0, lambda c: c,
                                               (c,)))(x)
    assert not np.shares_memory(w, x)


@pytest.mark.filterwarnings("ignore:needle.jit")
def test_donation_with_a_loop():
    """A donated argument read by a loop and then by a kernel, which may
    write its result into the donated buffer."""
    def g(h, xs):
        return lax.scan(_rnn, h, xs)[0] + h
    f = needle.jit(g, donate_argnums=0)
    xs = rng.standard_normal((4, 3)).astype(F32)
    want = reference(g, np.ones(3, F32), xs)[0]
    for _ in range(2):
        assert_close(f(np.ones(3, F32), xs), want, dtype=F32)


# --- the lowering ----------------------------------------------------------------------

def test_fused_stage_shows_the_body_with_its_kernels():
    lo = needle.jit(lambda h, xs: lax.scan(_rnn, h * 2.0, xs)).lower(
        np.ones(3, F32), np.ones((5, 3), F32))
    text = lo.as_text("fused")
    top, body = text.split("body=", 1)
    assert "scan[" in top and "kernel[" in body
    assert "fusion stops at loop boundaries" in text
    kernels = lo.as_text("kernels")               # the body's kernels, named after it
    assert "# ---- kernel scan.body/" in kernels and "scan(" not in kernels


@pytest.mark.parametrize("make", [
    lambda n: (lambda h, xs: lax.scan(_rnn, h, xs), (np.ones(3, F32), np.ones((n, 3), F32))),
    lambda n: (lambda v: lax.fori_loop(0, n, lambda i, v: v * 0.5 + 1.0, v),
               (np.ones(3, F32),))])
def test_program_size_does_not_depend_on_the_length(make):
    sizes = []
    for n in (3, 300):
        f, args = make(n)
        lo = needle.jit(f).lower(*args)
        sizes.append((len(str(lo.as_text("fused")).splitlines()), lo.kernel_count))
    assert sizes[0] == sizes[1]


def test_dce_prunes_unused_loop_results():
    def f(h, xs):
        (a, b), ys = lax.scan(lambda c, x: ((c[0] + x, c[1] * x), c[0] - x), (h, h), xs)
        return a
    lo = needle.jit(f).lower(np.ones(2, F32), np.ones((3, 2), F32))
    scan_line = [ln for ln in lo.as_text("dce").splitlines() if "= scan[" in ln][0]
    assert "num_carry=1" in scan_line and scan_line.count(":f32") == 1
    unused = needle.jit(lambda h, xs: (lax.scan(lambda c, x: (c + x, c), h, xs), h)[1])
    assert "scan" not in unused.lower(np.ones(2, F32), np.ones((3, 2), F32)).as_text("dce")


def test_while_and_cond_drop_unused_results():
    def f(x, n):
        a, b, i = lax.while_loop(lambda c: c[2] < n, lambda c: (c[0] * 2.0, c[1] + c[0], c[2] + 1),
                                 (x, x, np.asarray(0, I32)))
        p, q = lax.cond(n > 2, lambda u: (u + 1.0, nnp.exp(u)), lambda u: (u, u * 3.0), a)
        return a, p
    x, n = np.ones(2, F32), np.asarray(3, I32)
    lo = needle.jit(f).lower(x, n)
    dce = lo.as_text("dce").splitlines()
    (w,) = [ln for ln in dce if "= while[" in ln]
    assert w.count(":f32[2]") == 1 and w.count(":i32[]") == 1     # b is gone
    assert not any("exp" in ln for ln in dce)                    # q is gone
    check(f, x, n)


def test_fold_never_runs_a_loop_and_cse_keeps_distinct_bodies():
    xs = np.arange(6, dtype=F32).reshape(3, 2)            # captured: a graph constant

    def f(h):
        a = lax.scan(lambda c, x: (c + x, c), h, xs)[0]
        b = lax.scan(lambda c, x: (c + x, c), h, xs)[0]     # an equal body, traced again
        c = lax.scan(lambda c, x: (c * x, c), h, xs)[0]
        return a, b, c
    lo = needle.jit(f).lower(np.ones(2, F32))
    assert lo.as_text("folded").count("= scan[") == 3
    assert lo.as_text("cse").count("= scan[") == 3
    check(f, np.ones(2, F32))


def test_passes_work_inside_bodies():
    def f(h, xs):
        def body(c, x):
            u = c * 1.0 + 0.0                                # simplified away inside
            v = nnp.exp(c) + x + nnp.exp(c)                  # exp(c) once (CSE)
            return v + u, nnp.sum(np.ones(3, F32) * 2.0)     # folded inside
        return lax.scan(body, h, xs)
    lo = needle.jit(f).lower(np.ones(3, F32), np.ones((4, 3), F32))
    body = lo.as_text("dce").split("body=", 1)[1]
    assert body.count("exp") == 1 and "mul" not in body and "reduce_sum" not in body
    check(f, np.ones(3, F32), rng.standard_normal((4, 3)).astype(F32))


@pytest.mark.on_device
@pytest.mark.parametrize("length,unroll", [(5, 2), (6, 3), (4, 8), (1, 4)])
@pytest.mark.parametrize("reverse", [False, True])
def test_unrolled_scan(length, unroll, reverse):
    def f(h, xs):
        return lax.scan(lambda c, x: (nnp.tanh(c * 0.5 + x), (c.sum(), x * 2.0)), h, xs,
                        unroll=unroll, reverse=reverse)
    check(f, np.ones(3, F32), rng.standard_normal((length, 3)).astype(F32))


def test_unroll_fuses_steps_into_one_kernel():
    f = lambda h, xs: lax.scan(lambda c, x: (c * 0.5 + x, None), h, xs, unroll=4)  # noqa: E731
    text = needle.jit(f).lower(np.ones(3, F32), np.ones((8, 3), F32)).as_text("fused")
    body = text.split("body=", 1)[1]
    assert "length=2" in text and body.count("= kernel[") == 1 and body.count("= add ") == 4


@pytest.mark.on_device
def test_an_effect_in_a_body_keeps_the_loop(capsys):
    def f(h, xs):
        def body(c, x):
            needle.debug.print("c={c}", c=c)
            return c + x, c * 2.0
        lax.scan(body, h, xs)                       # results unused: kept for the print
        return h + 1.0
    out = jit(f)(np.zeros(2, F32), np.ones((3, 2), F32))
    assert_close(out, np.ones(2, F32), dtype=F32)
    assert capsys.readouterr().out.count("c=") == 3


def test_checkpoint_is_inlined_before_fusion():
    g = needle.checkpoint(lambda x: nnp.sin(x) * 2.0)
    f = needle.jit(lambda x: g(x) + 1.0)
    x = np.ones(3, F32)
    lo = f.lower(x)
    assert "checkpoint" in lo.as_text("traced") and "checkpoint" not in lo.as_text("fused")
    assert lo.kernel_count == 1
    assert_close(f(x), np.sin(x) * 2 + 1, dtype=F32)


def test_eager_run_control_compiles_once():
    from needle import lowering
    cg = needle.make_ir(lambda h, xs: lax.scan(_rnn, h, xs))(np.ones(3, F32),
                                                             np.ones((4, 3), F32))
    (e,) = [e for e in cg.graph.eqns if e.prim is scan_p]
    args = [np.ones(3, F32), rng.standard_normal((4, 3)).astype(F32)]
    want = scan_p.impl(*args, **e.params)
    got = lowering.run_control(scan_p, args, e.params)
    n = len(lowering._control_cache)
    again = lowering.run_control(scan_p, args, e.params)
    assert len(lowering._control_cache) == n          # the second run did not lower again
    for g, a, w in zip(got, again, want):
        assert_close(g, w, dtype=w.dtype)
        assert_close(a, w, dtype=w.dtype)


def test_registry_primitives_are_all_control():
    assert {p.kind for p in (scan_p, cond_p, while_p, checkpoint_p)} == {"control"}


# --- CPU: a body of kernels and views runs as one generated loop ---------------------------
# (codegen/cpu/loop_emit.py; runtime/loops.py keeps a Python loop for bodies with library
# calls or host steps, and on CUDA). CPU only: not marked on_device.

def _generated_loops(lo):
    return lo.as_text("kernels").count("# ---- generated loop ")


def _python_path(monkeypatch):
    from needle.runtime.cpu_device import CpuDevice
    monkeypatch.setattr(CpuDevice, "generate_loops", False)


def _pytree_body(c, x):
    """Carries of three dtypes in a pytree, a swapped pair, a float literal,
    ys of other dtypes: a 0-d sum, an int, an xs passed through, a literal."""
    h, (a, b), n = c["h"], c["ab"], c["n"]
    h2 = nnp.tanh(h * 0.5 + x["u"]) + a.astype(np.float32)
    return ({"h": h2, "ab": (b, a + 1.0), "n": n + 1},
            (nnp.sum(h2), n * 2, x["v"], np.float32(2.5)))


def _view_body(c, x):
    """Views between kernels: reshapes of the carry and of a kernel's result."""
    m = c.reshape(2, 3)
    r = m * 0.25 + x.reshape(2, 3) * nnp.max(m, axis=1, keepdims=True)
    return r.reshape(6) * 0.5, (m, r.reshape(3, 2), nnp.max(r))


def _generated_cases():
    f32 = F32
    return {
        "rnn": (lambda h, xs, rev: lax.scan(_rnn, h, xs, reverse=rev),
                lambda n: (rng.standard_normal(3).astype(f32),
                           rng.standard_normal((n, 3)).astype(f32))),
        "alias": (lambda h, xs, rev: lax.scan(lambda c, x: (nnp.tanh(c * 0.9 + x),) * 2, h, xs,
                                              reverse=rev),
                  lambda n: (np.zeros(4, f32), rng.standard_normal((n, 4)).astype(f32))),
        "pytree": (lambda c, xs, rev: lax.scan(_pytree_body, c, xs, reverse=rev),
                   lambda n: ({"h": np.ones(2, f32), "ab": (np.zeros((), F64), np.ones((), F64)),
                               "n": np.asarray(1, I32)},
                              {"u": rng.standard_normal((n, 2)).astype(f32),
                               "v": np.arange(n, dtype=I64)})),
        "views": (lambda c, xs, rev: lax.scan(_view_body, c, xs, reverse=rev),
                  lambda n: (rng.standard_normal(6).astype(f32),
                             rng.standard_normal((n, 6)).astype(f32))),
    }


@pytest.mark.parametrize("length", [0, 1, 7])
@pytest.mark.parametrize("name", ["rnn", "alias", "pytree", "views"])
def test_generated_scan_equals_the_interpreter(name, length):
    body, make = _generated_cases()[name]
    init, xs = make(length)
    for rev in (False, True):
        def f(c, xs):
            return body(c, xs, rev)
        check(f, init, xs)
        assert _generated_loops(needle.jit(f).lower(init, xs)) == 1


def test_generated_scan_without_xs_and_fori_loop():
    f = lambda v: lax.scan(lambda c, _: (c * 1.5 - 1.0, c.sum()), v, None, length=5)  # noqa
    g = lambda v: lax.fori_loop(2, 9, lambda i, v: v * 0.5 + i.astype(F32), v)          # noqa
    for fn in (f, g):
        check(fn, np.ones(3, F32))
        assert _generated_loops(needle.jit(fn).lower(np.ones(3, F32))) == 1


@pytest.mark.parametrize("limit", [0, 1, 6])
def test_generated_while_loop(limit):
    def f(x, limit):
        return lax.while_loop(lambda c: (c[1] < limit) & (nnp.sum(c[0]) < 1e6),
                              lambda c: (c[0] * 1.5 + 1.0, c[1] + 1, c[2]),
                              (x, np.asarray(0, I32), x * 2.0))
    args = (np.ones(3, F32), np.asarray(limit, I32))
    got = check(f, *args)
    assert int(got[1]) == limit
    assert _generated_loops(needle.jit(f).lower(*args)) == 1


def test_generated_and_python_loops_agree(monkeypatch):
    body, make = _generated_cases()["pytree"]
    init, xs = make(7)
    f = lambda c, xs: body(c, xs, False)        # noqa: E731
    fast = needle.tree_util.tree_leaves(needle.jit(f)(init, xs))
    _python_path(monkeypatch)
    slow = needle.jit(f)
    assert _generated_loops(slow.lower(init, xs)) == 0
    for a, b in zip(fast, needle.tree_util.tree_leaves(slow(init, xs))):
        np.testing.assert_array_equal(a, b)


def test_the_16_float_scan_is_one_generated_loop():
    xs, a = rng.standard_normal((50, 16)).astype(F32), np.float32(0.5)
    W = (rng.standard_normal((16, 16)) / 4).astype(F32)

    def elementwise(a, xs):
        return lax.scan(lambda h, x: (nnp.tanh(a * h + x),) * 2, np.zeros(16, F32), xs)

    def blas(W, xs):
        return lax.scan(lambda h, x: (nnp.tanh(h @ W + x),) * 2, np.zeros(16, F32), xs)
    lo = needle.jit(elementwise).lower(a, xs)
    text = lo.as_text("kernels")
    assert _generated_loops(lo) == 1 and "# ---- generated loop scan/loop (scan" in text
    assert lo.kernel_count == text.count("# ---- kernel ") == 1     # the body's one group
    assert "in the generated loop" in text and ", inlined) ----" in text
    check(elementwise, a, xs)
    lo = needle.jit(blas).lower(W, xs)          # a BLAS call: the runtime's Python loop
    assert _generated_loops(lo) == 0 and lo.library_call_count == 1
    check(blas, W, xs)


def test_a_large_body_keeps_its_parallel_kernels(config):
    config.update("parallel_min_size", 8)
    config.update("num_threads", 2)             # splitting needs 2 threads, whatever the cores
    f = lambda h, xs: lax.scan(_rnn, h, xs)     # noqa: E731
    args = (np.ones(16, F32), rng.standard_normal((3, 16)).astype(F32))
    lo = needle.jit(f).lower(*args)
    assert _generated_loops(lo) == 0 and "(parallel," in lo.as_text("kernels")
    check(f, *args)


@pytest.mark.parametrize("path", ["generated", "python"])
def test_no_allocation_per_step(path, monkeypatch):
    """Every numpy allocation one call makes (runtime/memory.count_allocations)
    is the same at T=100 and T=1000: carries, ys and scratch buffers are
    allocated once per call, the BLAS result is written into its buffer."""
    from needle.runtime.memory import count_allocations
    if path == "python":
        _python_path(monkeypatch)
    W = (rng.standard_normal((16, 16)) / 4).astype(F32)

    def elementwise(a, xs):
        return lax.scan(lambda h, x: (nnp.tanh(a * h + x),) * 2, np.zeros(16, F32), xs)

    def blas(W, xs):
        def body(c, x):
            h, k = c
            h2 = nnp.tanh(h @ W + x)
            return (h2, k + 1.0), (h2, nnp.sum(h2), h)
        return lax.scan(body, (np.zeros(16, F32), np.float32(0)), xs)

    def loop(x, n):
        return lax.while_loop(lambda c: c[1] < n, lambda c: (c[0] * 0.5 + 1.0, c[1] + 1),
                              (x, np.asarray(0, I32)))
    cases = [(elementwise, lambda T: (np.float32(0.5), np.ones((T, 16), F32))),
             (blas, lambda T: (W, np.ones((T, 16), F32))),
             (loop, lambda T: (np.ones(16, F32), np.asarray(T, I32)))]
    for f, make in cases:
        f = needle.jit(f)
        counts = []
        for T in (100, 1000):
            args = make(T)
            f(*args)
            with count_allocations() as c:
                f(*args)
            counts.append(c.arrays)
        assert counts[0] == counts[1] and counts[0] < 40, (f, counts)
