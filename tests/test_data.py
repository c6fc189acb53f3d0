"""needle.data's DataLoader and transforms: order, batching, drop_last,
shuffling seeded from needle.random (reproducible, a new permutation per
epoch), the sampler protocol (set_epoch), worker processes (the same
batches as without; a transform running a needle kernel, a large parallel
one, inside a worker; errors and dead workers), the prefetch thread, and
the course's image transforms against numpy references.

References: index arithmetic and numpy slicing written out here; the
transforms' draws replayed from a numpy Generator with the same seed.
"""
import os
import threading

import numpy as np
import pytest

import needle
import needle.numpy as nnp
from needle import data

MODES = [(0, 0), (0, 2), (2, 1)]          # (num_workers, prefetch)
MODE_IDS = ["sync", "thread", "workers"]


def _dataset(n=10, transforms=None):
    x = np.arange(n * 6, dtype=np.float64).reshape(n, 2, 3)
    y = np.arange(n, dtype=np.int64) * 10
    return x, y, data.NDArrayDataset(x, y, transforms=transforms)


def _epoch(loader):
    return [tuple(t.numpy() for t in batch) for batch in loader]


class _ItemDataset(data.Dataset):
    """Items one by one (no batched getitem): the per-sample collation path."""

    def __init__(self, x, y, transforms=None):
        super().__init__(transforms)
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.apply_transforms(self.x[i]), self.y[i]


# --- order and batching ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("drop_last", [False, True])
def test_sequential_batches_are_consecutive_slices(mode, drop_last):
    x, y, ds = _dataset(10)
    loader = data.DataLoader(ds, batch_size=4, drop_last=drop_last, num_workers=mode[0],
                             prefetch=mode[1])
    got = _epoch(loader)
    starts = [0, 4] if drop_last else [0, 4, 8]
    assert len(loader) == len(starts) == len(got)
    for (bx, by), s in zip(got, starts):
        np.testing.assert_array_equal(bx, x[s:s + 4].astype(np.float32))
        np.testing.assert_array_equal(by, y[s:s + 4])


def test_batches_are_tensors_that_jit_takes_as_arrays():
    x, y, ds = _dataset(8)
    traces = []

    @needle.jit
    def f(a, b):
        traces.append(1)
        return nnp.sum(a, axis=(1, 2)) * 2.0 + b

    for bx, by in data.DataLoader(ds, batch_size=4, prefetch=0):
        assert isinstance(bx, needle.Tensor) and not bx.requires_grad
        assert bx.dtype == np.float32 and by.dtype == np.int64    # float64 -> float32
        want = bx.numpy().astype(np.float64).sum(axis=(1, 2)) * 2 + by.numpy()
        np.testing.assert_allclose(np.asarray(f(bx, by)), want, rtol=1e-6)
    assert len(traces) == 1                    # a new batch of the same shape: no retrace


def test_item_datasets_collate_like_batched_indexing():
    x, y, _ = _dataset(7)
    got = _epoch(data.DataLoader(_ItemDataset(x, y), batch_size=3, prefetch=0))
    assert [len(b[0]) for b in got] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in got]), x.astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), y)


def test_collate_fn_dicts_and_mismatched_samples():
    x, y, ds = _dataset(5)
    out = list(data.DataLoader(ds, batch_size=2, prefetch=0,
                               collate_fn=lambda samples: [int(s[1]) for s in samples]))
    assert out == [[0, 10], [20, 30], [40]]    # a collate_fn's result comes as it is

    class Dicts(data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return {"x": np.full(2, i, np.float32), "n": i}

    b = next(iter(data.DataLoader(Dicts(), batch_size=3, prefetch=0)))
    np.testing.assert_array_equal(b["x"].numpy(), [[0, 0], [1, 1], [2, 2]])
    np.testing.assert_array_equal(b["n"].numpy(), [0, 1, 2])

    ragged = _ItemDataset([np.zeros(2), np.zeros(3)], [0, 1])
    with pytest.raises(ValueError, match=r"field 0.*\(2,\), \(3,\)"):
        next(iter(data.DataLoader(ragged, batch_size=2, prefetch=0)))


def test_argument_errors():
    _, _, ds = _dataset(4)
    with pytest.raises(ValueError, match="sampler is mutually exclusive with shuffle"):
        data.DataLoader(ds, sampler=range(4), shuffle=True)
    with pytest.raises(TypeError, match="has no __len__"):
        data.DataLoader(ds, sampler=iter(range(4)))
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        data.DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="num_workers must be an int >= 0"):
        data.DataLoader(ds, num_workers=-1)


# --- shuffling and seeding ------------------------------------------------------------------------

