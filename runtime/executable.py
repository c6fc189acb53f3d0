"""Stage runtime: the Executable: the ordered steps of one compiled function,
on any device.

Input: the plan of the compile loop (runtime/program.py: slots, steps,
release lists, results, kernels) and the runtime Device it was planned for
(runtime/cpu_device.py, runtime/cuda_runtime.py). Output: an `Executable`,
called with the flat argument leaves and returning the flat outputs (numpy
arrays on CPU, needle device Arrays on CUDA).

Every Var gets a slot in a list (the env); a step `step(env)` reads its
input slots and fills its output slots; the plan runs as one generated
function calling each step in turn (run_plan). Buffers come from the device's pool
(runtime/memory.py, runtime/cuda_memory.py); the memory plan releases each
intermediate right after its last reader, so its block serves the next
allocation of that size in the same call or the next one. Arrays are
C-contiguous throughout, so a reshape is a free view.

What differs between devices comes from the Device object (the small device
interface the Executable calls; the compile loop calls load, kernel_step,
library_step, view_step, loop_ops):
  name, host_arrays       'cpu'/'cuda'; whether inputs and results are host
                          numpy arrays (needle/api.py's fast state path; a
                          call checks them inline: prepare_input's check)
  inputs(exe)             args -> the inputs as the kernels take them (copy in),
                          the donated buffers taken as donation(exe) does
  donation(exe)           None, or inputs -> inputs of a call that owns the
                          donated buffers its kernels overwrite (on a
                          host_arrays device: the arguments as given)
  const(c)                a constant on the device (once per executable)
  literal(v)              a literal result as a fresh array (copy out)
  copies_results          whether a result that is an argument (or a view of
                          one) is copied (CPU: results never alias the
                          caller's numpy arrays; CUDA Arrays are immutable)
  runnable(launchers)     False: compiled where no device can run it
  refuse(exe)             raise the error of running that
  stages, kernels_text(kernels), stage_text(exe, stage, cc), ptx(exe, cc),
  resource_report(exe, cc)
"""
import operator

import numpy as np


