"""Benchmark (CUDA backend): device time of needle's generated CUDA kernels
on workloads the size of a real model's, data already on the device,
measured with CUDA events; achieved bandwidth (the bytes a program must
read and write: its inputs and outputs once) and FLOP/s, each against the
device's theoretical peak (runtime/cuda_inspect.device_peaks: DRAM clock x
bus width, SMs x FP32 lanes x 2 x clock). With PyTorch installed, the same
workloads in PyTorch side by side (ratio = torch time / needle time, >1
means needle is faster).

Input: --scale (rows of the row-wise workloads = 64 x scale), --repeats.
Output: a table. Needs a GPU: without one (or under NUMBA_ENABLE_CUDASIM)
it says so and exits 0.

    python benchmarks/bench_cuda.py [--scale 256] [--repeats 20]
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.abspath(os.path.dirname(__file__)))


def _workloads(s, rng, d=1024, n=4096, bn=1024, b=1024, din=784, h=1024):
    """name -> (function, arguments, flops of one call). Rows of the row-wise
    workloads: 64 * s of d features; matmuls n^3 and 8 x bn^3; the MLP
    din-h-10 at batch b (tests_cuda runs them tiny in the simulator)."""
    sys.path.insert(0, os.path.join(ROOT, "tests_cuda"))
    import programs
    import needle.nn as nnn
    import needle.numpy as nnp
    r = lambda *shape: rng.standard_normal(shape).astype(np.float32)   # noqa: E731
    rows, k = 64 * s, 10
    labels = rng.integers(0, k, b).astype(np.int32)
    return {
        "elementwise_chain": (programs.elementwise_chain, (r(rows, d), r(d)), 0),
        "softmax": (programs.softmax, (r(rows, d),), 0),
        "layernorm": (programs.layernorm, (r(rows, d), r(d), r(d)), 0),
        "sum_of_squares": (lambda x: nnp.sum(x * x), (r(rows, d),), 0),
        f"matmul {n}^3": (programs.batched_matmul, (r(n, n), r(n, n)), 2 * n ** 3),
        f"batched_matmul 8x{bn}^3": (programs.batched_matmul, (r(8, bn, bn), r(8, bn, bn)),
                                     2 * 8 * bn ** 3),
        f"relu(x@w+b) {n}^3": (lambda x, w, bb: nnn.relu(x @ w + bb),
                               (r(n, n), r(n, n), r(n)), 2 * n ** 3),
        f"mlp fwd+bwd {din}-{h}-{k} b{b}": (
            programs.mlp_forward_backward,
            (r(din, h) * 0.05, r(h), r(h, k) * 0.05, r(k), r(b, din), labels),
            3 * 2 * b * (din * h + h * k)),
    }


def _torch_versions():
    """The same workloads in PyTorch, or {} without it."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return {}

    def ln(x, g, bb):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * g + bb
    return {
        "elementwise_chain": lambda x, y: torch.tanh(x * 2.0 + y) * torch.sigmoid(y)
        - torch.exp(-x * x) / (1.0 + y.abs()),
        "softmax": lambda x: torch.softmax(x, -1),
        "layernorm": ln,
        "sum_of_squares": lambda x: (x * x).sum(),
        "matmul": torch.matmul,
        "batched_matmul": torch.matmul,
        "relu(x@w+b)": lambda x, w, bb: F.relu(x @ w + bb),
    }


def _time(fn, repeats):
    """Milliseconds per call of fn() on the device (CUDA events)."""
    from numba import cuda
    fn()
    cuda.synchronize()
    start, stop = cuda.event(), cuda.event()
    start.record()
    for _ in range(repeats):
        fn()
    stop.record()
    stop.synchronize()
    return cuda.event_elapsed_time(start, stop) / repeats


def _time_torch(fn, args, repeats):
    import torch
    fn(*args)
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn(*args)
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / repeats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=20)
    opts = ap.parse_args()
    from numba import config, cuda
    if config.ENABLE_CUDASIM or not cuda.is_available():
        print("bench_cuda: no GPU here (or the CUDA simulator is on): skipped")
        return 0
    from needle.runtime.cuda_inspect import device_peaks
    from needle.lowering import cuda_program as compile_cuda

    peaks = device_peaks(cuda.get_current_device())
    bw, fl = peaks["bandwidth_GBps"], peaks["fp32_GFLOPs"]
    print(f"device: {peaks['name']} (sm_{peaks['cc'][0]}{peaks['cc'][1]}), peak DRAM "
          f"{bw:.0f} GB/s, peak FP32 {fl / 1e3 if fl else float('nan'):.1f} TFLOP/s")
    torch_fns = _torch_versions()
    head = f"{'workload':<34} {'kernels':>7} {'ms':>8} {'GB/s':>7} {'%bw':>5} {'TFLOP/s':>8} " \
           f"{'%fp32':>6}"
    print(head + (f" {'torch ms':>9} {'torch/needle':>12}" if torch_fns else ""))
    rng = np.random.default_rng(0)
    for name, (fn, args, flops) in _workloads(opts.scale, rng).items():
        opt, flat, _ = _trace(fn, args)
        prog = compile_cuda(opt, name)
        dev = prog.to_device(*flat)
        outs = prog.run(*dev)
        ms = _time(lambda: prog.run(*dev), opts.repeats)
        nbytes = sum(x.nbytes for x in flat) + sum(o.nbytes for o in outs)
        gbs = nbytes / ms / 1e6
        tf = flops / ms / 1e9 if flops else 0.0
        row = (f"{name:<34} {len(prog.kernels):>7} {ms:>8.3f} {gbs:>7.0f} "
               f"{100 * gbs / bw:>4.0f}% "
               + (f"{tf:>8.1f} {100 * tf * 1e3 / fl:>5.0f}%" if flops and fl else
                  f"{'-':>8} {'-':>6}"))
        key = name.split(" ")[0]
        if key in torch_fns:
            import torch
            targs = [torch.as_tensor(a, device="cuda") for a in args]
            tms = _time_torch(torch_fns[key], targs, opts.repeats)
            row += f" {tms:>9.3f} {tms / ms:>11.2f}x"
        print(row)
    return 0


def _trace(fn, args):
    """(optimised graph, flat arguments, None): no interpreter reference at
    these sizes (the tests check the values at small sizes)."""
    import needle
    from needle.passes import run_pipeline
    cg = needle.make_ir(fn)(*args)
    opt, _ = run_pipeline(cg)
    return opt, needle.tree_util.tree_leaves(list(args)), None


if __name__ == "__main__":
    sys.exit(main())
