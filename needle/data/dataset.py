"""The public package `needle.data`: the course's `Dataset` base class and
`NDArrayDataset`.

Input: whatever a subclass reads (arrays here; files in mnist.py, cifar.py).
Output: items by index: `dataset[i]` is one sample (a tuple of numpy
arrays or scalars), `len(dataset)` the number of samples. The DataLoader
(dataloader.py) batches them into Tensors.

Batched indexing: a dataset whose class sets `batched_getitem = True`
also accepts an integer index array, `dataset[np.array([3, 1, 4])]`, and
returns the batch as a tuple of stacked arrays, equal to stacking the
items one by one (transforms still run per item). The DataLoader uses it
when the default collation is in effect: one fancy index instead of a
Python loop per sample.
"""
import numpy as np

__all__ = ["Dataset", "NDArrayDataset"]


class Dataset:
    """An abstract dataset (the course's): subclasses define `__getitem__`
    and `__len__`, and call `apply_transforms(x)` on each sample's input.

    `transforms`: a list of callables applied in order (each takes and
    returns one sample's array; the image transforms take H x W x C), or
    None."""
    batched_getitem = False

    def __init__(self, transforms=None):
        self.transforms = transforms

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__}.__getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__}.__len__")

    def apply_transforms(self, x):
        if self.transforms is not None:
            for tform in self.transforms:
                x = tform(x)
        return x


def is_batch_index(index):
    """An index that selects several samples (an index array, a list, a slice)."""
    return not isinstance(index, (int, np.integer)) and not (
        isinstance(index, np.ndarray) and index.ndim == 0)


def transform_rows(dataset, x, index):
    """`dataset.apply_transforms` on the sample x = rows[index]: on each row
    (stacked again) when index selects several."""
    if dataset.transforms is None:
        return x
    if not is_batch_index(index):
        return dataset.apply_transforms(x)
    return np.stack([dataset.apply_transforms(r) for r in x]) if len(x) else x


class NDArrayDataset(Dataset):
    """Samples are the rows of the given arrays (the course's): item i is
    `(arrays[0][i], arrays[1][i], ...)`. Every array has the same length.

    `transforms` (keyword, not in the course's signature) apply to the first
    array's rows. An index array or slice returns the stacked batch."""
    batched_getitem = True

    def __init__(self, *arrays, transforms=None):
        super().__init__(transforms)
        if not arrays:
            raise ValueError("NDArrayDataset: needs at least one array")
        arrays = tuple(np.asarray(a) for a in arrays)
        n = len(arrays[0])
        for k, a in enumerate(arrays):
            if a.ndim == 0 or len(a) != n:
                raise ValueError(f"NDArrayDataset: arrays[{k}] has shape {a.shape}, but "
                                 f"arrays[0] has {n} rows (shapes "
                                 f"{[x.shape for x in arrays]})")
        self.arrays = arrays

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        first = transform_rows(self, self.arrays[0][index], index)
        return (first,) + tuple(a[index] for a in self.arrays[1:])
