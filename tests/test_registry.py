"""The primitive registry: every primitive in `needle.ir.PRIMITIVES` is in
every table: declared (abstract eval and numpy impl), differentiable or
marked not (passes/autodiff), batched (passes/batching), and run by each
backend, CPU and CUDA (an emit rule, a library call, a view or a host step);
its traits (ir.core.Traits) agree with those tables and with its numpy
impl; its typed params (DotDimensionNumbers, ScatterMode) are what every
equation holds; and every primitive actually compiles: a tiny program using
it runs under `needle.jit` and matches the numpy interpreter.

A new primitive fails here until it has its rules and an entry in EXAMPLES.
"""
import numpy as np
import pytest

import needle
from needle import runtime
from needle.codegen.cpu import rules
from needle.codegen.cuda import rules as cuda_rules
from needle.ir import PRIMITIVES, ClosedGraph, Eqn, Graph, ShapedArray, Var, run_numpy
import needle.lowering
from needle.codegen import backend_for
from needle.ir.primitives import (BINARY, COMPARE, SCATTERS, DotDimensionNumbers, ScatterMode,
                                  dot_general_p, scatter_add_p)
from needle.passes import run_pipeline
from needle.passes.autodiff import JVP_RULES, NOT_DIFFERENTIABLE, TRANSPOSE_RULES
from needle.passes.batching import BATCH_RULES
from needle.passes.conv_expand import EXPANDED
from needle.passes.subgraphs import INLINED
from needle.runtime.host import HOST_STEPS
from needle.runtime.loops import CONTROL_STEPS
from helpers import tol

rng = np.random.default_rng(7)
F32, I32, I64, B = np.float32, np.int32, np.int64, np.bool_


def pos(*shape):
    """float32 in [0.2, 2): in the domain of log, sqrt, pow, ..."""
    return rng.uniform(0.2, 2.0, shape).astype(F32)


def sym(*shape, dtype=F32):
    if np.dtype(dtype).kind == "i":
        return rng.integers(-5, 6, shape).astype(dtype)
    return rng.uniform(-2.0, 2.0, shape).astype(dtype)


def nonzero_int(*shape):
    return (rng.integers(1, 5, shape) * rng.choice([-1, 1], shape)).astype(I32)


def bools(*shape):
    return rng.random(shape) < 0.5


def spd(*shape, dtype=F32):
    """Symmetric positive definite matrices (..., n, n): cholesky's domain."""
    a = rng.uniform(-1.0, 1.0, shape)
    return (a @ np.swapaxes(a, -1, -2) + shape[-1] * np.eye(shape[-1])).astype(dtype)


SPECIAL = np.array([[0.5, -1.0, np.nan, np.inf], [-np.inf, 0.0, 3.0, np.nan]], F32)

_FLOAT_UNARY = ["exp", "log", "log1p", "expm1", "sin", "cos", "tan", "tanh", "logistic",
                "sqrt", "rsqrt", "erf"]


def _ignore(*arrays):
    pass


def _sin_and_sum(x, y):
    """A pure_callback's host function: numpy on the operands."""
    return [np.sin(x) * y, np.asarray(x.sum(axis=1), np.float64)]


