"""needle.config (ir/config.py): every NEEDLE_* variable read once, in one
module, documented in one table, settable from Python as `jax.config`.

- the environment as `import needle` reads it (a Config of a mapping):
  defaults, parsing, a clear error naming a variable that does not parse;
- `update`: unknown names list the known ones, values are checked, an
  import-only option says so, and each update takes effect (debug_nans as
  needle.debug_nans, the pool's budget at once, the trace cache's cap and
  NEEDLE_CHECKS at the next compile);
- the README table lists exactly the options, and no stage reads a NEEDLE_*
  variable outside ir/config.py;
- `import needle` changes nothing outside needle but what the README says.
"""
import ast
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle.ir.check import GraphError
from needle.ir.config import OPTIONS, Config
from needle.ir.core import ClosedGraph, Graph
from needle.passes import pipeline
from needle.runtime import memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
F32 = np.float32


# --- the environment, read once ------------------------------------------------------

def test_defaults_from_an_empty_environment():
    c = Config({"XDG_CACHE_HOME": "/xdg"})
    assert c.values() == {
        "cache_dir": "/xdg/needle", "log_compiles": False, "plan_cache": True, "dump": None,
        "checks": False,
        "debug_nans": False, "trace_cache_size": 64, "pool_bytes": None,
        "parallel_min_size": 65536, "num_threads": None, "compile_workers": None,
        "compile_timeout": 600.0, "cuda_cc": None, "prewarm": True}


def test_values_parsed_from_the_environment():
    c = Config({"NEEDLE_CACHE_DIR": "/c", "NEEDLE_LOG_COMPILES": "yes", "NEEDLE_DUMP": "/d",
                "NEEDLE_CHECKS": "1", "NEEDLE_DEBUG_NANS": "True",
                "NEEDLE_TRACE_CACHE_SIZE": "5", "NEEDLE_POOL_BYTES": "5e6",
                "NEEDLE_PARALLEL_MIN_SIZE": "1024", "NEEDLE_CUDA_CC": "sm_80",
                "NEEDLE_COMPILE_WORKERS": "0", "NEEDLE_PREWARM": "0",
                "NEEDLE_COMPILE_TIMEOUT": "2.5", "NEEDLE_PLAN_CACHE": "0"})
    assert c.values() == {
        "cache_dir": "/c", "log_compiles": True, "plan_cache": False, "dump": "/d", "checks": True,
        "debug_nans": True, "trace_cache_size": 5, "pool_bytes": 5_000_000,
        "parallel_min_size": 1024, "num_threads": None, "compile_workers": 0,
        "compile_timeout": 2.5, "cuda_cc": (8, 0), "prewarm": False}
    for text, cc in (("8.6", (8, 6)), ("90", (9, 0)), ("sm_120", (12, 0))):
        assert Config({"NEEDLE_CUDA_CC": text}).cuda_cc == cc
    # an empty variable counts as unset; "0" and "off" are off
    assert Config({"NEEDLE_PREWARM": ""}).prewarm is True
    assert Config({"NEEDLE_LOG_COMPILES": "off"}).log_compiles is False
    assert Config({"NEEDLE_LOG_COMPILES": "0"}).log_compiles is False


@pytest.mark.parametrize("env, value", [("NEEDLE_TRACE_CACHE_SIZE", "many"),
                                        ("NEEDLE_TRACE_CACHE_SIZE", "0"),
                                        ("NEEDLE_CHECKS", "maybe"),
                                        ("NEEDLE_POOL_BYTES", "1.5"),
                                        ("NEEDLE_CUDA_CC", "x"),
                                        ("NEEDLE_COMPILE_WORKERS", "-1")])
def test_a_value_that_does_not_parse_names_the_variable(env, value):
    with pytest.raises(ValueError, match=f"needle config: {env}={value!r}"):
        Config({env: value})


# --- update ----------------------------------------------------------------------------

def test_unknown_names_list_the_known_ones(config):
    with pytest.raises(AttributeError, match=r"no option 'debug_nan'; known: cache_dir, "
                                             r"log_compiles, .*debug_nans"):
        config.update("debug_nan", True)
    with pytest.raises(AttributeError, match="known: cache_dir"):
        config.cache_folder
    with pytest.raises(AttributeError, match=r"read-only: use needle.config.update"):
        config.checks = True


def test_update_checks_values(config):
    with pytest.raises(ValueError, match="trace_cache_size=0"):
        config.update("trace_cache_size", 0)
    with pytest.raises(ValueError, match="log_compiles='maybe'"):
        config.update("log_compiles", "maybe")
    with pytest.raises(ValueError, match=r"import needle` only: set NEEDLE_PREWARM"):
        config.update("prewarm", False)
    config.update("cuda_cc", "8.0")
    assert config.cuda_cc == (8, 0)
    config.update("cache_dir", "/elsewhere")
    assert needle.runtime.cache_dir() == "/elsewhere"
    config.update("cache_dir", None)             # the default, as with the variable unset
    assert config.cache_dir == Config({k: v for k, v in os.environ.items()
                                       if k != "NEEDLE_CACHE_DIR"}).cache_dir


def test_override_restores(config):
    before = config.log_compiles
    with config.override(log_compiles=not before, trace_cache_size=7):
        assert config.log_compiles is (not before) and config.trace_cache_size == 7
    assert config.log_compiles is before and config.trace_cache_size != 7


