"""Run under mpiexec: rank 1 fails while rank 0 waits in a collective it
would wait in forever; init()'s hooks must abort the job
(tests/test_distributed.py times it). Input: argv[1], how rank 1 fails:
"raise" (an uncaught exception) or "exit" (sys.exit(3)). Output: rank 1's
traceback or exit and needle.distributed's abort line on stderr; exit
status != 0."""
import sys
import time

import numpy as np

import needle.distributed as dist

dist.init()
if dist.rank() == 1:
    time.sleep(0.3)
    if sys.argv[1] == "raise":
        raise RuntimeError("rank 1 fails on purpose")
    sys.exit(3)
dist.all_reduce([np.ones(4, np.float32)])   # rank 1 never joins
print("rank 0 was not aborted", flush=True)
