"""needle.distributed benchmarks on local ranks (mpiexec from the venv's
MPICH wheel): what bucketing costs, and a data-parallel MLP epoch.

Workloads:
- allreduce of a ~10 MB float32 gradient pytree (an MLP's 8 leaves, and the
  same bytes in 96 leaves) on 2 ranks: `needle.distributed.all_reduce`
  (op="sum" and "mean"; 4 MiB buckets, and one bucket) against one flat
  `comm.Allreduce` of a preallocated buffer of the same size (no packing,
  no unpacking, and the same buffer every call, so it stays in cache),
  against copying the leaves into such a buffer and then one flat
  Allreduce (the floor of any scheme that packs the leaves: the gradients
  of a backward pass are separate arrays), and against one `Allreduce` per
  leaf. Times are the median and the minimum over calls entered together (a
  barrier before each), interleaved round robin, of the slower rank; the
  overhead columns are all_reduce / flat - 1.
- a data-parallel epoch: an MLP 256-512-512-10 on 16384 synthetic samples,
  global batch 256, SGD with momentum (examples/mlp.py's pattern: jitted
  value_and_grad, all_reduce of the gradients, jitted update), on 1 rank
  and on 2 ranks (128 samples each), one thread per rank for BLAS and
  Numba when 2 ranks share this 2-core machine, 2 threads for 1 rank.
  The epoch time is the median of 3 epochs after a warm-up epoch.

Run:  python benchmarks/bench_distributed.py [--small] [--repeats N]
(it starts the mpiexec runs itself; --small: a 1 MB pytree, 2048 samples).
"""
import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.abspath(__file__)


def _mpiexec():
    exe = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return exe if os.path.exists(exe) else "mpiexec"


# --- allreduce (runs on each rank) --------------------------------------------------------

