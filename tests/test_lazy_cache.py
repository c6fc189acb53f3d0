"""The lazy trace's caches (issue 16's per-step cost): a Module called on
Tensors is recorded as one node (lazy.GraphCall) keyed by its graph's
structure, and backward() of a repeated graph looks its program up.
Checked: a cached program gives the gradients of a numpy float64 reference
when only values change; it is not reused when the structure changes
(shapes, dtypes, a different op); equal structures traced apart share it;
a module called twice in one graph. References are numpy formulas."""
import numpy as np

import needle as ndl
from needle import lazy


def _mlp(act, dtype="float64", sizes=(5, 4, 3)):
    ndl.random.seed(0)
    return ndl.nn.Sequential(ndl.nn.Linear(sizes[0], sizes[1], dtype=dtype), act(),
                             ndl.nn.Linear(sizes[1], sizes[2], dtype=dtype))


def _ref(model, x, y, act):
    """(loss, {param: grad}) of SoftmaxLoss(model(x), y) in numpy float64."""
    l1, l2 = model.modules[0], model.modules[2]
    W1, b1 = l1.weight.numpy().astype(np.float64), l1.bias.numpy().astype(np.float64)
    W2, b2 = l2.weight.numpy().astype(np.float64), l2.bias.numpy().astype(np.float64)
    z1 = x @ W1 + b1
    h = np.maximum(z1, 0) if act == "relu" else np.tanh(z1)
    z = h @ W2 + b2
    m = z.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(1))
    B = x.shape[0]
    loss = np.mean(lse - z[np.arange(B), y])
    dz = (np.exp(z - lse[:, None]) - np.eye(z.shape[1])[y]) / B
    dh = dz @ W2.T
    dz1 = dh * (z1 > 0) if act == "relu" else dh * (1 - h ** 2)
    return loss, {l1.weight: x.T @ dz1, l1.bias: dz1.sum(0, keepdims=True),
                  l2.weight: h.T @ dz, l2.bias: dz.sum(0, keepdims=True)}


def _step(model, x, y, dtype="float64"):
    X = ndl.Tensor(x, dtype=dtype, requires_grad=False)
    Y = ndl.Tensor(y, requires_grad=False)
    loss = ndl.nn.SoftmaxLoss()(model(X), Y)
    loss.backward()
    return loss


def _check(model, x, y, act, dtype="float64", tol=1e-10):
    loss = _step(model, x, y, dtype)
    want, grads = _ref(model, x, y, act)
    np.testing.assert_allclose(float(loss.numpy()), want, rtol=tol, atol=tol)
    for p, g in grads.items():
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=tol, atol=tol)


def _compiles():
    return lazy.cache_info()["compiles"]


def test_a_module_call_is_one_node_and_a_cached_backward_tracks_new_values():
    rng = np.random.default_rng(0)
    model = _mlp(ndl.nn.ReLU)
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    _check(model, x, y, "relu")
    X = ndl.Tensor(x, dtype="float64", requires_grad=False)
    loss = ndl.nn.SoftmaxLoss()(model(X), ndl.Tensor(y, requires_grad=False))
    order = lazy._collect([loss._value], True)[0]
    assert [type(n.prim) for n in order] == [lazy.GraphCall, lazy.GraphCall]
    before = _compiles()
    for _ in range(3):          # new data and new parameter values: same program
        x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
        for p in model.parameters():
            p.data = rng.standard_normal(p.shape)
        _check(model, x, y, "relu")
    assert _compiles() == before


def test_a_changed_structure_compiles_a_new_program():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    relu, tanh = _mlp(ndl.nn.ReLU), _mlp(ndl.nn.Tanh)
    _check(relu, x, y, "relu")
    before = _compiles()
    _check(tanh, x, y, "tanh")                      # a different op, same shapes
    assert _compiles() > before
    before = _compiles()
    x2, y2 = rng.standard_normal((4, 5)), rng.integers(0, 3, 4)
    _check(relu, x2, y2, "relu")                    # another batch size
    assert _compiles() > before
    before = _compiles()
    f32 = _mlp(ndl.nn.ReLU, dtype="float32")        # another dtype
    _check(f32, x, y, "relu", dtype="float32", tol=1e-4)
    assert _compiles() > before
    before = _compiles()
    _check(relu, x, y, "relu")                      # and back: all still cached
    _check(tanh, x, y, "tanh")
    assert _compiles() == before


def test_equal_structures_traced_apart_share_the_program():
    rng = np.random.default_rng(2)
    model = _mlp(ndl.nn.ReLU)
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    _check(model, x, y, "relu")
    before = _compiles()
    model.eval()
    model.train()                 # a new state epoch: the forward is traced again
    other = _mlp(ndl.nn.ReLU)     # another model of the same structure
    _check(model, x, y, "relu")
    _check(other, x, y, "relu")
    assert _compiles() == before


def test_a_module_called_twice_in_one_graph():
    rng = np.random.default_rng(3)
    ndl.random.seed(3)
    lin = ndl.nn.Linear(4, 4, dtype="float64")
    x = rng.standard_normal((3, 4))
    for _ in range(2):            # the second time from the cache
        out = lin(lin(ndl.Tensor(x, dtype="float64", requires_grad=False)))
        out.sum().backward()
        W, b = lin.weight.numpy(), lin.bias.numpy()
        y1 = x @ W + b
        np.testing.assert_allclose(out.numpy(), y1 @ W + b, rtol=1e-12)
        ones = np.ones((3, 4))
        np.testing.assert_allclose(lin.weight.grad.numpy(), y1.T @ ones + x.T @ (ones @ W.T),
                                   rtol=1e-12)
        np.testing.assert_allclose(lin.bias.grad.numpy(),
                                   (ones.sum(0) + (ones @ W.T).sum(0))[None], rtol=1e-12)
        lin.weight.data = rng.standard_normal((4, 4))


def test_a_module_called_under_no_grad_passes_no_gradient():
    rng = np.random.default_rng(4)
    ndl.random.seed(4)
    a, b = ndl.nn.Linear(4, 3, dtype="float64"), ndl.nn.Linear(3, 2, dtype="float64")
    x = rng.standard_normal((5, 4))
    with ndl.no_grad():
        h = a(ndl.Tensor(x, dtype="float64", requires_grad=False))
    b(h).sum().backward()
    hv = x @ a.weight.numpy() + a.bias.numpy()
    np.testing.assert_allclose(b.weight.grad.numpy(), hv.T @ np.ones((5, 2)), rtol=1e-12)
    assert a.weight.grad is None or not np.any(a.weight.grad.numpy())


def test_a_module_returning_its_input_and_a_result():
    class Pair(ndl.nn.Module):
        def forward(self, x):
            return x, x * x

    rng = np.random.default_rng(5)
    a = rng.standard_normal((2, 3))
    for _ in range(2):            # the second call from the cache
        t = ndl.Tensor(a, dtype="float64")
        same, sq = Pair()(ndl.nn.Identity()(t))
        (same * sq).sum().backward()
        np.testing.assert_allclose(sq.numpy(), a * a, rtol=1e-12)
        np.testing.assert_allclose(t.grad.numpy(), 3 * a * a, rtol=1e-12)
        a = rng.standard_normal((2, 3))
