"""The plan cache (runtime/plan_cache.py, used by needle/lowering.py): a
program lowered once has its fused graph on disk beside the kernels, and a
later lowering of the same program (a new jitted function, a new process)
reads it instead of running the passes and fusion.

Checked here: a second process runs no fusion and gives numpy's values; the
stages of a plan hit print as a normal lowering's; a plan holding folded
constants is not used for other constant values; damaged, foreign and stale
files are deleted (and a plan naming a class never runs it); programs the
format cannot hold (a callback) are lowered normally; NEEDLE_PLAN_CACHE=0
turns it off. References are numpy float64 formulas.
"""
import glob
import hashlib
import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle import lowering
from needle.ir.core import PRIMITIVES, ClosedGraph, Eqn, Graph, Lit, ShapedArray, Var
from needle.runtime import kernel_cache, plan_cache

rng = np.random.default_rng(3)
W = rng.standard_normal((5, 4)).astype(np.float32) * 0.5
X = rng.standard_normal((6, 5)).astype(np.float32)


def loss(w, x):
    return nnp.sum(nnp.tanh(x @ w) ** 2)


def step(w, x):
    """One SGD step on loss."""
    return w - 0.1 * needle.grad(loss)(w, x)


def step_np(w, x):
    w, x = w.astype(np.float64), x.astype(np.float64)
    t = np.tanh(x @ w)
    return w - 0.1 * (x.T @ (2 * t * (1 - t * t)))


@pytest.fixture
def cache(config, tmp_path, monkeypatch):
    """A fresh cache root, plan cache on, and a count of fusion passes."""
    config.update("cache_dir", str(tmp_path))
    config.update("plan_cache", True)
    calls = []
    fuse = lowering.fuse
    monkeypatch.setattr(lowering, "fuse", lambda cg, b: calls.append(1) or fuse(cg, b))
    return calls


def plans():
    return glob.glob(os.path.join(kernel_cache.kernel_folder("cpu"), "__pycache__", "plan_*.pkl"))


def test_a_new_jitted_function_reads_the_plan_and_runs_no_fusion(cache):
    np.testing.assert_allclose(needle.jit(step)(W, X), step_np(W, X), rtol=1e-5, atol=1e-6)
    assert len(cache) == 1 and len(plans()) == 1
    hits = plan_cache.stats["hits"]
    np.testing.assert_allclose(needle.jit(step)(W, X), step_np(W, X), rtol=1e-5, atol=1e-6)
    assert len(cache) == 1                          # no second fusion
    assert plan_cache.stats["hits"] == hits + 1


def test_stages_of_a_plan_hit_print_as_a_normal_lowering(cache):
    normal = needle.jit(step).lower(W, X)
    hit = needle.jit(step).lower(W, X)
    assert len(cache) == 1
    assert hit.stages == normal.stages
    assert hit.as_text("fused") == normal.as_text("fused")
    assert hit.as_text("kernels") == normal.as_text("kernels")
    for stage in normal.stages[1:normal.stages.index("fused")]:   # lowered on demand
        assert hit.as_text(stage) == normal.as_text(stage), stage
    assert len(cache) == 1                          # ... by the passes alone
    assert hit.as_dot("cse") == normal.as_dot("cse")


def test_dump_writes_every_stage_of_a_plan_hit(cache, config, tmp_path):
    normal = needle.jit(step).lower(W, X)
    config.update("dump", str(tmp_path / "dump"))
    needle.jit(step).lower(W, X)                    # a hit: its stages dumped all the same
    assert len(cache) == 1
    files = sorted(os.listdir(tmp_path / "dump"))
    assert [f.split("-", 1)[1][:-4] for f in files] == normal.stages
    for f in files:
        stage = f.split("-", 1)[1][:-4]
        with open(tmp_path / "dump" / f) as fh:
            assert fh.read() == normal.as_text(stage) + "\n", stage


