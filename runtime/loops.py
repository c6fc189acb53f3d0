"""Stage runtime: the control steps: scan, while and cond run the compiled
plans of their bodies, never unrolled, on CPU and on CUDA.

Input: a control equation of the fused graph, its input references (slots,
or a literal's value), its output slots, `compile_body(ClosedGraph, part,
dests)` (program.plan_program for the same backend and device), the
device's loop operations (`CPU_OPS` here; cuda_loops.CUDA_OPS on CUDA) and
`generate()` (the device's generated loop, or None).
Output: a plan step `step(env)` (the interface of every step, on every
device), and the plans of the bodies (their kernels belong to the program).

- generated (CPU): a scan or while whose bodies are kernels and views only
  is one generated Numba function running every step
  (codegen/cpu/loop_emit.py, loaded through the kernel cache): the step
  allocates the carries' two buffers, the stacked ys and the scratch
  buffers, and calls it once (`_generated`). Everything below is the
  Python loop the other bodies (library calls, host steps, nested loops)
  and CUDA run.
- scan: the carries live in two preallocated buffers each (one read, one
  written, swapped every step); the body's kernels and library calls write
  the new carry and the step's row of each stacked ys straight into place
  (program.plan_program with `dests`), and every other value of the body
  into a scratch buffer of the run (no allocation per step); per-step
  inputs are views xs[t] (no copy; device views on CUDA). A carry that is
  also a ys (`return h, h`) is written into ys[t] and read back from there
  at the next step. A result nothing writes into place (a carry passed
  through, a literal, a body input) costs one copy per step. The loop
  itself is Python generated for the body (`_scan_loop`: slots as
  constants, the plan's steps inlined). `reverse` runs t from length-1
  down; length 0 gives ys of shape (0, ...) and a copy of init.
- while: the cond plan runs before each iteration, its predicate written
  into a buffer of the run: one boolean read back to the host per
  iteration on CUDA; the carries as in scan.
- cond: the index is read (clamped into range, as the numpy impl does) and
  that branch's plan runs; a result that is a branch input or const is
  copied, so results never alias the caller's arrays.
Each run of a body reuses one slot list (its env) for all iterations.
"""
import numpy as np

from . import memory
from .executable import run_plan


class CpuLoopOps:
    """The loop operations on numpy arrays."""

    @staticmethod
    def const(c):
        return c

    @staticmethod
    def alloc(aval, lead=()):
        return memory.empty(tuple(lead) + tuple(aval.shape), aval.dtype)

    def copy_of(self, x, aval):
        r = self.alloc(aval)
        np.copyto(r, x)
        return r

    @staticmethod
    def rows(x, aval):
        """t -> the view x[t] (a 0-d array for a 0-d row, not a scalar)."""
        return x.__getitem__ if x.ndim > 1 else lambda t: x[t, ...]

    @staticmethod
    def copy(dst, src):
        np.copyto(dst, src)

    @staticmethod
    def read(x):
        return np.asarray(x).item()


CPU_OPS = CpuLoopOps()


class Body:
    """A compiled body (the plan dict of program.plan_program) run on one
    env for many iterations."""

    def __init__(self, p, ops):
        self.ops, self.p = ops, p
        self.in_slots, self.outs, self.direct = p["in_slots"], p["outs"], p["direct"]
        self.dests = p["dest_slots"]
        self.scratch = p.get("scratch", ())
        self._consts = None

    def env(self):
        """A fresh env for one run of the loop: the body's constants, and a
        buffer in each scratch slot (every iteration writes it again)."""
        p = self.p
        if self._consts is None:            # on CUDA: copied to the device once
            self._consts = [self.ops.const(c) for c in p["fused"].consts]
        env = [None] * p["n_slots"]
        for s, c in zip(p["const_slots"], self._consts):
            env[s] = c
        for s, aval in self.scratch:
            env[s] = self.ops.alloc(aval)
        return env

    def runner(self):
        """run(env): every step of the plan, releasing intermediates as
        planned (not the inputs: the next iteration overwrites them)."""
        keep = set(self.in_slots)
        return run_plan([(step, [s for s in release if s not in keep] or ())
                         for step, release in self.p["plan"]])

    def result(self, env, j):
        """The value at result position j (after a run)."""
        kind, v, _ = self.outs[j]
        return env[v] if kind == "slot" else v

    def copies(self, positions):
        """[(position, slot or None, literal value)] of the results at
        `positions` that no kernel wrote into place."""
        return [(j, v if kind == "slot" else None, None if kind == "slot" else v)
                for j in positions if j not in self.direct
                for kind, v, _ in [self.outs[j]]]


