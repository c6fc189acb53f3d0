"""The models of bench_models.py written with needle's module API and in
PyTorch eager (benchmarks only; tests never import this file's torch code).

Stage: benchmarks (above the public package). Input: a functional model's
parameter tree and batch, as bench_models.py builds them (numpy float32,
channels last). Output: a step object `step(*state, *batch) -> (loss,
*state)` with its `state` and `batch`, the same model, sizes and, where the
layers allow, the same initial weights, so a step of each starts from the
same loss:
- module_<model>: needle.nn layers + needle.optim + a jitted
  `step(model, opt, *batch)` as a user writes it:
  mlp: Sequential(Linear, ReLU, ..., Linear), SoftmaxLoss, SGD momentum
       (dampening=0: the functional rows' u = mu u + g);
  convnet: NCHW Conv (bias) -> ReLU -> Residual(Conv, ReLU, Conv) -> ReLU
       -> MaxPool2d(2) per stage, AvgPool2d over the last stage, Flatten,
       Linear; SGD momentum;
  lstm: LanguageModel(seq_model="lstm") (Embedding, LSTM, Linear), SGD;
  transformer: LanguageModel(seq_model="transformer") with the course's
       Transformer at the functional row's sizes (d 128, 4 heads of 32,
       MLP 512): the course's layer differs (a LayerNorm each for q, k, v,
       ReLU, biased MLP and head, no final LayerNorm, weights from needle's
       init), so its loss is not the functional one's; Adam.
- torch_<model>: the same computation in PyTorch eager (NCHW convolutions,
  nn.LSTM for the LSTM), torch.optim.SGD / Adam, the weights copied.
"""
import numpy as np


# --- needle module API ------------------------------------------------------------
class ModuleStep:
    """A jitted step(model, opt, *batch) -> loss, called with the bench's
    protocol step(model, opt, *batch) -> (loss, model, opt)."""

    def __init__(self, loss_fn):
        import needle

        def step(model, opt, *batch):
            loss, g = needle.value_and_grad(lambda m: loss_fn(m, *batch))(model)
            opt.step(g)
            return loss
        self.jitted = needle.jit(step)

    def __call__(self, model, opt, *batch):
        return (self.jitted(model, opt, *batch), model, opt)

    def lower(self, *args):
        return self.jitted.lower(*args)


def _set(param, value):
    param.data = np.array(value, dtype=np.float32, order="C", copy=True)


def _linear(nn, w, b):
    lin = nn.Linear(w.shape[0], w.shape[1], bias=b is not None)
    _set(lin.weight, w)
    if b is not None:
        _set(lin.bias, b.reshape(1, -1))
    return lin


def module_mlp(params, batch, small):
    import needle.nn as nn
    from needle import optim
    layers = []
    for w, b in params[0]:
        layers += [_linear(nn, w, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, dampening=0.0)
    step = ModuleStep(lambda m, x, y: nn.SoftmaxLoss()(m(x), y))
    return step, (model, opt), batch


def module_convnet(params, batch, small):
    import needle.nn as nn
    from needle import optim
    stages, (wh, bh) = params[0]
    x, y = batch

    def conv(w, b):
        c = nn.Conv(w.shape[2], w.shape[3], w.shape[0])
        _set(c.weight, w)
        _set(c.bias, b)
        return c
    layers = []
    for k, ((w0, b0), (w1, b1), (w2, b2)) in enumerate(stages):
        layers += [conv(w0, b0), nn.ReLU(),
                   nn.Residual(nn.Sequential(conv(w1, b1), nn.ReLU(), conv(w2, b2))), nn.ReLU()]
        if k < len(stages) - 1:
            layers.append(nn.MaxPool2d(2))
    last = x.shape[1] // 2 ** (len(stages) - 1)
    layers += [nn.AvgPool2d(last), nn.Flatten(), _linear(nn, wh, bh)]
    model = nn.Sequential(*layers)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, dampening=0.0)
    step = ModuleStep(lambda m, x, y: nn.SoftmaxLoss()(m(x), y))
    return step, (model, opt), (np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y)


