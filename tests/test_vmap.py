"""needle.vmap against numpy applied example by example.

Every case writes its function twice, with needle.numpy / needle.nn and with
plain numpy; `needle.vmap(f_needle, in_axes, out_axes)(*args)` must equal
`np.stack([f_numpy(*example_i) ...], axis=out_axes)`, where example i takes
index i of every mapped argument along its in_axis (`per_example` below).
The numpy reference is computed in float64 and cast to the result dtype
(JAX's promotion, x64 on), so float32 results are checked to float32
tolerance. Covered: elementwise ops with broadcasting (mapped against
unmapped operands of smaller rank, 0-d, Python and numpy scalars),
comparisons / where / astype, reductions (axis None / int / negative /
tuple, keepdims), argmax / argmin, cumsum, shape ops, slicing, integer-array
indexing and take with mapped and unmapped tables and indices,
`x.at[i].set / add / mul / min / max`, pad, flip, concatenate / stack,
matmul / dot / einsum with either or both operands mapped, needle.nn
(softmax, log_softmax, logsumexp, relu, gelu, one_hot), creation inside
(arange, zeros_like, ones, eye); in_axes / out_axes as ints, negative ints,
None and pytree prefixes, axis_size, unmapped outputs broadcast, nested vmap;
jit(vmap(f)) and vmap(jit(f)); per-example gradients vmap(grad(loss)),
grad through vmap, jacfwd / jacrev; and vmap's argument errors.
"""
import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import needle
import needle.nn as nn
import needle.numpy as nnp
from helpers import arrays, expected_dtype, jit, shapes, tol

F32, F64, I32, I64 = (np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64))
rng = np.random.default_rng(1234)


def _f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


# --- the reference: numpy, example by example --------------------------------------

def _map(f, tree):
    if isinstance(tree, dict):
        return {k: _map(f, v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_map(f, v) for v in tree)
    return f(tree)


def _leaves(tree):
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in _leaves(tree[k])]
    if isinstance(tree, (tuple, list)):
        return [x for v in tree for x in _leaves(v)]
    return [tree]


def _take(tree, spec, i):
    """Example i of `tree` under its in_axes entry (int / None / a pytree prefix)."""
    if spec is None:
        return tree
    if isinstance(spec, int):
        return _map(lambda a: np.take(np.asarray(a), i, axis=spec), tree)
    if isinstance(spec, dict):
        return {k: _take(tree[k], spec[k], i) for k in tree}
    return type(tree)(_take(t, s, i) for t, s in zip(tree, spec))


def _sizes(tree, spec):
    if spec is None:
        return []
    if isinstance(spec, int):
        return [np.shape(a)[spec] for a in _leaves(tree)]
    if isinstance(spec, dict):
        return [n for k in tree for n in _sizes(tree[k], spec[k])]
    return [n for t, s in zip(tree, spec) for n in _sizes(t, s)]


def _stack(outs, spec):
    """Per-example outputs stacked along their out_axes entry (int / None / prefix)."""
    first = outs[0]
    if spec is None:
        return first
    if isinstance(first, dict):
        return {k: _stack([o[k] for o in outs], spec[k] if isinstance(spec, dict) else spec)
                for k in first}
    if isinstance(first, (tuple, list)):
        specs = spec if isinstance(spec, (tuple, list)) else [spec] * len(first)
        return type(first)(_stack([o[j] for o in outs], s) for j, s in enumerate(specs))
    return np.stack([np.asarray(o) for o in outs], axis=spec)


def per_example(np_fn, args, in_axes=0, out_axes=0, axis_size=None):
    """np_fn applied to each example of `args` (JAX's in_axes), stacked at out_axes."""
    specs = list(in_axes) if isinstance(in_axes, (tuple, list)) else [in_axes] * len(args)
    sizes = {n for a, s in zip(args, specs) for n in _sizes(a, s)}
    assert len(sizes) <= 1, sizes
    n = sizes.pop() if sizes else axis_size
    with np.errstate(all="ignore"):
        outs = [np_fn(*[_take(a, s, i) for a, s in zip(args, specs)]) for i in range(n)]
    return _stack(outs, out_axes)


def _widen(tree):
    """float32 arrays and scalars as float64 (Python scalars and ints unchanged)."""
    return _map(lambda a: a.astype(np.float64)
                if isinstance(a, (np.ndarray, np.generic)) and a.dtype == F32 else a, tree)


def _close(got, want, dt, rtol=None, atol=None):
    got = np.asarray(got)
    dt = np.dtype(dt)
    want = np.asarray(want).astype(dt)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    assert got.dtype == dt, f"dtype {got.dtype} != {dt}"
    t = tol(dt)
    if rtol is not None:
        t["rtol"] = rtol
    if atol is not None:
        t["atol"] = atol
    if dt.kind in "fc":
        np.testing.assert_allclose(got, want, equal_nan=True, **t)
    else:
        np.testing.assert_array_equal(got, want)


