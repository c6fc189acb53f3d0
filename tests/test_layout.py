"""Transpose sinking (passes/layout.py, rules of the simplify pass): each
rule rewrites the IR it should (the equations left after simplify + DCE,
values equal to the unsimplified graph's in the numpy interpreter), leaves
alone what it should not, and, end to end, the course's NCHW layers around
channels-last convolutions compile with no kernel that only moves data and
no NCHW activation or activation gradient stored: a Conv -> BatchNorm2d ->
ReLU -> Conv chain (issue 14's pin) and a residual block with max-pooling,
forward and training gradient, whose gradient also matches central finite
differences of a float64 numpy reference (tests/nn_refs.py)."""
import numpy as np
import pytest

import needle
import needle.nn as nn
import needle.numpy as nnp
import nn_refs as ref
from needle.ir import check_graph, run_numpy
from needle.passes import dce, simplify

rng = np.random.default_rng(15)
X4 = rng.standard_normal((2, 3, 4, 5))
NHWC, NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def simplified(f, *args):
    """The primitives left after simplify + DCE; the values checked."""
    cg = needle.make_ir(f)(*args)
    out = dce(simplify(cg))
    check_graph(out.graph)
    for g, w in zip(run_numpy(out.graph, out.consts, list(args)),
                    run_numpy(cg.graph, cg.consts, list(args))):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-13)
    return [e.prim.name for e in out.graph.eqns]


@pytest.mark.parametrize("f, expected", [
    # relu in the other layout, then back: the two transposes meet and cancel
    (lambda x: nnp.transpose(nnp.maximum(nnp.transpose(x, NHWC), 0.0), NCHW), ["max"]),
    # both operands transposed alike: one transpose of the sum
    (lambda x: nnp.transpose(x, NHWC) + nnp.transpose(x * 2.0, NHWC),
     ["mul", "add", "transpose"]),
    # a per-channel broadcast: rebuilt in the operand's layout
    (lambda x: nnp.transpose(nnp.transpose(x, NHWC) * nnp.arange(3.0), NCHW),
     ["convert_element_type", "broadcast_in_dim", "mul"]),
    # a broadcast whose axes land out of order: its small operand is permuted
    (lambda x: nnp.transpose(nnp.transpose(x, (2, 0, 3, 1)) + x[0, 0, :, :3][:, None, None, :],
                             (1, 3, 0, 2)),
     ["slice", "reshape", "transpose", "broadcast_in_dim", "add"]),
    # ... unless it is itself a transpose: the two cancel
    (lambda x: nnp.transpose(nnp.transpose(x, (2, 0, 3, 1)) + x[0, :, :, 0].T[:, None, None, :],
                             (1, 3, 0, 2)),
     ["slice", "reshape", "broadcast_in_dim", "add"]),
    # select and comparisons (a ReLU's gradient mask) sink too
    (lambda x: nnp.transpose(nnp.where(nnp.transpose(x, NHWC) > 0, nnp.transpose(x, NHWC), 0.5),
                             NCHW), ["gt", "select"]),
    # a reduction of a moved value, keeping its axes in order: no transpose left
    (lambda x: nnp.sum(nnp.maximum(nnp.transpose(x, NHWC), 0.0), axis=(1, 2)),
     ["max", "reduce_sum"]),
    # one whose kept axes would change order costs a transpose: no gain, left alone
    (lambda x: nnp.max(nnp.exp(nnp.transpose(x, (3, 1, 0, 2))), axis=1),
     ["transpose", "exp", "reduce_max"]),
    # ... unless it removes more: two transposes in, one smaller transpose out
    (lambda x: nnp.max(nnp.exp(nnp.transpose(x, (3, 1, 0, 2)))
                       + nnp.transpose(nnp.sin(x), (3, 1, 0, 2)), axis=1),
     ["exp", "sin", "add", "reduce_max", "transpose"]),
    # a transpose also read by a matmul-like consumer (a pad here) stays for it
    (lambda x: (nnp.transpose(nnp.exp(nnp.transpose(x, NHWC)), NCHW),
                nnp.pad(nnp.transpose(x, NHWC), 1)),
     ["exp", "transpose", "pad"]),
    # an operand in the outer layout that is no transpose: left alone
    (lambda x: nnp.transpose(x, NHWC) + nnp.reshape(x, (2, 4, 5, 3)),
     ["transpose", "reshape", "add"]),
    # transposes by different permutations: left alone
    (lambda x: nnp.transpose(x[:, :, :3, :3], (0, 2, 1, 3))
     + nnp.transpose(x[:, :, :3, :3], (0, 3, 1, 2)), ["slice", "transpose"] * 2 + ["add"]),
    # a transpose moving only axes of size 1 is a reshape (a free view)
    (lambda x: nnp.transpose(x[:, :1, :, :1], NHWC), ["slice", "reshape"]),
])
def test_rules(f, expected):
    assert simplified(f, X4) == expected


