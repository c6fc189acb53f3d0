"""Differential tests: needle.numpy's shape manipulation and indexing against
numpy, eagerly and under needle.jit: reshape, transpose, swapaxes, moveaxis,
expand_dims, squeeze, broadcast_to, concatenate, stack, split, flip, pad,
take, take_along_axis, basic and integer-array indexing, and the functional
updates `x.at[idx].set / add / mul / min / max`.

Values move without arithmetic, so results must match numpy exactly; each
hypothesis example draws its dtype too.
"""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st
from hypothesis.extra import numpy as hnp

import needle
import needle.numpy as nnp
from helpers import MODES, jit, arrays, assert_close, expected_dtype, run, shapes

pytestmark = pytest.mark.on_device      # also run on $NEEDLE_TEST_DEVICE (conftest.py)

F32, F64, I32, I64, B = (np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64,
                                               np.bool_))
ALL5 = [F32, F64, I32, I64, B]


def dtypes(mode):
    """Eagerly every dtype; under jit float32 and int32 (each is other kernels)."""
    return st.sampled_from(ALL5 if mode == "eager" else [F32, I32])


def _array(data, mode, **shape_kw):
    dt = data.draw(dtypes(mode), label="dtype")
    return data.draw(arrays(dt, shapes(**shape_kw)), label="x")


def _same(got, want):
    assert_close(got, np.asarray(want), np.asarray(want).dtype)


# ----------------------------------------------------------------------------
# shape manipulation


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_reshape(mode, data):
    x = _array(data, mode)
    shape = x.shape
    targets = [(-1,), (1,) + shape + (1,), shape[::-1], (x.size, -1)]
    if len(shape) >= 2:
        targets.append((shape[0] * shape[1], -1) + shape[2:])
    new = data.draw(st.sampled_from(targets), label="newshape")
    got = run(lambda a: [nnp.reshape(a, new), nnp.ravel(a)], (x,), mode)
    _same(got[0], np.reshape(x, new))
    _same(got[1], np.ravel(x))
    if mode == "jit":
        _same(jit(lambda a: a.reshape(new))(x), np.reshape(x, new))


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_transpose_swapaxes_moveaxis(mode, data):
    x = _array(data, mode)
    nd = x.ndim
    perm = data.draw(st.permutations(range(nd)), label="perm")
    got = run(lambda a: [nnp.transpose(a), nnp.transpose(a, perm)], (x,), mode)
    _same(got[0], np.transpose(x))
    _same(got[1], np.transpose(x, perm))
    if nd:
        i, j = data.draw(st.tuples(st.integers(-nd, nd - 1), st.integers(-nd, nd - 1)),
                         label="axes")
        got = run(lambda a: [nnp.swapaxes(a, i, j), nnp.moveaxis(a, i, j)], (x,), mode)
        _same(got[0], np.swapaxes(x, i, j))
        _same(got[1], np.moveaxis(x, i, j))
    if mode == "jit":
        _same(jit(lambda a: a.T)(x), x.T)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_expand_dims_squeeze(mode, data):
    x = _array(data, mode, min_side=1, max_side=2)
    nd = x.ndim
    axis = data.draw(st.integers(-nd - 1, nd), label="axis")
    ones = [d for d, n in enumerate(x.shape) if n == 1]
    sq = data.draw(st.none() | st.lists(st.sampled_from(ones), unique=True).map(tuple)
                   if ones else st.none(), label="squeeze_axis")
    got = run(lambda a: [nnp.expand_dims(a, axis), nnp.squeeze(a, sq)], (x,), mode)
    _same(got[0], np.expand_dims(x, axis))
    _same(got[1], np.squeeze(x, sq))


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_broadcast_to(mode, data):
    dt = data.draw(dtypes(mode), label="dtype")
    target = data.draw(shapes(max_dims=4), label="target")
    keep = data.draw(st.integers(0, len(target)), label="ndim")
    ones = data.draw(st.lists(st.booleans(), min_size=keep, max_size=keep), label="ones")
    shape = tuple(1 if o else n for o, n in zip(ones, target[len(target) - keep:]))
    x = data.draw(arrays(dt, shape), label="x")
    _same(run(lambda a: nnp.broadcast_to(a, target), (x,), mode), np.broadcast_to(x, target))


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_concatenate_stack(mode, data):
    dt = data.draw(dtypes(mode), label="dtype")
    shape = data.draw(shapes(min_dims=1), label="shape")
    nd = len(shape)
    axis = data.draw(st.integers(-nd, nd - 1), label="axis")
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3), label="sizes")
    xs = [data.draw(arrays(dt, shape[:axis % nd] + (n,) + shape[axis % nd + 1:]))
          for n in sizes]
    ys = [data.draw(arrays(dt, shape)) for _ in sizes]
    sax = data.draw(st.integers(-nd - 1, nd), label="stack_axis")
    got = run(lambda xs, ys: [nnp.concatenate(xs, axis), nnp.stack(ys, sax),
                              nnp.concatenate(ys, axis=None)], (xs, ys), mode)
    _same(got[0], np.concatenate(xs, axis))
    _same(got[1], np.stack(ys, sax))
    _same(got[2], np.concatenate(ys, axis=None))


