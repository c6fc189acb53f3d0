"""The CUDA backend's input handling and inspection without a device:
read-only and byte-swapped host arrays go to the device with numpy's values
(in the simulator), and `jit(f, device="cuda").lower(...)` prints kernels,
PTX and ptxas's report in a process with neither a GPU nor the simulator;
only calling needs a device.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import needle
import needle.numpy as nnp


@pytest.mark.parametrize("kind", ["read-only", "big-endian"])
def test_device_put_and_jit_accept_read_only_and_byte_swapped_arrays(kind):
    x = np.arange(12, dtype=np.float32)
    host = np.frombuffer(x.tobytes(), np.float32) if kind == "read-only" else x.astype(">f4")
    d = needle.device_put(host, "cuda")
    assert d.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(d), x)
    f = needle.jit(lambda a: a * 2.0 + 1.0, device="cuda")
    np.testing.assert_array_equal(np.asarray(f(host)), x * 2 + 1)
    np.testing.assert_allclose(np.asarray(nnp.sin(d)), np.sin(x), rtol=1e-6)


CHILD = textwrap.dedent("""
    import json
    import numpy as np
    from numba import cuda
    import needle, needle.numpy as nnp
    f = needle.jit(lambda a: nnp.tanh(a) * 2.0 + 1.0, device="cuda")
    lo = f.lower(np.ones(1000, np.float32))
    out = {"device": lo.device, "gpu": cuda.is_available(),
           "kernels": lo.as_text("kernels"), "ptx": lo.as_text("ptx"),
           "report": [{k: v for k, v in r.items() if k != "ptxas"}
                      for r in lo.resource_report((9, 0))]}
    try:
        f(np.ones(1000, np.float32))
        out["call"] = "ran"
    except RuntimeError as e:
        out["call"] = str(e)
    print(json.dumps(out))
""")


@pytest.mark.ptx
def test_lower_for_cuda_needs_no_device():
    pytest.importorskip("numba_cuda")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    r = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["device"] == "cuda"
    assert out["kernels"].startswith("# ---- kernel") and "needle CUDA kernel" in out["kernels"]
    assert ".target sm_90" in out["ptx"]
    assert out["report"] and all(0 < row["registers"] <= 255 for row in out["report"])
    if not out["gpu"]:
        assert "no CUDA GPU is available" in out["call"]