def check(f_nnp, f_np, *args, in_axes=0, out_axes=0, axis_size=None, dtype=None,
          rtol=None, atol=None, wide=True):
    """needle.vmap(f_nnp) against per_example(f_np). The expected dtype of each
    output leaf is numpy's on the original inputs unless `dtype` (one dtype or
    a list per leaf) says otherwise (where JAX's promotion differs from numpy's);
    the expected values are numpy's on float64 inputs (`wide`)."""
    got = needle.vmap(f_nnp, in_axes=in_axes, out_axes=out_axes, axis_size=axis_size)(*args)
    kw = dict(in_axes=in_axes, out_axes=out_axes, axis_size=axis_size)
    narrow = per_example(f_np, args, **kw)
    want = per_example(f_np, _widen(args), **kw) if wide else narrow
    ts = needle.tree_util.tree_structure
    assert ts(got) == ts(want), (ts(got), ts(want))
    g_l, w_l, n_l = _leaves(got), _leaves(want), _leaves(narrow)
    dts = dtype if isinstance(dtype, (list, tuple)) else [dtype] * len(g_l)
    assert len(dts) == len(g_l)
    for j, (g, w, n, dt) in enumerate(zip(g_l, w_l, n_l, dts)):
        try:
            _close(g, w, np.asarray(n).dtype if dt is None else dt, rtol, atol)
        except AssertionError as e:
            raise AssertionError(f"output leaf {j}: {e}") from None
    return got


def _insert(shape, ax, n):
    """`shape` with a mapped axis of size n at in_axis `ax` (may be negative)."""
    full = list(shape)
    full.insert(ax % (len(shape) + 1), n)
    return tuple(full)


# ----------------------------------------------------------------------------------
# elementwise

BINARY = [
    ("add", lambda a, b: a + b, lambda a, b: a + b),
    ("sub", nnp.subtract, np.subtract),
    ("mul_add", lambda a, b: a * b - a, lambda a, b: a * b - a),
    ("maximum", nnp.maximum, np.maximum),
    ("minimum", nnp.minimum, np.minimum),
    ("where_gt", lambda a, b: nnp.where(a > b, a, b * 2), lambda a, b: np.where(a > b, a, b * 2)),
]


@given(data=st.data())
def test_binary_broadcasting(data):
    """Mapped against mapped or unmapped operands of any (smaller) rank, both
    mapped axes anywhere (negative too), the output's mapped axis anywhere."""
    name, fn, np_fn = data.draw(st.sampled_from(BINARY), label="op")
    xshape = data.draw(shapes(max_dims=3), label="xshape")
    yshape = data.draw(hnp.broadcastable_shapes(xshape, min_dims=0, max_dims=3, max_side=4),
                       label="yshape")
    n = data.draw(st.integers(1, 3), label="size")
    dts = data.draw(st.sampled_from([(F32, F32), (F32, I32), (I32, I32), (F64, F32)]),
                    label="dtypes")
    mapped = data.draw(st.sampled_from([(True, True), (True, False), (False, True)]),
                       label="mapped")
    args, axes = [], []
    for shape, dt, m in zip((xshape, yshape), dts, mapped):
        ax = data.draw(st.integers(-len(shape) - 1, len(shape)), label="in_axis") if m else None
        args.append(data.draw(arrays(dt, shape if ax is None else _insert(shape, ax, n))))
        axes.append(ax)
    out_nd = len(np.broadcast_shapes(xshape, yshape))
    out_ax = data.draw(st.integers(-out_nd - 1, out_nd), label="out_axes")
    ex = [a if ax is None else np.take(a, 0, ax) for a, ax in zip(args, axes)]
    check(fn, np_fn, *args, in_axes=tuple(axes), out_axes=out_ax, dtype=expected_dtype(*ex))


UNARY = [
    (nnp.exp, np.exp), (lambda x: nnp.log(nnp.abs(x) + 0.5), lambda x: np.log(np.abs(x) + 0.5)),
    (lambda x: nnp.sqrt(nnp.abs(x)), lambda x: np.sqrt(np.abs(x))), (nnp.tanh, np.tanh),
    (nnp.sin, np.sin), (nnp.negative, np.negative), (nnp.floor, np.floor),
    (nnp.sigmoid, lambda x: 1 / (1 + np.exp(-x))), (nnp.square, np.square),
]


def test_unary_math_with_a_list_output():
    x = _f32(4, 3, 2)
    check(lambda x: [f(x) for f, _ in UNARY], lambda x: [g(x) for _, g in UNARY], x,
          in_axes=1, out_axes=-1)