def _examples():
    """name -> list of (args, params); each runs as `prim.bind(*args, **params)`."""
    ex = {n: [((pos(3, 4),), {})] for n in _FLOAT_UNARY}
    ex.update({
        "neg": [((sym(3, 4),), {}), ((sym(5, dtype=I32),), {})],
        "abs": [((sym(3, 4),), {}), ((sym(5, dtype=I64),), {})],
        "sign": [((sym(3, 4),), {}), ((sym(5, dtype=I32),), {})],
        "floor": [((sym(3, 4),), {})],
        "ceil": [((sym(3, 4),), {})],
        "round": [((sym(3, 4),), {})],
        "not": [((bools(3, 4),), {}), ((sym(5, dtype=I32),), {})],
        "isnan": [((SPECIAL,), {})],
        "isinf": [((SPECIAL,), {})],
        "pow": [((pos(3, 4), sym(3, 4)), {})],
        "atan2": [((sym(3, 4), sym(3, 4)), {})],
        "div": [((sym(3, 4), pos(3, 4)), {}), ((sym(6, dtype=I32), nonzero_int(6)), {})],
        "rem": [((sym(3, 4), pos(3, 4)), {}), ((sym(6, dtype=I32), nonzero_int(6)), {})],
        "select": [((bools(3, 4), sym(3, 4), sym(3, 4)), {})],
        "integer_pow": [((sym(3, 4),), {"y": 3}), ((pos(3, 4),), {"y": -2}),
                        ((sym(5, dtype=I32),), {"y": 2})],
        "convert_element_type": [
            ((sym(3, 4),), {"new_dtype": np.dtype(I32), "weak_type": False}),
            ((sym(5, dtype=I32),), {"new_dtype": np.dtype(np.float64), "weak_type": False}),
            ((sym(3, 4),), {"new_dtype": np.dtype(B), "weak_type": False})],
        "broadcast_in_dim": [((sym(3),), {"shape": (2, 3), "broadcast_dimensions": (1,)}),
                             ((sym(2, 1),), {"shape": (2, 4),
                                             "broadcast_dimensions": (0, 1)})],
        "reshape": [((sym(3, 4),), {"new_sizes": (2, 6)})],
        "transpose": [((sym(2, 3, 4),), {"permutation": (2, 0, 1)})],
        "slice": [((sym(5, 6),), {"start_indices": (1, 0), "limit_indices": (4, 6),
                                  "strides": (1, 2)})],
        "pad": [((sym(3, 4), np.array(-1.0, F32)),
                 {"padding_config": ((1, 2, 0), (0, 1, 1))})],
        "concatenate": [((sym(2, 3), sym(1, 3), sym(2, 3)), {"dimension": 0})],
        "rev": [((sym(3, 4),), {"dimensions": (1,)})],
        "iota": [((), {"dtype": np.dtype(I32), "shape": (3, 4), "dimension": 1})],
        "reduce_prod": [((pos(3, 4),), {"axes": (1,)})],
        "argmax": [((sym(3, 4),), {"axis": 1, "index_dtype": np.dtype(I32)})],
        "argmin": [((sym(3, 4),), {"axis": 0, "index_dtype": np.dtype(I64)})],
        "cumsum": [((sym(3, 4),), {"axis": 1}), ((sym(3, 4),), {"axis": 0, "reverse": True})],
        # sorting and the scans (ir/primitives/sort.py; tests/test_numpy_sorting.py)
        "sort": [((sym(3, 5), np.tile(np.arange(5, dtype=I32), (3, 1))), {"dimension": 1}),
                 ((SPECIAL,), {"dimension": 0}),
                 ((bools(4, 3), sym(4, 3, dtype=I64), sym(4, 3)), {"dimension": 0})],
        "cumprod": [((pos(3, 4),), {"axis": 1}), ((sym(3, 4, dtype=I32),),
                                                 {"axis": 0, "reverse": True})],
        "cummax": [((SPECIAL,), {"axis": 1}), ((sym(3, 4, dtype=I64),),
                                               {"axis": 0, "reverse": True})],
        "cummin": [((sym(3, 4),), {"axis": 0}), ((sym(3, 4, dtype=I32),),
                                                 {"axis": 1, "reverse": True})],
        "gather": [((sym(5, 3), np.array([0, 4, -1, 2], I32)), {"axis": 0})],
        "scatter_add": [((sym(5, 3), np.array([0, 4, 0, 2], I32), sym(4, 3)), {"axis": 0}),
                        ((sym(3, 5), np.array([0, 9, -1, -9], I32), sym(3, 4)),
                         {"axis": 1, "mode": "drop"})],
        "scatter": [((sym(5, 3), np.array([1, 4, 0], I32), sym(3, 3)), {"axis": 0}),
                    ((sym(5, 3), np.array([1, 7, -6], I32), sym(3, 3)),
                     {"axis": 0, "mode": "drop"})],
        "scatter_mul": [((sym(5, 3), np.array([0, 4, 0, 2], I32), sym(4, 3)), {"axis": 0}),
                        ((sym(5, dtype=I32), np.array([1, 1, 3], I32), sym(3, dtype=I32)),
                         {"axis": 0})],
        "scatter_min": [((sym(3, 5), np.array([4, 4, -1, 2], I32), sym(3, 4)), {"axis": 1}),
                        ((sym(5, dtype=I32), np.array([1, 1, 3], I32), sym(3, dtype=I32)),
                         {"axis": 0})],
        "scatter_max": [((sym(5, 3), np.array([0, 4, 0, 2], I32), sym(4, 3)), {"axis": 0}),
                        ((sym(5, dtype=I32), np.array([1, 1, 3], I32), sym(3, dtype=I32)),
                         {"axis": 0})],
        # an effect: no results, run on the host between kernels (tests/test_debug.py)
        "debug_callback": [((sym(3, 4), np.array(2, I32)), {"callback": _ignore})],
        # host code with results, pure (ir/primitives/callback.py; tests/test_callback.py)
        "pure_callback": [((sym(3, 4), np.array(2.0, F32)),
                           {"callback": _sin_and_sum, "result_avals": (
                               ShapedArray((3, 4), np.dtype(F32)),
                               ShapedArray((3,), np.dtype(np.float64))),
                           "vmap_method": "sequential"})],   # (tests/test_batching_rules.py)
        # the direct convolutions (ir/primitives/conv.py; tests/test_conv_direct.py)
        "conv": [((sym(1, 4, 5, 2), sym(3, 2, 2, 3)), {"padding": ((1, 1), (0, 1))}),
                 ((sym(2, 5, 3, dtype=np.float64), sym(2, 3, 4, dtype=np.float64)),
                  {"padding": ((-1, 1),)})],
        "conv_wgrad": [((sym(1, 4, 5, 2), sym(1, 4, 5, 3)),
                        {"kernel": (3, 2), "padding": ((1, 1), (0, 1))})],
        "dot_general": [((sym(3, 4), sym(4, 2)), {"dimension_numbers": (((1,), (0,)),
                                                                       ((), ()))}),
                        ((sym(2, 3, 4), sym(2, 4, 5)),
                         {"dimension_numbers": (((2,), (1,)), ((0,), (0,)))})],
        # the decompositions (ir/primitives/linalg_decomp.py; tests/test_numpy_linalg_decomp.py)
        "cholesky": [((spd(3, 3),), {}), ((spd(2, 4, 4, dtype=np.float64),), {})],
        "lu": [((sym(4, 4),), {}), ((sym(2, 3, 3, dtype=np.float64),), {})],
        "triangular_solve": [((spd(3, 3), sym(3, 2)), {"left_side": True, "lower": True}),
                             ((spd(2, 3, 3), sym(2, 4, 3)),
                              {"left_side": False, "transpose_a": True, "unit_diagonal": True})],
        "eigh": [((sym(3, 3) + sym(3, 3).T,), {}), ((spd(2, 4, 4, dtype=np.float64),), {})],
        "qr": [((sym(4, 3),), {}), ((sym(2, 3, 4),), {"full_matrices": True})],
        "svd": [((sym(4, 3),), {}), ((sym(2, 3, 4, dtype=np.float64),), {"full_matrices": True})],
    })
    for n in ("reduce_sum", "reduce_max", "reduce_min"):
        ex[n] = [((sym(3, 4),), {"axes": (1,)}), ((sym(2, 3, 4, dtype=I32),), {"axes": (0, 2)})]
    for n in ("add", "sub", "mul", "max", "min", "eq", "ne", "lt", "le", "gt", "ge"):
        ex[n] = [((sym(3, 4), sym(3, 4)), {}), ((sym(6, dtype=I32), sym(6, dtype=I32)), {}),
                 ((sym(3, 4), np.array(0.5, F32)), {})]          # a 0-d operand
    for n in ("and", "or", "xor"):
        ex[n] = [((bools(3, 4), bools(3, 4)), {}), ((sym(6, dtype=I32), sym(6, dtype=I32)), {})]
    ex.update(_bits_examples())
    # The kernel group: an equation holding a sub-graph.
    x, y, z = Var(ShapedArray((3, 4), np.dtype(F32))), None, None
    y = Var(x.aval)
    z = Var(x.aval)
    sub = Graph([], [x], [Eqn(PRIMITIVES["exp"], [x], {}, [y]),
                          Eqn(PRIMITIVES["mul"], [y, x], {}, [z])], [z])
    ex["kernel"] = [((pos(3, 4),), {"graph": sub, "name": "exp_mul"})]
    ex.update(_control_examples())
    return ex


