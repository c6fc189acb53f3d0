"""Caching: the per-function compile cache (hits, retracing on new shapes),
the kernel cache in memory (a new batch size reuses compiled kernels) and on
disk (a second process loads every kernel instead of compiling it), the
NEEDLE_LOG_COMPILES explanations and the NEEDLE_DUMP stage files.

Counters are read as deltas of `needle.cache_info()`, since they count the
whole process.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

import needle
import needle.numpy as nnp
from helpers import assert_close

rng = np.random.default_rng(1)


def delta(before):
    after = needle.cache_info()
    return type(after)(*(a - b for a, b in zip(after, before)))


def mlp(x, params):
    h = nnp.maximum(x @ params["w1"] + params["b1"], 0.0)
    return nnp.tanh(h @ params["w2"] + params["b2"]).sum(axis=1)


def mlp_np(x, p):
    h = np.maximum(x @ p["w1"] + p["b1"], 0)
    return np.tanh(h @ p["w2"] + p["b2"]).sum(axis=1)


PARAMS = {"w1": rng.standard_normal((784, 32)).astype(np.float32) * 0.05,
          "b1": rng.standard_normal(32).astype(np.float32),
          "w2": rng.standard_normal((32, 10)).astype(np.float32) * 0.3,
          "b2": rng.standard_normal(10).astype(np.float32)}


def test_new_batch_size_retraces_but_compiles_no_kernel():
    f = needle.jit(mlp)
    x128 = rng.standard_normal((128, 784)).astype(np.float32)
    x64 = rng.standard_normal((64, 784)).astype(np.float32)
    assert_close(f(x128, PARAMS), mlp_np(x128, PARAMS), np.float32)
    n_kernels = f.lower(x128, PARAMS).kernel_count
    assert n_kernels >= 1

    before = needle.cache_info()
    assert_close(f(x64, PARAMS), mlp_np(x64, PARAMS), np.float32)
    d = delta(before)
    assert d.traces == 1, d                       # a new signature: traced again
    assert d.kernels_compiled == 0, d             # ... but not one kernel compiled
    assert d.kernels_loaded == 0, d
    assert d.kernels_reused >= n_kernels, d
    assert f.lower(x64, PARAMS).kernel_count == n_kernels


def test_cached_call_counts_a_hit_and_does_not_trace():
    f = needle.jit(lambda x, y: x * y + 1.0)
    x, y = np.ones((4, 3), np.float32), np.full((4, 3), 2.0, np.float32)
    f(x, y)
    before = needle.cache_info()
    assert_close(f(x, y), x * y + 1)
    assert_close(f(y, x), x * y + 1)
    d = delta(before)
    assert d.hits == 2 and d.traces == 0 and d.kernels_compiled == 0, d


def test_a_new_dtype_or_rank_is_a_new_signature():
    f = needle.jit(lambda x: x * 2)
    before = needle.cache_info()
    f(np.ones(3, np.float32))
    f(np.ones(3, np.float64))
    f(np.ones((3, 1), np.float32))
    f(np.ones(3, np.float32))
    d = delta(before)
    assert d.traces == 3 and d.hits == 1, d


def test_log_compiles_explains_a_changed_shape(config, capsys):
    config.update("log_compiles", True)

    @needle.jit
    def layer(x):
        return nnp.maximum(x, 0.0)

    layer(np.ones((128, 784), np.float32))
    layer(np.ones((64, 784), np.float32))
    layer(np.ones((64, 784), np.float32))            # a hit: nothing printed
    err = capsys.readouterr().err
    assert "compiling layer for the first time" in err
    assert "argument x changed (128, 784) float32 -> (64, 784) float32" in err
    assert err.count("compiling layer") == 2


def test_log_compiles_names_nested_paths(config, capsys):
    config.update("log_compiles", True)
    f = needle.jit(lambda x, params: (x[0] + x[1]) @ params["w"])
    w = np.ones((3, 2), np.float32)
    f((np.ones(3, np.float32), np.ones(3, np.float32)), {"w": w})
    f((np.ones(3, np.float32), np.ones(3, np.float64)), {"w": w})
    f((np.ones(3, np.float32), np.ones(3, np.float64)), {"w": w.astype(np.float64)})
    f((np.ones(3, np.float32), 1.0), {"w": w.astype(np.float64)})
    err = capsys.readouterr().err
    assert "argument x[1] changed (3,) float32 -> (3,) float64" in err
    assert "argument params['w'] changed (3, 2) float32 -> (3, 2) float64" in err
    assert "argument x[1] changed (3,) float64 -> Python float" in err


def test_log_compiles_explains_static_and_structure_changes(config, capsys):
    config.update("log_compiles", True)
    f = needle.jit(lambda x, n: x * n, static_argnums=1)
    f(np.ones(2, np.float32), 2)
    f(np.ones(2, np.float32), 3)
    g = needle.jit(lambda d: sum(d.values()))
    g({"a": np.ones(2, np.float32)})
    g({"a": np.ones(2, np.float32), "b": np.ones(2, np.float32)})
    err = capsys.readouterr().err
    assert "static argument n changed 2 -> 3" in err
    assert "argument structure changed" in err


def test_log_compiles_off_by_default(config, capsys):
    config.update("log_compiles", False)
    needle.jit(lambda x: x + 1.0)(np.ones(2, np.float32))
    assert "compiling" not in capsys.readouterr().err


# --- the disk cache, across processes -----------------------------------------------

CHILD = textwrap.dedent("""
    import json
    import numpy as np
    import needle
    import needle.numpy as nnp

    @needle.jit
    def f(x, w, b):
        h = nnp.tanh(x @ w + b)
        return h.sum(axis=1), nnp.exp(-x) * 2.0

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 256)).astype(np.float32)   # 76800: the parallel variant
    w = rng.standard_normal((256, 8)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    s, e = f(x, w, b)
    ok = (np.allclose(s, np.tanh(x @ w + b).sum(1), rtol=1e-4, atol=1e-4)
          and np.allclose(e, np.exp(-x) * 2, rtol=1e-5))
    info = needle.cache_info()._asdict()
    info.update(ok=bool(ok), kernel_count=f.lower(x, w, b).kernel_count)
    print(json.dumps(info))
""")


def _child(tmp_path, env):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_every_kernel_from_disk(tmp_path):
    env = dict(os.environ, NEEDLE_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("NEEDLE_LOG_COMPILES", None)
    first = _child(tmp_path, env)
    assert first["ok"]
    assert first["kernel_count"] >= 2
    assert first["kernels_compiled"] >= 1 and first["kernels_loaded"] == 0, first
    unique = first["kernels_compiled"]
    # x @ w runs on the small-product kernel (codegen/cpu/gemm.py): compiled
    # and cached like the groups' kernels, one more than kernel_count counts
    assert first["kernels_reused"] == first["kernel_count"] + 1 - unique  # same source twice
    second = _child(tmp_path, env)
    assert second["ok"]
    assert second["kernels_compiled"] == 0, second
    assert second["kernels_loaded"] == unique, second
    assert os.listdir(tmp_path / "cache" / "cpu")


# --- dumps --------------------------------------------------------------------------

def test_needle_dump_writes_one_file_per_stage(tmp_path, config):
    config.update("dump", tmp_path)

    @needle.jit
    def dumped_fn(x, w):
        return nnp.tanh(x @ w) * 2.0

    x, w = np.ones((4, 3), np.float32), np.ones((3, 2), np.float32)
    dumped_fn(x, w)
    lo = dumped_fn.lower(x, w)
    files = sorted(p for p in os.listdir(tmp_path) if p.startswith("dumped_fn."))
    assert len(files) == len(lo.stages)
    for stage, name in zip(lo.stages, files):
        assert name.endswith(f"-{stage}.txt"), (stage, name)
        text = (tmp_path / name).read_text()
        assert text.strip() == lo.as_text(stage).strip()
    assert "tanh" in (tmp_path / files[0]).read_text()
    assert "numba.njit" in (tmp_path / files[-1]).read_text()


def test_prewarm_imports_numba_in_the_background_and_can_be_turned_off():
    """`import needle` starts a thread that imports numba's CPU target
    modules while the script goes on (runtime/prewarm.py); NEEDLE_PREWARM=0
    leaves numba unimported until the first compile. Either way the first
    jitted call works right away (the thread takes no Numba lock)."""
    code = ("import sys, numpy as np, needle\n"
            "from needle.runtime import prewarm\n"
            "prewarm.wait()\n"
            "print('numba.np.arraymath' in sys.modules)\n"
            "print(needle.jit(lambda x: x * 2.0)(np.ones(3, np.float32)).sum())\n")
    for flag, want in (("1", "True"), ("0", "False")):
        env = dict(os.environ, NEEDLE_PREWARM=flag)
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [want, "6.0"], (flag, r.stdout)
