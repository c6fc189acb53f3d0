"""The IR and the passes: the printed form of a traced program, the checker,
and each pass (constant folding, CSE, DCE) tested the way compiler passes
are: write the IR before, run the pass, compare with the IR expected after.
Then the pipeline with `check_graph` after every pass on a few programs, and
the stages a `Lowered` exposes.

IR before a pass is built by hand with `Builder`, so these tests do not
depend on how needle.numpy lowers a function. The printer names variables
a, b, c... in order of appearance, so comparing printouts compares graphs
up to renaming.
"""
import textwrap

import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle.ir import (ClosedGraph, Eqn, Graph, GraphError, Lit, ShapedArray, Var,
                       check_graph, run_numpy)
from needle.ir.primitives import (add_p, broadcast_in_dim_p, exp_p, iota_p, mul_p,
                                  reduce_sum_p, reshape_p, sin_p, tanh_p)
from needle.passes import PIPELINE, cse, dce, fold_constants, run_pipeline
from helpers import assert_close, jit

F32 = np.dtype(np.float32)


def aval(*shape, dtype=F32):
    return ShapedArray(tuple(shape), np.dtype(dtype))


class Builder:
    """Write a Graph by hand: `b = Builder(); x = b.arg(aval(3)); y = b(exp_p, x)`."""

    def __init__(self):
        self.constvars, self.consts, self.invars, self.eqns = [], [], [], []

    def const(self, value):
        value = np.asarray(value)
        v = Var(ShapedArray(value.shape, value.dtype))
        self.constvars.append(v)
        self.consts.append(value)
        return v

    def arg(self, a):
        v = Var(a)
        self.invars.append(v)
        return v

    def __call__(self, prim, *inputs, **params):
        avals = prim.abstract_eval(*[x.aval for x in inputs], **params)
        outs = [Var(a) for a in avals]
        self.eqns.append(Eqn(prim, list(inputs), params, outs))
        return outs if prim.multiple_results else outs[0]

    def build(self, *outs):
        g = Graph(self.constvars, self.invars, self.eqns, list(outs))
        check_graph(g)
        return ClosedGraph(g, self.consts)


def text(s):
    return textwrap.dedent(s).strip("\n")


def lit(v):
    return Lit(np.float32(v))


# --- the printer ----------------------------------------------------------------------

def test_make_ir_prints_like_a_jaxpr():
    def f(x, w, b):
        return nnp.tanh(x @ w + b).sum(axis=1)

    ir = needle.make_ir(f)(np.ones((128, 784), np.float32), np.ones((784, 10), np.float32),
                           np.ones(10, np.float32))
    assert str(ir) == text("""
        { lambda ; a:f32[128,784] b:f32[784,10] c:f32[10]. let
            d:f32[128,10] = dot_general[dimension_numbers=(((1,), (0,)), ((), ()))] a b
            e:f32[128,10] = broadcast_in_dim[broadcast_dimensions=(1,) shape=(128, 10)] c
            f:f32[128,10] = add d e
            g:f32[128,10] = tanh f
            h:f32[128] = reduce_sum[axes=(1,)] g
          in (h,) }
    """)


def test_printer_literals_constants_and_several_outputs():
    b = Builder()
    c = b.const(np.ones((2, 3), np.float64))
    x = b.arg(aval(2, 3, dtype=np.float64))
    i = b.arg(aval(dtype=np.int32))
    y = b(mul_p, x, Lit(np.float64(2.5)))
    z = b(add_p, y, c)
    k = b(add_p, i, Lit(np.int32(7)))
    cg = b.build(z, k, x, Lit(np.float32(1.0)))
    assert str(cg) == text("""
        { lambda a:f64[2,3]; b:f64[2,3] c:i32[]. let
            d:f64[2,3] = mul b 2.5
            e:f64[2,3] = add d a
            f:i32[] = add c 7
          in (e, f, b, 1.0) }
    """)


def test_printer_indents_kernel_groups():
    x = np.ones((4, 3), np.float32)
    lo = needle.jit(lambda x: nnp.exp(x) * 2.0).lower(x)
    fused = lo.as_text("fused").splitlines()
    assert fused[0] == "{ lambda ; a:f32[4,3]. let"
    assert any(line.startswith("    b:f32[4,3] = kernel[name=") for line in fused)
    assert any(line.startswith("      { lambda ; ") for line in fused)   # the sub-graph


