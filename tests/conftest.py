"""Shared fixtures: one session-scoped Prefect test harness (a real API server on SQLite)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

# Before Prefect is imported anywhere: no telemetry (no network here), a private PREFECT_HOME.
_home = tempfile.mkdtemp(prefix="videogen-prefect-home-")
os.environ.setdefault("PREFECT_HOME", _home)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_VIDEOGEN_LOCAL_JOBS", os.path.join(_home, "local-jobs"))
# Cached results (submits, waits) belong to this session, even when PREFECT_HOME is the user's own:
# a second run of the suite must not answer a submit from the first run's cache with a job of an
# emulator (or a local job folder) that no longer exists.
os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", os.path.join(_home, "storage"))
# Prefect-level retries of wait/download happen at once in tests: no real backoff sleeps.
os.environ.setdefault("PREFECT_VIDEOGEN_RETRY_DELAYS", "0,0")
# The worker policy (prefect_videogen.policy) allows paths under the working directory only; tests
# keep their files and storage under pytest's temporary directories, so the temp root is allowed too.
# Tests of the policy itself build explicit WorkerPolicy objects or set narrower roots.
os.environ.setdefault("PREFECT_VIDEOGEN_ALLOWED_ROOTS", os.pathsep.join([os.getcwd(), tempfile.gettempdir()]))

import pytest  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    """Leave no temporary PREFECT_HOME behind (pytest's own tmp_path folders are pruned by pytest)."""
    shutil.rmtree(_home, ignore_errors=True)


# A test's work begun at collection (see pytest_collection_modifyitems), by test item.
BEGUN = pytest.StashKey[object]()


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only selected tests begin anything
def pytest_collection_modifyitems(config, items):
    """Begin the slow subprocesses that selected tests name, so that they run beside the tests before
    them: a test function's ``begin_early`` (fixture ``begun``), and a module's, once for the module
    (fixture ``begun_module``). The tests then check what they did."""
    if config.option.collectonly:
        return
    for item in items:
        begin = getattr(getattr(item, "function", None), "begin_early", None)
        if begin is not None:
            item.stash[BEGUN] = begin()
        module = item.getparent(pytest.Module)
        begin = getattr(getattr(module, "obj", None), "begin_early", None)
        if module is not None and begin is not None and BEGUN not in module.stash:
            module.stash[BEGUN] = begin()


@pytest.fixture
def begun(request):
    """What this test's ``begin_early`` began at collection."""
    return request.node.stash[BEGUN]


@pytest.fixture(scope="module")
def begun_module(request):
    """What this module's ``begin_early`` began at collection."""
    return request.node.stash[BEGUN]


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect API server for the whole session (started once: ~12 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def debug_logs(caplog):
    """``caplog`` capturing DEBUG records of the HTTP stack and of this package, for "never leaks"
    tests; caplog restores every level afterwards (a level left at DEBUG would make every later
    HTTP request of the session, Prefect's included, log about ten records)."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "prefect_videogen"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def videos_dir(tmp_path):
    path = tmp_path / "videos"
    path.mkdir()
    return path
