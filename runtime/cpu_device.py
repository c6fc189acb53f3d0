"""Stage runtime (CPU): the CPU device of the compile loop (runtime/program.py)
and of the Executable (runtime/executable.py): how a kernel is loaded and
launched, a library call, a view and a host step run; how inputs come in
(numpy arrays as the kernels take them), results go out, donated buffers
are taken.

Input: KernelSources from the CPU Backend (codegen/cpu), host functions of
library calls, slots. Output: steps `step(env)`, the loop operations of the
control steps (loops.CPU_OPS) and the device's part of the Executable.

Each group compiles to one kernel, serial and `nogil`, whatever its size.
A kernel whose rows are independent (its KernelSource's `split`) and whose
group touches enough elements (its largest input or output: a row max of a
4096x4096 array has 4096 results but reads 16M values; at least
backend.parallel_min_size per chunk, backend.split_count) runs its rows in
chunks on the runtime's threads (runtime/parallel.py); otherwise it is
called once over all its rows. Buffers come from the pool
(runtime/memory.py).

A launch (kernel_step) is a step generated once per arity (inputs, outputs,
trailing arguments): one lookup per argument, no list built per call. Its
first call goes through Numba's dispatcher, which checks every argument
against the kernel's signature; later calls go to the compiled entry point
of that one overload directly (no typing of the arguments: the slots hold
the same types every call, each input prepared to its exact dtype and
layout by prepare_input, each intermediate allocated by the runtime).

A scan or while_loop whose bodies are kernels and views only (no library
call, no host step, no kernel split across threads) runs as one generated
Numba function (`generated_loop`: codegen/cpu/loop_emit.py through
backend.emit_loop, loaded through the kernel cache like a kernel); the
`kernels` stage prints it as a "generated loop" and its groups as kernels
inside it (they count in kernel_count, the loop's driver does not).
"""
import numpy as np

from ..ir.core import ClosedGraph, Lit
from . import compile_workers, memory, parallel
from .executable import _warn_donation_once, no_resource_report, prepare_checked, prepare_input
from .kernel_cache import load_kernel
from .loops import CPU_OPS


def _domain_size(sub):
    """Elements of the largest array the group reads or writes: its work."""
    return max((int(np.prod(v.aval.shape, dtype=np.int64)) for v in sub.outvars + sub.invars),
               default=0)


def kernels_text(kernels):
    parts = []
    for gname, ks in kernels:
        if getattr(ks, "loop_driver", False):
            parts.append(f"# ---- generated loop {gname} ({ks.kind}: every step in one Numba "
                         f"function, nk_{ks.key}.py) ----\n{ks.source}")
        elif getattr(ks, "in_loop", False):
            where = f"as {ks.fname}" if ks.fname else "inlined"
            parts.append(f"# ---- kernel {gname} (serial, in the generated loop "
                         f"nk_{ks.key}.py, {where}) ----")
        else:
            n = getattr(ks, "chunks", 1)
            how = f"parallel, rows in {n} chunks on threads" if n > 1 else "serial"
            parts.append(f"# ---- kernel {gname} ({how}, nk_{ks.key}.py) ----\n{ks.source}")
    return "\n".join(parts) if parts else "# no kernels"


