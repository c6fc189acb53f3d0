"""Configuration of the CUDA backend tests (a pytest run of its own).

The simulator tests need NUMBA_ENABLE_CUDASIM=1 before `numba.cuda` is
first imported; this file sets it unless it is set already, so
`NUMBA_ENABLE_CUDASIM=0 python -m pytest tests_cuda` runs the same tests on
a real GPU. The PTX tests (marker `ptx`) compile in a subprocess without the
simulator. Everything is skipped when numba.cuda cannot be imported (install
the `cuda` extra). The CPU tests' helpers (tests/helpers.py) and the
primitive examples of tests/test_registry.py are reused from tests/.
"""
import os
import sys
import tempfile

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
os.environ.setdefault("NEEDLE_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"needle-test-cache-{os.getuid()}"))
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "tests")]

try:
    import numba.cuda  # noqa: F401
except Exception:                       # pragma: no cover
    collect_ignore_glob = ["test_*.py"]


def pytest_configure(config):
    config.addinivalue_line("markers", "ptx: compiles kernels to PTX and assembles them with "
                                       "ptxas (no simulator, no GPU needed)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    text = getattr(config, "needle_ptx_table", None)
    if text:
        terminalreporter.section("ptxas: registers, spills (bytes), stack (bytes) per kernel")
        terminalreporter.write_line(text)
