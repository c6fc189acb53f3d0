"""needle.init (the course's initializers): every function the course has,
with its signature plus device / dtype / requires_grad / rng, returning
Tensors; the statistics of large draws (bounds, mean, standard deviation,
and the mass within one standard deviation) against the course's formulas;
reproducibility from needle.random.seed, keys and GeneratorCells."""
import inspect

import numpy as np
import pytest

import needle
import needle.nn as nn
from needle import Tensor, init

N = 250_000                  # draws per statistic: 5 standard errors below 1%


@pytest.fixture(autouse=True)
def _seed():
    needle.random.seed(0)


def _check_moments(a, mean, std, within_one_std=None):
    """mean and std of the draws within 5 standard errors of the formula's;
    for a normal also the share within one std (0.6827), for a uniform the
    share of the symmetric interval's mass (0.5774)."""
    a = np.asarray(a, np.float64).ravel()
    n = a.size
    assert abs(a.mean() - mean) < 5 * std / np.sqrt(n), (a.mean(), mean)
    assert abs(a.std() / std - 1) < 5 / np.sqrt(n) * 1.5, (a.std(), std)
    if within_one_std is not None:
        share = np.mean(np.abs(a - mean) < std)
        assert abs(share - within_one_std) < 5 * np.sqrt(0.25 / n), share


# --- the course's signatures --------------------------------------------------------

COURSE = {   # name: the course's parameters (in order) before **kwargs / our additions
    "rand": ["shape", "low", "high", "device", "dtype", "requires_grad"],
    "randn": ["shape", "mean", "std", "device", "dtype", "requires_grad"],
    "constant": ["shape", "c", "device", "dtype", "requires_grad"],
    "ones": ["shape", "device", "dtype", "requires_grad"],
    "zeros": ["shape", "device", "dtype", "requires_grad"],
    "randb": ["shape", "p", "device", "dtype", "requires_grad"],
    "one_hot": ["n", "i", "device", "dtype", "requires_grad"],
    "zeros_like": ["array", "device", "requires_grad"],
    "ones_like": ["array", "device", "requires_grad"],
    "xavier_uniform": ["fan_in", "fan_out", "gain", "kwargs"],
    "xavier_normal": ["fan_in", "fan_out", "gain", "kwargs"],
    "kaiming_uniform": ["fan_in", "fan_out", "shape", "nonlinearity", "kwargs"],
    "kaiming_normal": ["fan_in", "fan_out", "shape", "nonlinearity", "kwargs"],
}


@pytest.mark.parametrize("name", sorted(COURSE))
def test_every_course_initializer_has_its_signature_and_returns_a_tensor(name):
    fn = getattr(init, name)
    params = list(inspect.signature(fn).parameters)
    assert params[:len(COURSE[name])] == COURSE[name], params
    if name.endswith("_like"):
        out = fn(Tensor(np.zeros((2, 3), np.float64), dtype="float64"), requires_grad=True)
        assert out.dtype == np.float64 and out.requires_grad
    elif name == "one_hot":
        out = fn(4, np.array([1, 3]), dtype="float64", requires_grad=True)
        assert out.dtype == np.float64
    elif name.startswith(("xavier", "kaiming")):
        out = fn(3, 5, dtype="float64", requires_grad=True, device="cpu")
        assert out.shape == (3, 5) and out.dtype == np.float64
    else:
        out = fn(2, 3, dtype="float64", requires_grad=True, device="cpu")
        assert out.shape == (2, 3) and out.dtype == np.float64
    assert isinstance(out, Tensor) and out.requires_grad and out.device == "cpu"
    default = fn(4, np.array([0])) if name == "one_hot" else \
        fn(Tensor(np.zeros(2, np.float32))) if name.endswith("_like") else fn(3, 4)
    assert not default.requires_grad                 # the course's default
    assert default.dtype == (np.bool_ if name == "randb" else np.float32)


# --- statistics against the course's formulas ----------------------------------------------

