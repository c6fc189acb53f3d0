"""needle.data's loaders for the course's file formats, on small files the
tests write in the real formats: MNIST idx (gzip and not), CIFAR-10's
pickled python batches, Penn Treebank text; and the data sets that need no
download (scikit-learn's digits, the standard-library character corpus).

References: the formats' byte layouts written out with struct / pickle, the
course's formulas (bytes / 255, CHW images, '<eos>' per line, batchify's
columns) in numpy.
"""
import gzip
import os
import pickle
import struct
import sys

import numpy as np
import pytest

import needle
from needle import data


# --- MNIST idx ----------------------------------------------------------------------------------

def _write_idx(path, array, type_code=0x08, compress=False):
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(raw)


def _mnist_files(tmp_path, n, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    ext = ".gz" if compress else ""
    ip, lp = tmp_path / f"images-idx3-ubyte{ext}", tmp_path / f"labels-idx1-ubyte{ext}"
    _write_idx(ip, images, compress=compress)
    _write_idx(lp, labels, compress=compress)
    return images, labels, str(ip), str(lp)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_mnist_items_are_bytes_over_255_in_hwc(tmp_path, compress):
    images, labels, ip, lp = _mnist_files(tmp_path, 7, compress)
    ds = data.MNISTDataset(ip, lp)
    assert len(ds) == 7
    for i in range(7):
        x, y = ds[i]
        assert x.shape == (28, 28, 1) and x.dtype == np.float32
        np.testing.assert_allclose(x[..., 0], images[i] / 255.0, rtol=1e-7)
        assert y == labels[i]
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    bx, by = ds[np.array([4, 1, 6])]
    np.testing.assert_array_equal(bx, np.stack([ds[4][0], ds[1][0], ds[6][0]]))
    np.testing.assert_array_equal(by, labels[[4, 1, 6]])
    batches = list(data.DataLoader(ds, batch_size=3, prefetch=0))
    assert [tuple(b[0].shape) for b in batches] == [(3, 28, 28, 1)] * 2 + [(1, 28, 28, 1)]
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), labels)


def test_mnist_transforms_and_other_idx_types(tmp_path):
    images, labels, ip, lp = _mnist_files(tmp_path, 3, False)
    ds = data.MNISTDataset(ip, lp, transforms=[data.RandomFlipHorizontal(p=1.0)])
    np.testing.assert_allclose(ds[2][0][..., 0], images[2][:, ::-1] / 255.0, rtol=1e-7)
    np.testing.assert_array_equal(ds[np.arange(3)][0][1], ds[1][0])
    f = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    _write_idx(tmp_path / "f.idx", f, type_code=0x0D)
    np.testing.assert_array_equal(data.read_idx(str(tmp_path / "f.idx")), f)


def test_mnist_bad_files_name_the_file(tmp_path):
    images, labels, ip, lp = _mnist_files(tmp_path, 3, False)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x56\x78" + bytes(10))
    with pytest.raises(ValueError, match="bad is not an idx file"):
        data.MNISTDataset(str(bad), lp)
    short = tmp_path / "short"
    short.write_bytes(open(ip, "rb").read()[:-5])
    with pytest.raises(ValueError, match=rf"short has {3 * 784 - 5} data bytes, its header "
                                         rf"\(shape \(3, 28, 28\), \|u1\) says {3 * 784}"):
        data.MNISTDataset(str(short), lp)
    _write_idx(tmp_path / "two", labels[:2])
    with pytest.raises(ValueError, match=r"labels of shape \(2,\) for 3 images"):
        data.MNISTDataset(ip, str(tmp_path / "two"))


# --- CIFAR-10 -----------------------------------------------------------------------------------

def _cifar_folder(tmp_path, per_batch=3):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        lab = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as f:     # the files are Python 2 pickles: bytes keys
            pickle.dump({b"batch_label": name.encode(), b"data": d, b"labels": lab,
                         b"filenames": [b"x.png"] * per_batch}, f, protocol=2)
        batches[name] = (d, lab)
    return str(folder), batches


def test_cifar_train_and_test_splits(tmp_path):
    folder, batches = _cifar_folder(tmp_path)
    train = data.CIFAR10Dataset(folder, train=True)
    test = data.CIFAR10Dataset(folder, train=False)
    want = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    want_y = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert len(train) == 15 and len(test) == 3
    for i in range(15):
        x, y = train[i]
        assert x.shape == (3, 32, 32) and x.dtype == np.float32
        for c in range(3):                      # the row: 1024 reds, 1024 greens, 1024 blues
            np.testing.assert_allclose(x[c], want[i, 1024 * c:1024 * (c + 1)].reshape(32, 32)
                                       / 255.0, rtol=1e-7)
        assert y == want_y[i]
    np.testing.assert_allclose(test[2][0].reshape(-1), batches["test_batch"][0][2] / 255.0,
                               rtol=1e-7)
    (bx, by), = list(data.DataLoader(test, batch_size=3, prefetch=0))
    assert bx.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(by.numpy(), batches["test_batch"][1])


def test_cifar_transforms_see_hwc_images(tmp_path):
    folder, _ = _cifar_folder(tmp_path)
    plain = data.CIFAR10Dataset(folder, train=False)
    flip = data.CIFAR10Dataset(folder, train=False, transforms=[data.RandomFlipHorizontal(1.0)])
    np.testing.assert_array_equal(flip[1][0], plain[1][0][:, :, ::-1])      # W flips
    np.testing.assert_array_equal(flip[np.array([0, 1])][0][1], flip[1][0])