def test_scalar_operands():
    xs, v = _f32(3, 4), _f32(3)
    s0 = np.array(1.5, np.float32)
    # an unmapped 0-d array, a mapped 0-d example, weak Python scalars
    check(lambda x, s: x * s + 2.0 - s ** 2, lambda x, s: x * s + 2.0 - s ** 2, xs, s0,
          in_axes=(0, None))
    check(lambda x, s: x * s + 1, lambda x, s: x * s + 1, xs, v, in_axes=(0, 0))
    check(lambda s: s * 3.0 + nnp.sin(s), lambda s: s * 3.0 + np.sin(s), v)
    # a Python float passed as an unmapped argument stays weak: float32 result
    check(lambda x, s: x * s, lambda x, s: x * s, xs, 2.5, in_axes=(0, None), dtype=F32)
    # a numpy float64 scalar is strong: float64 result (JAX with x64)
    check(lambda x, s: x + s, lambda x, s: x + s, xs, np.float64(0.25), in_axes=(0, None),
          dtype=F64)
    ints = np.arange(6, dtype=np.int32).reshape(3, 2)
    check(lambda x: x * 2.5 + 1, lambda x: x * 2.5 + 1, ints, dtype=F32)
    check(lambda x: x * 3 - 1, lambda x: x * 3 - 1, ints, dtype=I32)


def test_comparisons_where_select_astype():
    a, b = _f32(3, 4), _f32(4)
    m = rng.random((4, 3)) < 0.5                       # mapped along axis 1

    def f(a, b, m, lib):
        return (a > b, lib.where(a > b, a, b), lib.where(m, a, 0.0), (a * 3).astype(np.int32),
                lib.logical_and(a > 0, m), (a >= b).sum(axis=-1), lib.clip(a, -0.5, b),
                (a == a[0]) | m, m.astype(np.float32) * a)

    check(lambda a, b, m: f(a, b, m, nnp), lambda a, b, m: f(a, b, m, np), a, b, m,
          in_axes=(0, None, 1))
    # only the condition mapped
    check(lambda m, x, y: nnp.where(m, x, y), lambda m, x, y: np.where(m, x, y),
          m, _f32(4), _f32(4), in_axes=(1, None, None))


# ----------------------------------------------------------------------------------
# reductions

_F64_ONLY = {"mean", "var", "std", "prod"}
REDUCTIONS = {
    "sum": (nnp.sum, np.sum), "mean": (nnp.mean, np.mean), "max": (nnp.max, np.max),
    "min": (nnp.min, np.min), "prod": (nnp.prod, np.prod), "var": (nnp.var, np.var),
    "std": (nnp.std, np.std), "argmax": (nnp.argmax, np.argmax),
    "argmin": (nnp.argmin, np.argmin),
}


