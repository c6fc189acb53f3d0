"""The public package `needle.data`: the course's image transforms
(`RandomFlipHorizontal`, `RandomCrop`) and where their randomness comes
from (`current_rng`).

Input: one sample's image, an H x W x C numpy array (the course's layout).
Output: an array of the same shape and dtype.

Randomness, reproducible and independent of worker processes: a transform
given no `rng` draws from `current_rng()`. Inside a DataLoader that is a
numpy Generator seeded from (the loader's seed, the epoch, the batch
index), made for the batch being loaded in this thread or worker, so a
batch gets the same flips and crops whichever worker loads it, and
`needle.random.seed(n)` before making the loader reproduces a run. Outside
a DataLoader (`dataset[i]` by hand) each call seeds a fresh Generator from
`needle.random.next_key()` (the global generator). `rng=` (a numpy
Generator or an int seed) gives a transform its own stream instead.
"""
import threading
from contextlib import contextmanager

import numpy as np

__all__ = ["Transform", "RandomFlipHorizontal", "RandomCrop", "current_rng", "batch_random"]


class _BatchRandom(threading.local):
    def __init__(self):
        self.entropy = None         # (seed, epoch, batch) while a loader loads a batch
        self.rng = None


_BATCH = _BatchRandom()


def key_entropy(key):
    """The two words of a needle.random key as Python ints (a numpy seed)."""
    from .. import random as nrandom
    return tuple(int(w) for w in np.asarray(nrandom.key_data(key), np.uint32).reshape(-1))


@contextmanager
def batch_random(entropy):
    """While loading one batch: `current_rng()` in this thread is a numpy
    Generator seeded from `entropy` (a tuple of non-negative ints), made at
    its first use."""
    saved = _BATCH.entropy, _BATCH.rng
    _BATCH.entropy, _BATCH.rng = tuple(entropy), None
    try:
        yield
    finally:
        _BATCH.entropy, _BATCH.rng = saved


def current_rng():
    """The numpy Generator a transform without its own `rng` draws from: the
    batch's inside a DataLoader, else one seeded from needle.random's
    global generator (see the module docstring)."""
    if _BATCH.entropy is not None:
        if _BATCH.rng is None:
            _BATCH.rng = np.random.default_rng(_BATCH.entropy)
        return _BATCH.rng
    from .. import random as nrandom
    return np.random.default_rng(key_entropy(nrandom.next_key()))


def _as_rng(name, rng):
    if rng is None or isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"{name}: rng must be None, a numpy Generator or an int seed, "
                    f"got {type(rng).__name__}")


def _check_hwc(name, img):
    img = np.asarray(img)
    if img.ndim != 3:
        raise ValueError(f"{name}: expects one H x W x C image, got shape {img.shape}")
    return img


class Transform:
    """Base of the transforms: `__call__(x)` returns the transformed sample."""
    rng = None

    def _rng(self):
        return self.rng if self.rng is not None else current_rng()

    def __call__(self, x):
        raise NotImplementedError(f"{type(self).__name__}.__call__")


class RandomFlipHorizontal(Transform):
    """Flip an H x W x C image left to right with probability `p` (the
    course's: one uniform draw `< p` per call)."""

    def __init__(self, p=0.5, rng=None):
        self.p = p
        self.rng = _as_rng("RandomFlipHorizontal", rng)

    def __call__(self, img):
        img = _check_hwc("RandomFlipHorizontal", img)
        if self._rng().random() < self.p:
            return img[:, ::-1, :]
        return img

    def __repr__(self):
        return f"RandomFlipHorizontal(p={self.p})"


class RandomCrop(Transform):
    """Zero-pad an H x W x C image by `padding` on each side of H and W, then
    crop H x W shifted by (shift_x, shift_y), each drawn uniformly from
    [-padding, padding] (the course's: shift_x moves along H, shift_y along
    W; the result is `padded[p + shift_x : p + shift_x + H, p + shift_y : p +
    shift_y + W]`)."""

    def __init__(self, padding=3, rng=None):
        if padding < 0:
            raise ValueError(f"RandomCrop: padding must be >= 0, got {padding}")
        self.padding = int(padding)
        self.rng = _as_rng("RandomCrop", rng)

    def __call__(self, img):
        img = _check_hwc("RandomCrop", img)
        p = self.padding
        shift_x, shift_y = self._rng().integers(-p, p + 1, size=2)
        h, w, _ = img.shape
        padded = np.pad(img, ((p, p), (p, p), (0, 0)))
        return padded[p + shift_x:p + shift_x + h, p + shift_y:p + shift_y + w, :]

    def __repr__(self):
        return f"RandomCrop(padding={self.padding})"
