"""needle.nn.rnn: the course library's recurrent layers, RNNCell / RNN and
LSTMCell / LSTM, plus GRUCell / GRU (PyTorch's equations, the same layout).

Stage: the public package (needle/nn). Input: sequence-first arrays
(T, B, input_size) for the sequence layers, (B, input_size) for the cells,
and an optional initial state ((L, B, H) for the sequence layers, (B, H)
for the cells; for the LSTMs a tuple (h, c)); arrays, tracers or Tensors.
Output: `RNN` / `GRU` return (output (T, B, H), h_n (L, B, H)), `LSTM`
returns (output, (h_n, c_n)); the cells return the next state. A layer
returns the kind it was given (Tensors for a Tensor input).

Weights use the course's transposed layout: W_ih (input_size, G * H),
W_hh (H, G * H), biases bias_ih, bias_hh (G * H,), G = 1, 4 (gates i, f, g,
o) or 3 (gates r, z, n), all uniform in [-1/sqrt(H), 1/sqrt(H)].

The time loop is one `needle.lax.scan` per layer, never unrolled in the
trace; the input projection of all T steps (x @ W_ih plus the biases that
can be folded in) is one matmul before the loop, so each step does one
(B, H) @ (H, G * H) product and one fused gate kernel.
"""
import math

from .. import init
from .. import numpy as nnp
from ..control_flow import scan
from ..tensor import Parameter, Tensor
from . import functional as F
from .module import Module

__all__ = ["RNNCell", "RNN", "LSTMCell", "LSTM", "GRUCell", "GRU"]


def _val(x):
    return x.value if isinstance(x, Tensor) else x


def _like(x, y):
    return Tensor._make(y, True) if isinstance(x, Tensor) else y


def _nonlin(name, where):
    if name == "tanh":
        return nnp.tanh
    if name == "relu":
        return F.relu
    raise ValueError(f"{where}: nonlinearity must be 'tanh' or 'relu', got {name!r}")


def _check_shape(where, what, v, want):
    got = tuple(nnp.shape(v))
    if got != tuple(want):
        raise ValueError(f"{where}: {what} must have shape {tuple(want)}, got {got}")


class _Cell(Module):
    """The weights of one recurrent layer with G gates of size H."""
    _gates = 1

    def __init__(self, input_size, hidden_size, bias, device, dtype):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), \
            bool(bias)
        G, H = self._gates, self.hidden_size
        k = 1.0 / math.sqrt(H)

        def u(*shape):
            return Parameter(init.rand(*shape, low=-k, high=k, device=device, dtype=dtype))
        self.W_ih = u(self.input_size, G * H)
        self.W_hh = u(H, G * H)
        if self.bias:
            self.bias_ih = u(G * H)
            self.bias_hh = u(G * H)
        else:
            self.bias_ih = self.bias_hh = None

    def _project(self, x, fold_hh=True):
        """x @ W_ih plus bias_ih (and bias_hh where it can be folded in), for
        every leading index of x at once: one matmul."""
        p = nnp.matmul(x, self.W_ih.value)
        if self.bias:
            b = self.bias_ih.value
            if fold_hh:
                b = nnp.add(b, self.bias_hh.value)
            p = nnp.add(p, b)
        return p

    def _zeros(self, x):
        return nnp.zeros((nnp.shape(x)[-2], self.hidden_size), dtype=x.dtype)

    def _check_input(self, where, x, nd):
        s = tuple(nnp.shape(x))
        if len(s) != nd or s[-1] != self.input_size:
            lead = "(T, B, input_size)" if nd == 3 else "(B, input_size)"
            raise ValueError(f"{where}: the input must be {lead} with input_size="
                             f"{self.input_size}, got shape {s}")

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"


