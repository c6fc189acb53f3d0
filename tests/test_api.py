"""The public API of needle.jit: pytree arguments and results, weakly typed
Python scalars, static arguments, keyword arguments, constants captured from
closures, jit inside jit, odd graph outputs, and calls from several threads.

Every result is checked against numpy.
"""
import collections
import threading

import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle import tree_util
from helpers import assert_close

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


Pair = collections.namedtuple("Pair", "w b")


class Box:
    """A user class made a pytree node: two array children and static aux data."""

    def __init__(self, a, b, tag):
        self.a, self.b, self.tag = a, b, tag


tree_util.register_pytree_node(Box, lambda x: ((x.a, x.b), x.tag),
                               lambda tag, children: Box(*children, tag))


# --- pytrees as arguments and results ----------------------------------------------

def test_tuple_list_dict_none_arguments_and_results():
    @needle.jit
    def f(params, xs, nothing):
        assert nothing is None
        h = xs[0] @ params["w"] + params["b"]
        return {"h": h, "pair": (h.sum(), None), "list": [xs[1] * 2.0]}

    p = {"w": f32(3, 2), "b": f32(2)}
    xs = (f32(4, 3), f32(5))
    out = f(p, xs, None)
    assert set(out) == {"h", "pair", "list"}
    h = xs[0] @ p["w"] + p["b"]
    assert_close(out["h"], h)
    assert isinstance(out["pair"], tuple) and out["pair"][1] is None
    np.testing.assert_allclose(out["pair"][0], h.sum(), rtol=1e-5)
    assert isinstance(out["list"], list) and len(out["list"]) == 1
    assert_close(out["list"][0], xs[1] * 2)


def test_dict_keys_in_any_insertion_order_share_a_trace():
    f = needle.jit(lambda d: d["a"] - d["b"])
    a, b = f32(3), f32(3)
    before = needle.cache_info()
    assert_close(f({"a": a, "b": b}), a - b)
    assert_close(f({"b": b, "a": a}), a - b)
    assert needle.cache_info().traces - before.traces == 1


def test_namedtuple_argument_and_result():
    f = needle.jit(lambda p, x: Pair(x @ p.w, p.b + 1.0))
    p, x = Pair(f32(3, 2), f32(2)), f32(4, 3)
    out = f(p, x)
    assert type(out) is Pair
    assert_close(out.w, x @ p.w)
    assert_close(out.b, p.b + 1)


def test_registered_pytree_node():
    f = needle.jit(lambda box: Box(box.a * 2.0, box.b + 1, box.tag + "!"))
    a, b = f32(3), np.arange(4, dtype=np.int32)
    out = f(Box(a, b, "t"))
    assert isinstance(out, Box) and out.tag == "t!"
    assert_close(out.a, a * 2, np.float32)
    assert_close(out.b, b + 1, np.int32)
    assert tree_util.tree_leaves(Box(1, 2, "x")) == [1, 2]


def test_aux_data_of_a_registered_node_is_part_of_the_signature():
    f = needle.jit(lambda box: box.a * (2.0 if box.tag == "double" else 3.0))
    a = f32(3)
    assert_close(f(Box(a, a, "double")), a * 2)
    assert_close(f(Box(a, a, "triple")), a * 3)


# --- Python scalars are weakly typed -----------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_python_scalar_argument_takes_the_array_dtype(dtype):
    f = needle.jit(lambda x, a: x * a)
    x = np.arange(1, 4).astype(dtype)
    out = f(x, 2)
    assert out.dtype == dtype
    assert_close(out, x * 2, dtype)
    if np.dtype(dtype).kind == "f":
        out = f(x, 0.5)
        assert out.dtype == dtype
        assert_close(out, x * dtype(0.5), dtype)


def test_python_scalars_alone_give_default_types():
    add = needle.jit(lambda a, b: a + b)
    out = add(1.5, 2)
    assert np.asarray(out).dtype == np.float32 and float(out) == 3.5
    out = add(3, 4)
    assert np.asarray(out).dtype == np.int64 and int(out) == 7


def test_numpy_scalar_is_strongly_typed():
    f = needle.jit(lambda x, a: x * a)
    out = f(np.ones(3, np.float32), np.float64(2.0))
    assert out.dtype == np.float64
    assert_close(out, np.full(3, 2.0), np.float64)