def folding(c):
    """The traced program x * exp(c) + 1 with `c` captured: exp(c) folds
    into a new constant (built as IR: the tracer computes numpy values
    eagerly, so captured arrays reach fold only through transformations)."""
    a, x = Var(ShapedArray(c.shape, c.dtype)), Var(ShapedArray(c.shape, c.dtype))
    e, m, y = (Var(ShapedArray(c.shape, c.dtype)) for _ in range(3))
    eqns = [Eqn(PRIMITIVES["exp"], [a], {}, [e]), Eqn(PRIMITIVES["mul"], [x, e], {}, [m]),
            Eqn(PRIMITIVES["add"], [m, Lit(np.float32(1.0))], {}, [y])]
    return ClosedGraph(Graph([a], [x], eqns, [y]), [c])


def test_folded_constants_are_used_only_for_the_same_values(cache):
    c1, c2, x = (rng.standard_normal(4).astype(np.float32) for _ in range(3))
    want = lambda c: x.astype(np.float64) * np.exp(c.astype(np.float64)) + 1.0  # noqa: E731
    graphs, exe = lowering.lower(folding(c1))
    assert len(graphs["fused"].constvars) == 1 and len(graphs["folded"].eqns) == 2
    np.testing.assert_allclose(exe(x)[0], want(c1), rtol=1e-5)
    hits = plan_cache.stats["hits"]
    np.testing.assert_allclose(lowering.lower(folding(c2))[1](x)[0], want(c2), rtol=1e-5)
    assert plan_cache.stats["hits"] == hits and len(cache) == 2     # not c1's plan
    np.testing.assert_allclose(lowering.lower(folding(c2.copy()))[1](x)[0], want(c2), rtol=1e-5)
    assert plan_cache.stats["hits"] == hits + 1 and len(cache) == 2


def _lower_twice_after(damage, cache, capsys, config):
    """Lower `step`, damage its plan file with `damage(path, data)`, lower
    again: (the second result, stderr)."""
    needle.jit(step)(W, X)
    (path,) = plans()
    with open(path, "rb") as f:
        data = f.read()
    damage(path, data)
    config.update("log_compiles", True)
    capsys.readouterr()
    out = needle.jit(step)(W, X)
    return out, capsys.readouterr().err


def _sealed(body):
    return plan_cache.MAGIC + hashlib.sha256(body).digest() + body


@pytest.mark.parametrize("damage, why", [
    (lambda p, d: open(p, "wb").write(d[:-7] + b"garbage"), "damaged"),
    (lambda p, d: open(p, "wb").write(_sealed(b"not a pickle")), "unusable"),
    (lambda p, d: open(p, "wb").write(_sealed(pickle.dumps(("0" * 32, None, [], ())))),
     "holds the plan of key"),
], ids=["checksum", "body", "other-key"])
def test_a_bad_plan_is_deleted_and_the_program_lowered(cache, capsys, config, damage, why):
    out, err = _lower_twice_after(damage, cache, capsys, config)
    np.testing.assert_allclose(out, step_np(W, X), rtol=1e-5, atol=1e-6)
    assert why in err and "deleted it" in err, err
    assert len(cache) == 2                          # lowered again, and stored again
    (path,) = plans()
    with open(path, "rb") as f:
        assert f.read()[len(plan_cache.MAGIC) + 32:][-7:] != b"garbage"


class _Mkdir:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_a_plan_naming_a_class_is_never_run(cache, capsys, config, tmp_path):
    marker = str(tmp_path / "ran")

    def plant(path, data):
        key = os.path.basename(path)[5:-4]
        with open(path, "wb") as f:
            f.write(_sealed(pickle.dumps((key, None, [], _Mkdir(marker)))))
    out, err = _lower_twice_after(plant, cache, capsys, config)
    assert not os.path.exists(marker)
    assert "plain data only" in err, err
    np.testing.assert_allclose(out, step_np(W, X), rtol=1e-5, atol=1e-6)


def test_a_program_with_a_callback_is_lowered_and_not_stored(cache):
    def f(x):
        y = needle.pure_callback(lambda a: np.sin(a), needle.ShapeDtypeStruct((4,), np.float32), x)
        return y * 2.0
    x = rng.standard_normal(4).astype(np.float32)
    for _ in range(2):
        np.testing.assert_allclose(needle.jit(f)(x), 2 * np.sin(x.astype(np.float64)), rtol=1e-5)
    assert plans() == [] and len(cache) == 2


def test_plan_cache_off(cache, config):
    config.update("plan_cache", False)
    for _ in range(2):
        np.testing.assert_allclose(needle.jit(step)(W, X), step_np(W, X), rtol=1e-5, atol=1e-6)
    assert plans() == [] and len(cache) == 2


