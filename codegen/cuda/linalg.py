"""Stage codegen (CUDA): kernels for the matrix decompositions (cholesky,
lu, triangular_solve), each a group of its own (CudaBackend.judge).

Input: a group sub-Graph holding one decomposition equation. Output: its
CudaKernelSource (the module text, signature, dims and launch shape as every
CUDA kernel has: see emit.py).

Written for small batched matrices (tens of rows), the case a GPU program
meets inside a model (a Gaussian process's kernel matrix, a Newton step):
- cholesky and lu: one thread block per matrix (a block-stride loop over
  the batch), factoring in place in the output buffer (global memory, which
  a block's barriers make coherent; L1 holds a 64 x 64 matrix): per column,
  the pivot (lu: every thread scans the column itself, so all agree without
  a reduction; the first largest |value|, a NaN first, as numpy's argmax),
  the row swap, the column scaling and the trailing update, each spread
  over the block's threads, with a barrier between steps. A matrix that is
  not positive definite (a pivot <= 0 or NaN, LAPACK's test) is all NaN,
  as on CPU.
- triangular_solve: one thread per right-hand side (a column of b on the
  left side, a row on the right), a serial substitution through the
  triangle; neighbouring threads read the same matrix element (a broadcast)
  and write neighbouring elements of x. Any block size.
Nothing limits the size (no shared memory), but one block per matrix is
slow beyond a few hundred rows: large systems belong on the CPU.
eigh, qr and svd have no CUDA kernel (`NO_KERNEL`): compiling one for CUDA
raises NotImplementedError naming the primitive, its operand and the way
out (compute it on the CPU); the CUDA Backend lists them as `unsupported`.

Sizes are kernel arguments (the batch axes, n, and b's other extent), so
a new batch size reuses the kernel; the four flags of triangular_solve are
in the source. Every constant is typed (`f32(0.0)`), so a float32 kernel
has no float64 instruction.
"""
import numpy as np

from ..emitter import numba_type
from ..exprs import CTOR
from .emit import SIM_MATH, CudaKernelSource

# Threads per matrix of the block kernels: 128 on a GPU; 4 in the simulator
# (a Python thread each), which still exercises the strided loops.
GPU_THREADS, SIM_THREADS = 128, 4


def block_threads():
    from numba import config
    return SIM_THREADS if config.ENABLE_CUDASIM else GPU_THREADS


class _Module:
    """The pieces every decomposition kernel shares: parameter names, the
    dims slots, the batch loop and the module text."""

    def __init__(self, graph, name):
        (self.e,) = graph.eqns
        self.g, self.name = graph, name
        self.dims = []                  # concrete sizes, one int64 argument each
        self.dt = self.e.outs[0].aval.dtype
        self.f = CTOR[np.dtype(self.dt)]

    def arg(self, x):
        """The kernel parameter holding equation operand / result `x`."""
        if x in self.e.outs:
            return f"o{self.g.outvars.index(x)}"
        return f"a{self.g.invars.index(x)}"

    def dim(self, n):
        self.dims.append(int(n))
        return f"d{len(self.dims) - 1}"

    def batch(self, shape):
        """(dims names of the batch axes, 'nb_ = ...' line)."""
        names = [self.dim(n) for n in shape]
        return names, f"nb_ = {' * '.join(names) or '1'}"

    @staticmethod
    def unravel(flat, names, pad):
        """Lines binding i0.. (the batch index of flat index `flat`)."""
        lines, q = [], flat
        for k in range(len(names) - 1, -1, -1):
            if k == 0:
                lines.append(f"i{k} = {q}")
            else:
                lines.append(f"i{k} = {q} % {names[k]}")
                lines.append(f"q{k} = {q} // {names[k]}")
                q = f"q{k}"
        return [pad + ln for ln in lines]

    def per_matrix(self, shape):
        """For a kernel whose blocks each take one matrix of the batch
        (`shape`: batch axes, then the matrix's two): (batch rank, the index
        formatter B(row, col) -> "i0, .., row, col", the body's opening
        lines: the block's threads and the loop over its matrices)."""
        r = len(shape) - 2
        bnames, nb = self.batch(shape[:-2])
        head = [nb,
                "tid_ = cuda.threadIdx.x",
                "nt_ = cuda.blockDim.x",
                "for b_ in range(cuda.blockIdx.x, nb_, cuda.gridDim.x):",
                *self.unravel("b_", bnames, "    ")]
        return r, (lambda *rest: _ix(r, *rest)), head

    def module(self, body, work, threads):
        arrays = [f"a{k}" for k in range(len(self.g.invars))] + \
                 [f"o{k}" for k in range(len(self.g.outvars))]
        types = [numba_type(v.aval) for v in self.g.invars + self.g.outvars]
        dims = [f"d{k}" for k in range(len(self.dims))]
        sig = "void(" + ", ".join(types + ["int64"] * len(dims)) + ")"
        src = "\n".join([
            f'"""needle CUDA kernel {self.name} ({self.e.prim.name}): generated; do not '
            f'edit."""',
            "import math",
            "import numpy as np",
            "from numba import config, cuda",
            "f32, f64 = np.float32, np.float64",
            "i32, i64 = np.int32, np.int64",
            SIM_MATH,
            "",
            f"SIGNATURE = {sig!r}",
            f"ENTRIES = ({self.name!r},)",
            "LAUNCH_BOUNDS = None",
            "",
            "",
            f"def {self.name}({', '.join(arrays + dims)}):",
            *["    " + ln if ln else "" for ln in body],
            ""])
        return CudaKernelSource(self.name, src, sig, list(self.dims), False, (), (),
                                entries=(self.name,), work=(tuple(work),),
                                threads=(threads,), scratch=())