def test_new_python_scalar_value_does_not_retrace():
    f = needle.jit(lambda x, a: x + a)
    x = f32(4)
    f(x, 1.0)
    before = needle.cache_info()
    for a in (2.0, -3.5, 7.25):
        assert_close(f(x, a), x + np.float32(a))
    after = needle.cache_info()
    assert after.traces == before.traces and after.hits - before.hits == 3


# --- static arguments and keyword arguments -----------------------------------------

def test_static_argnums_branches_and_caches_per_value():
    @needle.jit(static_argnums=1)
    def f(x, mode):
        if mode == "double":
            return x * 2.0
        return x + 1.0

    x = f32(3)
    before = needle.cache_info()
    assert_close(f(x, "double"), x * 2)
    assert_close(f(x, "inc"), x + 1)
    assert_close(f(x, "double"), x * 2)
    after = needle.cache_info()
    assert after.traces - before.traces == 2 and after.hits - before.hits == 1


def test_static_argnames_loop_count():
    @needle.jit(static_argnames="n")
    def f(x, n):
        for _ in range(n):
            x = x * 2.0
        return x

    x = f32(2, 2)
    assert_close(f(x, n=3), x * 8)
    assert_close(f(x, 2), x * 4)       # passed by position: still static


def test_static_argnums_passed_by_keyword_is_static():
    @needle.jit(static_argnums=(1,))
    def f(x, mode):
        return x * 2.0 if mode == "double" else x

    x = f32(3)
    assert_close(f(x, mode="double"), x * 2)
    assert_close(f(x, mode="same"), x)


@pytest.mark.parametrize("how", ["position", "keyword"])
def test_unhashable_static_argument_is_a_clear_error(how):
    f = needle.jit(lambda x, shape: x.reshape(shape), static_argnums=1)
    x = f32(6)
    with pytest.raises(TypeError, match=r"static argument shape has unhashable type list.*"
                                        r"hashable"):
        if how == "position":
            f(x, [2, 3])
        else:
            f(x, shape=[2, 3])
    assert_close(f(x, (2, 3)), x.reshape(2, 3))


def test_keyword_arguments_and_defaults():
    @needle.jit
    def f(x, y=None, scale=1.0):
        out = x * scale
        return out if y is None else out + y

    x, y = f32(3), f32(3)
    assert_close(f(x), x)
    assert_close(f(x, scale=3.0), x * 3)
    assert_close(f(x, y=y), x + y)
    assert_close(f(y=y, x=x, scale=0.5), x * 0.5 + y)


def test_varargs():
    f = needle.jit(lambda *xs: sum(xs[1:], xs[0]))
    a, b, c = f32(2), f32(2), f32(2)
    assert_close(f(a, b, c), a + b + c)


# --- odd graphs ---------------------------------------------------------------------

def test_output_is_an_input_passed_through():
    x = f32(3, 2)
    out, y = needle.jit(lambda x: (x, x * 2.0))(x)
    assert_close(out, x)
    assert_close(y, x * 2)
    out[0, 0] = 100.0                   # the result is the caller's own array
    assert x[0, 0] != 100.0


def test_literal_and_constant_outputs():
    f = needle.jit(lambda x: (x + 1.0, 3, 2.5, True))
    x = f32(2)
    y, i, fl, b = f(x)
    assert_close(y, x + 1)
    assert np.asarray(i) == 3 and np.asarray(i).dtype.kind == "i"
    assert np.asarray(fl) == 2.5 and np.asarray(fl).dtype == np.float32
    assert np.asarray(b) == True    # noqa: E712


def test_function_without_inputs():
    f = needle.jit(lambda: nnp.ones((2, 3)) * 2.0)
    assert_close(f(), np.full((2, 3), 2.0, np.float32), np.float32)
    assert_close(f(), np.full((2, 3), 2.0, np.float32), np.float32)


def test_non_contiguous_and_other_dtype_inputs_are_accepted():
    f = needle.jit(lambda x: x * 2.0)
    x = f32(3, 4)
    assert_close(f(x), x * 2)
    assert_close(f(x.T), x.T * 2)      # a transposed view: copied to C order
    assert_close(f(x[:, ::2]), x[:, ::2] * 2)