# --- the checker ------------------------------------------------------------------------

def test_check_graph_accepts_traced_programs():
    cg = needle.make_ir(lambda x: (nnp.sin(x) + 1.0).sum())(np.ones(3, np.float32))
    check_graph(cg.graph)


def test_check_graph_rejects_use_before_definition():
    x = Var(aval(3))
    y, z = Var(aval(3)), Var(aval(3))
    g = Graph([], [x], [Eqn(exp_p, [y], {}, [z]), Eqn(sin_p, [x], {}, [y])], [z])
    with pytest.raises(GraphError, match="before it is defined"):
        check_graph(g)


def test_check_graph_rejects_a_wrong_output_type():
    x, y = Var(aval(3)), Var(aval(4))
    g = Graph([], [x], [Eqn(exp_p, [x], {}, [y])], [y])
    with pytest.raises(GraphError, match="declares outputs"):
        check_graph(g)


def test_check_graph_rejects_redefinition_and_undefined_outputs():
    x, y = Var(aval(3)), Var(aval(3))
    with pytest.raises(GraphError, match="redefines"):
        check_graph(Graph([], [x], [Eqn(exp_p, [x], {}, [y]), Eqn(sin_p, [x], {}, [y])], [y]))
    with pytest.raises(GraphError, match="never defined"):
        check_graph(Graph([], [x], [], [y]))


def test_check_graph_rejects_a_bad_abstract_eval():
    x, y, z = Var(aval(3)), Var(aval(4)), Var(aval(3))
    with pytest.raises(GraphError, match="abstract eval"):
        check_graph(Graph([], [x, y], [Eqn(add_p, [x, y], {}, [z])], [z]))


# --- constant folding -------------------------------------------------------------------

def test_fold_evaluates_ops_on_captured_constants():
    b = Builder()
    c1 = b.const(np.arange(3, dtype=np.float32))
    c2 = b.const(np.full(3, 2.0, np.float32))
    x = b.arg(aval(3))
    s = b(add_p, c1, c2)                    # constants only: folded into a new constant
    e = b(exp_p, s)                         # ... and so is what follows from it
    y = b(mul_p, x, e)                      # depends on x: stays
    k = b(mul_p, lit(2.0), lit(3.0))        # literals only: becomes the literal 6.0
    z = b(add_p, y, k)
    cg = b.build(z)
    assert str(cg) == text("""
        { lambda a:f32[3] b:f32[3]; c:f32[3]. let
            d:f32[3] = add a b
            e:f32[3] = exp d
            f:f32[3] = mul c e
            g:f32[] = mul 2.0 3.0
            h:f32[3] = add f g
          in (h,) }
    """)
    out = fold_constants(cg)
    check_graph(out.graph)
    assert str(out) == text("""
        { lambda a:f32[3] b:f32[3] c:f32[3] d:f32[3]; e:f32[3]. let
            f:f32[3] = mul e d
            g:f32[3] = add f 6.0
          in (g,) }
    """)
    assert_close(out.consts[2], np.arange(3) + 2.0, np.float32)
    assert_close(out.consts[3], np.exp(np.arange(3) + 2.0).astype(np.float32), np.float32)
    xv = np.array([1.0, -1.0, 0.5], np.float32)
    assert_close(run_numpy(out.graph, out.consts, [xv])[0],
                 run_numpy(cg.graph, cg.consts, [xv])[0], np.float32)
    out = dce(out)                          # the now-unused inputs of the fold go away
    assert str(out) == text("""
        { lambda a:f32[3]; b:f32[3]. let
            c:f32[3] = mul b a
            d:f32[3] = add c 6.0
          in (d,) }
    """)
    assert len(out.consts) == 1


def test_fold_leaves_a_broadcast_of_a_scalar_to_a_big_shape():
    b = Builder()
    x = b.arg(aval(4096))
    big = b(broadcast_in_dim_p, lit(1.5), shape=(4096,), broadcast_dimensions=())
    idx = b(iota_p, dtype=F32, shape=(4096,), dimension=0)
    y = b(add_p, b(mul_p, x, big), idx)
    cg = b.build(y)
    out = fold_constants(cg)
    assert str(out) == str(cg)
    assert out.consts == []


