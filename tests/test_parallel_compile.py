"""Compiling a program's missing kernels in worker processes
(runtime/compile_workers.py, NEEDLE_COMPILE_WORKERS): numpy's values, the
kernels left in the disk cache for a second process to load without
compiling, the same KernelCompileError as an in-process compile, a dead
worker falling back to in-process with a warning naming its kernel, a hung
one (at start-up or on a kernel) killed after NEEDLE_COMPILE_TIMEOUT with
the same fallback, and workers off giving the same result.

Each program runs in a fresh process with a fresh cache folder (a kernel
already loaded in the test process would not count as missing). The child
starts its worker before the call (`MODE` "warm"), so that the worker,
ready at once, takes jobs while the parent compiles the others.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

CHILD = textwrap.dedent("""
    import dataclasses, json, re, sys, types, warnings
    import numpy as np
    import needle
    import needle.numpy as nnp
    from needle.runtime import compile_workers, kernel_cache
    from needle.codegen.cpu.backend import BACKEND

    MODE = sys.argv[1]
    answers = []
    compile_one = compile_workers.Worker.compile

    sent = []

    def recording(self, job, *args):
        sent.append(job[0])
        if MODE == "kill":              # the worker dies before it answers
            self.proc.kill()
            self.proc.wait()
        r = compile_one(self, job, *args)
        answers.append([job, r])
        return r
    compile_workers.Worker.compile = recording

    if MODE == "hang":                  # a worker that hangs on its first kernel
        compile_workers.WORKER_CODE = compile_workers.WORKER_CODE.replace(
            "from needle.runtime.compile_workers import worker_main; worker_main()",
            "import time; from needle.runtime import kernel_cache; "
            "kernel_cache.compile_into = lambda *a: time.sleep(600); "
            "from needle.runtime.compile_workers import worker_main; worker_main()")
    if MODE == "hang_start":            # a worker that never gets ready
        compile_workers.WORKER_CODE = "import time; time.sleep(600)"

    if MODE == "broken":                # every kernel fails Numba's typing
        emit = BACKEND.emit

        def broken(sub, name="kernel"):
            ks = emit(sub, name)
            src = re.sub(r"(\\ndef kernel\\(.*\\n)", r"\\1    needle_test_undefined_name()\\n",
                         ks.source, count=1)
            return dataclasses.replace(ks, source=src)
        BACKEND.emit = broken
        in_process = kernel_cache.import_kernel_module

        def slow(*args, **kw):          # broken kernels fail fast: give the worker time
            import time                 # to take some (the sleep releases the GIL)
            time.sleep(0.3)
            return in_process(*args, **kw)
        kernel_cache.import_kernel_module = slow

    if compile_workers.worker_count() > 1 and MODE != "hang_start":
        compile_workers._take_workers(1)[0].wait_ready()

    @needle.jit
    def f(x, w, b):
        h = nnp.tanh(x @ w + b)
        s = nnp.exp(-h).sum(axis=1)
        m = (h * 3.0).max(axis=0)
        return s, m, nnp.sin(x) * 2.0 + 1.0, nnp.sqrt(nnp.abs(w)) - 0.5

    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = f(x, w, b)
            out["results"] = [np.asarray(r, np.float64).tolist() for r in res]
            out["kernels"] = re.findall(r"nk_([0-9a-f]+)\\.py", f.lower(x, w, b).as_text("kernels"))
        except needle.KernelCompileError as e:
            out["error"] = str(e)
            # the same kernel compiled in this process: the message to match
            failed = [j for j, r in answers if r[0] == "compile_error"]
            key, name, source, folder, ctx = failed[0] if failed else [None] * 5
            try:
                failed and kernel_cache.import_kernel_module(
                    types.SimpleNamespace(key=key, name=name, source=source), "cpu", ctx)
            except needle.KernelCompileError as e:
                out["in_process"] = str(e)
    out["warnings"] = [str(c.message) for c in caught]
    out["info"] = needle.cache_info()._asdict()
    out["workers"] = len(compile_workers._workers)
    out["answers"] = [[j[0], r[0], r[1]] for j, r in answers]
    out["sent"] = sent
    # the kernels a worker compiled: this process loaded their machine code from the cache
    out["hits"] = {j[0]: sum(kernel_cache._loaded[j[0]].stats.cache_hits.values())
                   for j, r in answers if r[0] == "ok"}
    print("RESULT " + json.dumps(out))
