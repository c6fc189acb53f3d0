"""Model-sized training steps: compile time and step time (issue 13).

Run: python benchmarks/bench_models.py [--small] [--repeats N] [--models mlp,convnet,...]
     [--before DIR] [--threads N]
     python benchmarks/bench_models.py --split-vs-prange   (single kernels)

Four functional models (hand-written, as a JAX user writes them), each a
jitted training step on random data of a fixed seed:
- mlp:         784-512-512-10, batch 256, SGD with momentum;
- convnet:     3x3 convolutions 16-32-64, each stage a residual block and a
               2x2 max-pool (the last a global mean), channels last, 32x32x3
               images, batch 32, SGD with momentum;
- lstm:        LSTM language model (vocab 64, embedding 64, hidden 128, 32
               steps, batch 16), the time loop one `lax.scan`, SGD;
- transformer: pre-LayerNorm Transformer LM (2 layers, d 128, 4 heads, MLP
               512, 64 tokens, batch 16, vocab 64), Adam written functionally.

Per model, each number from its own fresh Python process:
- cold: the first call with an empty kernel cache (a fresh NEEDLE_CACHE_DIR):
  trace, passes, fusion, code generation and every Numba compile; (CPU): the
  CPU time of that call (compiling is one thread's work: on a loaded machine
  this grows less than the wall time);
- warm: the first call in a new process with that cache (kernels loaded from
  disk; tracing and fusion run again);
- step: the median of --repeats calls after the first (in the warm process);
- cores: CPU seconds per wall second over those calls (the threads a step
  really used; JAX's process is pinned to --threads cores, since XLA's CPU
  client ignores its thread flags and used both cores of this machine);
- groups: kernel launches of one step (kernel groups, loop bodies' included);
  distinct: how many different kernels those are (the content-hash cache
  compiles each once: identical layers share theirs); compiled: the kernels
  Numba compiled in the cold process (eager work outside the step included).
JAX (jax.jit, CPU) is timed with the same model code when it is installed:
its first call (compile) and its step. Every process runs with one thread
for BLAS, OpenMP, Numba and XLA unless --threads says otherwise. --small runs tiny sizes (a smoke run,
as tests/test_examples.py does); --cache DIR uses DIR for every needle
process instead of a fresh folder per model (then 'cold' is only as cold as
DIR). A model `lstm:T` is the LSTM with T time steps (`--models
lstm:10,lstm:1000`: how compile time grows with a scan's length).
--before DIR also times, in the same run and interleaved, the needle
importable from DIR (PYTHONPATH=DIR: an older checkout, for before/after
rows). Each row ends with the 1-minute load average when it finished (a
shared machine's other work slows compiles).

Module-API and PyTorch rows (issue 15 item 5, issue 13's peers): a model
`NAME:module` is the same model written with needle.nn layers, needle.optim
and a jitted `step(model, opt, x, y)` (benchmarks/bench_models_peers.py:
Sequential of Linear/ReLU + SoftmaxLoss; Conv / Residual / MaxPool2d
blocks, NCHW; LanguageModel(seq_model="lstm") and ("transformer") from
needle.models, Adam for the Transformer), timed as the functional rows
(cold, warm, step, kernels); `NAME:torch` is the same model in PyTorch
eager (NCHW convolutions, nn.LSTM; torch.set_num_threads(--threads);
skipped with a note where torch is not installed). For each model with a
:module or :torch entry, one more process times side by side, interleaved
(one step of each per round, median of --repeats rounds), the functional
needle step, the module step and PyTorch's step, from the same initial
weights where the layers allow (the first losses are printed: equal where
the models are), and prints module / functional and needle / PyTorch
ratios in a second table. `lstm:module:64` combines a variant with T.
"""
import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

MODELS = ("mlp", "convnet", "lstm", "transformer")
VARIANTS = ("module", "torch")
DEFAULT = ",".join(f"{m},{m}:module,{m}:torch" for m in MODELS)


def parse_model(spec):
    """'lstm:module:64' -> ('lstm', 64, 'module'); the variant is
    'functional' unless :module or :torch is given; T only for lstm."""
    name, *rest = spec.split(":")
    T, variant = None, "functional"
    if name not in MODELS:
        raise ValueError(f"unknown model {spec!r}; models are {', '.join(MODELS)}, each "
                         f"optionally :module or :torch (lstm also :T)")
    for r in rest:
        if r.isdigit() and name == "lstm":
            T = int(r)
        elif r in VARIANTS:
            variant = r
        else:
            raise ValueError(f"model {spec!r}: {r!r} is neither a variant "
                             f"({', '.join(VARIANTS)}) nor (for lstm) a number of steps")
    return name, T, variant