def test_fold_keeps_a_reduction_of_a_constant_and_a_same_size_op():
    b = Builder()
    c = b.const(np.arange(6, dtype=np.float32).reshape(2, 3))
    x = b.arg(aval(3))
    r = b(reduce_sum_p, c, axes=(0,))        # smaller than its input: folds
    t = b(reshape_p, c, new_sizes=(3, 2))    # same size: folds
    y = b(add_p, x, r)
    cg = b.build(y, t)
    out = fold_constants(cg)
    assert not any(e.prim.name in ("reduce_sum", "reshape") for e in out.graph.eqns)
    xv = np.ones(3, np.float32)
    for got, want in zip(run_numpy(out.graph, out.consts, [xv]),
                         [xv + np.arange(6).reshape(2, 3).sum(0), np.arange(6).reshape(3, 2)]):
        assert_close(got, want.astype(np.float32), np.float32)


def test_fold_on_a_traced_closure():
    c = np.linspace(0, 1, 5).astype(np.float32)

    def f(x):
        return x * c

    cg = needle.make_ir(f)(np.ones(5, np.float32))
    assert len(cg.consts) == 1 and cg.consts[0] is not c       # a snapshot
    out, _ = run_pipeline(cg, check=True)
    assert_close(run_numpy(out.graph, out.consts, [np.ones(5, np.float32)])[0], c)


# --- CSE --------------------------------------------------------------------------------

def test_cse_merges_the_same_expression():
    b = Builder()
    x = b.arg(aval(3))
    e1 = b(exp_p, x)
    e2 = b(exp_p, x)                        # the same as e1
    m1 = b(mul_p, e1, lit(2.0))
    m2 = b(mul_p, e2, lit(2.0))             # the same as m1 once e2 is e1
    m3 = b(mul_p, e2, lit(3.0))             # a different literal: stays
    s1 = b(reduce_sum_p, b(reshape_p, m1, new_sizes=(1, 3)), axes=(0,))
    s2 = b(reduce_sum_p, b(reshape_p, m2, new_sizes=(1, 3)), axes=(1,))   # other params
    y = b(add_p, b(add_p, m1, m2), m3)
    cg = b.build(y, s1, s2)
    out = cse(cg)
    check_graph(out.graph)
    assert str(out) == text("""
        { lambda ; a:f32[3]. let
            b:f32[3] = exp a
            c:f32[3] = mul b 2.0
            d:f32[3] = mul b 3.0
            e:f32[1,3] = reshape[new_sizes=(1, 3)] c
            f:f32[3] = reduce_sum[axes=(0,)] e
            g:f32[1] = reduce_sum[axes=(1,)] e
            h:f32[3] = add c c
            i:f32[3] = add h d
          in (i, f, g) }
    """)


def test_cse_then_dce_on_a_traced_function():
    def f(x):
        return nnp.tanh(x) + nnp.tanh(x)

    cg = needle.make_ir(f)(np.ones(4, np.float32))
    assert [e.prim.name for e in cg.graph.eqns].count("tanh") == 2
    out, stages = run_pipeline(cg, check=True)
    assert [e.prim.name for e in out.graph.eqns].count("tanh") == 1
    x = np.linspace(-1, 1, 4).astype(np.float32)
    assert_close(needle.jit(f)(x), 2 * np.tanh(x), np.float32)


# --- DCE --------------------------------------------------------------------------------

def test_dce_drops_unused_results_and_constants():
    b = Builder()
    c_used = b.const(np.ones(3, np.float32))
    c_dead = b.const(np.zeros(3, np.float32))
    x = b.arg(aval(3))
    unused = b(add_p, x, c_dead)
    b(exp_p, unused)                        # dead, and the only user of `unused`
    y = b(mul_p, x, c_used)
    b(sin_p, y)                             # dead
    cg = b.build(y)
    out = dce(cg)
    check_graph(out.graph)
    assert str(out) == text("""
        { lambda a:f32[3]; b:f32[3]. let
            c:f32[3] = mul b a
          in (c,) }
    """)
    assert len(out.consts) == 1 and out.consts[0] is cg.consts[0]
    assert out.graph.invars == cg.graph.invars        # inputs stay: they are the signature


