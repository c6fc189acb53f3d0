"""The public package: `needle.optim`, the course library's optimizers
(SGD, Adam) and AdamW, as state-holding objects.

Input: the parameters to train (a list of Parameters, e.g.
`model.parameters()`), hyperparameters, and at each `step(grads)` the
gradients: a gradient Module from `needle.grad(loss)(model, ...)` (matched
to the parameters by cell identity), a list in the parameters' order, or
nothing (each parameter's `.grad`). Output: the parameters updated in place
(`p.data = ...`), and the optimizer's own cells (moments, step count).

The learning rate, the moments and the step count are state cells (array
values), so `jit(step)(model, opt, x, y)` takes them as inputs, writes the
new ones back after the call, and `opt.lr = 0.01` changes an input, never
the compiled program. Momentum, betas, eps and weight decay are static
hyperparameters (changing one traces again).
"""
import numpy as np

from . import numpy as nnp
from .state import Stateful, cells_of
from .tensor import Tensor, is_traced

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


def _val(x):
    return x.value if isinstance(x, Tensor) else x


def _zeros_cell(p):
    v = p.value
    return Tensor(np.zeros(tuple(v.shape), np.dtype(v.dtype)), dtype=v.dtype,
                  device=p.device, requires_grad=False)


class Optimizer(Stateful):
    """Base: holds `params`, the learning rate cell and `step(grads=None)`."""

    def __init__(self, params, lr):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: params[{i}] is a "
                                f"{type(p).__name__}, not a Parameter (pass "
                                f"model.parameters())")
        self.params = params
        self._lr = Tensor(np.asarray(lr, np.float32), dtype=np.float32, requires_grad=False)

    @property
    def lr(self):
        """The learning rate (a 0-d float32 array cell; assign a number to change it)."""
        return self._lr.value

    @lr.setter
    def lr(self, value):
        self._lr._write(np.asarray(_val(value), np.float32) if not is_traced(_val(value))
                        else nnp.astype(_val(value), np.float32))

    # -- gradients -----------------------------------------------------------------
    def _grads(self, grads):
        """One gradient value (or None) per parameter."""
        if grads is None:
            return [_val(p.grad) for p in self.params]
        if isinstance(grads, Stateful):
            by_cell = {}
            for g in cells_of(grads):
                if g._origin is not None:
                    by_cell[id(g._origin)] = g
            return [_val(by_cell.get(id(p))) for p in self.params]
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"{type(self).__name__}.step: {len(grads)} gradients for "
                             f"{len(self.params)} parameters")
        return [_val(g) for g in grads]

    def step(self, grads=None):
        raise NotImplementedError

    def reset_grad(self):
        for p in self.params:
            p.grad = None

    zero_grad = reset_grad

    # -- saving and resuming ------------------------------------------------------------
    def _named_state(self):
        """[(name, cell)] of the optimizer's own cells (not the parameters)."""
        own = {id(p) for p in self.params}
        out = []
        for name, v in self.__dict__.items():
            if name == "params":
                continue
            if isinstance(v, Tensor) and id(v) not in own:
                out.append((name.lstrip("_"), v))
            elif type(v) in (list, tuple):
                for i, e in enumerate(v):
                    if isinstance(e, Tensor) and id(e) not in own:
                        out.append((f"{name}.{i}", e))
        return out

    def state_dict(self):
        """{name: numpy array} of the learning rate, moments and step count."""
        return {n: np.array(c.value, copy=True) for n, c in self._named_state()}

    def load_state_dict(self, state_dict):
        named = dict(self._named_state())
        missing = [n for n in named if n not in state_dict]
        unexpected = [n for n in state_dict if n not in named]
        if missing or unexpected:
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing {missing}, "
                           f"unexpected {unexpected}")
        for n, c in named.items():
            v = np.asarray(state_dict[n])
            if tuple(v.shape) != c.shape:
                raise ValueError(f"{type(self).__name__}.load_state_dict: {n} has shape "
                                 f"{tuple(v.shape)}, expected {c.shape}")
            c._write(np.array(v, dtype=c.dtype, copy=True))

    def __repr__(self):
        hp = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool))
        return f"{type(self).__name__}(lr={float(np.asarray(self._lr._value))}" + \
            (f", {hp}" if hp else "") + f", {len(self.params)} parameters)"


class SGD(Optimizer):
    """SGD with the course's momentum, an exponential moving average:
    g = grad + weight_decay * p;  u = momentum * u + (1 - dampening) * g;
    p = p - lr * u, where dampening defaults to momentum (the course);
    dampening=0 gives PyTorch's form (u = momentum * u + g)."""

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0, dampening=None):
        super().__init__(params, lr)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.dampening = None if dampening is None else float(dampening)
        self.u = [_zeros_cell(p) for p in self.params] if self.momentum else []

    def step(self, grads=None):
        lr = self._lr.value
        m, wd = self.momentum, self.weight_decay
        d = m if self.dampening is None else self.dampening
        for i, (p, g) in enumerate(zip(self.params, self._grads(grads))):
            if g is None:
                continue
            pv = p.value
            if wd:
                g = nnp.add(g, nnp.multiply(wd, pv))
            if m:
                g = nnp.add(nnp.multiply(m, self.u[i].value), nnp.multiply(1.0 - d, g))
                self.u[i].data = g
            p.data = nnp.subtract(pv, nnp.multiply(lr, g))


class Adam(Optimizer):
    """Adam as the course: g = grad + weight_decay * p (L2 decay in the
    gradient); m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; with
    t the step count, p = p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)."""

    _decoupled = False

    def __init__(self, params, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps, self.weight_decay = float(eps), float(weight_decay)
        self.t = Tensor(np.asarray(0, np.int32), dtype=np.int32, requires_grad=False)
        self.m = [_zeros_cell(p) for p in self.params]
        self.v = [_zeros_cell(p) for p in self.params]

    def step(self, grads=None):
        lr = self._lr.value
        b1, b2, eps, wd = self.beta1, self.beta2, self.eps, self.weight_decay
        t = nnp.add(self.t.value, 1)
        self.t.data = t
        tf = nnp.astype(t, np.float32)
        bc1 = nnp.subtract(1.0, nnp.power(np.float32(b1), tf))
        bc2 = nnp.subtract(1.0, nnp.power(np.float32(b2), tf))
        for i, (p, g) in enumerate(zip(self.params, self._grads(grads))):
            if g is None:
                continue
            pv = p.value
            if wd and not self._decoupled:
                g = nnp.add(g, nnp.multiply(wd, pv))
            m = nnp.add(nnp.multiply(b1, self.m[i].value), nnp.multiply(1.0 - b1, g))
            v = nnp.add(nnp.multiply(b2, self.v[i].value), nnp.multiply(1.0 - b2, g * g))
            self.m[i].data, self.v[i].data = m, v
            upd = nnp.divide(nnp.divide(m, bc1), nnp.add(nnp.sqrt(nnp.divide(v, bc2)), eps))
            if wd and self._decoupled:
                upd = nnp.add(upd, nnp.multiply(wd, pv))
            p.data = nnp.subtract(pv, nnp.multiply(lr, upd))


class AdamW(Adam):
    """Adam with decoupled weight decay: p = p - lr * (adam update + weight_decay * p)."""
    _decoupled = True

    def __init__(self, params, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, beta1, beta2, eps, weight_decay)
