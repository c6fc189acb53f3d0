"""The public package `needle.data`: the course library's data loading.

Input: arrays or files in the course's formats. Output: Datasets (items by
index) and a DataLoader yielding minibatches as `needle.Tensor`s, which
`needle.jit` takes as arrays.

- dataset.py: `Dataset(transforms=None)`, `NDArrayDataset(*arrays)`;
- transforms.py: `RandomFlipHorizontal(p=0.5)`, `RandomCrop(padding=3)`,
  `current_rng()` (their reproducible randomness);
- dataloader.py: `DataLoader(dataset, batch_size=1, shuffle=False,
  drop_last=False, sampler=None, collate_fn=None, num_workers=0,
  prefetch=2, seed=None)`, `SequentialSampler`, `RandomSampler`,
  `default_collate` (the sampler protocol is in its docstring);
- mnist.py: `MNISTDataset(image_filename, label_filename)` (idx, gzip or not);
- cifar.py: `CIFAR10Dataset(base_folder, train)` (python pickle batches);
- ptb.py: Penn Treebank text: `Dictionary`, `Corpus`, `batchify`, `get_batch`;
- builtin.py: no download: `load_digits` (scikit-learn's), `load_stdlib_text`
  (a character corpus of Python's standard-library sources).
"""
from .dataset import Dataset, NDArrayDataset  # noqa: F401
from .transforms import RandomCrop, RandomFlipHorizontal, Transform, current_rng  # noqa: F401
from .dataloader import DataLoader, RandomSampler, SequentialSampler, default_collate  # noqa: F401
from .mnist import MNISTDataset, read_idx  # noqa: F401
from .cifar import CIFAR10Dataset  # noqa: F401
from .ptb import Corpus, Dictionary, batchify, get_batch  # noqa: F401
from .builtin import CharCorpus, load_digits, load_stdlib_text  # noqa: F401
