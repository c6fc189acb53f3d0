"""Stage runtime: the CPU target Numba compiles needle's kernels for.

Input: the host's CPU features (llvmlite). Output: NUMBA_CPU_FEATURES set,
before Numba's first compile, to the host's features with 512-bit vectors
enabled where the host has AVX-512.

Why: LLVM's tuning for recent Intel cores prefers 256-bit vectors
('prefer-256-bit'), so a compute-bound fused kernel (a tanh approximation
with a division) runs at half the width the hardware has; measured here, a
16M-element elementwise chain went from 54% to 73% of the 2-thread copy
bandwidth with 512-bit vectors. A user's own NUMBA_CPU_FEATURES wins.
"""
import os
import sys

_done = False


def configure():
    global _done
    if _done or os.environ.get("NUMBA_CPU_FEATURES"):
        _done = True
        return
    _done = True
    try:
        import llvmlite.binding as ll
        ll.initialize_native_target()
        feats = ll.get_host_cpu_features()
        if not feats.get("avx512f"):
            return
        flat = feats.flatten() + ",-prefer-256-bit"
    except Exception:                       # pragma: no cover - exotic llvmlite builds
        return
    os.environ["NUMBA_CPU_FEATURES"] = flat
    if "numba" in sys.modules:              # Numba already imported: before its first compile
        import numba
        numba.config.CPU_FEATURES = flat