@given(data=st.data())
def test_reductions(data):
    name = data.draw(st.sampled_from(sorted(REDUCTIONS)), label="reduction")
    fn, np_fn = REDUCTIONS[name]
    dt = F64 if name in _F64_ONLY else data.draw(st.sampled_from([F64, I32]), label="dtype")
    shape = data.draw(shapes(max_dims=3), label="shape")
    nd = len(shape)
    choices = [st.none()]
    if nd:
        choices.append(st.integers(-nd, nd - 1))
    if not name.startswith("arg"):
        choices.append(hnp.valid_tuple_axes(nd))
    axis = data.draw(st.one_of(*choices), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    n = data.draw(st.integers(1, 3), label="size")
    in_ax = data.draw(st.integers(-nd - 1, nd), label="in_axis")
    x = data.draw(arrays(dt, _insert(shape, in_ax, n)), label="x")
    kw = dict(rtol=1e-10, atol=1e-7) if name == "std" else {}
    check(lambda x: fn(x, axis=axis, keepdims=keepdims),
          lambda x: np_fn(x, axis=axis, keepdims=keepdims), x, in_axes=in_ax, **kw)


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_cumsum_and_methods(axis):
    x = rng.integers(-3, 4, (2, 5, 3)).astype(np.int32)
    xf = rng.standard_normal((2, 5, 3))
    check(lambda x: nnp.cumsum(x, axis=axis), lambda x: np.cumsum(x, axis=axis), x,
          in_axes=1, dtype=I64)                     # int32 accumulates in int64 (JAX x64)
    check(lambda x: (nnp.cumsum(x, axis=axis), x.sum(axis), x.max(axis), x.mean(axis)),
          lambda x: (np.cumsum(x, axis=axis), x.sum(axis), x.max(axis), x.mean(axis)),
          xf, in_axes=-1)


# ----------------------------------------------------------------------------------
# shapes, slicing, concatenation

SHAPE_OPS = {                       # each example has shape (2, 3, 4)
    "reshape": (lambda x: nnp.reshape(x, (6, -1)), lambda x: np.reshape(x, (6, -1))),
    "reshape_method": (lambda x: x.reshape(4, 3, 2), lambda x: x.reshape(4, 3, 2)),
    "ravel": (nnp.ravel, np.ravel),
    "transpose": (lambda x: nnp.transpose(x, (2, 0, 1)), lambda x: np.transpose(x, (2, 0, 1))),
    "T": (lambda x: x.T, lambda x: x.T),
    "swapaxes": (lambda x: nnp.swapaxes(x, 0, -1), lambda x: np.swapaxes(x, 0, -1)),
    "moveaxis": (lambda x: nnp.moveaxis(x, -1, 0), lambda x: np.moveaxis(x, -1, 0)),
    "expand_dims": (lambda x: (nnp.expand_dims(x, 1), nnp.expand_dims(x, -1)),
                    lambda x: (np.expand_dims(x, 1), np.expand_dims(x, -1))),
    "squeeze": (lambda x: nnp.squeeze(x[:, :1, :], axis=1), lambda x: np.squeeze(x[:, :1, :], 1)),
    "broadcast_to": (lambda x: nnp.broadcast_to(x[:, :1, :], (5, 2, 3, 4)),
                     lambda x: np.broadcast_to(x[:, :1, :], (5, 2, 3, 4))),
    "slices": (lambda x: (x[1:, ::2], x[..., -1], x[::-1, None, 1:3], x[1, :, ::-2], x[0, 1, 2:]),
               lambda x: (x[1:, ::2], x[..., -1], x[::-1, None, 1:3], x[1, :, ::-2], x[0, 1, 2:])),
    "flip": (lambda x: (nnp.flip(x, axis=1), nnp.flip(x)), lambda x: (np.flip(x, 1), np.flip(x))),
    "pad": (lambda x: nnp.pad(x, ((1, 0), (0, 2), (1, 1)), constant_values=-1.5),
            lambda x: np.pad(x, ((1, 0), (0, 2), (1, 1)), constant_values=-1.5)),
    "split": (lambda x: nnp.split(x, 2, axis=-1), lambda x: np.split(x, 2, axis=-1)),
}


@pytest.mark.parametrize("name", sorted(SHAPE_OPS))
def test_shape_ops_and_slicing(name):
    fn, np_fn = SHAPE_OPS[name]
    for in_ax, out_ax in [(0, 0), (1, -1), (-1, 1), (3, -2)]:
        x = _f32(*_insert((2, 3, 4), in_ax, 5))
        check(fn, np_fn, x, in_axes=in_ax, out_axes=out_ax)


def test_concatenate_and_stack_with_unmapped_operands():
    a, c, r = _f32(5, 2, 3), _f32(2, 3), _f32(1, 3)

    def f(a, c, r, lib):
        return (lib.concatenate([a, c, a], axis=0), lib.concatenate([r, a], axis=-2),
                lib.concatenate([c, a], axis=1), lib.stack([a, c], axis=1),
                lib.stack([c, a, c], axis=-1), lib.stack([c, r[0] + c]))

    check(lambda a, c, r: f(a, c, r, nnp), lambda a, c, r: f(a, c, r, np), a, c, r,
          in_axes=(0, None, None))
    # all operands mapped, on different axes
    check(lambda a, b: f(a, b, b[:1], nnp), lambda a, b: f(a, b, b[:1], np),
          a, np.moveaxis(_f32(5, 2, 3), 0, 2), in_axes=(0, 2))


# ----------------------------------------------------------------------------------
# gathers and scatters

GATHER_AXES = [(0, None), (None, 0), (0, 0), (1, 1), (-1, 0)]


@pytest.mark.parametrize("in_axes", GATHER_AXES, ids=str)
def test_integer_array_indexing_and_take(in_axes):
    """Each example: a table (5, 3), indices (4,) in [-5, 4]; either or both mapped."""
    n = 6
    t = _f32(*((5, 3) if in_axes[0] is None else _insert((5, 3), in_axes[0], n)))
    ishape = (4,) if in_axes[1] is None else _insert((4,), in_axes[1], n)
    i = rng.integers(-5, 5, ishape).astype(np.int32)

    def f(t, i, lib):
        return (t[i], lib.take(t, i, axis=0), lib.take(t, i % 3, axis=1), t[i, 1],
                t[:, i % 3], t[i.reshape(2, 2)], lib.take(t, i), t[i[::-1]][1:])

    check(lambda t, i: f(t, i, nnp), lambda t, i: f(t, i, np), t, i, in_axes=in_axes)


def test_gather_per_example_rows():
    """vmap over both a table and per-example indices: lambda t, i: t[i]."""
    t, i = _f32(4, 6, 2), rng.integers(0, 6, (4, 3))
    check(lambda t, i: t[i], lambda t, i: t[i], t, i)
    check(lambda t, i: nnp.take_along_axis(t, i[:, None], axis=0),
          lambda t, i: np.take_along_axis(t, i[:, None], axis=0), t, i)
    # traced indices wrap negatives and clamp the rest into the range of each
    # example's axis (6), not of the batched array's
    bad = np.array([[7, -1, 0], [-6, 6, 100], [2, -3, 5], [-7, 3, 6]])
    check(lambda t, i: t[i], lambda t, i: t[np.clip(np.where(i < 0, i + 6, i), 0, 5)], t, bad)


def _np_at(x, idx, v, how):
    y = np.array(x, copy=True)
    if how == "set":
        y[idx] = v
    else:
        {"add": np.add, "mul": np.multiply, "min": np.minimum, "max": np.maximum}[how].at(
            y, idx, v)
    return y


@pytest.mark.parametrize("how", ["set", "add", "mul", "min", "max"])
def test_at_updates(how):
    """x.at[i].how(v) with every non-empty subset of (x, i, v) mapped; rows
    (x.at[i]), single elements (x.at[i, 2]) and a slice (x.at[1:3]). The
    indices repeat for the combining updates (each applies), not for set."""
    n = 4
    x = _f32(n, 5, 3)
    v = _f32(n, 4, 3)
    if how == "set":
        i = np.stack([rng.permutation(5)[:4] for _ in range(n)])
    else:
        i = rng.integers(0, 5, (n, 4))
        i[:, 1] = i[:, 0]                      # a repeated index in every example

    def f(x, i, v, lib):
        up = (lambda y, idx: getattr(y.at[idx], how)) if lib is nnp else \
             (lambda y, idx: lambda w: _np_at(y, idx, w, how))
        return up(x, i)(v), up(x, (i, 2))(v[:, 0]), up(x, slice(1, 3))(v[:2]), up(x, i)(2.0)

    for mapped in itertools.product([True, False], repeat=3):
        if not any(mapped):
            continue
        args = [a if m else a[0] for a, m in zip((x, i, v), mapped)]
        axes = tuple(0 if m else None for m in mapped)
        check(lambda x, i, v: f(x, i, v, nnp), lambda x, i, v: f(x, i, v, np), *args,
              in_axes=axes)


# ----------------------------------------------------------------------------------
# matmul, dot, einsum

MATMUL_KINDS = {                       # per-example operand shapes from (b, m, k, n)
    "vv": lambda b, m, k, n: ((k,), (k,)),
    "mv": lambda b, m, k, n: ((m, k), (k,)),
    "vm": lambda b, m, k, n: ((k,), (k, n)),
    "mm": lambda b, m, k, n: ((m, k), (k, n)),
    "bmm": lambda b, m, k, n: ((b, m, k), (b, k, n)),
    "bmm_bcast": lambda b, m, k, n: ((b, m, k), (k, n)),
}


@given(data=st.data())
def test_matmul_and_dot(data):
    """a @ b (and dot for 1-D / 2-D operands) with lhs only, rhs only or both
    mapped, mapped axes anywhere."""
    kind = data.draw(st.sampled_from(sorted(MATMUL_KINDS)), label="kind")
    dims = [data.draw(st.integers(1, 3), label=d) for d in "bmkn"]
    shps = MATMUL_KINDS[kind](*dims)
    n = data.draw(st.integers(1, 3), label="size")
    mapped = data.draw(st.sampled_from([(True, False), (False, True), (True, True)]),
                       label="mapped")
    args, axes = [], []
    for s, m in zip(shps, mapped):
        ax = data.draw(st.integers(-len(s) - 1, len(s)), label="in_axis") if m else None
        args.append(data.draw(arrays(F64, s if ax is None else _insert(s, ax, n))))
        axes.append(ax)
    check(lambda a, b: a @ b, lambda a, b: a @ b, *args, in_axes=tuple(axes))
    if not kind.startswith("bmm"):
        check(nnp.dot, np.dot, *args, in_axes=tuple(axes))


def test_matmul_float32():
    x, w, ws = _f32(6, 5), _f32(5, 3), _f32(6, 5, 3)
    kw = dict(rtol=1e-5, atol=1e-6)
    check(lambda x, w: x @ w, lambda x, w: x @ w, x, w, in_axes=(0, None), **kw)
    check(lambda x, w: x @ w, lambda x, w: x @ w, x, ws, in_axes=(None, 0), **kw)
    check(lambda x, w: nnp.matmul(x, w), lambda x, w: np.matmul(x, w), x, ws, in_axes=(0, 0),
          **kw)


EINSUMS = [
    ("ij,jk->ik", (2, 3), (3, 4)),
    ("ij,ij->i", (2, 3), (2, 3)),
    ("i,i->", (3,), (3,)),
    ("ij,kj->ik", (2, 3), (4, 3)),
    ("bij,bjk->bik", (2, 3, 4), (2, 4, 2)),
    ("ij,j->ij", (2, 3), (3,)),
]


@pytest.mark.parametrize("spec,s1,s2", EINSUMS, ids=[e[0] for e in EINSUMS])
def test_einsum(spec, s1, s2):
    n = 3
    for axes in [(0, None), (None, 0), (0, -1)]:
        args = [rng.standard_normal(s if ax is None else _insert(s, ax, n))
                for s, ax in zip((s1, s2), axes)]
        check(lambda a, b: nnp.einsum(spec, a, b), lambda a, b: np.einsum(spec, a, b), *args,
              in_axes=axes)


# ----------------------------------------------------------------------------------
# needle.nn and creation inside the mapped function

def _np_lse(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _np_softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _np_gelu(x):
    return 0.5 * x * (1 + np.tanh(float(np.sqrt(2 / np.pi)) * (x + 0.044715 * x ** 3)))


NN = {
    "softmax": (nn.softmax, _np_softmax),
    "softmax_axis0": (lambda x: nn.softmax(x, axis=0), lambda x: _np_softmax(x, axis=0)),
    "log_softmax": (nn.log_softmax, lambda x: np.log(_np_softmax(x))),
    "logsumexp": (nn.logsumexp, _np_lse),
    "logsumexp_keepdims": (lambda x: nn.logsumexp(x, axis=-1, keepdims=True),
                           lambda x: _np_lse(x, axis=-1, keepdims=True)),
    "relu": (nn.relu, lambda x: np.maximum(x, 0)),
    "gelu": (nn.gelu, _np_gelu),
}


@pytest.mark.parametrize("name", sorted(NN))
def test_nn(name):
    fn, np_fn = NN[name]
    x = 2 * _f32(3, 5, 4)
    check(fn, np_fn, x, in_axes=1)
    check(fn, np_fn, x, in_axes=-1, out_axes=-1)


def test_one_hot_of_mapped_labels():
    y = rng.integers(-1, 5, (5, 3))                  # -1 and 4 are outside [0, 4): zero rows

    def np_one_hot(y, axis=-1):
        return np.moveaxis((y[..., None] == np.arange(4)).astype(np.float32), -1, axis)

    check(lambda y: nn.one_hot(y, 4), np_one_hot, y)
    check(lambda y: nn.one_hot(y, 4, axis=0), lambda y: np_one_hot(y, 0), y, in_axes=1)
    # cross entropy with mapped logits and labels
    logits, labels = _f32(5, 3, 4), rng.integers(0, 4, (5, 3))
    check(lambda z, y: -(nn.one_hot(y, 4) * nn.log_softmax(z)).sum(-1),
          lambda z, y: -(np_one_hot(y) * np.log(_np_softmax(z))).sum(-1), logits, labels)


def test_creation_inside():
    x = _f32(5, 4)
    check(lambda x: (x * nnp.arange(4), nnp.zeros_like(x) + 1, nnp.ones((2, 4)) * x,
                     nnp.arange(4) + 1, nnp.eye(4) @ x, nnp.full_like(x, 2.0),
                     nnp.arange(x.shape[0], dtype=np.float32) - x),
          lambda x: (x * np.arange(4), np.zeros_like(x) + 1, np.ones((2, 4)) * x,
                     np.arange(4) + 1, np.eye(4) @ x, np.full_like(x, 2.0),
                     np.arange(x.shape[0], dtype=np.float32) - x),
          x, dtype=[F32, F32, F32, I64, F32, F32, F32])


# ----------------------------------------------------------------------------------
# in_axes / out_axes / axis_size

def test_in_axes_pytree_prefix():
    n, d, k = 4, 3, 2
    params = {"w": _f32(d, k), "b": _f32(n, k)}
    xs = _f32(d, n)

    def f(p, x, lib):
        return lib.tanh(x @ p["w"] + p["b"])

    check(lambda p, x: f(p, x, nnp), lambda p, x: f(p, x, np), params, xs,
          in_axes=({"w": None, "b": 0}, 1))
    # an int for a tuple argument maps every leaf; a list for in_axes
    pair = (_f32(n, 3), _f32(3, n))
    check(lambda t: t[0] * 2 + t[1], lambda t: t[0] * 2 + t[1], (pair[0], pair[1].T))
    check(lambda a, b: a - b, lambda a, b: a - b, pair[1], pair[0][0], in_axes=[1, None])


def test_out_axes_prefix_and_unmapped_outputs():
    xs, c = _f32(4, 3, 2), _f32(3, 2)

    def f(x, c, lib):
        return {"a": x + c, "b": (x * c).sum(0), "c": c * 2, "d": lib.ones(3)}

    check(lambda x, c: f(x, c, nnp), lambda x, c: f(x, c, np), xs, c, in_axes=(0, None),
          out_axes={"a": -1, "b": 1, "c": 0, "d": 1}, dtype=F32)   # nnp.ones: float32
    # unmapped outputs are broadcast along the mapped axis (out_axes=1 for all)
    got = check(lambda x, c: (x + c, c * 2, nnp.ones(3)),
                lambda x, c: (x + c, c * 2, np.ones(3, np.float32)), xs, c, in_axes=(0, None),
                out_axes=1)
    assert [g.shape for g in got] == [(3, 4, 2), (3, 4, 2), (3, 4)]
    # out_axes None for an output that does not depend on the mapped argument
    got = needle.vmap(lambda x, c: (x * c, c.sum()), in_axes=(0, None), out_axes=(0, None))(xs, c)
    _close(got[0], xs * c, F32)
    _close(got[1], c.astype(np.float64).sum(), F32)


def test_axis_size_without_mapped_arguments():
    c = _f32(3)
    check(lambda c: c * 2 + nnp.arange(3), lambda c: c * 2 + np.arange(3), c, in_axes=None,
          axis_size=4, dtype=F32)
    check(lambda a, c: a + c, lambda a, c: a + c, _f32(4, 3), c, in_axes=(0, None), axis_size=4)


def test_nested_vmap():
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    dist = needle.vmap(needle.vmap(lambda u, v: nnp.sqrt(((u - v) ** 2).sum()), in_axes=(None, 0)),
                       in_axes=(0, None))
    _close(dist(a, b), np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)), F64)
    # inner over axis 1 of each example, outer over axis 2; out axes 1 then 0
    x = _f32(2, 3, 4, 5)

    def f(v):
        return v - v.max(-1, keepdims=True) + nnp.cumsum(v, axis=-1)

    def f_np(v):
        return v - v.max(-1, keepdims=True) + np.cumsum(v, axis=-1)

    got = needle.vmap(needle.vmap(f, in_axes=1, out_axes=1), in_axes=2, out_axes=0)(x)
    want = per_example(lambda e: per_example(f_np, (e,), in_axes=1, out_axes=1),
                       (x.astype(np.float64),), in_axes=2, out_axes=0)
    _close(got, want, F32)


