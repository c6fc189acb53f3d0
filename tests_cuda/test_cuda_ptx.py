"""The CUDA kernels of the representative programs (programs.py: elementwise
chain, softmax, layernorm, MLP forward+backward, batched matmul,
gather/scatter-add) compile to PTX for sm_80 and sm_90 with
`numba.cuda.compile_ptx` and assemble with the wheel's ptxas: no float64
instruction in a float32 program, no spills; the register table is printed
at the end of the run.

The compiling runs in a subprocess (ptx_report.py) with the simulator off:
this pytest process has NUMBA_ENABLE_CUDASIM=1 (conftest.py).
"""
import json
import os
import subprocess
import sys

import pytest

from programs import FLOAT32, PROGRAMS

pytestmark = pytest.mark.ptx
# numba-cuda with its cu13 extra (NVVM) and the nvidia-cuda-nvcc wheel (ptxas):
# the `cuda` extra. numba's own deprecated numba.cuda needs a driver to compile.
pytest.importorskip("numba_cuda", reason="the cuda extra (numba-cuda) is not installed")
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def rows(request):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    r = subprocess.run([sys.executable, os.path.join(HERE, "ptx_report.py")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-6000:]
    out = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    if out and "skip" in out[0]:
        pytest.skip(out[0]["skip"])
    from ptx_report import table
    request.config.needle_ptx_table = table(out)
    return out


def test_every_program_and_arch_assembled(rows):
    got = {(r["program"], r["arch"]) for r in rows}
    from ptx_report import KERNEL_PROGRAMS      # the block kernels (test_cuda_kernels.py)
    assert got == {(p, a) for p in list(PROGRAMS) + list(KERNEL_PROGRAMS)
                   for a in ("sm_80", "sm_90")}


def test_no_float64_in_float32_programs(rows):
    bad = [(r["program"], r["group"], r["arch"], r["f64"]) for r in rows
           if r["program"] in FLOAT32 and r["f64"]]
    assert not bad, bad


def test_the_float64_check_sees_float64(rows):
    assert all(r["f64"] for r in rows if r["program"] == "float64_chain")


def test_no_spills_and_registers_reported(rows):
    for r in rows:
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, r["ptxas"]
        assert 0 < r["registers"] <= 255, r["ptxas"]
