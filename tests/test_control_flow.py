"""needle.lax control flow (needle/control_flow.py): values and API behaviour
of scan, cond, switch, while_loop, fori_loop, map and checkpoint, against
plain numpy reference code (Python loops over numpy arrays), eagerly (the
primitives' numpy implementations) and under needle.jit.

Covered: hypothesis-drawn scans (carries as a single array, a scalar, a
tuple, a dict and a namedtuple mixing float32 / float64 / int32 leaves; xs
as None, an array or a pytree of float32 / float64 / int32 leaves; lengths 0
and 1; reverse; a body mixing elementwise ops, a reduction and a matmul over
a captured constant); cond and switch (clamped index, captured constants in
both branches, weakly typed Python-scalar results, pytree operands);
while_loop (a data-dependent trip count, zero iterations); fori_loop with
concrete and traced bounds; map; nesting (scan in scan, cond in scan, scan in
cond, while in scan); checkpoint; the errors of the API; the IR of a scan
(one nested body, whatever the length).

Every value check has an eager and a jit twin.
"""
from collections import namedtuple

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

import needle
import needle.numpy as nnp
from needle import lax
from needle.ir.interpreter import run_numpy

from helpers import jit

# The jit twins also run compiled for $NEEDLE_TEST_DEVICE (CUDA in the simulator).
pytestmark = pytest.mark.on_device

MODES = ["eager", "jit"]

State = namedtuple("State", ["h", "k"])


def _call(f, args, mode):
    """f(*args) eagerly, or through needle.jit (results back as numpy)."""
    return jit(f)(*args) if mode == "jit" else f(*args)


# --- comparison of pytrees (written without needle's tree utilities) ---------------------

def _tol(dtype):
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return dict(rtol=1e-4, atol=1e-5)
    if dtype == np.float64:
        return dict(rtol=1e-10, atol=1e-12)
    return dict(rtol=0, atol=0)


def assert_tree(got, want, path=""):
    """Same structure (tuple / namedtuple / dict / None / leaf), and leaves
    of the same shape and dtype and close values."""
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{path}: {type(got).__name__} is not a dict"
        assert sorted(got) == sorted(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            assert_tree(got[k], want[k], f"{path}[{k!r}]")
    elif isinstance(want, (tuple, list)):
        assert type(got) is type(want), f"{path}: {type(got).__name__} != {type(want).__name__}"
        assert len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_tree(g, w, f"{path}[{i}]")
    elif want is None:
        assert got is None, f"{path}: {got!r} is not None"
    else:
        g, w = np.asarray(got), np.asarray(want)
        assert g.shape == w.shape, f"{path}: shape {g.shape} != {w.shape}"
        assert g.dtype == w.dtype, f"{path}: dtype {g.dtype} != {w.dtype}"
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, err_msg=path, **_tol(w.dtype))
        else:
            np.testing.assert_array_equal(g, w, err_msg=path)


def _leaves(tree):
    if isinstance(tree, dict):
        return [v for k in sorted(tree) for v in _leaves(tree[k])]
    if isinstance(tree, (tuple, list)):
        return [v for t in tree for v in _leaves(t)]
    return [] if tree is None else [tree]


def _rebuild(tree, leaves):
    """`tree`'s structure with `leaves` (an iterator) in place of its leaves."""
    if isinstance(tree, dict):
        return {k: _rebuild(tree[k], leaves) for k in sorted(tree)}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*[_rebuild(t, leaves) for t in tree])
    if isinstance(tree, (tuple, list)):
        return type(tree)(_rebuild(t, leaves) for t in tree)
    return None if tree is None else next(leaves)


def ref_scan(f, init, xs, length, reverse=False):
    """numpy lax.scan: a Python loop over the leading axis of xs' leaves."""
    x_leaves = [np.asarray(x) for x in _leaves(xs)]
    carry, ys = init, [None] * length
    for i in range(length):
        t = length - 1 - i if reverse else i
        carry, ys[t] = f(carry, _rebuild(xs, iter([x[t] for x in x_leaves])))
    if length:
        y_leaves = [np.stack([np.asarray(v) for v in vs]) for vs in
                    zip(*[_leaves(y) for y in ys])]
        return carry, _rebuild(ys[0], iter(y_leaves))
    # no step: the ys' types come from a step on zeros
    x0 = _rebuild(xs, iter([np.zeros(x.shape[1:], x.dtype) for x in x_leaves]))
    _, y0 = f(init, x0)
    return carry, _rebuild(y0, iter([np.empty((0,) + np.shape(v), np.asarray(v).dtype)
                                     for v in _leaves(y0)]))