def _bits_examples():
    """The bit primitives and erf_inv (ir/primitives/bits.py, special.py):
    shift amounts past the width and negative ones (XLA: all bits out)."""
    u32 = lambda *s: rng.integers(0, 2 ** 32, s, dtype=np.uint64).astype(np.uint32)  # noqa: E731
    amounts_u = np.array([0, 1, 13, 31, 32, 40], np.uint32)
    amounts_i = np.array([0, 3, 31, 32, -1, -33], I32)
    shifts = [((u32(6), amounts_u), {}), ((sym(6, dtype=I32) * 1000, amounts_i), {}),
              ((sym(3, 4, dtype=I64), np.array(63, I64)), {})]            # a 0-d amount
    inv = np.array([[-1.0, -0.999, -0.5, 0.0], [1e-3, 0.5, 0.9999, 1.0]], F32)
    return {
        "shift_left": shifts, "shift_right_logical": shifts, "shift_right_arithmetic": shifts,
        "bitcast_convert_type": [((sym(3, 4),), {"new_dtype": np.dtype(np.uint32)}),
                                 ((u32(5), ), {"new_dtype": np.dtype(F32)}),
                                 ((sym(5, dtype=I64),), {"new_dtype": np.dtype(np.float64)})],
        "erf_inv": [((inv,), {}), ((inv.astype(np.float64),), {})],
        "threefry2x32": [((np.uint32(7), np.uint32(42), np.uint32(0),
                           np.arange(6, dtype=np.uint32)), {"output": "xor"}),
                         ((u32(5), u32(5), u32(5), u32(5)), {"output": "concat"})],
    }


