"""Benchmark (CUDA backend, first step): device time of the generated CUDA
kernels of the representative programs (tests_cuda/programs.py shapes,
scaled up), data already on the device, measured with CUDA events; and the
achieved bandwidth (bytes of the program's inputs and outputs / time).

Input: nothing (--scale multiplies the leading sizes). Output: a table.
Needs a GPU: without one (or under NUMBA_ENABLE_CUDASIM) it says so and
exits 0. Kernels are the first step's (grid-stride elementwise, one thread
per row / output element for reductions and matmul): expect bandwidth-bound
groups near peak, reductions and matmul far from it until block-per-row
reductions and tiled matmul land.

    python benchmarks/bench_cuda.py [--scale 64]
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=20)
    opts = ap.parse_args()
    from numba import config, cuda
    if config.ENABLE_CUDASIM or not cuda.is_available():
        print("bench_cuda: no GPU here (or the CUDA simulator is on): skipped")
        return 0
    sys.path.insert(0, os.path.join(ROOT, "tests_cuda"))
    import programs
    from needle.runtime.cuda_runtime import compile_cuda

    rng = np.random.default_rng(0)
    s = opts.scale
    cases = {
        "elementwise_chain": (programs.elementwise_chain, (rng.random((64 * s, 1024), np.float32),
                                                           rng.random(1024, np.float32))),
        "softmax": (programs.softmax, (rng.random((64 * s, 1024), np.float32),)),
        "layernorm": (programs.layernorm, (rng.random((64 * s, 1024), np.float32),
                                           rng.random(1024, np.float32),
                                           rng.random(1024, np.float32))),
        "batched_matmul": (programs.batched_matmul, (rng.random((8, 512, 512), np.float32),
                                                     rng.random((8, 512, 512), np.float32))),
    }
    print(f"{'program':<20} {'kernels':>7} {'ms':>9} {'GB/s':>8}")
    for name, (fn, args) in cases.items():
        opt, flat, _ = programs.traced(fn, args)
        prog = compile_cuda(opt, name)
        dev = prog.to_device(*flat)
        prog.run(*dev)                              # compile, warm up
        cuda.synchronize()
        start, stop = cuda.event(), cuda.event()
        start.record()
        for _ in range(opts.repeats):
            outs = prog.run(*dev)
        stop.record()
        stop.synchronize()
        ms = cuda.event_elapsed_time(start, stop) / opts.repeats
        nbytes = sum(x.nbytes for x in flat) + sum(o.nbytes for o in outs)
        print(f"{name:<20} {len(prog.kernels):>7} {ms:>9.3f} {nbytes / ms / 1e6:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