@pytest.mark.parametrize("mode", MODES)
def test_concatenate_promotes(mode):
    xs = (np.ones((2, 2), np.int32), np.zeros((1, 2), np.float32), np.ones((1, 2), np.bool_))
    got = run(lambda *xs: nnp.concatenate(xs), xs, mode)
    assert_close(got, np.concatenate(xs).astype(np.float32), expected_dtype(*xs))


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_split(mode, data):
    dt = data.draw(dtypes(mode), label="dtype")
    shape = data.draw(shapes(min_dims=1, max_side=6), label="shape")
    nd = len(shape)
    axis = data.draw(st.integers(-nd, nd - 1), label="axis")
    n = shape[axis]
    x = data.draw(arrays(dt, shape), label="x")
    how = data.draw(st.sampled_from([k for k in range(1, n + 1) if n % k == 0])
                    | st.lists(st.integers(-n - 1, n + 1), max_size=3), label="sections")
    got = run(lambda a: nnp.split(a, how, axis), (x,), mode)
    want = np.split(x, how, axis)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        _same(g, w)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_flip(mode, data):
    x = _array(data, mode)
    nd = x.ndim
    axis = data.draw(st.none() | hnp.valid_tuple_axes(nd, min_size=1)
                     | st.integers(-nd, nd - 1) if nd else st.none(), label="axis")
    _same(run(lambda a: nnp.flip(a, axis), (x,), mode), np.flip(x, axis))


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_pad(mode, data):
    x = _array(data, mode)
    nd = x.ndim
    pair = st.tuples(st.integers(0, 2), st.integers(0, 2))
    width = data.draw(st.one_of(st.integers(0, 2), pair,
                                st.lists(pair, min_size=nd, max_size=nd) if nd else pair),
                      label="pad_width")
    value = data.draw(st.sampled_from([0, 1]), label="constant_values")
    got = run(lambda a: nnp.pad(a, width, constant_values=value), (x,), mode)
    _same(got, np.pad(x, width, constant_values=np.asarray(value, x.dtype)))


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_tile_repeat_stacks(mode, data):
    """tile, repeat, hstack, vstack, array_split, atleast_1d, fliplr, flipud."""
    x = _array(data, mode, max_side=3)
    reps = data.draw(st.integers(1, 3) | st.lists(st.integers(1, 3), min_size=1, max_size=3)
                     .map(tuple), label="reps")
    r = data.draw(st.integers(1, 3), label="repeats")
    nd = x.ndim
    axis = data.draw(st.none() | st.integers(-nd, nd - 1) if nd else st.none(), label="axis")
    sections = data.draw(st.integers(1, 4), label="sections")
    fns = {"tile": (lambda a: nnp.tile(a, reps), lambda a: np.tile(a, reps)),
           "repeat": (lambda a: nnp.repeat(a, r, axis), lambda a: np.repeat(a, r, axis)),
           "atleast_1d": (nnp.atleast_1d, np.atleast_1d)}
    if nd <= 2:
        fns["vstack"] = (lambda a: nnp.vstack([a, a]), lambda a: np.vstack([a, a]))
    if nd >= 1:
        fns["hstack"] = (lambda a: nnp.hstack([a, a]), lambda a: np.hstack([a, a]))
        fns["flipud"] = (nnp.flipud, np.flipud)
        fns["array_split"] = (lambda a: nnp.array_split(a, sections),
                              lambda a: np.array_split(a, sections))
    if nd >= 2:
        fns["fliplr"] = (nnp.fliplr, np.fliplr)
    got = run(lambda a: {n: f(a) for n, (f, _) in fns.items()}, (x,), mode)
    for n, (_, np_fn) in fns.items():
        want = np_fn(x)
        for g, w in (zip(got[n], want) if n == "array_split" else [(got[n], want)]):
            try:
                _same(g, w)
            except AssertionError as e:
                raise AssertionError(f"{n}: {e}") from None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", [-1, 0, 2])