def _bound(f, *args):
    """(operands, params) of the one control equation of f's traced graph:
    its bodies traced as needle.lax traces them."""
    cg = needle.make_ir(f)(*args)
    (e,) = [e for e in cg.graph.eqns if e.prim.kind == "control"]
    env = dict(zip(cg.graph.invars, args))
    env.update(zip(cg.graph.constvars, cg.consts))
    ops = tuple(np.asarray(x.val, x.aval.dtype) if not isinstance(x, Var) else env[x]
                for x in e.inputs)
    return ops, e.params


def _control_examples():
    from needle import lax
    import needle.numpy as nnp

    def rnn(w, h, xs, **kw):
        return lax.scan(lambda c, x: ((nnp.tanh(c[0] @ w + x), c[1] + 1), c[0].sum()),
                        (h, np.int32(0)), xs, **kw)

    def loop(x, n):
        return lax.while_loop(lambda c: c[1] < n, lambda c: (c[0] * 0.5 + 1.0, c[1] + 1),
                              (x, np.int32(0)))

    def switch(i, x, y):
        return lax.switch(i, [lambda x, y: x + y, lambda x, y: x * y, lambda x, y: x - y],
                          x, y)

    def remat(x, y):
        return needle.checkpoint(lambda x, y: (nnp.sin(x) * y, y.sum()))(x, y)

    w, h = sym(3, 3) * 0.5, sym(3)
    return {
        "scan": [_bound(rnn, w, h, sym(4, 3)), _bound(lambda *a: rnn(*a, reverse=True),
                                                      w, h, sym(1, 3)),
                 _bound(rnn, w, h, sym(0, 3))],
        "while": [_bound(loop, sym(2), np.array(3, I32)), _bound(loop, sym(2), np.array(0, I32))],
        "cond": [_bound(switch, np.array(k, I32), sym(2), sym(2)) for k in (-1, 1, 5)],
        "checkpoint": [_bound(remat, sym(3, 2), sym(3, 2))],
    }


EXAMPLES = _examples()
CASES = [(name, k) for name in sorted(EXAMPLES) for k in range(len(EXAMPLES[name]))]