# ----------------------------------------------------------------------------------
# autodiff

def _np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _logistic_loss(p, x, y):
    z = x @ p["w"] + p["b"]
    return nnp.logaddexp(0.0, -y * z)          # y in {-1, 1}


def _logistic_grads_np(p, xs, ys):
    """Per-example gradients of log(1 + exp(-y (x.w + b))), by hand."""
    z = xs @ p["w"] + p["b"]
    s = -ys * _np_sigmoid(-ys * z)
    return {"w": s[:, None] * xs, "b": s}


def _linear_loss(w, x, y):
    r = x @ w - y
    return 0.5 * nnp.sum(r * r)


def test_per_example_gradients_logistic():
    n, d = 6, 4
    p = {"w": rng.standard_normal(d), "b": np.float64(0.3)}
    xs, ys = rng.standard_normal((n, d)), rng.choice([-1.0, 1.0], n)
    g = needle.vmap(needle.grad(_logistic_loss), in_axes=(None, 0, 0))(p, xs, ys)
    want = _logistic_grads_np(p, xs, ys)
    assert set(g) == {"w", "b"}
    _close(g["w"], want["w"], F64)
    _close(g["b"], want["b"], F64)


def test_per_example_gradients_linear_float32():
    n, d, k = 5, 3, 2
    w, xs, ys = _f32(d, k), _f32(n, d), _f32(n, k)
    g = needle.vmap(needle.grad(_linear_loss), in_axes=(None, 0, 0))(w, xs, ys)
    r = xs.astype(np.float64) @ w - ys
    _close(g, xs[:, :, None] * r[:, None, :], F32, rtol=1e-5, atol=1e-6)   # outer(x, r)
    # value_and_grad under vmap: per-example losses too
    v, g2 = needle.vmap(needle.value_and_grad(_linear_loss), in_axes=(None, 0, 0))(w, xs, ys)
    _close(v, 0.5 * (r * r).sum(-1), F32, rtol=1e-5, atol=1e-6)
    _close(g2, g, F32)