def test_tri_tril_triu(k, mode):
    x = np.arange(1, 25, dtype=np.float32).reshape(2, 3, 4)
    got = run(lambda a: [nnp.tril(a, k), nnp.triu(a, k), nnp.tri(3, 4, k)], (x,), mode)
    _same(got[0], np.tril(x, k))
    _same(got[1], np.triu(x, k))
    _same(got[2], np.tri(3, 4, k, dtype=np.float32))


# ----------------------------------------------------------------------------
# take, take_along_axis


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_take(mode, data):
    """Negative indices count from the end; indices can be traced arguments."""
    x = _array(data, mode, min_dims=1)
    nd = x.ndim
    axis = data.draw(st.none() | st.integers(-nd, nd - 1), label="axis")
    n = x.size if axis is None else x.shape[axis]
    idx = data.draw(hnp.arrays(data.draw(st.sampled_from([I32, I64])),
                               shapes(max_dims=2), elements=st.integers(-n, n - 1)), label="idx")
    _same(run(lambda a, i: nnp.take(a, i, axis=axis), (x, idx), mode), np.take(x, idx, axis))


@pytest.mark.parametrize("mode", MODES)
def test_take_clamps_out_of_range(mode):
    """needle clamps indices still out of range after wrapping negatives (a
    kernel cannot raise): numpy's mode='clip' on the wrapped indices."""
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    idx = np.array([-7, -6, -1, 0, 4, 5, 9], np.int64)
    want = np.take(x, np.where(idx < 0, idx + 5, idx), axis=1, mode="clip")
    _same(run(lambda a, i: nnp.take(a, i, axis=1), (x, idx), mode), want)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_take_along_axis(mode, data):
    x = _array(data, mode, min_dims=1)
    nd = x.ndim
    axis = data.draw(st.integers(-nd, nd - 1), label="axis")
    n = x.shape[axis]
    ishape = list(x.shape)
    ishape[axis] = data.draw(st.integers(1, 4), label="k")
    ishape = [1 if d != axis % nd and data.draw(st.booleans()) else s
              for d, s in enumerate(ishape)]
    idx = data.draw(hnp.arrays(I64, tuple(ishape), elements=st.integers(-n, n - 1)), label="idx")
    got = run(lambda a, i: nnp.take_along_axis(a, i, axis), (x, idx), mode)
    _same(got, np.take_along_axis(x, idx, axis))


@pytest.mark.parametrize("mode", MODES)
def test_take_along_axis_argsort(mode):
    x = np.array([[3.0, 1.0, 2.0], [0.5, 9.0, -1.0]], np.float32)
    idx = np.argsort(x, axis=1)
    _same(run(lambda a, i: nnp.take_along_axis(a, i, axis=1), (x, idx), mode), np.sort(x, 1))
    _same(run(lambda a, i: nnp.take_along_axis(a, i, axis=None), (x, idx.ravel()), mode),
          np.take_along_axis(x, idx.ravel(), None))


