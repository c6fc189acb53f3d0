"""Test configuration: one kernel cache per run, hypothesis profiles.

The kernel cache lives in $NEEDLE_CACHE_DIR (set by .ci/run to a fresh folder
shared by the pytest-xdist workers); locally it defaults to a folder in the
temp dir that survives between runs. Hypothesis runs the derandomized 'ci'
profile unless HYPOTHESIS_PROFILE names another.
"""
import os
import tempfile

from hypothesis import HealthCheck, settings

os.environ.setdefault("NEEDLE_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"needle-test-cache-{os.getuid()}"))

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=8,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.register_profile("dev", deadline=None, max_examples=30,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
