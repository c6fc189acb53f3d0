"""The public package `needle.data`: data sets that need no download:
scikit-learn's 8 x 8 digits (`load_digits`) and a character corpus made
of Python's standard-library sources (`load_stdlib_text`).

Input: a split name and size limits. Output: Datasets (digits: an
NDArrayDataset of (image, label)) or a `CharCorpus` (text, ids, a fixed
vocabulary).
"""
import glob
import os
import sysconfig

import numpy as np

from .dataset import NDArrayDataset

__all__ = ["load_digits", "load_stdlib_text", "CharCorpus"]

_SPLITS = ("train", "test", "all")


def _splits(name, split, allowed):
    names = (split,) if isinstance(split, str) else tuple(split)
    for s in names:
        if s not in allowed:
            raise ValueError(f"{name}: split must be one of {allowed} (or a tuple of them), "
                             f"got {s!r}")
    return names


def load_digits(split="train", *, test_fraction=0.2, seed=0, standardize=True, flatten=True,
                limit=None, transforms=None):
    """scikit-learn's digits (1797 8 x 8 images, 10 classes) as
    NDArrayDataset(s) of (image float32, label int32).

    `split`: "train", "test", "all", or a tuple of them (then a tuple of
    datasets). The split is fixed by `seed`: a permutation, its first
    round(n * test_fraction) samples the test set. `standardize`: each
    pixel minus the training set's mean, divided by its std (+ 1e-3: border
    pixels are always 0); else pixels / 16, in [0, 1]. `flatten`: images
    (64,), else (8, 8, 1) (H x W x C, for the image transforms). `limit`:
    only the first `limit` samples (before splitting). `transforms` go to
    every returned dataset. Needs scikit-learn (`pip install scikit-learn`,
    or needle's "examples" extra)."""
    names = _splits("load_digits", split, _SPLITS)
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:
        raise ImportError("needle.data.load_digits needs scikit-learn: pip install "
                          "scikit-learn (or needle's extra: pip install -e \".[examples]\")") \
            from e
    digits = sk_load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int32)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    index = {"test": perm[:n_test], "train": perm[n_test:], "all": np.arange(len(x))}
    if standardize:
        train = x[index["train"]]
        mean, std = train.mean(axis=0), train.std(axis=0) + np.float32(1e-3)
        x = ((x - mean) / std).astype(np.float32)
    else:
        x = x / np.float32(16.0)
    if not flatten:
        x = x.reshape(-1, 8, 8, 1)
    out = tuple(NDArrayDataset(x[index[s]], y[index[s]], transforms=transforms) for s in names)
    return out[0] if isinstance(split, str) else out


# --- a character corpus ---------------------------------------------------------------------

VOCAB = "\t\n" + "".join(chr(c) for c in range(32, 127))     # 97 symbols
_UNKNOWN = VOCAB.index("?")
_TABLE = np.full(256, _UNKNOWN, np.int32)
_TABLE[[ord(c) for c in VOCAB]] = np.arange(len(VOCAB), dtype=np.int32)
_VOCAB_BYTES = np.frombuffer(VOCAB.encode("ascii"), dtype=np.uint8)


class CharCorpus:
    """A text over the fixed vocabulary `VOCAB` (tab, newline and printable
    ASCII, 97 symbols; any other character is read as '?'): `text`, `ids`
    (int32 array, `VOCAB` indices), `files` (the source files read),
    `encode(text)`, `decode(ids)`, `len()` (characters)."""
    vocab = VOCAB

    def __init__(self, text, files=()):
        self.ids = self.encode(text)
        self.text = self.decode(self.ids)
        self.files = list(files)

    @staticmethod
    def encode(text):
        raw = np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8)
        return _TABLE[raw]

    @staticmethod
    def decode(ids):
        return _VOCAB_BYTES[np.asarray(ids)].tobytes().decode("ascii")

    def __len__(self):
        return len(self.ids)

    def __repr__(self):
        return f"CharCorpus({len(self)} characters from {len(self.files)} files)"


def stdlib_files():
    """The corpus's file list: the top-level *.py files of this Python's
    standard library, sorted by name (deterministic for a Python version)."""
    return sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))


def load_stdlib_text(split="train", max_bytes=1 << 20):
    """A CharCorpus of Python's standard-library sources (no download).

    The split is fixed by file: of `stdlib_files()`, every tenth (indices
    9, 19, ...) is validation ("valid"), the rest training ("train"). Files
    are read in order and concatenated, the text cut at `max_bytes`
    characters (None: everything, about 4 MB of training text). `split` may
    be a tuple of names (then a tuple of corpora)."""
    names = _splits("load_stdlib_text", split, ("train", "valid"))
    files = stdlib_files()
    if not files:
        raise FileNotFoundError(f"load_stdlib_text: no *.py files in "
                                f"{sysconfig.get_paths()['stdlib']}")
    out = []
    for s in names:
        chosen = [f for k, f in enumerate(files) if (k % 10 == 9) == (s == "valid")]
        parts, used, size = [], [], 0
        for f in chosen:
            if max_bytes is not None and size >= max_bytes:
                break
            with open(f, encoding="utf-8", errors="replace") as fh:
                t = fh.read()
            parts.append(t)
            used.append(f)
            size += len(t)
        text = "".join(parts)
        out.append(CharCorpus(text if max_bytes is None else text[:max_bytes], used))
    return out[0] if isinstance(split, str) else tuple(out)
