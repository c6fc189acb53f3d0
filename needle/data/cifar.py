"""The public package `needle.data`: CIFAR-10 in its "python version"
batches (`CIFAR10Dataset`).

Input: the cifar-10-batches-py folder: data_batch_1 ... data_batch_5
(train) and test_batch, each a pickled dict with b"data", a uint8 array
(N, 3072) of rows R..G..B.. of 32 x 32 pixels, and b"labels", a list of N
ints.
Output: a Dataset whose item i is (image, label): the image float32 in
[0, 1] (bytes / 255), shape (3, 32, 32) (C x H x W, the course's); the
label a uint8. Transforms (the course's, H x W x C) see the image as
(32, 32, 3) and their result is put back to (3, 32, 32).

The pickles are read with an unpickler that builds only numpy arrays and
Python containers: a file that asks for any other class or function is
refused instead of run.
"""
import os
import pickle

import numpy as np

from .dataset import Dataset, is_batch_index

__all__ = ["CIFAR10Dataset"]

_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
            ("copyreg", "_reconstructor"), ("builtins", "object"),
            ("_codecs", "encode")}      # how protocol 2 writes bytes from Python 3


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"CIFAR10Dataset: refusing to load {module}.{name} "
                                         f"from a data batch (only numpy arrays are allowed)")
        return super().find_class(module, name)


def _load_batch(path):
    with open(path, "rb") as f:
        d = _ArrayUnpickler(f, encoding="bytes").load()
    if not isinstance(d, dict):
        raise ValueError(f"CIFAR10Dataset: {path} holds a {type(d).__name__}, not a dict")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise ValueError(f"CIFAR10Dataset: {path} has keys {sorted(d)}; expected 'data' and "
                         f"'labels'")
    data = np.asarray(d["data"], dtype=np.uint8)
    labels = np.asarray(d["labels"])
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"CIFAR10Dataset: {path} has data of shape {data.shape} and "
                         f"{len(labels)} labels; expected (N, 3072) and N")
    return data, labels


class CIFAR10Dataset(Dataset):
    """CIFAR-10 (see the module docstring). `train=True` reads data_batch_1
    to data_batch_5, else test_batch. `p` is the course's signature's
    argument, kept as `self.p` and otherwise unused (as in the course).
    `X` (N, 3, 32, 32) float32 and `y` (N,) uint8 hold the whole split."""
    batched_getitem = True

    def __init__(self, base_folder, train, p=0.5, transforms=None):
        super().__init__(transforms)
        self.p = p
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        missing = [n for n in names if not os.path.exists(os.path.join(base_folder, n))]
        if missing:
            raise FileNotFoundError(f"CIFAR10Dataset: {base_folder} has no {', '.join(missing)}"
                                    f" (the cifar-10-batches-py folder)")
        parts = [_load_batch(os.path.join(base_folder, n)) for n in names]
        data = np.concatenate([d for d, _ in parts])
        self.X = (data.astype(np.float32) / np.float32(255.0)).reshape(-1, 3, 32, 32)
        self.y = np.concatenate([lab for _, lab in parts]).astype(np.uint8)

    def __len__(self):
        return len(self.X)

    def _transform(self, img):
        return np.ascontiguousarray(
            self.apply_transforms(img.transpose(1, 2, 0)).transpose(2, 0, 1))

    def __getitem__(self, index):
        x = self.X[index]
        if self.transforms is not None:
            if not is_batch_index(index):
                x = self._transform(x)
            elif len(x):
                x = np.stack([self._transform(r) for r in x])
        return x, self.y[index]