@pytest.mark.parametrize("t_mapped", [False, True])
def test_per_example_gradients_of_a_gather(t_mapped):
    """The gradient of take(t, i, axis=1) is a scatter-add along axis 1 (repeated
    indices accumulate): per example, with the indices mapped."""
    n = 4
    t = rng.standard_normal((n, 3, 5) if t_mapped else (3, 5))
    i = rng.integers(0, 5, (n, 2, 3))
    i[:, 0, 0] = i[:, 1, 2]                    # a repeated index in every example
    w = rng.standard_normal((3, 2, 3))

    def loss(t, i):
        return (nnp.take(t, i, axis=1) ** 2 * w).sum()

    def grad_np(t, i):
        g = np.zeros_like(t)
        np.add.at(g, (slice(None), i), 2 * t[:, i] * w)
        return g

    g = needle.vmap(needle.grad(loss), in_axes=(0 if t_mapped else None, 0))(t, i)
    _close(g, per_example(grad_np, (t, i), in_axes=(0 if t_mapped else None, 0)), F64)
    check(lambda t, i: nnp.take(t, i, axis=1), lambda t, i: np.take(t, i, axis=1), t, i,
          in_axes=(0 if t_mapped else None, 0))


def test_grad_through_vmap():
    w, xs = rng.standard_normal((3, 2)), rng.standard_normal((5, 3))

    def f(w, x):
        return nnp.tanh(x @ w).sum()

    g = needle.grad(lambda w: needle.vmap(f, in_axes=(None, 0))(w, xs).sum())(w)
    _close(g, xs.T @ (1 - np.tanh(xs @ w) ** 2), F64)
    # the gradient with respect to the mapped argument, through a mean
    gx = needle.grad(lambda xs: needle.vmap(f, in_axes=(None, 0))(w, xs).mean())(xs)
    _close(gx, (1 - np.tanh(xs @ w) ** 2) @ w.T / 5, F64)