def _reader(ops, ins):
    """read(env) -> the operand values (a literal as a constant, made on
    first use: on CUDA a device copy)."""
    lits = {}

    def read(env):
        if len(lits) != sum(not isinstance(x, int) for x in ins):
            lits.update((k, ops.const(x)) for k, x in enumerate(ins) if not isinstance(x, int))
        return [lits[k] if k in lits else env[x] for k, x in enumerate(ins)]
    if all(isinstance(x, int) for x in ins):
        return lambda env: [env[x] for x in ins]
    return read


def _slots_setter(slots):
    """set(env, values): env[slots[k]] = values[k], one slice store when the
    slots are consecutive (a plan numbers a graph's inputs, and its
    destinations, in a row)."""
    if slots and list(slots) == list(range(slots[0], slots[0] + len(slots))):
        lo, hi = slots[0], slots[0] + len(slots)

        def put(env, values):
            env[lo:hi] = values
        return put

    def put_each(env, values):
        for s, v in zip(slots, values):
            env[s] = v
    return put_each


def _scan_loop(body, nc, nk, ny, aliased, ops):
    """loop(benv, order, *carries, *second buffers (not aliased), *xs rows,
    *ys rows) -> the final carries: the scan's Python loop, generated for its
    body with every slot a constant and the plan's steps inlined (no list
    built per step). A result no kernel wrote is copied into place; an
    aliased carry j reads ys row aliased[j] back."""
    ns = {"copy": ops.copy}
    keep = set(body.in_slots)
    ins, dests = body.in_slots, body.dests
    free = [j for j in range(nk) if j not in aliased]
    lines = []
    for k in range(ny):
        lines.append(f"y{k} = Y{k}(t)")
    for j in range(nk):
        lines.append(f"B[{ins[nc + j]}] = c{j}")
    for i, slot in enumerate(ins[nc + nk:]):
        lines.append(f"B[{slot}] = X{i}(t)")
    for j in free:
        lines.append(f"B[{dests[j]}] = n{j}")
    for k in range(ny):
        lines.append(f"B[{dests[nk + k]}] = y{k}")
    for m, (step, release) in enumerate(body.p["plan"]):
        ns[f"S{m}"] = step
        lines.append(f"S{m}(B)")
        lines += [f"B[{r}] = None" for r in release if r not in keep]
    for j, slot, lit in body.copies(range(nk + ny)):
        if j in aliased:
            continue
        if slot is None:
            ns[f"L{j}"] = lit
        src = f"B[{slot}]" if slot is not None else f"L{j}"
        lines.append(f"copy({'n%d' % j if j < nk else 'y%d' % (j - nk)}, {src})")
    for j in range(nk):
        lines.append(f"c{j} = y{aliased[j]}" if j in aliased else f"c{j}, n{j} = n{j}, c{j}")
    params = ["B", "order"] + [f"c{j}" for j in range(nk)] + [f"n{j}" for j in free] + \
        [f"X{i}" for i in range(len(ins) - nc - nk)] + [f"Y{k}" for k in range(ny)]
    src = f"def loop({', '.join(params)}):\n    for t in order:\n" + \
        "".join(f"        {ln}\n" for ln in lines or ["pass"]) + \
        f"    return [{', '.join(f'c{j}' for j in range(nk))}]\n"
    exec(compile(src, "<needle scan loop>", "exec"), ns)
    return ns["loop"]


