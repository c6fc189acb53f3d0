"""Test helper: the pytree each rank contributes to the collectives of
tests/distributed/collectives.py, rebuilt by tests/test_distributed.py for
its numpy reference. Input: a rank. Output: a dict of arrays of mixed dtypes
(float32, float64, float16, int32, int64, an empty array)."""
import numpy as np


def inputs(rank):
    rng = np.random.default_rng(100 + rank)
    return {"w": rng.standard_normal((7, 5)).astype(np.float32),
            "b": rng.standard_normal(3),                                   # float64
            "h": rng.standard_normal(9).astype(np.float16),
            "n": [rng.integers(-50, 50, (4,)).astype(np.int32),
                  np.int64(rng.integers(0, 1000))],
            "z": np.zeros((0, 2), np.float32)}


def floats(t):
    """The floating leaves of inputs(rank) (what op="mean" takes)."""
    return {"w": t["w"], "b": t["b"], "h": t["h"], "z": t["z"]}
