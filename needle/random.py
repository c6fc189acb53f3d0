"""The public package: `needle.random`, JAX's functional random numbers, bit
for bit, and a `Generator` stream on top of them.

Input: keys (raw uint32[2] arrays from `PRNGKey`, or typed keys from `key`),
shapes, dtypes, distribution parameters (arrays, scalars or tracers).
Output: arrays (or tracers): the same numbers JAX 0.10's `jax.random` gives
for the same key, with Threefry-2x32 in JAX's default "partitionable" mode.

Keys are values, never state: a function given the same key returns the same
numbers. `split` makes independent keys from one; `fold_in` derives a key
from a key and an integer. Draw each number from a key used once: pass a key
to one sampler, split it to draw again.

How the bits are made (JAX's `threefry_random_bits_partitionable`): element
i of a draw of `shape` is Threefry-2x32(key, counter=(hi, lo) of its flat
index i), its two output words xor-ed (32 bits) or concatenated (64 bits).
The block function is one elementwise primitive (threefry2x32,
ir/primitives/bits.py: JAX's, which kernels expand into uint32 adds, xors
and rotations) of an `iota` of counters, so under `jit` fusion puts it into
the kernel of its consumer: a dropout mask multiply is one kernel, and no
random array is made on the host or held in memory. Floats: uniform puts
23 (52) random bits into the mantissa of a float in [1, 2) and subtracts 1;
normal is sqrt(2) * erf_inv(u) of a uniform u in (-1, 1) (XLA's erf_inv
polynomial); randint, permutation (sorting by random keys), choice,
categorical (gumbel argmax) follow JAX's algorithms step by step.

Eagerly (no trace) every step runs its numpy implementation, except in a
large draw (EAGER_JIT_MIN_SIZE elements and more), which is compiled, as
JAX compiles its samplers; under `jit`, `grad` and `vmap` (a batch of keys)
a sampler is traced like any other function. A sampler's result is
differentiable in its float parameters where JAX's is (`normal(k) * sigma +
mu`, `truncated_normal`'s bounds, `uniform`'s minval / maxval), never in the
key (an integer array).

Defaults: float samplers draw float32 (needle's default float), `randint`
int64 (needle's default int; JAX with x64 draws the same numbers, JAX
without x64 draws int32: pass dtype=nnp.int32 to match it), `bits` uint32.
uniform's `u * (maxval - minval) + minval` rounds once, as XLA's: compiled,
the multiply-add is fused; eagerly it is computed in a wider float.

`Generator(seed)`: a key plus a counter, an explicit pytree; each draw
returns the advanced generator and the values (`g, x = g.normal((3,))`),
drawing from `fold_in(key, counter)`. `seed(n)` resets the global generator
(`default_generator()`), from which `next_key()` hands out keys for
initializers and data shuffling, outside traced functions.
"""
import math
import threading

import numpy as np

from . import numpy as nnp
from .autodiff import stop_gradient
from .ir import dtypes
from .ir.primitives import convert_element_type_p, erf_inv_p, iota_p, threefry2x32_p
from .lax_bits import bitcast_convert_type as _bitcast, shift_right_logical as _shift_right_logical
from .tracer.core import Tracer, current_trace
from .tracer.pytree import register_pytree_node

__all__ = ["PRNGKey", "key", "key_data", "wrap_key_data", "PRNGKeyArray", "split", "fold_in",
           "threefry_2x32", "bits", "uniform", "normal", "truncated_normal", "bernoulli",
           "randint", "choice", "permutation", "categorical", "gumbel", "exponential",
           "Generator", "seed", "default_generator", "next_key"]

_U32 = np.dtype(np.uint32)
_UINT = {8: np.dtype(np.uint8), 16: np.dtype(np.uint16), 32: _U32, 64: np.dtype(np.uint64)}


def _u32(v):
    return np.uint32(v)


def _traced(*xs):
    return any(isinstance(x, Tracer) for x in xs)


def _convert(x, dtype):
    dtype = np.dtype(dtype)
    if not _traced(x):
        return np.asarray(x).astype(dtype)
    if x.dtype == dtype:
        return x
    return convert_element_type_p.bind(x, new_dtype=dtype, weak_type=False)


# --- the block function ---------------------------------------------------------------