def tree_of(small, many):
    """An MLP's gradients: 784-1024-1024-512-10 (9.5 MiB; --small 784-256-256-128-10,
    1.3 MiB) as 8 leaves, or the same bytes as 96 equal leaves."""
    rng = np.random.default_rng(0)
    d = [784, 256, 256, 128, 10] if small else [784, 1024, 1024, 512, 10]
    shapes = []
    for a, b in zip(d[:-1], d[1:]):
        shapes += [(a, b), (b,)]
    if many:
        total = sum(int(np.prod(s)) for s in shapes)
        shapes = [(total // 96,)] * 96
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def part_allreduce(args):
    from mpi4py import MPI

    import needle.distributed as dist
    dist.init()
    comm = dist.comm()
    rows = []
    for many in (False, True):
        tree = tree_of(args.small, many)
        total = sum(x.nbytes for x in tree)
        flat = np.concatenate([x.ravel() for x in tree])
        staged = np.empty_like(flat)

        def flat_call():
            comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)

        def copy_then_flat():                  # the floor of any scheme that packs the leaves
            off = 0
            for x in tree:
                staged[off:off + x.size] = x.reshape(-1)
                off += x.size
            comm.Allreduce(MPI.IN_PLACE, staged, op=MPI.SUM)

        def per_leaf():
            return [_leaf_allreduce(comm, MPI, x) for x in tree]

        fns = {"flat Allreduce": flat_call,
               "copy + flat Allreduce": copy_then_flat,
               "all_reduce sum": lambda: dist.all_reduce(tree, op="sum"),
               "all_reduce mean": lambda: dist.all_reduce(tree, op="mean"),
               "all_reduce 1 bucket": lambda: dist.all_reduce(tree, op="sum",
                                                              bucket_bytes=total),
               "Allreduce per leaf": per_leaf}
        t = _time(comm, MPI, fns, args.repeats)
        rows.append({"tree": f"{len(tree)} leaves, {total / 2 ** 20:.1f} MiB", "times": t})
    if dist.is_main():
        print("RESULT " + json.dumps({"allreduce": rows}), flush=True)


def _leaf_allreduce(comm, MPI, x):
    out = np.empty_like(x)
    comm.Allreduce(x, out, op=MPI.SUM)
    return out


def _time(comm, MPI, fns, repeats, warmup=3):
    """{name: (median, min, median over rounds of t / t_flat)}: per call, the
    slower rank's time; the last, a paired ratio, is robust to load bursts of
    a shared machine (each round times every contestant back to back)."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            comm.Barrier()
            t0 = time.perf_counter()
            r = f()
            times[k].append(time.perf_counter() - t0)
            del r
    slow = {}
    for k, v in times.items():
        out = np.empty(len(v))
        comm.Allreduce(np.asarray(v, np.float64), out, op=MPI.MAX)
        slow[k] = out
    base = slow["flat Allreduce"]
    return {k: (float(np.median(v)), float(np.min(v)), float(np.median(v / base)))
            for k, v in slow.items()}


# --- a data-parallel MLP epoch (runs on each rank) ----------------------------------------

def part_mlp(args):
    import needle
    import needle.distributed as dist
    import needle.nn as nn
    import needle.numpy as nnp
    from needle.tree_util import tree_map
    dist.init()
    R = dist.world_size()
    n = 2048 if args.small else 16384
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 256)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    sizes = [256, 512, 512, 10]
    params = [((rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32),
               np.zeros(b, np.float32)) for a, b in zip(sizes[:-1], sizes[1:])]
    params = dist.broadcast(params)
    velocity = tree_map(np.zeros_like, params)

    def loss(params, xb, yb):
        h = xb
        for w, b in params[:-1]:
            h = nn.relu(h @ w + b)
        w, b = params[-1]
        logits = h @ w + b
        onehot = nn.one_hot(yb, 10, dtype=nnp.float32)
        return -nnp.mean(nnp.sum(nn.log_softmax(logits) * onehot, axis=1))

    def update(params, velocity, grads):
        velocity = tree_map(lambda v, g: np.float32(0.9) * v + g, velocity, grads)
        return tree_map(lambda p, v: p - np.float32(0.01) * v, params, velocity), velocity

    warnings.simplefilter("ignore", UserWarning)        # donate_argnums' reminder
    grad_fn = needle.jit(needle.value_and_grad(loss))
    update_fn = needle.jit(update, donate_argnums=(0, 1))
    per_rank = 256 // R
    sampler = dist.DistributedSampler(n, seed=0, drop_last=True)
    epoch_times, losses = [], []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        idx = np.fromiter(sampler, np.int64)
        dist.barrier()
        t0 = time.perf_counter()
        for i in range(len(idx) // per_rank):
            b = idx[i * per_rank:(i + 1) * per_rank]
            value, grads = grad_fn(params, x[b], y[b])
            grads = dist.all_reduce(grads)
            params, velocity = update_fn(params, velocity, grads)
        dist.barrier()
        epoch_times.append(time.perf_counter() - t0)
        losses.append(float(dist.all_reduce(np.asarray(value))))
    if dist.is_main():
        print("RESULT " + json.dumps({"ranks": R, "epoch_s": float(np.median(epoch_times[1:])),
                                      "first_epoch_s": epoch_times[0],
                                      "last_loss": losses[-1]}), flush=True)


# --- the driver ---------------------------------------------------------------------------

def run(part, ranks, args, threads):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "NUMBA_NUM_THREADS"):
        env[k] = str(threads)
    cmd = [_mpiexec(), "-n", str(ranks), sys.executable, HERE, "--part", part,
           "--repeats", str(args.repeats)] + (["--small"] if args.small else [])
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if p.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--part", choices=["allreduce", "mlp"])
    args = ap.parse_args()
    if args.part == "allreduce":
        return part_allreduce(args)
    if args.part == "mlp":
        return part_mlp(args)
    cores = os.cpu_count() or 1
    print(f"needle.distributed on {cores} cores, local ranks, mpiexec {_mpiexec()}")
    res = run("allreduce", 2, args, threads=max(1, cores // 2))
    print("\nallreduce on 2 ranks (median ms per call; overhead vs one flat Allreduce)")
    for row in res["allreduce"]:
        t = row["times"]
        fm, fn, _ = t["flat Allreduce"]
        print(f"  {row['tree']}:{'median':>18s}{'min':>10s}   overhead: of medians, of minima, "
              f"median of paired ratios")
        for k, (med, mn, paired) in t.items():
            extra = "" if k == "flat Allreduce" else \
                f"   {med / fm - 1:+7.1%} {mn / fn - 1:+7.1%} {paired - 1:+7.1%}"
            print(f"    {k:22s}{med * 1e3:7.2f} ms{mn * 1e3:7.2f} ms{extra}")
    runs = [run("mlp", 1, args, threads=cores), run("mlp", 1, args, threads=1),
            run("mlp", 2, args, threads=max(1, cores // 2))]
    print("\ndata-parallel MLP epoch (256-512-512-10, global batch 256)")
    for r, th in zip(runs, (cores, 1, max(1, cores // 2))):
        print(f"  {r['ranks']} rank(s) x {th} thread(s): {r['epoch_s']:.3f} s per epoch "
              f"(first, with compiling: {r['first_epoch_s']:.2f} s), loss {r['last_loss']:.4f}")
    best1 = min(runs[0]["epoch_s"], runs[1]["epoch_s"])
    print(f"  speed-up 2 ranks vs the faster 1-rank run: {best1 / runs[2]['epoch_s']:.2f}x")


if __name__ == "__main__":
    main()