def _scan(e, ins, outs, compile_body, ops):
    p = e.params
    nc, nk, length, reverse = p["num_consts"], p["num_carry"], p["length"], p["reverse"]
    body = Body(compile_body(p["body"], "body", True), ops)
    read = _reader(ops, ins)
    c_avals = [v.aval for v in e.outs[:nk]]
    y_avals = [v.aval for v in p["body"].graph.outvars[nk:]]
    x_avals = [v.aval for v in p["body"].graph.invars[nc + nk:]]
    ny = len(y_avals)
    # A carry whose value a kernel wrote into the row of a ys (`return h,
    # h`: program.plan_program prefers the ys) reads that row back as its
    # value at the next step: no copy per step.
    y_slot = {body.outs[k][1]: k - nk for k in range(nk, nk + ny)
              if k in body.direct and body.outs[k][0] == "slot"}
    aliased = {j: y_slot[body.outs[j][1]] for j in range(nk)
               if j not in body.direct and body.outs[j][0] == "slot" and
               body.outs[j][1] in y_slot}
    loop = _scan_loop(body, nc, nk, ny, aliased, ops)
    put_consts = _slots_setter(body.in_slots[:nc])
    rows = ops.rows
    order = range(length - 1, -1, -1) if reverse else range(length)

    def step(env):
        args = read(env)
        cur = [ops.copy_of(x, a) for x, a in zip(args[nc:nc + nk], c_avals)]
        other = [ops.alloc(a) for j, a in enumerate(c_avals) if j not in aliased]
        ys = [ops.alloc(a, (length,)) for a in y_avals]
        benv = body.env()
        put_consts(benv, args[:nc])
        cur = loop(benv, order, *cur, *other,
                   *[rows(x, a) for x, a in zip(args[nc + nk:], x_avals)],
                   *[rows(y, a) for y, a in zip(ys, y_avals)])
        if length:                  # a carry left in a row of ys gets its own buffer
            for j in aliased:
                cur[j] = ops.copy_of(cur[j], c_avals[j])
        for o, c in zip(outs, cur + ys):
            env[o] = c
    return step, [body.p]


def _while(e, ins, outs, compile_body, ops):
    p = e.params
    ncc, nbc = p["cond_nconsts"], p["body_nconsts"]
    # the predicate too is written into a buffer of the run (its dest)
    cond = Body(compile_body(p["cond"], "cond", True), ops)
    body = Body(compile_body(p["body"], "body", True), ops)
    run_cond, run_body, read = cond.runner(), body.runner(), _reader(ops, ins)
    pred_aval = p["cond"].graph.outvars[0].aval
    avals = [v.aval for v in e.outs]
    nk = len(avals)
    cc_in, cv_in = cond.in_slots[:ncc], cond.in_slots[ncc:]
    bc_in, bv_in = body.in_slots[:nbc], body.in_slots[nbc:]
    b_copy = body.copies(range(nk))
    copy, truth = ops.copy, ops.read

    def step(env):
        args = read(env)
        cconsts, bconsts = args[:ncc], args[ncc:ncc + nbc]
        cur = [ops.copy_of(x, a) for x, a in zip(args[ncc + nbc:], avals)]
        other = [ops.alloc(a) for a in avals]
        cenv, benv = cond.env(), body.env()
        cenv[cond.dests[0]] = ops.alloc(pred_aval)
        while True:
            for s, c in zip(cc_in + cv_in, cconsts + cur):
                cenv[s] = c
            run_cond(cenv)
            if not truth(cond.result(cenv, 0)):
                break
            for s, c in zip(bc_in + bv_in, bconsts + cur):
                benv[s] = c
            for s, d in zip(body.dests, other):
                benv[s] = d
            run_body(benv)
            for j, s, lit in b_copy:
                copy(other[j], benv[s] if s is not None else lit)
            cur, other = other, cur
        for o, c in zip(outs, cur):
            env[o] = c
    return step, [cond.p, body.p]


def _cond(e, ins, outs, compile_body, ops):
    branches = [Body(compile_body(b, f"branch{k}", False), ops)
                for k, b in enumerate(e.params["branches"])]
    runs, read = [b.runner() for b in branches], _reader(ops, ins)
    avals = [v.aval for v in e.outs]

    def step(env):
        args = read(env)
        k = min(max(int(ops.read(args[0])), 0), len(branches) - 1)
        b = branches[k]
        benv = b.env()
        for s, x in zip(b.in_slots, args[1:]):
            benv[s] = x
        runs[k](benv)
        for j, (o, (kind, v, copy)) in enumerate(zip(outs, b.outs)):
            val = benv[v] if kind == "slot" else v
            env[o] = ops.copy_of(val, avals[j]) if copy or kind != "slot" else val
    return step, [b.p for b in branches]


