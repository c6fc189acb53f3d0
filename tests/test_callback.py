"""needle.pure_callback: host Python with results, inside traced and compiled
code (JAX's jax.pure_callback; ir/primitives/callback.py).

Input: small numpy programs whose host part is numpy (sin, sort, a cumulative
product) called through pure_callback, eagerly, under jit, grad (through
custom_vjp), vmap (each vmap_method) and inside a scan body. Output: pass /
fail. References are numpy on the same inputs and central differences in
float64; the callback's calls are counted to show when it runs (every call
of a compiled program; once per example under vmap 'sequential'; never when
its results are unused). The IR shows the primitive as a host step between
kernels, never inside one.

The jitted cases are marked `on_device`: with NEEDLE_TEST_DEVICE=cuda they
run again compiled for CUDA (helpers.jit), where the operands are staged to
the host and the results back to the device.
"""
import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle import lax
from needle.lowering import fuse_for
from needle.passes import run_pipeline

from helpers import jit

F32 = np.float32
X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], F32)


def spec(shape, dtype=F32):
    return needle.ShapeDtypeStruct(shape, dtype)


class Counted:
    """A host function that records the shapes it was called with."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []
        self.__name__ = fn.__name__

    def __call__(self, *args, **kwargs):
        self.calls.append(tuple(np.shape(a) for a in args))
        return self.fn(*args, **kwargs)


def host_sin(x):
    return np.sin(x)


@pytest.mark.on_device
def test_values_eager_and_under_jit_at_every_call():
    cb = Counted(lambda x, y: np.sort(x, axis=1) * y)
    eager = needle.pure_callback(cb, spec((2, 3)), X, F32(3))
    np.testing.assert_array_equal(eager, np.sort(X, axis=1) * 3)
    assert type(eager) is np.ndarray and len(cb.calls) == 1
    f = jit(lambda x, y: needle.pure_callback(cb, spec((2, 3)), x * 2, y) + 1)
    for k in range(3):
        np.testing.assert_allclose(np.asarray(f(X + k, F32(k))),
                                   np.sort((X + k) * 2, axis=1) * k + 1, rtol=1e-6)
    assert len(cb.calls) == 4                   # once per call of the compiled program


@pytest.mark.on_device
def test_pytrees_kwargs_and_several_results():
    def host(tree, scale, *, shift):
        a, (b, label) = tree["a"], tree["b"]
        assert label == "static"                # a non-array leaf is passed as it is
        return {"sum": a.sum(axis=0) * scale + shift, "cum": np.cumprod(b).astype(np.int32)}

    b = np.array([1, 2, 3, 4], np.int32)
    out_spec = {"sum": spec((3,)), "cum": spec((4,), np.int32)}

    def f(a, b):
        return needle.pure_callback(host, out_spec, {"a": a, "b": (b, "static")}, F32(2),
                                    shift=F32(0.5))

    for got in (f(X, b), jit(f)(X, b)):
        np.testing.assert_allclose(np.asarray(got["sum"]), X.sum(axis=0) * 2 + 0.5, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(got["cum"]), np.cumprod(b))
        assert np.asarray(got["cum"]).dtype == np.int32


def test_results_must_match_the_declared_shapes_and_dtypes():
    with pytest.raises(TypeError, match=r"pure_callback\(host_sin\): result 0 is "
                                        r"float32\[2, 3\], its result_shape_dtypes declare "
                                        r"float32\[3, 2\]"):
        jit(lambda x: needle.pure_callback(host_sin, spec((3, 2)), x))(X)
    with pytest.raises(TypeError, match=r"result 0 is float64\[2, 3\].*float32\[2, 3\]"):
        needle.pure_callback(lambda x: np.sin(x.astype(np.float64)), spec((2, 3)), X)
    with pytest.raises(TypeError, match=r"result_shape_dtypes\[1\] is str"):
        needle.pure_callback(host_sin, [spec((2, 3)), "f32"], X)
    with pytest.raises(ValueError, match=r"vmap_method='loop' is none of"):
        needle.pure_callback(host_sin, spec((2, 3)), X, vmap_method="loop")


@pytest.mark.on_device
def test_results_never_alias_the_callbacks_arrays():
    held = np.zeros((2, 3), F32)
    f = jit(lambda x: needle.pure_callback(lambda v: held, spec((2, 3)), x) + x)
    out = np.asarray(f(X))
    held[...] = 7.0                              # the callback's own array, changed after
    np.testing.assert_array_equal(out, X)


# --- autodiff: not differentiable by itself; custom_vjp gives the rule ----------------------

def test_a_derivative_reaching_it_is_an_error_naming_it():
    def f(x):
        return nnp.sum(needle.pure_callback(host_sin, spec((2, 3)), x))

    for transform in (needle.grad, lambda g: jit(needle.grad(g))):
        with pytest.raises(TypeError, match=r"pure_callback\(host_sin\) is not differentiable.*"
                                            r"float32\[2, 3\].*needle.custom_vjp"):
            transform(f)(X)


def test_under_grad_with_no_tangent_reaching_it():
    # the callback reads only y, the gradient is taken with respect to x
    def f(x, y):
        return nnp.sum(x * needle.pure_callback(host_sin, spec((2, 3)), y))
    g = jit(needle.grad(f))(X, X + 1)
    np.testing.assert_allclose(g, np.sin(X + 1), rtol=1e-6)


@needle.custom_vjp
def host_sin_vjp(x):
    return needle.pure_callback(host_sin, spec(x.shape, x.dtype), x)


def _fwd(x):
    return host_sin_vjp(x), x


def _bwd(x, ct):
    # the backward calls host code too: cos(x) * ct
    return (needle.pure_callback(lambda a, c: np.cos(a) * c, spec(x.shape, x.dtype), x, ct),)


host_sin_vjp.defvjp(_fwd, _bwd)


def _central(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, dn = x.copy(), x.copy()
        up[idx] += eps
        dn[idx] -= eps
        g[idx] = (f(up) - f(dn)) / (2 * eps)
    return g


@pytest.mark.on_device
def test_grad_through_custom_vjp_matches_central_differences():
    w = np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0]])

    def loss(x):
        return nnp.sum(host_sin_vjp(x * 1.5) ** 2 * w.astype(F32))

    want = _central(lambda x: np.sum(np.sin(x * 1.5) ** 2 * w), X.astype(np.float64))
    for grad in (needle.grad(loss), jit(needle.grad(loss))):
        np.testing.assert_allclose(np.asarray(grad(X)), want, rtol=1e-5, atol=1e-6)
    value, g = jit(needle.value_and_grad(loss))(X)
    np.testing.assert_allclose(float(value), np.sum(np.sin(X * 1.5) ** 2 * w), rtol=1e-5)


# --- vmap: JAX's vmap_method ---------------------------------------------------------------

def scaled(x, y):
    """sin(x) * y, y one scale per row when it has an axis (a batch)."""
    return np.sin(x) * (np.reshape(y, (-1, 1)) if np.ndim(y) else y)


def test_vmap_methods():
    y = np.float32(2)

    def per_row(method, cb):
        return lambda x: needle.pure_callback(cb, spec((3,)), x, y, vmap_method=method)

    seq = Counted(scaled)
    np.testing.assert_allclose(needle.vmap(per_row("sequential", seq))(X), np.sin(X) * 2,
                               rtol=1e-6)
    assert seq.calls == [((3,), ())] * 2         # once per example
    exp = Counted(scaled)
    np.testing.assert_allclose(jit(needle.vmap(per_row("expand_dims", exp)))(X),
                               np.sin(X) * 2, rtol=1e-6)
    assert exp.calls == [((2, 3), (1,))]         # once: the unbatched y with an axis of 1
    allb = Counted(scaled)
    np.testing.assert_allclose(needle.vmap(per_row("broadcast_all", allb))(X), np.sin(X) * 2,
                               rtol=1e-6)
    assert allb.calls == [((2, 3), (2,))]        # once: y repeated along the batch
    with pytest.raises(NotImplementedError, match=r"vmap of pure_callback\(host_sin\): it has "
                                                  r"no vmap_method"):
        needle.vmap(lambda x: needle.pure_callback(host_sin, spec((3,)), x))(X)


# --- control flow, the IR, fusion ------------------------------------------------------------

@pytest.mark.on_device
def test_inside_a_scan_body_once_per_step():
    cb = Counted(lambda c, x: np.tanh(c + x))

    def f(c0, xs):
        def body(c, x):
            h = needle.pure_callback(cb, spec((3,)), c * 0.5, x)
            return h, nnp.sum(h)
        return lax.scan(body, c0, xs)

    xs = np.arange(12, dtype=F32).reshape(4, 3) / 10
    c, want_ys = X[0].astype(np.float64), []
    for x in xs:
        c = np.tanh(c * 0.5 + x)
        want_ys.append(c.sum())
    got_c, got_ys = jit(f)(X[0], xs)
    np.testing.assert_allclose(np.asarray(got_c), c, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got_ys), want_ys, rtol=1e-5)
    assert len(cb.calls) == 4


def test_ir_shows_it_as_a_host_step_between_kernels():
    cb = Counted(host_sin)

    def f(x):
        a = nnp.exp(x) * 2.0
        return nnp.tanh(needle.pure_callback(cb, spec((2, 3)), a)) + a

    text = str(needle.make_ir(f)(X))
    assert "pure_callback[callback=host_sin result_avals=(f32[2,3],) vmap_method=None]" in text
    cg, _ = run_pipeline(needle.make_ir(f)(X), check=True)
    fused = fuse_for(cg, "cpu").graph
    assert [e.prim.name for e in fused.eqns] == ["kernel", "pure_callback", "kernel"]
    for e in fused.eqns:
        if e.prim.name == "kernel":
            assert "pure_callback" not in [s.prim.name for s in e.params["graph"].eqns]
    lo = needle.jit(f).lower(X)
    assert lo.kernel_count == 2 and "pure_callback" in lo.as_text("fused")
    np.testing.assert_allclose(needle.jit(f)(X), np.tanh(np.sin(np.exp(X) * 2)) +
                               np.exp(X) * 2, rtol=1e-5)


def test_dropped_when_unused_kept_when_used():
    cb = Counted(host_sin)

    def unused(x):
        needle.pure_callback(cb, spec((2, 3)), x)
        return x + 1

    np.testing.assert_array_equal(needle.jit(unused)(X), X + 1)
    assert cb.calls == []                        # pure: nothing reads it, it is dropped

    def twice(x):
        return needle.pure_callback(cb, spec((2, 3)), x) + \
            needle.pure_callback(cb, spec((2, 3)), x)

    cg, _ = run_pipeline(needle.make_ir(twice)(X), check=True)
    assert sum(e.prim.name == "pure_callback" for e in cg.graph.eqns) == 2
    np.testing.assert_allclose(needle.jit(twice)(X), 2 * np.sin(X), rtol=1e-6)
    assert len(cb.calls) == 2