def _ix(batch_rank, *rest):
    return ", ".join([f"i{k}" for k in range(batch_rank)] + list(rest))


def _cholesky(graph, name):
    m = _Module(graph, name)
    (x,), (out,) = m.e.inputs, m.e.outs
    a, o = m.arg(x), m.arg(out)
    r, B, head = m.per_matrix(x.aval.shape)
    n = m.dim(x.aval.shape[-1])
    f = m.f
    body = [
        *head,
        # the lower triangle, zeros above
        f"    for t_ in range(tid_, {n} * {n}, nt_):",
        f"        r_ = t_ // {n}",
        f"        c_ = t_ - r_ * {n}",
        f"        {o}[{B('r_', 'c_')}] = {a}[{B('r_', 'c_')}] if c_ <= r_ else {f}(0.0)",
        "    cuda.syncthreads()",
        "    ok_ = True",
        f"    for k_ in range({n}):",
        f"        p_ = {o}[{B('k_', 'k_')}]",
        f"        if not p_ > {f}(0.0):          # LAPACK's test: <= 0 or NaN",
        "            ok_ = False",
        "        d_ = math.sqrt(p_)",
        "        cuda.syncthreads()            # every thread has read the pivot",
        "        if tid_ == 0:",
        f"            {o}[{B('k_', 'k_')}] = d_",
        f"        for r_ in range(k_ + 1 + tid_, {n}, nt_):",
        f"            {o}[{B('r_', 'k_')}] = {o}[{B('r_', 'k_')}] / d_",
        "        cuda.syncthreads()",
        f"        m_ = {n} - k_ - 1",
        "        for t_ in range(tid_, m_ * m_, nt_):",
        "            r_ = k_ + 1 + t_ // m_",
        "            c_ = k_ + 1 + t_ % m_",
        "            if c_ <= r_:",
        f"                {o}[{B('r_', 'c_')}] = {o}[{B('r_', 'c_')}] - "
        f"{o}[{B('r_', 'k_')}] * {o}[{B('c_', 'k_')}]",
        "        cuda.syncthreads()",
        "    if not ok_:                        # the same verdict in every thread",
        f"        for t_ in range(tid_, {n} * {n}, nt_):",
        f"            {o}[{B(f't_ // {n}', f't_ % {n}')}] = {f}(math.nan)",
        "    cuda.syncthreads()",
    ]
    return m.module(body, range(r), block_threads())


