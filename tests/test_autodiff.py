"""Autodiff API: grad / value_and_grad / vjp / jvp / jacfwd / jacrev / hessian,
argnums, has_aux, pytrees, stop_gradient, custom_vjp, higher orders,
compositions with jit, errors, the rule registry, and the size of a cleaned
backward program.
"""
import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle import nn
from needle.ir import PRIMITIVES, check_graph
from needle.passes.autodiff import JVP_RULES, MARKERS, NOT_DIFFERENTIABLE, TRANSPOSE_RULES
from needle.passes.autodiff import rules as ad_rules

from helpers import jit

pytestmark = pytest.mark.on_device      # also run on $NEEDLE_TEST_DEVICE (conftest.py)

X = np.array([0.3, -1.2, 0.8])


def f_tanh(x):
    return nnp.sum(nnp.tanh(x))


# --- the registry ------------------------------------------------------------------

def test_every_primitive_has_a_jvp_rule_or_is_marked_not_differentiable():
    missing = [name for name, p in PRIMITIVES.items()
               if p not in JVP_RULES and p not in NOT_DIFFERENTIABLE]
    assert not missing, f"primitives without a JVP rule or a not-differentiable mark: {missing}"
    both = [p.name for p in NOT_DIFFERENTIABLE if p in JVP_RULES]
    assert not both, f"marked not differentiable but given a JVP rule: {both}"


def test_every_primitive_applied_to_tangents_has_a_transpose_rule():
    # deflinear registers both; the others that JVP rules apply to tangents:
    linear = {"neg", "add", "sub", "mul", "div", "select", "convert_element_type",
              "broadcast_in_dim", "reshape", "transpose", "slice", "pad", "concatenate",
              "rev", "reduce_sum", "cumsum", "dot_general", "gather", "scatter_add",
              "scatter"}
    missing = [n for n in linear if PRIMITIVES[n] not in TRANSPOSE_RULES]
    assert not missing
    assert MARKERS["custom_lin"] in TRANSPOSE_RULES


def test_markers_stay_out_of_the_registry():
    for name, p in MARKERS.items():
        assert PRIMITIVES.get(name) is not p


def test_missing_rule_is_named():
    from needle.ir.primitives import UNARY
    p = UNARY["sin"]
    saved = JVP_RULES.pop(p)
    try:
        with pytest.raises(NotImplementedError, match="Differentiation rule for 'sin' not"):
            needle.grad(lambda x: nnp.sum(nnp.sin(x)))(X)
    finally:
        JVP_RULES[p] = saved


# --- grad, value_and_grad, argnums, has_aux, pytrees ----------------------------------

def test_grad_eager():
    np.testing.assert_allclose(needle.grad(f_tanh)(X), 1 - np.tanh(X) ** 2, rtol=1e-12)


def test_grad_python_scalar_is_float32():
    g = needle.grad(lambda x: x * x * 3.0)(2.0)
    assert np.asarray(g).dtype == np.float32 and g == 12.0


def test_value_and_grad_and_argnums():
    def f(x, y, z):
        return nnp.sum(x * y) + nnp.sum(z ** 2)
    x, y, z = X, X * 2, np.array([1.0, 2.0])
    v, g = needle.value_and_grad(f)(x, y, z)
    np.testing.assert_allclose(v, np.sum(x * y) + 5.0)
    np.testing.assert_allclose(g, y)
    gx, gz = needle.grad(f, argnums=(0, 2))(x, y, z)
    np.testing.assert_allclose(gx, y)
    np.testing.assert_allclose(gz, 2 * z)
    np.testing.assert_allclose(needle.grad(f, argnums=-1)(x, y, z), 2 * z)


def test_non_differentiated_arguments_stay_python_values():
    def f(x, n):
        for _ in range(n):          # Python control flow on a non-differentiated int
            x = nnp.sin(x)
        return nnp.sum(x)
    g = needle.grad(f)(X, 2)
    np.testing.assert_allclose(g, np.cos(np.sin(X)) * np.cos(X), rtol=1e-12)


def test_has_aux():
    def f(x):
        return nnp.sum(x ** 2), {"mean": nnp.mean(x)}
    g, aux = needle.grad(f, has_aux=True)(X)
    np.testing.assert_allclose(g, 2 * X)
    np.testing.assert_allclose(aux["mean"], X.mean())
    (v, aux), g = needle.value_and_grad(f, has_aux=True)(X)
    np.testing.assert_allclose(v, np.sum(X ** 2))
    out, vjp_fn, aux = needle.vjp(f, X, has_aux=True)
    np.testing.assert_allclose(vjp_fn(np.float64(2.0))[0], 4 * X)


