"""Run under mpiexec, or alone (tests/test_distributed.py): 20 steps of
data-parallel training of a small MLP, in the two styles a script can take.

- functional (examples/mlp.py's pattern, `--distributed`): parameters and
  momentum are pytrees; a jitted `value_and_grad` gives this rank's
  gradients, `needle.distributed.all_reduce` averages them, a jitted
  update applies SGD with momentum;
- module (the course's pattern): an MLP Module, `DistributedOptimizer(SGD)`,
  gradients from a jitted `needle.value_and_grad(loss)`, batches from
  `needle.data.DataLoader(..., sampler=DistributedSampler(...))`.

Each rank starts from different random weights and `broadcast` makes them
rank 0's; each reads its DistributedSampler shard of every global batch
(`--batch` is the global batch, each rank takes batch / world_size).
Input: argv: the output .npz path, --steps, --batch. Output (rank 0): the
final parameters of both styles as every rank holds them (all_gather), the
per-step mean losses, and a checkpoint written with save_checkpoint; one
log line per style, printed by rank 0 only.
"""
import argparse

import numpy as np

import needle
import needle.distributed as dist
import needle.nn as nn
import needle.numpy as nnp
from mlp_model import MLP, data, loss, params_of
from needle.data import DataLoader, NDArrayDataset
from needle.tree_util import tree_map

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--steps", type=int, default=20)
p.add_argument("--batch", type=int, default=8)
args = p.parse_args()

dist.init()
R = dist.world_size()
per_rank = args.batch // R
x, y = data(n=64, seed=1)
sampler = dist.DistributedSampler(len(x), seed=5, drop_last=True)


def batches():
    """This rank's minibatches, epoch after epoch (set_epoch reshuffles)."""
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        idx = np.fromiter(sampler, np.int64)
        for i in range(len(idx) // per_rank):
            b = idx[i * per_rank:(i + 1) * per_rank]
            yield x[b], y[b]
        epoch += 1


# --- functional: examples/mlp.py's pattern -------------------------------------------------

def forward(params, xb):
    (w1, b1), (w2, b2) = params
    return nn.relu(xb @ w1 + b1) @ w2 + b2


def f_loss(params, xb, yb):
    logits = forward(params, xb)
    onehot = nn.one_hot(yb, logits.shape[-1], dtype=nnp.float32)
    return -nnp.mean(nnp.sum(nn.log_softmax(logits) * onehot, axis=1))


def update(params, velocity, grads):
    velocity = tree_map(lambda v, g: np.float32(0.9) * v + g, velocity, grads)
    params = tree_map(lambda q, v: q - np.float32(0.1) * v, params, velocity)
    return params, velocity


rng = np.random.default_rng(20 + dist.rank())      # a different start per rank
params = [((rng.standard_normal((6, 8)) * 0.4).astype(np.float32), np.zeros(8, np.float32)),
          ((rng.standard_normal((8, 3)) * 0.4).astype(np.float32), np.zeros(3, np.float32))]
params = dist.broadcast(params)
velocity = tree_map(np.zeros_like, params)
grad_fn = needle.jit(needle.value_and_grad(f_loss))
update_fn = needle.jit(update)
f_losses = []
for step, (xb, yb) in zip(range(args.steps), batches()):
    value, grads = grad_fn(params, xb, yb)
    grads = dist.all_reduce(grads)                   # the one line --distributed adds
    params, velocity = update_fn(params, velocity, grads)
    f_losses.append(float(dist.all_reduce(np.asarray(value))))
dist.log(f"functional: {args.steps} steps on {R} ranks, loss {f_losses[0]:.4f} -> "
         f"{f_losses[-1]:.4f}")

# --- module: the course's pattern ------------------------------------------------------------
needle.random.seed(30 + dist.rank())
model = MLP()
opt = dist.DistributedOptimizer(needle.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
dist.broadcast((model, opt))
m_grad = needle.jit(needle.value_and_grad(loss))
loader = DataLoader(NDArrayDataset(x, y), batch_size=per_rank, drop_last=True,
                    sampler=dist.DistributedSampler(len(x), seed=5, drop_last=True))
m_losses = []


def loader_batches():
    while True:                          # the loader calls sampler.set_epoch(0, 1, ...)
        yield from loader


for step, (xb, yb) in zip(range(args.steps), loader_batches()):
    value, g = m_grad(model, xb, yb)
    opt.step(g)
    m_losses.append(float(dist.all_reduce(np.asarray(value))))
dist.log(f"module: {args.steps} steps on {R} ranks, loss {m_losses[0]:.4f} -> "
         f"{m_losses[-1]:.4f}")

flat = [np.asarray(a) for a in needle.tree_util.tree_leaves(params)]
mp = params_of(model)
every = dist.all_gather({"functional": flat, "module": mp})
dist.save_checkpoint(model, args.out + ".ckpt.npz")
if dist.is_main():
    out = {"world": np.int64(R), "f_losses": np.array(f_losses), "m_losses": np.array(m_losses)}
    for i, a in enumerate(every["functional"]):
        out[f"functional/{i}"] = a
    for k, a in every["module"].items():
        out[f"module/{k}"] = a
    np.savez(args.out, **out)
