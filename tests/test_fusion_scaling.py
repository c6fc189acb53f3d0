"""Fusion at model scale: the incremental partitioning makes the decisions of
the plain one (every pair scanned afresh after each merge), its cost grows
with the graph rather than its cube, and identical layers of a model give
byte-identical kernels, which the content-hash cache compiles once."""
import importlib.util
import os

import numpy as np
import pytest
from hypothesis import given

import needle
import needle.nn as nnn
import needle.numpy as nnp
from needle import lowering
from needle.codegen import backend_for
from needle.passes import fusion

from test_fusion import build, programs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU = backend_for("cpu")


def _example(name):
    spec = importlib.util.spec_from_file_location(f"needle_example_{name}",
                                                  os.path.join(ROOT, "examples", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def optimised(f, *args):
    """f's ClosedGraph after every pass before fusion."""
    cg = needle.make_ir(f)(*args)
    for _, p in lowering.PIPELINE:
        cg = p(cg)
    return cg


# --- the plain partitioning, as the specification of the incremental one -------
class PlainMerger:
    """Phases 3 and 4 of fusion as first written: after each merge, scan every
    pair of groups afresh, with every dependence recomputed (cubic in the
    graph's size). fusion._Merger must make the same merges in the same order."""

    def __init__(self, groups, others, order, graph_outs, judge):
        self.groups, self.others, self.order = groups, others, order
        self.graph_outs, self.judge = graph_outs, judge

    def io(self):
        steps = list(self.groups) + list(self.others)
        return steps, [fusion._step_io(s) for s in steps]

    def merge_siblings(self):
        changed = True
        while changed:
            changed = False
            steps, io = self.io()
            producer = {v: k for k, (_, outs) in enumerate(io) for v in outs}
            deps = [{producer[v] for v in ins if v in producer} for ins, _ in io]
            reach = []
            for k in range(len(steps)):
                r, stack = set(), list(deps[k])
                while stack:
                    j = stack.pop()
                    if j not in r:
                        r.add(j)
                        stack.extend(deps[j])
                reach.append(r)
            for ka, a in enumerate(self.groups):
                for kb in range(ka + 1, len(self.groups)):
                    b = self.groups[kb]
                    if ka in reach[kb] or kb in reach[ka]:
                        continue
                    if not fusion._prefix_shapes([v.aval.shape for v in a.outs() + b.outs()]):
                        continue
                    if not (io[ka][0] & io[kb][0]):
                        continue
                    eqns = sorted(set(a.eqns) | set(b.eqns), key=self.order.__getitem__)
                    if self.judge(eqns, a.outs() + b.outs()) is not None:
                        continue
                    a.roots, a.eqns = a.roots + b.roots, eqns
                    a.why += b.why
                    self.groups.remove(b)
                    changed = True
                    break
                if changed:
                    break

    def absorb(self):
        steps, io = self.io()
        for p in self.groups:
            outs = set(p.outs())
            if outs & self.graph_outs:
                continue
            readers = [s for s, (ins, _) in zip(steps, io) if ins & outs]
            if len(readers) != 1 or not isinstance(readers[0], fusion._Group) or \
                    readers[0] is p:
                continue
            c = readers[0]
            eqns = sorted(set(c.eqns) | set(p.eqns), key=self.order.__getitem__)
            why = self.judge(eqns, c.outs())
            if why is None:
                c.eqns = eqns
                self.groups.remove(p)
                return True
            c.why.append(f"{'/'.join(e.prim.name for e in p.roots)} not fused in: {why}")
        return False

    def run(self):
        while True:
            self.merge_siblings()
            if not self.absorb():
                return self.groups


def both_ways(cg, monkeypatch):
    """The fused program's text, from the incremental and the plain merger."""
    fast = str(fusion.fuse(cg, CPU).graph)
    with monkeypatch.context() as m:
        m.setattr(fusion, "_Merger", PlainMerger)
        plain = str(fusion.fuse(cg, CPU).graph)
    return fast, plain


@given(programs())
def test_incremental_merging_decides_as_the_plain_one(prog):
    a, b, in_shapes, ops, n_out = prog
    args = [np.ones(s, np.float32) for s in in_shapes]
    cg = optimised(build(a, b, ops, n_out), *args)
    with pytest.MonkeyPatch.context() as mp:
        fast, plain = both_ways(cg, mp)
    assert fast == plain


def _lstm_step(T, hidden=16, batch=4):
    ex = _example("lstm_scan")
    ids, vocab = ex.corpus()
    p = ex.init_params(len(vocab), hidden)
    tokens = ex.batches(ids, T, batch, np.random.default_rng(0))

    def step(p, tokens):
        val, g = needle.value_and_grad(ex.loss_unrolled)(p, tokens)
        return val, needle.tree_util.tree_map(lambda w, d: w - 0.5 * d, p, g)
    return optimised(step, p, tokens)


def test_unrolled_lstm_merges_as_the_plain_one(monkeypatch):
    fast, plain = both_ways(_lstm_step(4), monkeypatch)
    assert fast == plain and "kernel[" in fast


class CountingBackend(type(CPU)):
    """The CPU backend, counting how often its cost model runs."""

    def __init__(self):
        self.judged = 0

    def judge(self, sub):
        self.judged += 1
        return super().judge(sub)


def test_fusion_work_grows_linearly_with_an_unrolled_loop():
    """The cost model (which emits the group's loop nest) runs once per
    distinct candidate structure: the steps of an unrolled loop repeat theirs,
    so doubling T at most doubles the judging (it was ~T^2 candidates
    re-judged after every merge), and the partition grows with T."""
    counts, kernels = {}, {}
    for T in (8, 16):
        be = CountingBackend()
        fused = fusion.fuse(_lstm_step(T), be)
        counts[T] = be.judged
        kernels[T] = sum(e.prim.name == "kernel" for e in fused.graph.eqns)
    assert counts[16] <= 2 * counts[8], counts
    assert kernels[16] <= 2 * kernels[8] + 4, kernels


# --- identical layers compile once ---------------------------------------------
def distinct_kernels(f, *args):
    """(kernel groups, distinct kernel sources) of f's program on CPU: what
    the content-hash cache compiles, without compiling it."""
    fused = fusion.fuse(optimised(f, *args), CPU)
    keys = [CPU.emit(e.params["graph"], "kernel").key for e in fused.graph.eqns
            if e.prim.name == "kernel"]
    return len(keys), len(set(keys))


def _layernorm(x, g, b):
    m = nnp.mean(x, axis=-1, keepdims=True)
    v = nnp.mean((x - m) ** 2, axis=-1, keepdims=True)
    return (x - m) * nnp.rsqrt(v + 1e-5) * g + b


def _transformer(layers, vocab=16, d=16, heads=2, hidden=32, seed=0):
    r = np.random.default_rng(seed)

    def w(*s):
        return (r.standard_normal(s) * 0.1).astype(np.float32)

    def block():
        return dict(ln1_g=np.ones(d, np.float32), ln1_b=np.zeros(d, np.float32),
                    wq=w(d, d), wk=w(d, d), wv=w(d, d), wo=w(d, d),
                    ln2_g=np.ones(d, np.float32), ln2_b=np.zeros(d, np.float32),
                    w1=w(d, hidden), b1=np.zeros(hidden, np.float32), w2=w(hidden, d),
                    b2=np.zeros(d, np.float32))
    return dict(embed=w(vocab, d), blocks=[block() for _ in range(layers)],
                lnf_g=np.ones(d, np.float32), lnf_b=np.zeros(d, np.float32), head=w(d, vocab))


def _attention(p, x, heads):
    B, T, D = x.shape

    def split(h):
        return h.reshape(B, T, heads, D // heads).transpose(0, 2, 1, 3)
    q, k, v = split(x @ p["wq"]), split(x @ p["wk"]), split(x @ p["wv"])
    s = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1 / np.sqrt(D // heads))
    a = nnn.softmax(s + np.triu(np.full((T, T), -1e9, np.float32), 1), axis=-1)
    return (a @ v).transpose(0, 2, 1, 3).reshape(B, T, D) @ p["wo"]


def _loss(p, tokens, heads=2):
    x = nnp.take(p["embed"], tokens[:, :-1], axis=0)
    for b in p["blocks"]:
        x = x + _attention(b, _layernorm(x, b["ln1_g"], b["ln1_b"]), heads)
        h = _layernorm(x, b["ln2_g"], b["ln2_b"])
        x = x + (nnn.gelu(h @ b["w1"] + b["b1"]) @ b["w2"] + b["b2"])
    logits = _layernorm(x, p["lnf_g"], p["lnf_b"]) @ p["head"]
    onehot = nnn.one_hot(tokens[:, 1:], logits.shape[-1])
    return -(nnn.log_softmax(logits, axis=-1) * onehot).sum(-1).mean()


def _train_step(p, tokens):
    val, g = needle.value_and_grad(_loss)(p, tokens)
    return val, needle.tree_util.tree_map(lambda w, d: w - 0.1 * d, p, g)


def test_identical_transformer_layers_compile_their_kernels_once():
    """Every layer's kernels are byte-identical to another layer's (names,
    sizes and float constants are kernel arguments; fusion never lets one
    layer's residual stream be recomputed by the next, which would make
    each layer's kernels longer than the last's): two layers compile exactly
    the kernels of one, three those of two."""
    tokens = np.random.default_rng(1).integers(0, 16, (2, 9)).astype(np.int32)
    counts = {L: distinct_kernels(_train_step, _transformer(L), tokens) for L in (1, 2, 3)}
    (g1, k1), (g2, k2), (g3, k3) = counts[1], counts[2], counts[3]
    assert g1 < g2 < g3, counts              # more launches...
    assert k1 == k2 == k3, counts            # ...of the same kernels