def test_closure_constants_are_captured_at_trace_time():
    """An array a function closes over is a constant of the traced program. As
    in JAX, it is a snapshot: changing the array afterwards (in place or by
    rebinding the name) neither retraces nor changes the results."""
    c = np.arange(3, dtype=np.float32)
    f = needle.jit(lambda x: x * c + c)
    x = f32(3)
    assert_close(f(x), x * np.arange(3) + np.arange(3))
    before = needle.cache_info()
    c[:] = 100.0
    assert_close(f(x), x * np.arange(3) + np.arange(3))
    c = np.zeros(3, np.float32)       # noqa: F841 - rebinding the global name
    assert_close(f(x), x * np.arange(3) + np.arange(3))
    assert needle.cache_info().traces == before.traces


def test_jit_inside_jit_is_inlined():
    inner = needle.jit(lambda x: nnp.tanh(x) * 2.0)
    outer = needle.jit(lambda x: inner(x) + inner(x + 1.0))
    x = f32(4)
    assert_close(outer(x), np.tanh(x) * 2 + np.tanh(x + 1) * 2)
    graph = needle.make_ir(outer)(x).graph
    assert [e.prim.name for e in graph.eqns].count("tanh") == 2
    assert all(e.prim.name != "kernel" for e in graph.eqns)


# --- threads ------------------------------------------------------------------------

def test_concurrent_calls_from_threads():
    """Four threads call one jitted function, on shapes that use the serial and
    the parallel (>= 65536 elements) kernel variants; each gets its own answer."""
    f = needle.jit(lambda x, y: nnp.tanh(x * 2.0 + y))
    xs = [f32(256, 320) for _ in range(4)]           # 81920 elements: parallel
    smalls = [f32(3, 5) for _ in range(4)]
    ys = [f32(320) for _ in range(4)]
    f(xs[0], ys[0])                                    # compile outside the race too
    errors, barrier = [], threading.Barrier(4)

    def work(i):
        try:
            barrier.wait()
            for _ in range(5):
                np.testing.assert_allclose(f(xs[i], ys[i]), np.tanh(xs[i] * 2 + ys[i]),
                                           rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(f(smalls[i], ys[i][:5]),
                                           np.tanh(smalls[i] * 2 + ys[i][:5]),
                                           rtol=1e-5, atol=1e-6)
        except BaseException as e:       # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_first_calls_from_threads_trace_once():
    f = needle.jit(lambda x: x * 3.0 - 1.0)
    x = f32(7, 3)
    before = needle.cache_info()
    results, barrier = [None] * 4, threading.Barrier(4)

    def work(i):
        barrier.wait()
        results[i] = f(x)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert_close(r, x * 3 - 1)
    assert needle.cache_info().traces - before.traces == 1


def test_a_trace_in_one_thread_does_not_capture_another_threads_call():
    """While thread A is inside a trace, a jitted call in thread B is a
    top-level call: it compiles, rather than being inlined into A's trace."""
    started, release = threading.Event(), threading.Event()

    def slow(x):
        started.set()
        release.wait(10)                 # hold A's trace open
        return x * 2.0

    f, g = needle.jit(slow), needle.jit(lambda x: nnp.sin(x) + 1.0)
    x = f32(3)
    out = {}
    a = threading.Thread(target=lambda: out.setdefault("f", f(x)))
    a.start()
    try:
        assert started.wait(10)
        before = needle.cache_info()
        out["g"] = g(x)
        assert needle.cache_info().traces - before.traces == 1
    finally:
        release.set()
        a.join()
    assert_close(out["f"], x * 2)
    assert_close(out["g"], np.sin(x) + 1)


# --- eval_shape ---------------------------------------------------------------------

def test_eval_shape_on_arrays_and_shape_structs():
    def f(x, p):
        return {"y": nnp.tanh(x @ p["w"]), "n": x.sum(axis=0).astype(nnp.float64)}

    spec = needle.ShapedArray((784, 10), np.dtype(np.float32))
    before = needle.cache_info()
    out = needle.eval_shape(f, np.zeros((128, 784), np.float32), {"w": spec})
    assert out["y"].shape == (128, 10) and out["y"].dtype == np.float32
    assert out["n"].shape == (784,) and out["n"].dtype == np.float64
    after = needle.cache_info()
    assert after.kernels_compiled == before.kernels_compiled
    assert after.kernels_loaded == before.kernels_loaded
