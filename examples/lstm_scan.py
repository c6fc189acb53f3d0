"""A character-level LSTM language model written JAX-style with
`needle.lax.scan`, trained with a jitted SGD step on text the environment
has (the source of Python's `this` module: the Zen of Python, ROT13-ed).

Run: python examples/lstm_scan.py [--steps N] [--seq T] [--hidden H]

The time loop is one `scan`: the program, its trace and its compile time
do not grow with the sequence length. `loss_unrolled` is the same model
with a Python `for` over time (the trace grows with T), kept for the
benchmark (benchmarks/bench_control.py) and as a reference in tests.
"""
import argparse
import inspect
import time

import numpy as np

import needle
import needle.numpy as nnp
from needle import lax


def corpus():
    """(int32 character ids, vocabulary) of a text Python ships."""
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):     # importing `this` prints the Zen
        import this
    text = inspect.getsource(this)
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text], np.int32)
    return ids, vocab


def init_params(vocab, hidden, seed=0):
    rng = np.random.default_rng(seed)
    s = 1.0 / np.sqrt(hidden)

    def u(*shape):
        return rng.uniform(-s, s, shape).astype(np.float32)
    return {"embed": u(vocab, hidden), "w_ih": u(hidden, 4 * hidden),
            "w_hh": u(hidden, 4 * hidden), "b": np.zeros(4 * hidden, np.float32),
            "w_out": u(hidden, vocab), "b_out": np.zeros(vocab, np.float32)}


def cell(p, carry, x):
    """One LSTM step (gates i, f, g, o as in torch.nn.LSTM)."""
    h, c = carry
    gates = x @ p["w_ih"] + h @ p["w_hh"] + p["b"]
    H = h.shape[-1]
    i = needle.nn.sigmoid(gates[:, :H])
    f = needle.nn.sigmoid(gates[:, H:2 * H])
    g = nnp.tanh(gates[:, 2 * H:3 * H])
    o = needle.nn.sigmoid(gates[:, 3 * H:])
    c = f * c + i * g
    h = o * nnp.tanh(c)
    return (h, c), h


def _head_loss(p, hs, targets):
    """Mean cross-entropy of the next character; hs: (T, B, H), targets (T, B)."""
    logits = hs @ p["w_out"] + p["b_out"]
    logp = needle.nn.log_softmax(logits, axis=-1)
    onehot = needle.nn.one_hot(targets, logits.shape[-1])
    return -(logp * onehot).sum(axis=-1).mean()


def loss(p, tokens, remat=False):
    """tokens: (T + 1, B) int32; the loss of predicting tokens[1:] from tokens[:-1].
    remat=True wraps the cell in needle.checkpoint: the backward pass
    recomputes its gates instead of storing them for every step."""
    xs = nnp.take(p["embed"], tokens[:-1], axis=0)           # (T, B, H)
    B, H = tokens.shape[1], p["w_hh"].shape[0]
    h0 = nnp.zeros((B, H), np.float32)

    def step(carry, x):
        return cell(p, carry, x)
    _, hs = lax.scan(needle.checkpoint(step) if remat else step, (h0, h0), xs)
    return _head_loss(p, hs, tokens[1:])


def loss_unrolled(p, tokens):
    """`loss` with a Python loop over time: one traced cell per step."""
    xs = nnp.take(p["embed"], tokens[:-1], axis=0)
    B, H = tokens.shape[1], p["w_hh"].shape[0]
    carry = (nnp.zeros((B, H), np.float32), nnp.zeros((B, H), np.float32))
    hs = []
    for t in range(xs.shape[0]):
        carry, h = cell(p, carry, xs[t])
        hs.append(h)
    return _head_loss(p, nnp.stack(hs), tokens[1:])


def make_step(loss_fn, lr=0.5):
    @needle.jit
    def step(p, tokens):
        val, g = needle.value_and_grad(loss_fn)(p, tokens)
        return val, needle.tree_util.tree_map(lambda w, d: w - lr * d, p, g)
    return step


def batches(ids, seq, batch, rng):
    """(seq + 1, batch) windows of the text at random offsets."""
    starts = rng.integers(0, len(ids) - seq - 1, batch)
    return np.stack([ids[s:s + seq + 1] for s in starts], axis=1)


def main(steps=200, seq=32, batch=16, hidden=64, verbose=True):
    ids, vocab = corpus()
    p = init_params(len(vocab), hidden)
    step = make_step(loss)
    rng = np.random.default_rng(0)
    losses = []
    t0 = time.perf_counter()
    for k in range(steps):
        val, p = step(p, batches(ids, seq, batch, rng))
        losses.append(float(val))
        if verbose and (k % 50 == 0 or k == steps - 1):
            print(f"step {k:4d}  loss {losses[-1]:.3f}  ({time.perf_counter() - t0:.1f} s)")
    return {"losses": losses, "params": p}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64)
    a = ap.parse_args()
    main(a.steps, a.seq, hidden=a.hidden)
