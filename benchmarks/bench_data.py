"""needle.data.DataLoader benchmarks: what loading costs per epoch, and how
much of it the prefetch thread and worker processes hide behind compute.

Workloads (all timed side by side in one run, interleaved; medians):
- loader overhead: digits-sized arrays (1438 x 64 float32, int32 labels),
  batch 32, shuffled, nothing else done with the batches: a hand-written
  numpy epoch (permutation + fancy-indexed slices) against the DataLoader
  synchronous (prefetch=0), by default (in-memory arrays: no thread), with
  2 worker processes; and a Dataset indexed one sample at a time, without
  and with the prefetch thread.
- overlap: a dataset whose items cost ~CPU work each (RandomCrop +
  RandomFlipHorizontal of 32 x 32 x 3 images and a per-item numpy filter)
  and a consumer that computes for about as long per batch (single-threaded
  numpy tanh passes over the batch):
  epoch time synchronous, with the thread, with 2 workers. On a machine
  with fewer free cores than workers + 1 the workers cannot help.
- the MLP training step of examples/mlp.py, jitted, given each batch as
  fresh Tensors (what the DataLoader yields) against numpy arrays; an epoch
  of it fed by numpy slices against one fed by the DataLoader.

Run:  python benchmarks/bench_data.py [--small] [--repeats N]
Ratios are synchronous time / other time (above 1: faster than sync).
"""
import os
import sys

import numpy as np

import needle
from needle import data

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import bench_args, timeit_side_by_side  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loader_epoch(loader):
    def run():
        n = 0
        for batch in loader:
            n += len(batch[0])
        return n
    return run


def hand_epoch(x, y, bs, rng):
    def run():
        order = rng.permutation(len(x))
        n = 0
        for i in range(0, len(x) - bs + 1, bs):
            idx = order[i:i + bs]
            n += len((x[idx], y[idx])[0])
        return n
    return run


class Items(data.Dataset):
    """The same arrays, one sample per __getitem__ (collated by stacking)."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class Blur:
    """A per-item CPU cost: a few passes of a 3-tap box filter along W."""

    def __init__(self, passes):
        self.passes = passes

    def __call__(self, img):
        for _ in range(self.passes):
            img = (img + np.roll(img, 1, axis=1) + np.roll(img, -1, axis=1)) / np.float32(3)
        return img


def compute(h, work):
    """The consumer's stand-in for a training step: single-threaded numpy."""
    for _ in range(work):
        h = np.tanh(h * np.float32(1.01))
    return h


def overlap_epoch(loader, work):
    def run():
        acc = 0.0
        for (x, _) in loader:
            acc += float(compute(x.numpy(), work)[0, 0, 0, 0])
        return acc
    return run


def table(title, times, base="sync"):
    print(f"\n{title}")
    print(f"{'variant':24s}{'time':>12s}{base + '/variant':>18s}")
    for k, t in times.items():
        print(f"{k:24s}{t * 1e3:10.2f}ms{times[base] / t:17.2f}x")


def main():
    args = bench_args(__doc__.split("\n\n")[0])
    rng = np.random.default_rng(0)
    n = 320 if args.small else 1438
    x = rng.standard_normal((n, 64)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    ds = data.NDArrayDataset(x, y)
    kw = dict(batch_size=32, shuffle=True, drop_last=True, seed=0)
    fns = {"hand (numpy)": hand_epoch(x, y, 32, np.random.default_rng(1)),
           "sync": loader_epoch(data.DataLoader(ds, prefetch=0, **kw)),
           "default (prefetch=2)": loader_epoch(data.DataLoader(ds, **kw)),
           "2 workers": loader_epoch(data.DataLoader(ds, num_workers=2, **kw)),
           "items, sync": loader_epoch(data.DataLoader(Items(x, y), prefetch=0, **kw)),
           "items, thread": loader_epoch(data.DataLoader(Items(x, y), prefetch=2, **kw))}
    table(f"loader overhead: {n} samples of 64 float32, batch 32, one epoch "
          f"({n // 32} batches); 'items': a Dataset indexed one sample at a time",
          timeit_side_by_side(fns, repeats=args.repeats))

    m = 256 if args.small else 1024
    imgs = rng.standard_normal((m, 32, 32, 3)).astype(np.float32)
    tf = [data.RandomCrop(4), data.RandomFlipHorizontal(), Blur(4 if args.small else 12)]
    heavy = data.NDArrayDataset(imgs, np.arange(m), transforms=tf)
    t_load = timeit_side_by_side({"l": loader_epoch(data.DataLoader(heavy, batch_size=64,
                                                                    prefetch=0))},
                                 repeats=3)["l"]
    per = timeit_side_by_side({"m": lambda: compute(imgs[:64], 1)}, repeats=7)["m"]
    work = max(1, int(round(t_load / (m // 64) / per)))     # compute ~ loading, per batch
    fns = {name: overlap_epoch(data.DataLoader(heavy, batch_size=64, **kw2), work)
           for name, kw2 in (("sync", dict(prefetch=0)), ("thread (prefetch=2)", dict()),
                             ("2 workers", dict(num_workers=2)))}
    table(f"overlap: {m} images 32x32x3, crop + flip + blur (loading {t_load * 1e3:.0f} "
          f"ms/epoch), {work} x tanh of the batch per batch ({per * 1e3:.2f} ms each)"
          f", {os.cpu_count()} cores", timeit_side_by_side(fns, repeats=max(3, args.repeats // 3)))

    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import mlp
    needle.random.seed(0)
    model = mlp.build_model([64, 128, 64, 10])
    opt = needle.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = mlp.make_train_step()
    xb, yb = x[:32].copy(), y[:32].copy()
    Tensor = needle.Tensor

    def steps(make, k=50):
        def run():
            for _ in range(k):
                a, b = make()
                step(model, opt, a, b)
        return run

    fns = {"numpy arrays": steps(lambda: (xb, yb)),
           "fresh Tensors": steps(lambda: (Tensor(xb, requires_grad=False),
                                           Tensor(yb, requires_grad=False))),
           "same Tensors": steps((lambda t=(Tensor(xb), Tensor(yb)): t))}
    times = {k: v / 50 for k, v in timeit_side_by_side(fns, repeats=args.repeats).items()}
    print("\nthe examples/mlp.py step (64-128-64-10, batch 32), per step")
    print(f"{'arguments':24s}{'time':>12s}{'numpy/arguments':>18s}")
    for k, t in times.items():
        print(f"{k:24s}{t * 1e6:10.1f}us{times['numpy arrays'] / t:17.2f}x")

    def epoch_of(batches):
        def run():
            for a, b in batches():
                float(step(model, opt, a, b))
        return run

    def slices(rng=np.random.default_rng(2)):
        order = rng.permutation(n)
        return ((x[order[i:i + 32]], y[order[i:i + 32]]) for i in range(0, n - 31, 32))

    loader = data.DataLoader(ds, **kw)
    times = timeit_side_by_side({"numpy slices": epoch_of(slices),
                                 "DataLoader": epoch_of(lambda: loader)}, repeats=args.repeats)
    print(f"\nan epoch of that step ({n // 32} batches)")
    for k, t in times.items():
        print(f"{k:24s}{t * 1e3:10.2f}ms{times['numpy slices'] / t:17.2f}x")


if __name__ == "__main__":
    main()
