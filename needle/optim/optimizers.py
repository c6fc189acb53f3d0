"""The public package: `needle.optim`'s optimizer classes (the course's
SGD and Adam, and AdamW) and `clip_grad_norm`.

Input: the parameters to train (`model.parameters()`, or parameter groups:
dicts `{"params": [...], "lr": ..., "weight_decay": ...}` whose options
default to the constructor's), and at each `step(grads)` the gradients: a
gradient Module from `needle.grad(loss)(model, ...)` (matched to the
parameters by cell identity), a list in the parameters' order, or nothing
(each parameter's `.grad`). Output: the parameters updated in place, and
the optimizer's own cells (moments, step count, each group's lr).

Each group's learning rate, the step count and the moments are state
cells (array values): `jit(step)(model, opt, x, y)` takes them as inputs
and writes the new ones back, so `opt.lr = 0.01`, `opt.param_groups[0]
["lr"] = 0.01` or a schedule changes an input, never the compiled
program. The other options (momentum, betas, eps, weight decay) are static
(changing one traces again).
"""
import numpy as np

from .. import numpy as nnp
from ..state import Stateful, cells_of
from ..tensor import Tensor, bump_epoch, is_traced
from ..tensor import in_transform as _in_transform
from ..lazy_jit import compiled_step as _compiled_step
from .transforms import adam_direction, ema

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm"]


def _val(x):
    return x.value if isinstance(x, Tensor) else x


def _zeros_cell(p):
    v = p.value
    z = np.zeros(tuple(v.shape), np.dtype(v.dtype))
    return Tensor(z, dtype=v.dtype, device=p.device, requires_grad=False)


def _lr_cell(lr):
    v = _val(lr)
    v = nnp.astype(v, np.float32) if is_traced(v) else np.asarray(v, np.float32)
    return Tensor(v, dtype=np.float32, requires_grad=False)


class ParamGroup(dict):
    """One entry of `opt.param_groups` (PyTorch's shape): a dict whose
    assignments write through to the optimizer: "lr" into the group's lr
    cell (no recompile), another option into the group (a structural
    change: a jitted step traces again)."""

    def __init__(self, opt, i):
        g = opt._groups[i]
        super().__init__({k: (v.value if k == "lr" else v) for k, v in g.items()})
        self._opt, self._i = opt, i

    def __setitem__(self, k, v):
        g = self._opt._groups[self._i]
        if k == "lr":
            g["lr"]._write(nnp.astype(_val(v), np.float32) if is_traced(_val(v))
                           else np.asarray(_val(v), np.float32))
        elif k == "params" or k not in g:
            raise KeyError(f"{type(self._opt).__name__}.param_groups[{self._i}]: cannot set "
                           f"{k!r} (options: {[n for n in g if n != 'params']})")
        else:
            g[k] = float(v) if v is not None else None
            bump_epoch()
        super().__setitem__(k, v)