class RNNCell(_Cell):
    """h' = nonlinearity(x @ W_ih + bias_ih + h @ W_hh + bias_hh)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype="float32"):
        _nonlin(nonlinearity, "RNNCell")
        super().__init__(input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity

    def _step(self, proj, h):
        return _nonlin(self.nonlinearity, "RNNCell")(
            nnp.add(proj, nnp.matmul(h, self.W_hh.value)))

    def forward(self, X, h=None):
        """X (B, input_size), h (B, H) or None (zeros) -> h' (B, H)."""
        x = _val(X)
        self._check_input("RNNCell.forward", x, 2)
        hv = self._zeros(x) if h is None else _val(h)
        _check_shape("RNNCell.forward", "h", hv, (nnp.shape(x)[0], self.hidden_size))
        return _like(X, self._step(self._project(x), hv))

    def _sequence(self, x, h0):
        """(T, B, in), (B, H) -> (outputs (T, B, H), h_T): one scan."""
        w_hh, act = self.W_hh.value, _nonlin(self.nonlinearity, "RNN")

        def rnn_step(h, p):
            h = act(nnp.add(p, nnp.matmul(h, w_hh)))
            return h, h
        hT, hs = scan(rnn_step, h0, self._project(x))
        return hs, hT


class LSTMCell(_Cell):
    """Gates i, f, g, o = split(x @ W_ih + bias_ih + h @ W_hh + bias_hh);
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g), h' = sigmoid(o) * tanh(c')."""
    _gates = 4

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype="float32"):
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def _step(self, proj, h, c, w_hh):
        H = self.hidden_size
        g = nnp.add(proj, nnp.matmul(h, w_hh))
        i = F.sigmoid(g[..., :H])
        f = F.sigmoid(g[..., H:2 * H])
        gg = nnp.tanh(g[..., 2 * H:3 * H])
        o = F.sigmoid(g[..., 3 * H:])
        c = nnp.add(nnp.multiply(f, c), nnp.multiply(i, gg))
        return nnp.multiply(o, nnp.tanh(c)), c

    def forward(self, X, h=None):
        """X (B, input_size), h a tuple (h0, c0) of (B, H) or None (zeros)
        -> (h', c')."""
        x = _val(X)
        self._check_input("LSTMCell.forward", x, 2)
        if h is None:
            h0 = c0 = self._zeros(x)
        else:
            h0, c0 = _val(h[0]), _val(h[1])
        want = (nnp.shape(x)[0], self.hidden_size)
        _check_shape("LSTMCell.forward", "h[0]", h0, want)
        _check_shape("LSTMCell.forward", "h[1]", c0, want)
        hn, cn = self._step(self._project(x), h0, c0, self.W_hh.value)
        return _like(X, hn), _like(X, cn)

    def _sequence(self, x, state):
        w_hh = self.W_hh.value

        def lstm_step(carry, p):
            h, c = self._step(p, carry[0], carry[1], w_hh)
            return (h, c), h
        hc, hs = scan(lstm_step, state, self._project(x))
        return hs, hc


class GRUCell(_Cell):
    """PyTorch's GRU with gates r, z, n: r = sigmoid(x W_ir + b_ir + h W_hr
    + b_hr), z likewise, n = tanh(x W_in + b_in + r * (h W_hn + b_hn)),
    h' = (1 - z) * n + z * h."""
    _gates = 3

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype="float32"):
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def _step(self, proj, h, w_hh, b_hh):
        H = self.hidden_size
        gh = nnp.matmul(h, w_hh)
        if b_hh is not None:
            gh = nnp.add(gh, b_hh)
        r = F.sigmoid(nnp.add(proj[..., :H], gh[..., :H]))
        z = F.sigmoid(nnp.add(proj[..., H:2 * H], gh[..., H:2 * H]))
        n = nnp.tanh(nnp.add(proj[..., 2 * H:], nnp.multiply(r, gh[..., 2 * H:])))
        return nnp.add(n, nnp.multiply(z, nnp.subtract(h, n)))

    def _b_hh(self):
        return self.bias_hh.value if self.bias else None

    def forward(self, X, h=None):
        """X (B, input_size), h (B, H) or None (zeros) -> h' (B, H)."""
        x = _val(X)
        self._check_input("GRUCell.forward", x, 2)
        hv = self._zeros(x) if h is None else _val(h)
        _check_shape("GRUCell.forward", "h", hv, (nnp.shape(x)[0], self.hidden_size))
        return _like(X, self._step(self._project(x, fold_hh=False), hv, self.W_hh.value,
                                   self._b_hh()))

    def _sequence(self, x, h0):
        w_hh, b_hh = self.W_hh.value, self._b_hh()

        def gru_step(h, p):
            h = self._step(p, h, w_hh, b_hh)
            return h, h
        hT, hs = scan(gru_step, h0, self._project(x, fold_hh=False))
        return hs, hT


