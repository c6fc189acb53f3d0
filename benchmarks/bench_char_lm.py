"""The character language model of examples/char_lm.py (the course's
LanguageModel: Embedding -> LSTM or Transformer -> Linear) in needle and,
when it is installed, the same configuration in PyTorch.

Run: python benchmarks/bench_char_lm.py [--small] [--model lstm|transformer] [--repeats N]
     python benchmarks/bench_char_lm.py --train [--epochs E]     # PyTorch's full run

Default: the training step (forward, backward, Adam update) of both, timed
side by side in one process, interleaved (benchmarks/common.py), one BLAS
thread each; the ratio needle / PyTorch. --train: PyTorch trains the
example's configuration on the same data, the same batching and truncated
BPTT with the state carried and detached, and reports the validation loss
per character beside the unigram entropy, as the example does.
PyTorch's model: nn.Embedding, nn.LSTM (its weights transposed relative to
the course's layout) or a pre-norm nn.TransformerEncoder with the course's
learned positions and causal mask, nn.Linear. The Transformers differ in
two details: PyTorch's heads split the model width (8 heads of 16 for width
128; the course's 8 heads of dim_head 32 project to 256) and it has one
pre-norm LayerNorm where the course has one each for q, k and v.
"""
import argparse
import importlib.util
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import needle  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import timeit_side_by_side  # noqa: E402


def _example():
    spec = importlib.util.spec_from_file_location(
        "needle_example_char_lm", os.path.join(HERE, "..", "examples", "char_lm.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CONFIGS = {  # the example's full-run configurations
    "lstm": dict(embedding_size=64, hidden_size=256, num_layers=1, lr=2e-3),
    "transformer": dict(embedding_size=128, hidden_size=256, num_layers=2, lr=1e-3),
}


def torch_model(kind, vocab, embedding_size, hidden_size, num_layers, seq_len):
    import torch
    import torch.nn as tnn

    class LM(tnn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = tnn.Embedding(vocab, embedding_size)
            if kind == "lstm":
                self.seq = tnn.LSTM(embedding_size, hidden_size, num_layers)
                width = hidden_size
            else:
                self.pos = tnn.Embedding(seq_len, embedding_size)
                layer = tnn.TransformerEncoderLayer(embedding_size, 8, hidden_size,
                                                    dropout=0.0, norm_first=True)
                self.seq = tnn.TransformerEncoder(layer, num_layers,
                                                  enable_nested_tensor=False)
                width = embedding_size
            self.linear = tnn.Linear(width, vocab)

        def forward(self, x, h=None):
            T, B = x.shape
            e = self.embedding(x)
            if kind == "lstm":
                y, h = self.seq(e, h)
            else:
                e = e + self.pos(torch.arange(T))[:, None, :]
                mask = torch.triu(torch.full((T, T), float("-inf")), 1)
                y = self.seq(e, mask=mask)
            return self.linear(y.reshape(T * B, -1)), h
    return LM()


def _torch_step(model, opt, x, y, h):
    import torch
    opt.zero_grad()
    logits, h = model(x, h)
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    opt.step()
    h = None if h is None else tuple(t.detach() for t in h)
    return loss, h


def bench_steps(kind, small, repeats):
    ex = _example()
    cfg = dict(CONFIGS[kind])
    lr = cfg.pop("lr")
    B, T, V = (4, 8, 97) if small else (32, 64, 97)
    if small:
        cfg.update(embedding_size=16, hidden_size=32)
    rng = np.random.default_rng(0)
    x = rng.integers(0, V, (T, B)).astype(np.int32)
    y = rng.integers(0, V, T * B).astype(np.int32)
    needle.random.seed(0)
    lm = ex.build(kind, V, cfg["embedding_size"], cfg["hidden_size"], cfg["num_layers"], T)
    opt = ex.optim.Adam(lm.parameters(), lr=lr)
    state = {"h": ex.initial_state(lm, B)}

    def needle_step():
        loss, state["h"] = ex.train_step(lm, opt, x, y, state["h"])
        return float(loss)
    fns = {"needle": needle_step}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        tm = torch_model(kind, V, cfg["embedding_size"], cfg["hidden_size"],
                         cfg["num_layers"], T)
        topt = torch.optim.Adam(tm.parameters(), lr=lr)
        tx, ty = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))
        tstate = {"h": None}

        def torch_step():
            loss, tstate["h"] = _torch_step(tm, topt, tx, ty, tstate["h"])
            return loss.item()
        fns["pytorch"] = torch_step
    t = timeit_side_by_side(fns, repeats=repeats)
    print(f"{kind} training step (T={T}, B={B}, {cfg}), one thread, median of {repeats}:")
    for k, v in t.items():
        print(f"  {k:8s} {v * 1e3:9.2f} ms")
    if "pytorch" in t:
        print(f"  needle / pytorch = {t['needle'] / t['pytorch']:.2f}")
    else:
        print("  (PyTorch not installed: pip install torch to compare)")
    return t


def train_torch(kind, epochs, max_train=1 << 20, max_valid=1 << 18, batch_size=32, bptt=64,
                seed=0):
    """The example's run in PyTorch: returns (valid loss per char, entropy)."""
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    ex = _example()
    train_ids, valid_ids, vocab = ex.load_text(max_train, max_valid)
    V = len(vocab)
    entropy = ex.unigram_entropy(train_ids, V)
    cfg = dict(CONFIGS[kind])
    lr = cfg.pop("lr")
    model = torch_model(kind, V, cfg["embedding_size"], cfg["hidden_size"], cfg["num_layers"],
                        bptt)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    train = torch.from_numpy(ex.columns(train_ids, batch_size).astype(np.int64))
    valid = torch.from_numpy(ex.columns(valid_ids, batch_size).astype(np.int64))
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        h, total, n = None, 0.0, 0
        for x, y in ex.windows(train, bptt):
            loss, h = _torch_step(model, opt, x, y.reshape(-1), h)
            total, n = total + loss.item(), n + 1
        with torch.no_grad():
            h, vt, vn = None, 0.0, 0
            for x, y in ex.windows(valid, bptt):
                logits, h = model(x, h)
                vt += float(torch.nn.functional.cross_entropy(logits, y.reshape(-1)))
                vn += 1
        print(f"pytorch {kind} epoch {epoch}: train loss {total / n:.4f}  valid loss "
              f"{vt / vn:.4f} nats/char ({vt / vn / entropy:.3f} x unigram entropy "
              f"{entropy:.3f})  {time.perf_counter() - t0:.1f} s", flush=True)
    return vt / vn, entropy


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--model", choices=list(CONFIGS), default=None)
    ap.add_argument("--train", action="store_true", help="train the PyTorch model fully")
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    kinds = [a.model] if a.model else list(CONFIGS)
    for kind in kinds:
        if a.train:
            train_torch(kind, a.epochs)
        else:
            bench_steps(kind, a.small, a.repeats)


if __name__ == "__main__":
    main()
