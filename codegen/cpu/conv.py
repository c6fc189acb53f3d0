"""Stage codegen (CPU): the direct convolution library calls (conv,
conv_wgrad of ir/primitives/conv.py) as blocked, explicitly vectorised
Numba kernels.

Input: a conv or conv_wgrad equation, the runtime's buffer allocator and
its kernel services (`load`: a KernelSource -> the compiled kernel, from
the kernel cache; `split`: run a kernel's rows in chunks on threads).
Output: the host function computing the equation (`call(x, w)`; with
`writes_into`, `call(x, w, out)` writes into a given buffer).

Why not im2col + BLAS: channels-last patches are K times the input (9x for
3x3), written by one kernel and read back by a GEMM whose skinny shapes
(C_out 16-64) OpenBLAS runs at 30-75 GFLOP/s on one core, memory-bound on
patches that left the cache. A direct kernel reads the input in place.

The kernels: the input is padded once into a buffer (zero borders, the
interior copied; crops are views), so every tap of every output position
is in bounds. Its spatial grid is flattened: output row `o` (batch and all
spatial axes but the last) starts reading at `rowbase[o]`, and kernel tap
`t` adds the constant `taps[t]` (elements). The microkernels are LLVM IR
written through `numba.extending.intrinsic` with explicit `<V x float>`
vectors (LLVM's own vectorisers, tried on generated scalar code, ran these
loops at 6-50 GFLOP/s):
- conv: R=8 consecutive output pixels x V output channels in R vector
  accumulators; per (tap, input channel) one vector load of w and R
  broadcast loads of x: 8 FMAs per 9 loads, ~117 GFLOP/s on one core
  (AVX-512) for 3x3 16-64 channel layers, against 37-97 for the GEMM
  alone on hot im2col patches.
- conv_wgrad: for one tap, RC=16 input channels x V output channels in RC
  accumulators, summed over a chunk of ~512 output positions (one vector
  load of g and RC broadcasts of x per position) and added into dw; every
  (tap, channel block) runs over one chunk before the next, so the chunk's
  x and g are read from the cache, not memory (summing all positions per
  block streamed them once per block: 144 times for a 64 -> 64 layer).
V is the widest vector (16 float32 / 8 float64 lanes, down to 1) dividing
C_out; every shape is computed, the odd ones with narrower vectors. Each
module is specialised only to (dtype, V, R or RC and its tail), so the
layers of a network share a few compiled kernels; shapes are arguments.
Rows (conv) or taps (conv_wgrad) split across threads like a kernel's.
"""
import numpy as np

from .. import loops
from ...ir.primitives.conv import conv_out_shape

# microkernel blocking (see the module docstring)
FWD_ROWS = 8            # output pixels per conv block
WGRAD_CHANNELS = 16     # input channels per conv_wgrad block
WGRAD_CHUNK = 512       # output positions summed per pass over every block

_HEADER = '''"""needle CPU kernel {what}: generated; do not edit."""
import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

V = {v}


def _arrays(context, builder, types_, values):
    return [context.make_array(t)(context, builder, a) for t, a in zip(types_, values)]


def _vec(builder, ptr, off, vt):
    """A pointer to the vector at element `off` of `ptr`."""
    return builder.bitcast(builder.gep(ptr, [off]), vt.as_pointer())


def _splat(builder, s, vt):
    sv = builder.insert_element(ir.Constant(vt, ir.Undefined), s, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(sv, ir.Constant(vt, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), V), [0] * V))


def _fma(builder, a, b, c):
    return builder.fadd(c, builder.fmul(a, b, flags=('contract',)), flags=('contract',))
'''