def _orders(loader, epochs):
    return [np.concatenate([by // 10 for _, by in _epoch(loader)]) for _ in range(epochs)]


def test_shuffle_reshuffles_every_epoch_and_reproduces_from_the_seed():
    _, _, ds = _dataset(50)
    a = _orders(data.DataLoader(ds, batch_size=8, shuffle=True, seed=3, prefetch=0), 3)
    b = _orders(data.DataLoader(ds, batch_size=8, shuffle=True, seed=3, prefetch=0), 3)
    c = _orders(data.DataLoader(ds, batch_size=8, shuffle=True, seed=4, prefetch=0), 1)
    for order in a:
        np.testing.assert_array_equal(np.sort(order), np.arange(50))   # each sample once
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)
    assert not np.array_equal(a[0], c[0])


def test_seed_none_comes_from_needle_random():
    _, _, ds = _dataset(40)

    def run(n):
        needle.random.seed(n)
        return _orders(data.DataLoader(ds, batch_size=8, shuffle=True, prefetch=0), 2)

    a, b, c = run(7), run(7), run(8)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)
    assert not np.array_equal(a[0], c[0])


class _RecordingSampler:
    """The sampler protocol: __iter__ of ints, __len__, set_epoch."""

    def __init__(self, n):
        self.n, self.epochs = n, []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __iter__(self):
        e = self.epochs[-1]
        return iter([(3 * i + e) % self.n for i in range(self.n)])

    def __len__(self):
        return self.n


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_sampler_protocol_calls_set_epoch_and_follows_its_order(mode):
    _, y, ds = _dataset(7)
    sampler = _RecordingSampler(7)
    loader = data.DataLoader(ds, batch_size=3, sampler=sampler, num_workers=mode[0],
                             prefetch=mode[1])
    assert len(loader) == 3
    for epoch in range(3):
        got = np.concatenate([by for _, by in loader])
        np.testing.assert_array_equal(got, y[[(3 * i + epoch) % 7 for i in range(7)]])
    assert sampler.epochs == [0, 1, 2]
    plain = data.DataLoader(ds, batch_size=2, sampler=range(5), prefetch=0)   # no set_epoch
    np.testing.assert_array_equal(np.concatenate([by for _, by in plain]), y[:5])


# --- transforms -----------------------------------------------------------------------------

def _ref_crop(img, sx, sy):
    """The crop written as an index formula: out[i, j] = img[i + sx, j + sy], 0 outside."""
    h, w, _ = img.shape
    out = np.zeros_like(img)
    for i in range(h):
        for j in range(w):
            if 0 <= i + sx < h and 0 <= j + sy < w:
                out[i, j] = img[i + sx, j + sy]
    return out


def test_flip_and_crop_against_numpy_references():
    img = np.random.default_rng(0).standard_normal((5, 6, 2)).astype(np.float32)
    np.testing.assert_array_equal(data.RandomFlipHorizontal(p=1.0)(img), img[:, ::-1, :])
    np.testing.assert_array_equal(data.RandomFlipHorizontal(p=0.0)(img), img)
    flip, ref = data.RandomFlipHorizontal(p=0.5, rng=11), np.random.default_rng(11)
    flips = 0
    for _ in range(20):
        f = ref.random() < 0.5
        flips += f
        np.testing.assert_array_equal(flip(img), img[:, ::-1, :] if f else img)
    assert 0 < flips < 20
    crop, ref = data.RandomCrop(padding=3, rng=5), np.random.default_rng(5)
    for _ in range(20):
        sx, sy = ref.integers(-3, 4, size=2)
        out = crop(img)
        assert out.shape == img.shape
        np.testing.assert_array_equal(out, _ref_crop(img, sx, sy))
    np.testing.assert_array_equal(data.RandomCrop(padding=0)(img), img)
    with pytest.raises(ValueError, match=r"RandomCrop: expects one H x W x C image, got "
                                         r"shape \(5, 6\)"):
        data.RandomCrop()(img[..., 0])


def test_transform_randomness_reproduces_in_and_out_of_a_loader():
    imgs = np.random.default_rng(1).standard_normal((12, 4, 4, 1)).astype(np.float32)
    tf = [data.RandomFlipHorizontal(), data.RandomCrop(padding=1)]
    ds = data.NDArrayDataset(imgs, np.arange(12), transforms=tf)
    runs = [_epoch(data.DataLoader(ds, batch_size=4, shuffle=True, seed=2, prefetch=0))
            for _ in range(2)]
    for (a, _), (b, _) in zip(*runs):
        np.testing.assert_array_equal(a, b)
    flat = np.concatenate([a for a, _ in runs[0]])
    assert not np.array_equal(flat, imgs[np.concatenate([i for _, i in runs[0]])])  # augmented
    needle.random.seed(5)
    first = [ds[i][0] for i in range(12)]
    needle.random.seed(5)
    np.testing.assert_array_equal(first, [ds[i][0] for i in range(12)])


# --- workers and the prefetch thread ----------------------------------------------------------

def test_workers_give_the_batches_of_zero_workers():
    imgs = np.random.default_rng(2).standard_normal((23, 5, 5, 2)).astype(np.float32)
    ds = _ItemDataset(imgs, np.arange(23), [data.RandomFlipHorizontal(), data.RandomCrop(2)])
    kw = dict(batch_size=4, shuffle=True, seed=9)
    base = data.DataLoader(ds, prefetch=0, **kw)
    want = [_epoch(base) for _ in range(2)]
    for nw, pf in [(0, 3), (2, 1), (3, 2)]:
        loader = data.DataLoader(ds, num_workers=nw, prefetch=pf, **kw)
        for epoch in range(2):
            got = _epoch(loader)
            assert len(got) == len(want[epoch]) == 6
            for (gx, gy), (wx, wy) in zip(got, want[epoch]):
                np.testing.assert_array_equal(gy, wy)
                np.testing.assert_array_equal(gx, wx)


N_BIG = 1 << 17            # above the default NEEDLE_PARALLEL_MIN_SIZE: the prange variant


def test_a_transform_runs_a_large_needle_kernel_in_the_workers():
    scale = needle.jit(lambda a: nnp.sqrt(a) * 2.0 + 1.0)
    rows = np.abs(np.random.default_rng(3).standard_normal((6, N_BIG))).astype(np.float32)
    assert "(parallel," in scale.lower(rows[0]).as_text("kernels")
    scale(rows[0])                            # the parent runs the parallel variant first
    ds = data.NDArrayDataset(rows, np.arange(6), transforms=[lambda r: np.asarray(scale(r))])
    got = _epoch(data.DataLoader(ds, batch_size=2, num_workers=2))
    want = np.sqrt(rows) * np.float32(2) + np.float32(1)
    np.testing.assert_allclose(np.concatenate([b for b, _ in got]), want, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate([i for _, i in got]), np.arange(6))


class _Failing(data.Dataset):
    def __init__(self, how):
        super().__init__()
        self.how = how

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5:
            if self.how == "raise":
                raise KeyError(f"sample {i} is missing")
            os._exit(7)
        return np.float32(i)


@pytest.mark.parametrize("mode", [(0, 2), (2, 1)], ids=["thread", "workers"])
def test_a_loading_error_reaches_the_caller(mode):
    loader = data.DataLoader(_Failing("raise"), batch_size=2, num_workers=mode[0],
                             prefetch=mode[1])
    got = []
    with pytest.raises(KeyError, match="sample 5 is missing") as info:
        for (b,) in loader:
            got.append(b.numpy())
    assert len(got) == 2                      # batches 0 and 1 came first
    if mode[0]:
        assert "DataLoader worker 0 loading batch 2" in "".join(info.value.__notes__)


def test_a_dead_worker_is_reported_not_waited_on():
    loader = data.DataLoader(_Failing("exit"), batch_size=2, num_workers=2)
    with pytest.raises(RuntimeError, match=r"worker 0 \(pid \d+\) exited unexpectedly with "
                                           r"exit code 7 while loading batch 2"):
        list(loader)


class _Watched(data.Dataset):
    """Records which items were loaded; an Event per item."""

    def __init__(self, n):
        super().__init__()
        self.n, self.loaded = n, [threading.Event() for _ in range(n)]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.loaded[i].set()
        return np.float32(i)


def test_prefetch_loads_ahead_in_a_thread_and_stays_bounded():
    ds = _Watched(12)
    it = iter(data.DataLoader(ds, batch_size=1, prefetch=2))
    assert float(next(it)[0].numpy()[0]) == 0.0
    assert ds.loaded[1].wait(5.0) and ds.loaded[2].wait(5.0)     # loaded before asked for
    assert not ds.loaded[5].wait(0.3)         # at most prefetch (2) queued + 1 in hand
    assert [float(b.numpy()[0]) for (b,) in it] == list(range(1, 12))
    ds = _Watched(4)
    it = iter(data.DataLoader(ds, batch_size=1, prefetch=0))
    next(it)
    assert not ds.loaded[1].is_set()          # prefetch=0: loads only when asked
    next(it)
    assert ds.loaded[1].is_set()


@pytest.mark.parametrize("mode", [(0, 2), (2, 2)], ids=["thread", "workers"])
def test_an_abandoned_epoch_stops_its_thread_or_workers(mode):
    import multiprocessing as mp
    rows = np.zeros((40, 1 << 15), np.float32)     # 256 KB batches: more than a pipe holds
    ds = _ItemDataset(rows, np.arange(40))
    loader = data.DataLoader(ds, batch_size=2, num_workers=mode[0], prefetch=mode[1])
    it = iter(loader)
    next(it)
    workers = [p for p in mp.active_children() if p.name.startswith("needle-data-worker")]
    assert len(workers) == mode[0]
    it.close()                                # what dropping a half-used iterator does
    assert not [t for t in threading.enumerate() if t.name == "needle-data-prefetch"]
    assert not [p for p in mp.active_children() if p.name.startswith("needle-data-worker")]
    assert [p.exitcode for p in workers] == [0] * mode[0]     # they left; none was killed
    assert len(_epoch(loader)) == 20          # the next epoch starts afresh


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_empty_and_short_datasets(mode):
    x, y, ds = _dataset(3)
    assert _epoch(data.DataLoader(ds, batch_size=4, drop_last=True, num_workers=mode[0],
                                  prefetch=mode[1])) == []
    (bx, by), = _epoch(data.DataLoader(ds, batch_size=4, num_workers=mode[0], prefetch=mode[1]))
    np.testing.assert_array_equal(by, y)
    assert _epoch(data.DataLoader(_ItemDataset([], []), num_workers=mode[0],
                                  prefetch=mode[1])) == []