# --- scan: hypothesis ---------------------------------------------------------------------

CARRIES = ["array", "scalar", "tuple", "dict", "namedtuple"]
XS = ["none", "array", "tuple", "dict"]
F32, F64, I32 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32)


def _pack(kind, h, k):
    if kind in ("array", "scalar"):
        return h
    return {"tuple": lambda: (h, k), "dict": lambda: {"h": h, "k": k},
            "namedtuple": lambda: State(h, k)}[kind]()


def _unpack(kind, c):
    if kind in ("array", "scalar"):
        return c, None
    if kind == "tuple":
        return c
    if kind == "dict":
        return c["h"], c["k"]
    return c.h, c.k


def _xparts(kind, x):
    if kind == "none":
        return None, None
    if kind == "array":
        return x, None
    if kind == "tuple":
        return x
    return x["a"], x["i"]


def _step(xp, W, b, scalar, h, k, xa, xi):
    """One step, the same code for numpy (xp=np) and needle (xp=nnp): a
    matmul with a captured constant, elementwise ops, a reduction; an int32
    counter; a pytree y."""
    if scalar:
        z = h * W[0, 0]
        if xa is not None:
            z = z + xa.astype(h.dtype).sum()
    else:
        z = h @ W
        if xa is not None:
            z = z + xa.astype(h.dtype)
    z = xp.tanh(z * 0.5 + b)
    s = z.sum()
    h2 = z - s * 0.125
    y = {"s": s, "h": h2 * 2.0}
    k2 = None
    if k is not None:
        k2 = (k * 3 + 1) % 7
        if xi is not None:
            k2 = (k2 + xi) % 7
        y["k"] = k2 * 2
    return h2, k2, y


def _scan_problem(case):
    carry_kind, fdt, x_kind, xdt, length, reverse, n, seed = case
    rng = np.random.default_rng(seed)
    scalar = carry_kind == "scalar"
    W = (rng.standard_normal((n, n)) / n).astype(fdt)
    b = (rng.standard_normal(() if scalar else (n,)) * 0.1).astype(fdt)
    h = (rng.standard_normal(() if scalar else (n,))).astype(fdt)
    if scalar:
        h = fdt.type(h)                      # a numpy scalar, not a 0-d array
    init = _pack(carry_kind, h, np.int32(rng.integers(0, 7)))
    xa = rng.standard_normal((length, n)) * 2
    xa = xa.astype(xdt) if xdt.kind == "f" else np.round(xa).astype(xdt)
    xi = rng.integers(0, 5, (length,)).astype(np.int32)
    xs = {"none": None, "array": xa, "tuple": (xa, xi), "dict": {"a": xa, "i": xi}}[x_kind]

    def body(xp):
        def f(c, x):
            hh, kk = _unpack(carry_kind, c)
            h2, k2, y = _step(xp, W, b, scalar, hh, kk, *_xparts(x_kind, x))
            return _pack(carry_kind, h2, k2), y
        return f

    def needle_fn(init, xs=None):
        return lax.scan(body(nnp), init, xs, length=length if xs is None else None,
                        reverse=reverse)
    return needle_fn, body(np), init, xs


@st.composite
def scan_cases(draw):
    return (draw(st.sampled_from(CARRIES)), draw(st.sampled_from([F32, F64])),
            draw(st.sampled_from(XS)), draw(st.sampled_from([F32, F64, I32])),
            draw(st.sampled_from([0, 1, 2, 5])), draw(st.booleans()),
            draw(st.integers(1, 3)), draw(st.integers(0, 2**16)))


