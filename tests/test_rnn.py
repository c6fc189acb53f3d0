"""needle.nn RNN / LSTM / GRU (issue 15): outputs, final states and the
gradients of every weight against a float64 numpy reference of PyTorch's
equations in the course's transposed layout (W_ih (in, G*H), W_hh (H, G*H)),
the gradients by central differences of that reference; and the program
shape: one scan per layer, the input projection one matmul outside it."""
import numpy as np
import pytest

import needle
import needle.nn as nn
from helpers import jit

# --- the reference: PyTorch's equations in numpy, float64, batched over P
# copies of the weights (P = 1 for the values, 2 * n_params for central
# differences, all perturbed copies in one pass) ---------------------------------


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _ref_cell(kind, x, h, c, w_ih, w_hh, b_ih, b_hh, H):
    gi = x @ w_ih + b_ih                        # (P, B, G*H)
    gh = h @ w_hh + b_hh
    if kind == "rnn_tanh":
        return np.tanh(gi + gh), None
    if kind == "rnn_relu":
        return np.maximum(gi + gh, 0.0), None
    if kind == "lstm":
        g = gi + gh
        i, f, gg, o = (g[..., k * H:(k + 1) * H] for k in range(4))
        c = _sig(f) * c + _sig(i) * np.tanh(gg)
        return _sig(o) * np.tanh(c), c
    r = _sig(gi[..., :H] + gh[..., :H])
    z = _sig(gi[..., H:2 * H] + gh[..., H:2 * H])
    n = np.tanh(gi[..., 2 * H:] + r * gh[..., 2 * H:])
    return (1 - z) * n + z * h, None


def _ref(kind, layers, x, h0, c0, H):
    """layers: [(w_ih (P, in, GH), w_hh (P, H, GH), b_ih (P, 1, GH), b_hh)];
    x (T, B, in); h0, c0 (L, B, H). Returns out (P, T, B, H), h_n, c_n (P, L, B, H)."""
    P = layers[0][0].shape[0]
    T, B = x.shape[:2]
    seq = [np.broadcast_to(x[t], (P,) + x.shape[1:]) for t in range(T)]
    hn, cn = [], []
    for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
        h = np.broadcast_to(h0[k], (P, B, H))
        c = np.broadcast_to(c0[k], (P, B, H))
        out = []
        for t in range(T):
            h, c2 = _ref_cell(kind, seq[t], h, c, w_ih, w_hh, b_ih, b_hh, H)
            c = c if c2 is None else c2
            out.append(h)
        seq = out
        hn.append(h)
        cn.append(c)
    return np.stack(seq, 1), np.stack(hn, 1), np.stack(cn, 1)


KINDS = {"rnn_tanh": (nn.RNN, "rnn_cells", 1), "rnn_relu": (nn.RNN, "rnn_cells", 1),
         "lstm": (nn.LSTM, "lstm_cells", 4), "gru": (nn.GRU, "gru_cells", 3)}


def _make(kind, n_in, H, L, bias):
    cls, _, _ = KINDS[kind]
    kw = {"nonlinearity": kind[4:]} if kind.startswith("rnn") else {}
    return cls(n_in, H, num_layers=L, bias=bias, **kw)


def _weights(model, kind):
    """The model's weights as float64 [(w_ih, w_hh, b_ih, b_hh)] per layer
    (zeros for absent biases)."""
    _, attr, G = KINDS[kind]
    out = []
    for cell in getattr(model, attr):
        GH = G * cell.hidden_size
        b = (lambda p: p.numpy().astype(np.float64)) if cell.bias else \
            (lambda p: np.zeros(GH))
        out.append([cell.W_ih.numpy().astype(np.float64), cell.W_hh.numpy().astype(np.float64),
                    b(cell.bias_ih), b(cell.bias_hh)])
    return out


def _batched(ws, P):
    return [tuple(np.broadcast_to(w[None] if w.ndim == 2 else w[None, None], (P,) +
                                  ((w.shape) if w.ndim == 2 else (1,) + w.shape)).copy()
                  for w in layer) for layer in ws]


