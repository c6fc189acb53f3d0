"""Stage codegen (CPU): float matrix products on the direct convolution's
blocked kernel, where it beats OpenBLAS.

Input: the avals of a dot_general x (M, K) @ y (K, N) (no transposes, no
batch axes), the runtime's allocator and kernel services.
Output: the host function `call(x, y, out=None)` (`writes_into`), or None
where the product stays with BLAS.

A matrix product is a 1x1 convolution: output pixels are x's rows, input
channels its columns. The conv kernel's 8-row x V-column blocks with
explicit vectors (codegen/cpu/conv.py) ran every shape measured on one
core (M 16-512, K 64-784, N 64-512, float32) at 102-117 GFLOP/s, against
64-106 for OpenBLAS, and 1.5-1.9x faster on the skinny products of an RNN
step (16 x 128 by 128 x 512: 18 vs 28 us; the LSTM LM's scan does two per
time step). It has no blocking over K, so a y larger than SMALL_GEMM_BYTES
(which must stay in the cache while every row block streams it) goes to
BLAS, as does a product whose N is not a multiple of 32 bytes' worth of
lanes (vectors of 4 or fewer floats: 256 x 512 by 512 x 10 took 121 us,
OpenBLAS 53), and any operand that is not row-major at run time (a strided
view from a loop's stacked input: checked per call, one flag test each).
Rows split across threads in blocks of 8.
"""
import numpy as np

from .conv import FWD_ROWS, lanes, fwd_source

SMALL_GEMM = True                 # False: every product on BLAS (benchmarks)
SMALL_GEMM_BYTES = 1 << 20        # y's size limit


def small_gemm_call(a, b, out, allocator, kernels):
    """The blocked-kernel product of avals a (M, K) @ b (K, N), or None."""
    (m, k), (_, n) = a.shape, b.shape
    dtype = out.dtype
    if not SMALL_GEMM or dtype.name not in ("float32", "float64") or \
            a.dtype != dtype or b.dtype != dtype or k * n * dtype.itemsize > SMALL_GEMM_BYTES \
            or min(m, k, n) == 0:
        return None
    if lanes(dtype, n) * dtype.itemsize < 32:
        return None             # N not a multiple of 8 floats: BLAS was faster (256x512x10)
    fn = kernels.load(fwd_source(dtype, n))
    r = FWD_ROWS
    rows, rest = divmod(m, r)
    taps = np.zeros(1, np.int64)
    rowbase = np.arange(rows, dtype=np.int64) * (r * k)
    dims = np.array([r, k, n], np.int64)
    run = kernels.split(fn, rows, m * n * k // 16)
    tail = (np.zeros(1, np.int64), np.array([rest, k, n], np.int64), rows * r * k,
            rows * r * n) if rest else None
    alloc = allocator(out.shape, dtype)

    def call(x, y, out=None):
        res = alloc() if out is None else out
        if not (x.flags.c_contiguous and y.flags.c_contiguous and res.flags.c_contiguous):
            np.matmul(x, y, out=res)
            return res
        xf, yf, of = x.reshape(-1), y.reshape(-1), res.reshape(-1)
        if rows:
            run(xf, yf, of, rowbase, taps, dims)
        if tail is not None:
            base, tdims, xo, oo = tail
            fn(xf[xo:], yf, of[oo:], base, taps, tdims, 0, 1)
        return res
    call.writes_into = True
    return call