class Optimizer(Stateful):
    """Base: parameter groups, the lr and step-count cells, gradients,
    clipping and state_dict. Subclasses set `defaults` and `_update`."""

    def __init__(self, params, defaults=None):
        # defaults: {option: default}; a number is the lr (the course's
        # Optimizer(params) and the earlier Optimizer(params, lr) still work)
        if defaults is None or isinstance(defaults, (int, float, np.number, np.ndarray, Tensor)):
            defaults = {"lr": 0.01 if defaults is None else defaults}
        self.defaults = dict(defaults)
        self.defaults.setdefault("lr", 0.01)
        self.t = Tensor(np.asarray(0, np.int32), dtype=np.int32, requires_grad=False)
        self._groups, self.params, self._gid = [], [], []
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    # -- parameter groups ---------------------------------------------------------
    def _check_group(self, group, i):
        name = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}: params[{i}] must be a Parameter or a dict with "
                            f"'params' (a parameter group), got {type(group).__name__}")
        unknown = [k for k in group if k != "params" and k not in self.defaults and
                   k != "betas"]
        if unknown:
            raise KeyError(f"{name}: parameter group {i} has unknown options {unknown} "
                           f"(known: {list(self.defaults)})")
        ps = group["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        have = {id(p) for p in self.params}
        for j, p in enumerate(ps):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: parameter group {i}: params[{j}] is a "
                                f"{type(p).__name__}, not a Parameter (pass "
                                f"model.parameters())")
            if id(p) in have:
                raise ValueError(f"{name}: parameter group {i}: params[{j}] "
                                 f"({p._name or 'Tensor'} {p.shape}) is already in a group")
            have.add(id(p))
        return ps

    def add_param_group(self, group):
        """Add a group `{"params": [...], option: value}` (a structural change)."""
        i = len(self._groups)
        ps = self._check_group(group, i)
        opts = dict(self.defaults)
        if "betas" in group:
            opts["beta1"], opts["beta2"] = (float(b) for b in group["betas"])
        opts.update({k: v for k, v in group.items() if k not in ("params", "betas")})
        g = {"params": ps, "lr": _lr_cell(opts.pop("lr"))}
        g.update({k: (None if v is None else float(v)) for k, v in opts.items()})
        self._groups = self._groups + [g]          # rebinding: a structural change
        self.params = self.params + ps
        self._gid = self._gid + [i] * len(ps)
        self._add_state(ps, g)

    def _add_state(self, ps, group):
        """Make the per-parameter cells of the new parameters `ps`."""

    @property
    def param_groups(self):
        """[ParamGroup]: PyTorch's list of group dicts ("params", "lr", options)."""
        return [ParamGroup(self, i) for i in range(len(self._groups))]

    @property
    def lr(self):
        """The first group's learning rate (a 0-d float32 array; assigning a
        number sets every group's)."""
        return self._groups[0]["lr"].value

    @lr.setter
    def lr(self, value):
        for i in range(len(self._groups)):
            ParamGroup(self, i)["lr"] = value

    def _by_group(self, grads):
        """[(group, [(position, parameter, gradient)])], skipping None gradients."""
        gs = self._grads(grads)
        out = [(g, []) for g in self._groups]
        for k, (p, gr) in enumerate(zip(self.params, gs)):
            if gr is not None:
                out[self._gid[k]][1].append((k, p, gr))
        return out

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
        for p, g in zip(self.params, grads):
            if g is not None and tuple(_val(g).shape) != tuple(p.shape):
                raise ValueError(f"{type(self).__name__}.step: the gradient of "
                                 f"{p._name or 'Tensor'} has shape {tuple(_val(g).shape)}, "
                                 f"the parameter {tuple(p.shape)}")
        return [_val(g) for g in grads]

    def step(self, grads=None):
        """One update of every parameter with a gradient; the step count += 1."""
        if grads is None and not _in_transform() and _compiled_step(self):
            return          # gradients from a lazy backward(): one jitted update (lazy_jit.py)
        t = nnp.add(self.t.value, np.int32(1))
        self.t.data = t
        for group, items in self._by_group(grads):
            if items:
                self._update(group, items, t)

    def _update(self, group, items, t):
        raise NotImplementedError

    def reset_grad(self):
        for p in self.params:
            p.grad = None

    zero_grad = reset_grad

    def clip_grad_norm(self, max_norm, grads=None):
        """Scale the gradients (`grads`: a gradient Module or list of
        Tensors; default each parameter's .grad) so their global L2 norm is
        at most max_norm; returns the norm before clipping."""
        return clip_grad_norm(self.params if grads is None else grads, max_norm)

    # -- saving and resuming ------------------------------------------------------------
    def _named_state(self):
        """[(name, cell)] of the optimizer's own cells (not the parameters)."""
        own = {id(p) for p in self.params}
        out = [(f"param_groups.{i}.lr", g["lr"]) for i, g in enumerate(self._groups)]
        for name, v in self.__dict__.items():
            if isinstance(v, Tensor) and id(v) not in own:
                out.append((name, v))
            elif type(v) is list and name not in ("params", "_groups", "_gid"):
                out += [(f"{name}.{i}", e) for i, e in enumerate(v)
                        if isinstance(e, Tensor) and id(e) not in own]
        return out

    def _named_options(self):
        return [(f"param_groups.{i}.{k}", g, k) for i, g in enumerate(self._groups)
                for k, v in g.items() if k not in ("params", "lr") and v is not None]

    def state_dict(self):
        """{name: numpy array}: each group's lr and options, the step count
        and the per-parameter moments (copies)."""
        out = {}
        for n, c in self._named_state():
            if is_traced(c._value):
                raise TypeError(f"{type(self).__name__}.state_dict: {n} holds a traced "
                                f"value (call it outside jit / grad / vmap)")
            out[n] = np.array(c.numpy(), copy=True)
        for n, g, k in self._named_options():
            out[n] = np.asarray(g[k], np.float64)
        return out

    def load_state_dict(self, state_dict):
        """Write a state_dict() back: training resumes exactly."""
        name = type(self).__name__
        named = dict(self._named_state())
        opts = {n: (g, k) for n, g, k in self._named_options()}
        missing = [n for n in list(named) + list(opts) if n not in state_dict]
        unexpected = [n for n in state_dict if n not in named and n not in opts]
        if missing or unexpected:
            raise KeyError(f"{name}.load_state_dict: missing {missing}, "
                           f"unexpected {unexpected}")
        for n, c in named.items():
            v = np.asarray(state_dict[n])
            if tuple(v.shape) != c.shape:
                raise ValueError(f"{name}.load_state_dict: {n} has shape "
                                 f"{tuple(v.shape)}, expected {c.shape}")
            c._write(np.array(v, dtype=c.dtype, copy=True) if not c.device == "cuda"
                     else _on_device(np.array(v, dtype=c.dtype)))
        changed = False
        for n, (g, k) in opts.items():
            v = float(np.asarray(state_dict[n]))
            changed |= g[k] != v
            g[k] = v
        if changed:
            bump_epoch()

    def __repr__(self):
        gs = "; ".join(f"{len(g['params'])} parameters, lr={float(np.asarray(g['lr']._value))}"
                       + "".join(f", {k}={v}" for k, v in g.items()
                                 if k not in ("params", "lr"))
                       for g in self._groups)
        return f"{type(self).__name__}({gs})"