def check_scan(case, mode):
    f, ref_body, init, xs = _scan_problem(case)
    length, reverse = case[4], case[5]
    args = (init,) if xs is None else (init, xs)
    got = _call(f, args, mode)
    want = ref_scan(ref_body, init, xs, length, reverse)
    assert_tree(got, want)
    if mode == "eager":     # the primitive's reference implementation (the interpreter) too
        cg = needle.make_ir(f)(*args)
        leaves = [np.asarray(v) for v in _leaves(list(args))]
        flat = run_numpy(cg.graph, cg.consts, leaves)
        assert_tree(_rebuild(want, iter(flat)), want)


@given(scan_cases())
@example(("dict", F32, "dict", F64, 0, False, 2, 1))
@example(("namedtuple", F64, "tuple", I32, 1, True, 3, 2))
@example(("scalar", F32, "none", F32, 5, True, 1, 3))
@example(("tuple", F64, "array", F32, 5, False, 3, 4))
def test_scan_values_eager(case):
    check_scan(case, "eager")


# each jitted case compiles kernels: a fixed handful
@pytest.mark.parametrize("case", [
    ("dict", F32, "dict", F64, 3, False, 2, 1),
    ("namedtuple", F64, "tuple", I32, 1, True, 3, 2),
    ("scalar", F32, "none", F32, 4, True, 1, 3),
    ("array", F64, "array", F32, 0, False, 3, 4),
], ids=["dict", "namedtuple-len1", "scalar-noxs", "array-len0"])
def test_scan_values_jit(case):
    check_scan(case, "jit")


@pytest.mark.parametrize("mode", MODES)
def test_scan_unroll_and_rnn(mode):
    """An RNN (the xs' projection is a matmul of the whole sequence's step
    input) with unroll=2 over an odd length."""
    rng = np.random.default_rng(0)
    Wx, Wh = rng.standard_normal((3, 4)) * 0.5, rng.standard_normal((4, 4)) * 0.5
    xs, h0 = rng.standard_normal((5, 3)), np.zeros(4)

    def f(h0, xs):
        return lax.scan(lambda h, x: (nnp.tanh(x @ Wx + h @ Wh),) * 2, h0, xs, unroll=2)

    def ref(h, x):
        h = np.tanh(x @ Wx + h @ Wh)
        return h, h
    assert_tree(_call(f, (h0, xs), mode), ref_scan(ref, h0, xs, 5))


@pytest.mark.parametrize("mode", MODES)
def test_scan_weak_scalar_init_takes_the_body_type(mode):
    xs32 = np.arange(4, dtype=np.float32) * 0.5
    xs64 = np.arange(3, dtype=np.float64) * 0.25

    def f(xs32, xs64):
        a = lax.scan(lambda c, x: (c + x, c * 2), 0, xs32)       # Python int carried as f32
        b = lax.scan(lambda c, x: (c * x + 1.0, None), 1.0, xs64)  # Python float as f64
        return a, b[0]
    (ca, ya), cb = _call(f, (xs32, xs64), mode)
    assert_tree((ca, ya), ref_scan(lambda c, x: (c + x, c * 2), np.float32(0), xs32, 4))
    assert_tree(cb, ref_scan(lambda c, x: (c * x + 1.0, None), np.float64(1), xs64, 3)[0])
    # while_loop: a Python 0 carried as float32
    w = _call(lambda: lax.while_loop(lambda c: c < 5, lambda c: c + np.float32(1.5), 0), (), mode)
    assert_tree(w, np.float32(6.0))


def test_weak_float_init_is_not_narrowed_to_an_int_carry():
    # JAX promotes a weak init to result_type(init, body's type) (float32 here),
    # then the body's int32 carry is a type error; needle carries int32(0.5) == 0
    def body(c):
        return c.astype(np.int32) + 1
    with pytest.raises(TypeError, match="carry"):
        lax.scan(lambda c, x: (body(c), None), 0.5, None, length=2)
    with pytest.raises(TypeError, match="init_val"):
        lax.while_loop(lambda c: c < 2, body, 0.5)


# --- cond / switch --------------------------------------------------------------------------

