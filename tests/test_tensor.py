"""needle.Tensor (issue 14): a state cell holding an array, with the course
library's eager operations; needle.numpy / needle.nn functions accept it;
jit, grad and vmap take it as an array argument."""
import numpy as np
import pytest

import needle
import needle.nn as nn
import needle.numpy as nnp
from needle import Tensor


def test_float_data_defaults_to_float32_and_is_copied():
    a = np.random.randn(3, 4)
    t = Tensor(a)
    assert t.dtype == np.float32 and t.shape == (3, 4) and t.device == "cpu"
    assert t.requires_grad and t.grad is None
    np.testing.assert_allclose(t.numpy(), a.astype(np.float32))
    a[0, 0] = 100.0
    assert t.numpy()[0, 0] != 100.0                       # the cell owns its buffer
    assert Tensor(a, dtype="float64").dtype == np.float64
    assert Tensor([1, 2, 3]).dtype == np.int64
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(t).dtype == np.float32


def test_data_is_detached_and_assignable_in_place():
    t = Tensor(np.ones((2, 2)))
    d = t.data
    assert isinstance(d, Tensor) and d is not t and not d.requires_grad
    np.testing.assert_array_equal(d.numpy(), t.numpy())
    cell = t
    t.data = t.data * 3.0
    assert cell is t
    np.testing.assert_array_equal(t.numpy(), np.full((2, 2), 3.0, np.float32))
    t.data = np.zeros((2, 2), np.float32)
    assert t.numpy().sum() == 0
    det = t.detach()
    assert not det.requires_grad and det is not t


def test_operators_follow_the_course():
    a = np.random.rand(3, 4).astype(np.float32) + 0.5
    b = np.random.rand(3, 4).astype(np.float32) + 0.5
    w = np.random.rand(4, 2).astype(np.float32)
    ta, tb, tw = Tensor(a), Tensor(b), Tensor(w)
    cases = [(ta + tb, a + b), (ta - tb, a - b), (ta * tb, a * b), (ta / tb, a / b),
             (ta ** 2, a ** 2), (ta @ tw, a @ w), (-ta, -a), (2.0 * ta, 2 * a),
             (1.0 - ta, 1 - a), (1.0 / ta, 1 / a), (ta + 1, a + 1),
             (ta.sum(), a.sum()), (ta.sum(axes=1), a.sum(1)), (ta.sum(axes=(0, 1)), a.sum()),
             (ta.reshape((4, 3)), a.reshape(4, 3)), (ta.reshape(2, 6), a.reshape(2, 6)),
             (Tensor(a[:1]).broadcast_to((3, 4)), np.broadcast_to(a[:1], (3, 4))),
             (ta.transpose(), a.T), (ta.transpose((0, 1)), a.T)]
    for got, want in cases:
        assert isinstance(got, Tensor)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    x = np.random.rand(2, 3, 4).astype(np.float32)
    np.testing.assert_array_equal(Tensor(x).transpose().numpy(), np.swapaxes(x, 1, 2))
    np.testing.assert_array_equal(Tensor(x).transpose((0, 2)).numpy(), np.swapaxes(x, 0, 2))
    np.testing.assert_array_equal(Tensor(x).transpose((2, 0, 1)).numpy(),
                                  np.transpose(x, (2, 0, 1)))


def test_ndarray_on_the_left_defers_to_the_tensor():
    a = np.random.rand(2, 3).astype(np.float32)
    t = Tensor(np.random.rand(3, 4))
    r = a @ t
    assert isinstance(r, Tensor)
    np.testing.assert_allclose(r.numpy(), a @ t.numpy(), rtol=1e-6)
    assert isinstance(a + Tensor(a), Tensor)
    assert np.asarray(t).shape == (3, 4)


def test_needle_functions_accept_tensors():
    a = np.random.randn(3, 4).astype(np.float32)
    t = Tensor(a)
    np.testing.assert_allclose(nnp.tanh(t), np.tanh(a), rtol=1e-5)
    np.testing.assert_allclose(nnp.concatenate([t, t]), np.concatenate([a, a]))
    np.testing.assert_allclose(nn.relu(t), np.maximum(a, 0))
    np.testing.assert_allclose(nn.functional.softmax(t, axis=-1).sum(-1), np.ones(3),
                               rtol=1e-6)
    np.testing.assert_allclose(nnp.sum(t, axis=0), a.sum(0), rtol=1e-6)


def test_layers_return_the_kind_they_are_given():
    needle.random.seed(0)
    lin = nn.Linear(4, 2)
    a = np.random.randn(3, 4).astype(np.float32)
    out_t = lin(Tensor(a))
    out_a = lin(a)
    assert isinstance(out_t, Tensor) and isinstance(out_a, np.ndarray)
    np.testing.assert_allclose(out_t.numpy(), out_a)


def test_jit_takes_tensors_and_returns_them():
    a = np.random.randn(3, 4).astype(np.float32)
    t = Tensor(a)
    f = needle.jit(lambda t: (t * 2.0).sum(axes=1))
    r = f(t)
    assert isinstance(r, Tensor)
    np.testing.assert_allclose(r.numpy(), (a * 2).sum(1), rtol=1e-6)
    g = needle.grad(lambda t: (t * t).sum())(t)
    assert isinstance(g, Tensor)
    np.testing.assert_allclose(g.numpy(), 2 * a, rtol=1e-6)
    v = needle.vmap(lambda r: (r * r).sum())(t)
    np.testing.assert_allclose(np.asarray(v), (a * a).sum(1), rtol=1e-5)


def test_jit_writes_a_tensor_argument_back():
    t = Tensor(np.zeros(3, np.float32))

    @needle.jit
    def bump(t, x):
        t.data = t.data + x
        return t.sum()

    for k in range(3):
        s = bump(t, np.ones(3, np.float32))
        assert float(s) == 3.0 * (k + 1)
    np.testing.assert_array_equal(t.numpy(), np.full(3, 3.0, np.float32))


def test_repr_and_traced_numpy_error():
    t = Tensor(np.arange(3.0))
    assert "needle.Tensor" in repr(t)

    @needle.jit
    def f(t):
        return t.numpy()

    with pytest.raises(needle.ConcretizationError):
        f(t)
