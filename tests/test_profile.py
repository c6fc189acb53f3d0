"""`Jitted.profile` (runtime/profile.py): each step of the compiled program
timed over a few calls. Checked: one row per step of the fused graph, with
its kind (kernel, library call, loop, view), name and shapes; the calls are
real calls (a module's state advances as the course's BatchNorm formula
says); the program's own runner is back afterwards and its values are
numpy's; bad arguments raise.
"""
import numpy as np
import pytest

import needle
import needle.nn as nn
import needle.numpy as nnp
from needle import lax

from helpers import DEVICE

rng = np.random.default_rng(2)
X = rng.standard_normal((8, 5)).astype(np.float32)
W = rng.standard_normal((5, 4)).astype(np.float32)


def f(x, w):
    h = nnp.tanh(x @ w)
    c, ys = lax.scan(lambda c, r: (c + r, c * r), nnp.zeros(4, np.float32), h)
    return nnp.reshape(ys, (-1,)) * 2.0, c


def test_one_row_per_step_with_kind_name_and_shapes():
    jf = needle.jit(f)
    p = jf.profile(X, W, repeats=3)
    fused = jf.lower(X, W).executable.fused.graph
    assert len(p.rows) == len(fused.eqns) and p.calls == 3
    kinds = [r.kind for r in p.rows]
    assert {"library", "kernel", "loop"} <= set(kinds)
    lib = p.rows[kinds.index("library")]
    assert lib.name == "dot_general" and lib.ins == ["8x5", "5x4"] and lib.outs == ["8x4"]
    assert all(r.seconds >= 0 for r in p.rows) and p.total > 0 and p.wall > 0
    assert abs(sum(p.by_kind().values()) - p.total) < 1e-12
    text = str(p)
    assert "dot_general" in text and "scan" in text and "8x5 5x4 -> 8x4" in text


def test_the_program_runs_as_before_afterwards():
    jf = needle.jit(f)
    jf(X, W)
    exe = jf.lower(X, W).executable
    runner = exe._run_steps
    jf.profile(X, W, repeats=2)
    assert exe._run_steps is runner
    ys, c = jf(X, W)
    h = np.tanh(X.astype(np.float64) @ W)
    cn, yn = np.zeros(4), []
    for r in h:
        yn.append(cn * r)
        cn = cn + r
    np.testing.assert_allclose(ys, np.concatenate(yn) * 2.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, cn, rtol=1e-5)


def test_profiled_calls_are_calls_state_advances():
    bn = nn.BatchNorm1d(5, momentum=0.1)
    step = needle.jit(lambda m, x: m(x))
    x = X * 3.0 + 1.0
    step.profile(bn, x, repeats=3, warmup=1)
    mean = np.zeros(5)
    for _ in range(4):                  # warmup + repeats, the course's update
        mean = 0.9 * mean + 0.1 * x.astype(np.float64).mean(0)
    np.testing.assert_allclose(np.asarray(bn.running_mean.numpy()), mean, rtol=1e-5)


def test_repeats_must_be_positive():
    with pytest.raises(ValueError, match="repeats"):
        needle.jit(f).profile(X, W, repeats=0)


@pytest.mark.on_device
def test_profile_on_the_test_device():
    # on CUDA each step is timed between synchronizes
    jf = needle.jit(f, device=DEVICE)
    p = jf.profile(X, W, repeats=2)
    assert len(p.rows) == len(jf.lower(X, W).executable.fused.graph.eqns)
    assert {r.kind for r in p.rows} >= {"kernel", "loop"}
    ys, c = needle.tree_util.tree_map(np.asarray, jf(X, W))
    np.testing.assert_allclose(c, np.tanh(X.astype(np.float64) @ W).sum(0), rtol=1e-5)
