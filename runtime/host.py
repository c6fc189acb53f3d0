"""Stage runtime: host steps: equations the runtime runs in Python between
kernels (the effectful primitives: debug_callback), on CPU and on CUDA.

Input: a host equation of the fused graph (fusion.is_host) and its input
references (slots, or a literal's value). Output: a plan step, called as
`step(env)` by the CPU Executable and `step(env, owned)` by the CUDA program.

The step hands the callback host copies of its operands: a copy from the
device on CUDA, a copy of the pooled buffer on CPU, so a callback that keeps
an array never sees the buffer reused by a later kernel. Operands stay alive
until the step has run: it is their reader in the memory plan
(executable.release_plan).
"""
import numpy as np

# Host-step rules: primitive name -> (equation -> function of the host operands).
HOST_STEPS = {"debug_callback": lambda e: e.params["callback"]}


def host_step(fn, ins):
    def step(env, owned=()):
        fn(*[np.array(env[i]) if isinstance(i, int) else i for i in ins])
    return step
