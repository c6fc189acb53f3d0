"""needle.debug: `print` / `callback` inside compiled code, and `debug_nans`.

debug.print runs when the program runs: every call of a jitted function
prints (not only the trace), prints keep program order, pytrees and 0-d
values format as in JAX, under grad it prints the forward values once (also
under jit(grad)), under vmap once per example, eagerly at once; a value
computed only for printing survives DCE, and the print neither lands in a
kernel nor breaks the fusion of the elementwise ops around it. debug_nans
names the first equation that made a NaN (primitive, shapes, this file's
line), or the argument that already held one; off, a NaN is just returned.

The jitted cases are marked `on_device`: with NEEDLE_TEST_DEVICE=cuda they
run again compiled for CUDA (helpers.jit), where the print's operands are
copied to the host before printing and debug_nans copies the results back to
scan them.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle import debug
from needle.passes import run_pipeline
from needle.lowering import fuse_for

from helpers import DEVICE, jit

X = np.array([0.5, 1.0, 2.0], np.float32)


def lines(capsys):
    return capsys.readouterr().out.splitlines()


# --- debug.print ---------------------------------------------------------------------

@pytest.mark.on_device
def test_print_inside_jit_prints_at_every_call(capsys):
    def f(x):
        y = x * 2.0
        debug.print("y={}", y)
        return y + 1.0

    jf = jit(f)
    assert lines(capsys) == []                         # nothing printed before a call
    np.testing.assert_allclose(jf(X), X * 2 + 1)
    assert lines(capsys) == ["y=[1. 2. 4.]"]
    jf(X + 1)                                          # cached: prints the new values
    assert lines(capsys) == ["y=[3. 4. 6.]"]


@pytest.mark.on_device
def test_prints_keep_program_order(capsys):
    # On CPU exp(x) lands in one kernel with x * (x @ x), after the BLAS call;
    # the second print reads only the argument and is ready first: without
    # the order between effects (fusion._toposort) it ran first.
    def f(x):
        debug.print("first {:.3f}", nnp.sum(nnp.exp(x)))
        debug.print("second {}", x)
        debug.print("third")
        return x * (x @ x)

    jit(f)(X)
    assert lines(capsys) == [f"first {np.exp(X.astype(np.float64)).sum():.3f}",
                             "second [0.5 1.  2. ]", "third"]


@pytest.mark.on_device
def test_print_of_a_pytree_a_scalar_and_static_leaves(capsys):
    def f(p, n):
        debug.print("{name}: w={p[w]} b={p[b]} n={n} mean={m:.2f}", name="layer", p=p, n=n,
                    m=nnp.mean(p["w"]))
        debug.print("{}", (p["b"], 3.0))
        return p["w"] * n

    p = {"w": X, "b": np.float32(0.25)}
    jit(f)(p, np.int32(4))
    assert lines(capsys) == ["layer: w=[0.5 1.  2. ] b=0.25 n=4 mean=1.17",
                             "(array(0.25, dtype=float32), array(3., dtype=float32))"]


def test_print_eagerly_and_its_equation(capsys):
    debug.print("x={x} {}", 7, x=X)
    assert lines(capsys) == ["x=[0.5 1.  2. ] 7"]
    cg = needle.make_ir(lambda x: debug.print("x={}", x * 2.0))(X)
    assert "debug_callback[callback=print('x={}')] b" in str(cg)
    assert lines(capsys) == []                         # tracing prints nothing


def test_callback_gets_numpy_arrays():
    seen = []
    f = needle.jit(lambda x: (debug.callback(lambda a, k: seen.append((a, k)), x * 3.0,
                                             k="tag"), x)[1])
    f(X)
    f(X)
    assert len(seen) == 2 and seen[0][1] == "tag"
    assert type(seen[0][0]) is np.ndarray and seen[0][0] is not seen[1][0]
    np.testing.assert_array_equal(seen[1][0], X * 3)


@pytest.mark.on_device
def test_value_printed_only_is_not_dead_code(capsys):
    def f(x):
        debug.print("{}", nnp.exp(x))                  # exp is used by nothing else
        return x * 2.0

    jf = jit(f)
    jf(X)
    np.testing.assert_allclose([float(v) for v in lines(capsys)[0][1:-1].split()],
                               np.exp(X), rtol=1e-6)
    optimised, _ = run_pipeline(needle.make_ir(f)(X))
    assert [e.prim.name for e in optimised.graph.eqns].count("exp") == 1


@pytest.mark.on_device
def test_print_leaves_fusion_and_values_intact(capsys):
    def f(x):
        y = nnp.tanh(x) * 2.0
        debug.print("{}", y)
        return y * y + 1.0

    jf = jit(f)
    y = np.tanh(X) * 2
    np.testing.assert_allclose(jf(X), y * y + 1, rtol=1e-6)
    np.testing.assert_allclose([float(v) for v in lines(capsys)[0][1:-1].split()], y,
                               rtol=1e-6)
    assert jf.jitted.lower(X).kernel_count == 1       # y and the result: one kernel
    fused = fuse_for(run_pipeline(needle.make_ir(f)(X))[0], DEVICE).graph
    assert [e.prim.name for e in fused.eqns] == ["kernel", "debug_callback"]


# --- under transformations -----------------------------------------------------------

def _loss(x):
    debug.print("x={}", x)
    debug.print("s={:.3f}", nnp.sum(nnp.sin(x)))
    return nnp.sum(nnp.sin(x) * x)


def _loss_grad(x):
    return np.cos(x) * x + np.sin(x)


def test_grad_prints_forward_values_once(capsys):
    g = needle.grad(_loss)(X)
    np.testing.assert_allclose(g, _loss_grad(X), rtol=1e-6)
    assert lines(capsys) == ["x=[0.5 1.  2. ]", f"s={np.sin(X).sum():.3f}"]


@pytest.mark.on_device
def test_jit_of_grad_prints_once_per_call(capsys):
    g = jit(needle.grad(_loss))
    for k in range(2):
        np.testing.assert_allclose(g(X + k), _loss_grad(X + k), rtol=1e-5)
        assert lines(capsys) == [f"x={X + k}", f"s={np.sin(X + k).sum():.3f}"]


@pytest.mark.on_device
def test_vmap_prints_once_per_example(capsys):
    xs = np.stack([X, X + 1])
    out = jit(needle.vmap(lambda x, c: (debug.print("{} c={}", x, c), x * c)[1],
                          in_axes=(0, None)))(xs, np.float32(2.0))
    np.testing.assert_allclose(out, xs * 2)
    assert lines(capsys) == ["[0.5 1.  2. ] c=2.0", "[1.5 2.  3. ] c=2.0"]   # as JAX


# --- debug_nans ----------------------------------------------------------------------

@pytest.fixture
def nans():
    with needle.debug_nans(True):
        yield


_LINE = sys._getframe().f_lineno + 1
_f_nan = lambda x: nnp.log(x) * 0.0 + nnp.sqrt(x - 2.0)     # noqa: E731


@pytest.mark.on_device
def test_debug_nans_names_the_primitive_and_the_line(nans):
    f = jit(_f_nan)
    np.testing.assert_allclose(f(np.array([3.0, 6.0], np.float32)), [1.0, 2.0])  # no NaN
    with pytest.raises(FloatingPointError) as err:
        f(np.array([1.0, 3.0], np.float32))
    msg = str(err.value)
    assert "sqrt made a NaN from operands without one" in msg, msg
    assert "sqrt on (f32[2]) -> (f32[2])" in msg and "sqrt(-1.0) = nan" in msg, msg
    assert f"test_debug.py:{_LINE}" in msg, msg


@pytest.mark.on_device
@pytest.mark.filterwarnings("ignore:needle.jit")          # CPU donation's one-time warning
def test_debug_nans_reruns_on_a_copy_of_donated_arguments(nans):
    # the result of sqrt takes x's buffer: the rerun must see x as it was
    f = jit(lambda x: nnp.sqrt(x - 2.0), donate_argnums=0)
    with pytest.raises(FloatingPointError, match="sqrt made a NaN"):
        f(np.array([1.0, 3.0], np.float32))


@pytest.mark.on_device
def test_debug_nans_reports_an_input_that_holds_nan(nans):
    f = jit(lambda x, y: x * y + 1.0)
    with pytest.raises(FloatingPointError, match=r"input y already contains NaN \(first at "
                                                 r"index \(1,\)\)"):
        f(X, np.array([1.0, np.nan, 2.0], np.float32))


@pytest.mark.on_device
def test_debug_nans_off_returns_the_nan():
    with needle.debug_nans(True):
        pass                                           # the context restores "off"
    out = jit(_f_nan)(np.array([1.0, 3.0], np.float32))
    assert np.isnan(out[0]) and out[1] == 1.0


def test_debug_nans_eager_and_grad(nans):
    with pytest.raises(FloatingPointError, match=r"(?s)sqrt made a NaN.*test_debug.py"):
        _f_nan(np.array([1.0, 3.0], np.float32))
    with pytest.raises(FloatingPointError, match="log made a NaN"):
        needle.jit(needle.grad(lambda x: nnp.sum(nnp.log(x) * x)))(np.array([-1.0], np.float32))


def test_debug_nans_from_the_environment():
    code = "import needle, needle.numpy as nnp; import numpy as np; nnp.log(np.float32(-1))"
    env = dict(os.environ, NEEDLE_DEBUG_NANS="1", NEEDLE_PREWARM="0")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "FloatingPointError" in r.stderr, r.stderr

