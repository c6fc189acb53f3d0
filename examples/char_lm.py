"""Train the course's `LanguageModel` (hw4: Embedding -> RNN / LSTM /
Transformer -> Linear) as a character-level language model on Python's
standard-library sources (no download), the course's `train_ptb` way:
the text batchified into columns, truncated BPTT windows of `bptt`
characters, the hidden state carried from window to window and detached
(a jitted step returns it as a plain array, so no gradient flows back
through it).

Reports the validation loss per character (nats; a fixed split by file:
`needle.data.load_stdlib_text`) beside the unigram entropy of the training
characters (the loss of a model that ignores context), and a sample drawn
with temperature and top-k from `needle.random` (one jitted step per
character, the hidden state carried).

Run:  python examples/char_lm.py --model lstm --epochs 2 --save lm.npz --plot lm.png
      python examples/char_lm.py --model transformer
      python examples/char_lm.py --model lstm --load lm.npz     # evaluate and sample
"""
import argparse
import glob
import os
import sys
import sysconfig
import time

import numpy as np

import needle
import needle.nn as nn
import needle.numpy as nnp
from needle import lax, optim
from needle.models import LanguageModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # examples/_common.py
from _common import plot_curves  # noqa: E402

try:
    from needle.data import load_stdlib_text, batchify
except ImportError:                                   # an older needle.data
    load_stdlib_text = batchify = None

PRINTABLE = "\t\n" + "".join(chr(c) for c in range(32, 127))


def load_text(max_train=1 << 20, max_valid=1 << 18):
    """(train ids, valid ids, vocabulary string): needle.data's stdlib corpus,
    or the same split (every tenth file for validation) read here."""
    if load_stdlib_text is not None:
        tr, va = load_stdlib_text(("train", "valid"), max_bytes=None)
        return tr.ids[:max_train], va.ids[:max_valid], tr.vocab
    files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    table = {c: i for i, c in enumerate(PRINTABLE)}
    out = []
    for valid, cap in ((False, max_train), (True, max_valid)):
        text = ""
        for k, f in enumerate(files):
            if (k % 10 == 9) == valid and len(text) < cap:
                with open(f, encoding="utf-8", errors="replace") as fh:
                    text += fh.read()
        out.append(np.array([table.get(c, table["?"]) for c in text[:cap]], np.int32))
    return out[0], out[1], PRINTABLE


def columns(ids, batch_size):
    """The course's batchify: (n, batch_size) int32, each column contiguous."""
    if batchify is not None:
        return batchify(ids, batch_size, None, np.int32)
    n = len(ids) // batch_size
    return np.ascontiguousarray(np.asarray(ids[:n * batch_size]).reshape(batch_size, n).T,
                                dtype=np.int32)


def unigram_entropy(ids, vocab_size):
    """-sum p log p (nats) of the character frequencies."""
    p = np.bincount(ids, minlength=vocab_size) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def initial_state(model, batch_size):
    """Zeros of the model's hidden state (the Transformer ignores it)."""
    seq = model.seq_model
    if isinstance(seq, nn.LSTM):
        z = np.zeros((seq.num_layers, batch_size, seq.hidden_size), np.float32)
        return (z, z)
    if isinstance(seq, nn.RNN):
        return np.zeros((seq.num_layers, batch_size, seq.hidden_size), np.float32)
    return None


_loss = nn.SoftmaxLoss()


@needle.jit
def train_step(model, opt, x, y, h):
    """One BPTT window: the loss and the new hidden state (returned as
    plain arrays: carried to the next window, detached)."""
    def loss(m):
        logits, h2 = m(x, h)
        return _loss(logits, y), h2
    (value, h2), grads = needle.value_and_grad(loss, has_aux=True)(model)
    opt.step(grads)
    return value, (None if model.seq_model_name == "transformer" else h2)


@needle.jit
def eval_step(model, x, y, h):
    logits, h2 = model(x, h)
    return _loss(logits, y), (None if model.seq_model_name == "transformer" else h2)


def windows(cols, bptt):
    """(x (bptt, B), y (bptt * B,)) of every full window of the columns."""
    for i in range(0, len(cols) - 1 - bptt + 1, bptt):
        yield cols[i:i + bptt], cols[i + 1:i + 1 + bptt].reshape(-1)


def evaluate(model, cols, bptt):
    """Mean loss per character over every full window, state carried."""
    model.eval()
    h, total, n = initial_state(model, cols.shape[1]), 0.0, 0
    for x, y in windows(cols, bptt):
        value, h = eval_step(model, x, y, h)
        total, n = total + float(value), n + 1
    model.train()
    return total / max(n, 1)


def _pick(key, logits, temperature, top_k):
    z = logits / temperature
    kth = lax.top_k(z, top_k)[0][..., -1:]
    return needle.random.categorical(key, nnp.where(z < kth, -np.inf, z))


_pick = needle.jit(_pick, static_argnums=3)


@needle.jit
def _feed(model, x, h):
    return model(x, h)


def sample(model, prompt, n, temperature=0.8, top_k=10, seed=0, window=None):
    """n characters after the ids `prompt`, drawn from softmax(logits /
    temperature) restricted to the top_k most likely; the RNN / LSTM carry
    their state one character at a time, the Transformer re-reads the last
    `window` characters."""
    model.eval()
    key = needle.random.PRNGKey(seed)
    out = list(int(c) for c in prompt)
    transformer = model.seq_model_name == "transformer"
    h = initial_state(model, 1)
    if transformer:
        ctx = np.array(out[-window:], np.int32)[:, None]
        logits, _ = _feed(model, ctx, None)
    else:
        logits, h = _feed(model, np.array(out, np.int32)[:, None], h)
    for _ in range(n):
        key, sub = needle.random.split(key)
        c = int(_pick(sub, np.asarray(logits)[-1], np.float32(temperature), top_k))
        out.append(c)
        if transformer:
            logits, _ = _feed(model, np.array(out[-window:], np.int32)[:, None], None)
        else:
            logits, h = _feed(model, np.array([[c]], np.int32), h)
    model.train()
    return out[len(prompt):]