# ----------------------------------------------------------------------------
# indexing


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_basic_indexing(mode, data):
    """ints, negative ints, slices (steps, negative steps), None, Ellipsis."""
    x = _array(data, mode, max_dims=4)
    idx = data.draw(hnp.basic_indices(x.shape, allow_newaxis=True, allow_ellipsis=True),
                    label="index")
    _same(run(lambda a: a[idx] if mode == "jit" else nnp.indexing.getitem(a, idx), (x,), mode),
          x[idx])


@st.composite
def _array_index(draw, shape):
    """A tuple index with one integer array (values in [-n, n)), the other
    entries ints, slices or full slices."""
    nd = len(shape)
    k = draw(st.integers(0, nd - 1), label="array_axis")
    n = shape[k]
    arr = draw(hnp.arrays(st.sampled_from([I32, I64]), shapes(max_dims=2, max_side=3),
                          elements=st.integers(-n, n - 1)), label="index_array")
    idx = []
    for d, m in enumerate(shape):
        if d == k:
            idx.append(arr)
        else:
            idx.append(draw(st.sampled_from([slice(None), slice(None, None, -1),
                                             slice(1, None), m - 1, -m])))
    cut = draw(st.integers(k + 1, nd), label="length")      # trailing entries implicit
    return tuple(idx[:cut])


@pytest.mark.parametrize("mode,traced", [("eager", False), ("jit", False), ("jit", True)],
                         ids=["eager", "jit-const_index", "jit-traced_index"])
@given(data=st.data())
def test_integer_array_indexing(mode, traced, data):
    """One integer-array index, with ints and slices beside it (numpy moves the
    array's dims first when an int separates them); under jit the index array is
    a traced argument or a captured constant."""
    x = _array(data, mode, min_dims=1)
    idx = data.draw(_array_index(x.shape))
    want = x[idx]
    k = next(i for i, e in enumerate(idx) if isinstance(e, np.ndarray))
    if traced:
        got = jit(lambda a, arr: a[idx[:k] + (arr,) + idx[k + 1:]])(x, idx[k])
    else:
        got = run(lambda a: a[idx] if mode == "jit" else nnp.indexing.getitem(a, idx), (x,), mode)
    _same(got, want)


# ----------------------------------------------------------------------------
# x.at[idx] updates


def _at(mode, a, idx):
    return a.at[idx] if mode == "jit" else nnp.at(a)[idx]


_NP_AT = {"set": None, "add": np.add, "mul": np.multiply, "min": np.minimum, "max": np.maximum}


def _np_at(x, idx, how, v):
    out = x.copy()
    if how == "set":
        out[idx] = v
    else:
        _NP_AT[how].at(out, idx, v)
    return out


@st.composite
def _update_index(draw, shape, unique):
    """A basic index, or one integer array (unique entries, or repeats allowed)."""
    if draw(st.booleans(), label="basic"):
        return draw(hnp.basic_indices(shape, allow_newaxis=False, allow_ellipsis=True))
    n = shape[0]
    vals = st.integers(-n, n - 1)
    arr = draw(st.lists(vals, min_size=1, max_size=4,
                        unique_by=(lambda i: i % n) if unique else None), label="index")
    return np.array(arr, np.int64)


@pytest.mark.parametrize("how", list(_NP_AT))
@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_at_update(how, mode, data):
    x = _array(data, mode, min_dims=1)
    assume(not (how in ("add", "mul") and x.dtype == B))
    # with a repeated index set's winner is unspecified; the others apply all
    idx = data.draw(_update_index(x.shape, unique=how == "set"))
    sub = x[idx].shape
    vshape = data.draw(st.sampled_from([(), sub, sub[1:]] if sub else [()]), label="vshape")
    v = data.draw(arrays(x.dtype, vshape), label="values")
    got = run(lambda a, v: getattr(_at(mode, a, idx), how)(v), (x, v), mode)
    _same(got, _np_at(x, idx, how, v))