def _block(k0, k1, x0, x1, output):
    """The Threefry-2x32 block function of counter words (x0, x1) under key
    (k0, k1) (uint32, 0-d or of one shape), its output words combined as
    `output` says: "xor" (uint32) or "concat" (uint64, y0 << 32 | y1)."""
    return threefry2x32_p.bind(k0, k1, x0, x1, output=output)


def _words(y):
    """The two uint32 words of a "concat" result."""
    return _convert(_shift_right_logical(y, 32), _U32), _convert(y, _U32)


def _counters(shape):
    """The low words of the flat indices of `shape` (an iota: made in the
    kernel under a trace); the high words are 0 below 2**32 elements."""
    n = math.prod(shape)
    if n >= 2 ** 32:
        raise NotImplementedError(f"needle.random: {n} random values in one draw; at most "
                                  f"2**32 - 1 are supported")
    if not shape:
        return _u32(0)
    lo = iota_p.bind(dtype=_U32, shape=(n,), dimension=0)
    return lo if len(shape) == 1 else nnp.reshape(lo, shape)


def threefry_2x32(keypair, count):
    """JAX's `threefry_2x32`: the block function applied to an array of uint32
    counters, its first half as the first words and its second half as the
    second (an odd count padded with a 0); the result has `count`'s shape."""
    k0, k1 = (_convert(nnp.asarray(k), _U32) for k in (keypair[0], keypair[1]))
    count = nnp.asarray(count)
    if count.dtype != _U32:
        raise TypeError(f"threefry_2x32: count must be uint32, got {count.dtype}")
    shape = tuple(nnp.shape(count))
    flat = nnp.ravel(count)
    n = int(np.prod(shape, dtype=np.int64))
    if n % 2:
        flat = nnp.concatenate([flat, np.zeros(1, _U32)])
    half = (n + 1) // 2
    y0, y1 = _words(_block(k0, k1, flat[:half], flat[half:], "concat"))
    out = nnp.concatenate([y0, y1])
    return nnp.reshape(out[:n] if n % 2 else out, shape)


# --- keys ------------------------------------------------------------------------------

class _KeyDType:
    """The dtype of typed keys (`key<fry>`, as JAX prints it)."""
    name = "key<fry>"

    def __repr__(self):
        return self.name

    __str__ = __repr__


class PRNGKeyArray:
    """An array of typed keys (`needle.random.key`): shape `s`, backed by a
    uint32 array of shape `s + (2,)` (`key_data`). A pytree with that array
    as its one leaf, so it passes through `jit`, `grad` and `vmap` (mapping
    its leading key axes)."""
    __slots__ = ("_data",)
    dtype = _KeyDType()

    def __init__(self, data):
        self._data = data

    shape = property(lambda self: tuple(nnp.shape(self._data))[:-1])
    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a single key")
        return self.shape[0]

    def __getitem__(self, idx):
        idx = idx if isinstance(idx, tuple) else (idx,)
        if any(i is Ellipsis for i in idx):
            return PRNGKeyArray(self._data[idx + (slice(None),)])
        return PRNGKeyArray(self._data[idx + (Ellipsis,)])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return PRNGKeyArray(nnp.reshape(self._data, tuple(shape) + (2,)))

    def __repr__(self):
        data = self._data if _traced(self._data) else np.asarray(self._data)
        return f"PRNGKeyArray(shape={self.shape}, dtype={self.dtype}) overlaying:\n{data}"


register_pytree_node(PRNGKeyArray, lambda k: ((k._data,), None),
                     lambda _, children: PRNGKeyArray(children[0]))


def _seed_key(name, seed):
    """The raw key of an integer seed (JAX's threefry_seed): the seed's high
    32 bits (of a 64-bit seed; 0 otherwise) and its low 32 bits."""
    if isinstance(seed, PRNGKeyArray):
        raise TypeError(f"{name} accepts a scalar seed, but was given a PRNG key.")
    if nnp.ndim(seed) != 0:
        raise TypeError(f"{name} accepts a scalar seed, but was given an array of shape "
                        f"{tuple(nnp.shape(seed))} != (). Use needle.vmap for batching")
    if isinstance(seed, bool):
        raise TypeError(f"PRNG key seed must be an integer; got {seed!r}")
    # a Python int outside int64 raises OverflowError, as in JAX
    s = nnp.asarray(np.int64(seed) if isinstance(seed, int) else seed)
    if np.dtype(s.dtype).kind not in "iu":
        raise TypeError(f"PRNG key seed must be an integer; got {seed!r}")
    hi = _shift_right_logical(s, 32)        # 0 for a seed narrower than 64 bits
    return nnp.stack([_convert(hi, _U32), _convert(s, _U32)])