def _loss_ref(kind, layers, x, h0, c0, H, R):
    out, hn, cn = _ref(kind, layers, x, h0, c0, H)
    total = (out * R[0]).sum((1, 2, 3)) + (hn * R[1]).sum((1, 2, 3))
    if kind == "lstm":
        total = total + (cn * R[2]).sum((1, 2, 3))
    return total


def _fd_grads(kind, ws, x, h0, c0, H, R, bias, eps=1e-6):
    """Central differences of the reference loss for every weight element, all
    2 * n perturbed weight sets in one batched pass."""
    names = ["W_ih", "W_hh"] + (["bias_ih", "bias_hh"] if bias else [])
    slots = [(k, j, i) for k, layer in enumerate(ws) for j in range(len(names))
             for i in range(layer[j].size)]
    P = 2 * len(slots)
    layers = _batched(ws, P)
    for p, (k, j, i) in enumerate(slots):
        for s, sign in ((2 * p, 1.0), (2 * p + 1, -1.0)):
            layers[k][j][s].reshape(-1)[i] += sign * eps
    vals = _loss_ref(kind, layers, x, h0, c0, H, R)
    d = (vals[0::2] - vals[1::2]) / (2 * eps)
    grads, it = [], iter(d)
    for layer in ws:
        grads.append({n: np.array([next(it) for _ in range(layer[j].size)]).reshape(
            layer[j].shape) for j, n in enumerate(names)})
    return grads