# --- the operations, for needle and for JAX -----------------------------------------
class NeedleOps:
    name = "needle"

    def __init__(self):
        import needle
        import needle.nn as nn
        import needle.numpy as nnp
        self.needle, self.np, self.nn = needle, nnp, nn
        self.scan = needle.lax.scan
        self.value_and_grad = needle.value_and_grad
        self.tree_map = needle.tree_util.tree_map

    def conv(self, x, w, padding):
        return self.nn.conv(x, w, 1, padding)

    def max_pool(self, x, k):
        return self.nn.max_pool(x, k)

    def jit(self, f, donate=()):
        return self.needle.jit(f, donate_argnums=donate)

    @staticmethod
    def block(x):
        return x


class JaxOps:
    name = "jax"

    def __init__(self, jax):
        import jax.numpy as jnp
        self.jax, self.np, self.nn = jax, jnp, jax.nn
        self.scan = jax.lax.scan
        self.value_and_grad = jax.value_and_grad
        self.tree_map = jax.tree_util.tree_map

    def conv(self, x, w, padding):
        return self.jax.lax.conv_general_dilated(
            x, w, (1, 1), [(padding, padding)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def max_pool(self, x, k):
        return self.jax.lax.reduce_window(x, -self.np.inf, self.jax.lax.max, (1, k, k, 1),
                                          (1, k, k, 1), "VALID")

    def jit(self, f, donate=()):
        return self.jax.jit(f)

    @staticmethod
    def block(x):
        return x.block_until_ready() if hasattr(x, "block_until_ready") else x


# --- the models: (step, state, batch); step(*state, *batch) -> (loss, *state) ----
def _uniform(rng, *shape, scale=None):
    scale = 1.0 / np.sqrt(shape[-2] if len(shape) > 1 else shape[0]) if scale is None else scale
    return rng.uniform(-scale, scale, shape).astype(np.float32)


def _cross_entropy(F, logits, labels, classes):
    logp = F.nn.log_softmax(logits, axis=-1)
    return -(logp * F.nn.one_hot(labels, classes)).sum(axis=-1).mean()


def _sgd_momentum(F, loss, lr=0.01, mu=0.9):
    def step(p, m, *batch):
        val, g = F.value_and_grad(loss)(p, *batch)
        m = F.tree_map(lambda m, g: mu * m + g, m, g)
        p = F.tree_map(lambda p, m: p - lr * m, p, m)
        return val, p, m
    return step


def mlp(F, rng, small):
    sizes = (784, 64, 64, 10) if small else (784, 512, 512, 10)
    batch = 32 if small else 256
    p = [(_uniform(rng, a, b), np.zeros(b, np.float32)) for a, b in zip(sizes, sizes[1:])]

    def loss(p, x, y):
        h = x
        for w, b in p[:-1]:
            h = F.nn.relu(h @ w + b)
        w, b = p[-1]
        return _cross_entropy(F, h @ w + b, y, sizes[-1])
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch).astype(np.int32)
    return F.jit(_sgd_momentum(F, loss), donate=(0, 1)), (p, _zeros(p)), (x, y)


def convnet(F, rng, small):
    chans = (4, 8) if small else (16, 32, 64)
    hw, batch = (8, 4) if small else (32, 32)

    def conv_p(cin, cout):
        return (_uniform(rng, 3, 3, cin, cout, scale=np.sqrt(2.0 / (9 * cin))),
                np.zeros(cout, np.float32))
    p, cin = [], 3
    for c in chans:         # a stage: conv, then a residual block of two convs
        p.append([conv_p(cin, c), conv_p(c, c), conv_p(c, c)])
        cin = c
    head = (_uniform(rng, chans[-1], 10), np.zeros(10, np.float32))

    def loss(params, x, y):
        stages, (wh, bh) = params
        h = x
        for k, ((w0, b0), (w1, b1), (w2, b2)) in enumerate(stages):
            h = F.nn.relu(F.conv(h, w0, 1) + b0)
            r = F.nn.relu(F.conv(h, w1, 1) + b1)
            h = F.nn.relu(h + F.conv(r, w2, 1) + b2)
            if k < len(stages) - 1:
                h = F.max_pool(h, 2)
        h = h.mean(axis=(1, 2))
        return _cross_entropy(F, h @ wh + bh, y, 10)
    params = (p, head)
    x = rng.standard_normal((batch, hw, hw, 3)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    return F.jit(_sgd_momentum(F, loss), donate=(0, 1)), (params, _zeros(params)), (x, y)


def _zeros(tree):
    """Fresh zero arrays shaped as the leaves of a tree of dicts, lists, tuples."""
    if isinstance(tree, dict):
        return {k: _zeros(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_zeros(t) for t in tree)
    return np.zeros_like(tree)


def lstm(F, rng, small, T=None):
    vocab, emb, hid, T0, batch = (16, 8, 16, 4, 2) if small else (64, 64, 128, 32, 16)
    T = T or T0
    p = {"embed": _uniform(rng, vocab, emb, scale=0.1), "w_ih": _uniform(rng, emb, 4 * hid),
         "w_hh": _uniform(rng, hid, 4 * hid), "b": np.zeros(4 * hid, np.float32),
         "w_out": _uniform(rng, hid, vocab), "b_out": np.zeros(vocab, np.float32)}

    def loss(p, tokens):                 # tokens: (T + 1, B)
        xs = F.np.take(p["embed"], tokens[:-1], axis=0)
        xw = xs @ p["w_ih"] + p["b"]     # every step's input projection at once

        def cell(carry, x):
            h, c = carry
            g = x + h @ p["w_hh"]
            i = F.nn.sigmoid(g[:, :hid])
            f = F.nn.sigmoid(g[:, hid:2 * hid])
            u = F.np.tanh(g[:, 2 * hid:3 * hid])
            o = F.nn.sigmoid(g[:, 3 * hid:])
            c = f * c + i * u
            h = o * F.np.tanh(c)
            return (h, c), h
        h0 = F.np.zeros((tokens.shape[1], hid), np.float32)
        _, hs = F.scan(cell, (h0, h0), xw)
        return _cross_entropy(F, hs @ p["w_out"] + p["b_out"], tokens[1:], vocab)

    def step(p, tokens):
        val, g = F.value_and_grad(loss)(p, tokens)
        return val, F.tree_map(lambda w, d: w - 0.1 * d, p, g)
    tokens = rng.integers(0, vocab, (T + 1, batch)).astype(np.int32)
    return F.jit(step, donate=(0,)), (p,), (tokens,)


def _layernorm(F, x, g, b):
    m = x.mean(axis=-1, keepdims=True)
    v = ((x - m) ** 2).mean(axis=-1, keepdims=True)
    return (x - m) / F.np.sqrt(v + 1e-5) * g + b


def transformer(F, rng, small, layers=2):
    vocab, d, heads, mlp_d, T, batch = (16, 16, 2, 32, 8, 2) if small else \
        (64, 128, 4, 512, 64, 16)
    dh = d // heads

    def block_p():
        return {"ln1_g": np.ones(d, np.float32), "ln1_b": np.zeros(d, np.float32),
                "wqkv": _uniform(rng, d, 3 * d), "wo": _uniform(rng, d, d),
                "ln2_g": np.ones(d, np.float32), "ln2_b": np.zeros(d, np.float32),
                "w1": _uniform(rng, d, mlp_d), "b1": np.zeros(mlp_d, np.float32),
                "w2": _uniform(rng, mlp_d, d), "b2": np.zeros(d, np.float32)}
    p = {"embed": _uniform(rng, vocab, d, scale=0.1), "pos": _uniform(rng, T, d, scale=0.1),
         "blocks": [block_p() for _ in range(layers)],
         "lnf_g": np.ones(d, np.float32), "lnf_b": np.zeros(d, np.float32),
         "head": _uniform(rng, d, vocab)}
    mask = np.triu(np.full((T, T), -1e9, np.float32), 1)
    scale = np.float32(1.0 / np.sqrt(dh))

    def attention(bp, x):
        B = x.shape[0]
        qkv = (x @ bp["wqkv"]).reshape(B, T, 3, heads, dh).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                    # (B, heads, T, dh)
        a = F.nn.softmax((q @ k.transpose(0, 1, 3, 2)) * scale + mask, axis=-1)
        return (a @ v).transpose(0, 2, 1, 3).reshape(B, T, d) @ bp["wo"]

    def mlp_block(bp, x):
        return F.nn.gelu(x @ bp["w1"] + bp["b1"]) @ bp["w2"] + bp["b2"]

    def loss(p, tokens):                 # tokens: (B, T + 1)
        x = F.np.take(p["embed"], tokens[:, :-1], axis=0) + p["pos"]
        for bp in p["blocks"]:
            x = x + attention(bp, _layernorm(F, x, bp["ln1_g"], bp["ln1_b"]))
            x = x + mlp_block(bp, _layernorm(F, x, bp["ln2_g"], bp["ln2_b"]))
        x = _layernorm(F, x, p["lnf_g"], p["lnf_b"])
        return _cross_entropy(F, x @ p["head"], tokens[:, 1:], vocab)

    b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8

    def step(p, m, v, t, tokens):
        val, g = F.value_and_grad(loss)(p, tokens)
        t = t + 1.0
        m = F.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = F.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        c1 = 1.0 - F.np.power(np.float32(b1), t)
        c2 = 1.0 - F.np.power(np.float32(b2), t)
        p = F.tree_map(lambda p, m, v: p - lr * (m / c1) / (F.np.sqrt(v / c2) + eps), p, m, v)
        return val, p, m, v, t
    tokens = rng.integers(0, vocab, (batch, T + 1)).astype(np.int32)
    return F.jit(step, donate=(0, 1, 2)), (p, _zeros(p), _zeros(p), np.float32(0.0)), (tokens,)


BUILD = {"mlp": mlp, "convnet": convnet, "lstm": lstm, "transformer": transformer}


# --- split rows vs prange, one kernel at a time ------------------------------------
_SPLIT_KERNELS = {
    "chain": """
def kernel(x, o, lo, hi):
    for i in range(lo, hi):
        for j in range(x.shape[1]):
            v = x[i, j]
            o[i, j] = (v * np.float32(2.0) + np.float32(1.0)) * v - np.float32(0.5) * abs(v)
""",
    "softmax": """
def kernel(x, o, lo, hi):
    for i in range(lo, hi):
        m = x[i, 0]
        for j in range(x.shape[1]):
            m = max(m, x[i, j])
        s = np.float32(0.0)
        for j in range(x.shape[1]):
            e = np.exp(x[i, j] - m)
            o[i, j] = e
            s += e
        r = np.float32(1.0) / s
        for j in range(x.shape[1]):
            o[i, j] *= r
""",
}


def split_vs_prange(repeats):
    """Per kernel and size: run time (median) of one serial call, of the
    runtime's split (needle.runtime.parallel.splitter: rows in one chunk per
    thread), and of the same loop as a `prange` (parallel=True), timed
    interleaved in one process; and the CPU time Numba takes to compile the
    serial and the prange function."""
    # as needle set it before its prange kernels: idle OpenMP threads do not spin
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    import numba
    from needle.runtime import parallel
    threads = int(os.environ.get("NEEDLE_NUM_THREADS") or len(os.sched_getaffinity(0)))
    print(f"split vs prange: {threads} threads, numba threading layer default, "
          f"load {os.getloadavg()[0]:.1f}")
    flags = dict(error_model="numpy", nogil=True, fastmath={"reassoc", "contract", "nsz"})
    sig = "void(float32[:, ::1], float32[:, ::1], int64, int64)"
    for name, src in _SPLIT_KERNELS.items():
        ns = {"np": np, "numba": numba}
        exec(src, ns)
        c0 = time.process_time()
        ser = numba.njit(sig, **flags)(ns["kernel"])
        c1 = time.process_time()
        psrc = src.replace("kernel(x, o, lo, hi)", "kernel(x, o)") \
                  .replace("range(lo, hi)", "numba.prange(x.shape[0])")
        exec(psrc, ns)
        c2 = time.process_time()
        par = numba.njit("void(float32[:, ::1], float32[:, ::1])", parallel=True,
                         **flags)(ns["kernel"])
        c3 = time.process_time()
        print(f"  {name}: compile (CPU) serial {c1 - c0:.2f} s, prange {c3 - c2:.2f} s")
        for n in (1 << 16, 1 << 18, 1 << 20, 1 << 22):
            x = np.random.default_rng(0).standard_normal((n // 256, 256)).astype(np.float32)
            o = np.empty_like(x)
            rows = x.shape[0]
            sp = parallel.splitter(ser, rows, min(threads, rows)) if threads > 1 else None
            runs = {"serial": lambda: ser(x, o, 0, rows), "prange": lambda: par(x, o)}
            if sp is not None:
                runs["split"] = lambda: sp(x, o)
            times = {k: [] for k in runs}
            for _ in range(repeats):
                for k, fn in runs.items():
                    t0 = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - t0)
            print(f"    {n:8d} elements: " + ", ".join(
                f"{k} {np.median(v) * 1e6:8.1f} us" for k, v in times.items()), flush=True)


# --- one process: one model, one contestant ----------------------------------------
def _copy_tree(x):
    if isinstance(x, dict):
        return {k: _copy_tree(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_copy_tree(v) for v in x)
    return x.copy() if isinstance(x, np.ndarray) else x


def _build(model, small, F=None):
    """The functional model `NAME[:T]` for needle (or F): (step, state, batch)."""
    name, T, _ = parse_model(model)
    extra = {"T": T} if T else {}
    return BUILD[name](F or NeedleOps(), np.random.default_rng(0), small, **extra)


def child(model, peer, small, repeats):
    if peer.startswith("sbs:"):
        return child_side_by_side(model, peer[4:].split(","), small, repeats)
    t0 = time.perf_counter()
    if peer == "jax":
        _pin_to_thread_count()
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from common import try_jax
        jax = try_jax()
        F = JaxOps(jax)
    else:
        F = NeedleOps()
    t_import = time.perf_counter() - t0
    step, state, batch = _build(model, small, F)
    if peer == "module":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from bench_models_peers import MODULE
        F.needle.random.seed(0)
        step, state, batch = MODULE[parse_model(model)[0]](state, batch, small)
    state = _copy_tree(state)
    t0, c0 = time.perf_counter(), time.process_time()
    out = step(*state, *batch)
    F.block(out[0])
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    loss0 = float(out[0])
    state = out[1:]
    times = []
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = step(*state, *batch)
        F.block(out[0])
        times.append(time.perf_counter() - t0)
        state = out[1:]
    # CPU seconds per wall second over the steps: the threads a step really used
    cores = (time.process_time() - c0) / max(time.perf_counter() - w0, 1e-9) if times else None
    r = dict(model=model, peer=peer, import_s=t_import, first_s=first, first_cpu_s=first_cpu,
             step_s=float(np.median(times)) if times else None, loss0=loss0,
             loss=float(out[0]), step_cores=cores)
    if peer in ("needle", "module"):
        lo = step.lower(*state, *batch)
        keys = re.findall(r"nk_([0-9a-f]+)\.py", lo.as_text("kernels"))
        info = F.needle.cache_info()
        r.update(groups=lo.kernel_count, distinct=len(set(keys)),
                 library_calls=lo.library_call_count, compiled=info.kernels_compiled,
                 loaded=info.kernels_loaded)
    print("RESULT " + json.dumps(r))


def child_side_by_side(model, contestants, small, repeats):
    """The functional needle step and each of `contestants` ('module',
    'torch') in this one process, from the same initial weights; after
    each one's first call, `repeats` rounds of one step of each in turn.
    Prints first-call seconds, median step seconds and first loss of each."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_models_peers as peers
    F = NeedleOps()
    name = parse_model(model)[0]
    step, state, batch = _build(model, small, F)
    runs = {"functional": [step, _copy_tree(state), batch]}
    if "module" in contestants:
        F.needle.random.seed(0)
        s, st, b = peers.MODULE[name](_copy_tree(state), batch, small)
        runs["module"] = [s, st, b]
    if "torch" in contestants:
        import torch
        torch.manual_seed(0)
        torch.set_num_threads(int(os.environ.get("NEEDLE_NUM_THREADS") or
                                  len(os.sched_getaffinity(0))))
        s, b = peers.TORCH[name](torch, _copy_tree(state), batch, small)
        runs["torch"] = [s, (), b]
    r = {"model": model, "peer": "sbs", "first_s": {}, "loss0": {}, "step_s": {}}
    for k, (fn, st, b) in runs.items():
        t0 = time.perf_counter()
        out = fn(*st, *b)
        r["loss0"][k] = float(out[0])
        r["first_s"][k] = time.perf_counter() - t0
        runs[k][1] = out[1:]
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, run in runs.items():
            fn, st, b = run
            t0 = time.perf_counter()
            out = fn(*st, *b)
            float(out[0])
            times[k].append(time.perf_counter() - t0)
            run[1] = out[1:]
    r["step_s"] = {k: float(np.median(v)) if v else None for k, v in times.items()}
    print("RESULT " + json.dumps(r))


def _pin_to_thread_count():
    """Run this process on NEEDLE_NUM_THREADS of its cores (thread_env sets
    it). For JAX: its CPU client (jax 0.10) ignores XLA_FLAGS' Eigen thread
    settings and ran a 256x784 @ 784x512 product on both cores of this
    machine (CPU time 2x wall time, ~200 GFLOP/s, above one core's peak), so
    its "one thread" rows were two-core rows; affinity is the one cap it
    obeys. (Not used for needle: its compile workers follow the cores this
    process may use.)"""
    n = os.environ.get("NEEDLE_NUM_THREADS")
    if n and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if int(n) < len(cores):
            os.sched_setaffinity(0, cores[:int(n)])


def thread_env(threads):
    """Environment variables that cap BLAS, OpenMP, Numba and XLA at `threads`
    threads (the issue's table: every framework on one thread, so a shared
    machine's load does not turn BLAS's thread pool into a lottery)."""
    n = str(threads)
    env = {k: n for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                          "NUMBA_NUM_THREADS", "NEEDLE_NUM_THREADS")}
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return env


def run_child(model, peer, small, repeats, cache=None, timeout=3600, threads=1, path=None):
    env = dict(os.environ, **(thread_env(threads) if threads else {}))
    if cache is not None:
        env["NEEDLE_CACHE_DIR"] = cache
    if path is not None:                # another needle (--before)
        env["PYTHONPATH"] = os.pathsep.join([path] + [p for p in [env.get("PYTHONPATH")] if p])
    cmd = [sys.executable, os.path.abspath(__file__), "--child", model, "--peer", peer,
           "--repeats", str(repeats)] + (["--small"] if small else [])
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no result"]}


def _fmt(s, unit="s"):
    if s is None:
        return "-"
    return f"{s:.2f} s" if unit == "s" else f"{s * 1e3:.1f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="tiny sizes (a smoke run)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--models", default=DEFAULT,
                    help="comma-separated NAME[:module|:torch][:T]; NAME in " + ", ".join(MODELS))
    ap.add_argument("--cache", default=None, help="kernel cache folder for every needle "
                                                  "process (default: a fresh one per model)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per process")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for BLAS / OpenMP / Numba / XLA / torch (0: leave them alone)")
    ap.add_argument("--before", default=None,
                    help="also time the needle importable from this folder (PYTHONPATH)")
    ap.add_argument("--split-vs-prange", action="store_true",
                    help="only time single kernels: rows split on threads vs prange")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--peer", default="needle", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.peer, a.small, a.repeats)
    if a.split_vs_prange:
        return split_vs_prange(max(a.repeats, 50))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import try_jax
    has_jax = try_jax() is not None
    has_torch = importlib.util.find_spec("torch") is not None
    groups = {}                       # (name, T) -> [(spec, variant)], in the order given
    for spec in a.models.split(","):
        try:
            name, T, variant = parse_model(spec)
        except ValueError as e:
            ap.error(str(e))
        groups.setdefault((name, T), []).append((spec, variant))
    rows, sbs_rows = [], []
    for (name, T), items in groups.items():
        key = f"{name}:{T}" if T else name
        caches = {}
        for spec, variant in items:
            if variant == "torch":
                continue
            peer = "needle" if variant == "functional" else "module"
            for label, path in ([("before", a.before)] if a.before else []) + [("", None)]:
                cache = a.cache or tempfile.mkdtemp(prefix="needle-bench-models-")
                cold = run_child(key, peer, a.small, 0, cache, a.timeout, a.threads, path)
                warm = run_child(key, peer, a.small, a.repeats, cache, a.timeout,
                                 a.threads, path)
                if label or a.cache:
                    if a.cache is None:
                        shutil.rmtree(cache, ignore_errors=True)
                else:
                    caches[variant] = cache
                jx = run_child(key, "jax", a.small, a.repeats, timeout=a.timeout,
                               threads=a.threads) \
                    if has_jax and not label and peer == "needle" else {}
                row = f"{spec} ({label})" if label else spec
                rows.append((row, cold, warm, jx))
                _print_row(row, cold, warm, jx, header=len(rows) == 1, has_jax=has_jax)
        others = [v for _, v in items if v == "module" or (v == "torch" and has_torch)]
        if any(v == "torch" for _, v in items) and not has_torch:
            print(f"{key}:torch: skipped (torch is not installed)", file=sys.stderr)
        if others:
            cache = a.cache or caches.get("functional") or caches.get("module") or \
                tempfile.mkdtemp(prefix="needle-bench-models-")
            caches.setdefault("sbs", cache)
            sbs_rows.append((key, run_child(key, "sbs:" + ",".join(others), a.small,
                                            a.repeats, cache, a.timeout, a.threads),
                             os.getloadavg()[0]))
        if a.cache is None:
            for c in set(caches.values()):
                shutil.rmtree(c, ignore_errors=True)
    if sbs_rows:
        _print_side_by_side(sbs_rows, a.repeats)
    bad = [m for m, c, w, _ in rows if "error" in c or "error" in w] + \
        [m for m, r, _ in sbs_rows if "error" in r]
    if bad:
        for m, c, w, _ in rows:
            for r in (c, w):
                if "error" in r:
                    print(f"{m}: {r['error']}", file=sys.stderr)
        for m, r, _ in sbs_rows:
            if "error" in r:
                print(f"{m} (side by side): {r['error']}", file=sys.stderr)
        sys.exit(1)


def _print_side_by_side(sbs_rows, repeats):
    """The second table: steps timed interleaved in one process per model."""
    print(f"\nside by side, one process per model, interleaved (median of {repeats} rounds):")
    cols = ["model", "functional", "module", "module/func", "torch 1st", "torch",
            "func/torch", "module/torch", "first loss: func / module / torch", "load"]
    widths = [14, 12, 12, 12, 11, 11, 11, 13, 36, 6]
    print("".join(f"{c:>{w}s}" for c, w in zip(cols, widths)))
    print("-" * sum(widths))
    for key, r, load in sbs_rows:
        if "error" in r:
            print(f"{key:>14s}  error: {r['error']}")
            continue
        st, f0, l0 = r["step_s"], r["first_s"], r["loss0"]

        def ratio(a, b):
            return f"{st[a] / st[b]:.2f}" if st.get(a) and st.get(b) else "-"
        losses = " / ".join(f"{l0[k]:.5f}" if k in l0 else "-"
                            for k in ("functional", "module", "torch"))
        vals = [key, _fmt(st.get("functional"), "ms"), _fmt(st.get("module"), "ms"),
                ratio("module", "functional"), _fmt(f0.get("torch")),
                _fmt(st.get("torch"), "ms"), ratio("functional", "torch"),
                ratio("module", "torch"), losses, f"{load:.1f}"]
        print("".join(f"{v:>{w}s}" for v, w in zip(vals, widths)), flush=True)


def _cores(r):
    c = r.get("step_cores")
    return "-" if c is None else f"{c:.2f}"


def _print_row(model, cold, warm, jx, header, has_jax):
    cols = ["model", "cold first call", "(CPU)", "warm first call", "step", "cores", "groups",
            "distinct", "compiled"] + (["jax first call", "jax step", "cores"] if has_jax
                                       else []) + ["load"]
    widths = [20, 16, 10, 16, 10, 6, 7, 9, 9] + ([15, 10, 6] if has_jax else []) + [6]
    if header:
        print("".join(f"{c:>{w}s}" for c, w in zip(cols, widths)))
        print("-" * sum(widths))
    vals = [model, _fmt(cold.get("first_s")), _fmt(cold.get("first_cpu_s")),
            _fmt(warm.get("first_s")),
            _fmt(warm.get("step_s"), "ms"), _cores(warm), str(warm.get("groups", "-")),
            str(warm.get("distinct", "-")), str(cold.get("compiled", "-"))]
    if has_jax:
        vals += [_fmt(jx.get("first_s")), _fmt(jx.get("step_s"), "ms"), _cores(jx)]
    vals.append(f"{os.getloadavg()[0]:.1f}")
    print("".join(f"{v:>{w}s}" for v, w in zip(vals, widths)), flush=True)


if __name__ == "__main__":
    main()