class CpuDevice:
    name = "cpu"
    host_arrays = True                  # numpy arrays in and out
    copies_results = True               # results never alias the caller's arrays
    stages = ()                         # beyond 'fused' and 'kernels'
    kernels_text = staticmethod(kernels_text)
    allocator = staticmethod(memory.allocator)
    loop_ops = CPU_OPS                  # the control steps' operations (runtime/loops.py)
    # scan / while bodies of kernels and views only run as one generated
    # Numba loop (codegen/cpu/loop_emit.py); False: the Python loop always
    generate_loops = True
    _emitted = {}       # id(group graph) -> (graph, its KernelSource), from precompile

    @classmethod
    def generated_loop(cls, e, backend, context):
        """(LoopSource, its loaded driver) of control equation `e`, or None
        when the runtime's Python loop runs it."""
        emit = getattr(backend, "emit_loop", None)
        if not cls.generate_loops or emit is None:
            return None
        ls = emit(e)
        if ls is None:
            return None
        return ls, load_kernel(ls, "cpu", context=context)

    @classmethod
    def precompile(cls, fused, backend, name):
        """Before the compile loop: the program's kernels that the disk cache
        lacks, compiled in worker processes (runtime/compile_workers.py),
        found by emitting each group (and each generated loop, and the groups
        of loop bodies) as the compile loop will, with the same context."""
        if compile_workers.worker_count() <= 1:
            return
        jobs = []
        cls._jobs(fused.graph, backend, name, jobs)
        compile_workers.precompile(jobs)

    @classmethod
    def done_compiling(cls):
        """After the compile loop: forget the sources `precompile` emitted."""
        cls._emitted.clear()

    @classmethod
    def _jobs(cls, g, backend, name, jobs):
        for e in g.eqns:
            if e.prim.name == "kernel":
                ctx = f" (group {e.params['name']} of {name}, from {e.source})"
                sub = e.params["graph"]
                ks = backend.emit(sub, "kernel")
                cls._emitted[id(sub)] = (sub, ks)   # load takes it: no second emit
                jobs.append((ks, ctx))
            elif backend.is_control(e):
                prim = e.prim.name
                emit = getattr(backend, "emit_loop", None)
                if cls.generate_loops and emit is not None and prim in ("scan", "while"):
                    ls = emit(e)
                    if ls is not None:
                        jobs.append((ls, f" ({prim} of {name}, from {e.source})"))
                        continue
                for part, sub in e.params.items():
                    subs = sub if isinstance(sub, (list, tuple)) else [sub]
                    for k, s in enumerate(subs):
                        if isinstance(s, ClosedGraph):
                            p = part if len(subs) == 1 and sub is s else f"branch{k}"
                            cls._jobs(s.graph, backend, f"{name}/{prim}.{p}", jobs)

    @staticmethod
    def load(sub, backend, context):
        """(KernelSource, launcher) of group `sub`: the launcher takes the
        kernel's arguments less `lo, hi` when its rows run in chunks on
        threads (`ks.chunks` > 1: parallel.splitter), else it is the kernel
        itself (kernel_step passes 0, extent)."""
        pre = CpuDevice._emitted.pop(id(sub), None)
        ks = pre[1] if pre is not None and pre[0] is sub else backend.emit(sub, "kernel")
        fn = load_kernel(ks, "cpu", context=context)
        # set on this program's own KernelSource (emit makes a new one per call)
        ks.chunks = backend.split_count(ks, _domain_size(sub))
        if ks.chunks > 1:
            fn = parallel.splitter(fn, ks.dims[ks.split], ks.chunks)
        return ks, fn

    @staticmethod
    def kernel_step(ks, fn, ins, outs, avals, inplace):
        dims = np.array(ks.dims, dtype=np.int64)
        lits = np.array([v for v, _ in ks.lits], np.float64) if ks.lits else None
        rows = (0, ks.dims[ks.split]) if ks.split is not None and ks.chunks == 1 else ()
        return kernel_step(fn, ins, outs, [(a.shape, a.dtype) for a in avals], dims, inplace,
                           lits, rows)

    @staticmethod
    def library_kernels(backend, context):
        """The kernel services a library call that is a generated kernel
        gets (codegen/backend.py `library_call`)."""
        return _LibraryKernels(backend, context)

    @staticmethod
    def library_step(fn, ins, out, into=None):
        """A library call; with `into` (a slot: a loop body's destination or
        scratch buffer) the call writes its result there (fn(*operands,
        buffer): runtime/program.py asks only a call that `writes_into`)."""
        if into is None:
            return call_step(fn, ins, out, {})
        if len(ins) == 2 and all(isinstance(i, int) for i in ins):
            i0, i1 = ins                    # a BLAS call: the hot case of a loop

            def step(env):
                env[out] = fn(env[i0], env[i1], env[into])
            return step

        def step_any(env):
            env[out] = fn(*[env[i] if isinstance(i, int) else i for i in ins], env[into])
        return step_any

    @staticmethod
    def view_step(src, out, aval):
        if isinstance(src, Lit):        # a reshape of a scalar: a fresh array per call
            shape, dt, val = aval.shape, aval.dtype, src.val

            def step(env):
                env[out] = np.full(shape, val, dt)
            return step
        return view_step(src, out, aval.shape)

    # -- the Executable's part (runtime/executable.py) ---------------------------
    @staticmethod
    def const(c):
        return c

    @staticmethod
    def literal(v):
        return v.copy()

    @staticmethod
    def runnable(launchers):
        return True

    @classmethod
    def inputs(cls, exe, donation=True):
        """prepare(args): each a C-contiguous, writeable numpy array of its
        input's dtype (the argument itself when it is one); the donated
        arguments taken first (`donation`: an argument's buffer shared with
        another argument, a view of it, is seen before it is copied)."""
        dts = [a.dtype for a in exe.in_avals]
        shapes = [a.shape for a in exe.in_avals]
        n, name = len(dts), exe.name
        take = cls.donation(exe) if donation else None

        def prepare(args):
            if len(args) != n:
                raise TypeError(f"{name} takes {n} arrays, got {len(args)}")
            if take is not None:
                args = take(args)
            return [prepare_checked(x, dt, shape, name, k)
                    for k, (x, dt, shape) in enumerate(zip(args, dts, shapes))]
        return prepare

    @staticmethod
    def donation(exe):
        """take(inputs): the donated inputs a kernel overwrites, each used in
        place unless another input or a constant also reads its memory (the
        same array twice, or a view of it): then this call works on a copy
        of it (JAX refuses to donate a buffer used twice). np.may_share_memory
        compares bounds: cheap, and never misses an overlap."""
        donated = exe.donated_in_place
        if not donated:
            return None
        consts = [c for c in exe.fused.consts if isinstance(c, np.ndarray)]

        def take(args):
            args = list(args)
            for k in donated:
                x = args[k]
                if not isinstance(x, np.ndarray):
                    continue
                others = [a for j, a in enumerate(args) if j != k] + consts
                if any(isinstance(a, np.ndarray) and np.may_share_memory(x, a) for a in others):
                    args[k] = x.copy()
                else:
                    _warn_donation_once()
            return args
        return take

    @staticmethod
    def refuse(exe):                    # pragma: no cover (a CPU executable always runs)
        raise AssertionError("a CPU executable always runs")

    @staticmethod
    def stage_text(exe, stage, cc):     # pragma: no cover (no stages beyond the common ones)
        raise KeyError(stage)

    @staticmethod
    def ptx(exe, cc):
        no_resource_report(exe, "PTX")

    @staticmethod
    def resource_report(exe, cc):
        no_resource_report(exe)


