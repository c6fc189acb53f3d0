"""Train an encoder-decoder with attention (`needle.models.Seq2Seq`) to
reverse digit strings: "40721" -> "12704". A synthetic task with a
checkable answer: exact-match accuracy on held-out strings (never seen in
training), decoded greedily and with beam search.

Data: strings of 3 to `max_len` random digits, made on the fly; vocabulary
pad 0, bos 1, eos 2, digits 3..12. Sources are padded at the end
(sequence-first, (S, B)); the decoder input is bos + the reversed string,
its target the reversed string + eos; the loss is the cross-entropy over
the real target positions (padding masked out). One jitted step computes
the loss and gradients with `needle.value_and_grad` and updates with
`needle.optim.Adam`.

Run:  python examples/seq2seq.py                       # LSTM encoder
      python examples/seq2seq.py --cell gru --save s2s.npz --plot s2s.png
      python examples/seq2seq.py --load s2s.npz         # evaluate a checkpoint
"""
import argparse
import os
import sys
import time

import numpy as np

import needle
import needle.nn as nn
import needle.numpy as nnp
from needle import optim
from needle.models import Seq2Seq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # examples/_common.py
from _common import plot_curves  # noqa: E402

PAD, BOS, EOS, DIGIT0 = 0, 1, 2, 3
VOCAB = 13


def make_strings(rng, n, max_len, exclude=frozenset()):
    """n digit strings (tuples) of length 3..max_len, none in `exclude`."""
    out = []
    while len(out) < n:
        s = tuple(rng.integers(0, 10, rng.integers(3, max_len + 1)))
        if s not in exclude:
            out.append(s)
    return out


def encode(strings, max_len):
    """(src (max_len, N), tgt_in (max_len + 1, N), tgt_out (max_len + 1, N))
    int32, padded with PAD."""
    N = len(strings)
    src = np.full((max_len, N), PAD, np.int32)
    tgt_in = np.full((max_len + 1, N), PAD, np.int32)
    tgt_out = np.full((max_len + 1, N), PAD, np.int32)
    tgt_in[0] = BOS
    for j, s in enumerate(strings):
        d = np.array(s, np.int32) + DIGIT0
        src[:len(s), j] = d
        tgt_in[1:len(s) + 1, j] = d[::-1]
        tgt_out[:len(s), j] = d[::-1]
        tgt_out[len(s), j] = EOS
    return src, tgt_in, tgt_out


def masked_loss(logits, target):
    """Mean cross-entropy over the positions whose target is not PAD."""
    logp = nn.log_softmax(logits, axis=-1)
    picked = nnp.sum(nnp.multiply(logp, nn.one_hot(target, VOCAB)), axis=-1)
    real = nnp.astype(nnp.not_equal(target, PAD), logp.dtype)
    return nnp.divide(-nnp.sum(nnp.multiply(picked, real)), nnp.sum(real))


@needle.jit
def train_step(model, opt, src, tgt_in, tgt_out):
    loss, grads = needle.value_and_grad(lambda m: masked_loss(m(src, tgt_in), tgt_out))(model)
    opt.step(grads)
    return loss


def decoded(tokens):
    """Token columns (T, N) -> digit tuples, cut at the first EOS."""
    out = []
    for col in np.asarray(tokens).T:
        s = []
        for t in col:
            if t == EOS or t < DIGIT0:
                break
            s.append(int(t) - DIGIT0)
        out.append(tuple(s))
    return out


def exact_match(model, strings, max_len, beam_size=0, batch=500):
    """The fraction of `strings` whose reversal is decoded exactly (greedy,
    or beam search of beam_size > 0)."""
    model.eval()
    hits = 0
    greedy = needle.jit(lambda m, s: m.greedy(s, max_len + 1))
    for i in range(0, len(strings), batch):
        part = strings[i:i + batch]
        src, _, _ = encode(part, max_len)
        toks = model.beam_search(src, max_len + 1, beam_size) if beam_size else \
            greedy(model, src)
        hits += sum(d == s[::-1] for d, s in zip(decoded(toks), part))
    model.train()
    return hits / len(strings)


def build(cell, embedding_size, hidden_size, num_layers):
    return Seq2Seq(VOCAB, VOCAB, embedding_size, hidden_size, num_layers, cell=cell,
                   pad_id=PAD, bos_id=BOS, eos_id=EOS)