@pytest.mark.parametrize("mode", MODES)
def test_at_get_and_scalar_values(mode):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = run(lambda a: [_at(mode, a, (1, slice(None, None, 2))).get(),
                         _at(mode, a, (..., -1)).set(7),
                         _at(mode, a, 0).add(0.5)], (x,), mode)
    _same(got[0], x[1, ::2])
    _same(got[1], _np_at(x, (..., -1), "set", 7))
    _same(got[2], _np_at(x, 0, "add", np.float32(0.5)))


@pytest.mark.parametrize("mode", MODES)
def test_at_traced_index(mode):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    idx = np.array([2, -1, 0], np.int64)
    got = run(lambda a, i: [_at(mode, a, i).set(-1.0), _at(mode, a, (slice(None), i)).add(1.0)],
              (x, idx), mode)
    _same(got[0], _np_at(x, idx, "set", np.float32(-1)))
    _same(got[1], _np_at(x, (slice(None), idx), "add", np.float32(1)))


@pytest.mark.parametrize("mode", MODES)
def test_at_add_repeated_indices(mode):
    """Repeated indices accumulate, as np.add.at and JAX's .at[].add."""
    x = np.zeros((4, 2), np.float32)
    idx = np.array([1, 3, 1, 1, -1], np.int64)
    v = np.arange(10, dtype=np.float32).reshape(5, 2)
    _same(run(lambda a, v: _at(mode, a, idx).add(v), (x, v), mode), _np_at(x, idx, "add", v))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["mul", "min", "max"])
def test_at_repeated_indices_combine_all(how, mode):
    """A repeated index applies every update (np.multiply.at / minimum.at /
    maximum.at, JAX's .at[].mul / min / max); min / max propagate NaN."""
    x = np.array([2.0, 2.0, 5.0, -1.0, 0.5], np.float32)
    idx = np.array([1, 1, 1, 3, 4, 4], np.int64)
    v = np.array([0.5, 3.0, 1.5, -4.0, np.nan, 2.0], np.float32)
    got = run(lambda a, v: getattr(_at(mode, a, idx), how)(v), (x, v), mode)
    _same(got, _np_at(x, idx, how, v))
    xi = np.array([[3, -2], [7, 1]], np.int32)
    vi = np.array([[5, -9], [2, 4], [1, 1]], np.int32)
    ii = np.array([0, 0, 1], np.int64)
    got = run(lambda a, v: getattr(_at(mode, a, ii), how)(v), (xi, vi), mode)
    _same(got, _np_at(xi, ii, how, vi))


# ----------------------------------------------------------------------------
# the structural and indexing primitives themselves, with the parameters
# needle.numpy never passes (strides, interior padding, gather / scatter along
# any axis with n-d indices), against numpy


def _bind(prim, mode, *args, **params):
    return run(lambda *a: prim.bind(*a, **params), args, mode)


