"""The CUDA backend in Numba's CUDA simulator: differential tests against the
numpy interpreter on the unoptimised graph, at small sizes (the simulator
runs one Python thread per CUDA thread).

Covers: every primitive's CUDA rule (the registry's examples, reused from
tests/test_registry.py), elementwise chains and broadcasts, softmax,
layernorm, reductions over each axis, argmax/argmin, gather, scatter_add,
scatter, cumsum, concatenate/pad/slice/transpose, matmul, an MLP forward and
backward, and the grid-stride loop with fewer threads than work items.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import needle
import needle.nn as nnn
import needle.numpy as nnp
from needle.codegen.cuda import emit_kernel, rules as cuda_rules
from needle.ir import PRIMITIVES, ClosedGraph, Eqn, Graph, Var, eval_graph, run_numpy
from needle.passes import fusion, run_pipeline
from needle.runtime import cuda_runtime
from needle.codegen import backend_for
from needle.lowering import cuda_program as compile_cuda, fuse_for
from needle.runtime.host import HOST_STEPS
from needle.passes.conv_expand import EXPANDED
from needle.passes.subgraphs import INLINED
from needle.runtime.loops import CONTROL_STEPS

from helpers import tol
from programs import PROGRAMS, program, traced

rng = np.random.default_rng(3)
F32 = np.float32


def u(*shape, lo=-1.0, hi=1.0, dtype=F32):
    return rng.uniform(lo, hi, shape).astype(dtype)


def assert_matches(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, \
        (got.shape, got.dtype, want.shape, want.dtype)
    if want.dtype.kind == "f":
        t = tol(want.dtype)
        if want.dtype == np.float32:        # sums in a different order
            t = dict(rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got, want, equal_nan=True, **t)
    else:
        np.testing.assert_array_equal(got, want)


def run_cuda(opt, flat, want, n_kernels=None):
    prog = compile_cuda(opt)
    got = prog(*flat)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_matches(g, w)
    if n_kernels is not None:
        assert len(prog.kernels) == n_kernels, prog.fused
    return prog


def check(fn, *args, n_kernels=None):
    return run_cuda(*traced(fn, args), n_kernels=n_kernels)


# --- the registry: every primitive has a CUDA rule and runs -----------------------

def test_every_primitive_has_a_cuda_rule():
    missing = []
    for name, p in sorted(PRIMITIVES.items()):
        covered = (name in cuda_rules.UNARY_RULES or name in cuda_rules.BINARY_RULES
                   or name in cuda_rules.EMITTERS or name in backend_for("cuda").library
                   or name in backend_for("cuda").views or p.kind == "group" or name in HOST_STEPS
                   or name in CONTROL_STEPS or name in INLINED
                   or name in EXPANDED                  # written out as im2col first
                   or name in backend_for("cuda").unsupported)    # an error naming it
        if not covered:
            missing.append(name)
    assert not missing, (f"no CUDA emit rule, library call, view, host step or control step: "
                         f"{missing}")


def _registry_cases():
    import test_registry
    return test_registry.EXAMPLES, [(n, k) for n, k in test_registry.CASES]


EXAMPLES, CASES = _registry_cases()


@pytest.mark.parametrize("name,k", CASES)
def test_every_primitive_runs_in_the_simulator(name, k):
    prim = PRIMITIVES[name]
    args, params = EXAMPLES[name][k]
    if name == "kernel":
        sub = params["graph"]
        check(lambda *xs: eval_graph(sub, [], list(xs))[0], *args)
        return
    if not args:                        # iota: no operands, write its graph by hand
        outs = [Var(a) for a in prim.abstract_eval(**params)]
        cg = ClosedGraph(Graph([], [], [Eqn(prim, [], params, outs)], outs), [])
        run_cuda(run_pipeline(cg)[0], [], run_numpy(cg.graph, [], []))
        return

    def fn(*xs):
        out = prim.bind(*xs, **params)
        return list(out) if prim.multiple_results else out
    if name in backend_for("cuda").unsupported:     # eigh, qr, svd: no CUDA kernel
        with pytest.raises(NotImplementedError, match=rf"{name} on .*no CUDA kernel"):
            check(fn, *args)
        return
    check(fn, *args)


# --- programs ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_representative_programs(name):
    run_cuda(*program(name))


def test_broadcasts():
    check(lambda x, r, c, s: x * r + c - s, u(4, 6), u(6), u(4, 1), u(), n_kernels=1)
    check(lambda x, y: x[:, None, :] + y[None, :, :] * 2.0, u(3, 5), u(4, 5))


def test_softmax_is_one_kernel_with_one_thread_per_row():
    prog = check(lambda x: nnn.softmax(x, axis=-1), u(5, 9) * 3, n_kernels=1)
    ks = prog.kernels[0][1]
    assert ks.work_items(0) == 5                    # rows, not elements
    assert "math.exp" in ks.source and "_fexp" not in ks.source


@pytest.mark.parametrize("op", [nnp.sum, nnp.max, nnp.min, nnp.prod, nnp.mean])
@pytest.mark.parametrize("axis", [0, 1, 2, (0, 2), None])
def test_reductions_over_each_axis(op, axis):
    check(lambda x: op(x, axis=axis), u(3, 4, 5, lo=0.5, hi=1.5))


def test_integer_reductions():
    x = rng.integers(-9, 9, (4, 5)).astype(np.int32)
    check(lambda x: (nnp.sum(x, axis=0), nnp.max(x, axis=1)), x)


def test_chained_full_reductions_are_two_kernels():
    # sum(x - max(x)): the sum's first stage needs the max in every block, so
    # the max is a kernel of its own (a grid-wide barrier would be needed);
    # found by the random programs of tests/test_fusion.py run on CUDA.
    x = u(3, 50)
    check(lambda a: nnp.sum(a - nnp.max(a)), x, n_kernels=2)
    check(lambda a: nnp.sum(nnp.reshape(nnp.max(a), (1,))), x[0, :1], n_kernels=2)
    check(lambda a: (nnp.sum(a), nnp.max(a), nnp.mean(a * a)), x, n_kernels=1)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_argmax_argmin(axis):
    x = u(3, 4, 5)
    x[1, 2, 3] = np.nan
    check(lambda x: (nnp.argmax(x, axis=axis), nnp.argmin(x, axis=axis)), x)


def test_gather_and_scatter_add_with_repeats():
    table, ids = u(6, 3), np.array([[1, 5], [1, -2], [0, 1]], np.int32)
    check(lambda t, i: nnp.take(t, i, axis=0), table, ids)
    check(lambda t, i, v: t.at[i].add(v), table, ids, u(3, 2, 3))
    check(lambda t, i, v: t.at[:, i[0]].add(v), table, ids, u(6, 2))


def test_scatter_set_with_distinct_indices():
    check(lambda t, i, v: t.at[i].set(v * 2.0), u(6, 3), np.array([4, 0, 2], np.int32),
          u(3, 3))


@pytest.mark.parametrize("axis", [0, 1])
def test_cumsum(axis):
    check(lambda x: nnp.cumsum(x * 2.0, axis=axis), u(4, 5))
    check(lambda x: nnp.cumsum(x, axis=axis)[::-1], u(4, 5))


def test_cumsum_reverse_primitive():
    x = u(3, 4)
    check(lambda x: PRIMITIVES["cumsum"].bind(x, axis=1, reverse=True), x)


def test_index_remaps():
    x, y = u(4, 5), u(2, 5)
    check(lambda x, y: nnp.concatenate([x, y * 2.0, x[:1]], axis=0), x, y)
    check(lambda x: nnp.pad(x, ((1, 2), (0, 3)), constant_values=-1.0), x)
    check(lambda x: x[1:4, ::2] + x[:3, 1::2], u(4, 6))
    check(lambda x: nnp.transpose(nnp.reshape(x, (2, 2, 5)), (2, 0, 1)) * 3.0, x)
    check(lambda x: nnp.reshape(x.T, (20,)) + 1.0, x)


def test_matmul_variants():
    check(lambda a, b: a @ b, u(5, 7), u(7, 3))
    check(lambda a, b: nnp.matmul(a, b), u(2, 3, 4), u(2, 4, 5))
    check(lambda a, b: a @ b, u(6), u(6, 2))
    check(lambda a, b: nnp.einsum("ij,kj->ik", a, b), u(3, 4), u(5, 4))


def test_layernorm_backward():
    def loss(x, g):
        mu = nnp.mean(x, axis=-1, keepdims=True)
        v = nnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
        return nnp.sum(((x - mu) / nnp.sqrt(v + 1e-5) * g) ** 2)
    check(needle.grad(loss, argnums=(0, 1)), u(4, 8), u(8))


def test_mixed_dtypes_and_float64():
    check(lambda x, i: (x * i).astype(np.float64) + 0.5, u(4, 3), np.arange(3, dtype=np.int32))
    check(lambda x: nnp.floor(x * 3.0) + nnp.ceil(x) + nnp.round(x * 2.0),
          u(3, 4, dtype=np.float64))
    check(lambda x: nnp.floor(x * 3.0) + nnp.round(x * 2.5), u(3, 4))


def test_grid_stride_loop_with_fewer_threads_than_work(monkeypatch):
    monkeypatch.setattr(cuda_runtime, "MAX_BLOCKS", 1)
    monkeypatch.setattr(cuda_runtime, "THREADS_PER_BLOCK", 32)
    assert cuda_runtime.launch_config(300) == (1, 32)
    check(lambda x, y: nnp.exp(x) * y + 1.0, u(10, 30), u(30))
    check(lambda t, i, v: t.at[i].add(v), u(9, 8), rng.integers(0, 9, 40).astype(np.int32),
          u(40, 8))


def test_launch_config():
    assert cuda_runtime.launch_config(1) == (1, 32)
    assert cuda_runtime.launch_config(100) == (1, 128)
    assert cuda_runtime.launch_config(129) == (2, 128)
    assert cuda_runtime.launch_config(10 ** 9) == (cuda_runtime.MAX_BLOCKS, 128)


def test_empty_results_and_inputs_returned_directly():
    check(lambda x, y: (x, y[:0] * 2.0, x + 1.0), u(3), u(4))


def test_new_sizes_reuse_the_kernel_source():
    a = emit_kernel(_single_group(lambda x: nnp.exp(x) * 2.0, u(3, 4)))
    b = emit_kernel(_single_group(lambda x: nnp.exp(x) * 2.0, u(5, 7)))
    assert a.source == b.source and a.dims != b.dims


def _single_group(fn, *args):
    opt, _, _ = traced(fn, args)
    fused = fuse_for(opt, "cuda")
    (e,) = [e for e in fused.graph.eqns if e.prim.name == "kernel"]
    return e.params["graph"]


def test_reduction_work_items():
    """How many threads' worth of work each group has: the grid-stride loop
    covers as many outer axes as it can without recomputing a reduction."""
    x = u(4, 6)
    cases = [(lambda x: nnp.sum(x, axis=0), 6),            # one thread per column
             (lambda x: nnp.sum(x, axis=1), 4),            # one per row
             (lambda x: x - nnp.max(x, axis=1, keepdims=True), 4),   # per row, then the row
             (lambda x: x - nnp.mean(x, axis=0), 6),       # per column, then the column
             (lambda x: x - nnp.sum(x), 1)]                # full reduction: one thread (for now)
    for fn, work in cases:
        prog = check(fn, x, n_kernels=1)
        assert prog.kernels[0][1].work_items(0) == work, prog.kernels_text()


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.data())
def test_reduce_then_broadcast_any_shape_and_axis(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = u(*shape)
    check(lambda x: nnp.exp(x - nnp.max(x, axis=axis, keepdims=True)) * nnp.sum(x), x)


def test_generated_source_is_cuda_only():
    opt, _, _ = program("layernorm")
    prog = compile_cuda(opt)
    for _, ks in prog.kernels:
        src = ks.source
        assert "cuda.grid(1)" in src and "SIGNATURE = 'void(" in src
        for cpu_only in ("numba.njit", "numba.prange", "np.empty", "_fexp", "dims["):
            assert cpu_only not in src, cpu_only


def test_multi_output_groups():
    check(lambda x: (x * 2.0, nnp.sum(x, axis=1), nnp.exp(x)), u(4, 6))
    check(lambda x: (nnp.max(x, axis=0), nnp.sum(x * x, axis=0)), u(5, 3))
