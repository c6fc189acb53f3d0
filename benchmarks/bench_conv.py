"""Convolution forward + backward: conv's gradient as convolutions (its
custom reverse rule, needle.nn.functional.CONV_VJP = True) against autodiff
of im2col (col2im scatters; CONV_VJP = False), issue 13.

Workload: jit(grad(sum(conv(x, w)**2), argnums=(0, 1))) on float32 NHWC /
HWIO shapes of the ConvNet (3x3, stride 1 and 2, padding 1). Per path and
shape:
- cold: the first call in a fresh process with an empty kernel cache
  (trace, passes, codegen, every Numba compile);
- kernels / BLAS: kernel launches and library calls of the lowered program;
- step: the median of --repeats calls, both paths in one process,
  interleaved (timeit_side_by_side).
"new" is the rule on every row; by default a strided conv and one with
C_out > 2 C_in keep the old path (CONV_VJP_MAX_STRIDE, CONV_VJP_MAX_GROWTH),
which those rows show is faster there.
Both paths' gradients are checked against each other before timing.

The first table (--table direct): stride-1 convolutions as the conv
primitive (needle.nn.functional.DIRECT_CONV = True, the default: blocked
direct kernels on the CPU, codegen/cpu/conv.py) against the im2col path
the other tables measure, forward and both gradients, interleaved. The
rule and im2col tables pin DIRECT_CONV = False.

A further table (--table im2col) times conv's im2col itself, each row's
default path (no override): the patches as one gather of C_in-element rows
(needle.nn.functional.IM2COL_GATHER = True) against a stack of K strided
slices (False; what the rows above use on both paths before it), for the
forward alone, the gradient of both operands and of the kernel alone, all
in one process, interleaved.

Run: python benchmarks/bench_conv.py [--small] [--repeats N]
[--table direct|rule|im2col|both|all]
(OPENBLAS_NUM_THREADS / NUMBA_NUM_THREADS as you want them: set them to 1
for the one-thread rows of issue 13.)
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SHAPES = [  # (batch, H, W, C_in, C_out, kernel, stride)
    (32, 32, 32, 3, 16, 3, 1),
    (32, 32, 32, 16, 16, 3, 1),
    (32, 16, 16, 32, 32, 3, 1),
    (32, 32, 32, 64, 64, 3, 1),
    (32, 32, 32, 16, 32, 3, 1),
    (32, 32, 32, 8, 32, 3, 1),
    (32, 16, 16, 32, 64, 3, 2),
]
SMALL = [(2, 8, 8, 3, 4, 3, 1), (2, 8, 8, 4, 4, 3, 2)]


def _program(shape):
    import needle
    import needle.numpy as nnp
    from needle.nn import conv
    b, h, w_, ci, co, k, s = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, h, w_, ci)).astype(np.float32)
    w = (rng.standard_normal((k, k, ci, co)) / np.sqrt(k * k * ci)).astype(np.float32)

    def loss(x, w):
        return nnp.sum(conv(x, w, stride=s, padding=1) ** 2)
    return needle.jit(needle.grad(loss, argnums=(0, 1))), x, w


def _set_path(fast):
    import needle.nn.functional as F
    F.DIRECT_CONV = False         # these tables compare im2col paths
    F.CONV_VJP = fast
    F.CONV_VJP_MAX_STRIDE = 3     # the rule on every row (not the default for
    F.CONV_VJP_MAX_GROWTH = 8     # strided convs and C_out > 2 C_in)


def child_cold(shape, fast):
    _set_path(fast)
    f, x, w = _program(shape)
    t0 = time.perf_counter()
    r = f(x, w)
    np.asarray(r[0])
    cold = time.perf_counter() - t0
    lo = f.lower(x, w)
    print(json.dumps({"cold": cold, "kernels": lo.kernel_count,
                      "blas": lo.library_call_count}))


def child_steps(shape, repeats):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import timeit_side_by_side
    fns, outs = {}, {}
    for fast in (True, False):
        _set_path(fast)
        f, x, w = _program(shape)
        outs[fast] = [np.asarray(v) for v in f(x, w)]
        fns[fast] = (lambda f=f, x=x, w=w: f(x, w))
    for a, b in zip(outs[True], outs[False]):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3 * np.abs(b).max())
    t = timeit_side_by_side(fns, repeats=repeats)
    print(json.dumps({"new": t[True], "old": t[False]}))


def _flag_table(shape, repeats, flag, labels, grad_w=True, pinned=()):
    """{case: {label: median step seconds}} for the two settings of
    needle.nn.functional's `flag` (True, False: `labels`), read when a case is
    traced, every case's two programs checked against each other and timed
    side by side; `pinned`: other flags set for both."""
    import needle
    import needle.numpy as nnp
    import needle.nn.functional as F
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import timeit_side_by_side
    b, h, w_, ci, co, k, s = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, h, w_, ci)).astype(np.float32)
    w = (rng.standard_normal((k, k, ci, co)) / np.sqrt(k * k * ci)).astype(np.float32)

    def loss(x, w):
        return nnp.sum(F.conv(x, w, stride=s, padding=1) ** 2)
    cases = {"fwd": lambda: needle.jit(lambda x, w: F.conv(x, w, stride=s, padding=1)),
             "grad x,w": lambda: needle.jit(needle.grad(loss, argnums=(0, 1)))}
    if grad_w:
        cases["grad w"] = lambda: needle.jit(needle.grad(loss, argnums=1))
    for name, value in pinned:
        setattr(F, name, value)
    res = {}
    for case, make in cases.items():
        fns, outs = {}, {}
        for on in (True, False):
            setattr(F, flag, on)
            f = make()
            r = f(x, w)
            outs[on] = [np.asarray(v) for v in (r if isinstance(r, (tuple, list)) else [r])]
            fns[on] = (lambda f=f: f(x, w))
        setattr(F, flag, True)
        for a, b_ in zip(outs[True], outs[False]):
            np.testing.assert_allclose(a, b_, rtol=2e-3, atol=2e-3 * np.abs(b_).max())
        t = timeit_side_by_side(fns, repeats=repeats)
        res[case] = {labels[0]: t[True], labels[1]: t[False]}
    return res


def child_im2col(shape, repeats):
    """{case: {gather, slices}} median step seconds, the im2col paths."""
    print(json.dumps(_flag_table(shape, repeats, "IM2COL_GATHER", ("gather", "slices"),
                                 pinned=[("DIRECT_CONV", False)])))


def child_direct(shape, repeats):
    """{case: {direct, im2col}} median step seconds: the conv primitive's
    direct kernels (DIRECT_CONV, stride 1) against the default im2col path."""
    print(json.dumps(_flag_table(shape, repeats, "DIRECT_CONV", ("direct", "im2col"),
                                 grad_w=False)))


def _run(args):
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as d:
        env["NEEDLE_CACHE_DIR"] = d
        out = subprocess.run([sys.executable, __file__] + args, env=env, check=True,
                             capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--table", choices=("rule", "im2col", "direct", "both", "all"),
                    default="all")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, shape, extra = json.loads(a.child)
        if kind == "cold":
            child_cold(tuple(shape), extra)
        elif kind == "im2col":
            child_im2col(tuple(shape), extra)
        elif kind == "direct":
            child_direct(tuple(shape), extra)
        else:
            child_steps(tuple(shape), extra)
        return
    if a.table in ("direct", "all"):
        print("| shape (B,H,W,Cin,Cout,k,s) | fwd direct | fwd im2col | grad x,w direct | "
              "grad x,w im2col | im2col/direct (fwd, x,w) |")
        print("|---|---|---|---|---|---|")
        for shape in (SMALL if a.small else SHAPES):
            if shape[-1] != 1:
                continue                        # the conv primitive is stride 1
            r = _run(["--child", json.dumps(["direct", shape, a.repeats])])
            cells = [f"{r[c][p] * 1e3:.2f} ms" for c in r for p in ("direct", "im2col")]
            ratios = ", ".join(f"{r[c]['im2col'] / r[c]['direct']:.2f}" for c in r)
            print(f"| {tuple(shape)} | " + " | ".join(cells) + f" | {ratios} |", flush=True)
    if a.table in ("rule", "both", "all"):
        _rule_table(a)
    if a.table in ("im2col", "both", "all"):
        print("\n| shape (B,H,W,Cin,Cout,k,s) | fwd gather | fwd slices | grad x,w gather | "
              "grad x,w slices | grad w gather | grad w slices | slices/gather (fwd, x,w, w) |")
        print("|---|---|---|---|---|---|---|---|")
        for shape in (SMALL if a.small else SHAPES):
            r = _run(["--child", json.dumps(["im2col", shape, a.repeats])])
            cells = [f"{r[c][p] * 1e3:.2f} ms" for c in r for p in ("gather", "slices")]
            ratios = ", ".join(f"{r[c]['slices'] / r[c]['gather']:.2f}" for c in r)
            print(f"| {tuple(shape)} | " + " | ".join(cells) + f" | {ratios} |", flush=True)


def _rule_table(a):
    print("| shape (B,H,W,Cin,Cout,k,s) | cold new | cold old | kernels new/old | "
          "BLAS new/old | step new | step old | old/new step |")
    print("|---|---|---|---|---|---|---|---|")
    for shape in (SMALL if a.small else SHAPES):
        new = _run(["--child", json.dumps(["cold", shape, True])])
        old = _run(["--child", json.dumps(["cold", shape, False])])
        st = _run(["--child", json.dumps(["steps", shape, a.repeats])])
        print(f"| {tuple(shape)} | {new['cold']:.2f} s | {old['cold']:.2f} s | "
              f"{new['kernels']}/{old['kernels']} | {new['blas']}/{old['blas']} | "
              f"{st['new'] * 1e3:.2f} ms | {st['old'] * 1e3:.2f} ms | "
              f"{st['old'] / st['new']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
