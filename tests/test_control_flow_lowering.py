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
