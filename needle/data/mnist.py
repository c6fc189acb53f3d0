"""The public package `needle.data`: MNIST in its original idx files
(`MNISTDataset`, `read_idx`).

Input: an idx image file and an idx label file (train-images-idx3-ubyte,
train-labels-idx1-ubyte, ...), gzip-compressed or not (told apart by their
first bytes, not their names).
Output: a Dataset whose item i is (image, label): the image float32 in
[0, 1] (the bytes divided by 255, the course's scaling), shape
(rows, cols, 1) = (28, 28, 1), H x W x C as the transforms take it; the
label a uint8.

The idx format: a 4-byte magic number (two zero bytes, a type code, the
number of dimensions), each dimension as a big-endian int32, then the
data, big-endian, row-major.
"""
import gzip
import struct

import numpy as np

from .dataset import Dataset, transform_rows

__all__ = ["MNISTDataset", "read_idx"]

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path):
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        return f.read()


def read_idx(path):
    """The array stored in an idx file (gzip or not), in native byte order."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"read_idx: {path} is not an idx file (magic bytes {raw[:4]!r})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"read_idx: {path} ends inside its header ({len(raw)} bytes, "
                         f"{ndim} dimensions)")
    shape = struct.unpack(f">{ndim}i", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    start = 4 + 4 * ndim
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - start != want:
        raise ValueError(f"read_idx: {path} has {len(raw) - start} data bytes, its header "
                         f"(shape {shape}, {dtype.str}) says {want}")
    data = np.frombuffer(raw, dtype=dtype, offset=start).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


class MNISTDataset(Dataset):
    """MNIST (or any idx image / label pair): see the module docstring.
    `images` (N, rows, cols, 1) float32 and `labels` (N,) uint8 hold the
    whole set; an index array returns the stacked batch."""
    batched_getitem = True

    def __init__(self, image_filename, label_filename, transforms=None):
        super().__init__(transforms)
        images = read_idx(image_filename)
        labels = read_idx(label_filename)
        if images.ndim != 3:
            raise ValueError(f"MNISTDataset: {image_filename} holds an array of shape "
                             f"{images.shape}; images are (N, rows, cols)")
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"MNISTDataset: {label_filename} holds labels of shape "
                             f"{labels.shape} for {len(images)} images")
        self.images = (images.astype(np.float32) / np.float32(255.0))[..., None]
        self.labels = labels.astype(np.uint8)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return transform_rows(self, self.images[index], index), self.labels[index]