""")


def _run(tmp_path, mode, workers, cache="cache", **env_vars):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, NEEDLE_CACHE_DIR=str(tmp_path / cache),
               NEEDLE_COMPILE_WORKERS=str(workers), **env_vars)
    env.pop("NEEDLE_LOG_COMPILES", None)
    r = subprocess.run([sys.executable, str(script), mode], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[7:])


def _numpy(x, w, b):
    x, w, b = (a.astype(np.float64) for a in (x, w, b))
    h = np.tanh(x @ w + b)
    return [np.exp(-h).sum(axis=1), (h * 3.0).max(axis=0), np.sin(x) * 2.0 + 1.0,
            np.sqrt(np.abs(w)) - 0.5]


def _inputs():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((6, 5)).astype(np.float32),
            rng.standard_normal((5, 4)).astype(np.float32),
            rng.standard_normal(4).astype(np.float32))


def _check_values(out):
    for got, want in zip(out["results"], _numpy(*_inputs()), strict=True):
        np.testing.assert_allclose(np.array(got), want, rtol=1e-4, atol=1e-5)


def test_workers_compile_into_the_cache_and_a_second_process_loads(tmp_path):
    first = _run(tmp_path, "warm", 2)
    _check_values(first)
    kernels = set(first["kernels"])
    assert len(kernels) >= 3, first
    by_workers = {key for key, kind, _ in first["answers"] if kind == "ok"}
    assert by_workers and by_workers <= kernels, first     # a worker compiled some of them
    assert all(first["hits"][k] >= 1 for k in by_workers), first   # ... loaded, not recompiled
    assert first["workers"] == 1
    info = first["info"]                # the workers' kernels count as compiled, not loaded
    assert info["kernels_compiled"] == len(kernels) and info["kernels_loaded"] == 0, info
    d = tmp_path / "cache" / "cpu"
    for key in kernels:                 # every kernel left in the cache, sealed
        assert (d / f"nk_{key}.py").is_file()
        assert (d / "__pycache__" / f"nk_{key}.sha256").read_text().strip()
        assert list((d / "__pycache__").glob(f"nk_{key}.*.nbi"))
    second = _run(tmp_path, "warm", 2)
    _check_values(second)
    assert second["answers"] == []                  # nothing to compile: no job sent
    assert second["info"]["kernels_compiled"] == 0, second
    assert second["info"]["kernels_loaded"] == len(kernels), second


def test_workers_off_give_the_same_result(tmp_path):
    on = _run(tmp_path, "warm", 2, cache="on")
    off = _run(tmp_path, "warm", 1, cache="off")
    assert off["workers"] == 0 and off["answers"] == []
    assert on["results"] == off["results"]          # bit for bit
    assert on["kernels"] == off["kernels"]          # the same sources
    assert on["info"]["kernels_compiled"] == off["info"]["kernels_compiled"]


def test_compile_error_in_a_worker_raises_kernel_compile_error(tmp_path):
    out = _run(tmp_path, "broken", 2)
    assert any(kind == "compile_error" for _, kind, _ in out["answers"]), out
    msg = out["error"]
    assert msg.startswith("Numba failed to compile the kernel for kernel (group "), msg
    assert "child.py" in msg and "needle_test_undefined_name" in msg, msg
    # a worker's message is the one an in-process compile of that kernel gives
    text = next(t for _, kind, t in out["answers"] if kind == "compile_error")
    assert text == out["in_process"]
    off = _run(tmp_path, "broken", 1, cache="off")      # workers off: the same error
    assert off["answers"] == [] and off["error"].replace(str(tmp_path / "off"), "<c>") == \
        msg.replace(str(tmp_path / "cache"), "<c>"), off


def test_a_dead_worker_falls_back_in_process_with_a_warning(tmp_path):
    out = _run(tmp_path, "kill", 2)
    _check_values(out)
    (w,) = [w for w in out["warnings"] if "compile worker" in w]     # one warning
    (job,) = out["sent"]                # ... naming the kernel the worker had
    assert f"died (exit code -9) while compiling kernel nk_{job} (group " in w, w
    assert out["info"]["kernels_compiled"] == len(set(out["kernels"])), out


@pytest.mark.parametrize("mode", ["hang", "hang_start"])
def test_a_hung_worker_is_killed_after_the_timeout_and_its_kernel_compiled_here(tmp_path,
                                                                               mode):
    out = _run(tmp_path, mode, 2, NEEDLE_COMPILE_TIMEOUT="2")
    _check_values(out)
    (w,) = [w for w in out["warnings"] if "compile worker" in w]     # one warning
    assert "timed out after 2 s" in w and "NEEDLE_COMPILE_TIMEOUT" in w, w
    if mode == "hang":                  # it names the kernel the worker had
        (job,) = out["sent"]
        assert f"while compiling kernel nk_{job} (group " in w and "child.py" in w, w
        assert job in out["kernels"]
    else:
        assert "while starting" in w and out["sent"] == [], out
    assert out["info"]["kernels_compiled"] == len(set(out["kernels"])), out