# --- every primitive in every table ---------------------------------------------------

EMIT_RULES = {"cpu": rules, "cuda": cuda_rules}       # each backend's expression tables


def _runs_as(p, device):
    """How backend `device` runs primitive p: 'emit' (in a kernel), 'library',
    'view', 'host' (a step between kernels), 'control' (a loop or branch step
    running its bodies' plans), 'inlined' (spliced in before fusion),
    'expanded' (a convolution without a library call, written out as im2col),
    'unsupported' (declared by the backend: compiling it raises an error
    naming it, e.g. eigh on CUDA), or None."""
    r, b = EMIT_RULES[device], backend_for(device)
    if p.name in r.UNARY_RULES or p.name in r.BINARY_RULES or p.name in r.EMITTERS:
        return "emit"
    if p.name in b.library:
        return "library"
    if p.name in b.views:
        return "view"
    if p.name in HOST_STEPS:
        return "host"
    if p.kind == "control" and p.name in CONTROL_STEPS:
        return "control"                # a step running its bodies' plans
    if p.kind == "control" and p.name in INLINED:
        return "inlined"                # spliced in before fusion
    if p.name in EXPANDED:
        return "expanded"               # written out before fusion (passes/conv_expand.py)
    if p.name in getattr(b, "unsupported", ()):
        return "unsupported"            # an error naming it (tests_cuda/test_cuda_linalg.py)
    return None


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_every_primitive_is_in_every_table(name):
    """A kernel group is made by fusion, after autodiff and batching: it is
    compiled as its sub-graph, never emitted or batched as one primitive."""
    p = PRIMITIVES[name]
    missing = []
    if p.abstract_eval is None:
        missing.append("an abstract eval (ir/primitives)")
    if p.impl is None:
        missing.append("a numpy impl (ir/primitives)")
    if (p in JVP_RULES) == (p in NOT_DIFFERENTIABLE):
        missing.append("exactly one of a JVP rule and not_differentiable (passes/autodiff)")
    if p in TRANSPOSE_RULES and p not in JVP_RULES:
        missing.append("a JVP rule beside its transpose rule (passes/autodiff)")
    if p.kind != "group":
        if p not in BATCH_RULES:
            missing.append("a batching rule (passes/batching)")
        for device in EMIT_RULES:
            if _runs_as(p, device) is None:
                missing.append(f"a {device} emit rule, library call, view, host step or "
                               f"control step")
    assert not missing, f"{name} lacks " + "; ".join(missing)


@pytest.mark.parametrize("device", sorted(EMIT_RULES))
def test_every_emitted_primitive_emits_alone(device):
    """What the emit tables claim, each backend's emitter does: a kernel of
    one equation (each primitive's first example) emits without error."""
    failed = []
    for name, p in sorted(PRIMITIVES.items()):
        if p.kind == "group" or _runs_as(p, device) != "emit":
            continue
        args, params = EXAMPLES[name][0]
        ins = [Var(ShapedArray(np.shape(a), np.asarray(a).dtype)) for a in args]
        outs = [Var(a) for a in p.abstract_eval(*[v.aval for v in ins], **params)]
        try:
            backend_for(device).emit(Graph([], ins, [Eqn(p, ins, params, outs)], outs),
                                     f"k_{name}")
        except Exception as e:                          # noqa: BLE001 - report them all
            failed.append(f"{name}: {type(e).__name__}: {e}")
    assert not failed, failed


KINDS = {"elementwise", "structural", "reduction", "linalg", "indexing", "group", "host",
         "control"}


