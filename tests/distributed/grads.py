"""Run under mpiexec (tests/test_distributed.py): every rank computes the
gradient of the mean loss on its half of one batch; the gradients are
averaged with all_reduce (functional), with DistributedOptimizer
.averaged_grads (a gradient Module) and through DistributedOptimizer.step()
reading each parameter's .grad (the course's path). Input: argv[1], the
output .npz path. Output (rank 0): the batch, the initial parameters, the
averaged gradients of each path, and the parameters after one SGD step."""
import sys

import numpy as np

import needle
import needle.distributed as dist
from mlp_model import MLP, data, loss, params_of

dist.init()
r, n = dist.rank(), dist.world_size()
needle.random.seed(10 + r)                 # different initial weights: broadcast fixes them
model = MLP()
dist.broadcast(model)
x, y = data(n=16)
half = slice(r * len(x) // n, (r + 1) * len(x) // n)
g = needle.grad(loss)(model, x[half], y[half])
avg = dist.all_reduce(g)                   # a gradient Module, averaged
names = [k for k, _ in model.named_parameters()]
functional = {k: np.asarray(getattr(getattr(avg, k.split(".")[0]), k.split(".")[1]).numpy())
              for k in names}

opt = dist.DistributedOptimizer(needle.optim.SGD(model.parameters(), lr=1.0))
via_opt = dict(zip(names, [np.asarray(a) for a in opt.averaged_grads(g)]))
before = params_of(model)
local = dict(zip(names, [np.asarray(v) for v in opt.optimizer._grads(g)]))
for p, k in zip(model.parameters(), names):      # course-style: .grad set by loss.backward()
    p.grad = needle.Tensor(local[k])
opt.step()
after = params_of(model)
if dist.is_main():
    out = {"x": x, "y": y, "world": np.int64(n)}
    for k in names:
        out["p0/" + k] = before[k]
        out["functional/" + k] = functional[k]
        out["opt/" + k] = via_opt[k]
        out["after/" + k] = after[k]
    np.savez(sys.argv[1], **out)
