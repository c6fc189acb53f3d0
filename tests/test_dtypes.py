"""Type promotion and dtype defaults against a hand-written table of JAX's
answers (64-bit types on, Python scalars weak, float32 the default float),
eagerly and under needle.jit; and the creation functions' dtypes and values
against numpy.

Where JAX and numpy differ the table follows JAX: int32 + float32 is float32
(numpy: float64), int32 + 1.5 is float32, exp(int32) is float32, mean(int) is
float32, array([1.0]) is float32.
"""
import numpy as np
import pytest

import needle
import needle.nn as nn
import needle.numpy as nnp
from helpers import MODES, jit, assert_close, expected_dtype

pytestmark = pytest.mark.on_device      # also run on $NEEDLE_TEST_DEVICE (conftest.py)

b, i32, i64, f32, f64 = (np.dtype(t) for t in (np.bool_, np.int32, np.int64, np.float32,
                                               np.float64))


def _arr(dt):
    return np.ones((2,), dt)


# (x, y, dtype of x + y). Arrays and numpy scalars are strong, Python scalars weak.
ADD_TABLE = [
    (_arr(b), _arr(b), b),
    (_arr(b), _arr(i32), i32),
    (_arr(i32), _arr(i64), i64),
    (_arr(i32), _arr(f32), f32),         # numpy: float64
    (_arr(i64), _arr(f32), f32),         # numpy: float64
    (_arr(f32), _arr(f64), f64),
    (_arr(i32), _arr(f64), f64),
    (_arr(b), _arr(f32), f32),
    (_arr(i32), 1, i32),
    (_arr(i32), 1.5, f32),               # numpy: float64
    (_arr(f32), 2, f32),
    (_arr(f64), 1.5, f64),
    (_arr(b), 1, i64),
    (_arr(b), 1.5, f32),
    (_arr(b), True, b),
    (_arr(f32), np.float64(1.0), f64),   # numpy scalars are strong
    (_arr(i32), np.int64(1), i64),
    (_arr(f32), np.float32(1.0), f32),
]


def _id(v):
    return v.dtype.name + ("[]" if isinstance(v, np.ndarray) else "()") \
        if hasattr(v, "dtype") else type(v).__name__


@pytest.mark.parametrize("x,y,want", ADD_TABLE, ids=[f"{_id(x)}+{_id(y)}" for x, y, _ in ADD_TABLE])
def test_add_promotion_table(x, y, want):
    assert expected_dtype(x, y) == want            # the helper the other tests use agrees
    assert np.asarray(nnp.add(x, y)).dtype == want
    assert np.asarray(nnp.add(y, x)).dtype == want
    assert nnp.result_type(x, y) == want
    if isinstance(y, np.ndarray):
        assert nnp.promote_types(x.dtype, y.dtype) == want
    # under jit: arrays are arguments, Python scalars are closed over (literals)
    assert jit(lambda a: a + y)(x).dtype == want
    assert jit(lambda a: y + a)(x).dtype == want


@pytest.mark.parametrize("scalar,arr,want", [(1.5, _arr(i32), f32), (2, _arr(i32), i32),
                                             (2, _arr(f32), f32), (True, _arr(b), b),
                                             (1.5, _arr(f64), f64)], ids=str)
def test_python_scalar_arguments_are_weak_under_jit(scalar, arr, want):
    """A Python scalar passed to a jitted function stays weakly typed."""
    assert jit(lambda s, a: s * a)(scalar, arr).dtype == want
    assert jit(lambda s, a: a - s if a.dtype != np.bool_ else a & s)(scalar, arr).dtype \
        == want


@pytest.mark.parametrize("want,scalars", [(f32, (1, 1.5)), (i64, (1, 2)), (f32, (2.0, 3.0)),
                                          (b, (True, False))], ids=str)
def test_python_scalars_only(want, scalars):
    assert np.asarray(nnp.add(*scalars)).dtype == want
    assert jit(lambda x, y: x + y)(*scalars).dtype == want


x_b, x_i32, x_i64, x_f32, x_f64 = (np.array([[0, 1, 2], [1, 1, 0]]).astype(d)
                                   for d in (b, i32, i64, f32, f64))