def test_cifar_refuses_pickles_that_run_code_and_names_missing_files(tmp_path):
    folder, _ = _cifar_folder(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.getpid, ())

    with open(os.path.join(folder, "test_batch"), "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.getpid"):
        data.CIFAR10Dataset(folder, train=False)
    os.remove(os.path.join(folder, "data_batch_3"))
    with pytest.raises(FileNotFoundError, match="has no data_batch_3"):
        data.CIFAR10Dataset(folder, train=True)


# --- Penn Treebank --------------------------------------------------------------------------------

def test_ptb_corpus_shares_one_dictionary_and_appends_eos(tmp_path):
    train_lines = ["the cat sat", "on the mat", "a dog"]
    test_lines = ["the dog sat", "new words here"]
    (tmp_path / "train.txt").write_text("".join(f" {ln} \n" for ln in train_lines))
    (tmp_path / "test.txt").write_text("".join(f" {ln} \n" for ln in test_lines))
    corpus = data.Corpus(str(tmp_path))
    vocab = {}                                 # the reference: ids by first appearance
    want = {}
    for split, lines in (("train", train_lines), ("test", test_lines)):
        want[split] = [vocab.setdefault(w, len(vocab)) for ln in lines
                       for w in ln.split() + ["<eos>"]]
    assert corpus.train == want["train"] and corpus.test == want["test"]
    assert corpus.dictionary.word2idx == vocab and len(corpus.dictionary) == len(vocab)
    assert corpus.dictionary.idx2word == sorted(vocab, key=vocab.get)
    short = data.Corpus(str(tmp_path), max_lines=1)
    assert [short.dictionary.idx2word[i] for i in short.train] == ["the", "cat", "sat", "<eos>"]
    assert [short.dictionary.idx2word[i] for i in short.test] == ["the", "dog", "sat", "<eos>"]


def test_batchify_and_get_batch_follow_the_course():
    seq = np.arange(26)                        # the course's alphabet example, 'a' = 0
    b = data.batchify(seq, 4, None, "int64")
    assert b.shape == (6, 4) and b.dtype == np.int64       # y and z trimmed off
    for col in range(4):                       # column j is letters 6j .. 6j + 5
        np.testing.assert_array_equal(b[:, col], np.arange(6 * col, 6 * col + 6))
    x, t = data.get_batch(b, 0, 2)
    assert isinstance(x, needle.Tensor) and x.shape == (2, 4) and t.shape == (8,)
    np.testing.assert_array_equal(x.numpy(), [[0, 6, 12, 18], [1, 7, 13, 19]])   # a g m s / b h n t
    np.testing.assert_array_equal(t.numpy(), [1, 7, 13, 19, 2, 8, 14, 20])        # b h n t c i o u
    x, t = data.get_batch(b, 4, 3)             # only one row left after row 4
    np.testing.assert_array_equal(x.numpy(), b[4:5])
    np.testing.assert_array_equal(t.numpy(), b[5])
    x, _ = data.get_batch(b, 0, 2, dtype="float32")
    assert x.dtype == np.float32
    with pytest.raises(ValueError, match="get_batch: i=5 leaves no target in 6 rows"):
        data.get_batch(b, 5, 2)


# --- data that needs no download --------------------------------------------------------------

def test_load_digits_splits_and_standardizes_with_training_statistics():
    sk = pytest.importorskip("sklearn.datasets")
    raw = sk.load_digits()
    train, test = data.load_digits(("train", "test"), seed=3)
    n = len(raw.target)
    n_test = int(round(n * 0.2))
    assert len(train) == n - n_test and len(test) == n_test
    perm = np.random.default_rng(3).permutation(n)
    xr = raw.data.astype(np.float64)
    mean, std = xr[perm[n_test:]].mean(0), xr[perm[n_test:]].std(0) + 1e-3
    for ds, idx in ((train, perm[n_test:]), (test, perm[:n_test])):
        x, y = ds.arrays
        assert x.dtype == np.float32 and y.dtype == np.int32 and x.shape == (len(idx), 64)
        np.testing.assert_allclose(x, (xr[idx] - mean) / std, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(y, raw.target[idx])
    img = data.load_digits("all", standardize=False, flatten=False, limit=10)
    assert img.arrays[0].shape == (10, 8, 8, 1)
    np.testing.assert_allclose(img.arrays[0][..., 0], raw.images[:10] / 16.0, rtol=1e-6)
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_digits("validation")


def test_load_digits_without_scikit_learn_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="load_digits needs scikit-learn: pip install"):
        data.load_digits()


def test_stdlib_text_is_a_fixed_split_by_file():
    train, valid = data.load_stdlib_text(("train", "valid"), max_bytes=20000)
    files = data.builtin.stdlib_files()
    assert files == sorted(files) and len(files) > 20
    want_valid = [f for k, f in enumerate(files) if k % 10 == 9]
    want_train = [f for k, f in enumerate(files) if k % 10 != 9]
    assert valid.files == want_valid[:len(valid.files)]
    assert train.files == want_train[:len(train.files)]
    vocab = data.builtin.VOCAB
    for corpus in (train, valid):
        text = ""
        for f in corpus.files:
            with open(f, encoding="utf-8", errors="replace") as fh:
                text += fh.read()
        want = "".join(c if c in vocab else "?" for c in text[:20000])
        assert len(corpus) == 20000 and corpus.text == want
        ids = corpus.ids
        assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < len(vocab)
        np.testing.assert_array_equal(ids, [vocab.index(c) for c in want])
    assert data.load_stdlib_text("train", max_bytes=20000).text == train.text
    assert data.CharCorpus.decode(data.CharCorpus.encode("def f():\n\treturn \u00e9")) == \
        "def f():\n\treturn ?"