def PRNGKey(seed):  # noqa: N802 - JAX's name
    """A raw key, a uint32 array of shape (2,), from an integer seed (a Python
    int in int64's range, a numpy integer, or a traced integer)."""
    return _seed_key("PRNGKey", seed)


def key(seed):
    """A typed key (a `PRNGKeyArray` of shape ()) from an integer seed; its
    `key_data` is `PRNGKey(seed)`."""
    return PRNGKeyArray(_seed_key("key", seed))


def key_data(keys):
    """The uint32 data of keys (shape `keys.shape + (2,)`); a raw key array
    is returned as it is."""
    if isinstance(keys, PRNGKeyArray):
        return keys._data
    return _raw_data("key_data", keys)


def wrap_key_data(key_bits_array):
    """Typed keys from their uint32 data (trailing axis of size 2)."""
    return PRNGKeyArray(_raw_data("wrap_key_data", key_bits_array))


def _raw_data(name, data):
    data = nnp.asarray(data)
    shape = tuple(nnp.shape(data))
    if data.dtype != _U32 or not shape or shape[-1] != 2:
        raise TypeError(f"{name}: a threefry key is a uint32 array with a trailing axis of "
                        f"size 2, got {data.dtype} of shape {shape}")
    return data


def _key_words(name, k):
    """(k0, k1, typed) of one key, raw or typed; a batch of keys is an error."""
    typed = isinstance(k, PRNGKeyArray)
    data = k._data if typed else _raw_data(name, k)
    shape = tuple(nnp.shape(data))
    if shape != (2,):
        raise ValueError(f"{name} accepts a single key, but was given a key array of shape "
                         f"{shape[:-1] if typed else shape} != {() if typed else (2,)}. "
                         f"Use needle.vmap for batching.")
    return data[0], data[1], typed


def _keys_out(typed, y0, y1):
    data = nnp.stack([y0, y1], axis=-1)
    return PRNGKeyArray(data) if typed else data


def _split_words(k0, k1, shape):
    """The words of the keys `split` makes (JAX's foldlike split: the block
    function of the keys' flat indices)."""
    return _words(_block(k0, k1, _u32(0), _counters(shape), "concat"))


def split(key, num=2):
    """`num` new keys (an int, or a shape) from one, along new leading axes:
    raw keys of shape (num, 2), or typed keys of shape (num,)."""
    k0, k1, typed = _key_words("split", key)
    shape = tuple(num) if isinstance(num, (tuple, list)) else (int(num),)
    return _keys_out(typed, *_split_words(k0, k1, shape))


def fold_in(key, data):
    """A new key from a key and a 32-bit integer (a Python, numpy or traced
    integer, taken as uint32)."""
    k0, k1, typed = _key_words("fold_in", key)
    if nnp.ndim(data) != 0:
        raise TypeError(f"fold_in accepts a scalar, but was given an array of shape "
                        f"{tuple(nnp.shape(data))} != (). Use needle.vmap for batching.")
    d = np.asarray(data, _U32) if isinstance(data, int) else _convert(nnp.asarray(data), _U32)
    return _keys_out(typed, *_words(_block(k0, k1, _u32(0), d, "concat")))


def _subkeys(k0, k1, n):
    """`split(key, n)` as a list of (k0, k1) word pairs."""
    y0, y1 = _split_words(k0, k1, (n,))
    return [(y0[i], y1[i]) for i in range(n)]


# --- bits and uniform --------------------------------------------------------------------

def _shape(name, shape):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{name}: shape must be a sequence of integers, got {shape!r}") \
            from None
    if any(s < 0 for s in shape):
        raise ValueError(f"{name}: shape {shape} has a negative size")
    return shape


def _bits_of(k0, k1, shape, output):
    return _block(k0, k1, _u32(0), _counters(shape), output)


# Eager draws of this many elements or more are compiled (needle.jit, as JAX
# compiles its samplers): numpy would take ~100 passes over the array for
# the bits alone (2 s for 16M values, 0.03 s compiled). uniform, normal and
# bernoulli compile whole (initializers, dropout masks), the other samplers
# their bits. Integers and uniform floats are the same bits either way;
# normal's floats may differ in the last place or two (the kernels' log1p).
EAGER_JIT_MIN_SIZE = 1 << 18
_JITTED = {}


