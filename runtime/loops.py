"""Stage runtime: the control steps: scan, while and cond run the compiled
plans of their bodies, never unrolled, on CPU and on CUDA.

Input: a control equation of the fused graph, its input references (slots,
or a literal's value), its output slots, `compile_body(ClosedGraph, part,
dests)` (program.plan_program for the same backend and device) and the
device's loop operations (`CPU_OPS` here; cuda_loops.CUDA_OPS on CUDA).
Output: a plan step `step(env, owned=())` (the interface of every step:
the CPU Executable calls step(env), the CUDA program step(env, owned)), and
the plans of the bodies (their kernels belong to the program).

- scan: the carries live in two preallocated buffers each (one read, one
  written, swapped every step); the body's kernels write the new carry and
  the step's row of each stacked ys straight into place (program.plan_program
  with `dests`); per-step inputs are views xs[t] (no copy; device views on
  CUDA). A result no kernel of the body computes (a carry passed through, a
  literal, a body input, a library call's result) costs one copy per step
  into place. `reverse` runs t from length-1 down; length 0 gives ys of
  shape (0, ...) and a copy of init.
- while: the cond plan runs before each iteration: one boolean read back to
  the host per iteration on CUDA; the carries as in scan.
- cond: the index is read (clamped into range, as the numpy impl does) and
  that branch's plan runs; a result that is a branch input or const is
  copied, so results never alias the caller's arrays.
Each run of a body reuses one slot list (its env) for all iterations.
"""
import numpy as np

from . import memory


class CpuLoopOps:
    """The loop operations on numpy arrays."""
    steps_take_owned = False

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
        self.owned = frozenset(self.dests)
        self._consts = None

    def env(self):
        p = self.p
        if self._consts is None:            # on CUDA: copied to the device once
            self._consts = [self.ops.const(c) for c in p["fused"].consts]
        env = [None] * p["n_slots"]
        for s, c in zip(p["const_slots"], self._consts):
            env[s] = c
        return env

    def runner(self):
        """run(env): every step of the plan, releasing intermediates as
        planned (not the inputs: the next iteration overwrites them)."""
        keep = set(self.in_slots)
        plan = [(step, [s for s in release if s not in keep] or ())
                for step, release in self.p["plan"]]
        owned = self.owned
        if self.ops.steps_take_owned:
            def run(env):
                for step, release in plan:
                    step(env, owned)
                    for s in release:
                        env[s] = None
            return run

        def run(env):
            for step, release in plan:
                step(env)
                for s in release:
                    env[s] = None
        return run

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


def _scan(e, ins, outs, compile_body, ops):
    p = e.params
    nc, nk, length, reverse = p["num_consts"], p["num_carry"], p["length"], p["reverse"]
    body = Body(compile_body(p["body"], "body", True), ops)
    run, read = body.runner(), _reader(ops, ins)
    c_avals = [v.aval for v in e.outs[:nk]]
    y_avals = [v.aval for v in p["body"].graph.outvars[nk:]]
    x_avals = [v.aval for v in p["body"].graph.invars[nc + nk:]]
    put_ins, put_dests = _slots_setter(body.in_slots), _slots_setter(body.dests)
    c_copy, y_copy = body.copies(range(nk)), body.copies(range(nk, nk + len(y_avals)))
    copy, rows = ops.copy, ops.rows

    def step(env, owned=()):
        args = read(env)
        consts = args[:nc]
        cur = [ops.copy_of(x, a) for x, a in zip(args[nc:nc + nk], c_avals)]
        other = [ops.alloc(a) for a in c_avals]
        ys = [ops.alloc(a, (length,)) for a in y_avals]
        x_rows = [rows(x, a) for x, a in zip(args[nc + nk:], x_avals)]
        y_rows = [rows(y, a) for y, a in zip(ys, y_avals)]
        benv = body.env()
        for t in (range(length - 1, -1, -1) if reverse else range(length)):
            put_ins(benv, consts + cur + [r(t) for r in x_rows])
            put_dests(benv, other + [r(t) for r in y_rows])
            run(benv)
            if c_copy:
                for j, s, lit in c_copy:
                    copy(other[j], benv[s] if s is not None else lit)
            if y_copy:
                for j, s, lit in y_copy:
                    copy(y_rows[j - nk](t), benv[s] if s is not None else lit)
            cur, other = other, cur
        for o, c in zip(outs, cur + ys):
            env[o] = c
    return step, [body.p]


def _while(e, ins, outs, compile_body, ops):
    p = e.params
    ncc, nbc = p["cond_nconsts"], p["body_nconsts"]
    cond = Body(compile_body(p["cond"], "cond", False), ops)
    body = Body(compile_body(p["body"], "body", True), ops)
    run_cond, run_body, read = cond.runner(), body.runner(), _reader(ops, ins)
    avals = [v.aval for v in e.outs]
    nk = len(avals)
    cc_in, cv_in = cond.in_slots[:ncc], cond.in_slots[ncc:]
    bc_in, bv_in = body.in_slots[:nbc], body.in_slots[nbc:]
    b_copy = body.copies(range(nk))
    copy, truth = ops.copy, ops.read

    def step(env, owned=()):
        args = read(env)
        cconsts, bconsts = args[:ncc], args[ncc:ncc + nbc]
        cur = [ops.copy_of(x, a) for x, a in zip(args[ncc + nbc:], avals)]
        other = [ops.alloc(a) for a in avals]
        cenv, benv = cond.env(), body.env()
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

    def step(env, owned=()):
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


CONTROL_STEPS = {"scan": _scan, "while": _while, "cond": _cond}


def control_step(e, ins, outs, compile_body, ops):
    """(step, [plans of the bodies]) of control equation `e`."""
    rule = CONTROL_STEPS.get(e.prim.name)
    if rule is None:
        raise NotImplementedError(f"the runtime has no control step for {e.prim.name} "
                                  f"(checkpoint is inlined by fusion)")
    return rule(e, ins, outs, compile_body, ops)
