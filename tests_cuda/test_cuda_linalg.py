"""The CUDA kernels of the matrix decompositions (codegen/cuda/linalg.py):
in the simulator against the numpy implementations, at sizes where the
block's 4 simulator threads stride (n = 9), with a block-stride loop over
more matrices than blocks, pivoting (ties, NaN, a zero column), matrices
that are not positive definite, every flag combination of triangular_solve,
and inside a whole program (a Gaussian-process posterior mean, forward and
backward); eigh, qr and svd, which have no CUDA kernel, fail naming
themselves; then compiled to PTX for sm_80 / sm_90 and assembled with ptxas
(no float64 instruction in a float32 kernel, no spills).
"""
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import needle
import needle.numpy as nnp
import needle.scipy.linalg as sla
from needle.ir.primitives import cholesky_p, lu_p, triangular_solve_p
from needle.runtime import cuda_runtime

from test_cuda_sim import check

rng = np.random.default_rng(11)
HERE = os.path.dirname(os.path.abspath(__file__))


def general(*shape, dtype=np.float32):
    n = shape[-1]
    return (rng.standard_normal(shape) + n * np.eye(n)).astype(dtype)


def spd(*shape, dtype=np.float32):
    x = rng.standard_normal(shape)
    return (x @ np.swapaxes(x, -1, -2) + shape[-1] * np.eye(shape[-1])).astype(dtype)


def _one_kernel(prog, threads):
    (ks,) = [ks for _, ks in prog.kernels]
    assert ks.threads == (threads,)
    return ks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cholesky_and_lu_stride_over_rows_and_matrices(dtype, monkeypatch):
    monkeypatch.setattr(cuda_runtime, "MAX_BLOCKS", 2)      # 5 matrices, 2 blocks
    s, a = spd(5, 9, 9, dtype=dtype), rng.standard_normal((5, 9, 9)).astype(dtype)
    _one_kernel(check(lambda s: cholesky_p.bind(s), s), 4)
    ks = _one_kernel(check(lambda a: lu_p.bind(a), a), 4)
    assert ks.work_items(0) == 5                            # a block per matrix


def test_lu_pivots_ties_nan_and_zero_columns():
    a = np.array([[[1.0, 2, 3], [-1, 0, 1], [1, 5, 0]],         # a tie: the first wins
                  [[0.0, 1, 2], [0, 3, 4], [0, 5, 7]],          # a zero column
                  [[1.0, 2, 3], [np.nan, 0, 1], [4, 5, 0]]],    # a NaN pivots first
                 np.float32)
    check(lambda a: lu_p.bind(a), a)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")    # the simulator's numpy
def test_cholesky_of_matrices_that_are_not_positive_definite():
    s = spd(4, 3, 3)
    s[1, 2, 2] = -10.0                                      # fails at the last pivot
    s[2] = 0.0                                              # fails at once
    s[3, 0, 0] = np.nan
    check(lambda s: cholesky_p.bind(s), s)


@pytest.mark.parametrize("left,lower,transpose_a,unit",
                         list(itertools.product([True, False], repeat=4)))
def test_triangular_solve_flags(left, lower, transpose_a, unit):
    a = general(2, 4, 4)
    b = rng.standard_normal((2, 4, 3) if left else (2, 3, 4)).astype(np.float32)
    prog = check(lambda a, b: triangular_solve_p.bind(
        a, b, left_side=left, lower=lower, transpose_a=transpose_a, unit_diagonal=unit), a, b)
    ks = _one_kernel(prog, None)                            # grid-stride: any block size
    assert ks.work_items(0) == 2 * 3                        # a thread per right-hand side


def test_unbatched_and_empty():
    check(lambda a: lu_p.bind(a), general(3, 3))
    check(lambda s, b: triangular_solve_p.bind(s, b, left_side=True, lower=True),
          general(3, 3), np.zeros((3, 0), np.float32))
    check(lambda s: cholesky_p.bind(s), np.zeros((0, 2, 2), np.float32))


def test_gaussian_process_mean_and_gradient_on_the_device():
    """A GP posterior mean K*^T (K + s I)^-1 y and its gradient in the noise
    and the targets, through cholesky, cho_solve and their transposes."""
    x = np.linspace(-1, 1, 6).astype(np.float32)
    xs = np.array([-0.5, 0.3], np.float32)
    y = np.sin(3 * x)

    def mean(noise, y):
        k = nnp.exp(-(x[:, None] - x[None, :]) ** 2)
        ks = nnp.exp(-(x[:, None] - xs[None, :]) ** 2)
        c = sla.cho_factor(k + noise * nnp.eye(6), lower=True)
        return nnp.sum(ks * sla.cho_solve(c, y[:, None]))

    noise = np.float32(0.1)
    f = needle.jit(needle.value_and_grad(mean, argnums=(0, 1)), device="cuda")
    v, (gn, gy) = f(noise, y)
    v_ref, (gn_ref, gy_ref) = needle.value_and_grad(mean, argnums=(0, 1))(noise, y)
    np.testing.assert_allclose(float(v), v_ref, rtol=1e-4)
    np.testing.assert_allclose(float(gn), gn_ref, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(gy), gy_ref, rtol=1e-3, atol=1e-5)
    k64 = np.exp(-(x[:, None] - x[None, :]) ** 2).astype(np.float64) + 0.1 * np.eye(6)
    ks64 = np.exp(-(x[:, None] - xs[None, :]) ** 2)
    np.testing.assert_allclose(v_ref, np.sum(ks64 * np.linalg.solve(k64, y[:, None])),
                               rtol=1e-4)


