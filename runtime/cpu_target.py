"""Stage runtime: the CPU target Numba compiles needle's kernels for.

Input: the host's CPU features (llvmlite). Output: NUMBA_CPU_FEATURES set,
before Numba's first compile, to the host's features with 512-bit vectors
enabled where the host has AVX-512.

Why: LLVM's tuning for recent Intel cores prefers 256-bit vectors
('prefer-256-bit'), so a compute-bound fused kernel (a tanh approximation
with a division) runs at half the width the hardware has; measured here, a
16M-element elementwise chain went from 54% to 73% of the 2-thread copy
bandwidth with 512-bit vectors. A user's own NUMBA_CPU_FEATURES wins.

The prewarm thread and the first compile may call `configure` at once: a
lock makes the second wait, and it counts as done only once the features
are set (else that caller would compile, and key Numba's disk cache, with
Numba's default features).
"""
import os
import sys
import threading

_done = False
_lock = threading.Lock()


def configure():
    global _done
    if _done:
        return
    with _lock:
        if not _done:
            _set_features()
            _done = True


def _set_features():
    if os.environ.get("NUMBA_CPU_FEATURES"):
        return
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