def main(steps=3000, batch_size=64, max_len=8, cell="lstm", embedding_size=32,
         hidden_size=128, num_layers=1, lr=3e-3, n_test=1000, beam_size=4, seed=0,
         eval_every=500, verbose=True, save=None, plot=None):
    """Train for `steps` batches; returns a dict with the held-out greedy and
    beam exact-match, the loss history and the run times."""
    t_start = time.perf_counter()
    needle.random.seed(seed)
    rng = np.random.default_rng(seed)
    test = make_strings(np.random.default_rng(seed + 1), n_test, max_len)
    held_out = frozenset(test)
    model = build(cell, embedding_size, hidden_size, num_layers)
    opt = optim.Adam(model.parameters(), lr=lr)

    def say(*a):
        if verbose:
            print(*a, flush=True)
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    say(f"reverse digit strings of length 3..{max_len}; Seq2Seq ({cell}, {num_layers} "
        f"layer(s), hidden {hidden_size}): {n_params:,} parameters; batch {batch_size}, Adam "
        f"lr {lr}; {n_test} held-out strings")
    history = {"step": [], "loss": [], "exact_match": []}
    t0, total, first_step = time.perf_counter(), 0.0, None
    for i in range(1, steps + 1):
        src, tgt_in, tgt_out = encode(make_strings(rng, batch_size, max_len, held_out),
                                      max_len)
        total += float(train_step(model, opt, src, tgt_in, tgt_out))
        if first_step is None:
            first_step = time.perf_counter() - t0
        if verbose and (i % 20 == 0 or i == steps):
            done, n = 30 * i // steps, i % eval_every or eval_every
            sys.stderr.write(f"\rstep {i:5d}/{steps} [{'#' * done}{'.' * (30 - done)}] "
                             f"{time.perf_counter() - t0:6.1f}s loss {total / n:.4f}")
            sys.stderr.flush()
        if i % eval_every == 0 or i == steps:
            n = i % eval_every or eval_every
            acc = exact_match(model, test, max_len)
            if verbose:
                sys.stderr.write("\r\033[K")
            history["step"].append(i)
            history["loss"].append(total / n)
            history["exact_match"].append(acc)
            say(f"step {i:5d}  train loss {total / n:.4f}  held-out exact match (greedy) "
                f"{acc * 100:6.2f}%  ({time.perf_counter() - t0:.1f} s)")
            total = 0.0
    train_time = time.perf_counter() - t0
    greedy_acc = history["exact_match"][-1]
    t1 = time.perf_counter()
    beam_acc = exact_match(model, test, max_len, beam_size) if beam_size else None
    beam_time = time.perf_counter() - t1
    if beam_size:
        say(f"held-out exact match: greedy {greedy_acc * 100:.2f}%, beam search (width "
            f"{beam_size}) {beam_acc * 100:.2f}% ({beam_time:.1f} s)")
    sample = test[:3]
    src, _, _ = encode(sample, max_len)
    for s, d in zip(sample, decoded(model.greedy(src, max_len + 1))):
        say(f"  {''.join(map(str, s)):>{max_len}} -> {''.join(map(str, d))}")
    total_time = time.perf_counter() - t_start
    say(f"run time {total_time:.1f} s: first step (trace + compile or load kernels) "
        f"{first_step:.1f} s, training {train_time:.1f} s")
    if save:
        model.save(save)
        say(f"checkpoint written to {save}")
    if plot:
        plot_curves(plot, say, [(history["step"], history["loss"], "train loss", "-")],
                    "step", yscale="log")
    return {"greedy": greedy_acc, "beam": beam_acc, "history": history, "model": model,
            "total_time": total_time}


def evaluate(path, cell="lstm", embedding_size=32, hidden_size=128, num_layers=1, max_len=8,
             n_test=1000, seed=0, beam_size=4):
    """Greedy and beam exact-match of a checkpoint written by --save."""
    model = build(cell, embedding_size, hidden_size, num_layers)
    model.load(path)
    test = make_strings(np.random.default_rng(seed + 1), n_test, max_len)
    return exact_match(model, test, max_len), exact_match(model, test, max_len, beam_size)


def _cli():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=8)
    ap.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", help="write the trained model's state_dict here (.npz)")
    ap.add_argument("--load", help="evaluate this checkpoint instead of training")
    ap.add_argument("--plot", help="write the loss curve here (.png; needs matplotlib)")
    a = ap.parse_args()
    if a.load:
        t0 = time.perf_counter()
        g, b = evaluate(a.load, a.cell, hidden_size=a.hidden, num_layers=a.layers,
                        max_len=a.max_len, seed=a.seed, beam_size=a.beam)
        print(f"{a.load}: held-out exact match greedy {g * 100:.2f}%, beam {b * 100:.2f}% "
              f"({time.perf_counter() - t0:.1f} s)")
        return
    main(a.steps, a.batch_size, a.max_len, a.cell, hidden_size=a.hidden, num_layers=a.layers,
         lr=a.lr, beam_size=a.beam, seed=a.seed, save=a.save, plot=a.plot)


if __name__ == "__main__":
    _cli()
