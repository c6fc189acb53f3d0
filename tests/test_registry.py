"""The primitive registry: every primitive in `needle.ir.PRIMITIVES` is fully
declared (abstract eval and numpy impl) and has a CPU rule (an emit rule, a
library call or a view), and every primitive actually compiles: a tiny
program using it runs under `needle.jit` and matches the numpy interpreter.

A new primitive fails here until it has its rules and an entry in EXAMPLES.
"""
import numpy as np
import pytest

import needle
from needle import runtime
from needle.codegen.cpu import rules
from needle.ir import PRIMITIVES, ClosedGraph, Eqn, Graph, ShapedArray, Var, run_numpy
from needle.passes import fusion, run_pipeline
from needle.runtime.compile import LIBRARY_CALLS
from needle.runtime.host import HOST_STEPS
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


SPECIAL = np.array([[0.5, -1.0, np.nan, np.inf], [-np.inf, 0.0, 3.0, np.nan]], F32)

_FLOAT_UNARY = ["exp", "log", "log1p", "expm1", "sin", "cos", "tan", "tanh", "logistic",
                "sqrt", "rsqrt", "erf"]


def _ignore(*arrays):
    pass


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
        "dot_general": [((sym(3, 4), sym(4, 2)), {"dimension_numbers": (((1,), (0,)),
                                                                       ((), ()))}),
                        ((sym(2, 3, 4), sym(2, 4, 5)),
                         {"dimension_numbers": (((2,), (1,)), ((0,), (0,)))})],
    })
    for n in ("reduce_sum", "reduce_max", "reduce_min"):
        ex[n] = [((sym(3, 4),), {"axes": (1,)}), ((sym(2, 3, 4, dtype=I32),), {"axes": (0, 2)})]
    for n in ("add", "sub", "mul", "max", "min", "eq", "ne", "lt", "le", "gt", "ge"):
        ex[n] = [((sym(3, 4), sym(3, 4)), {}), ((sym(6, dtype=I32), sym(6, dtype=I32)), {}),
                 ((sym(3, 4), np.array(0.5, F32)), {})]          # a 0-d operand
    for n in ("and", "or", "xor"):
        ex[n] = [((bools(3, 4), bools(3, 4)), {}), ((sym(6, dtype=I32), sym(6, dtype=I32)), {})]
    # The kernel group: an equation holding a sub-graph.
    x, y, z = Var(ShapedArray((3, 4), np.dtype(F32))), None, None
    y = Var(x.aval)
    z = Var(x.aval)
    sub = Graph([], [x], [Eqn(PRIMITIVES["exp"], [x], {}, [y]),
                          Eqn(PRIMITIVES["mul"], [y, x], {}, [z])], [z])
    ex["kernel"] = [((pos(3, 4),), {"graph": sub, "name": "exp_mul"})]
    return ex


EXAMPLES = _examples()
CASES = [(name, k) for name in sorted(EXAMPLES) for k in range(len(EXAMPLES[name]))]


def test_every_primitive_is_declared_and_has_a_cpu_rule():
    missing = []
    for name, p in sorted(PRIMITIVES.items()):
        if p.abstract_eval is None or p.impl is None:
            missing.append(f"{name}: abstract_eval or impl")
        covered = (name in rules.UNARY_RULES or name in rules.BINARY_RULES
                   or name in rules.EMITTERS or name in LIBRARY_CALLS
                   or name in fusion.VIEWS or p.kind == "group" or name in HOST_STEPS)
        if not covered:
            missing.append(f"{name}: no CPU emit rule, library call, view or host step")
    assert not missing, missing


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
    from needle.passes.fusion import partition
    sub = params["graph"]
    program = needle.jit(lambda *xs: eval_graph(sub, [], list(xs))[0])
    got = program(*args)
    cg, _ = run_pipeline(needle.make_ir(program)(*args), check=True)
    fused = partition(cg, "cpu")
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
        got = runtime.compile_executable(optimised, "cpu", name=name)()
    assert len(got) == len(want)
    for g, w in zip(got, want):
        _assert_matches(g, w)
