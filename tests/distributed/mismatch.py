"""Run under mpiexec: rank 1 builds its MLP with another hidden size, so
broadcast must fail on every rank, naming the first differing parameter.
Input: argv[1], an output path prefix. Output: per rank R, the file
<prefix>.R.txt holding "<error class>: <message>" (or "no error")."""
import sys

import needle.distributed as dist
from mlp_model import MLP

dist.init()
model = MLP(hidden=8 if dist.rank() == 0 else 9)
try:
    dist.broadcast(model)
    msg = "no error"
except dist.BroadcastMismatchError as e:
    msg = f"{type(e).__name__}: {e}"
with open(f"{sys.argv[1]}.{dist.rank()}.txt", "w") as f:
    f.write(msg)
