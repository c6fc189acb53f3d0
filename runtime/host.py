"""Stage runtime: host steps: equations the runtime runs in Python between
kernels (kind 'host': the effect debug_callback, and pure_callback, which
has results), on CPU and on CUDA.

Input: a host equation of the fused graph (fusion.is_host) and its input
references (slots, or a literal's value). Output: a plan step `step(env)` (the
Executable's, on every device).

The step hands the callback host copies of its operands: a copy from the
device on CUDA, a copy of the pooled buffer on CPU, so a callback that keeps
an array never sees the buffer reused by a later kernel. Operands stay alive
until the step has run: it is their reader in the memory plan
(executable.release_plan). A step with results (pure_callback) stores each
in its slot as a fresh host array, or staged to the device by the device's
`from_host` (CUDA: to_device).
"""
import numpy as np

# Host-step rules: primitive name -> (equation -> function of the host operands).
HOST_STEPS = {"debug_callback": lambda e: e.params["callback"],
              "pure_callback": lambda e: lambda *xs: e.prim.impl(*xs, **e.params)}


def host_step(fn, ins, outs=(), from_host=None):
    if not outs:
        def step(env):
            fn(*[np.array(env[i]) if isinstance(i, int) else i for i in ins])
        return step

    def step_with_results(env):
        res = fn(*[np.array(env[i]) if isinstance(i, int) else i for i in ins])
        for o, r in zip(outs, res):
            env[o] = r if from_host is None else from_host(r)
    return step_with_results