A = np.array([1.5, -2.0, 0.5])
B = np.array([[0.5, 1.0, -1.0], [2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
BRANCHES_NP = [lambda x: x * A, lambda x: x @ B + 1.0, lambda x: np.sin(x) - A.sum()]
BRANCHES = [lambda x: x * A, lambda x: x @ B + 1.0, lambda x: nnp.sin(x) - A.sum()]


@pytest.mark.parametrize("mode", MODES)
def test_switch_clamps_the_index(mode):
    x = np.array([0.3, -1.0, 2.0])
    f = lambda i, x: lax.switch(i, BRANCHES, x)
    g = jit(f) if mode == "jit" else f
    for i in [-3, 0, 1, 2, 7]:
        want = BRANCHES_NP[min(max(i, 0), 2)](x)
        assert_tree(g(np.int32(i), x), want)


@pytest.mark.parametrize("mode", MODES)
def test_cond_with_captured_constants_and_pytree_operands(mode):
    x = np.array([0.3, -1.0, 2.0])
    ops = {"x": x, "y": (np.float32(2.5), np.int32(4))}

    def f(p, ops):
        sc = ops["x"].sum()          # captured from the enclosing trace under jit

        def true_fun(o):
            return {"out": o["x"] * A + o["y"][0].astype(np.float64) * sc, "n": o["y"][1] + 1}

        def false_fun(o):
            return {"out": o["x"] @ B - A * sc, "n": o["y"][1] * 2}
        return lax.cond(p, true_fun, false_fun, ops)
    g = jit(f) if mode == "jit" else f
    for p, taken in [(True, True), (False, False), (np.float32(2.0), True),
                     (np.int32(0), False)]:
        want = {"out": x * A + 2.5 * x.sum(), "n": np.int32(5)} if taken else \
            {"out": x @ B - A * x.sum(), "n": np.int32(8)}
        assert_tree(g(np.asarray(p), ops), want)


@pytest.mark.parametrize("mode", MODES)
def test_cond_python_scalar_results_are_weak(mode):
    x64, i32 = np.float64(2.5), np.int32(3)

    def f(p, x64, i32):
        a = lax.cond(p, lambda x: 1.0, lambda x: x * 2, x64)          # -> float64
        b = lax.cond(p, lambda i: i + 1, lambda i: 7, i32)            # -> int32
        c = lax.switch(p.astype(np.int32), [lambda: 0.5, lambda: 1.5])  # all weak: float32
        return a, b, c
    for p in (True, False):
        got = _call(f, (np.bool_(p), x64, i32), mode)
        want = (np.float64(1.0 if p else 5.0), np.int32(4 if p else 7),
                np.float32(1.5 if p else 0.5))
        assert_tree(got, want)


def test_cond_weak_float_result_is_not_narrowed_to_an_int_branch():
    # weak float joined with int32 is float32 (as `int32 + 1.5` is), which the
    # int32 branch does not return: an error naming both types, as JAX's
    with pytest.raises(TypeError, match="i32.*f32|f32.*i32"):
        lax.cond(True, lambda x: 1.5, lambda x: x, np.int32(1))


# --- while_loop / fori_loop -----------------------------------------------------------------

def _grow(x, limit):
    return lax.while_loop(lambda s: s[0].sum() < limit,
                          lambda s: (s[0] * 2.0 + 0.5, s[1] + 1), (x, np.int32(0)))


def _grow_ref(x, limit):
    n = np.int32(0)
    while x.sum() < limit:
        x, n = x * 2.0 + 0.5, n + 1
    return x, n


@pytest.mark.parametrize("mode", MODES)
def test_while_loop_data_dependent_trip_count(mode):
    g = jit(_grow) if mode == "jit" else _grow
    x = np.array([0.25, -0.5, 1.0], np.float32)
    counts = set()
    for limit in [-1.0, 3.0, 40.0, 1000.0]:     # the first: no iteration at all
        got, want = g(x, np.float32(limit)), _grow_ref(x, np.float32(limit))
        assert_tree(got, want)
        counts.add(int(want[1]))
    assert 0 in counts and len(counts) == 4


@pytest.mark.parametrize("mode", MODES)
def test_fori_loop_static_bounds(mode):
    def f(x):
        return (lax.fori_loop(0, 5, lambda i, c: c * 0.5 + i, x),
                lax.fori_loop(np.int32(3), np.int32(1), lambda i, c: c * 0.0, x),   # no step
                lax.fori_loop(np.int32(2), np.int32(4), lambda i, c: (c[0] @ B, c[1] + i),
                              (x, np.int32(1))))
    x = np.array([1.0, 2.0, -1.0])
    c = x
    for i in range(5):
        c = c * 0.5 + i
    want = (c, x, (x @ B @ B, np.int32(1 + 2 + 3)))
    assert_tree(_call(f, (x,), mode), want)


def test_fori_loop_python_int_bounds_index_is_weak():
    # JAX: Python int bounds keep the index weakly typed; acc + i stays int32
    got = lax.fori_loop(0, 4, lambda i, acc: acc + i, np.int32(1))
    assert_tree(got, np.int32(7))


@pytest.mark.parametrize("mode", MODES)
def test_fori_loop_traced_bounds(mode):
    def f(lo, hi, x):
        return lax.fori_loop(lo, hi, lambda i, c: c * 0.5 + i, x)
    x = np.array([1.0, -2.0], np.float32)
    for lo, hi in [(2, 7), (0, 1), (4, 4), (5, 2)]:
        args = (np.int32(lo), np.int32(hi), x)
        if mode == "jit":
            got = jit(f)(*args)
        else:   # traced bounds outside jit: the traced program, run by the interpreter
            cg = needle.make_ir(f)(*args)
            assert "while[" in str(cg)
            got = run_numpy(cg.graph, cg.consts, list(args))[0]
        want = x.copy()
        for i in range(lo, hi):
            want = want * np.float32(0.5) + np.float32(i)
        assert_tree(got, want)


# --- map ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_map(mode):
    rng = np.random.default_rng(1)
    xs = {"a": rng.standard_normal((4, 2, 3)).astype(np.float32),
          "b": np.arange(4, dtype=np.int32)}
    M = rng.standard_normal((3, 2)).astype(np.float32)
    f = lambda xs: lax.map(lambda x: (x["a"] @ M, x["a"].sum() * x["b"]), xs)
    want = (np.stack([a @ M for a in xs["a"]]),
            np.stack([a.sum() * np.float32(b) for a, b in zip(xs["a"], xs["b"])]))
    assert_tree(_call(f, (xs,), mode), want)
    empty = {"a": xs["a"][:0], "b": xs["b"][:0]}
    assert_tree(_call(f, (empty,), mode), (want[0][:0], want[1][:0]))


# --- nesting ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_scan_in_scan(mode):
    x = np.arange(12, dtype=np.float64).reshape(3, 4) * 0.1

    def f(x):
        def row(c, r):
            inner, ys = lax.scan(lambda a, v: (a * 0.5 + v, a * v), c, r)
            return inner + 1.0, ys.sum()
        return lax.scan(row, 0.0, x)

    def ref(x):
        c, out = 0.0, []
        for r in x:
            a, ys = c, []
            for v in r:
                a, y = a * 0.5 + v, a * v
                ys.append(y)
            c = a + 1.0
            out.append(np.sum(ys))
        return np.float64(c), np.array(out)
    assert_tree(_call(f, (x,), mode), ref(x))


@pytest.mark.parametrize("mode", MODES)
def test_cond_in_scan(mode):
    xs = np.array([1.0, -2.0, 0.5, -0.25, 3.0], np.float32)

    def f(c, xs):
        def body(c, x):
            c = lax.cond(x > 0, lambda c, x: c * x, lambda c, x: c - x * A.astype(np.float32),
                         c, x)
            return c, c.sum()
        return lax.scan(body, c, xs)

    def ref(c, x):
        c = c * x if x > 0 else c - x * A.astype(np.float32)
        return c, c.sum()
    c = np.ones(3, np.float32)
    assert_tree(_call(f, (c, xs), mode), ref_scan(ref, c, xs, 5))


@pytest.mark.parametrize("mode", MODES)
def test_scan_in_cond(mode):
    xs = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]])

    def f(p, xs):
        return lax.cond(p, lambda xs: lax.scan(lambda c, x: (c * x, c), np.ones(2), xs),
                        lambda xs: (xs.sum(0), xs * 2.0), xs)
    g = jit(f) if mode == "jit" else f
    assert_tree(g(np.bool_(True), xs), ref_scan(lambda c, x: (c * x, c), np.ones(2), xs, 3))
    assert_tree(g(np.bool_(False), xs), (xs.sum(0), xs * 2.0))