class _Stack(Module):
    """num_layers cells run one after the other over the whole sequence."""
    _name = "RNN"
    _attr = "rnn_cells"

    @property
    def _cells(self):
        return getattr(self, self._attr)

    def _run(self, X, states):
        """X (T, B, in); states: one initial state per layer. Returns the
        last layer's outputs and the final state of every layer."""
        x = _val(X)
        cells = self._cells
        cells[0]._check_input(f"{self._name}.forward", x, 3)
        finals = []
        for cell, s in zip(cells, states):
            x, sT = cell._sequence(x, s)
            finals.append(sT)
        return x, finals

    def _initial(self, x, h, what):
        """The per-layer initial states from h (L, B, H) or None."""
        L, H = len(self._cells), self.hidden_size
        B = nnp.shape(x)[1]
        if h is None:
            z = nnp.zeros((B, H), dtype=x.dtype)
            return [z] * L
        hv = _val(h)
        _check_shape(f"{self._name}.forward", what, hv, (L, B, H))
        return [hv[k] for k in range(L)]

    def extra_repr(self):
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bias={self.bias}")


def _make_cells(cls, input_size, hidden_size, num_layers, **kw):
    if int(num_layers) < 1:
        raise ValueError(f"{cls.__name__}: num_layers must be >= 1, got {num_layers}")
    return [cls(input_size if k == 0 else hidden_size, hidden_size, **kw)
            for k in range(int(num_layers))]


class RNN(_Stack):
    """A multi-layer Elman RNN: forward(X (T, B, in), h0 (L, B, H) or None)
    -> (output (T, B, H), h_n (L, B, H)); cells in `rnn_cells`."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, nonlinearity="tanh",
                 device=None, dtype="float32"):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = int(input_size), \
            int(hidden_size), int(num_layers)
        self.bias, self.nonlinearity = bool(bias), nonlinearity
        self.rnn_cells = _make_cells(RNNCell, input_size, hidden_size, num_layers, bias=bias,
                                     nonlinearity=nonlinearity, device=device, dtype=dtype)

    def forward(self, X, h0=None):
        x = _val(X)
        out, finals = self._run(X, self._initial(x, h0, "h0"))
        return _like(X, out), _like(X, nnp.stack(finals))


class GRU(RNN):
    """A multi-layer GRU (PyTorch's equations): forward(X, h0) -> (output,
    h_n) as RNN; cells in `gru_cells`."""
    _name, _attr = "GRU", "gru_cells"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, device=None,
                 dtype="float32"):
        _Stack.__init__(self)
        self.input_size, self.hidden_size, self.num_layers = int(input_size), \
            int(hidden_size), int(num_layers)
        self.bias = bool(bias)
        self.gru_cells = _make_cells(GRUCell, input_size, hidden_size, num_layers, bias=bias,
                                     device=device, dtype=dtype)


class LSTM(_Stack):
    """A multi-layer LSTM: forward(X (T, B, in), h a tuple (h0, c0) of
    (L, B, H) or None) -> (output (T, B, H), (h_n, c_n)); cells in
    `lstm_cells`."""
    _name, _attr = "LSTM", "lstm_cells"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, device=None,
                 dtype="float32"):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = int(input_size), \
            int(hidden_size), int(num_layers)
        self.bias = bool(bias)
        self.lstm_cells = _make_cells(LSTMCell, input_size, hidden_size, num_layers,
                                      bias=bias, device=device, dtype=dtype)

    def forward(self, X, h=None):
        x = _val(X)
        if h is None:
            hs = cs = self._initial(x, None, "h")
        else:
            if not isinstance(h, (tuple, list)) or len(h) != 2:
                raise TypeError(f"LSTM.forward: h must be a tuple (h0, c0) of (L, B, H) "
                                f"arrays or None, got {type(h).__name__}")
            hs = self._initial(x, h[0], "h[0]")
            cs = self._initial(x, h[1], "h[1]")
        out, finals = self._run(X, list(zip(hs, cs)))
        hn = nnp.stack([f[0] for f in finals])
        cn = nnp.stack([f[1] for f in finals])
        return _like(X, out), (_like(X, hn), _like(X, cn))
