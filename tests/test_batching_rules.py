"""vmap's batching rules, primitive by primitive: every primitive of the
registry has a rule (or is marked as never batched), and each rule, applied
to every registry example (tests/test_registry.py) with every non-empty
subset of its array operands mapped, gives what the primitive's numpy impl
gives example by example, stacked. Also the error for a primitive without a
rule, and vmap's own argument checks.
"""
import itertools

import numpy as np
import pytest

import needle
from needle.ir import PRIMITIVES, ClosedGraph, Eqn, Graph, ShapedArray, Var
from needle.passes.batching import BATCH_RULES, batch_graph

import test_registry

SIZE = 3
rng = np.random.default_rng(11)


def _perturbed(a, k):
    """Example k of a mapped operand: `a` changed so examples differ (indices
    stay valid, bools flip, floats move within their sign)."""
    a = np.asarray(a)
    if a.dtype == np.bool_:
        return a ^ (rng.random(a.shape) < 0.3) if k else a
    if a.dtype.kind in "iu":
        return a if k == 0 else np.roll(a, k)
    return (a * (1.0 + 0.1 * k)).astype(a.dtype)


def test_every_primitive_has_a_batching_rule():
    missing = [n for n, p in PRIMITIVES.items()
               if p not in BATCH_RULES and p.kind != "group"]
    assert not missing, f"no batching rule (BATCH_RULES) for {missing}"


def _cases():
    out = []
    for name, k in test_registry.CASES:
        args, _ = test_registry.EXAMPLES[name][k]
        if name == "kernel" or not args:
            continue                     # groups are made after tracing; iota has no operand
        for r in range(1, len(args) + 1):
            for subset in itertools.combinations(range(len(args)), r):
                out.append(pytest.param(name, k, subset, id=f"{name}-{k}-{subset}"))
    return out


@pytest.mark.parametrize("name,k,subset", _cases())
def test_rule_matches_the_primitive_per_example(name, k, subset):
    prim = PRIMITIVES[name]
    args, params = test_registry.EXAMPLES[name][k]
    examples = [[_perturbed(a, j) if i in subset else np.asarray(a) for i, a in enumerate(args)]
                for j in range(SIZE)]
    with np.errstate(all="ignore"):
        want = [prim.impl(*ex, **params) for ex in examples]
    invars = [Var(ShapedArray(np.shape(a), np.asarray(a).dtype)) for a in args]
    outs = [Var(a) for a in prim.abstract_eval(*[v.aval for v in invars], **params)]
    g = Graph([], invars, [Eqn(prim, invars, params, outs)], outs)
    batched_args = [np.stack([ex[i] for ex in examples]) if i in subset else np.asarray(a)
                    for i, a in enumerate(args)]
    flags = [i in subset for i in range(len(args))]
    with np.errstate(all="ignore"):
        got, got_flags = batch_graph(ClosedGraph(g, []), batched_args, flags, SIZE, name)
    for m, (g_out, fl) in enumerate(zip(got, got_flags)):
        w = np.stack([np.asarray(want[j][m]) for j in range(SIZE)])
        g_out = np.asarray(g_out)
        if not fl:      # a rule may tell an output does not depend on the mapped axis
            g_out = np.stack([g_out] * SIZE)
        assert g_out.shape == w.shape and g_out.dtype == w.dtype, (g_out.shape, w.shape)
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g_out, w, rtol=1e-6, atol=1e-6, equal_nan=True)
        else:
            np.testing.assert_array_equal(g_out, w)


def test_vmap_argument_errors():
    f = needle.vmap(lambda a, b: a + b)
    with pytest.raises(ValueError, match="different sizes"):
        f(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="out of range"):
        needle.vmap(lambda a: a, in_axes=2)(np.ones((3, 2)))
    with pytest.raises(ValueError, match="in_axes has 1 entries"):
        needle.vmap(lambda a, b: a, in_axes=(0,))(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="axis_size"):
        needle.vmap(lambda a: a, in_axes=None)(np.ones(3))
    with pytest.raises(ValueError, match="depends on a mapped argument"):
        needle.vmap(lambda a: a * 2, out_axes=None)(np.ones(3))
    out = needle.vmap(lambda a: a * 2, in_axes=None, axis_size=4)(np.ones(2, np.float32))
    np.testing.assert_array_equal(out, np.full((4, 2), 2.0, np.float32))
