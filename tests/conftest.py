"""Shared fixtures: one session-scoped Prefect test harness (a real API server on SQLite)."""

from __future__ import annotations

import os
import tempfile

# Before Prefect is imported anywhere: no telemetry (no network here), a private PREFECT_HOME.
_home = tempfile.mkdtemp(prefix="videogen-prefect-home-")
os.environ.setdefault("PREFECT_HOME", _home)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_VIDEOGEN_LOCAL_JOBS", os.path.join(_home, "local-jobs"))
# Prefect-level retries of wait/download happen at once in tests: no real backoff sleeps.
os.environ.setdefault("PREFECT_VIDEOGEN_RETRY_DELAYS", "0,0")
# The worker policy (prefect_videogen.policy) allows paths under the working directory only; tests
# keep their files and storage under pytest's temporary directories, so the temp root is allowed too.
# Tests of the policy itself build explicit WorkerPolicy objects or set narrower roots.
os.environ.setdefault("PREFECT_VIDEOGEN_ALLOWED_ROOTS", os.pathsep.join([os.getcwd(), tempfile.gettempdir()]))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect API server for the whole session (started once: ~12 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def videos_dir(tmp_path):
    path = tmp_path / "videos"
    path.mkdir()
    return path