def test_pytree_params():
    params = {"w": np.ones((3, 2)), "b": [np.zeros(2), (np.array(0.5),)]}

    def loss(p, x):
        h = x @ p["w"] + p["b"][0]
        return nnp.sum(nnp.tanh(h)) * p["b"][1][0]

    g = needle.grad(loss)(params, X[None, :])
    assert needle.tree_util.tree_structure(g) == needle.tree_util.tree_structure(params)
    h = X[None, :] @ params["w"]
    np.testing.assert_allclose(g["b"][0], 0.5 * (1 - np.tanh(h[0]) ** 2))
    np.testing.assert_allclose(g["b"][1][0], np.sum(np.tanh(h)))
    np.testing.assert_allclose(g["w"], 0.5 * np.outer(X, 1 - np.tanh(h[0]) ** 2))


def test_unused_input_gets_zero_gradient():
    g = needle.grad(lambda x, y: nnp.sum(x), argnums=(0, 1))(X, np.ones((2, 2)))
    np.testing.assert_array_equal(g[1], np.zeros((2, 2)))


# --- errors --------------------------------------------------------------------------

def test_grad_of_non_scalar_output_errors():
    with pytest.raises(TypeError, match=r"scalar.*f64\[3\].*vjp.*jacrev"):
        needle.grad(nnp.tanh)(X)


def test_grad_wrt_integer_input_errors():
    with pytest.raises(TypeError, match=r"argument 0 has dtype int64.*floating-point"):
        needle.grad(lambda x: nnp.sum(x * 1.0))(np.arange(3))
    with pytest.raises(TypeError, match=r"argument 1\['a'\] has dtype int32"):
        needle.grad(lambda x, d: nnp.sum(x), argnums=1)(X, {"a": np.int32(1)})


def test_vjp_of_integer_input_gives_zero_cotangent():
    out, vjp_fn = needle.vjp(lambda x, n: x * n, X, np.array(2))
    gx, gn = vjp_fn(np.ones(3))
    np.testing.assert_array_equal(gx, [2.0, 2.0, 2.0])
    assert gn.dtype == np.int64 and gn == 0


# --- vjp, jvp, Jacobians, hessian -------------------------------------------------------

def test_vjp_and_jvp():
    f = lambda x, y: nnp.sin(x) * y
    out, vjp_fn = needle.vjp(f, X, X + 1)
    ct = np.array([1.0, 2.0, 3.0])
    gx, gy = vjp_fn(ct)
    np.testing.assert_allclose(gx, ct * np.cos(X) * (X + 1))
    np.testing.assert_allclose(gy, ct * np.sin(X))
    out, t = needle.jvp(f, (X, X + 1), (np.ones(3), np.zeros(3)))
    np.testing.assert_allclose(out, np.sin(X) * (X + 1))
    np.testing.assert_allclose(t, np.cos(X) * (X + 1))


def test_jacobians_and_pytrees():
    f = lambda x: {"a": nnp.sin(x) * 2, "b": nnp.sum(x ** 2)}
    for jac in (needle.jacfwd, needle.jacrev):
        j = jac(f)(X)
        np.testing.assert_allclose(j["a"], np.diag(2 * np.cos(X)), atol=1e-15)
        np.testing.assert_allclose(j["b"], 2 * X)
    j = needle.jacrev(lambda x, y: x[:, None] * y[None, :], argnums=(0, 1))(X, X[:2])
    assert j[0].shape == (3, 2, 3) and j[1].shape == (3, 2, 2)
    jf = needle.jacfwd(lambda x, y: x[:, None] * y[None, :], argnums=(0, 1))(X, X[:2])
    np.testing.assert_allclose(jf[0], j[0])
    np.testing.assert_allclose(jf[1], j[1])


def test_hessian_against_hand_derived_matrix():
    # f(x, y) = x^2 y + sin(x) y^3: H = [[2y - sin(x) y^3, 2x + 3 cos(x) y^2],
    #                                   [2x + 3 cos(x) y^2, 6 sin(x) y]]
    def f(v):
        x, y = v[0], v[1]
        return x * x * y + nnp.sin(x) * y ** 3
    x, y = 0.7, -1.3
    want = np.array([[2 * y - np.sin(x) * y ** 3, 2 * x + 3 * np.cos(x) * y ** 2],
                     [2 * x + 3 * np.cos(x) * y ** 2, 6 * np.sin(x) * y]])
    np.testing.assert_allclose(needle.hessian(f)(np.array([x, y])), want, rtol=1e-12)