def _on_device(v):
    from ..array import device_put
    return device_put(v, "cuda")


class SGD(Optimizer):
    """SGD with the course's momentum, an exponential moving average:
    g = grad + weight_decay * p;  u = momentum * u + (1 - dampening) * g;
    p = p - lr * u, where dampening defaults to momentum (the course);
    dampening=0 gives PyTorch's form (u = momentum * u + g)."""

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0, dampening=None):
        self.u = []
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      dampening=dampening))

    def _add_state(self, ps, group):
        self.u = self.u + [_zeros_cell(p) if group["momentum"] else None for p in ps]

    def _update(self, group, items, t):
        lr, m, wd = group["lr"].value, group["momentum"], group["weight_decay"]
        d = m if group["dampening"] is None else group["dampening"]
        for k, p, g in items:
            pv = p.value
            if wd:
                g = nnp.add(g, nnp.multiply(wd, pv))
            if m:
                g = nnp.add(nnp.multiply(m, self.u[k].value), nnp.multiply(1.0 - d, g))
                self.u[k].data = g
            p.data = nnp.subtract(pv, nnp.multiply(lr, g))


class Adam(Optimizer):
    """Adam as the course: g = grad + weight_decay * p (L2 decay in the
    gradient); m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; with
    t the step count, p = p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)."""

    _decoupled = False

    def __init__(self, params, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        self.m, self.v = [], []
        super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                                      weight_decay=weight_decay))

    def _add_state(self, ps, group):
        self.m = self.m + [_zeros_cell(p) for p in ps]
        self.v = self.v + [_zeros_cell(p) for p in ps]

    def _update(self, group, items, t):
        lr, wd, eps = group["lr"].value, group["weight_decay"], group["eps"]
        b1, b2 = group["beta1"], group["beta2"]
        tf = nnp.astype(t, np.float32)
        bc1 = nnp.subtract(1.0, nnp.power(np.float32(b1), tf))
        bc2 = nnp.subtract(1.0, nnp.power(np.float32(b2), tf))
        for k, p, g in items:
            pv = p.value
            if wd and not self._decoupled:
                g = nnp.add(g, nnp.multiply(wd, pv))
            m = ema(self.m[k].value, g, b1)
            v = ema(self.v[k].value, nnp.multiply(g, g), b2)
            self.m[k].data, self.v[k].data = m, v
            upd = adam_direction(m, v, bc1, bc2, eps)
            if wd and self._decoupled:
                upd = nnp.add(upd, nnp.multiply(wd, pv))
            p.data = nnp.subtract(pv, nnp.multiply(lr, upd))


class AdamW(Adam):
    """Adam with decoupled weight decay: p = p - lr * (adam update + weight_decay * p)."""
    _decoupled = True

    def __init__(self, params, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, beta1, beta2, eps, weight_decay)


def clip_grad_norm(grads_or_params, max_norm):
    """Scale gradients in place so their global L2 norm is at most
    max_norm (by max_norm / (norm + 1e-6) when it is larger, as PyTorch's
    clip_grad_norm_); returns the norm before clipping (a 0-d array).

    grads_or_params: a gradient Module (its cells are scaled), or a list of
    Parameters (their `.grad` is scaled) or of gradient Tensors. For a
    pytree of plain arrays use `clip_by_global_norm` (functional)."""
    if isinstance(grads_or_params, Stateful):
        holders = [(c, "cell") for c in cells_of(grads_or_params)]
    else:
        holders = []
        for i, x in enumerate(list(grads_or_params)):
            if isinstance(x, Tensor) and x.grad is not None:
                holders.append((x, "grad"))
            elif isinstance(x, Tensor) and x._origin is not None:
                holders.append((x, "cell"))
            elif isinstance(x, Tensor):
                continue                       # a parameter without a gradient
            else:
                raise TypeError(f"needle.optim.clip_grad_norm: element {i} is a "
                                f"{type(x).__name__}; pass Parameters, a gradient Module or "
                                f"gradient Tensors (for plain arrays use "
                                f"needle.optim.clip_by_global_norm)")
    vals = [_val(h.grad) if kind == "grad" else h.value for h, kind in holders]
    if not vals:
        return np.float32(0.0)
    total = None
    for g in vals:
        s = nnp.sum(nnp.multiply(g, g))
        total = s if total is None else nnp.add(total, s)
    norm = nnp.sqrt(total)
    coef = nnp.minimum(nnp.divide(float(max_norm), nnp.add(norm, 1e-6)), 1.0)
    for (h, kind), g in zip(holders, vals):
        new = nnp.multiply(g, nnp.astype(coef, g.dtype))
        if kind == "cell":
            h._write(new)
        else:
            h.grad = Tensor._make(new) if isinstance(h.grad, Tensor) else new
    return norm