def _generated(e, ins, outs, ls, fn, ops):
    """The step of a loop compiled into one generated function (LoopSource
    `ls` and its loaded driver `fn`: codegen/cpu/loop_emit.py): per run,
    the carries' buffers (the first holds the initial value and gets the
    final one), the stacked ys and the scratch buffers are allocated, then
    one call runs every step. The driver takes a 0-d array as a 1-element
    one (a descriptor's shape says which arrays it takes reshaped)."""
    p = e.params
    if ls.kind == "scan":
        nk, first = p["num_carry"], p["num_consts"]
        length, reverse = int(p["length"]), int(p["reverse"])
    else:
        nk, first = len(e.outs), p["cond_nconsts"] + p["body_nconsts"]
        length = reverse = 0
    c_avals = [v.aval for v in e.outs[:nk]]
    y_avals = [v.aval for v in e.outs[nk:]]
    read = _reader(ops, ins)
    dtypes = [x.aval.dtype for x in e.inputs]
    copy_of, alloc, empty = ops.copy_of, ops.alloc, memory.empty

    def operand(x, k, shape):
        # the driver's signature takes writable C-contiguous arrays
        if type(x) is not np.ndarray or x.dtype != dtypes[k] or \
                not (fl := x.flags).c_contiguous or not fl.writeable:
            x = np.array(x, dtype=dtypes[k], order="C")
        return x if shape is None else x.reshape(shape)

    def step(env):
        args = read(env)
        cur = [copy_of(x, a) for x, a in zip(args[first:first + nk], c_avals)]
        ys = [alloc(a) for a in y_avals]
        call = []
        for kind, what, shape in ls.args:
            if kind == "operand":
                call.append(operand(args[what], what, shape))
                continue
            if kind == "fixed":
                call.append(what)
                continue
            if kind == "carry":
                x = cur[what]
            elif kind == "next":
                x = alloc(c_avals[what])
            elif kind == "ys":
                x = ys[what]
            elif kind == "scratch":
                call.append(empty(shape, what))
                continue
            else:
                call.append(length if kind == "length" else reverse)
                continue
            call.append(x if shape is None else x.reshape(shape))
        fn(*call)
        for o, c in zip(outs, cur + ys):
            env[o] = c

    plans = [dict(part=e.prim.name, kernels=[("loop", ls)], launchers=[fn],
                  library_call_count=0)]
    parts = {}
    for part, gname, ks, fname in ls.groups:
        parts.setdefault(part, []).append((gname, ks, fname))
    for part, groups in parts.items():
        plans.append(dict(part=part, kernels=[(gname, InLoop(ks, ls.key, fname))
                                              for gname, ks, fname in groups],
                          launchers=[], library_call_count=0))
    return step, plans


class InLoop:
    """A kernel group compiled inside a generated loop (inlined into the
    driver of the loop's module nk_<key>, or its function `fname`): listed
    with the program's kernels."""
    parallel = False
    in_loop = True

    def __init__(self, ks, key, fname):
        self.ks, self.key, self.fname = ks, key, fname


CONTROL_STEPS = {"scan": _scan, "while": _while, "cond": _cond}


def control_step(e, ins, outs, compile_body, ops, generate=None):
    """(step, [plans of the bodies]) of control equation `e`. `generate()`:
    None, or (LoopSource, driver) when the device runs the whole loop as one
    generated function (CPU: runtime/cpu_device.py)."""
    rule = CONTROL_STEPS.get(e.prim.name)
    if rule is None:
        raise NotImplementedError(f"the runtime has no control step for {e.prim.name} "
                                  f"(checkpoint is inlined by fusion)")
    if generate is not None and e.prim.name in ("scan", "while"):
        gen = generate()
        if gen:
            return _generated(e, ins, outs, *gen, ops)
    return rule(e, ins, outs, compile_body, ops)