@pytest.mark.parametrize("mode", MODES)
def test_while_in_scan(mode):
    xs = np.array([0.5, 3.0, 10.0, 100.0, 1.0], np.float64)

    def f(xs):
        def body(total, x):
            v, n = lax.while_loop(lambda s: s[0] > 1.0, lambda s: (s[0] * 0.5, s[1] + 1),
                                  (x, np.int32(0)))
            return total + n, v
        return lax.scan(body, np.int32(0), xs)

    def ref(total, x):
        n = np.int32(0)
        while x > 1.0:
            x, n = x * 0.5, n + 1
        return total + n, np.float64(x)
    assert_tree(_call(f, (xs,), mode), ref_scan(ref, np.int32(0), xs, 5))


# --- checkpoint -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_checkpoint_values(mode):
    rng = np.random.default_rng(2)
    W = rng.standard_normal((3, 3))
    x = rng.standard_normal((2, 3))

    @needle.checkpoint
    def layer(x):
        return nnp.tanh(x @ W) * 2.0

    scale = needle.remat(lambda x, k: x * k, static_argnums=1)

    def f(x):
        y = layer(layer(x))
        c, ys = lax.scan(lambda c, r: (c + layer(r).sum(), scale(r, 3)), 0.0, x)
        return y, c, ys

    def layer_np(x):
        return np.tanh(x @ W) * 2.0
    want = (layer_np(layer_np(x)), np.float64(sum(layer_np(r).sum() for r in x)), x * 3)
    assert_tree(_call(f, (x,), mode), want)


