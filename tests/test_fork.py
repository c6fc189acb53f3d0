"""Fork safety: a child made with fork() (a DataLoader-style worker pool)
runs large kernels after its parent ran them split across its kernel
threads.

needle runs no OpenMP (GNU OpenMP was not fork-safe: a child used to be
killed at its first parallel launch); a large kernel's rows run on needle's
own pool of Python threads (runtime/parallel.py), and a child forked after
that pool started runs every kernel on its own thread. The scenario runs in
a subprocess with a timeout, so a killed or hung child fails the test
instead of the test run; it must stay green whatever threading a later
needle uses.
"""
import os
import subprocess
import sys
import textwrap


SCRIPT = textwrap.dedent("""
    import multiprocessing as mp
    import os
    import sys

    import numpy as np

    import needle
    import needle.numpy as nnp

    N = 1 << 17                     # above NEEDLE_PARALLEL_MIN_SIZE: the prange variant
    f = needle.jit(lambda a: nnp.sqrt(a) * 2.0 + 1.0)
    g = needle.jit(lambda a: (a * a).sum(axis=1))   # first compiled in the children
    x = np.arange(N, dtype=np.float32)

    def want_f(k):
        return np.sqrt(x + k) * np.float32(2) + np.float32(1)

    def ok_f(k):
        return np.allclose(f(x + k), want_f(k), rtol=1e-6)

    def ok_g():
        m = x.reshape(512, 256) / N
        return np.allclose(g(m), (m * m).sum(axis=1), rtol=1e-5)

    def work(k):                    # a pool worker
        return ok_f(k) and ok_g()

    def fork_and_check(body):
        pid = os.fork()
        if pid == 0:
            try:
                code = 0 if body() else 3
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 4
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    assert "(parallel," in f.lower(x).as_text("kernels")
    assert ok_f(0)                                  # the parent starts the threading layer
    assert fork_and_check(lambda: ok_f(1) and ok_g()) == 0, "child"
    # a grandchild: the child forks again after running kernels itself
    assert fork_and_check(lambda: ok_f(2) and fork_and_check(lambda: ok_f(3)) == 0) == 0, \\
        "grandchild"
    with mp.get_context("fork").Pool(2) as pool:   # DataLoader-style workers
        assert all(pool.map(work, range(4))), "pool"
    assert ok_f(5) and ok_g()                       # the parent still runs (in parallel)
    print("FORK-OK")
""")


def test_forked_children_run_large_kernels_after_the_parent():
    env = dict(os.environ, NEEDLE_PARALLEL_MIN_SIZE=str(1 << 16), NEEDLE_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "FORK-OK" in r.stdout, r.stdout + r.stderr[-3000:]
    assert "unsafe" not in r.stderr