def _large_eager(shape):
    """A draw to compile: large, and not under a trace (device arrays, the
    only tracers outside one, compile for their device)."""
    return math.prod(shape) >= EAGER_JIT_MIN_SIZE and current_trace() is None


def _compiled(fn, *args, **static):
    """fn(*args, **static) compiled, its keyword arguments static (one jitted
    function per fn, kept for the process)."""
    if fn not in _JITTED:
        from .api import jit
        _JITTED[fn] = jit(fn, static_argnames=tuple(static))
    return _JITTED[fn](*args, **static)


def _random_bits(k0, k1, bit_width, shape):
    """JAX's partitionable random bits: element i is the block function of
    counter (0, i), its words concatenated (64 bits) or xor-ed (fewer)."""
    output = "concat" if bit_width == 64 else "xor"
    if _large_eager(shape):
        out = _compiled(_bits_of, k0, k1, shape=shape, output=output)
    else:
        out = _bits_of(k0, k1, shape, output)
    return out if bit_width >= 32 else _convert(out, _UINT[bit_width])


def bits(key, shape=(), dtype=None):
    """Uniform random bits: unsigned integers of `dtype` (default uint32)."""
    k0, k1, _ = _key_words("bits", key)
    dtype = np.dtype(np.uint32 if dtype is None else dtype)
    if dtype.kind != "u":
        raise ValueError(f"dtype argument to `bits` must be an unsigned int dtype, got {dtype}")
    return _random_bits(k0, k1, dtype.itemsize * 8, _shape("bits", shape))


def _float_dtype(name, dtype):
    dtype = dtypes.DEFAULT_FLOAT if dtype is None else dtypes.canonicalize(dtype, name)
    if dtype.kind != "f":
        raise ValueError(f"dtype argument to `{name}` must be a float dtype, got {dtype}")
    return dtype


def _check_shape(name, shape, *params):
    """The parameters (arrays, or shapes as tuples) broadcast to `shape`
    (JAX's rule for sampler shapes)."""
    got = nnp.broadcast_shapes(shape, *[p if isinstance(p, tuple) else tuple(nnp.shape(p))
                                        for p in params])
    if got != tuple(shape):
        raise ValueError(f"{name}: parameter shapes must be broadcast-compatible with the shape "
                         f"argument, and broadcast to it, but got {got} for shape {shape}")


def _multiply_add(a, b, c):
    """a * b + c. Compiled, the multiply-add is fused, rounding once (Numba
    and NVVM contract it, as XLA does); eagerly numpy rounds twice, so it is
    computed in a wider float (exact products of float32) and rounded once."""
    if _traced(a, b, c):
        return a * b + c
    if np.ndim(b) == 0 and np.ndim(c) == 0 and b == 1 and c == 0:
        return a                        # [0, 1): exact, and no wide copy of a big draw
    wide = np.float64 if a.dtype == np.float32 else np.longdouble
    return (a.astype(wide) * np.asarray(b, wide) + np.asarray(c, wide)).astype(a.dtype)


def _uniform(k0, k1, shape, dtype, minval, maxval):
    minval = nnp.asarray(minval, dtype)
    maxval = nnp.asarray(maxval, dtype)
    nbits, nmant = dtype.itemsize * 8, np.finfo(dtype).nmant
    u = _UINT[nbits]
    # random mantissa bits under the exponent of 1.0: a float in [1, 2), minus 1
    b = _random_bits(k0, k1, nbits, shape)
    b = nnp.bitwise_or(_shift_right_logical(b, nbits - nmant), np.array(1.0, dtype).view(u))
    floats = nnp.subtract(_bitcast(b, dtype), np.array(1.0, dtype))
    out = nnp.maximum(minval, _multiply_add(floats, maxval - minval, minval))
    _check_shape("uniform", shape, out)
    return out


def uniform(key, shape=(), dtype=None, minval=0.0, maxval=1.0):
    """Uniform floats in [minval, maxval) (float32 unless `dtype` says)."""
    k0, k1, _ = _key_words("uniform", key)
    shape, dtype = _shape("uniform", shape), _float_dtype("uniform", dtype)
    if _large_eager(shape):
        return _compiled(_uniform_jit, k0, k1, minval, maxval, shape=shape, dtype=dtype)
    return _uniform(k0, k1, shape, dtype, minval, maxval)