# --- errors ------------------------------------------------------------------------------------

def test_carry_type_mismatch_names_the_path_and_both_types():
    init = {"h": np.int32(0), "k": np.zeros(2, np.float32)}
    with pytest.raises(TypeError) as e:
        lax.scan(lambda c, x: ({"h": c["h"] * 2.5, "k": c["k"]}, None), init, None, length=3)
    msg = str(e.value)
    assert "carry['h']" in msg and "i32[]" in msg and "f32[]" in msg, msg
    assert "carry['k']" not in msg
    # a shape change, in a tuple carry
    with pytest.raises(TypeError, match=r"carry\[1\].*f32\[2\].*f32\[1,2\]"):
        lax.scan(lambda c, x: ((c[0], c[1][None]), None), (np.int32(0), np.zeros(2, np.float32)),
                 None, length=2)
    # while_loop too
    with pytest.raises(TypeError, match=r"init_val\['h'\].*f64\[\].*f32\[\]"):
        lax.while_loop(lambda c: c["h"] < 1, lambda c: {"h": c["h"].astype(np.float32)},
                       {"h": np.float64(0)})


def test_carry_structure_mismatch():
    with pytest.raises(TypeError, match="structure"):
        lax.scan(lambda c, x: ((c, c), x), np.float32(1), None, length=3)
    with pytest.raises(TypeError, match="structure"):
        lax.scan(lambda c, x: ({"a": c["a"]}, x), {"a": np.zeros(2), "b": np.zeros(2)},
                 None, length=3)
    with pytest.raises(TypeError, match="structure"):
        lax.fori_loop(0, 3, lambda i, c: (c, c), np.float32(1))


def test_body_must_return_a_pair():
    with pytest.raises(TypeError, match=r"pair \(carry, y\)"):
        lax.scan(lambda c, x: c, np.float32(1), None, length=3)
    with pytest.raises(TypeError, match=r"pair \(carry, y\)"):
        lax.scan(lambda c, x: (c, x, x), np.float32(1), np.zeros(3))


def test_xs_leaves_with_different_lengths():
    with pytest.raises(ValueError, match=r"different leading lengths.*3.*4"):
        lax.scan(lambda c, x: (c, x), 1.0, {"a": np.zeros(3), "b": np.zeros((4, 2))})
    with pytest.raises(ValueError, match="length=5"):
        lax.scan(lambda c, x: (c, x), 1.0, np.zeros(3), length=5)


def test_scan_needs_xs_or_length():
    with pytest.raises(ValueError, match="length"):
        lax.scan(lambda c, x: (c, x), 1.0)


