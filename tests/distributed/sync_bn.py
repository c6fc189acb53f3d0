"""Run under mpiexec (tests/test_distributed.py): nn.SyncBatchNorm trained
inside a jitted `needle.value_and_grad` on each rank's half of every batch.

- an MLP Linear(4, 6) -> SyncBatchNorm(6) -> ReLU -> Linear(6, 3), the same
  initial weights on every rank (seeded alike), 3 steps of SGD (lr 0.5) on
  gradients averaged with all_reduce; after each step this rank's averaged
  loss, averaged gradients and the running statistics;
- a 4-d SyncBatchNorm(3) (channels on axis 1): the jitted gradient of
  sum(bn(x) * w) with respect to this rank's half of x, and bn's output.

Input: argv[1], the output .npz path. Output (rank 0): the global batches,
the initial parameters, and every rank's results (all_gather).
"""
import sys

import numpy as np

import needle
import needle.distributed as dist
import needle.nn as nn
import needle.numpy as nnp

dist.init()
r, R = dist.rank(), dist.world_size()
rng = np.random.default_rng(3)
xs = (rng.standard_normal((3, 8, 4)) * 2 + 0.5).astype(np.float32)    # 3 global batches
ys = rng.integers(0, 3, (3, 8))
half = slice(r * 8 // R, (r + 1) * 8 // R)

needle.random.seed(0)
model = nn.Sequential(nn.Linear(4, 6), nn.SyncBatchNorm(6, momentum=0.1), nn.ReLU(),
                      nn.Linear(6, 3))
names = [k for k, _ in model.named_parameters()]
p0 = {k: np.asarray(p.numpy()).copy() for k, p in model.named_parameters()}


def loss(model, x, y):
    logits = model(x)
    onehot = nn.one_hot(y, 3, dtype=nnp.float32)
    return -nnp.mean(nnp.sum(nn.log_softmax(logits) * onehot, axis=1))


step = needle.jit(needle.value_and_grad(loss))
opt = needle.optim.SGD(model.parameters(), lr=0.5)
out = {}
for s in range(3):
    value, g = step(model, xs[s][half], ys[s][half])
    g = dist.all_reduce(g)
    out[f"loss/{s}"] = np.asarray(dist.all_reduce(np.asarray(value)))
    for k, (_, q) in zip(names, g.named_parameters()):
        out[f"grad/{s}/{k}"] = np.asarray(q.numpy())
    bn = model.modules[1]
    out[f"running_mean/{s}"] = bn.running_mean.numpy().copy()
    out[f"running_var/{s}"] = bn.running_var.numpy().copy()
    opt.step(g)
for k, p in model.named_parameters():
    out[f"final/{k}"] = np.asarray(p.numpy()).copy()

x4 = (rng.standard_normal((8, 3, 2, 2)) * 3 + 1).astype(np.float32)
w4 = rng.standard_normal((8, 3, 2, 2)).astype(np.float32)
bn4 = nn.SyncBatchNorm(3)
h4 = slice(r * 8 // R, (r + 1) * 8 // R)
gx = needle.jit(needle.grad(lambda x: nnp.sum(bn4(x) * w4[h4])))(x4[h4])
out["bn4/gx"] = np.asarray(gx)
out["bn4/y"] = np.asarray(needle.jit(lambda x: bn4(x))(x4[h4]))

every = dist.all_gather(out)
if dist.is_main():
    save = {"world": np.int64(R), "xs": xs, "ys": ys, "x4": x4, "w4": w4}
    save.update({f"p0/{k}": v for k, v in p0.items()})
    save.update({k: np.asarray(v) for k, v in every.items()})
    np.savez(sys.argv[1], **save)
