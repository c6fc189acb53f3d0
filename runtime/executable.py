"""Stage runtime: executables: the ordered launches of one compiled function.

Input: the fused ClosedGraph (kernel groups, library calls, views) and the
loaded kernels. Output: an `Executable`, called with the flat argument leaves
and returning the flat outputs (numpy arrays on CPU).

Every Var gets a slot in a list; a step reads its input slots and fills its
output slots. Outputs of kernels are allocated per call (results belong to
the caller); arrays are C-contiguous throughout, so a reshape is a free view.
"""
import numpy as np

from ..ir.core import Lit, Var


class Executable:
    def __init__(self, name, in_avals, n_slots, const_slots, consts, in_slots, steps,
                 outs, stage_texts, kernel_count, library_call_count):
        self.name = name
        self.in_avals = in_avals
        self._template = [None] * n_slots
        for s, c in zip(const_slots, consts):
            self._template[s] = c
        self._in = list(zip(in_slots, [a.dtype for a in in_avals]))
        self._steps = steps
        self._outs = outs                  # ('slot', k, copy?) or ('value', array)
        self._stage_texts = stage_texts
        self.kernel_count = kernel_count
        self.library_call_count = library_call_count

    def stage_names(self):
        return list(self._stage_texts)

    def stage_text(self, stage):
        if stage not in self._stage_texts:
            raise KeyError(f"no stage {stage!r}; stages are {self.stage_names()}")
        t = self._stage_texts[stage]
        return t() if callable(t) else t

    def __call__(self, *args):
        env = self._template.copy()
        for (slot, dt), x in zip(self._in, args):
            if type(x) is not np.ndarray or x.dtype != dt or not x.flags.c_contiguous:
                x = np.ascontiguousarray(x, dtype=dt)
            env[slot] = x
        for step in self._steps:
            step(env)
        out = []
        for kind, v, copy in self._outs:
            if kind == "slot":
                out.append(env[v].copy() if copy else env[v])
            else:
                out.append(v.copy())
        return out


def kernel_step(fn, ins, outs, out_specs, dims):
    """Launch: allocate outputs, call the kernel with inputs, outputs, dims."""
    if len(outs) == 1:
        (o,), ((shape, dt),) = outs, out_specs

        def step(env):
            r = np.empty(shape, dt)
            fn(*[env[i] for i in ins], r, dims)
            env[o] = r
        return step

    def step(env):
        rs = [np.empty(shape, dt) for shape, dt in out_specs]
        fn(*[env[i] for i in ins], *rs, dims)
        for o, r in zip(outs, rs):
            env[o] = r
    return step


def call_step(fn, ins, out, params):
    def step(env):
        env[out] = fn(*[env[i] if isinstance(i, int) else i for i in ins], **params)
    return step


def view_step(i, out, shape):
    def step(env):
        env[out] = env[i].reshape(shape)
    return step


def slot_or_value(slots, x):
    """An input reference: the Var's slot, or a Lit's value as a 0-d array."""
    if isinstance(x, Lit):
        return np.asarray(x.val, dtype=x.aval.dtype)
    assert isinstance(x, Var)
    return slots[x]