def test_third_derivative_of_tanh():
    for x in (-0.7, 0.0, 1.1):
        t = np.tanh(x)
        want = -2 * (1 - t * t) * (1 - 3 * t * t)
        got = needle.grad(needle.grad(needle.grad(nnp.tanh)))(np.float64(x))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


# --- stop_gradient and custom_vjp ------------------------------------------------------

def test_stop_gradient():
    g = needle.grad(lambda x: nnp.sum(x * needle.stop_gradient(x)))(X)
    np.testing.assert_allclose(g, X)
    g = jit(needle.grad(lambda x: nnp.sum(needle.stop_gradient(x ** 2) + x)))(X)
    np.testing.assert_allclose(g, np.ones(3))
    np.testing.assert_array_equal(needle.stop_gradient(X), X)
    p = needle.stop_gradient({"a": X})
    np.testing.assert_array_equal(p["a"], X)


@needle.custom_vjp
def clip_grad(x):
    return nnp.sin(x)


def _clip_fwd(x):
    return nnp.sin(x), nnp.cos(x)


def _clip_bwd(cos_x, ct):
    return (nnp.clip(ct * cos_x, -0.1, 0.1),)


clip_grad.defvjp(_clip_fwd, _clip_bwd)


def test_custom_vjp():
    x = np.array([0.1, 2.0, -0.5])
    want = np.clip(np.cos(x), -0.1, 0.1)
    np.testing.assert_allclose(needle.grad(lambda x: nnp.sum(clip_grad(x)))(x), want)
    np.testing.assert_allclose(jit(needle.grad(lambda x: nnp.sum(clip_grad(x))))(x),
                               want)
    np.testing.assert_allclose(needle.grad(jit(lambda x: nnp.sum(clip_grad(x))))(x),
                               want)
    np.testing.assert_allclose(clip_grad(x), np.sin(x))              # no differentiation
    np.testing.assert_allclose(jit(clip_grad)(x), np.sin(x))
    with pytest.raises(TypeError, match="custom_vjp"):
        needle.jvp(clip_grad, (x,), (x,))


def test_custom_vjp_second_order_differentiates_the_rules():
    @needle.custom_vjp
    def square(x):
        return x * x

    square.defvjp(lambda x: (x * x, x), lambda x, ct: (3.0 * ct * x,))   # a wrong-on-purpose rule
    g = needle.grad(lambda x: nnp.sum(square(x)))(X)
    np.testing.assert_allclose(g, 3 * X)
    gg = needle.grad(lambda x: nnp.sum(needle.grad(lambda y: nnp.sum(square(y)))(x)))(X)
    np.testing.assert_allclose(gg, np.full(3, 3.0))


def test_stable_log1pexp_with_custom_vjp_and_pytree_args():
    @needle.custom_vjp
    def f(p):
        return nnp.sum(nnp.log1p(nnp.exp(p["x"])) * p["s"])

    def fwd(p):
        return f(p), p

    def bwd(p, ct):
        return ({"x": ct * p["s"] * nn.sigmoid(p["x"]), "s": ct * nnp.log1p(nnp.exp(p["x"]))},)

    f.defvjp(fwd, bwd)
    p = {"x": np.array([1.0, 50.0]), "s": np.array(2.0)}
    g = needle.grad(f)(p)
    np.testing.assert_allclose(g["x"], 2 / (1 + np.exp(-p["x"])))
    np.testing.assert_allclose(g["s"], np.sum(np.log1p(np.exp(p["x"]))))


# --- compositions with jit ---------------------------------------------------------------