class Executable:
    """One compiled function on one device. `exe(*args)` -> flat results;
    `call_prepared(inputs)` (alias `run_arrays`) for inputs already as the
    device takes them (`to_device(*args)` makes them; `run(*inputs)`);
    stages print (`stage_names`, `stage_text`; 'ptx' on CUDA), `ptx(cc)`,
    `resource_report(cc)` (ptxas, CUDA only); `device` (its name),
    `kernels` ((group name, KernelSource) in launch order), `fused`,
    `kernel_count`, `library_call_count`, `donated` (the flat input
    positions the caller donated), `donated_in_place` (those a kernel
    overwrites)."""

    def __init__(self, device, name, fused, n_slots, const_slots, in_slots, plan, outs,
                 kernels, launchers, library_call_count, donated=(), donated_in_place=()):
        self._device = device
        self.device = device.name
        self.host_arrays = device.host_arrays
        self.name = name
        self.fused = fused
        self.kernels = kernels
        self.in_avals = [v.aval for v in fused.graph.invars]
        self.kernel_count = kernel_count(kernels)
        self.library_call_count = library_call_count
        self.donated = tuple(donated)
        self.donated_in_place = tuple(donated_in_place)
        self.runnable = device.runnable(launchers)
        self._n_slots = n_slots
        self._const_slots = const_slots
        self._template = None               # the env with the constants: on first call
        self._in_slots = list(in_slots)
        self._plan = plan                   # [(step, slots to release after it)]
        self._run_steps = None              # run_plan(plan): made on the first call
        if not device.copies_results:
            outs = [(kind, v, False) for kind, v, _ in outs]
        self._outs = outs                   # ('slot', k, copy?) or ('value', array, _)
        self._donate = device.donation(self)    # None, or for call_prepared's inputs
        self._prepare = device.inputs(self)     # for __call__'s arguments (donation too)
        # numpy arrays in: __call__ checks them inline
        self._host_in = list(zip(self._in_slots, [a.dtype for a in self.in_avals],
                                 [a.shape for a in self.in_avals])) \
            if device.host_arrays else None
        if self._host_in is not None:
            self._make_template()           # host constants: no copy to make
        # call_prepared: inputs stored with one slice when their slots are
        # consecutive, results read with one itemgetter when all are slots
        ins = self._in_slots
        self._in_span = (ins[0], ins[0] + len(ins)) if ins and \
            ins == list(range(ins[0], ins[0] + len(ins))) else None
        plain = all(kind == "slot" and not copy for kind, _, copy in outs)
        self._out_get = operator.itemgetter(*[v for _, v, _ in outs]) if len(outs) > 1 and \
            plain else None
        self._out_one = outs[0][1] if len(outs) == 1 and plain else None
        self._literal = device.literal

    # -- calls ------------------------------------------------------------------
    def __call__(self, *args):
        host = self._host_in
        if host is None or len(args) != len(host):
            return self._start(self._prepare(args))
        # numpy arrays in (host_arrays): each argument already as the kernels
        # take it is used as is, checked here inline (the hot path of every
        # jitted call: no call into the device but its donation, which
        # takes the arguments as given)
        if self._donate is not None:
            args = self._donate(args)
        env = self._template.copy()
        for k, ((slot, dt, shape), x) in enumerate(zip(host, args)):
            if type(x) is not np.ndarray or x.dtype != dt or x.shape != shape or \
                    not (fl := x.flags).c_contiguous or not fl.writeable:
                x = prepare_checked(x, dt, shape, self.name, k)
            env[slot] = x
        return self._run(env)

    def _start(self, args):
        """Run on inputs the device has taken in (copied, donated)."""
        env = self._template
        env = (self._make_template() if env is None else env).copy()
        span = self._in_span
        if span is not None:
            env[span[0]:span[1]] = args
        else:
            for slot, x in zip(self._in_slots, args):
                env[slot] = x
        return self._run(env)

    def to_device(self, *args):
        """The arguments as the kernels take them (on CUDA: device Arrays,
        host values copied over; on CPU: C-contiguous writeable numpy
        arrays of each input's dtype), for `run`."""
        return self._device.inputs(self, donation=False)(args)

    def run(self, *inputs):
        return self.call_prepared(inputs)

    def call_prepared(self, args):
        """__call__ for inputs the caller has made what the kernels take
        (`to_device`'s result, results of an executable; on CPU
        prepare_input's result): no per-input check. needle/api.py's cached
        state call passes cell values it wrote back itself this way; eager
        CUDA operations (needle/array.py) pass device Arrays."""
        if self._donate is not None:
            args = self._donate(args)
        return self._start(args)

    run_arrays = call_prepared

    def _make_template(self):
        if not self.runnable:
            self._device.refuse(self)
        env = [None] * self._n_slots
        const = self._device.const
        for s, c in zip(self._const_slots, self.fused.consts):
            env[s] = const(c)
        self._template = env
        return env

    def _run(self, env):
        run = self._run_steps
        if run is None:
            run = self._run_steps = run_plan(self._plan)
        run(env)
        if self._out_get is not None:
            return list(self._out_get(env))
        if self._out_one is not None:
            return [env[self._out_one]]
        out = []
        literal = self._literal
        for kind, v, copy in self._outs:
            if kind == "slot":
                out.append(env[v].copy() if copy else env[v])
            else:
                out.append(literal(v))
        return out

    # -- stages -------------------------------------------------------------------
    def stage_names(self):
        return ["fused", "kernels", *self._device.stages]

    def stage_text(self, stage, cc=None):
        if stage == "fused":
            return str(self.fused.graph)
        if stage == "kernels":
            return self._device.kernels_text(self.kernels)
        if stage in self._device.stages:
            return self._device.stage_text(self, stage, cc)
        raise KeyError(f"no stage {stage!r}; stages are {self.stage_names()}")

    def kernels_text(self):
        return self.stage_text("kernels")

    def ptx(self, cc=None):
        """{(group, entry): PTX text} for compute capability `cc` (CUDA)."""
        return self._device.ptx(self, cc)

    def resource_report(self, cc=None):
        """Per CUDA kernel entry: ptxas's registers, shared memory, spills."""
        return self._device.resource_report(self, cc)