def test_traits_agree_with_the_tables():
    bad = []
    for name, p in sorted(PRIMITIVES.items()):
        t = p.traits
        if t.kind not in KINDS:
            bad.append(f"{name}: kind {t.kind!r} is none of {sorted(KINDS)}")
        if t.elementwise:
            for device, r in EMIT_RULES.items():
                if not (name in r.UNARY_RULES or name in r.BINARY_RULES or
                        (name in rules.ELEMENTWISE_WITH_PARAMS and name in r.EMITTERS)):
                    bad.append(f"{name}: elementwise without a {device} expression rule")
        if t.expensive and not (t.elementwise or name == "gather"):
            bad.append(f"{name}: expensive, but neither elementwise nor gather")
        if t.own_loop:
            if t.elementwise or t.kind not in ("reduction", "indexing"):
                bad.append(f"{name}: own_loop, but of kind {t.kind}")
            bad += [f"{name}: own_loop, but not emitted on {d}" for d in EMIT_RULES
                    if _runs_as(p, d) != "emit"]
        if t.commutative and name not in BINARY and name not in COMPARE:
            bad.append(f"{name}: commutative, but not a binary primitive")
        if t.shape_only and t.kind not in ("structural", "elementwise"):
            bad.append(f"{name}: shape_only, but of kind {t.kind}")
        if t.effectful and t.kind != "host":       # an effect runs on the host
            bad.append(f"{name}: effectful is {t.effectful}, kind is {t.kind}")
        if t.kind == "host":                        # debug_callback; pure_callback (results)
            bad += [f"{name}: of kind host, but not a host step on {d}" for d in EMIT_RULES
                    if _runs_as(p, d) != "host"]
    assert not bad, bad
    assert set(SCATTERS) == {n for n in PRIMITIVES if n.startswith("scatter")}


def _cases_with(trait):
    return [(n, k) for n, k in CASES if getattr(PRIMITIVES[n].traits, trait)]


@pytest.mark.parametrize("name,k", _cases_with("commutative"))
def test_commutative_primitives_commute(name, k):
    p = PRIMITIVES[name]
    (x, y), params = EXAMPLES[name][k]
    np.testing.assert_array_equal(p.impl(x, y, **params)[0], p.impl(y, x, **params)[0])


@pytest.mark.parametrize("name,k", _cases_with("shape_only"))
def test_shape_only_primitives_keep_zeros_and_ones(name, k):
    """What simplify relies on: all zeros in, all zeros out (likewise ones)."""
    p = PRIMITIVES[name]
    args, params = EXAMPLES[name][k]
    for fill in (0, 1):
        first = np.full(np.shape(args[0]), fill, np.asarray(args[0]).dtype)
        (out,) = p.impl(first, *args[1:], **params)
        assert np.all(out == fill), (name, fill, out)


@pytest.mark.parametrize("name,k", _cases_with("staged_when_tracing"))
def test_staged_primitives_make_more_elements_than_they_read(name, k):
    p = PRIMITIVES[name]
    args, params = EXAMPLES[name][k]
    (out,) = p.impl(*args, **params)
    assert all(np.size(out) >= np.size(a) for a in args)


# --- typed params ------------------------------------------------------------------------

def test_equations_hold_typed_params():
    """dot_general's dimension numbers become a DotDimensionNumbers of Python
    ints and a scatter's mode a ScatterMode (the default filled in), however
    they were written; both still compare, unpack and print as before."""
    a, b = np.ones((3, 4), F32), np.ones((4, 2), F32)
    idx = np.array([0, 2], I32)

    def f(a, b):
        x = dot_general_p.bind(a, b, dimension_numbers=(([np.int64(1)], [0]), ([], [])))
        y = dot_general_p.bind(a, b, dimension_numbers=(((1,), (0,)), ((), ())))
        return (scatter_add_p.bind(x, idx, x[:2], axis=0),
                scatter_add_p.bind(y, idx, y[:2], axis=0, mode="drop"))

    cg = needle.make_ir(f)(a, b)
    dots = [e for e in cg.graph.eqns if e.prim is dot_general_p]
    scatters = [e for e in cg.graph.eqns if e.prim is scatter_add_p]
    for e in dots:
        dn = e.params["dimension_numbers"]
        assert type(dn) is DotDimensionNumbers and dn == (((1,), (0,)), ((), ()))
        assert all(type(i) is int for pair in dn for axes in pair for i in axes)
        (lc, rc), (lb, rb) = dn
        assert (dn.lhs_contract, dn.rhs_contract, dn.lhs_batch, dn.rhs_batch) == (lc, rc, lb, rb)
    assert [e.params["mode"] for e in scatters] == [ScatterMode.CLIP, ScatterMode.DROP]
    assert all(type(e.params["mode"]) is ScatterMode for e in scatters)
    assert scatters[1].params["mode"] == "drop"
    text = str(cg)
    assert "dimension_numbers=(((1,), (0,)), ((), ()))" in text
    assert "mode=clip" in text and "mode=drop" in text
    # however written, equal params are one equation to CSE
    opt, _ = run_pipeline(cg, check=True)
    assert sum(e.prim is dot_general_p for e in opt.graph.eqns) == 1
    # an equation written by hand holds them too
    x, y = Var(ShapedArray((3, 4), np.dtype(F32))), Var(ShapedArray((4, 2), np.dtype(F32)))
    e = Eqn(dot_general_p, [x, y], {"dimension_numbers": [[[1], [0]], [[], []]]},
            [Var(ShapedArray((3, 2), np.dtype(F32)))])
    assert type(e.params["dimension_numbers"]) is DotDimensionNumbers


