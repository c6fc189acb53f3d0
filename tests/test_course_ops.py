"""needle.ops, the course's operations on lazy Tensors (issue 16): every op's
values against its numpy formula (float64), its gradient from
`Tensor.backward()` against central differences of that numpy formula, and
the course's `gradient(out_grad, node)` formula of each op class against
the same differences."""
import numpy as np
import pytest

import needle as ndl
from needle import Tensor, ops

RNG = np.random.default_rng(0)


def _rand(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, shape)


def _pos(*shape):
    return RNG.uniform(0.5, 2.0, shape)


def _logsumexp(a, axes):
    m = np.max(a, axis=axes, keepdims=True)
    return (np.log(np.sum(np.exp(a - m), axis=axes, keepdims=True)) + m).squeeze(
        axis=axes if axes is not None else tuple(range(a.ndim)))


def _conv(x, w, stride, pad):
    """The course's convolution: NHWC input, HWIO kernel, zero padding."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    n, h, wd, _ = x.shape
    k, _, _, co = w.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    out = np.zeros((n, oh, ow, co))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out


def _dilate(a, axes, d):
    shape = list(a.shape)
    for ax in axes:
        shape[ax] *= d + 1
    out = np.zeros(shape)
    out[tuple(slice(None, None, d + 1) if i in axes else slice(None)
              for i in range(a.ndim))] = a
    return out


# (name, needle function of Tensors, numpy formula of arrays, inputs)
CASES = [
    ("add", ops.add, np.add, [_rand(3, 4), _rand(3, 4)]),
    ("add_scalar", lambda a: ops.add_scalar(a, 2.5), lambda a: a + 2.5, [_rand(3, 4)]),
    ("multiply", ops.multiply, np.multiply, [_rand(3, 4), _rand(3, 4)]),
    ("mul_scalar", lambda a: ops.mul_scalar(a, -1.5), lambda a: a * -1.5, [_rand(3, 4)]),
    ("power", ops.power, np.power, [_pos(3, 4), _rand(3, 4)]),
    ("power_scalar", lambda a: ops.power_scalar(a, 3), lambda a: a ** 3, [_rand(3, 4)]),
    ("divide", ops.divide, np.divide, [_rand(3, 4), _pos(3, 4)]),
    ("divide_scalar", lambda a: ops.divide_scalar(a, 4.0), lambda a: a / 4.0, [_rand(3, 4)]),
    ("negate", ops.negate, np.negative, [_rand(3, 4)]),
    ("transpose", ops.transpose, lambda a: np.swapaxes(a, -1, -2), [_rand(2, 3, 4)]),
    ("transpose_02", lambda a: ops.transpose(a, (0, 2)), lambda a: np.swapaxes(a, 0, 2),
     [_rand(2, 3, 4)]),
    ("reshape", lambda a: ops.reshape(a, (4, 6)), lambda a: a.reshape(4, 6),
     [_rand(2, 3, 4)]),
    ("broadcast_to", lambda a: ops.broadcast_to(a, (2, 3, 4)),
     lambda a: np.broadcast_to(a, (2, 3, 4)), [_rand(3, 1)]),
    ("summation", ops.summation, np.sum, [_rand(3, 4)]),
    ("summation_1", lambda a: ops.summation(a, axes=(1,)), lambda a: a.sum(1),
     [_rand(2, 3, 4)]),
    ("summation_02", lambda a: ops.summation(a, axes=(0, 2)), lambda a: a.sum((0, 2)),
     [_rand(2, 3, 4)]),
    ("matmul", ops.matmul, np.matmul, [_rand(3, 4), _rand(4, 5)]),
    ("matmul_batched", ops.matmul, np.matmul, [_rand(2, 3, 4), _rand(4, 5)]),
    ("log", ops.log, np.log, [_pos(3, 4)]),
    ("exp", ops.exp, np.exp, [_rand(3, 4)]),
    ("relu", ops.relu, lambda a: np.maximum(a, 0), [_rand(3, 4) + 0.05]),
    ("tanh", ops.tanh, np.tanh, [_rand(3, 4)]),
    ("sigmoid", ops.sigmoid, lambda a: 1 / (1 + np.exp(-a)), [_rand(3, 4)]),
    ("logsumexp", lambda a: ops.logsumexp(a, axes=(1,)), lambda a: _logsumexp(a, (1,)),
     [_rand(3, 4) * 50]),
    ("logsumexp_all", ops.logsumexp, lambda a: _logsumexp(a, None), [_rand(2, 3, 4)]),
    ("logsumexp_02", lambda a: ops.logsumexp(a, axes=(0, 2)),
     lambda a: _logsumexp(a, (0, 2)), [_rand(2, 3, 4)]),
    ("logsoftmax", ops.logsoftmax, lambda a: a - _logsumexp(a, (1,))[:, None],
     [_rand(3, 5) * 5]),
    ("stack", lambda a, b, c: ops.stack([a, b, c], axis=1),
     lambda a, b, c: np.stack([a, b, c], 1), [_rand(3, 4), _rand(3, 4), _rand(3, 4)]),
    ("flip", lambda a: ops.flip(a, (0, 2)), lambda a: np.flip(a, (0, 2)), [_rand(2, 3, 4)]),
    ("dilate", lambda a: ops.dilate(a, (0, 1), 2), lambda a: _dilate(a, (0, 1), 2),
     [_rand(2, 3)]),
    ("undilate", lambda a: ops.undilate(a, (0, 1), 1), lambda a: a[::2, ::2],
     [_rand(4, 6)]),
    ("conv", lambda x, w: ops.conv(x, w, stride=1, padding=1),
     lambda x, w: _conv(x, w, 1, 1), [_rand(2, 5, 5, 3), _rand(3, 3, 3, 4)]),
    ("conv_stride2", lambda x, w: ops.conv(x, w, stride=2, padding=0),
     lambda x, w: _conv(x, w, 2, 0), [_rand(2, 6, 6, 2), _rand(3, 3, 2, 3)]),
    ("getitem", lambda a: a[1:, ::2], lambda a: a[1:, ::2], [_rand(3, 4)]),
    ("operators", lambda a, b: (a - b) * (2.0 - a) / (b + 3.0) + a @ b.transpose() - 1 / b,
     lambda a, b: (a - b) * (2.0 - a) / (b + 3.0) + a @ b.T - 1 / b,
     [_rand(3, 3), _pos(3, 3)]),
]


def _numeric_grads(ref, arrays, c, eps=1e-6):
    """Central differences of sum(ref(*arrays) * c), float64."""
    out = []
    for k, a in enumerate(arrays):
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            hi = [x.copy() for x in arrays]
            lo = [x.copy() for x in arrays]
            hi[k][i] += eps
            lo[k][i] -= eps
            g[i] = ((ref(*hi) * c).sum() - (ref(*lo) * c).sum()) / (2 * eps)
        out.append(g)
    return out


@pytest.mark.parametrize("name,fn,ref,arrays", CASES, ids=[c[0] for c in CASES])
def test_op_values_and_gradients(name, fn, ref, arrays):
    ts = [Tensor(a, dtype="float64") for a in arrays]
    y = fn(*ts)
    assert isinstance(y, Tensor) and y.requires_grad
    want = ref(*arrays)
    c = RNG.standard_normal(want.shape)
    y.backward(Tensor(c, dtype="float64"))      # realizes y together with the gradients
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-10, atol=1e-12)
    assert y.dtype == np.float64
    for t, g in zip(ts, _numeric_grads(ref, arrays, c)):
        np.testing.assert_allclose(t.grad.numpy(), g, rtol=1e-6, atol=1e-7)
    # the course's gradient formula of the op class, the same derivative
    if y.op is not None and name not in ("getitem", "operators"):
        gs = y.op.gradient_as_tuple(Tensor(c, dtype="float64", requires_grad=False), y)
        ndl.lazy.realize([g._value for g in gs if isinstance(g._value, ndl.lazy.LazyTracer)],
                         interpret=True)     # numpy's implementations: nothing compiled
        for t, g in zip(ts, gs):
            np.testing.assert_allclose(g.numpy(), t.grad.numpy(), rtol=1e-8, atol=1e-10)


def test_split_gives_a_tensor_tuple_and_its_gradient():
    a = _rand(3, 4, 2)
    x = Tensor(a, dtype="float64")
    parts = ops.split(x, axis=1)
    assert isinstance(parts, ndl.TensorTuple) and len(parts) == 4
    cs = [RNG.standard_normal((3, 2)) for _ in range(4)]
    loss = ops.summation(ops.stack([p * Tensor(c, dtype="float64", requires_grad=False)
                                    for p, c in zip(parts, cs)], 0))
    loss.backward()
    for i, p in enumerate(parts):
        np.testing.assert_array_equal(p.numpy(), a[:, i])
    np.testing.assert_allclose(x.grad.numpy(), np.stack(cs, axis=1), rtol=1e-12)
    g = ops.Split(1).gradient(ndl.TensorTuple([Tensor(c, dtype="float64") for c in cs]), x)
    np.testing.assert_allclose(g.numpy(), np.stack(cs, axis=1), rtol=1e-12)


def test_op_classes_construct_as_the_course():
    a, b = Tensor(_rand(2, 3)), Tensor(_rand(2, 3))
    s = ops.EWiseAdd()(a, b)
    assert isinstance(s.op, ops.EWiseAdd) and s.inputs == [a, b]
    np.testing.assert_allclose(s.numpy(), a.numpy() + b.numpy(), rtol=1e-6)
    assert ndl.summation is ops.summation and ndl.exp is ops.exp
    order = ndl.autograd.find_topo_sort([ops.exp(s) * a])
    assert order[0] is a or order[0] is b
    assert order[-2].op.__class__ is ops.Exp and order.index(s) < len(order) - 2


def test_shape_error_names_the_op_the_shapes_and_the_line():
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5)))
    with pytest.raises(ValueError) as e:
        a @ b                                     # the recording line
    msg = str(e.value)
    assert "(2, 3)" in msg and "(4, 5)" in msg and "test_course_ops.py" in msg
    with pytest.raises(ValueError) as e:
        ops.add(a, b)
    assert "add" in str(e.value) and "test_course_ops.py" in str(e.value)