def test_dce_keeps_everything_an_output_needs():
    b = Builder()
    x = b.arg(aval(3))
    y = b(tanh_p, b(exp_p, x))
    cg = b.build(y, x)
    assert str(dce(cg)) == str(cg)


# --- the pipeline ---------------------------------------------------------------------

PROGRAMS = {
    "mlp": (lambda x, w, b: nnp.maximum(x @ w + b, 0.0).sum(axis=0),
            [(8, 5), (5, 3), (3,)]),
    "softmax": (lambda x: nnp.exp(x - x.max(axis=-1, keepdims=True))
                / nnp.exp(x - x.max(axis=-1, keepdims=True)).sum(axis=-1, keepdims=True),
                [(4, 6)]),
    "closure": (lambda x: x * np.arange(6, dtype=np.float32).reshape(2, 3) + np.float32(1),
                [(2, 3)]),
    "shapes": (lambda x: nnp.concatenate([x.T, x.T[::-1]], axis=0).reshape(-1)[2:9],
               [(3, 4)]),
}


@pytest.mark.on_device
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_pipeline_checks_every_stage_and_keeps_meaning(name):
    fn, shapes = PROGRAMS[name]
    rng = np.random.default_rng(3)
    args = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    cg = needle.make_ir(fn)(*args)
    out, stages = run_pipeline(cg, check=True)
    assert list(stages) == ["traced"] + [n for n, _ in PIPELINE]
    assert {"folded", "cse", "dce"} <= set(stages)
    want = fn(*args) if name != "shapes" else \
        np.concatenate([args[0].T, args[0].T[::-1]], 0).reshape(-1)[2:9]
    got = run_numpy(out.graph, out.consts, args)[0]
    assert_close(got, np.asarray(want), np.float32)
    assert_close(jit(fn)(*args), np.asarray(want), np.float32)


def test_lowered_stages_and_kernel_count():
    def f(x, w):
        return nnp.tanh(x @ w) * 2.0 + 1.0

    x, w = np.ones((4, 3), np.float32), np.ones((3, 2), np.float32)
    lo = needle.jit(f).lower(x, w)
    passes = ["traced"] + [n for n, _ in PIPELINE]
    assert lo.stages[:len(passes)] == passes
    assert "fused" in lo.stages and lo.stages[-1] == "kernels"
    for stage in lo.stages:
        assert lo.as_text(stage).strip(), stage
    assert lo.as_text() == lo.as_text("kernels")
    assert lo.as_text("traced").startswith("{ lambda ; a:f32[4,3] b:f32[3,2]. let")
    assert lo.as_text("kernels").count("# ---- kernel ") == lo.kernel_count
    assert lo.kernel_count >= 1 and lo.library_call_count == 1     # matmul: BLAS
    with pytest.raises(KeyError, match="stages are"):
        lo.as_text("no-such-stage")
    assert_close(lo(x, w)[0], np.tanh(x @ w) * 2 + 1, np.float32)


def test_lower_on_abstract_values_keys_by_shape():
    f = needle.jit(lambda x: x * 2.0)
    lo3 = f.lower(ShapedArray((3,), F32))
    lo4 = f.lower(ShapedArray((4,), F32))
    assert "a:f32[3]" in lo3.as_text("traced") and "a:f32[4]" in lo4.as_text("traced")
    assert_close(lo4(np.ones(4, np.float32))[0], np.full(4, 2.0), np.float32)


def test_cse_tells_literals_apart_by_bits():
    """0.0 == -0.0 in Python, but x * -0.0 is not x * 0.0 (1 / it is -inf)."""
    b = Builder()
    x = b.arg(aval(2))
    p = b(mul_p, x, lit(0.0))
    n = b(mul_p, x, lit(-0.0))
    cg = b.build(p, n)
    out = cse(cg)
    assert len(out.graph.eqns) == 2
    xv = np.array([1.0, 2.0], np.float32)
    got = run_numpy(out.graph, out.consts, [xv])
    assert np.all(np.signbit(got[1])) and not np.any(np.signbit(got[0]))
    f = needle.jit(lambda x: (1.0 / (x * 0.0), 1.0 / (x * -0.0)))
    pinf, ninf = f(xv)
    assert np.all(pinf == np.inf) and np.all(ninf == -np.inf)
