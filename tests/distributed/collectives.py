"""Run under mpiexec (tests/test_distributed.py): the collectives on
rank-dependent inputs. Input: argv[1], the output .npz path. Output (rank
0): all_reduce (sum and mean) of a pytree with mixed dtypes and a bucket
size that cuts leaves, all_gather, broadcast of arrays and of an Adam
optimizer's moments, each rank's DistributedSampler shards, and
SyncBatchNorm's output and running statistics on each rank's half batch;
the test recomputes each from the same inputs with numpy."""
import sys

import numpy as np

import needle
import needle.distributed as dist
from mlp_model import MLP
from rank_inputs import floats, inputs


dist.init()
r, n = dist.rank(), dist.world_size()
out = {}
mine = inputs(r)
s = dist.all_reduce(mine, op="sum", bucket_bytes=64)     # 64 bytes: many buckets, leaves cut
m = dist.all_reduce(floats(mine), op="mean")
for k in ("w", "b", "h", "z"):
    out[f"sum/{k}"], out[f"mean/{k}"] = s[k], m[k]
out["sum/n0"], out["sum/n1"] = s["n"][0], np.asarray(s["n"][1])
try:
    dist.all_reduce(mine, op="mean")
except TypeError as e:
    out["mean_int_error"] = np.array(str(e))

g = dist.all_gather({"a": np.full((2, 3), r, np.int32), "f": np.float64(r + 0.5)})
out["gather/a"], out["gather/f"] = g["a"], g["f"]

b = dist.broadcast({"v": np.arange(5, dtype=np.float32) * (r + 1), "k": np.int64(7 + r)})
bs = dist.all_gather(b)
out["bcast/v"], out["bcast/k"] = bs["v"], bs["k"]

needle.random.seed(3 + r)
model = MLP()
opt = needle.optim.Adam(model.parameters(), lr=0.01)
opt.m[0].data = np.full(opt.m[0].shape, float(r + 1), np.float32)     # rank-dependent moment
opt.t.data = np.asarray(5 * (r + 1), np.int32)
dist.broadcast((model, opt))
state = dist.all_gather([opt.m[0].numpy(), opt.t.numpy(), model.fc1.weight.numpy()])
out["bcast/m0"], out["bcast/t"], out["bcast/w"] = state

for drop_last in (False, True):
    for n_data in (10, 11):
        smp = dist.DistributedSampler(n_data, seed=4, drop_last=drop_last)
        for epoch in (0, 1):
            smp.set_epoch(epoch)
            idx = np.asarray(list(smp), np.int64)
            out[f"sampler/{int(drop_last)}/{n_data}/{epoch}"] = dist.all_gather(idx)

rng = np.random.default_rng(7)
xbn = (rng.standard_normal((8, 3, 2, 2)) * 3 + 1).astype(np.float32)
bn = needle.nn.SyncBatchNorm(3, momentum=0.2)
yh = bn(xbn[r * 8 // n:(r + 1) * 8 // n])
out["bn/x"] = xbn
out["bn/y"] = dist.all_gather(np.asarray(yh))
out["bn/running"] = dist.all_gather([bn.running_mean.numpy(), bn.running_var.numpy()])

info = dist.info()
if dist.is_main():
    out["world"] = np.int64(n)
    out["info"] = np.array(repr(info))
    flat = {}
    for k, v in out.items():
        if isinstance(v, list):
            for i, e in enumerate(v):
                flat[f"{k}/{i}"] = e
        else:
            flat[k] = v
    np.savez(sys.argv[1], **flat)