def test_every_primitive_has_an_example_here():
    assert set(EXAMPLES) == set(PRIMITIVES), set(PRIMITIVES) ^ set(EXAMPLES)


@pytest.mark.parametrize("name,k", CASES)
def test_abstract_eval_agrees_with_impl(name, k):
    prim = PRIMITIVES[name]
    args, params = EXAMPLES[name][k]
    avals = prim.abstract_eval(*[ShapedArray(a.shape, a.dtype) for a in args], **params)
    with np.errstate(all="ignore"):
        outs = prim.impl(*args, **params)
    assert len(outs) == len(avals)
    for a, o in zip(avals, outs):
        assert (np.shape(o), np.asarray(o).dtype) == (a.shape, a.dtype), name


def _assert_matches(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.dtype, want.dtype)
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, equal_nan=True, **tol(want.dtype))
    else:
        np.testing.assert_array_equal(got, want)


def _check_kernel_group(args, params):
    """Nobody binds `kernel` by hand: fusion makes it. So compile the
    group's sub-graph under jit, and check that the fused graph (kernel
    equations) passes the checker and, run by the numpy interpreter (the
    kernel primitive's impl), gives what the compiled kernel gave."""
    from needle.ir import check_graph, eval_graph
    from needle.lowering import fuse_for
    sub = params["graph"]
    program = needle.jit(lambda *xs: eval_graph(sub, [], list(xs))[0])
    got = program(*args)
    cg, _ = run_pipeline(needle.make_ir(program)(*args), check=True)
    fused = fuse_for(cg, "cpu")
    assert any(e.prim.name == "kernel" for e in fused.graph.eqns)
    check_graph(fused.graph)
    _assert_matches(got, run_numpy(fused.graph, fused.consts, list(args))[0])
    _assert_matches(got, run_numpy(sub, [], list(args))[0])


@pytest.mark.parametrize("name,k", CASES)
def test_every_primitive_compiles_and_matches_numpy(name, k):
    prim = PRIMITIVES[name]
    args, params = EXAMPLES[name][k]

    def program(*xs):
        out = prim.bind(*xs, **params)
        return list(out) if prim.multiple_results else out

    if name == "kernel":
        _check_kernel_group(args, params)
        return
    if args:
        cg = needle.make_ir(program)(*args)
        assert name in [e.prim.name for e in cg.graph.eqns]
        want = run_numpy(cg.graph, cg.consts, list(args))
        got = needle.jit(program)(*args)
        if not prim.multiple_results:
            got = [got]
    else:
        # A primitive without operands (iota) runs eagerly when bound outside a
        # trace, so write its graph by hand and compile it the way jit does.
        avals = prim.abstract_eval(**params)
        outs = [Var(a) for a in avals]
        cg = ClosedGraph(Graph([], [], [Eqn(prim, [], params, outs)], outs), [])
        want = run_numpy(cg.graph, [], [])
        optimised, _ = run_pipeline(cg, check=True)
        got = needle.lowering.compile_optimised(optimised, "cpu", name=name)()
    assert len(got) == len(want)
    for g, w in zip(got, want):
        _assert_matches(g, w)