# (description, function, arguments, JAX's dtype)
OP_TABLE = [
    ("exp(int32)", nnp.exp, (x_i32,), f32),      # numpy: float64
    ("exp(int64)", nnp.exp, (x_i64,), f32),
    ("exp(bool)", nnp.exp, (x_b,), f32),
    ("exp(float64)", nnp.exp, (x_f64,), f64),
    ("sqrt(int64)", nnp.sqrt, (x_i64,), f32),
    ("tanh(float32)", nnp.tanh, (x_f32,), f32),
    ("true_divide(int32, int32)", nnp.true_divide, (x_i32, x_i32), f32),
    ("true_divide(int64, 2)", lambda a: nnp.true_divide(a, 2), (x_i64,), f32),
    ("floor_divide(int32, int32)", nnp.floor_divide, (x_i32, x_i32), i32),
    ("remainder(int64, 2)", lambda a: nnp.remainder(a, 2), (x_i64,), i64),
    ("negative(int32)", nnp.negative, (x_i32,), i32),
    ("absolute(bool)", nnp.absolute, (x_b,), b),
    ("rint(int32)", nnp.rint, (x_i32,), f32),
    ("round(int32)", nnp.round, (x_i32,), i32),
    ("power(int32, 2)", lambda a: nnp.power(a, 2), (x_i32,), i32),
    ("power(int32, 2.0)", lambda a: nnp.power(a, 2.0), (x_i32,), f32),
    ("power(int32, int32)", nnp.power, (x_i32, x_i32), i32),
    ("power(bool, 2)", lambda a: nnp.power(a, 2), (x_b,), i64),
    ("power(float32, int32)", nnp.power, (x_f32, x_i32), f32),
    ("sum(int32)", nnp.sum, (x_i32,), i64),
    ("sum(bool)", nnp.sum, (x_b,), i64),
    ("sum(float32)", nnp.sum, (x_f32,), f32),
    ("prod(int32)", nnp.prod, (x_i32,), i64),
    ("max(int32)", nnp.max, (x_i32,), i32),
    ("max(bool)", nnp.max, (x_b,), b),
    ("mean(int32)", nnp.mean, (x_i32,), f32),    # numpy: float64
    ("mean(int64)", nnp.mean, (x_i64,), f32),
    ("mean(bool)", nnp.mean, (x_b,), f32),
    ("mean(float64)", nnp.mean, (x_f64,), f64),
    ("var(int64)", nnp.var, (x_i64,), f32),
    ("std(int32)", nnp.std, (x_i32,), f32),
    ("argmax(float64)", nnp.argmax, (x_f64,), i64),
    ("argmin(int32, axis=1)", lambda a: nnp.argmin(a, axis=1), (x_i32,), i64),
    ("cumsum(int32)", nnp.cumsum, (x_i32,), i64),
    ("cumsum(bool)", nnp.cumsum, (x_b,), i64),
    ("all(int32)", nnp.all, (x_i32,), b),
    ("where(bool, int32, float32)", nnp.where, (x_b, x_i32, x_f32), f32),
    ("where(bool, 1, 2.0)", lambda c: nnp.where(c, 1, 2.0), (x_b,), f32),
    ("where(bool, 1, 2)", lambda c: nnp.where(c, 1, 2), (x_b,), i64),
    ("where(bool, int32, 2)", lambda c, a: nnp.where(c, a, 2), (x_b, x_i32), i32),
    ("clip(int32, 0, 1)", lambda a: nnp.clip(a, 0, 1), (x_i32,), i32),
    ("clip(int32, 0, 1.5)", lambda a: nnp.clip(a, 0, 1.5), (x_i32,), f32),
    ("matmul(int32, float32)", lambda a, c: nnp.matmul(a, c.T), (x_i32, x_f32), f32),
    ("matmul(int32, int32)", lambda a, c: nnp.matmul(a, c.T), (x_i32, x_i32), i32),
    ("einsum(int32)", lambda a: nnp.einsum("ij->", a), (x_i32,), i32),
    ("concatenate(int32, float32)", lambda a, c: nnp.concatenate([a, c]), (x_i32, x_f32), f32),
    ("stack(bool, int64)", lambda a, c: nnp.stack([a, c]), (x_b, x_i64), i64),
    ("maximum(bool, bool)", nnp.maximum, (x_b, x_b), b),
    ("add(bool, bool)", nnp.add, (x_b, x_b), b),
    ("multiply(bool, bool)", nnp.multiply, (x_b, x_b), b),
    ("equal(int32, float32)", nnp.equal, (x_i32, x_f32), b),
    ("astype(float32 -> int32)", lambda a: nnp.astype(a, np.int32), (x_f32,), i32),
    ("take(float64, int32)", lambda a, i: nnp.take(a, i), (x_f64, x_i32), f64),
    ("nn.relu(int32)", nn.relu, (x_i32,), i32),
    ("nn.relu(float32)", nn.relu, (x_f32,), f32),
    ("nn.softmax(int32)", nn.softmax, (x_i32,), f32),
    ("nn.gelu(int64)", nn.gelu, (x_i64,), f32),
    ("nn.logsumexp(int32)", nn.logsumexp, (x_i32,), f32),
    ("nn.one_hot(int32, 3)", lambda a: nn.one_hot(a, 3), (x_i32,), f32),
]