# How a kernel step calls its kernel: 'entry' (always, in needle), the
# compiled entry point of the kernel's one overload, the first call of each
# step through Numba's dispatcher, which checks every argument's type against
# the signature; 'dispatcher': every call through the dispatcher (for
# benchmarks/bench_launch.py and tests, which compare the two). Read when a
# step is built.
LAUNCH = {"mode": "entry"}


def entry_point(fn):
    """The compiled entry of Numba dispatcher `fn` (its one overload, the
    function the dispatcher itself calls once it has typed the arguments),
    or None (LAUNCH's mode 'dispatcher', not a dispatcher, several
    overloads). The entry checks only each array's itemsize: a caller
    passes exactly the signature's types (kernel_step: after one call
    through the dispatcher)."""
    overloads = getattr(fn, "overloads", None)
    if LAUNCH["mode"] != "entry" or not overloads or len(overloads) != 1:
        return None
    return next(iter(overloads.values())).entry_point


_step_makers = {}       # (inputs, output kinds, tail length) -> the step's factory


def _step_maker(n_in, kinds, n_tail):
    """The factory of a kernel step for `n_in` inputs, outputs of `kinds`
    ('a': allocated per call, 'p': written into the buffer of a slot), and
    `n_tail` trailing arguments (dims, lits, rows): generated once per
    arity, each slot and allocator a variable of its closure, so a call does
    one lookup per argument and builds no list (the Python part of a
    launch: benchmarks/bench_launch.py)."""
    key = (n_in, kinds, n_tail)
    make = _step_makers.get(key)
    if make is not None:
        return make
    rs = [f"r{k}" for k in range(len(kinds))]
    params = ["fn", "entry"] + [f"i{k}" for k in range(n_in)] + \
        [f"o{k}" for k in range(len(kinds))] + \
        [f"{'a' if c == 'a' else 'p'}{k}" for k, c in enumerate(kinds)] + \
        [f"t{k}" for k in range(n_tail)]
    args = [f"env[i{k}]" for k in range(n_in)] + rs + [f"t{k}" for k in range(n_tail)]
    body = [f"r{k} = a{k}()" if c == "a" else f"r{k} = env[p{k}]"
            for k, c in enumerate(kinds)]
    body.append(f"call({', '.join(args)})")
    body += [f"env[o{k}] = r{k}" for k in range(len(kinds))]
    src = (f"def make({', '.join(params)}):\n"
           "    call = fn\n"
           "    if entry is not None:\n"
           "        def call(*args):\n"        # the first call: the dispatcher checks the types
           "            nonlocal call\n"
           "            fn(*args)\n"
           "            call = entry\n"
           "    def step(env):\n" + "".join(f"        {ln}\n" for ln in body) +
           "    return step\n")
    ns = {}
    exec(compile(src, f"<needle kernel step {key}>", "exec"), ns)
    make = _step_makers[key] = ns["make"]
    return make


