"""Smoke runs of examples/mlp_resnet.py and examples/resnet9.py (skipped
without scikit-learn): a couple of epochs on a subset of the digits through
the examples' own data pipeline, jitted step, evaluation and checkpoint
round trip. The ResNet9 run swaps in a net of two ConvBN blocks and a
Linear, the same kinds of layers, to compile fewer kernels (the full ResNet9
step compiles for tens of seconds; tests/test_models_conv.py checks ResNet9 itself
against a numpy reference, and the README reports the full run)."""
import importlib.util
import os

import numpy as np
import pytest

import needle
import needle.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(relpath, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, relpath))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mlp_resnet_example_trains_and_its_checkpoint_evaluates(tmp_path):
    pytest.importorskip("sklearn")
    ex = _load("examples/mlp_resnet.py", "needle_example_mlp_resnet")
    path = str(tmp_path / "mlp_resnet.npz")
    out = ex.main(epochs=2, batch_size=32, hidden_dim=32, num_blocks=2, lr=1e-2, limit=500,
                  verbose=False, save=path)
    hist = out["history"]
    assert len(hist["loss"]) == 2 and np.all(np.isfinite(hist["loss"]))
    assert hist["loss"][1] < hist["loss"][0]
    assert out["accuracy"] > 0.5                      # 10 classes: chance is 0.1
    model = out["model"]
    assert model.training                             # accuracy() restores train mode
    full_test = needle.data.load_digits("test")
    assert ex.evaluate(path, hidden_dim=32, num_blocks=2) == ex.accuracy(model, full_test)


def _small_convnet(device=None, dtype="float32"):
    """ResNet9's kinds of layers at a size that compiles quickly: ConvBN 3-8
    k5 s4, ConvBN 8-16 k3 s4, Flatten, Linear."""
    from needle.models import ConvBN
    return nn.Sequential(ConvBN(3, 8, 5, 4), ConvBN(8, 16, 3, 4), nn.Flatten(),
                         nn.Linear(16 * 2 * 2, 10))


def test_resnet9_example_pipeline_trains_and_its_checkpoint_evaluates(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    ex = _load("examples/resnet9.py", "needle_example_resnet9")
    train, test = ex.load_images(limit=200)
    x0, y0 = train[np.arange(4)]
    assert x0.shape == (4, 32, 32, 3) and x0.dtype == np.float32 and y0.dtype == np.int32
    assert abs(float(test.arrays[0].mean())) < 0.5     # standardized with train statistics
    monkeypatch.setattr(ex, "ResNet9", _small_convnet)
    path = str(tmp_path / "convnet.npz")
    out = ex.main(epochs=2, batch_size=16, lr=3e-3, limit=300, verbose=False, save=path)
    hist = out["history"]
    assert len(hist["loss"]) == 2 and np.all(np.isfinite(hist["loss"]))
    assert hist["loss"][1] < hist["loss"][0]
    assert out["accuracy"] > 0.3
    _, full_test = ex.load_images()
    assert ex.evaluate(path) == ex.accuracy(out["model"], full_test)