def test_every_structural_and_indexing_primitive_is_tested_here():
    from needle.ir import PRIMITIVES
    names = {n for n, p in PRIMITIVES.items() if p.kind in ("structural", "indexing")}
    assert names == {"broadcast_in_dim", "reshape", "transpose", "slice", "pad", "concatenate",
                     "rev", "iota", "gather", "scatter", "scatter_add", "scatter_mul",
                     "scatter_min", "scatter_max"}


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_slice_rev_transpose_reshape_primitives(mode, data):
    from needle.ir.primitives import reshape_p, rev_p, slice_p, transpose_p
    x = _array(data, mode, min_dims=1)
    start, limit, strides = [], [], []
    for n in x.shape:
        s = data.draw(st.integers(0, n), label="start")
        start.append(s)
        limit.append(data.draw(st.integers(s, n), label="limit"))
        strides.append(data.draw(st.integers(1, 3), label="stride"))
    dims = tuple(d % x.ndim for d in data.draw(hnp.valid_tuple_axes(x.ndim), label="rev_dims"))
    perm = data.draw(st.permutations(range(x.ndim)), label="perm")
    got = run(lambda a: [slice_p.bind(a, start_indices=tuple(start), limit_indices=tuple(limit),
                                      strides=tuple(strides)),
                         rev_p.bind(a, dimensions=dims),
                         transpose_p.bind(a, permutation=tuple(perm)),
                         reshape_p.bind(a, new_sizes=(x.size,))], (x,), mode)
    _same(got[0], x[tuple(slice(s, l, st_) for s, l, st_ in zip(start, limit, strides))])
    _same(got[1], np.flip(x, dims))
    _same(got[2], np.transpose(x, perm))
    _same(got[3], x.reshape(-1))


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_broadcast_in_dim_primitive(mode, data):
    from needle.ir.primitives import broadcast_in_dim_p
    dt = data.draw(dtypes(mode), label="dtype")
    out = data.draw(shapes(max_dims=4), label="shape")
    bd = tuple(sorted(data.draw(st.lists(st.integers(0, len(out) - 1), unique=True)
                                if out else st.just([]), label="dims")))
    xs = tuple(data.draw(st.sampled_from([1, out[d]])) for d in bd)
    x = data.draw(arrays(dt, xs), label="x")
    got = _bind(broadcast_in_dim_p, mode, x, shape=out, broadcast_dimensions=bd)
    expanded = [1] * len(out)
    for i, d in enumerate(bd):
        expanded[d] = xs[i]
    _same(got, np.broadcast_to(x.reshape(expanded), out))


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_pad_primitive_interior(mode, data):
    """Low, high and interior padding (interior: pad values between elements)."""
    from needle.ir.primitives import pad_p
    x = _array(data, mode)
    config = tuple(data.draw(st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
                             label="config") for _ in range(x.ndim))
    v = np.asarray(data.draw(arrays(x.dtype, ())), x.dtype)
    want = np.full([lo + hi + n + max(n - 1, 0) * it for n, (lo, hi, it) in zip(x.shape, config)],
                   v, x.dtype)
    want[tuple(slice(lo, lo + (n - 1) * (it + 1) + 1, it + 1) if n else slice(lo, lo)
               for n, (lo, _, it) in zip(x.shape, config))] = x
    _same(_bind(pad_p, mode, x, v, padding_config=config), want)


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_concatenate_iota_primitives(mode, data):
    from needle.ir.primitives import concatenate_p, iota_p
    dt = data.draw(dtypes(mode), label="dtype")
    shape = data.draw(shapes(min_dims=1), label="shape")
    d = data.draw(st.integers(0, len(shape) - 1), label="dimension")
    xs = [data.draw(arrays(dt, shape[:d] + (data.draw(st.integers(0, 3)),) + shape[d + 1:]))
          for _ in range(data.draw(st.integers(1, 3)))]
    _same(_bind(concatenate_p, mode, *xs, dimension=d), np.concatenate(xs, d))
    idt = data.draw(st.sampled_from([I32, I64, F32]), label="iota_dtype")
    got = run(lambda x: [x, iota_p.bind(dtype=idt, shape=shape, dimension=d)], (xs[0],), mode)
    _same(got[1], np.broadcast_to(np.arange(shape[d], dtype=idt).reshape(
        [-1 if k == d else 1 for k in range(len(shape))]), shape))