def test_uniform_and_normal():
    r = init.rand(N, low=-2.0, high=3.0).numpy()
    assert r.min() >= -2.0 and r.max() < 3.0 and r.dtype == np.float32
    _check_moments(r, 0.5, 5 / np.sqrt(12), within_one_std=1 / np.sqrt(3))
    n = init.randn(N, mean=1.5, std=0.5).numpy()
    _check_moments(n, 1.5, 0.5, within_one_std=0.682689)
    b = init.randb(N, p=0.3).numpy()
    assert b.dtype == np.bool_ and abs(b.mean() - 0.3) < 5 * np.sqrt(0.21 / N)
    np.testing.assert_array_equal(init.constant(2, 3, c=2.5).numpy(), np.full((2, 3), 2.5))
    np.testing.assert_array_equal(init.ones(2, 2).numpy() + init.zeros(2, 2).numpy(),
                                  np.ones((2, 2)))


@pytest.mark.parametrize("fan_in,fan_out,gain", [(300, 500, 1.0), (64, 16, 2.0)])
def test_xavier(fan_in, fan_out, gain):
    reps = N // (fan_in * fan_out) + 1
    a = gain * np.sqrt(6 / (fan_in + fan_out))
    u = np.stack([init.xavier_uniform(fan_in, fan_out, gain=gain).numpy() for _ in range(reps)])
    assert u.shape[1:] == (fan_in, fan_out) and np.abs(u).max() <= a
    _check_moments(u, 0.0, a / np.sqrt(3), within_one_std=1 / np.sqrt(3))
    std = gain * np.sqrt(2 / (fan_in + fan_out))
    n = np.stack([init.xavier_normal(fan_in, fan_out, gain=gain).numpy() for _ in range(reps)])
    _check_moments(n, 0.0, std, within_one_std=0.682689)


@pytest.mark.parametrize("fan_in,fan_out,shape", [(400, 600, None),
                                                  (3 * 3 * 32, 3 * 3 * 64, (3, 3, 32, 64))])
def test_kaiming(fan_in, fan_out, shape):
    want = (fan_in, fan_out) if shape is None else shape
    reps = N // int(np.prod(want)) + 1
    bound = np.sqrt(2) * np.sqrt(3 / fan_in)        # gain sqrt(2) for relu, as the course
    u = np.stack([init.kaiming_uniform(fan_in, fan_out, shape=shape).numpy()
                  for _ in range(reps)])
    assert u.shape[1:] == want and np.abs(u).max() <= bound
    assert np.abs(u).max() > 0.999 * bound
    _check_moments(u, 0.0, bound / np.sqrt(3), within_one_std=1 / np.sqrt(3))
    n = np.stack([init.kaiming_normal(fan_in, fan_out, shape=shape).numpy()
                  for _ in range(reps)])
    _check_moments(n, 0.0, np.sqrt(2) / np.sqrt(fan_in), within_one_std=0.682689)
    with pytest.raises(ValueError, match="nonlinearity='relu'"):
        init.kaiming_uniform(3, 4, nonlinearity="tanh")


def test_one_hot_and_likes():
    np.testing.assert_array_equal(init.one_hot(4, Tensor(np.array([3, 0, 3]))).numpy(),
                                  np.eye(4)[[3, 0, 3]])
    t = Tensor(np.ones((2, 5), np.float64), dtype="float64")
    z, o = init.zeros_like(t), init.ones_like(t)
    assert z.shape == o.shape == (2, 5) and z.dtype == o.dtype == np.float64
    assert z.numpy().sum() == 0 and o.numpy().sum() == 10


# --- where the randomness comes from ---------------------------------------------------------

def test_seed_key_and_generator_cell_reproduce():
    needle.random.seed(7)
    a = init.randn(6).numpy()
    b = init.randn(6).numpy()
    assert not np.array_equal(a, b)                  # the global generator advances
    needle.random.seed(7)
    np.testing.assert_array_equal(init.randn(6).numpy(), a)
    key = needle.random.PRNGKey(3)
    np.testing.assert_array_equal(init.rand(5, rng=key).numpy(), init.rand(5, rng=key).numpy())
    np.testing.assert_array_equal(init.rand(5, rng=key).numpy(),
                                  np.asarray(needle.random.uniform(key, (5,))))
    g1, g2 = nn.GeneratorCell(11), nn.GeneratorCell(11)
    x1, x2 = init.kaiming_uniform(4, 4, rng=g1).numpy(), init.kaiming_uniform(4, 4, rng=g1)
    np.testing.assert_array_equal(init.kaiming_uniform(4, 4, rng=g2).numpy(), x1)
    assert not np.array_equal(x1, x2.numpy())        # the cell's counter advanced
    with pytest.raises(TypeError, match="rng= takes a key"):
        init.rand(3, rng=needle.random.Generator(1))