def test_compositions_with_jit():
    f = lambda x: nnp.sum(nnp.sin(x) * x ** 2)
    want = np.cos(X) * X ** 2 + 2 * X * np.sin(X)
    for got in (needle.grad(f)(X), jit(needle.grad(f))(X),
                needle.grad(jit(f))(X), jit(needle.grad(jit(f)))(X)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_training_step_under_jit():
    rng = np.random.default_rng(0)
    params = (rng.standard_normal((4, 3)).astype(np.float32),
              np.zeros(3, np.float32))
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = nn.one_hot(rng.integers(0, 3, 8), 3)

    def loss(params, x, y):
        w, b = params
        return -nnp.mean(nn.log_softmax(x @ w + b) * y)

    @jit
    def step(params, x, y):
        l, g = needle.value_and_grad(loss)(params, x, y)
        return l, needle.tree_util.tree_map(lambda p, d: p - 0.5 * d, params, g)

    l0, p1 = step(params, x, y)
    assert p1[0].dtype == np.float32
    l_eager, g_eager = needle.value_and_grad(loss)(params, x, y)
    np.testing.assert_allclose(l0, l_eager, rtol=1e-5)
    np.testing.assert_allclose(p1[0], params[0] - 0.5 * g_eager[0], rtol=1e-5, atol=1e-6)
    for _ in range(20):
        l, p1 = step(p1, x, y)
    assert l < l0


def test_grad_closes_over_outer_tracers():
    @jit
    def f(x, a):
        return needle.grad(lambda x: nnp.sum(nnp.sin(x * a)))(x)
    np.testing.assert_allclose(f(X, 2.0), 2.0 * np.cos(2.0 * X), rtol=1e-12)


# --- the size of cleaned backward programs -------------------------------------------------

def test_grad_of_sum_tanh_is_three_equations():
    cg = needle.make_ir(needle.grad(f_tanh))(X)
    check_graph(cg.graph)
    assert [e.prim.name for e in cg.graph.eqns] == ["tanh", "mul", "sub"], str(cg)


def test_third_derivative_program_is_compact():
    cg = needle.make_ir(needle.grad(needle.grad(needle.grad(nnp.tanh))))(0.5)
    check_graph(cg.graph)
    assert len(cg.graph.eqns) <= 12, str(cg)


def test_value_and_grad_of_mlp_loss_is_compact():
    w, x = np.ones((4, 3)), np.ones((2, 4))
    loss = lambda w, x: nnp.sum(nn.relu(x @ w))
    cg = needle.make_ir(needle.value_and_grad(loss))(w, x)
    names = [e.prim.name for e in cg.graph.eqns]
    assert names.count("dot_general") == 2 and len(names) <= 12, str(cg)


def test_no_marker_reaches_a_compiled_program():
    f = needle.grad(lambda x: nnp.sum(clip_grad(needle.stop_gradient(x) * x)))
    cg = needle.make_ir(f)(X)
    assert not any(e.prim.name in MARKERS for e in cg.graph.eqns)


def test_simplify_rules():
    from needle.ir import ClosedGraph, Eqn, Graph, Lit, ShapedArray, Var
    from needle.ir.primitives import BINARY, broadcast_in_dim_p, transpose_p
    from needle.passes.autodiff import cleanup
    a = ShapedArray((2, 2), np.dtype("f4"))
    x, one, y, z, t = Var(a), Var(a), Var(a), Var(a), Var(a)
    g = Graph([], [x], [
        Eqn(broadcast_in_dim_p, [Lit(np.float32(1))], {"shape": (2, 2),
                                                        "broadcast_dimensions": ()}, [one]),
        Eqn(BINARY["mul"], [x, one], {}, [y]),                           # x*1 -> x
        Eqn(BINARY["add"], [y, Lit(np.float32(0))], {}, [z]),            # x+0 -> x
        Eqn(transpose_p, [z], {"permutation": (1, 0)}, [t]),             # kept: not identity
    ], [t])
    out = cleanup(ClosedGraph(g, []))
    check_graph(out.graph)
    assert [e.prim.name for e in out.graph.eqns] == ["transpose"]
    assert out.graph.eqns[0].inputs == [x]


def test_zeros_helper_records_one_broadcast():
    cg = needle.make_ir(lambda x: ad_rules.zeros(needle.ShapedArray((3,), np.dtype("f4")))
                        + x)(np.ones(3, np.float32))
    assert cg.graph.eqns[0].prim.name == "broadcast_in_dim"


def test_autodiff_marking_is_per_thread():
    """A grad tracing in one thread does not mark another thread's traces
    (the depth is thread-local, as the trace stack is)."""
    import threading
    from needle.passes.autodiff import ad_active, ad_context
    seen, inside, done = [], threading.Event(), threading.Event()

    def other():
        inside.wait(10)
        seen.append(ad_active())
        done.set()
    t = threading.Thread(target=other)
    t.start()
    with ad_context():
        assert ad_active()
        inside.set()
        done.wait(10)
    t.join(10)
    assert seen == [False]