# A longer plan runs as a loop (a generated function's text grows with it).
MAX_INLINED_STEPS = 20000


def run_plan(plan):
    """run(env): every step of `plan` in order, each intermediate released
    (its slot set to None) right after its last reader. Generated as one
    function with the steps inlined, each a name of its globals and each
    release a constant slot (no loop, no tuple unpacked per step: about
    0.1 us a step less than the loop; benchmarks/bench_launch.py)."""
    if len(plan) > MAX_INLINED_STEPS:
        def run(env):
            for step, release in plan:
                step(env)
                for s in release:
                    env[s] = None
        return run
    ns, lines = {}, []
    for m, (step, release) in enumerate(plan):
        ns[f"S{m}"] = step
        lines.append(f"S{m}(env)")
        lines += [f"env[{int(r)}] = None" for r in release]
    src = "def run(env):\n" + "".join(f"    {ln}\n" for ln in lines or ["pass"])
    exec(compile(src, "<needle executable plan>", "exec"), ns)
    return ns["run"]


def kernel_count(kernels):
    """Kernel groups (a generated loop's driver is not one; its groups are)."""
    return sum(not getattr(ks, "loop_driver", False) for _, ks in kernels)


def no_resource_report(exe, what="a resource report"):
    """The error of asking a CPU executable for what only CUDA kernels have."""
    raise ValueError(f"{exe.name} was compiled for {exe.device}: {what} "
                     f"needs CUDA kernels (jit(f, device='cuda'))")


# -- host arrays (the CPU device: runtime/cpu_device.py) ---------------------------

def prepare_input(x, dt):
    """An input as the kernels take it: a C-contiguous, writeable numpy
    array of dtype `dt` (x itself when it is one)."""
    if type(x) is np.ndarray and x.dtype == dt and (fl := x.flags).c_contiguous and \
            fl.writeable:
        return x
    # np.asarray, not np.ascontiguousarray: the latter turns a
    # scalar (a weakly typed Python float) into shape (1,).
    x = np.asarray(x, dtype=dt, order="C")
    if not x.flags.writeable:
        # a read-only input (np.frombuffer, a read-only memmap):
        # kernels never write it, but their compiled signatures
        # take mutable arrays; one copy per call
        x = x.copy()
    return x


def prepare_checked(x, dt, shape, name, k):
    """prepare_input(x, dt), refusing an argument of another shape than
    the program was compiled for: the kernels' loop bounds are the compiled
    shapes (a larger array would be read in part, a smaller one past its
    end) and their signatures the compiled ranks. (Calls through jit never
    get here with a wrong shape: its cache is keyed on shapes; a Lowered's
    or an Executable's direct call can.)"""
    x = prepare_input(x, dt)
    if x.shape != shape:
        raise TypeError(f"{name}: argument {k} has shape {x.shape}, but the program was "
                        f"compiled for shape {shape} (dtype {np.dtype(dt).name}); lower or "
                        f"jit it again for the new shape")
    return x


_donation_warned = []


def _warn_donation_once():
    if not _donation_warned:
        _donation_warned.append(True)
        import sys
        import warnings
        level, f = 2, sys._getframe(1)
        while f is not None and f.f_globals.get("__name__", "").split(".")[0] == "needle":
            level, f = level + 1, f.f_back       # point at the user's call
        warnings.warn(
            "needle.jit(..., donate_argnums=...): on CPU a donated numpy array's buffer "
            "is reused for a result, so the array you passed now holds that result; do "
            "not read it after the call (this warning is shown once)", stacklevel=level)