@pytest.mark.parametrize("fn,name", [(nnp.linalg.eigh, "eigh"), (nnp.linalg.qr, "qr"),
                                     (nnp.linalg.svd, "svd")])
def test_eigh_qr_svd_have_no_cuda_kernel(fn, name):
    """An error naming the primitive, the operand and the way out, when
    compiled for CUDA and when called eagerly on a device array."""
    x = spd(3, 3)
    with pytest.raises(NotImplementedError, match=rf"{name} on f32\[3,3\]: no CUDA kernel "
                                                  rf"for {name} .*device='cpu'"):
        needle.jit(fn, device="cuda")(x)
    with pytest.raises(NotImplementedError, match=rf"{name} on f32\[3,3\]: no CUDA kernel"):
        fn(needle.device_put(x, "cuda"))
    np.testing.assert_allclose(np.asarray(needle.jit(nnp.linalg.svdvals, device="cpu")(x)),
                               np.linalg.svd(x, compute_uv=False), rtol=1e-5)


# --- PTX ---------------------------------------------------------------------------------

PTX_SCRIPT = r"""
import json, sys, tempfile
import numpy as np
sys.path.insert(0, {here!r})
from numba import cuda
from ptx_report import ARCHS, F64, assemble
from needle.codegen.cuda import emit_kernel
from needle.ir import Eqn, Graph, ShapedArray, Var
from needle.ir.primitives import cholesky_p, lu_p, triangular_solve_p
from needle.runtime.cuda_inspect import ptxas_path
from needle.runtime.kernel_cache import import_kernel_module

ptxas = ptxas_path()
if ptxas is None:
    print(json.dumps({{"skip": "no ptxas (pip install nvidia-cuda-nvcc)"}}))
    sys.exit(0)
cases = [("cholesky", cholesky_p, [(4, 16, 16)], {{}}), ("lu", lu_p, [(4, 16, 16)], {{}}),
         ("lu_unbatched", lu_p, [(16, 16)], {{}}),
         ("triangular_solve", triangular_solve_p, [(4, 16, 16), (4, 16, 3)],
          dict(left_side=True, lower=True)),
         ("triangular_solve_right_T_unit", triangular_solve_p, [(16, 16), (3, 16)],
          dict(left_side=False, transpose_a=True, unit_diagonal=True))]
with tempfile.TemporaryDirectory() as tmp:
    for name, prim, shapes, params in cases:
        for dt in (np.float32, np.float64):
            ins = [Var(ShapedArray(s, np.dtype(dt))) for s in shapes]
            outs = [Var(a) for a in prim.abstract_eval(*[v.aval for v in ins], **params)]
            ks = emit_kernel(Graph([], ins, [Eqn(prim, ins, params, outs)], outs))
            mod = import_kernel_module(ks, "cuda")
            for cc in ARCHS:
                try:
                    ptx, _ = cuda.compile_ptx(getattr(mod, mod.ENTRIES[0]), mod.SIGNATURE, cc=cc)
                except Exception as exc:
                    if "NVVM" in str(exc) or "libnvvm" in str(exc):
                        print(json.dumps({{"skip": f"no NVVM: {{exc}}"}}))
                        sys.exit(0)
                    raise
                row = {{"kernel": name, "dtype": np.dtype(dt).name,
                       "arch": f"sm_{{cc[0]}}{{cc[1]}}", "f64": F64.findall(ptx)[:5]}}
                row.update(assemble(ptxas, ptx, cc, tmp))
                print(json.dumps(row), flush=True)
"""


@pytest.fixture(scope="module")
def ptx_rows():
    pytest.importorskip("numba_cuda", reason="the cuda extra (numba-cuda) is not installed")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    r = subprocess.run([sys.executable, "-c", PTX_SCRIPT.format(here=HERE)], env=env,
                       capture_output=True, text=True, timeout=600, cwd=HERE)
    assert r.returncode == 0, r.stderr[-6000:]
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    if rows and "skip" in rows[0]:
        pytest.skip(rows[0]["skip"])
    return rows


@pytest.mark.ptx
def test_linalg_kernels_assemble_without_float64_or_spills(ptx_rows):
    assert len(ptx_rows) == 5 * 2 * 2
    for r in ptx_rows:
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, r["ptxas"]
        assert 0 < r["registers"] <= 128, r["ptxas"]
        if r["dtype"] == "float32":
            assert not r["f64"], (r["kernel"], r["arch"], r["f64"])
