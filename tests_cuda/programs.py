"""The representative programs of the CUDA tests: each a function, its
arguments (small: the simulator runs one Python thread per CUDA thread), and
how to trace it into the optimised graph the CUDA runtime compiles.

Used by the simulator tests (test_cuda_sim.py) and by the PTX report
(ptx_report.py), so both check the same kernels.
"""
import numpy as np

import needle
import needle.nn as nnn
import needle.numpy as nnp
from needle.ir import run_numpy
from needle.passes import run_pipeline

F32 = np.float32


def elementwise_chain(x, y):
    return nnp.tanh(x * 2.0 + y) * nnn.sigmoid(y) - nnp.exp(-x * x) / (1.0 + nnp.abs(y))


def softmax(x):
    return nnn.softmax(x, axis=-1)


def layernorm(x, gamma, beta):
    mu = nnp.mean(x, axis=-1, keepdims=True)
    var = nnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / nnp.sqrt(var + 1e-5) * gamma + beta


def _mlp_loss(w1, b1, w2, b2, x, labels):
    h = nnn.relu(x @ w1 + b1)
    logits = h @ w2 + b2
    y = nnn.one_hot(labels, logits.shape[-1], dtype=nnp.float32)
    return -nnp.mean(nnp.sum(nnn.log_softmax(logits) * y, axis=1))


def mlp_forward_backward(w1, b1, w2, b2, x, labels):
    """The loss and its gradient with respect to every parameter."""
    return needle.value_and_grad(_mlp_loss, argnums=(0, 1, 2, 3))(w1, b1, w2, b2, x, labels)


def batched_matmul(a, b):
    return nnp.matmul(a, b)


def gather_scatter_add(table, ids, upd):
    rows = nnp.take(table, ids, axis=0)                  # an embedding lookup
    return rows * 2.0, table.at[ids].add(upd)            # and its backward


def integer_ops(x, y):
    """Integer arithmetic: power (negative exponents too), floor division and
    remainder by zero and negative divisors, shifts of the sign."""
    return x ** y, x // y, x % y, nnp.where(x > y, x * y, -x)


def scatter_combine(table, ids, upd, counts, cids, cupd):
    """Scatters that combine repeated indices: float multiply and max (in
    order along the index axis, one thread per column), integer min
    (atomics)."""
    return (table.at[ids].mul(upd), table.at[ids].max(upd), counts.at[cids].min(cupd))


def scan_rnn(w, u, xs, h0):
    """A tanh RNN as a scan with a cond in its body, and a while_loop: their
    bodies' kernels (the input projection is hoisted out of the loop)."""
    def step(h, x):
        h = nnp.tanh(x @ w + h @ u)
        h = needle.lax.cond(h.sum() > 0, lambda h: h * 0.5, lambda h: h - 0.1, h)
        return h, h.sum(axis=-1)
    h, ys = needle.lax.scan(step, h0, xs)
    n, g = needle.lax.while_loop(lambda c: c[1].sum() < 10.0,
                                 lambda c: (c[0] + 1, c[1] * 1.5 + 1.0), (0, h))
    return h, ys, n, g


def sorting(x, a, v):
    """Sorting and its relatives: a stable argsort (the block-per-row rank
    sort kernel), top_k, a descending sort along the first axis, the scans
    (one thread per scan line), searchsorted (an unrolled binary search) and
    nonzero with a static size (a scatter)."""
    vals, idx = needle.lax.top_k(x, 3)
    return (nnp.argsort(x * 2.0), vals, idx, nnp.sort(x, axis=0, descending=True),
            needle.lax.cummax(x, 1), nnp.cumprod(x, axis=0), nnp.searchsorted(a, v),
            nnp.nonzero(x > 0.5, size=6)[1])


def random_numbers(x, key, g):
    """needle.random's kernels: a dropout forward and backward whose mask is
    drawn in the kernel (threefry2x32), normal (erf_inv), randint (64-bit
    arithmetic on split keys) and a uniform with a range."""
    import needle.random as nr

    def dropout(x):
        return nnp.where(nr.bernoulli(key, 0.9, x.shape), x / 0.9, 0.0)
    y, vjp = needle.vjp(dropout, x)
    k1, k2, k3 = nr.split(key, 3)
    return (y, vjp(g)[0], nr.normal(k1, x.shape), nr.randint(k2, x.shape, -5, 50),
            nr.uniform(k3, x.shape, minval=-2.0, maxval=3.0))


def _args(name, rng):
    u = lambda *s: rng.uniform(-1.0, 1.0, s).astype(F32)           # noqa: E731
    return {
        "elementwise_chain": lambda: (u(6, 7), u(7)),
        "float64_chain": lambda: (u(6, 7).astype(np.float64), u(7).astype(np.float64)),
        "softmax": lambda: (u(5, 9) * 4,),
        "layernorm": lambda: (u(4, 16), u(16), u(16)),
        "mlp_forward_backward": lambda: (u(8, 12) * 0.5, u(12), u(12, 5) * 0.5, u(5), u(6, 8),
                                         rng.integers(0, 5, 6).astype(np.int32)),
        "batched_matmul": lambda: (u(2, 5, 6), u(2, 6, 3)),
        "integer_ops": lambda: (rng.integers(-3, 4, (5, 6)).astype(np.int32),
                                rng.integers(-3, 4, (6,)).astype(np.int32)),
        "scatter_combine": lambda: (u(7, 4), np.array([3, 0, 6, 3, -1], np.int32), u(5, 4),
                                    rng.integers(-5, 5, (6,)).astype(np.int32),
                                    np.array([1, 1, 4, 0], np.int32),
                                    rng.integers(-5, 5, (4,)).astype(np.int32)),
        "gather_scatter_add": lambda: (u(7, 4), np.array([3, 0, 6, 3, -1], np.int32),
                                       u(5, 4)),
        "scan_rnn": lambda: (u(3, 4), u(4, 4) * 0.5, u(5, 2, 3), u(2, 4)),
        "sorting": lambda: (np.round(u(4, 9) * 3) / 3, np.sort(u(7)), u(2, 5)),
        "random_numbers": lambda: (u(5, 7), np.array([0, 42], np.uint32), u(5, 7)),
    }[name]()


PROGRAMS = {f.__name__: f for f in (elementwise_chain, softmax, layernorm, mlp_forward_backward,
                                    batched_matmul, gather_scatter_add, scatter_combine,
                                    integer_ops, scan_rnn, sorting, random_numbers)}
# Programs whose floating-point arithmetic is all float32 (no .f64 may appear in their PTX).
FLOAT32 = set(PROGRAMS)
# The same chain on float64: the control that the PTX test does see float64.
PROGRAMS["float64_chain"] = elementwise_chain


def traced(fn, args):
    """(optimised ClosedGraph, flat arguments, results of the numpy interpreter
    on the unoptimised graph)."""
    cg = needle.make_ir(fn)(*args)
    flat = needle.tree_util.tree_leaves(list(args))
    want = run_numpy(cg.graph, cg.consts, flat)
    opt, _ = run_pipeline(cg, check=True)
    return opt, flat, want


def program(name, seed=0):
    return traced(PROGRAMS[name], _args(name, np.random.default_rng(seed)))