def module_lstm(params, batch, small):
    import needle.nn as nn
    from needle import optim
    from needle.models import LanguageModel
    p = params[0]
    (tokens,) = batch
    vocab, emb = p["embed"].shape
    hid = p["w_hh"].shape[0]
    lm = LanguageModel(emb, vocab, hid, seq_model="lstm", seq_len=tokens.shape[0] - 1)
    _set(lm.embedding.weight, p["embed"])
    cell = lm.seq_model.lstm_cells[0]
    _set(cell.W_ih, p["w_ih"])
    _set(cell.W_hh, p["w_hh"])
    _set(cell.bias_ih, p["b"])
    _set(cell.bias_hh, np.zeros_like(p["b"]))
    _set(lm.linear.weight, p["w_out"])
    _set(lm.linear.bias, p["b_out"].reshape(1, -1))
    opt = optim.SGD(lm.parameters(), lr=0.1)
    step = ModuleStep(lambda m, x, y: nn.SoftmaxLoss()(m(x)[0], y))
    return step, (lm, opt), (np.ascontiguousarray(tokens[:-1]),
                             np.ascontiguousarray(tokens[1:].reshape(-1)))


def module_transformer(params, batch, small):
    import needle.nn as nn
    from needle import optim
    from needle.models import LanguageModel
    p = params[0]
    (tokens,) = batch                                   # (B, T + 1)
    vocab, d = p["embed"].shape
    layers, mlp_d = len(p["blocks"]), p["blocks"][0]["w1"].shape[1]
    heads = 2 if small else 4
    T = tokens.shape[1] - 1
    lm = LanguageModel(d, vocab, mlp_d, num_layers=layers, seq_model="transformer", seq_len=T)
    lm.seq_model = nn.Transformer(d, mlp_d, layers, num_head=heads, dim_head=d // heads,
                                  sequence_len=T)
    opt = optim.Adam(lm.parameters(), lr=1e-3)
    step = ModuleStep(lambda m, x, y: nn.SoftmaxLoss()(m(x)[0], y))
    x = np.ascontiguousarray(tokens[:, :-1].T)           # (T, B), the course's layout
    y = np.ascontiguousarray(tokens[:, 1:].T.reshape(-1))
    return step, (lm, opt), (x, y)


MODULE = {"mlp": module_mlp, "convnet": module_convnet, "lstm": module_lstm,
          "transformer": module_transformer}


# --- PyTorch eager ----------------------------------------------------------------
class TorchStep:
    """opt.zero_grad(); loss = loss_fn(*batch); loss.backward(); opt.step():
    step(*batch) -> (loss,)."""

    def __init__(self, loss_fn, opt):
        self.loss_fn, self.opt = loss_fn, opt

    def __call__(self, *batch):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(*batch)
        loss.backward()
        self.opt.step()
        return (loss.detach(),)


def _leaves(torch, tree):
    """The tree with every numpy array a leaf tensor that requires grad, and
    the list of those tensors."""
    out = []

    def walk(t):
        if isinstance(t, dict):
            return {k: walk(v) for k, v in t.items()}
        if isinstance(t, (list, tuple)):
            return type(t)(walk(v) for v in t)
        v = torch.tensor(np.array(t), requires_grad=True)
        out.append(v)
        return v
    return walk(tree), out


def torch_mlp(torch, params, batch, small):
    F = torch.nn.functional
    p, leaves = _leaves(torch, params[0])
    x, y = (torch.from_numpy(batch[0]), torch.from_numpy(batch[1]).long())

    def loss(x, y):
        h = x
        for w, b in p[:-1]:
            h = torch.relu(torch.addmm(b, h, w))
        w, b = p[-1]
        return F.cross_entropy(torch.addmm(b, h, w), y)
    return TorchStep(loss, torch.optim.SGD(leaves, lr=0.01, momentum=0.9)), (x, y)