def test_traced_length_is_an_error():
    def f(n):
        return lax.scan(lambda c, x: (c + 1.0, None), 0.0, None, length=n)[0]
    with pytest.raises(TypeError, match="length must be a concrete"):
        needle.make_ir(f)(np.int32(3))
    with pytest.raises(TypeError, match="length must be a concrete"):
        needle.jit(f)(np.int32(3))


def test_cond_branches_must_agree():
    x = np.float32(1)
    with pytest.raises(TypeError, match=r"equal types.*f32\[\] in branch 0.*i32\[\] in branch 1"):
        lax.cond(True, lambda x: x.astype(np.int32), lambda x: x, x)
    with pytest.raises(TypeError, match=r"equal types.*f32\[\] in branch 0.*f32\[2\] in branch 1"):
        lax.cond(True, lambda x: nnp.stack([x, x]), lambda x: x, x)
    with pytest.raises(TypeError, match="structure"):
        lax.cond(True, lambda x: (x, x), lambda x: x, x)
    with pytest.raises(TypeError, match="structure"):
        lax.switch(0, [lambda x: {"a": x}, lambda x: {"b": x}], x)
    # under a trace too (a traced predicate)
    with pytest.raises(TypeError, match="structure"):
        needle.make_ir(lambda p, x: lax.cond(p, lambda x: (x, x), lambda x: x, x))(True, x)


def test_while_cond_fun_must_return_a_boolean():
    with pytest.raises(TypeError, match=r"cond_fun must return a boolean scalar.*f32\[\]"):
        lax.while_loop(lambda c: c, lambda c: c * 2.0, np.float32(1))
    with pytest.raises(TypeError, match=r"cond_fun must return a boolean scalar.*bool\[2\]"):
        lax.while_loop(lambda c: c > 0, lambda c: c * 2.0, np.ones(2, np.float32))


def test_python_if_on_a_traced_value_suggests_lax_cond():
    def f(x):
        if x.sum() > 0:
            return x
        return -x
    x = np.ones(2, np.float32)
    for transform in (needle.make_ir, needle.jit, needle.grad):
        with pytest.raises(Exception, match=r"needle\.lax\.cond") as e:
            transform(lambda x: f(x).sum() if transform is needle.grad else f(x))(x)
        assert "test_control_flow.py" in str(e.value)


def test_grad_through_while_loop_suggests_scan_or_fori_loop():
    def f(x):
        return lax.while_loop(lambda c: c < 10.0, lambda c: c * 2.0, x)
    with pytest.raises(TypeError) as e:
        needle.grad(f)(np.float64(1.5))
    msg = str(e.value)
    assert "while_loop" in msg and "scan" in msg and "fori_loop" in msg, msg
    # a fori_loop with traced bounds is a while_loop
    g = needle.grad(lambda x, n: lax.fori_loop(0, n, lambda i, c: c * 2.0, x))
    with pytest.raises(TypeError, match="while_loop"):
        needle.make_ir(g)(np.float64(1.0), np.int32(3))


# --- the IR ---------------------------------------------------------------------------------------

def _count_eqns(graph):
    n = 0
    for e in graph.eqns:
        n += 1
        for v in e.params.values():
            subs = v if isinstance(v, tuple) else (v,)
            for s in subs:
                if hasattr(s, "graph") and hasattr(s.graph, "eqns"):
                    n += _count_eqns(s.graph)
    return n


def test_scan_ir_has_one_nested_body_whatever_the_length():
    W = np.eye(4, dtype=np.float32) * 0.5

    def f(h, xs):
        return lax.scan(lambda h, x: (nnp.tanh(h @ W + x), h.sum()), h, xs)
    h = np.zeros(4, np.float32)
    cgs = [needle.make_ir(f)(h, np.zeros((n, 4), np.float32)) for n in (3, 300)]
    texts = [str(cg) for cg in cgs]
    for t in texts:
        assert "body=" in t and t.count("{ lambda") == 2, t
        assert "scan[" in t
    assert "length=300" in texts[1]
    counts = [_count_eqns(cg.graph) for cg in cgs]
    assert counts[0] == counts[1] and counts[0] > len(cgs[0].graph.eqns) + 2
    assert len(cgs[0].graph.eqns) == len(cgs[1].graph.eqns)
    assert len(texts[0].splitlines()) == len(texts[1].splitlines())