def kernel_step(fn, ins, outs, out_specs, dims, inplace=None, lits=None, rows=()):
    """Launch: allocate outputs, call the kernel with inputs, outputs, dims
    (and the float literals, when the kernel has any, and `rows`: the
    (lo, hi) range of a splittable CPU kernel called in one piece). `inplace`
    maps an output position to the input slot whose buffer it reuses (a
    donated argument read only element-for-element, a loop body's carry or
    row of ys: runtime/loops.py). The kernel is called through its entry
    point (entry_point) after a first call through its dispatcher."""
    inplace = inplace or {}
    tail = ((dims,) if lits is None else (dims, lits)) + tuple(rows)
    kinds = "".join("p" if k in inplace else "a" for k in range(len(outs)))
    # per output: the slot whose buffer it is written into, else its allocator
    parts = [inplace[k] if k in inplace else memory.allocator(shape, dt)
             for k, (shape, dt) in enumerate(out_specs)]
    make = _step_maker(len(ins), kinds, len(tail))
    return make(fn, entry_point(fn), *ins, *outs, *parts, *tail)


def call_step(fn, ins, out, params):
    if isinstance(out, list):               # several results (lu): one slot each
        def step(env):
            res = fn(*[env[i] if isinstance(i, int) else i for i in ins], **params)
            for o, r in zip(out, res):
                env[o] = r
        return step
    if not params and len(ins) == 2 and all(isinstance(i, int) for i in ins):
        i0, i1 = ins                         # a BLAS call: the common, hot case

        def step(env):
            env[out] = fn(env[i0], env[i1])
        return step

    def step(env):
        env[out] = fn(*[env[i] if isinstance(i, int) else i for i in ins], **params)
    return step


def view_step(i, out, shape):
    def step(env):
        env[out] = env[i].reshape(shape)
    return step


DEVICE = CpuDevice()


class _LibraryKernels:
    """`load`: a KernelSource's kernel from the kernel cache; `split`: the
    kernel (which takes lo, hi last) over rows 0..extent, in as many chunks
    on threads as the backend's rule gives for `work` elements."""

    def __init__(self, backend, context):
        self.backend, self.context = backend, context

    def load(self, ks):
        return load_kernel(ks, "cpu", context=self.context)

    def split(self, fn, extent, work):
        n = self.backend.chunks_for(extent, work)
        if n > 1:
            return parallel.splitter(fn, extent, n)
        return lambda *args: fn(*args, 0, extent)
