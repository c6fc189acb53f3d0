"""needle.nn.BatchNorm2d (the course's, NCHW) and LayerNorm (PyTorch's
signature) against float64 numpy references (tests/nn_refs.py): training and
eval values, running statistics over several batches (eagerly, and N jitted
steps equal to N eager steps), gradients against central finite differences
of the reference, Tensor in -> Tensor out, errors."""
import numpy as np
import pytest

import needle
import needle.nn as nn
import needle.numpy as nnp
import nn_refs as ref
from helpers import MODES, jit, run
from needle import Tensor

rng = np.random.default_rng(15)


@pytest.fixture(autouse=True)
def _seed():
    needle.random.seed(0)


def _bn(c, dtype="float32", momentum=0.1):
    """A BatchNorm2d with a random affine (so weight and bias matter)."""
    bn = nn.BatchNorm2d(c, momentum=momentum, dtype=dtype)
    bn.weight.data = rng.uniform(0.5, 1.5, c).astype(dtype)
    bn.bias.data = rng.standard_normal(c).astype(dtype)
    return bn


# --- BatchNorm2d --------------------------------------------------------------------

@pytest.mark.on_device
@pytest.mark.parametrize("mode", MODES)
def test_batchnorm2d_training_eval_and_running_statistics(mode):
    c, m = 3, 0.2
    bn = _bn(c, momentum=m)
    w, b = bn.weight.numpy(), bn.bias.numpy()
    f = jit(lambda bn, x: bn(x)) if mode == "jit" else (lambda bn, x: bn(x))
    run_mean, run_var = np.zeros(c), np.ones(c)
    for _ in range(3):
        x = (rng.standard_normal((4, c, 3, 5)) * 2 + 1).astype(np.float32)
        np.testing.assert_allclose(f(bn, x), ref.batchnorm2d(x, w, b), rtol=1e-4, atol=1e-5)
        xd = x.astype(np.float64)               # the course: biased variance in the update
        run_mean = (1 - m) * run_mean + m * xd.mean((0, 2, 3))
        run_var = (1 - m) * run_var + m * xd.var((0, 2, 3))
    np.testing.assert_allclose(bn.running_mean.numpy(), run_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), run_var, rtol=1e-5, atol=1e-6)
    bn.eval()
    x = rng.standard_normal((2, c, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(f(bn, x), ref.batchnorm2d(x, w, b, running=(run_mean, run_var)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean.numpy(), run_mean, rtol=1e-5, atol=1e-6)


def test_jitted_training_steps_equal_eager_steps():
    def make():
        needle.random.seed(1)
        return nn.Sequential(nn.Conv(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                             nn.Linear(3 * 4 * 4, 2))

    def step(model, opt, x, y):
        loss, g = needle.value_and_grad(lambda m: nn.SoftmaxLoss()(m(x), y))(model)
        opt.step(g)
        return loss

    a, b = make(), make()
    oa = needle.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    ob = needle.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    jstep = needle.jit(step)
    for _ in range(4):
        x, y = rng.standard_normal((5, 2, 4, 4)).astype(np.float32), rng.integers(0, 2, 5)
        np.testing.assert_allclose(float(step(a, oa, x, y)), float(jstep(b, ob, x, y)),
                                   rtol=1e-5)
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-6, err_msg=n)
    bn_a, bn_b = a.modules[1], b.modules[1]
    assert not np.allclose(bn_b.running_var.numpy(), 1.0)          # it moved
    np.testing.assert_allclose(bn_a.running_var.numpy(), bn_b.running_var.numpy(), rtol=1e-5)
    a.eval(), b.eval()
    x = rng.standard_normal((3, 2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(needle.jit(lambda m, x: m(x))(b, x), a(x), rtol=1e-4, atol=1e-5)


def test_batchnorm2d_gradients_against_finite_differences():
    bn = _bn(3, dtype="float64")
    x = rng.standard_normal((3, 3, 2, 4))
    ct = rng.standard_normal(x.shape)
    gm, gx = needle.grad(lambda m, x: nnp.sum(m(x) * ct), argnums=(0, 1))(bn, x)
    assert gm.running_mean is None and gm.running_var is None
    arrays = [x, bn.weight.numpy(), bn.bias.numpy()]
    grads = [np.asarray(gx), gm.weight.numpy(), gm.bias.numpy()]
    for _ in range(3):
        dirs, fd = ref.fd_directional(
            lambda x, w, b: float(np.sum(ref.batchnorm2d(x, w, b) * ct)), arrays, rng)
        got = sum(float(np.sum(g * d)) for g, d in zip(grads, dirs))
        np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-9)


# --- LayerNorm ----------------------------------------------------------------------

@pytest.mark.on_device
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,affine", [(5, True), ((3, 5), True), ((4, 3, 5), False)])
def test_layernorm_matches_pytorch_formula(shape, affine, mode):
    ln = nn.LayerNorm(shape, elementwise_affine=affine)
    norm = (shape,) if isinstance(shape, int) else shape
    x = (rng.standard_normal((2, 4, 3, 5)) * 3 + 2).astype(np.float32)
    w = b = None
    if affine:
        assert ln.weight.shape == norm and ln.bias.shape == norm
        ln.weight.data = w = rng.standard_normal(norm).astype(np.float32)
        ln.bias.data = b = rng.standard_normal(norm).astype(np.float32)
    else:
        assert ln.weight is None and ln.parameters() == []
    got = run(lambda m, x: m(x), (ln, x), mode)
    np.testing.assert_allclose(got, ref.layernorm(x, norm, w, b), rtol=1e-4, atol=1e-5)


def test_layernorm_gradients_against_finite_differences():
    ln = nn.LayerNorm((2, 3), dtype="float64")
    ln.weight.data = rng.standard_normal((2, 3))
    ln.bias.data = rng.standard_normal((2, 3))
    x = rng.standard_normal((4, 2, 3))
    ct = rng.standard_normal(x.shape)
    gm, gx = needle.grad(lambda m, x: nnp.sum(m(x) * ct), argnums=(0, 1))(ln, x)
    arrays = [x, ln.weight.numpy(), ln.bias.numpy()]
    grads = [np.asarray(gx), gm.weight.numpy(), gm.bias.numpy()]
    for _ in range(3):
        dirs, fd = ref.fd_directional(
            lambda x, w, b: float(np.sum(ref.layernorm(x, (2, 3), w, b) * ct)), arrays, rng)
        got = sum(float(np.sum(g * d)) for g, d in zip(grads, dirs))
        np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-9)


# --- kinds, errors --------------------------------------------------------------------

@pytest.mark.on_device
def test_tensor_in_gives_tensor_out_eagerly_and_under_jit():
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    for layer in (nn.BatchNorm2d(3), nn.LayerNorm((4, 4))):
        layer.eval()
        eager = layer(Tensor(x))
        assert isinstance(eager, Tensor) and not isinstance(layer(x), Tensor)
        jitted = jit(lambda m, x: m(x))(layer, Tensor(x))
        assert isinstance(jitted, Tensor)
        np.testing.assert_allclose(jitted.numpy(), eager.numpy(), rtol=1e-5, atol=1e-6)


def test_errors_name_the_layer_and_shapes():
    with pytest.raises(ValueError, match=r"BatchNorm2d: the input must be NCHW \(B, 3, H, W\), "
                                         r"got shape \(2, 4, 5, 5\)"):
        nn.BatchNorm2d(3)(np.zeros((2, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"LayerNorm: .*normalized_shape \(4, 5\), got shape "
                                         r"\(2, 5, 4\)"):
        nn.LayerNorm((4, 5))(np.zeros((2, 5, 4), np.float32))