def test_debug_nans_option_is_needle_debug_nans(config):
    f = needle.jit(lambda x: nnp.sqrt(x) + 1.0)
    x = np.array([1.0, -1.0], F32)
    assert np.isnan(f(x)[1])                     # off: a NaN is just returned
    config.update("debug_nans", True)
    with pytest.raises(FloatingPointError, match="sqrt made a NaN"):
        f(x)
    config.update("debug_nans", False)
    assert np.isnan(f(x)[1])
    with needle.debug_nans(True):
        assert config.debug_nans is True
        with pytest.raises(FloatingPointError):
            f(x)
    assert config.debug_nans is False
    needle.debug_nans(True)
    assert config.debug_nans is True
    needle.debug_nans(False)
    assert config.debug_nans is False and np.isnan(f(x)[1])


def test_pool_bytes_applies_at_once(config):
    default = memory.pool_bytes()[1]
    config.update("pool_bytes", 3 * memory.MIN_BYTES)
    assert memory.pool_bytes()[1] == needle.cache_info().pool_budget == 3 * memory.MIN_BYTES
    config.update("pool_bytes", None)
    assert memory.pool_bytes()[1] == default


def test_trace_cache_size_applies_to_existing_functions(config):
    f = needle.jit(lambda x: x + 1)
    for n in range(1, 6):
        f(np.ones(n, F32))
    assert f._entries == 5
    config.update("trace_cache_size", 2)
    f(np.ones(6, F32))
    assert f._entries == 2


def _scramble(cg):
    """A broken pass: equations in reverse order (each used before defined)."""
    g = cg.graph
    return ClosedGraph(Graph(g.constvars, g.invars, g.eqns[::-1], g.outvars), cg.consts)


def test_checks_run_check_graph_after_every_pass(config):
    config.update("checks", True)
    pipeline.PIPELINE.append(("scrambled", _scramble))
    try:
        with pytest.raises(GraphError, match="before it is defined"):
            needle.jit(lambda x: nnp.exp(x * 2.0) + 1.0)(np.ones(3, F32))
    finally:
        pipeline.PIPELINE.remove(("scrambled", _scramble))


# --- one table, one module ----------------------------------------------------------------

def _readme_table():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text[text.index("### Environment variables"):]
    section = section[:section.index("\n### ", 1)]
    rows = [line for line in section.splitlines() if line.startswith("| `NEEDLE_")]
    return [(re.match(r"\| `(NEEDLE_\w+)", r).group(1),
             re.match(r"\| [^|]+\| `(\w+)`", r).group(1)) for r in rows]


def test_readme_table_lists_every_option():
    assert _readme_table() == [(o.env, o.name) for o in OPTIONS]


# Stage files that still read a NEEDLE_* variable themselves, to move to
# config (the test fails once one no longer does, so the list shrinks).
PENDING_READS = set()


def _needle_variable_names(path):
    """Lines of file `path` holding a NEEDLE_* name as a string (not prose)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and re.fullmatch(r"NEEDLE_[A-Z0-9_]+", n.value)]


def test_only_ir_config_reads_needle_variables():
    found = {}
    for folder in ("needle", "tracer", "ir", "passes", "codegen", "runtime"):
        for d, subdirs, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(d, name), ROOT).replace(os.sep, "/")
                    lines = _needle_variable_names(os.path.join(d, name))
                    if lines and rel != "ir/config.py":
                        found[rel] = lines
    unexpected = {k: v for k, v in found.items() if k not in PENDING_READS}
    assert not unexpected, f"NEEDLE_* read outside ir/config.py: {unexpected}"
    gone = PENDING_READS - set(found)
    assert not gone, f"no longer read there: delete from PENDING_READS: {gone}"


# --- import needle --------------------------------------------------------------------------

SIDE_EFFECTS = textwrap.dedent("""
    import json, os, sys, threading, warnings
    import numpy as np
    env, path, filters = dict(os.environ), list(sys.path), list(warnings.filters)
    err = np.geterr()
    import needle
    from needle.runtime import prewarm
    prewarm.wait()
    out = {"env": sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)),
           "path": sys.path == path, "filters": warnings.filters == filters,
           "err": np.geterr() == err,
           "threads": sorted(t.name for t in threading.enumerate()
                             if t is not threading.main_thread() and t.is_alive()),
           "numba": "numba" in sys.modules}
    x = np.ones(1 << 17, np.float32)                 # large: split across kernel threads
    assert (needle.jit(lambda x: x * 2.0 + 1.0)(x) == 3).all()
    out["omp_after_parallel"] = os.environ.get("OMP_WAIT_POLICY")
    print(json.dumps(out))
""")


@pytest.mark.parametrize("prewarm", ["0", "1"])
def test_import_needle_changes_nothing_undocumented(prewarm):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY",
                                                            "NUMBA_CPU_FEATURES")}
    env["NEEDLE_PREWARM"] = prewarm
    r = subprocess.run([sys.executable, "-c", SIDE_EFFECTS], env=env, capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # the prewarm thread sets NUMBA_CPU_FEATURES on an AVX-512 host (README)
    assert set(out["env"]) <= ({"NUMBA_CPU_FEATURES"} if prewarm == "1" else set()), out
    assert out["path"] and out["filters"] and out["err"], out
    assert out["threads"] == [], out                 # the prewarm thread has finished
    assert out["numba"] is (prewarm == "1")
    assert out["omp_after_parallel"] is None         # needle runs no OpenMP: sets nothing