@pytest.mark.parametrize("mode", MODES)
@given(data=st.data())
def test_gather_scatter_primitives(mode, data):
    """gather / scatter / scatter_add / mul / min / max along any axis with
    n-d index arrays; negative indices wrap. The combining scatters apply
    every repeat; scatter is tested with distinct positions (with repeats
    the winner is unspecified)."""
    from needle.ir.primitives import (gather_p, scatter_add_p, scatter_max_p, scatter_min_p,
                                      scatter_mul_p, scatter_p)
    x = _array(data, mode, min_dims=1)
    axis = data.draw(st.integers(0, x.ndim - 1), label="axis")
    n = x.shape[axis]
    idx = data.draw(hnp.arrays(st.sampled_from([I32, I64]), shapes(max_dims=2, max_side=3),
                               elements=st.integers(-n, n - 1)), label="idx")
    uniq = data.draw(st.lists(st.integers(0, n - 1), unique=True, min_size=1,
                              max_size=n).map(lambda v: np.array(v, np.int64)), label="uniq")
    upd_shape = x.shape[:axis] + idx.shape + x.shape[axis + 1:]
    upd = data.draw(arrays(x.dtype, upd_shape), label="upd")
    upd_u = data.draw(arrays(x.dtype, x.shape[:axis] + uniq.shape + x.shape[axis + 1:]))
    combining = [("min", scatter_min_p, np.minimum), ("max", scatter_max_p, np.maximum)]
    if x.dtype != B:
        combining += [("add", scatter_add_p, np.add), ("mul", scatter_mul_p, np.multiply)]
    got = run(lambda a, i, u, j, w: [gather_p.bind(a, i, axis=axis),
                                     scatter_p.bind(a, j, w, axis=axis)]
              + [p.bind(a, i, u, axis=axis) for _, p, _ in combining],
              (x, idx, upd, uniq, upd_u), mode)
    wrapped = np.where(idx < 0, idx + n, idx)
    _same(got[0], np.take(x, wrapped, axis))
    want = x.copy()
    want[(slice(None),) * axis + (uniq,)] = upd_u
    _same(got[1], want)
    for k, (name, _, ufunc) in enumerate(combining):
        want = np.moveaxis(x.copy(), axis, 0)
        with np.errstate(all="ignore"):
            ufunc.at(want, wrapped.reshape(-1), np.moveaxis(
                upd.reshape(x.shape[:axis] + (-1,) + x.shape[axis + 1:]), axis, 0))
        try:
            _same(got[2 + k], np.moveaxis(want, 0, axis))
        except AssertionError as e:
            raise AssertionError(f"scatter_{name}: {e}") from None


def test_created_arrays_index_with_traced_indices_under_jit():
    """Under jit, needle.numpy creation functions give traced constants (as
    jnp arrays under jax.jit), so a traced index applies to them: numpy's own
    indexing would ask the tracer for its value."""
    i = np.array([1, 5, -1, -7], np.int64)
    got = jit(lambda i: [nnp.arange(4.0)[i], nnp.eye(4)[i], nnp.array([5, 6, 7, 8])[i],
                         nnp.linspace(0, 1, 4)[i], nnp.tri(4, dtype=np.int32)[i]])(i)
    clamp = np.clip(np.where(i < 0, i + 4, i), 0, 3)
    _same(got[0], np.arange(4.0, dtype=np.float32)[clamp])
    _same(got[1], np.eye(4, dtype=np.float32)[clamp])
    _same(got[2], np.array([5, 6, 7, 8])[clamp])
    _same(got[3], np.linspace(0, 1, 4).astype(np.float32)[clamp])
    _same(got[4], np.tri(4, dtype=np.int32)[clamp])


@pytest.mark.parametrize("mode", MODES)
def test_at_out_of_range_updates_are_dropped_or_clipped(mode):
    """As JAX: an update whose index is out of range after wrapping negative
    indices once is dropped by default (mode="drop" / "fill"), clamped to the
    edge with mode="clip" / "promise_in_bounds"; reading clamps."""
    x = np.zeros(4, np.float32)
    i = np.array([1, 5, -1, -7], np.int64)
    v = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    got = run(lambda a, i, v: [_at(mode, a, i).set(v), _at(mode, a, i).add(1.0),
                               _at(mode, a, i).max(v), _at(mode, a, i).mul(v),
                               _at(mode, a, i).add(1.0, mode="clip"),
                               _at(mode, a, i).set(v, mode="fill")], (x, i, v), mode)
    _same(got[0], np.array([0, 1, 0, 3], np.float32))
    _same(got[1], np.array([0, 1, 0, 1], np.float32))
    _same(got[2], np.array([0, 1, 0, 3], np.float32))
    _same(got[3], np.array([0, 0, 0, 0], np.float32))
    _same(got[4], np.array([1, 1, 0, 2], np.float32))   # 5 -> 3, -7 -> 0
    _same(got[5], np.array([0, 1, 0, 3], np.float32))
    rows = run(lambda a, i: _at(mode, a, i).add(1.0),
               (np.zeros((3, 2), np.float32), np.array([0, 3, -4], np.int64)), mode)
    _same(rows, np.array([[1, 1], [0, 0], [0, 0]], np.float32))
    with pytest.raises(ValueError, match="mode must be one of"):
        nnp.at(x)[i].set(v, mode="wrap")


