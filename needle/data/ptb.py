"""The public package `needle.data`: Penn Treebank text for language
models, the course's way (`Dictionary`, `Corpus`, `batchify`, `get_batch`).

Input: a folder with train.txt and test.txt, one sentence per line,
words separated by spaces.
Output: `Corpus.train` / `.test`: lists of word ids (one shared
`Dictionary`; '<eos>' appended to every line); `batchify` makes a
(nbatch, batch_size) array of ids, `get_batch` cuts it into (bptt, bs)
inputs and their flattened next-word targets, as Tensors.
"""
import os

import numpy as np

from ..tensor import Tensor

__all__ = ["Dictionary", "Corpus", "batchify", "get_batch"]


class Dictionary:
    """Words to ids and back: `word2idx` (dict), `idx2word` (list); ids in
    order of first appearance."""

    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        """The word's id, adding it if it is new."""
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


class Corpus:
    """train.txt and test.txt of `base_dir` tokenized with one Dictionary:
    `train`, `test` (lists of ids), `dictionary`. `max_lines`: read at most
    that many lines of each file."""

    def __init__(self, base_dir, max_lines=None):
        self.dictionary = Dictionary()
        self.train = self.tokenize(os.path.join(base_dir, "train.txt"), max_lines)
        self.test = self.tokenize(os.path.join(base_dir, "test.txt"), max_lines)

    def tokenize(self, path, max_lines=None):
        """The ids of the words of the file's lines (at most `max_lines`),
        '<eos>' after each line, words added to the dictionary."""
        ids = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f):
                if max_lines is not None and n >= max_lines:
                    break
                for word in line.split() + ["<eos>"]:
                    ids.append(self.dictionary.add_word(word))
        return ids


def batchify(data, batch_size, device, dtype):
    """Arrange a sequence of ids into batch_size columns, each a contiguous
    stretch of the sequence (the remainder that does not fill a row is
    dropped): for the alphabet and batch_size 4, column 0 is a..f, column 1
    g..l, and so on. Returns a numpy array (nbatch, batch_size) of `dtype`
    (`device` is accepted for the course's signature: the array is on the
    host)."""
    data = np.asarray(data)
    if data.ndim != 1:
        raise ValueError(f"batchify: data must be a 1-d sequence of ids, got shape {data.shape}")
    if batch_size < 1 or len(data) < batch_size:
        raise ValueError(f"batchify: batch_size {batch_size} for a sequence of {len(data)} ids")
    nbatch = len(data) // batch_size
    out = data[:nbatch * batch_size].reshape(batch_size, nbatch).T
    return np.ascontiguousarray(out, dtype=dtype)


def get_batch(batches, i, bptt, device=None, dtype=None):
    """Rows i .. i+seq_len-1 of `batches` (the output of batchify) and the
    rows one step later, seq_len = min(bptt, len(batches) - 1 - i): returns
    (data, target) as Tensors, data (seq_len, bs) and target (seq_len * bs,)
    (the next word of every position, flattened row by row)."""
    batches = np.asarray(batches)
    seq_len = min(bptt, len(batches) - 1 - i)
    if seq_len < 1:
        raise ValueError(f"get_batch: i={i} leaves no target in {len(batches)} rows "
                         f"(bptt {bptt})")
    data = batches[i:i + seq_len]
    target = batches[i + 1:i + 1 + seq_len].reshape(-1)
    return (Tensor(data, device=device, dtype=dtype, requires_grad=False),
            Tensor(target, device=device, dtype=dtype, requires_grad=False))