@pytest.mark.parametrize("mode", MODES)
def test_op_dtype_table(mode):
    """One jitted function for the whole table (compiles are the slow part)."""
    if mode == "jit":
        # Pass each distinct array once, so kernels reading the same input can fuse.
        inputs = list({id(a): a for _, _, args, _ in OP_TABLE for a in args}.values())
        slot = {id(a): k for k, a in enumerate(inputs)}

        def table(*xs):
            return [f(*[xs[slot[id(a)]] for a in args]) for _, f, args, _ in OP_TABLE]

        got = jit(table)(*inputs)
    else:
        got = [f(*a) for _, f, a, _ in OP_TABLE]
    wrong = [f"{name}: {np.asarray(g).dtype} (want {want})"
             for (name, _, _, want), g in zip(OP_TABLE, got) if np.asarray(g).dtype != want]
    assert not wrong, "\n".join(wrong)


# ----------------------------------------------------------------------------
# creation functions: dtype defaults and values


CREATION = [
    ("array([1.0, 2.0])", lambda: nnp.array([1.0, 2.0]), np.array([1.0, 2.0], f32)),
    ("array([1, 2.5])", lambda: nnp.array([1, 2.5]), np.array([1, 2.5], f32)),
    ("array([1, 2])", lambda: nnp.array([1, 2]), np.array([1, 2], i64)),
    ("array(True)", lambda: nnp.array(True), np.array(True)),
    ("array(float64 array)", lambda: nnp.array(np.ones(2)), np.ones(2)),
    ("array(1.5, dtype=int32)", lambda: nnp.array([1.5], dtype=np.int32), np.array([1], i32)),
    ("asarray(3.0)", lambda: nnp.asarray(3.0), np.array(3.0, f32)),
    ("zeros((2, 3))", lambda: nnp.zeros((2, 3)), np.zeros((2, 3), f32)),
    ("zeros(3, int32)", lambda: nnp.zeros(3, np.int32), np.zeros(3, i32)),
    ("ones(())", lambda: nnp.ones(()), np.ones((), f32)),
    ("ones((2,), bool)", lambda: nnp.ones((2,), bool), np.ones(2, bool)),
    ("empty(2)", lambda: nnp.empty(2).shape, (2,)),
    ("full((2,), 1)", lambda: nnp.full((2,), 1), np.full(2, 1, i64)),
    ("full((2,), 1.5)", lambda: nnp.full((2,), 1.5), np.full(2, 1.5, f32)),
    ("full((2,), True)", lambda: nnp.full((2,), True), np.full(2, True)),
    ("full((2,), float64(1))", lambda: nnp.full((2,), np.float64(1)), np.full(2, 1.0)),
    ("full((2,), 3, float64)", lambda: nnp.full((2,), 3, np.float64), np.full(2, 3.0)),
    ("full((2, 2), [1, 2])", lambda: nnp.full((2, 2), np.array([1, 2], np.int32)),
     np.full((2, 2), np.array([1, 2], i32))),
    ("arange(5)", lambda: nnp.arange(5), np.arange(5, dtype=i64)),
    ("arange(2, 11, 3)", lambda: nnp.arange(2, 11, 3), np.arange(2, 11, 3, dtype=i64)),
    ("arange(10, 0, -3)", lambda: nnp.arange(10, 0, -3), np.arange(10, 0, -3, dtype=i64)),
    ("arange(5.0)", lambda: nnp.arange(5.0), np.arange(5.0, dtype=f32)),
    ("arange(0, 1, 0.25)", lambda: nnp.arange(0, 1, 0.25), np.arange(0, 1, 0.25, dtype=f32)),
    ("arange(-2.5, 2, 0.5)", lambda: nnp.arange(-2.5, 2, 0.5), np.arange(-2.5, 2, 0.5, dtype=f32)),
    ("arange(3, dtype=float64)", lambda: nnp.arange(3, dtype=np.float64), np.arange(3.0)),
    ("arange(int32(4))", lambda: nnp.arange(np.int32(4)), np.arange(4, dtype=i32)),
    ("arange(0)", lambda: nnp.arange(0), np.arange(0, dtype=i64)),
    ("linspace(0, 1, 5)", lambda: nnp.linspace(0, 1, 5), np.linspace(0, 1, 5, dtype=f32)),
    ("linspace(0, 1, 4, endpoint=False)", lambda: nnp.linspace(0, 1, 4, endpoint=False),
     np.linspace(0, 1, 4, endpoint=False, dtype=f32)),
    ("linspace(-1, 1, 3, dtype=float64)", lambda: nnp.linspace(-1, 1, 3, dtype=np.float64),
     np.linspace(-1, 1, 3)),
    ("eye(3)", lambda: nnp.eye(3), np.eye(3, dtype=f32)),
    ("eye(2, 3, k=1, dtype=int32)", lambda: nnp.eye(2, 3, k=1, dtype=np.int32),
     np.eye(2, 3, k=1, dtype=i32)),
    ("identity(2)", lambda: nnp.identity(2), np.identity(2, dtype=f32)),
    ("zeros_like(int32)", lambda: nnp.zeros_like(x_i32), np.zeros_like(x_i32)),
    ("ones_like(bool)", lambda: nnp.ones_like(x_b), np.ones_like(x_b)),
    ("ones_like(int32, dtype=float64)", lambda: nnp.ones_like(x_i32, dtype=np.float64),
     np.ones_like(x_i32, dtype=np.float64)),
    ("full_like(int32, 2.5)", lambda: nnp.full_like(x_i32, 2.5), np.full_like(x_i32, 2)),
    ("full_like(float64, 7)", lambda: nnp.full_like(x_f64, 7), np.full_like(x_f64, 7)),
    ("zeros_like(float32, shape=(4,))", lambda: nnp.zeros_like(x_f32, shape=(4,)),
     np.zeros(4, f32)),
]