_FWD = '''

def _block(R):
    """out[ooff + r*co + co0 + l] = sum_t sum_c x[xoff + taps[t] + r*xstep + c]
    * w[(t*ci + c)*co + co0 + l], r < R, l < V."""
    @intrinsic
    def block(typingctx, x, xoff, xstep, taps, ci, w, co, co0, out, ooff):
        sig = numba.types.void(x, xoff, xstep, taps, ci, w, co, co0, out, ooff)

        def codegen(context, builder, sig, args):
            x, xoff, xstep, taps, ci, w, co, co0, out, ooff = args
            xa, ta, wa, oa = _arrays(context, builder, [sig.args[i] for i in (0, 3, 5, 8)],
                                     [x, taps, w, out])
            ft = context.get_data_type(sig.args[0].dtype)
            vt = ir.VectorType(ft, V)
            al = context.get_abi_sizeof(ft)
            i64 = ir.IntType(64)
            accs = [cgutils.alloca_once_value(builder, ir.Constant(vt, [0.0] * V))
                    for r in range(R)]
            with cgutils.for_range(builder, ta.nitems) as lt:
                xb = builder.add(xoff, builder.load(builder.gep(ta.data, [lt.index])))
                wt = builder.mul(lt.index, ci)
                with cgutils.for_range(builder, ci) as lc:
                    xc = builder.add(xb, lc.index)
                    wrow = builder.add(builder.mul(builder.add(wt, lc.index), co), co0)
                    wv = builder.load(_vec(builder, wa.data, wrow, vt), align=al)
                    for r in range(R):
                        xi = builder.add(xc, builder.mul(xstep, ir.Constant(i64, r)))
                        s = _splat(builder, builder.load(builder.gep(xa.data, [xi])), vt)
                        builder.store(_fma(builder, s, wv, builder.load(accs[r])), accs[r])
            for r in range(R):
                ob = builder.add(builder.add(ooff, builder.mul(co, ir.Constant(i64, r))), co0)
                builder.store(builder.load(accs[r]), _vec(builder, oa.data, ob, vt),
                              align=al)
            return context.get_dummy_value()
        return sig, codegen
    return block


R = {r}
block_r, block_1 = _block(R), _block(1)


@numba.njit({sig!r}, cache=True, error_model='numpy', nogil=True, no_cfunc_wrapper=True)
def kernel(x, w, out, rowbase, taps, dims, lo, hi):
    wo, ci, co = dims[0], dims[1], dims[2]
    for o in range(lo, hi):
        xb = rowbase[o]
        ob = o * wo * co
        j = 0
        while j + R <= wo:
            for co0 in range(0, co, V):
                block_r(x, xb + j * ci, ci, taps, ci, w, co, co0, out, ob + j * co)
            j += R
        while j < wo:
            for co0 in range(0, co, V):
                block_1(x, xb + j * ci, ci, taps, ci, w, co, co0, out, ob + j * co)
            j += 1
'''

_WGRAD = '''

def _block(RC):
    """dw[doff + c*co + co0 + l] (+)= sum over r0 <= o < r1, j of
    x[rowbase[o] + j*ci + xoff + c] * g[(o*wo + j)*co + co0 + l], c < RC,
    l < V; added to dw's values when acc_in is nonzero."""
    @intrinsic
    def block(typingctx, x, rowbase, r0, r1, wo, ci, xoff, g, co, co0, dw, doff, acc_in):
        sig = numba.types.void(x, rowbase, r0, r1, wo, ci, xoff, g, co, co0, dw, doff, acc_in)

        def codegen(context, builder, sig, args):
            x, rowbase, r0, r1, wo, ci, xoff, g, co, co0, dw, doff, acc_in = args
            xa, ra, ga, da = _arrays(context, builder, [sig.args[i] for i in (0, 1, 7, 10)],
                                     [x, rowbase, g, dw])
            ft = context.get_data_type(sig.args[0].dtype)
            vt = ir.VectorType(ft, V)
            al = context.get_abi_sizeof(ft)
            i64 = ir.IntType(64)
            zero = ir.Constant(vt, [0.0] * V)
            keep = builder.icmp_signed('!=', acc_in, ir.Constant(acc_in.type, 0))
            accs = []
            for c in range(RC):
                p = builder.add(builder.add(doff, builder.mul(co, ir.Constant(i64, c))), co0)
                old = builder.load(_vec(builder, da.data, p, vt), align=al)
                accs.append(cgutils.alloca_once_value(builder, builder.select(keep, old, zero)))
            with cgutils.for_range(builder, builder.sub(r1, r0)) as lr:
                o = builder.add(lr.index, r0)
                xr = builder.add(builder.load(builder.gep(ra.data, [o])), xoff)
                gr = builder.add(builder.mul(builder.mul(o, wo), co), co0)
                with cgutils.for_range(builder, wo) as lj:
                    xj = builder.add(xr, builder.mul(lj.index, ci))
                    gv = builder.load(_vec(builder, ga.data, builder.add(gr, builder.mul(
                        lj.index, co)), vt), align=al)
                    for c in range(RC):
                        s = builder.load(builder.gep(xa.data, [builder.add(
                            xj, ir.Constant(i64, c))]))
                        builder.store(_fma(builder, _splat(builder, s, vt), gv,
                                           builder.load(accs[c])), accs[c])
            for c in range(RC):
                p = builder.add(builder.add(doff, builder.mul(co, ir.Constant(i64, c))), co0)
                builder.store(builder.load(accs[c]), _vec(builder, da.data, p, vt), align=al)
            return context.get_dummy_value()
        return sig, codegen
    return block


RC, TAIL, CHUNK = {rc}, {tail}, {chunk}
block_main = _block(RC)
block_tail = _block(TAIL) if TAIL else None


@numba.njit({sig!r}, cache=True, error_model='numpy', nogil=True, no_cfunc_wrapper=True)
def kernel(x, g, dw, rowbase, taps, dims, lo, hi):
    wo, ci, co = dims[0], dims[1], dims[2]
    nrows = rowbase.size
    step = max(1, CHUNK // max(wo, 1))      # output rows whose x and g stay in the cache
    r0 = 0
    while True:
        r1 = min(nrows, r0 + step)
        acc = 1 if r0 > 0 else 0
        for t in range(lo, hi):
            toff = taps[t]
            c0 = 0
            while c0 + RC <= ci:
                for co0 in range(0, co, V):
                    block_main(x, rowbase, r0, r1, wo, ci, toff + c0, g, co, co0, dw,
                               (t * ci + c0) * co, acc)
                c0 += RC
            if TAIL and c0 < ci:
                for co0 in range(0, co, V):
                    block_tail(x, rowbase, r0, r1, wo, ci, toff + c0, g, co, co0, dw,
                               (t * ci + c0) * co, acc)
        r0 = r1
        if r0 >= nrows:
            break
'''