def _uniform_jit(k0, k1, minval, maxval, shape, dtype):
    return _uniform(k0, k1, shape, dtype, minval, maxval)


def _normal(k0, k1, shape, dtype):
    lo = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype))
    u = _uniform(k0, k1, shape, dtype, lo, np.array(1.0, dtype))
    return nnp.multiply(np.array(np.sqrt(2), dtype), erf_inv_p.bind(u))


def normal(key, shape=(), dtype=None):
    """Standard normal floats: sqrt(2) erf_inv(u), u uniform in (-1, 1)."""
    k0, k1, _ = _key_words("normal", key)
    shape, dtype = _shape("normal", shape), _float_dtype("normal", dtype)
    if _large_eager(shape):
        return _compiled(_normal_jit, k0, k1, shape=shape, dtype=dtype)
    return _normal(k0, k1, shape, dtype)


def _normal_jit(k0, k1, shape, dtype):
    return _normal(k0, k1, shape, dtype)


def _nextafter(x, up):
    """The next float after x toward +inf (up) or -inf: numpy's for
    concrete x; traced, one step of x's bits (0 steps to the smallest
    denormal of the direction's sign; NaN and the infinity of the direction
    stay)."""
    if not _traced(x):
        return np.nextafter(x, np.array(np.inf if up else -np.inf, x.dtype))
    it = _UINT[8 * x.dtype.itemsize]
    b = _bitcast(x, it)
    one = np.array(1, it)
    away = nnp.equal(nnp.less(x, 0), not up)          # the step grows |x|
    stepped = nnp.where(away, b + one, b - one)
    sign = 1 << (8 * x.dtype.itemsize - 1)
    tiny = _bitcast(np.array(1 if up else sign | 1, it), x.dtype)   # +-the least denormal
    out = nnp.where(nnp.equal(x, 0), tiny, _bitcast(stepped, x.dtype))
    end = np.array(np.inf if up else -np.inf, x.dtype)
    return nnp.where(nnp.isnan(x) | nnp.equal(x, end), x, out)


def truncated_normal(key, lower, upper, shape=None, dtype=None):
    """Normal floats truncated to the open interval (lower, upper), shaped as
    `shape` or the broadcast of the bounds."""
    k0, k1, _ = _key_words("truncated_normal", key)
    dtype = _float_dtype("truncated_normal", dtype)
    lower, upper = nnp.asarray(lower, dtype), nnp.asarray(upper, dtype)
    bounds = nnp.broadcast_shapes(nnp.shape(lower), nnp.shape(upper))
    shape = bounds if shape is None else _shape("truncated_normal", shape)
    _check_shape("truncated_normal", shape, lower, upper)
    sqrt2 = np.array(np.sqrt(2), dtype)
    a, b = nnp.erf(lower / sqrt2), nnp.erf(upper / sqrt2)
    out = nnp.multiply(sqrt2, erf_inv_p.bind(_uniform(k0, k1, shape, dtype, a, b)))
    # rounding (or drawing a itself) must not leave the open interval
    lo, hi = _nextafter(stop_gradient(lower), True), _nextafter(stop_gradient(upper), False)
    return nnp.clip(out, lo, hi)


def bernoulli(key, p=np.float32(0.5), shape=None):
    """Booleans, True with probability p (floats), shaped as `shape` or p."""
    k0, k1, _ = _key_words("bernoulli", key)
    p = nnp.asarray(p)
    if p.dtype.kind != "f":
        raise TypeError(f"bernoulli probability `p` must have a floating dtype, got {p.dtype}.")
    shape = tuple(nnp.shape(p)) if shape is None else _shape("bernoulli", shape)
    _check_shape("bernoulli", shape, p)
    if _large_eager(shape):
        return _compiled(_bernoulli, k0, k1, p, shape=shape)
    return _bernoulli(k0, k1, p, shape)


def _bernoulli(k0, k1, p, shape):
    return nnp.less(_uniform(k0, k1, shape, p.dtype, 0.0, 1.0), p)


# --- integers --------------------------------------------------------------------------

def _clip_convert(val, dtype):
    """val (an integer array) clipped into `dtype`'s range, then converted
    (JAX's _convert_and_clip_integer)."""
    vi, di = np.iinfo(val.dtype), np.iinfo(dtype)
    lo, hi = max(di.min, vi.min), min(di.max, vi.max)
    val = nnp.clip(val, np.array(lo, val.dtype), np.array(hi, val.dtype))
    return _convert(val, dtype)