def build(model, vocab, embedding_size, hidden_size, num_layers, bptt):
    return LanguageModel(embedding_size, vocab, hidden_size, num_layers, seq_model=model,
                         seq_len=bptt)


def main(model="lstm", epochs=1, batch_size=32, bptt=64, embedding_size=64, hidden_size=256,
         num_layers=1, lr=2e-3, max_train=1 << 20, max_valid=1 << 18, max_steps=None, seed=0,
         n_sample=300, verbose=True, save=None, plot=None):
    """Train; returns a dict with the validation loss per character, the
    unigram entropy, their ratio, the sample and the run times."""
    t_start = time.perf_counter()
    needle.random.seed(seed)
    train_ids, valid_ids, vocab = load_text(max_train, max_valid)
    V = len(vocab)
    train, valid = columns(train_ids, batch_size), columns(valid_ids, batch_size)
    entropy = unigram_entropy(train_ids, V)
    lm = build(model, V, embedding_size, hidden_size, num_layers, bptt)
    opt = optim.Adam(lm.parameters(), lr=lr)

    def say(*a):
        if verbose:
            print(*a, flush=True)
    n_params = sum(int(np.prod(p.shape)) for p in lm.parameters())
    say(f"stdlib sources: {len(train_ids):,} train / {len(valid_ids):,} valid characters, "
        f"{V} symbols, unigram entropy {entropy:.3f} nats/char; LanguageModel({model}): "
        f"{n_params:,} parameters; batch {batch_size}, bptt {bptt}, Adam lr {lr}")
    n_windows = (len(train) - 1) // bptt
    history = {"loss": [], "valid": [], "epoch_time": []}
    first_step, steps = None, 0
    for epoch in range(1, epochs + 1):
        t0, total, n = time.perf_counter(), 0.0, 0
        h = initial_state(lm, batch_size)
        for x, y in windows(train, bptt):
            value, h = train_step(lm, opt, x, y, h)
            total, n, steps = total + float(value), n + 1, steps + 1
            if first_step is None:
                first_step = time.perf_counter() - t0
            if verbose and (n % 10 == 0 or n == n_windows):
                done = 30 * n // n_windows
                sys.stderr.write(f"\repoch {epoch}/{epochs} [{'#' * done}{'.' * (30 - done)}] "
                                 f"{n}/{n_windows} {time.perf_counter() - t0:6.1f}s loss "
                                 f"{total / n:.4f}")
                sys.stderr.flush()
            if max_steps and steps >= max_steps:
                break
        if verbose:
            sys.stderr.write("\r\033[K")
        v = evaluate(lm, valid, bptt)
        dt = time.perf_counter() - t0
        history["loss"].append(total / n)
        history["valid"].append(v)
        history["epoch_time"].append(dt)
        say(f"epoch {epoch}  train loss {total / n:.4f}  valid loss {v:.4f} nats/char "
            f"({v / entropy:.3f} x unigram entropy)  ({dt:.1f} s)")
        if max_steps and steps >= max_steps:
            break
    prompt = valid_ids[:bptt]
    text = "".join(vocab[c] for c in sample(lm, prompt, n_sample, seed=seed, window=bptt))
    say("sample (temperature 0.8, top-k 10) after the prompt " +
        repr("".join(vocab[c] for c in prompt[-40:])) + ":\n" + text)
    total_time = time.perf_counter() - t_start
    say(f"run time {total_time:.1f} s: first step (trace + compile or load kernels) "
        f"{first_step:.1f} s, training {sum(history['epoch_time']):.1f} s")
    if save:
        lm.save(save)
        say(f"checkpoint written to {save}")
    if plot:
        e = range(1, len(history["loss"]) + 1)
        plot_curves(plot, say, [(e, history["loss"], "train loss", "o-"),
                                (e, history["valid"], "valid loss", "o-")],
                    "epoch", ylabel="nats / char", hline=(entropy, "unigram entropy"))
    return {"valid": history["valid"][-1], "entropy": entropy,
            "ratio": history["valid"][-1] / entropy, "sample": text, "history": history,
            "model": lm, "total_time": total_time}


def _cli():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["rnn", "lstm", "transformer"], default="lstm")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=64)
    ap.add_argument("--embedding", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--max-train", type=int, default=1 << 20, help="training characters")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", help="write the trained model's state_dict here (.npz)")
    ap.add_argument("--load", help="evaluate this checkpoint and sample from it")
    ap.add_argument("--plot", help="write the loss curves here (.png; needs matplotlib)")
    a = ap.parse_args()
    if a.load:
        t0 = time.perf_counter()
        _, valid_ids, vocab = load_text(1, 1 << 18)
        lm = build(a.model, len(vocab), a.embedding, a.hidden, a.layers, a.bptt)
        lm.load(a.load)
        v = evaluate(lm, columns(valid_ids, a.batch_size), a.bptt)
        text = "".join(vocab[c] for c in sample(lm, valid_ids[:a.bptt], 300, seed=a.seed,
                                                window=a.bptt))
        print(f"{a.load}: valid loss {v:.4f} nats/char ({time.perf_counter() - t0:.1f} s)\n"
              f"{text}")
        return
    main(a.model, a.epochs, a.batch_size, a.bptt, a.embedding, a.hidden, a.layers, a.lr,
         a.max_train, seed=a.seed, save=a.save, plot=a.plot)


if __name__ == "__main__":
    _cli()