def _close(got, want):
    """Within 1e-5 of the largest reference value (float32 results)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.abs(got - want).max()
    assert err <= 1e-5 * max(np.abs(want).max(), 1e-30), (err, np.abs(want).max())


CASES = [  # kind, layers, bias, h0 given, T
    ("rnn_tanh", 1, True, True, 13), ("rnn_tanh", 2, False, False, 13),
    ("rnn_relu", 2, True, True, 1), ("rnn_tanh", 1, True, False, 200),
    ("lstm", 1, True, True, 13), ("lstm", 2, False, False, 13), ("lstm", 2, True, True, 1),
    ("lstm", 1, False, True, 1),
    ("gru", 1, True, True, 13), ("gru", 2, False, False, 13), ("gru", 2, True, False, 1),
    ("gru", 1, False, True, 1)]


def _param(c):
    marks = [pytest.mark.on_device] if c[4] <= 13 and c[1] == 2 else []
    return pytest.param(*c, marks=marks, id="-".join(map(str, c)))


@pytest.mark.parametrize("kind,L,bias,given,T", [_param(c) for c in CASES])
def test_values_and_weight_gradients_match_pytorch_equations(kind, L, bias, given, T):
    needle.random.seed(1)
    rng = np.random.default_rng(0)
    n_in, H, B = 3, 4, 2
    model = _make(kind, n_in, H, L, bias)
    x = rng.standard_normal((T, B, n_in)).astype(np.float32)
    h0 = rng.standard_normal((L, B, H)).astype(np.float32) if given else None
    c0 = rng.standard_normal((L, B, H)).astype(np.float32) if given else None
    state = ((h0, c0) if kind == "lstm" else h0) if given else None
    R = [rng.standard_normal(s).astype(np.float32) for s in ((T, B, H), (L, B, H), (L, B, H))]

    zeros = np.zeros((L, B, H))
    ws = _weights(model, kind)
    h0r = zeros if h0 is None else h0.astype(np.float64)
    c0r = zeros if c0 is None else c0.astype(np.float64)
    want_out, want_hn, want_cn = (a[0] for a in _ref(kind, _batched(ws, 1), x.astype(
        np.float64), h0r, c0r, H))

    out, hn = jit(lambda m, x, s: m(x, s))(model, x, state)
    assert out.dtype == np.float32
    _close(out, want_out)
    if kind == "lstm":
        hn, cn = hn
        _close(cn, want_cn)
    _close(hn, want_hn)

    def loss(m, x, s):
        o, hn = m(x, s)
        total = (o * R[0]).sum()
        if kind == "lstm":
            return total + (hn[0] * R[1]).sum() + (hn[1] * R[2]).sum()
        return total + (hn * R[1]).sum()

    g = jit(needle.grad(loss))(model, x, state)
    want = _fd_grads(kind, ws, x.astype(np.float64), h0r, c0r, H,
                     [r.astype(np.float64) for r in R], bias)
    cells = getattr(g, KINDS[kind][1])
    for cell, wg in zip(cells, want):
        for name, w in wg.items():
            _close(getattr(cell, name).numpy() if hasattr(getattr(cell, name), "numpy")
                   else getattr(cell, name), w)


@pytest.mark.on_device
@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_cells_are_one_step_of_the_sequence_layer(kind):
    needle.random.seed(2)
    rng = np.random.default_rng(1)
    model = _make(kind, 3, 5, 1, True)
    cell = getattr(model, KINDS[kind][1])[0]
    x = rng.standard_normal((1, 2, 3)).astype(np.float32)
    h = rng.standard_normal((1, 2, 5)).astype(np.float32)
    if kind == "lstm":
        c = rng.standard_normal((1, 2, 5)).astype(np.float32)
        out, (hn, cn) = model(x, (h, c))
        h1, c1 = jit(lambda cell, x, s: cell(x, s))(cell, x[0], (h[0], c[0]))
        np.testing.assert_allclose(c1, cn[0], rtol=1e-5, atol=1e-6)
    else:
        out, hn = model(x, h)
        h1 = jit(lambda cell, x, s: cell(x, s))(cell, x[0], h[0])
    np.testing.assert_allclose(h1, hn[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[0], hn[0], rtol=1e-6)


def test_course_layout_init_and_tensor_in_tensor_out():
    needle.random.seed(3)
    m = nn.LSTM(3, 8, num_layers=2)
    c = m.lstm_cells[1]
    assert c.W_ih.shape == (8, 32) and c.W_hh.shape == (8, 32) and c.bias_ih.shape == (32,)
    assert m.lstm_cells[0].W_ih.shape == (3, 32)
    bound = 1 / np.sqrt(8)
    for p in m.parameters():
        assert np.abs(p.numpy()).max() <= bound and np.abs(p.numpy()).max() > 0.7 * bound
    assert len(m.parameters()) == 8
    x = needle.Tensor(np.ones((4, 2, 3), np.float32))
    out, (hn, cn) = m(x)
    assert isinstance(out, needle.Tensor) and isinstance(hn, needle.Tensor)
    assert out.shape == (4, 2, 8) and hn.shape == (2, 2, 8) and cn.shape == (2, 2, 8)
    with pytest.raises(ValueError, match=r"LSTM.forward: h\[0\] must have shape \(2, 2, 8\)"):
        m(x, (np.zeros((1, 2, 8), np.float32), np.zeros((2, 2, 8), np.float32)))
    with pytest.raises(ValueError, match=r"RNN.forward: the input must be \(T, B, "
                                         r"input_size\) with input_size=3, got shape \(4, 5\)"):
        nn.RNN(3, 4)(np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")


def _eqns(graph):
    return [e.prim.name for e in graph.eqns]


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_one_scan_per_layer_with_the_input_projection_hoisted(kind):
    needle.random.seed(4)
    model = _make(kind, 3, 4, 2, True)
    x = np.zeros((7, 2, 3), np.float32)
    for T in (7, 70):                      # the program does not grow with T
        x = np.zeros((T, 2, 3), np.float32)
        traced = needle.jit(lambda m, x: m(x)).lower(model, x)._graphs["traced"]
        scans = [e for e in traced.eqns if e.prim.name == "scan"]
        assert len(scans) == 2
        for s in scans:
            body = s.params["body"].graph
            assert _eqns(body).count("dot_general") == 1      # h @ W_hh only
        # every scan reads a (T, B, G*H) projection computed by one matmul before it
        projs = [e for e in traced.eqns if e.prim.name == "dot_general"
                 and e.outs[0].aval.shape == (T, 2, KINDS[kind][2] * 4)]
        assert len(projs) == 2
        size = len(traced.eqns)
        if T == 7:
            size7 = size
    assert size == size7