def test_gradient_of_dropped_updates_is_zero():
    i = np.array([1, 5, -1, -7], np.int64)
    w = np.arange(1.0, 5.0)

    def f(u):
        return nnp.sum(nnp.zeros(4).at[i].set(u) * w)
    np.testing.assert_allclose(needle.grad(f)(np.ones(4)), [2.0, 0.0, 4.0, 0.0])

    def g(u):
        return nnp.sum(nnp.ones(4).at[i].mul(u) * w)
    np.testing.assert_allclose(needle.grad(g)(np.full(4, 2.0)), [2.0, 0.0, 4.0, 0.0])
    # vmap with per-example indices, some out of range
    out = needle.vmap(lambda a, j: a.at[j].add(1.0))(np.zeros((2, 3), np.float32),
                                                     np.array([[0, 3], [-1, -4]], np.int64))
    _same(out, np.array([[1, 0, 0], [0, 0, 1]], np.float32))


_SEVERAL = {
    "i,j": lambda a, i, j, k: a[i, j], ":,i,j": lambda a, i, j, k: a[:, i, j],
    "i,:,j": lambda a, i, j, k: a[i, :, j], "i,2,j": lambda a, i, j, k: a[i, 2, j],
    "1,i,j": lambda a, i, j, k: a[1, i, j], "k,i,j": lambda a, i, j, k: a[k, i, j],
    "None,i,j": lambda a, i, j, k: a[None, i, j], "i,None,j": lambda a, i, j, k: a[i, None, j],
    "...,i,j": lambda a, i, j, k: a[..., i, j], "k,1:3,j": lambda a, i, j, k: a[k, 1:3, j],
    "i,::-1,j": lambda a, i, j, k: a[i, ::-1, j], "0,i,1": lambda a, i, j, k: a[0, i, 1],
}


@pytest.mark.parametrize("mode", MODES)
def test_indexing_with_several_integer_arrays(mode):
    """numpy's advanced indexing with several arrays: they broadcast together,
    and the broadcast dims go in place when the advanced indices (arrays and
    ints) are adjacent, else first; negative indices wrap. The canonical
    cross-entropy pick logp[arange(n), labels] and its gradient."""
    x = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    i, j, k = np.array([0, 3, -1]), np.array([1, 4, 2]), np.array([[0], [3]])
    for name, f in _SEVERAL.items():
        if mode == "jit":
            got = jit(f)(x, i, j, k)
        else:                   # needle's own indexing of a numpy array, eagerly
            got = nnp.at(x)[_index_of(f, i, j, k)].get()
        try:
            _same(got, f(x, i, j, k))
        except AssertionError as e:
            raise AssertionError(f"x[{name}]: {e}") from None
    logp = np.log(np.arange(1, 16, dtype=np.float64).reshape(5, 3) / 16)
    y = np.array([0, 2, 1, 1, 0])
    np.testing.assert_allclose(jit(lambda l, y: l[nnp.arange(5), y])(logp, y),
                               logp[np.arange(5), y])
    g = needle.grad(lambda l: -nnp.mean(l[nnp.arange(5), y]))(logp)
    want = np.zeros_like(logp)
    want[np.arange(5), y] = -0.2
    np.testing.assert_allclose(g, want)
    with pytest.raises(IndexError, match="could not be broadcast"):
        jit(lambda a: a[np.array([0, 1]), np.array([0, 1, 2])])(x)


def _index_of(f, i, j, k):
    """The index tuple f applies (recorded by calling it on a probe)."""
    class Probe:
        def __getitem__(self, idx):
            return idx
    return f(Probe(), i, j, k)
