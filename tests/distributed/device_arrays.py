"""Run under mpiexec with NUMBA_ENABLE_CUDASIM=1 (tests/test_distributed.py):
collectives on device arrays (`needle.Array` on 'cuda', here in Numba's CUDA
simulator), which are staged through host memory. Input: argv[1], the
output .npz path. Output (rank 0): the all_reduce sum of each rank's device
array, whether the results are device arrays again, a Module on the device
after broadcast, as every rank holds it, and dist.info()."""
import sys

import numpy as np

import needle
import needle.distributed as dist
from mlp_model import MLP

dist.init()
r = dist.rank()
x = np.arange(6, dtype=np.float32).reshape(2, 3) * (r + 1)
s = dist.all_reduce({"a": needle.device_put(x, "cuda"), "b": np.float32(r)}, op="sum")
needle.random.seed(40 + r)
model = MLP().to("cuda")
dist.broadcast(model)
w = model.fc1.weight.value
every = dist.all_gather(np.asarray(w))
if dist.is_main():
    np.savez(sys.argv[1], a=np.asarray(s["a"]), b=np.asarray(s["b"]),
             a_on_device=isinstance(s["a"], needle.Array), w_on_device=isinstance(w, needle.Array),
             w=every, info=np.array(repr(dist.info())))