def _lu(graph, name):
    m = _Module(graph, name)
    (x,) = m.e.inputs
    o, piv, perm = (m.arg(v) for v in m.e.outs)
    a = m.arg(x)
    r, B, head = m.per_matrix(x.aval.shape)
    n = m.dim(x.aval.shape[-1])
    f = m.f
    body = [
        *head,
        f"    for t_ in range(tid_, {n} * {n}, nt_):",
        f"        r_ = t_ // {n}",
        f"        c_ = t_ - r_ * {n}",
        f"        {o}[{B('r_', 'c_')}] = {a}[{B('r_', 'c_')}]",
        f"    for t_ in range(tid_, {n}, nt_):",
        f"        {perm}[{B('t_')}] = i32(t_)",
        "    cuda.syncthreads()",
        f"    for k_ in range({n}):",
        # every thread finds the pivot itself: the same reads, the same answer
        "        p_ = k_",
        f"        best_ = abs({o}[{B('k_', 'k_')}])",
        f"        for r_ in range(k_ + 1, {n}):",
        f"            v_ = abs({o}[{B('r_', 'k_')}])",
        "            if v_ > best_ or (v_ != v_ and best_ == best_):     # first NaN wins",
        "                best_ = v_",
        "                p_ = r_",
        "        cuda.syncthreads()            # every thread has read the column",
        "        if p_ != k_:",
        f"            for c_ in range(tid_, {n}, nt_):",
        f"                t0_ = {o}[{B('k_', 'c_')}]",
        f"                {o}[{B('k_', 'c_')}] = {o}[{B('p_', 'c_')}]",
        f"                {o}[{B('p_', 'c_')}] = t0_",
        "        if tid_ == 0:",
        f"            {piv}[{B('k_')}] = i32(p_)",
        f"            s_ = {perm}[{B('k_')}]",
        f"            {perm}[{B('k_')}] = {perm}[{B('p_')}]",
        f"            {perm}[{B('p_')}] = s_",
        "        cuda.syncthreads()",
        f"        d_ = {o}[{B('k_', 'k_')}]",
        f"        if d_ != {f}(0.0):              # a zero column: nothing to eliminate",
        f"            for r_ in range(k_ + 1 + tid_, {n}, nt_):",
        f"                {o}[{B('r_', 'k_')}] = {o}[{B('r_', 'k_')}] / d_",
        "        cuda.syncthreads()",
        f"        m_ = {n} - k_ - 1",
        "        for t_ in range(tid_, m_ * m_, nt_):",
        "            r_ = k_ + 1 + t_ // m_",
        "            c_ = k_ + 1 + t_ % m_",
        f"            {o}[{B('r_', 'c_')}] = {o}[{B('r_', 'c_')}] - "
        f"{o}[{B('r_', 'k_')}] * {o}[{B('k_', 'c_')}]",
        "        cuda.syncthreads()",
    ]
    return m.module(body, range(r), block_threads())


def _triangular_solve(graph, name):
    m = _Module(graph, name)
    p = m.e.params
    xa, xb = m.e.inputs
    a, b, o = m.arg(xa), m.arg(xb), m.arg(m.e.outs[0])
    shape = xb.aval.shape
    r = len(shape) - 2
    bnames, nb = m.batch(shape[:-2])
    left = p["left_side"]
    mm = m.dim(xa.aval.shape[-1])                       # the triangle's size
    k = m.dim(shape[-1] if left else shape[-2])         # right-hand sides
    f = m.f
    B = lambda *rest: _ix(r, *rest)         # noqa: E731
    # The canonical problem M x = rhs for one line: M = op(a) (left) or
    # op(a)^T (right); M[i, j] is a[i, j] or a[j, i].
    swapped = p["transpose_a"] != (not left)
    M = (lambda i, j: f"{a}[{B(j, i)}]") if swapped else (lambda i, j: f"{a}[{B(i, j)}]")
    lower = p["lower"] != swapped
    at = (lambda i: B(i, "l_")) if left else (lambda i: B("l_", i))     # x / b element
    order = f"range({mm})" if lower else f"range({mm} - 1, -1, -1)"
    inner = "range(i_)" if lower else f"range(i_ + 1, {mm})"
    div = "" if p["unit_diagonal"] else f" / {M('i_', 'i_')}"
    body = [
        nb,
        f"for t_ in range(cuda.grid(1), nb_ * {k}, cuda.gridsize(1)):",
        f"    l_ = t_ % {k}",
        f"    b_ = t_ // {k}",
        *m.unravel("b_", bnames, "    "),
        f"    for i_ in {order}:",
        f"        s_ = {b}[{at('i_')}]",
        f"        for j_ in {inner}:",
        f"            s_ = s_ - {M('i_', 'j_')} * {o}[{at('j_')}]",
        f"        {o}[{at('i_')}] = {f}(s_{div})",
    ]
    return m.module(body, list(range(r)) + [r + 1], None)      # lines: batch x k


EMITTERS = {"cholesky": _cholesky, "lu": _lu, "triangular_solve": _triangular_solve}
# Decompositions without a CUDA kernel (iterative or many-pass: eigenvalues,
# Householder QR, SVD): compiling one for CUDA is an error naming it.
NO_KERNEL = ("eigh", "qr", "svd")


def is_linalg_group(graph):
    return len(graph.eqns) == 1 and (graph.eqns[0].prim.name in EMITTERS or
                                      graph.eqns[0].prim.name in NO_KERNEL)


def emit_linalg(graph, name="kernel"):
    """The CudaKernelSource of a group holding one decomposition."""
    e = graph.eqns[0]
    if e.prim.name in NO_KERNEL:
        ops = ", ".join(x.aval.str_short() for x in e.inputs)
        raise NotImplementedError(
            f"{e.prim.name} on {ops}: no CUDA kernel for {e.prim.name} (cholesky, lu and "
            f"triangular_solve have one); compute it on the CPU: needle.jit(f, device='cpu'), "
            f"or needle.device_put(x, 'cpu') before the call ({e.source})")
    return EMITTERS[e.prim.name](graph, name)
