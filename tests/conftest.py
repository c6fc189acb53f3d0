"""Test configuration: one kernel cache per run, graph checks, hypothesis
profiles, the `config` fixture.

The kernel cache lives in $NEEDLE_CACHE_DIR (set by .ci/run to a fresh folder
shared by the pytest-xdist workers); locally it defaults to a folder in the
temp dir that survives between runs. NEEDLE_CHECKS=1 unless set (check_graph
after every pass). Hypothesis runs the derandomized 'ci' profile unless
HYPOTHESIS_PROFILE names another.
"""
import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("NEEDLE_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"needle-test-cache-{os.getuid()}"))
# ir.check_graph after every pass of every jit compile (needle reads this at
# import, below); it costs the whole suite well under a second.
os.environ.setdefault("NEEDLE_CHECKS", "1")
# pytest -n 2 already fills the cores: no compile worker processes (runtime/compile_workers.py)
os.environ.setdefault("NEEDLE_COMPILE_WORKERS", "1")

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=8,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.register_profile("dev", deadline=None, max_examples=30,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def config():
    """needle.config, every option restored after the test (needle reads the
    environment once, at import: a test changes an option with
    `config.update(name, value)`, not with monkeypatch.setenv)."""
    import needle
    saved = needle.config.values()
    yield needle.config
    for name, value in saved.items():
        if getattr(needle.config, name) != value:
            needle.config.update(name, value)


# --- the differential tests on another device ----------------------------------
# With NEEDLE_TEST_DEVICE=cuda (and NUMBA_ENABLE_CUDASIM=1 without a GPU) the
# tests marked `on_device` run again with their jitted calls compiled for that
# device (helpers.jit / helpers.run); the rest, and the eager cases, which
# never touch a device, are deselected.
def pytest_configure(config):
    config.addinivalue_line("markers", "on_device: a differential test whose jitted calls "
                                       "compile for $NEEDLE_TEST_DEVICE (helpers.jit)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("NEEDLE_TEST_DEVICE", "cpu") == "cpu":
        return
    keep, drop = [], []
    for item in items:
        eager = "eager" in getattr(getattr(item, "callspec", None), "id", "").split("-")
        (keep if item.get_closest_marker("on_device") and not eager else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep
