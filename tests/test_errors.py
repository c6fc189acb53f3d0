"""Errors a user meets, each checked for what it must say: the user's own
file and line, the shapes and types involved, the argument's pytree path,
and what to do instead.

The expected line is found by a marker comment (`# <- name`) on the
offending statement, so editing this file above a test does not break it.
"""
import os
import re

import numpy as np
import pytest

import needle
import needle.numpy as nnp

HERE = os.path.basename(__file__)


def where(marker):
    """`test_errors.py:<line>` of the line holding `# <- marker`."""
    with open(__file__) as f:
        for n, line in enumerate(f, 1):
            if line.rstrip().endswith(f"# <- {marker}"):
                return f"{HERE}:{n}"
    raise AssertionError(f"no marker {marker}")


def assert_at(err, marker):
    msg = str(err.value)
    assert where(marker) in msg, f"expected {where(marker)} in:\n{msg}"


x34 = np.ones((3, 4), np.float32)


# --- Python control flow on traced values ------------------------------------------

def test_python_if_on_a_traced_value():
    def f(x):
        if x.sum() > 0:                                  # <- if
            return x
        return -x

    with pytest.raises(needle.ConcretizationError) as err:
        needle.jit(f)(x34)
    assert_at(err, "if")
    msg = str(err.value)
    assert "bool[]" in msg                               # the traced value's type
    assert "needle.numpy.where" in msg and "static" in msg


def test_python_while_on_a_traced_value():
    def f(x):
        while (x < 10.0).all():                          # <- while
            x = x * 2.0
        return x

    with pytest.raises(needle.ConcretizationError) as err:
        needle.jit(f)(x34)
    assert_at(err, "while")
    assert "needle.numpy.where" in str(err.value)


def test_bool_of_a_traced_value():
    def f(x):
        flag = bool(x[0, 0])                             # <- bool
        return x if flag else x

    with pytest.raises(needle.ConcretizationError) as err:
        needle.jit(f)(x34)
    assert_at(err, "bool")


def test_int_of_a_traced_value():
    def f(x, n):
        return x.reshape(int(n), -1)                     # <- int

    with pytest.raises(needle.ConcretizationError) as err:
        needle.jit(f)(x34, np.int64(3))
    assert_at(err, "int")
    msg = str(err.value)
    assert "i64[]" in msg and "static_argnums" in msg
    # ... and the suggestion works:
    out = needle.jit(f, static_argnums=1)(x34, 3)
    np.testing.assert_array_equal(out, x34.reshape(3, -1))


def test_numpy_function_on_a_traced_value():
    def f(x):
        return np.sin(x)                                 # <- np-sin

    with pytest.raises(needle.ConcretizationError) as err:
        needle.jit(f)(x34)
    assert_at(err, "np-sin")
    assert "needle.numpy" in str(err.value) and "f32[3,4]" in str(err.value)


def test_concretization_error_is_a_type_error():
    assert issubclass(needle.ConcretizationError, TypeError)
    assert issubclass(needle.ConcretizationError, needle.NeedleError)


# --- shapes and types ---------------------------------------------------------------

def test_incompatible_shapes_name_the_operation_and_both_shapes():
    def f(x, y):
        return x + y                                     # <- add

    with pytest.raises(needle.ShapeError) as err:
        needle.jit(f)(x34, np.ones(5, np.float32))
    assert_at(err, "add")
    msg = str(err.value)
    assert "add" in msg and "(3, 4)" in msg and "(5,)" in msg


def test_matmul_shape_error():
    def f(x, w):
        return x @ w                                     # <- matmul

    with pytest.raises(needle.ShapeError) as err:
        needle.jit(f)(x34, np.ones((5, 2), np.float32))
    assert_at(err, "matmul")
    msg = str(err.value)
    assert "matmul" in msg and "(3, 4)" in msg and "(5, 2)" in msg


def test_unsupported_argument_type_names_its_path():
    def f(params, x):
        return params["w"] * x

    params = {"w": np.ones(3, np.float32), "name": "layer1"}
    with pytest.raises(needle.TracingError) as err:
        needle.jit(f)(params, np.ones(3, np.float32))    # <- str-arg
    msg = str(err.value)
    assert "params['name']" in msg and "str" in msg and "static" in msg
    assert_at(err, "str-arg")


def test_unsupported_argument_in_a_nested_list_and_kwarg():
    def f(xs, scale):
        return xs[0] * scale

    with pytest.raises(needle.TracingError) as err:
        needle.jit(f)([np.ones(2, np.float32), object()], scale=2.0)
    assert "xs[1]" in str(err.value) and "object" in str(err.value)
    with pytest.raises(needle.TracingError) as err:
        needle.jit(f)([np.ones(2, np.float32)], scale="big")
    assert "argument scale " in str(err.value)


def test_unsupported_dtype_float16():
    with pytest.raises(needle.TracingError) as err:
        needle.jit(lambda x: x * 2.0)(np.ones((2, 3), np.float16))   # <- f16
    msg = str(err.value)
    assert "float16" in msg and "argument x" in msg and "(2, 3)" in msg
    assert "float32" in msg                              # what is supported
    assert_at(err, "f16")


def test_unsupported_output_type():
    with pytest.raises(needle.TracingError) as err:
        needle.jit(lambda x: {"y": x, "name": "out"})(x34)
    assert "['name']" in str(err.value) and "str" in str(err.value)


# --- leaked tracers and mutation ----------------------------------------------------

def test_leaked_tracer_used_in_another_jitted_call():
    stash = []

    @needle.jit
    def keep(x):
        stash.append(x * 2.0)                            # <- leak-made
        return x

    @needle.jit
    def use(x):
        return x + stash[0]                              # <- leak-used

    keep(x34)
    with pytest.raises(needle.LeakedTracerError) as err:
        use(x34)
    assert_at(err, "leak-made")
    assert_at(err, "leak-used")
    assert "return them" in str(err.value)


def test_leaked_tracer_used_eagerly():
    stash = []
    needle.jit(lambda x: stash.append(x) or x)(x34)
    with pytest.raises(needle.LeakedTracerError):
        nnp.sin(stash[0])


def test_leaked_tracer_passed_to_a_jitted_function_or_numpy():
    stash = []
    needle.jit(lambda x: stash.append(x) or x)(x34)
    double = needle.jit(lambda x: x * 2.0)
    with pytest.raises(needle.LeakedTracerError) as err:
        double(stash[0])                                 # <- leak-arg
    assert_at(err, "leak-arg")
    double(x34)                                          # now the signature is cached
    with pytest.raises(needle.LeakedTracerError):
        double(stash[0])
    with pytest.raises(needle.LeakedTracerError):
        np.asarray(stash[0])


def test_in_place_assignment_suggests_at_set():
    def f(x):
        x[0] = 1.0                                       # <- setitem
        return x

    with pytest.raises(TypeError) as err:
        needle.jit(f)(x34)
    assert_at(err, "setitem")
    msg = str(err.value)
    assert ".at[" in msg and ".set(" in msg and "f32[3,4]" in msg


def test_the_suggested_at_set_works():
    out = needle.jit(lambda x: x.at[0].set(1.0))(np.zeros((3, 4), np.float32))
    np.testing.assert_array_equal(out, np.r_[np.ones((1, 4)), np.zeros((2, 4))])


def test_errors_keep_the_user_line_for_eager_calls():
    with pytest.raises(needle.ShapeError) as err:
        nnp.add(x34, np.ones(5, np.float32))             # <- eager-add
    assert_at(err, "eager-add")


def test_shape_error_from_the_abstract_eval_of_a_primitive():
    from needle.ir.primitives import add_p

    def f(x, y):
        return add_p.bind(x, y)                          # <- prim-add

    with pytest.raises(needle.ShapeError) as err:
        needle.jit(f)(x34, np.ones(4, np.float32))
    assert_at(err, "prim-add")
    assert re.search(r"add: operand shapes differ: \(3, 4\) vs \(4,\)", str(err.value))
