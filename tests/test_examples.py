"""The examples and benchmark scripts run: the MLP example's training logic
on a subset of the digits (skipped without scikit-learn), and the benchmark
scripts' --small smoke runs in a subprocess, with JAX and PyTorch hidden so
the peer-less path is the one exercised (it is the path of a plain
`pip install -e ".[test]"`)."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(relpath, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, relpath))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mlp_example_trains_on_a_subset():
    pytest.importorskip("sklearn")
    mlp = _load("examples/mlp.py", "needle_example_mlp")
    out = mlp.main(epochs=2, limit=300, verbose=False)
    hist = out["history"]
    assert len(hist["loss"]) == 2 and all(np.isfinite(hist["loss"]))
    assert len(hist["step_loss"]) == 2 * hist["steps_per_epoch"] == 2 * (240 // 32)
    assert hist["loss"][1] < hist["loss"][0]
    assert out["accuracy"] > 0.5          # 10 classes: chance is 0.1
    for p in out["model"].parameters():
        assert p.dtype == np.float32


def _numpy_mlp_grads(params, x, labels):
    """Loss and gradients of relu(x @ w1 + b1) @ w2 + b2 under the mean
    softmax loss, float64 (the course's Linear: weight (in, out), bias (1, out))."""
    (w1, b1), (w2, b2) = params
    z = x @ w1 + b1
    h = np.maximum(z, 0)
    logits = h @ w2 + b2
    m = logits.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(1))
    n, k = logits.shape
    loss = np.mean(lse - logits[np.arange(n), labels])
    d = (np.exp(logits - lse[:, None]) - np.eye(k)[labels]) / n
    dz = (d @ w2.T) * (z > 0)
    return loss, [(x.T @ dz, dz.sum(0, keepdims=True)), (h.T @ d, d.sum(0, keepdims=True))]


def test_mlp_example_step_matches_numpy_sgd_with_momentum():
    """Two jitted steps of the example (SGD with the course's momentum,
    u = m u + (1 - m) g, p -= lr u) against the same steps in numpy."""
    mlp = _load("examples/mlp.py", "needle_example_mlp")
    import needle
    needle.random.seed(1)
    model = mlp.build_model([8, 6, 3])
    lr, m = 0.3, 0.9
    opt = needle.optim.SGD(model.parameters(), lr=lr, momentum=m)
    step = mlp.make_train_step()
    rng = np.random.default_rng(1)
    lin = [model.modules[0], model.modules[2]]
    params = [(L.weight.numpy().astype(np.float64), L.bias.numpy().astype(np.float64))
              for L in lin]
    u = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    for _ in range(2):
        x = rng.standard_normal((5, 8)).astype(np.float32)
        labels = rng.integers(0, 3, 5).astype(np.int32)
        want_loss, g = _numpy_mlp_grads(params, x.astype(np.float64), labels)
        loss = step(model, opt, needle.Tensor(x), needle.Tensor(labels))
        np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5)
        u = [(m * uw + (1 - m) * gw, m * ub + (1 - m) * gb) for (uw, ub), (gw, gb) in zip(u, g)]
        params = [(w - lr * uw, b - lr * ub) for (w, b), (uw, ub) in zip(params, u)]
    for L, (w, b) in zip(lin, params):
        np.testing.assert_allclose(L.weight.numpy(), w, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(L.bias.numpy(), b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("script", ["bench_core.py", "bench_autodiff.py", "bench_random.py"])
def test_benchmark_smoke(script, tmp_path):
    for mod in ("jax", "torch"):             # importing either raises ImportError
        (tmp_path / mod).mkdir()
        (tmp_path / mod / "__init__.py").write_text(
            f"raise ImportError('{mod} hidden by tests/test_examples.py')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), "--small",
                        "--repeats", "1"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "numpy/needle" in r.stdout and "jax" not in r.stdout.split("\n")[0], r.stdout


def test_bench_models_smoke(tmp_path):
    """bench_models.py --small on two of its models (the convolutional and
    Transformer ones compile for a minute cold: the full --small run is a
    manual smoke test), in the session's kernel cache."""
    cache = os.environ.get("NEEDLE_CACHE_DIR") or str(tmp_path / "cache")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_models.py"),
                        "--small", "--repeats", "1", "--models", "mlp,lstm", "--cache", cache],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert "distinct" in lines[0] and [ln.split()[0] for ln in lines[2:]] == ["mlp", "lstm"]