def _rem(x, span):
    """x % span, with x % 0 = x (XLA's remainder: a span that wrapped to 0 is
    the whole range, and leaves x alone)."""
    zero = nnp.equal(span, 0)
    return nnp.where(zero, x, nnp.remainder(x, nnp.where(zero, np.ones((), span.dtype), span)))


def randint(key, shape, minval, maxval, dtype=None):
    """Uniform integers in [minval, maxval) of `dtype` (default int64). Bits
    twice the dtype's width are drawn and reduced mod the span, as JAX does
    (the bias of a span that is not a power of two is tiny)."""
    k0, k1, _ = _key_words("randint", key)
    dtype = dtypes.DEFAULT_INT if dtype is None else dtypes.canonicalize(dtype, "randint")
    if dtype.kind not in "iu":
        raise TypeError(f"randint only accepts integer dtypes, got {dtype}")
    shape = _shape("randint", shape)
    minval, maxval = nnp.asarray(minval), nnp.asarray(maxval)
    _check_shape("randint", shape, minval, maxval)
    if minval.dtype.kind not in "iu":
        minval = nnp.astype(minval, dtypes.DEFAULT_INT)
    if maxval.dtype.kind not in "iu":
        maxval = nnp.astype(maxval, dtypes.DEFAULT_INT)
    # randint(key, shape, 0, 256, uint8): a maxval past the dtype widens the span by one
    top = _clip_convert(np.array(np.iinfo(dtype).max, dtype), maxval.dtype)
    maxval_out_of_range = nnp.greater(maxval, top)
    minval, maxval = _clip_convert(minval, dtype), _clip_convert(maxval, dtype)
    nbits = dtype.itemsize * 8
    unsigned = _UINT[nbits]
    (a0, a1), (b0, b1) = _subkeys(k0, k1, 2)
    higher, lower = _random_bits(a0, a1, nbits, shape), _random_bits(b0, b1, nbits, shape)

    span = _convert(nnp.subtract(maxval, minval), unsigned)
    one = np.ones((), unsigned)
    span = nnp.where(nnp.less_equal(maxval, minval), one, span)    # maxval <= minval: minval
    span = nnp.where(maxval_out_of_range & nnp.greater(maxval, minval), span + one, span)
    # (hi * 2**nbits + lo) % span, with 2**nbits % span from (2**(nbits/2) % span)**2
    multiplier = _rem(np.array(2 ** (nbits // 2), unsigned), span)
    multiplier = _rem(nnp.multiply(multiplier, multiplier), span)
    offset = nnp.add(nnp.multiply(_rem(higher, span), multiplier), _rem(lower, span))
    return nnp.add(minval, _convert(_rem(offset, span), dtype))


def _sort_by(keys, x, axis):
    """x permuted along `axis` by the stable sort of `keys` (lax.sort_key_val)."""
    from .lax import sort_key_val
    return sort_key_val(keys, x, axis)[1]


def _shuffle(k0, k1, x, axis):
    # JAX's: sort by fresh random 32-bit keys, repeated until collisions are
    # negligible (3 log n / log 2**32 rounds: one round up to n = 1625)
    rounds = int(np.ceil(3 * np.log(max(1, math.prod(nnp.shape(x)))) / np.log(2 ** 32 - 1)))
    for _ in range(rounds):
        (k0, k1), (s0, s1) = _subkeys(k0, k1, 2)
        x = _sort_by(_random_bits(s0, s1, 32, tuple(nnp.shape(x))), x, axis)
    return x


def _arange(n):
    return iota_p.bind(dtype=dtypes.DEFAULT_INT, shape=(int(n),), dimension=0)


def permutation(key, x, axis=0, independent=False):
    """A random permutation of range(x) (an integer x) or of x along `axis`
    (its rows, unless `independent` shuffles each slice on its own)."""
    k0, k1, _ = _key_words("permutation", key)
    if nnp.ndim(x) == 0:
        if not (isinstance(x, (int, np.integer)) or np.dtype(nnp.asarray(x).dtype).kind in "iu"):
            raise TypeError("x must be an integer or at least 1-dimensional")
        if _traced(x):
            raise TypeError("permutation: the length x must be a concrete integer, not a "
                            "traced value (mark it static)")
        return _shuffle(k0, k1, _arange(int(x)), 0)
    x = nnp.asarray(x)
    axis = _axis(axis, nnp.ndim(x))
    if nnp.shape(x)[axis] == 0:
        return x
    if independent or nnp.ndim(x) == 1:
        return _shuffle(k0, k1, x, axis)
    ind = _shuffle(k0, k1, _arange(nnp.shape(x)[axis]), 0)
    return nnp.take(x, ind, axis=axis)


def _axis(axis, ndim):
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for an array of {ndim} dimensions")
    return axis % ndim


def choice(key, a, shape=(), replace=True, p=None, axis=0):
    """Samples from a's entries along `axis` (or from range(a)), with or
    without replacement, uniformly or with probabilities p."""
    k0, k1, _ = _key_words("choice", key)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"shape argument of choice must be a sequence, got {shape}")
    shape = _shape("choice", shape)
    arr = nnp.asarray(a)
    if nnp.ndim(arr) == 0:
        if _traced(arr):
            raise TypeError("choice: an integer `a` must be concrete (mark it static)")
        n_inputs = int(a)
    else:
        axis = _axis(axis, nnp.ndim(arr))
        n_inputs = nnp.shape(arr)[axis]
    n_draws = math.prod(shape)
    if n_draws == 0:
        return nnp.zeros(shape, dtype=arr.dtype)
    if n_inputs <= 0:
        raise ValueError("a must be greater than 0 unless no samples are taken")
    if not replace and n_draws > n_inputs:
        raise ValueError(f"Cannot take a larger sample (size {n_draws}) than population "
                         f"(size {n_inputs}) when 'replace=False'")
    if p is None:
        if replace:
            ind = randint(key, shape, 0, n_inputs)
            result = ind if nnp.ndim(arr) == 0 else nnp.take(arr, ind, axis=axis)
        else:
            perm = permutation(key, n_inputs if nnp.ndim(arr) == 0 else arr, axis)
            result = perm[(slice(None),) * (axis if nnp.ndim(arr) else 0) + (slice(n_draws),)]
    else:
        p_arr = nnp.asarray(p)
        if p_arr.dtype.kind != "f":
            p_arr = nnp.astype(p_arr, dtypes.DEFAULT_FLOAT)
        if tuple(nnp.shape(p_arr)) != (n_inputs,):
            raise ValueError(f"p must be None or a 1D vector with the same size as "
                             f"a.shape[axis]. p has shape {tuple(nnp.shape(p_arr))} and "
                             f"a.shape[axis] is {n_inputs}.")
        if replace:
            p_cuml = nnp.cumsum(p_arr)
            r = p_cuml[-1] * (1 - _uniform(k0, k1, shape, p_cuml.dtype, 0.0, 1.0))
            # searchsorted(p_cuml, r), side 'left': how many cumulative sums lie below r
            below = nnp.less(p_cuml, nnp.expand_dims(r, -1))
            ind = nnp.sum(nnp.astype(below, dtypes.DEFAULT_INT), axis=-1)
        else:
            # Gumbel top-k: the n_draws largest log p + gumbel noise, without repeats
            g = -_gumbel(k0, k1, (n_inputs,), p_arr.dtype) - nnp.log(p_arr)
            ind = nnp.argsort(g)[:n_draws]
        result = ind if nnp.ndim(arr) == 0 else nnp.take(arr, ind, axis=axis)
    out_shape = shape if nnp.ndim(arr) == 0 else \
        tuple(nnp.shape(arr)[:axis]) + shape + tuple(nnp.shape(arr)[axis + 1:])
    return nnp.reshape(result, out_shape)


# --- distributions built on uniform ---------------------------------------------------------

def _gumbel(k0, k1, shape, dtype):
    u = _uniform(k0, k1, shape, dtype, np.finfo(dtype).tiny, 1.0)
    return -nnp.log(-nnp.log(u))


def gumbel(key, shape=(), dtype=None):
    """Gumbel floats: -log(-log(u)), u uniform in [tiny, 1)."""
    k0, k1, _ = _key_words("gumbel", key)
    return _gumbel(k0, k1, _shape("gumbel", shape), _float_dtype("gumbel", dtype))


def exponential(key, shape=(), dtype=None):
    """Exponential floats (rate 1): -log1p(-u), u uniform in [0, 1)."""
    k0, k1, _ = _key_words("exponential", key)
    u = _uniform(k0, k1, _shape("exponential", shape), _float_dtype("exponential", dtype),
                 0.0, 1.0)
    return nnp.negative(nnp.log1p(nnp.negative(u)))


def categorical(key, logits, axis=-1, shape=None):
    """Samples of the categorical distributions softmax(logits, axis): the
    argmax of logits plus Gumbel noise. The result's shape is `shape`, or
    logits' shape without `axis`."""
    k0, k1, _ = _key_words("categorical", key)
    logits = nnp.asarray(logits)
    nd = nnp.ndim(logits)
    axis = _axis(axis, nd) - nd                     # negative, as JAX counts it
    lshape = tuple(nnp.shape(logits))
    batch_shape = lshape[:nd + axis] + lshape[nd + axis + 1:]
    shape = batch_shape if shape is None else _shape("categorical", shape)
    _check_shape("categorical", shape, batch_shape)
    prefix = shape[:len(shape) - len(batch_shape)]
    noise_shape = list(shape[len(shape) - len(batch_shape):])
    noise_shape.insert(axis % nd, lshape[axis])
    noise = _gumbel(k0, k1, (*prefix, *noise_shape), _float_dtype("categorical",
                                                                   logits.dtype))
    expanded = nnp.reshape(logits, (1,) * len(prefix) + lshape)
    return nnp.argmax(noise + expanded, axis=axis)


# --- Generator: a stream of keys ----------------------------------------------------------------

class Generator:
    """A stream of random numbers: a raw key and a uint32 counter, both
    arrays, so a Generator is a pytree that passes through `jit` (a new
    counter value is a new argument, not a new trace). Every draw uses the
    key `fold_in(key, counter)` and returns the advanced generator with the
    values, JAX-style:

        g = needle.random.Generator(0)
        g, x = g.normal((3, 4))
        g, idx = g.permutation(60000)

    `next_key()` returns (advanced generator, key) for the functions of
    needle.random that take a key."""
    __slots__ = ("key", "counter")

    def __init__(self, seed=0, *, key=None, counter=0):
        self.key = PRNGKey(seed) if key is None else key_data(key)
        self.counter = counter if _traced(counter) else np.asarray(counter, _U32)

    def next_key(self):
        """(the generator advanced by one, a fresh key)."""
        return (Generator(key=self.key, counter=self.counter + _u32(1)),
                fold_in(self.key, self.counter))

    def __repr__(self):
        show = (lambda v: v) if _traced(self.key, self.counter) else np.asarray
        return f"Generator(key={show(self.key)}, counter={show(self.counter)})"


def _method(fn):
    def draw(self, *args, **kwargs):
        g, k = self.next_key()
        return g, fn(k, *args, **kwargs)
    draw.__name__ = draw.__qualname__ = fn.__name__
    draw.__doc__ = (f"(advanced generator, needle.random.{fn.__name__}(next key, ...)): "
                    f"{fn.__doc__.splitlines()[0]}")
    return draw


for _fn in (bits, uniform, normal, truncated_normal, bernoulli, randint, choice, permutation,
            categorical, gumbel, exponential):
    setattr(Generator, _fn.__name__, _method(_fn))
del _fn

def _unflatten_generator(_, children):
    g = object.__new__(Generator)       # as given: transforms rebuild it from any leaves
    g.key, g.counter = children
    return g


register_pytree_node(Generator, lambda g: ((g.key, g.counter), None), _unflatten_generator)

_GLOBAL = {"generator": Generator(0)}
_LOCK = threading.Lock()


def seed(n):
    """Reset the global generator to Generator(n) (initializers and data
    shuffling draw from it through `next_key()`)."""
    g = Generator(n)
    with _LOCK:
        _GLOBAL["generator"] = g


def default_generator():
    """The global Generator (Generator(0) until `seed` is called)."""
    return _GLOBAL["generator"]


def next_key():
    """A fresh key from the global generator, which advances. Not inside a
    traced function: the key would be a constant of the compiled program,
    the same at every call; pass a key (or a Generator) in instead."""
    if current_trace() is not None:
        raise RuntimeError("needle.random.next_key() advances the global generator, which a "
                           "function traced by jit / grad / vmap cannot do (its key would be "
                           "a constant, the same at every call): draw the key outside and "
                           "pass it in, or pass a Generator")
    with _LOCK:
        g, k = _GLOBAL["generator"].next_key()
        _GLOBAL["generator"] = g
    return k