def test_jacfwd_jacrev_and_vmap_of_jacobians():
    w = rng.standard_normal((3, 4))
    xs = rng.standard_normal((5, 4))

    def f(x):
        return nnp.tanh(w @ x) + x[:3] * x.sum()

    def jac_np(x):
        t = np.tanh(w @ x)
        j = (1 - t ** 2)[:, None] * w + x[:3, None] * np.ones(4)[None, :]
        j[np.arange(3), np.arange(3)] += x.sum()
        return j

    for jac in (needle.jacfwd, needle.jacrev):
        _close(jac(f)(xs[0]), jac_np(xs[0]), F64)
        _close(needle.vmap(jac(f))(xs), np.stack([jac_np(x) for x in xs]), F64)


# ----------------------------------------------------------------------------------
# under jit (compiled for the test device)

def _mlp(p, x, lib):
    h = lib.maximum(x @ p["w1"] + p["b1"], 0)
    z = h @ p["w2"] + p["b2"]
    return z - (lib.log(lib.exp(z - z.max()).sum()) + z.max())


@pytest.mark.on_device
def test_jit_of_vmap():
    p = {"w1": _f32(4, 6), "b1": _f32(6), "w2": _f32(6, 3), "b2": _f32(3)}
    xs = _f32(5, 4)
    f = jit(needle.vmap(lambda p, x: _mlp(p, x, nnp), in_axes=(None, 0)))
    want = per_example(lambda p, x: _mlp(p, x, np), (_widen(p), xs.astype(np.float64)),
                       in_axes=(None, 0))
    _close(f(p, xs), want, F32, rtol=1e-5, atol=1e-5)
    # a new batch size
    xs7 = _f32(7, 4)
    _close(f(p, xs7), per_example(lambda p, x: _mlp(p, x, np), (_widen(p), xs7.astype(np.float64)),
                                  in_axes=(None, 0)), F32, rtol=1e-5, atol=1e-5)


