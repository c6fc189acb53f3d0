"""The CUDA block kernels (codegen/cuda/kernels.py) in the simulator, with
the simulator's small tuning (32-thread row blocks, 8x8 matmul tiles of 2x2
register blocks: emit.SIM_TUNING): block-per-row reductions with their fused
prologue and epilogue (softmax, log_softmax, layernorm, row sums, NaNs),
two-stage full reductions, argmax, column reductions staying one thread per
output, and the tiled matmul (batched, transposed operands, bias + relu
epilogue in ONE kernel, sizes not multiples of the tile). The real tiles
(emit.GPU_TUNING) are compiled to PTX and assembled by ptx_report.py.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import needle.nn as nnn
import needle.numpy as nnp
from needle.codegen.cuda import emit as cuda_emit
from needle.lowering import fuse_for

from test_cuda_sim import check, u


@pytest.fixture(autouse=True)
def sim_tuning(monkeypatch):
    monkeypatch.setattr(cuda_emit, "TUNING", cuda_emit.SIM_TUNING)


def _threads(prog):
    return [ks.threads for _, ks in prog.kernels]


def test_softmax_one_block_per_row():
    prog = check(lambda x: nnn.softmax(x, axis=-1), u(3, 40) * 4, n_kernels=1)
    ks = prog.kernels[0][1]
    assert ks.threads == (32,) and ks.work_items(0) == 3      # a block per row
    assert "shfl_xor(" in ks.source and "cuda.syncthreads()" not in ks.source.split(
        "def kernel")[1]                                     # one warp: shuffles only


def test_log_softmax_and_layernorm():
    check(lambda x: nnn.log_softmax(x, axis=-1), u(2, 3, 36) * 3, n_kernels=1)

    def layernorm(x, g, b):
        mu = nnp.mean(x, axis=-1, keepdims=True)
        var = nnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
        return (x - mu) / nnp.sqrt(var + 1e-5) * g + b
    prog = check(layernorm, u(3, 48), u(48), u(48), n_kernels=1)
    assert _threads(prog) == [(32,)]


def test_two_warps_combine_through_shared_memory(monkeypatch):
    monkeypatch.setattr(cuda_emit, "TUNING", cuda_emit.Tuning(64, 32, (8, 8, 4, 2, 2)))
    prog = check(lambda x: nnn.softmax(x, axis=-1), u(2, 70), n_kernels=1)
    assert "cuda.shared.array(2," in prog.kernels[0][1].source


def test_row_sums_max_with_nans_and_ints():
    x = u(3, 40)
    x[1, 7] = np.nan
    check(lambda x: nnp.sum(x, axis=-1), x, n_kernels=1)
    prog = check(lambda x: (nnp.max(x, axis=1), nnp.min(x, axis=1)), x)
    assert all(t == (32,) for t in _threads(prog))
    xi = rng_ints((3, 33))
    check(lambda x: nnp.sum(x, axis=1), xi)
    check(lambda x: nnp.sum(x, axis=(1, 2)), u(2, 4, 10))        # two reduced axes


def rng_ints(shape):
    return np.random.default_rng(1).integers(-9, 9, shape).astype(np.int32)


def test_full_reductions_are_two_stage():
    x = u(5, 13)
    prog = check(lambda x: nnp.sum(x), x, n_kernels=1)
    ks = prog.kernels[0][1]
    assert ks.threads == (32, 32) and ks.scratch == (("float32", 3),)   # partials
    assert [ks.work_items(k) for k in range(2)] == [3, 1]
    check(lambda x: nnp.mean(x * x) + 1.0, x)
    y = x.copy()
    y[2, 3] = np.nan
    check(lambda x: nnp.max(x), y)
    check(lambda x, s: (nnp.sum(x) * s, nnp.min(x)), u(7, 9), u())     # two reductions
    check(lambda x: nnp.sum(x), np.arange(100, dtype=np.int32).reshape(10, 10))
    # a loss: a full reduction over rows of a row reduction (nested: serial per thread)
    check(lambda x: -nnp.mean(nnp.sum(nnn.log_softmax(x, axis=-1), axis=1)), u(4, 36))


def test_columns_and_short_rows_keep_a_thread_per_output():
    prog = check(lambda x: nnp.sum(x, axis=0), u(40, 6), n_kernels=1)
    assert _threads(prog) == [(None,)]
    prog = check(lambda x: nnn.softmax(x, axis=-1), u(5, 9), n_kernels=1)
    assert _threads(prog) == [(None,)]


@pytest.mark.parametrize("threads", [32, 64])
def test_argmax_argmin_block_per_row(monkeypatch, threads):
    monkeypatch.setattr(cuda_emit, "TUNING", cuda_emit.Tuning(threads, 32, (8, 8, 4, 2, 2), 3))
    x = u(4, 40)
    x[2, 5] = x[2, 30] = np.nan         # the first NaN
    x[1, :] = 1.0                       # ties: the first
    x[3, :] = -np.inf
    prog = check(lambda x: nnp.argmax(x, axis=1), x, n_kernels=1)
    assert _threads(prog) == [(threads,)]
    if threads > 32:
        return
    check(lambda x: nnp.argmin(x, axis=1), x)
    check(lambda x: (nnp.argmax(x, axis=-1), nnp.max(x, axis=-1)), u(2, 3, 33))
    check(lambda x: nnp.argmax(x, axis=1), rng_ints((3, 40)))


def test_argmax_over_columns():
    x = u(3, 40)
    x[2, 5] = np.nan
    check(lambda x: nnp.argmax(x, axis=0), x)


def test_new_batch_size_reuses_the_row_kernel():
    a = check(lambda x: nnn.softmax(x, axis=-1), u(2, 40)).kernels[0][1]
    b = check(lambda x: nnn.softmax(x, axis=-1), u(3, 40)).kernels[0][1]
    assert a.source == b.source


# --- matmul ------------------------------------------------------------------------

def test_matmul_tiled_edges():
    prog = check(lambda a, b: a @ b, u(13, 11), u(11, 10), n_kernels=1)
    ks = prog.kernels[0][1]
    assert ks.threads == (16,) and ks.work_items(0) == 2 * 2
    assert "cuda.shared.array((4, 8)" in ks.source


def test_matmul_batched_and_transposed():
    check(lambda a, b: nnp.matmul(a, b), u(2, 9, 7), u(2, 7, 10), n_kernels=1)
    check(lambda a, b: a.T @ b, u(7, 9), u(7, 10), n_kernels=1)
    check(lambda a, b: a @ b.T, u(9, 7), u(10, 7), n_kernels=1)
    check(lambda a, b: nnp.matmul(nnp.swapaxes(a, 1, 2), b), u(2, 5, 6), u(2, 5, 3))


def test_matmul_bias_relu_epilogue_is_one_kernel():
    prog = check(lambda a, w, b: nnn.relu(a @ w + b), u(10, 12), u(12, 9), u(9), n_kernels=1)
    assert _threads(prog) == [(16,)]
    # residual and activation
    check(lambda a, w, r: nnp.tanh(a @ w) + r, u(6, 5), u(5, 7), u(6, 7), n_kernels=1)


def test_matmul_feeding_a_reduction_stays_its_own_kernel():
    prog = check(lambda a, w: nnn.softmax(a @ w, axis=-1), u(4, 6), u(6, 5))
    assert len(prog.kernels) == 2


def test_cpu_fusion_unchanged_for_matmul_epilogue():
    import needle
    from needle.passes import run_pipeline
    cg = needle.make_ir(lambda a, w, b: nnn.relu(a @ w + b))(u(4, 3), u(3, 2), u(2))
    opt, _ = run_pipeline(cg)
    kernels = [e for e in fuse_for(opt, "cpu").graph.eqns if e.prim.name == "kernel"]
    assert len(kernels) == 1 and not any(
        e.prim.name == "dot_general" for e in kernels[0].params["graph"].eqns)


# --- every shape and axis through the block paths (row_min=1: any row gets a block) -------

OPS = [nnp.sum, nnp.max, nnp.min, nnp.mean]


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.data())
def test_block_reductions_any_shape_and_axis(data):
    cuda_emit.TUNING = cuda_emit.Tuning(32, 1, (8, 8, 4, 2, 2), 2)
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    axes = data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1).map(tuple))
    op = data.draw(st.sampled_from(OPS))
    kind = data.draw(st.integers(0, 2))
    x = u(*shape)
    if data.draw(st.booleans()):
        x.flat[data.draw(st.integers(0, x.size - 1))] = np.nan
    if kind == 0:
        check(lambda x: op(x, axis=axes), x)
    elif kind == 1:
        check(lambda x: nnp.exp(x - op(x, axis=axes, keepdims=True)) * 2.0, x)
    else:
        check(lambda x: x * op(x) - op(x * x, axis=axes, keepdims=True), x)


def test_zero_d_reduction_beside_an_array_is_one_block():
    prog = check(lambda x: x - nnp.sum(x), u(4, 10), n_kernels=1)
    assert _threads(prog) == [(32,)] and prog.kernels[0][1].work_items(0) == 1


def test_matmul_float64_scalar_epilogue_and_prologue_split():
    check(lambda a, b, s: (a @ b) * s, u(5, 6, dtype=np.float64), u(6, 7, dtype=np.float64),
          u(dtype=np.float64), n_kernels=1)
    # a prologue stays its own kernel: the tiles read operands from memory
    prog = check(lambda a, b: nnp.exp(a * 2.0) @ b, u(5, 6), u(6, 7))
    assert len(prog.kernels) == 2
    # an integer matmul keeps one thread per output
    ai = rng_ints((4, 5))
    prog = check(lambda a, b: a @ b, ai, rng_ints((5, 3)))
    assert _threads(prog) == [(None,)]


def test_the_gpu_tuning_itself_in_the_simulator(monkeypatch):
    """The real block shapes (256-thread rows, 8 warps through shared memory;
    64x64x16 tiles of 4x4 register blocks), at sizes that cross tile edges;
    only the full reduction's first stage has 2 blocks, not 1024."""
    import dataclasses
    monkeypatch.setattr(cuda_emit, "TUNING", dataclasses.replace(cuda_emit.GPU_TUNING,
                                                                 partials=2))
    prog = check(lambda a, w, b: nnn.relu(a @ w + b), u(70, 20), u(20, 66), u(66),
                 n_kernels=1)
    assert _threads(prog) == [(256,)] and prog.kernels[0][1].work_items(0) == 4
    check(lambda x: nnn.softmax(x, axis=-1), u(2, 300), n_kernels=1)
    check(lambda x: nnp.argmax(x, axis=-1), u(2, 300))
    check(lambda x: nnp.sum(x), u(20, 30))