def lanes(dtype, co):
    """The widest vector (a power of two, at most 64 bytes) dividing co."""
    v = 64 // np.dtype(dtype).itemsize
    while co % v:
        v //= 2
    return v


def _signature(dtype):
    t = np.dtype(dtype).name                    # float32 / float64: the primitives' dtypes
    return f"void({t}[::1], {t}[::1], {t}[::1], int64[::1], int64[::1], int64[::1], int64, int64)"


def fwd_source(dtype, co):
    v = lanes(dtype, co)
    src = _HEADER.format(what=f"conv_{np.dtype(dtype).name}_v{v}", v=v) + \
        _FWD.format(r=FWD_ROWS, sig=_signature(dtype))
    return loops.KernelSource(f"conv_v{v}", src, _signature(dtype))


def wgrad_source(dtype, ci, co):
    v = lanes(dtype, co)
    rc = min(WGRAD_CHANNELS, max(ci, 1))
    src = _HEADER.format(what=f"conv_wgrad_{np.dtype(dtype).name}_v{v}", v=v) + \
        _WGRAD.format(rc=rc, tail=ci % rc, chunk=WGRAD_CHUNK, sig=_signature(dtype))
    return loops.KernelSource(f"conv_wgrad_v{v}", src, _signature(dtype))


# --- the host side: padding, row tables, the calls -------------------------------------

def _tables(padded, out, ci, kernel):
    """(rowbase, taps): the flat offset (elements) of each output row's first
    input pixel in the padded input, and of each kernel tap."""
    b, sp = padded[0], padded[1:-1]
    pix = np.ones(len(sp), np.int64)              # pixel strides of the padded grid
    for d in range(len(sp) - 2, -1, -1):
        pix[d] = pix[d + 1] * sp[d + 1]
    per_image = int(np.prod(sp))
    lead = [np.arange(o, dtype=np.int64) * pix[d] for d, o in enumerate(out[:-1])]
    grid = np.zeros(1, np.int64)
    for a in lead:
        grid = (grid[:, None] + a[None, :]).reshape(-1)
    rowbase = ((np.arange(b, dtype=np.int64) * per_image)[:, None] + grid[None, :]).reshape(-1)
    taps = np.zeros(1, np.int64)
    for d, k in enumerate(kernel):
        taps = (taps[:, None] + np.arange(k, dtype=np.int64)[None, :] * pix[d]).reshape(-1)
    return rowbase * ci, taps * ci