def test_sinking_keeps_weak_types_and_dtypes():
    xi = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    got = simplified(lambda x: nnp.transpose((nnp.transpose(x, (2, 0, 1)) * 3 > 7), (1, 2, 0)),
                     xi)
    assert got == ["mul", "gt"]


# --- end to end: the course's NCHW layers ----------------------------------------------

LAYOUT_ONLY = {"transpose", "reshape", "broadcast_in_dim", "convert_element_type"}


def _kernels(lowered):
    return [e for e in lowered._graphs["fused"].eqns if e.prim.name == "kernel"]


def _layout_kernels(lowered):
    """Kernels whose body only moves data (a transpose copy), except the
    NCHW input's own transpose for a first direct convolution (the conv
    primitive reads its operand from memory: one copy of the argument,
    nothing between layers)."""
    args = set(lowered._graphs["fused"].invars)
    return [e.params["name"] for e in _kernels(lowered)
            if {q.prim.name for q in e.params["graph"].eqns} <= LAYOUT_ONLY
            and not set(e.inputs) <= args]


def _stored_shapes(lowered):
    return [tuple(v.aval.shape) for e in _kernels(lowered) for v in e.outs]


@pytest.fixture(autouse=True)
def _seed():
    needle.random.seed(0)


def test_conv_bn_relu_conv_moves_no_data():
    model = nn.Sequential(nn.Conv(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv(4, 5, 3, stride=2))
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    nchw = (2, 4, 6, 6)
    fwd = needle.jit(lambda m, x: m(x)).lower(model, x)
    assert _layout_kernels(fwd) == [] and nchw not in _stored_shapes(fwd), fwd.as_text("fused")
    # the input's transpose (for the first, direct, conv), the statistics (2
    # reductions, then rsqrt and the running updates), BN + ReLU + the next
    # (strided) im2col, the output's bias; the two convolutions
    assert (fwd.kernel_count, fwd.library_call_count) == (6, 2), fwd.as_text("fused")
    grad = needle.jit(needle.grad(lambda m, x: nnp.sum(m(x) ** 2))).lower(model, x)
    assert _layout_kernels(grad) == [] and nchw not in _stored_shapes(grad), \
        grad.as_text("fused")
    assert (grad.kernel_count, grad.library_call_count) == (13, 5), grad.as_text("fused")


def _residual_net():
    return nn.Sequential(nn.Conv(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Residual(nn.Sequential(nn.Conv(4, 4, 3), nn.ReLU(),
                                                   nn.Conv(4, 4, 3))),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Conv(4, 5, 3))


def _reference(params, x):
    """The residual net in float64 numpy, NCHW, from the course's formulas."""
    (w0, b0), (g, beta), (w1, b1), (w2, b2), (w3, b3) = params
    h = ref.relu(ref.batchnorm2d(ref.conv(x, w0, b0), g, beta))
    h = ref.relu(h + ref.conv(ref.relu(ref.conv(h, w1, b1)), w2, b2))
    return ref.conv(ref.pool(h, (2, 2), (2, 2), (0, 0), "max"), w3, b3)


def test_residual_block_with_pooling_trains_in_one_layout():
    model = _residual_net()
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    ct = rng.standard_normal((2, 5, 3, 3))
    nchw = {(2, 4, 6, 6), (2, 4, 3, 3)}

    def loss(m, x):
        return nnp.sum(m(x) * ct.astype(np.float32))
    step = needle.jit(needle.grad(loss))       # (x's gradient would end in a transpose)
    lo = step.lower(model, x)
    assert _layout_kernels(lo) == [], lo.as_text("fused")
    assert not nchw & set(_stored_shapes(lo)), _stored_shapes(lo)
    gm = step(model, x)

    layers = model.modules
    res = layers[3].fn.modules
    convs = [layers[0], res[0], res[2], layers[6]]
    params = [(c.weight.numpy(), c.bias.numpy()) for c in convs]
    params.insert(1, (layers[1].weight.numpy(), layers[1].bias.numpy()))
    gconvs = [gm.modules[0], gm.modules[3].fn.modules[0], gm.modules[3].fn.modules[2],
              gm.modules[6]]
    grads = [(c.weight.numpy(), c.bias.numpy()) for c in gconvs]
    grads.insert(1, (gm.modules[1].weight.numpy(), gm.modules[1].bias.numpy()))
    flat = [a.astype(np.float64) for p in params for a in p]
    gflat = [a for p in grads for a in p]

    def f(*arrays):
        ps = [tuple(arrays[k:k + 2]) for k in range(0, 10, 2)]
        return float(np.sum(_reference(ps, x.astype(np.float64)) * ct))
    for _ in range(3):
        dirs, fd = ref.fd_directional(f, flat, rng)
        got = sum(float(np.sum(g * d)) for g, d in zip(gflat, dirs))
        np.testing.assert_allclose(got, fd, rtol=2e-4)
