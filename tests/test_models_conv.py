"""needle.models.ResNet9 and MLPResNet (the course's hw4 / hw2 models): the
course's architecture and parameter count (431,946 for ResNet9), the forward
pass in training and eval mode against a float64 numpy reference built from
the models' own parameter values with tests/nn_refs.py, and the gradient of a
loss against central finite differences of that reference. Eager only (no
kernels compiled here: the examples' smoke tests run the jitted steps)."""
import numpy as np
import pytest

import needle
import needle.nn as nn
import nn_refs as ref
from needle.models import ConvBN, MLPResNet, ResidualBlock, ResNet9

rng = np.random.default_rng(9)


@pytest.fixture(autouse=True)
def _seed():
    needle.random.seed(0)


def _v(p):
    return p.numpy().astype(np.float64)


# --- ResNet9 ------------------------------------------------------------------------

def _convbn_ref(cb, x, running):
    y = ref.conv(x, _v(cb.conv.weight), _v(cb.conv.bias), cb.conv.stride)
    stats = (_v(cb.bn.running_mean), _v(cb.bn.running_var)) if running else None
    return ref.relu(ref.batchnorm2d(y, _v(cb.bn.weight), _v(cb.bn.bias), running=stats))


def resnet9_ref(model, x, running=False):
    """The course's ResNet9, layer by layer, in float64 numpy."""
    for layer in model.model.modules:
        if isinstance(layer, ConvBN):
            x = _convbn_ref(layer, x, running)
        elif isinstance(layer, nn.Residual):
            h = x
            for cb in layer.fn.modules:
                h = _convbn_ref(cb, h, running)
            x = h + x
        elif isinstance(layer, nn.Flatten):
            x = x.reshape(len(x), -1)
        elif isinstance(layer, nn.Linear):
            x = ref.linear(x, _v(layer.weight), _v(layer.bias))
        else:
            assert isinstance(layer, nn.ReLU), layer
            x = ref.relu(x)
    return x


def test_resnet9_is_the_courses_architecture():
    model = ResNet9()
    assert sum(int(np.prod(p.shape)) for p in model.parameters()) == 431_946
    spec = []
    for layer in model.model.modules:
        if isinstance(layer, ConvBN):
            spec.append(("convbn", layer.conv.in_channels, layer.conv.out_channels,
                         layer.conv.kernel_size, layer.conv.stride))
        elif isinstance(layer, nn.Residual):
            spec.append(("residual", [(c.conv.in_channels, c.conv.out_channels,
                                       c.conv.kernel_size, c.conv.stride)
                                      for c in layer.fn.modules]))
        else:
            spec.append(type(layer).__name__)
    assert spec == [("convbn", 3, 16, 7, 4), ("convbn", 16, 32, 3, 2),
                    ("residual", [(32, 32, 3, 1), (32, 32, 3, 1)]),
                    ("convbn", 32, 64, 3, 2), ("convbn", 64, 128, 3, 2),
                    ("residual", [(128, 128, 3, 1), (128, 128, 3, 1)]),
                    "Flatten", "Linear", "ReLU", "Linear"]
    assert "431,946 parameters" in repr(model)
    assert ResNet9(dtype="float64").model.modules[-1].weight.dtype == np.float64


def test_resnet9_forward_train_and_eval_match_the_reference():
    model = ResNet9()
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    want = resnet9_ref(model, x)                     # batch statistics
    got = model(x)
    assert got.shape == (4, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
    bn = model.model.modules[0].bn                   # its statistics moved: course's update
    y = ref.conv(x, _v(model.model.modules[0].conv.weight), _v(model.model.modules[0].conv.bias),
                 4)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * y.var((0, 2, 3)),
                               rtol=1e-5)
    model.eval()
    np.testing.assert_allclose(model(x), resnet9_ref(model, x, running=True),
                               rtol=2e-4, atol=2e-4)


def test_resnet9_gradient_against_finite_differences():
    model = ResNet9(dtype="float64")
    x, y = rng.standard_normal((2, 3, 32, 32)), np.array([3, 7])

    def ref_loss(model_values, x):
        z = resnet9_ref(model_values, x)
        z = z - z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(2), y]))

    g = needle.grad(lambda m: nn.SoftmaxLoss()(m(x), y))(model)
    params, grads = model.parameters(), g.parameters()
    base = [p.numpy().copy() for p in params]
    eps = 1e-6
    for _ in range(2):
        dirs = [rng.standard_normal(p.shape) for p in params]
        for p, b, d in zip(params, base, dirs):
            p.data = b + eps * d
        up = ref_loss(model, x)
        for p, b, d in zip(params, base, dirs):
            p.data = b - eps * d
        down = ref_loss(model, x)
        for p, b in zip(params, base):
            p.data = b
        got = sum(float(np.sum(q.numpy() * d)) for q, d in zip(grads, dirs))
        np.testing.assert_allclose(got, (up - down) / (2 * eps), rtol=1e-5)


# --- MLPResNet ------------------------------------------------------------------------

def test_mlp_resnet_is_the_courses_structure():
    model = MLPResNet(64, hidden_dim=20, num_blocks=2, num_classes=10, drop_prob=0.3)
    assert isinstance(model, nn.Sequential)
    kinds = [type(m).__name__ for m in model.modules]
    assert kinds == ["Linear", "ReLU", "ResidualBlock", "ResidualBlock", "Linear"]
    block = model.modules[2]
    inner = block.modules[0].fn.modules
    assert [type(m).__name__ for m in block.modules] == ["Residual", "ReLU"]
    assert [type(m).__name__ for m in inner] == ["Linear", "BatchNorm1d", "ReLU", "Dropout",
                                                 "Linear", "BatchNorm1d"]
    assert (inner[0].in_features, inner[0].out_features, inner[4].out_features) == (20, 10, 20)
    assert inner[3].p == 0.3
    # Linear 64-20, 2 x (Linear 20-10, BN 10, Linear 10-20, BN 20), Linear 20-10
    want = (64 * 20 + 20) + 2 * ((20 * 10 + 10) + 20 + (10 * 20 + 20) + 40) + (20 * 10 + 10)
    assert sum(int(np.prod(p.shape)) for p in model.parameters()) == want
    ln = ResidualBlock(8, 4, norm=nn.LayerNorm1d, drop_prob=0.0)
    assert type(ln.modules[0].fn.modules[1]).__name__ == "LayerNorm1d"


def test_mlp_resnet_eval_forward_matches_the_reference():
    model = MLPResNet(12, hidden_dim=8, num_blocks=2, num_classes=5)
    x = rng.standard_normal((6, 12)).astype(np.float32)
    model(x)                                          # move the running statistics
    model.eval()

    def bn(m, h):
        return (h - _v(m.running_mean)) / np.sqrt(_v(m.running_var) + m.eps) * _v(m.weight) \
            + _v(m.bias)

    def lin(m, h):
        return ref.linear(h, _v(m.weight), _v(m.bias))
    h = ref.relu(lin(model.modules[0], x.astype(np.float64)))
    for block in model.modules[2:4]:
        a, n1, _, _, b, n2 = block.modules[0].fn.modules
        h = ref.relu(bn(n2, lin(b, ref.relu(bn(n1, lin(a, h))))) + h)
    want = lin(model.modules[4], h)
    np.testing.assert_allclose(model(x), want, rtol=1e-4, atol=1e-5)