def _padder(shape, dtype, padding, allocator):
    """x -> x padded (zero borders; negative entries crop) in a pooled
    buffer, or x itself (contiguous) when there is nothing to pad."""
    crop = (slice(None),) + tuple(slice(max(-lo, 0), s - max(-hi, 0))
                                  for s, (lo, hi) in zip(shape[1:-1], padding)) + (slice(None),)
    cropping = any(lo < 0 or hi < 0 for lo, hi in padding)
    pads = [(max(lo, 0), max(hi, 0)) for lo, hi in padding]
    if not any(lo or hi for lo, hi in pads):
        return (lambda x: np.ascontiguousarray(x[crop])) if cropping else np.ascontiguousarray
    inner = [s - max(-lo, 0) - max(-hi, 0) for s, (lo, hi) in zip(shape[1:-1], padding)]
    full = (shape[0],) + tuple(i + lo + hi for i, (lo, hi) in zip(inner, pads)) + shape[-1:]
    alloc = allocator(full, dtype)
    interior = (slice(None),) + tuple(slice(lo, lo + i) for i, (lo, _) in zip(inner, pads)) \
        + (slice(None),)
    borders = []
    for d, (lo, hi) in enumerate(pads):
        for sl in ((slice(0, lo) if lo else None),
                   (slice(full[d + 1] - hi, full[d + 1]) if hi else None)):
            if sl is not None:
                borders.append((slice(None),) * (d + 1) + (sl,))

    def pad(x):
        xp = alloc()
        for b in borders:
            xp[b] = 0
        xp[interior] = x[crop] if cropping else x
        return xp
    return pad


def _need(kernels, e):
    if kernels is None:
        raise RuntimeError(f"{e.prim.name}: this runtime gives library calls no kernel "
                           f"services (codegen/backend.py library_call)")


def _call(run, pad, alloc, rowbase, taps, dims):
    """The host function of a conv / conv_wgrad call: x padded, the second
    operand (w or g) and the result flat, into a pooled buffer or `out`."""
    def call(x, y, out=None):
        r = alloc() if out is None else out
        run(pad(x).reshape(-1), np.ascontiguousarray(y).reshape(-1), r.reshape(-1),
            rowbase, taps, dims)
        return r
    call.writes_into = True
    return call


def conv_call(e, allocator, kernels):
    """conv(x, w, padding): the blocked direct kernel (module docstring)."""
    _need(kernels, e)
    x, w = e.inputs
    xs, ws = x.aval.shape, w.aval.shape
    padding = e.params["padding"]
    dtype = e.outs[0].aval.dtype
    n = len(xs) - 2
    kernel, ci, co = ws[:n], ws[-2], ws[-1]
    out = conv_out_shape(xs[1:-1], kernel, padding)
    oshape = (xs[0],) + out + (co,)
    pad = _padder(xs, dtype, padding, allocator)
    padded = (xs[0],) + tuple(o + k - 1 for o, k in zip(out, kernel)) + (ci,)
    rowbase, taps = _tables(padded, out, ci, kernel)
    dims = np.array([out[-1], ci, co], np.int64)
    fn = kernels.load(fwd_source(dtype, co))
    rows = len(rowbase)
    work = int(np.prod(oshape)) * int(np.prod(kernel)) * ci // 16
    run = kernels.split(fn, rows, work)
    return _call(run, pad, allocator(oshape, dtype), rowbase, taps, dims)


def conv_wgrad_call(e, allocator, kernels):
    """conv_wgrad(x, g, kernel, padding): per tap, blocked reductions over
    every output position (module docstring)."""
    _need(kernels, e)
    x, g = e.inputs
    xs, gs = x.aval.shape, g.aval.shape
    kernel, padding = e.params["kernel"], e.params["padding"]
    dtype = e.outs[0].aval.dtype
    ci, co = xs[-1], gs[-1]
    out = gs[1:-1]
    pad = _padder(xs, dtype, padding, allocator)
    padded = (xs[0],) + tuple(o + k - 1 for o, k in zip(out, kernel)) + (ci,)
    rowbase, taps = _tables(padded, out, ci, kernel)
    dims = np.array([out[-1], ci, co], np.int64)
    fn = kernels.load(wgrad_source(dtype, ci, co))
    work = int(np.prod(gs)) * int(np.prod(kernel)) * ci // 16
    run = kernels.split(fn, len(taps), work)
    return _call(run, pad, allocator(tuple(kernel) + (ci, co), dtype), rowbase, taps, dims)


conv_call.needs_kernels = True
conv_wgrad_call.needs_kernels = True