def twice(x):
    return x * 2.0 + 1.0


def test_the_key_names_the_program_the_backend_and_the_settings():
    a = needle.jit(twice).trace(X)
    k = plan_cache.key(a, "cpu", "f", (1,), "v")
    assert k == plan_cache.key(needle.jit(twice).trace(X), "cpu", "f", (1,), "v")
    others = [plan_cache.key(needle.jit(lambda x: x * 3.0 + 1.0).trace(X), "cpu", "f", (1,), "v"),
              plan_cache.key(needle.jit(twice).trace(X[:3]), "cpu", "f", (1,), "v"),
              plan_cache.key(a, "cuda", "f", (1,), "v"), plan_cache.key(a, "cpu", "g", (1,), "v"),
              plan_cache.key(a, "cpu", "f", (2,), "v"), plan_cache.key(a, "cpu", "f", (1,), "w")]
    assert k not in others and len(set(others)) == len(others)


def test_a_simplify_rule_switched_in_process_changes_the_key(cache, monkeypatch):
    # benchmarks (bench_layout, bench_pad_concat) lower a program with a rule
    # taken out of simplify's table: that lowering must not reuse the plan
    from needle.passes.simplify import RULES
    from needle.passes.pad_concat import pads_to_concatenate
    from needle.codegen import backend_for
    cg = needle.jit(twice).trace(X)
    before = lowering._plan_key(cg, backend_for("cpu"), "f")
    monkeypatch.setitem(RULES, "add", [r for r in RULES["add"] if r is not pads_to_concatenate])
    assert lowering._plan_key(cg, backend_for("cpu"), "f") != before
    monkeypatch.undo()
    assert lowering._plan_key(cg, backend_for("cpu"), "f") == before


WARM = textwrap.dedent("""
    import json, sys
    import numpy as np
    import needle, needle.numpy as nnp
    from needle import lowering
    from needle.runtime import plan_cache
    calls = []
    fuse = lowering.fuse
    lowering.fuse = lambda cg, b: calls.append(1) or fuse(cg, b)

    def f(w, xs):
        def body(h, x):
            h = nnp.tanh(h @ w + x)
            return h, nnp.sum(h)
        h, ys = needle.lax.scan(body, nnp.zeros(4, np.float32), xs)
        g = needle.grad(lambda w: nnp.sum(nnp.tanh(xs @ w) ** 2))(w)
        return h, ys, g

    w = (np.arange(16, dtype=np.float32).reshape(4, 4) - 8) / 16
    xs = (np.arange(12, dtype=np.float32).reshape(3, 4) - 6) / 6
    h, ys, g = needle.jit(f)(w, xs)
    print(json.dumps(dict(fusions=len(calls), hits=plan_cache.stats["hits"],
                          loaded=needle.cache_info().kernels_loaded,
                          h=np.asarray(h).tolist(), ys=np.asarray(ys).tolist(),
                          g=np.asarray(g).tolist())))
""")


def test_a_warm_process_runs_no_fusion(tmp_path):
    env = dict(os.environ, NEEDLE_CACHE_DIR=str(tmp_path), NEEDLE_COMPILE_WORKERS="1",
               NEEDLE_PLAN_CACHE="1")
    runs = [json.loads(subprocess.run([sys.executable, "-c", WARM], env=env, check=True,
                                      capture_output=True, text=True).stdout.splitlines()[-1])
            for _ in range(2)]
    assert runs[0]["fusions"] >= 1 and runs[0]["hits"] == 0
    assert runs[1]["fusions"] == 0 and runs[1]["hits"] == 1 and runs[1]["loaded"] >= 1
    w = (np.arange(16).reshape(4, 4) - 8) / 16
    xs = (np.arange(12).reshape(3, 4) - 6) / 6
    h, ys = np.zeros(4), []
    for x in xs:
        h = np.tanh(h @ w + x)
        ys.append(h.sum())
    t = np.tanh(xs @ w)
    g = xs.T @ (2 * t * (1 - t * t))
    for r in runs:
        np.testing.assert_allclose(r["h"], h, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r["ys"], ys, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r["g"], g, rtol=1e-5, atol=1e-6)