@pytest.mark.on_device
def test_vmap_of_jit_with_gather_and_scatter():
    t, i, v = _f32(4, 6, 2), rng.integers(0, 6, (4, 3)), _f32(4, 3, 2)
    g = jit(lambda t, i, v: (t[i] * 2, t.at[i].add(v)))
    got = needle.vmap(g)(t, i, v)
    want = per_example(lambda t, i, v: (t[i] * 2, _np_at(t, i, v, "add")), (t, i, v))
    _close(got[0], want[0], F32)
    _close(got[1], want[1], F32)
    # an unmapped table
    got = needle.vmap(g, in_axes=(None, 0, 0))(t[0], i, v)
    want = per_example(lambda t, i, v: (t[i] * 2, _np_at(t, i, v, "add")), (t[0], i, v),
                       in_axes=(None, 0, 0))
    _close(got[0], want[0], F32)
    _close(got[1], want[1], F32)


@pytest.mark.on_device
def test_jit_per_example_gradients():
    n, d = 6, 4
    p = {"w": rng.standard_normal(d), "b": np.float64(-0.2)}
    xs, ys = rng.standard_normal((n, d)), rng.choice([-1.0, 1.0], n)
    g = jit(needle.vmap(needle.grad(_logistic_loss), in_axes=(None, 0, 0)))(p, xs, ys)
    want = _logistic_grads_np(p, xs, ys)
    _close(g["w"], want["w"], F64)
    _close(g["b"], want["b"], F64)


# ----------------------------------------------------------------------------------
# errors

def test_error_in_axes_out_of_range():
    for ax in (2, -3):
        with pytest.raises(ValueError, match="in_axes"):
            needle.vmap(lambda a: a, in_axes=ax)(np.ones((3, 2)))
    with pytest.raises(ValueError, match="in_axes"):
        needle.vmap(lambda a, s: a * s, in_axes=(0, 0))(np.ones((3, 2)), np.float32(2))


def test_error_mismatched_sizes():
    with pytest.raises(ValueError, match="size") as e:
        needle.vmap(lambda a, b: a + b)(np.ones((3, 2)), np.ones((4, 2)))
    assert "3" in str(e.value) and "4" in str(e.value)
    with pytest.raises(ValueError, match="size"):
        needle.vmap(lambda a, b: a + b, in_axes=(0, 1))(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="axis_size"):
        needle.vmap(lambda a: a, axis_size=5)(np.ones((3, 2)))


def test_error_in_axes_length_and_structure():
    with pytest.raises(ValueError, match="in_axes"):
        needle.vmap(lambda a, b: a, in_axes=(0,))(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="in_axes"):
        needle.vmap(lambda a: a, in_axes=(0, 0, None))(np.ones(3))
    with pytest.raises(ValueError, match="in_axes"):
        needle.vmap(lambda p: p["w"], in_axes=({"v": 0},))({"w": np.ones(3)})


def test_error_nothing_mapped_without_axis_size():
    with pytest.raises(ValueError, match="axis_size"):
        needle.vmap(lambda a: a * 2, in_axes=None)(np.ones(3))
    with pytest.raises(ValueError, match="axis_size"):
        needle.vmap(lambda a, b: a + b, in_axes=(None, None))(np.ones(3), np.ones(3))