def torch_convnet(torch, params, batch, small):
    F = torch.nn.functional
    (stages, head), leaves = _leaves(torch, params[0])
    # HWIO -> OIHW, as new leaves (the optimizer holds these)
    stages = [[(torch.tensor(w.detach().numpy().transpose(3, 2, 0, 1), requires_grad=True), b)
               for w, b in s] for s in stages]
    leaves = [t for s in stages for w, b in s for t in (w, b)] + list(head)
    x = torch.from_numpy(np.ascontiguousarray(batch[0].transpose(0, 3, 1, 2)))
    y = torch.from_numpy(batch[1]).long()

    def loss(x, y):
        h = x
        for k, ((w0, b0), (w1, b1), (w2, b2)) in enumerate(stages):
            h = torch.relu(F.conv2d(h, w0, b0, padding=1))
            r = torch.relu(F.conv2d(h, w1, b1, padding=1))
            h = torch.relu(h + F.conv2d(r, w2, b2, padding=1))
            if k < len(stages) - 1:
                h = F.max_pool2d(h, 2)
        h = h.mean(dim=(2, 3))
        return F.cross_entropy(torch.addmm(head[1], h, head[0]), y)
    return TorchStep(loss, torch.optim.SGD(leaves, lr=0.01, momentum=0.9)), (x, y)


def torch_lstm(torch, params, batch, small):
    F = torch.nn.functional
    p = params[0]
    vocab, emb = p["embed"].shape
    hid = p["w_hh"].shape[0]
    lstm = torch.nn.LSTM(emb, hid)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(p["w_ih"].T.copy()))
        lstm.weight_hh_l0.copy_(torch.from_numpy(p["w_hh"].T.copy()))
        lstm.bias_ih_l0.copy_(torch.from_numpy(p["b"]))
        lstm.bias_hh_l0.zero_()
    rest, leaves = _leaves(torch, {k: p[k] for k in ("embed", "w_out", "b_out")})
    tokens = torch.from_numpy(batch[0]).long()

    def loss(tokens):
        hs, _ = lstm(F.embedding(tokens[:-1], rest["embed"]))
        logits = hs @ rest["w_out"] + rest["b_out"]
        return F.cross_entropy(logits.reshape(-1, vocab), tokens[1:].reshape(-1))
    opt = torch.optim.SGD(list(lstm.parameters()) + leaves, lr=0.1)
    return TorchStep(loss, opt), (tokens,)


def torch_transformer(torch, params, batch, small):
    F = torch.nn.functional
    p, leaves = _leaves(torch, params[0])
    tokens = torch.from_numpy(batch[0]).long()
    B, T = tokens.shape[0], tokens.shape[1] - 1
    vocab, d = params[0]["embed"].shape
    heads = 2 if small else 4
    dh = d // heads
    mask = torch.from_numpy(np.triu(np.full((T, T), -1e9, np.float32), 1))
    scale = float(np.float32(1.0 / np.sqrt(dh)))

    def ln(x, g, b):
        m = x.mean(-1, keepdim=True)
        v = ((x - m) ** 2).mean(-1, keepdim=True)
        return (x - m) / torch.sqrt(v + 1e-5) * g + b

    def loss(tokens):
        x = F.embedding(tokens[:, :-1], p["embed"]) + p["pos"]
        for bp in p["blocks"]:
            h = ln(x, bp["ln1_g"], bp["ln1_b"])
            qkv = (h @ bp["wqkv"]).reshape(B, T, 3, heads, dh).permute(2, 0, 3, 1, 4)
            a = torch.softmax((qkv[0] @ qkv[1].transpose(-1, -2)) * scale + mask, dim=-1)
            x = x + (a @ qkv[2]).transpose(1, 2).reshape(B, T, d) @ bp["wo"]
            h = ln(x, bp["ln2_g"], bp["ln2_b"])
            x = x + F.gelu(h @ bp["w1"] + bp["b1"], approximate="tanh") @ bp["w2"] + bp["b2"]
        x = ln(x, p["lnf_g"], p["lnf_b"])
        return F.cross_entropy((x @ p["head"]).reshape(-1, vocab), tokens[:, 1:].reshape(-1))
    opt = torch.optim.Adam(leaves, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    return TorchStep(loss, opt), (tokens,)


TORCH = {"mlp": torch_mlp, "convnet": torch_convnet, "lstm": torch_lstm,
         "transformer": torch_transformer}