@pytest.mark.parametrize("make,want", [c[1:] for c in CREATION], ids=[c[0] for c in CREATION])
def test_creation(make, want):
    got = make()
    if isinstance(want, tuple):
        assert tuple(got) == want
    else:
        assert_close(got, want, want.dtype)


@pytest.mark.parametrize("x", [x_f32, x_i32, x_b], ids=lambda x: x.dtype.name)
def test_creation_under_jit(x):
    """Creation functions inside a trace (and *_like of traced values) give the
    same dtypes and values as eagerly."""
    def f(a):
        return [nnp.zeros_like(a), nnp.ones_like(a), nnp.full_like(a, 2),
                nnp.zeros(a.shape), nnp.ones((2,) + a.shape, np.int32), nnp.full(a.shape, 0.5),
                nnp.arange(a.shape[-1]), nnp.eye(a.shape[-1]), nnp.linspace(0, 1, 3),
                nnp.add(nnp.zeros_like(a, dtype=np.float64), 1)]

    got = jit(f)(x)
    want = [np.zeros_like(x), np.ones_like(x), np.full_like(x, 2), np.zeros(x.shape, f32),
            np.ones((2,) + x.shape, i32), np.full(x.shape, 0.5, f32), np.arange(3),
            np.eye(3, dtype=f32), np.linspace(0, 1, 3, dtype=f32), np.ones(x.shape)]
    for k, (g, w) in enumerate(zip(got, want)):
        try:
            assert_close(g, w, w.dtype)
        except AssertionError as e:
            raise AssertionError(f"entry {k}: {e}") from None


@pytest.mark.parametrize("mode", MODES)
def test_shape_queries_and_broadcast_helpers(mode):
    x = np.zeros((2, 1, 3), np.float32)
    y = np.zeros((4, 1), np.int32)

    def f(a, c):
        assert (nnp.ndim(a), nnp.shape(a), nnp.size(a)) == (3, (2, 1, 3), 6)
        assert nnp.broadcast_shapes(nnp.shape(a), nnp.shape(c), ()) == (2, 4, 3)
        return nnp.broadcast_arrays(a, c, np.float64(2))

    got = jit(f)(x, y) if mode == "jit" else f(x, y)
    for g, w in zip(got, np.broadcast_arrays(x, y, np.float64(2))):
        assert_close(g, w, w.dtype)


def test_array_from_list_keeps_strong_float64():
    # Python floats are weak (default float32); float64 numpy values are not.
    assert nnp.array([1.0, 2.0]).dtype == np.float32
    assert nnp.array([np.float64(1.0), 2.0]).dtype == np.float64
    assert nnp.array([[np.float64(1.0)], [2.0]]).dtype == np.float64
    assert nnp.array([np.float32(1.0), 2.0]).dtype == np.float32


def test_a_float64_scalar_promoting_float32_warns_once_naming_the_line():
    import warnings
    x = np.ones(4, np.float32)

    def f(x):
        return x * (1.0 / np.sqrt(16.0))          # a numpy float64 scalar: x64 promotion

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = needle.jit(f)(x)
        needle.jit(lambda x: f(x) + 1)(x)            # the same line again: no second warning
    assert out.dtype == np.float64                     # JAX's x64 rule is kept
    hits = [m for m in w if issubclass(m.category, needle.Float64PromotionWarning)]
    assert len(hits) == 1 and "test_dtypes.py" in str(hits[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", needle.Float64PromotionWarning)
        assert needle.jit(lambda x: x * 0.25)(x).dtype == np.float32     # a Python float: weak
        assert needle.jit(lambda x: x * np.float32(0.25))(x).dtype == np.float32
