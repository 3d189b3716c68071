"""The browser suite's fixtures: a real Prefect server that serves the UI, runs made against it,
and headless system Chromium driven by Playwright.

``prefect_test_harness`` (the ``prefect_server`` fixture) starts its API with PREFECT_UI_ENABLED=0,
so this suite starts ``prefect server start`` on a free loopback port with its own PREFECT_HOME,
once per session. Skipped when Chromium or Playwright is missing.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    # Browser tests run last: Playwright's sync API drives its own event loop in the main thread while
    # the browser is open, and the async tests of the session's loop cannot run meanwhile.
    browser_items = [item for item in items if "tests/ui/" in str(item.fspath).replace(os.sep, "/")]
    for item in browser_items:
        item.add_marker(pytest.mark.browser)
    items[:] = [item for item in items if item not in browser_items] + browser_items
    if browser_items and CHROMIUM is not None and not config.option.collectonly:
        # The server's first start (its database built from nothing) takes half a minute, and the runs
        # the tests look at another twenty seconds: begin both now, so that they happen while the rest
        # of the suite runs, not while the suite waits for them.
        server = _UiServer.start()
        server.make_runs_when_up()
        _boot.append(server)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(home: Path, api_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") or k.startswith("PREFECT_VIDEOGEN_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


class _UiServer:
    """``prefect server start`` serving API and UI on 127.0.0.1:<free port>, with its own PREFECT_HOME."""

    def __init__(self, process: subprocess.Popen, home: Path, log: Any, base: str) -> None:
        self.process, self.home, self.log, self.base = process, home, log, base
        self._runs: threading.Thread | None = None
        self._made: subprocess.CompletedProcess | BaseException | None = None

    @classmethod
    def start(cls) -> _UiServer:
        home = Path(tempfile.mkdtemp(prefix="videogen-ui-server-"))
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        env = _env(home) | {"PREFECT_UI_API_URL": f"{base}/api", "PREFECT_UI_ENABLED": "true"}
        log = open(home / "server.log", "wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = cls(process, home, log, base)
        atexit.register(server.stop)  # a session that ends before the browser suite: no server left behind
        return server

    def wait_until_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"prefect server exited: {(self.home / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server did not start within {timeout:g} s")
            time.sleep(0.5)  # waiting for a real subprocess to come up, not a test delay

    def make_runs_when_up(self) -> None:
        """Make the suite's runs (``make_runs.py``) in a background thread once the server is up."""

        def make() -> None:
            try:
                self.wait_until_up()
                self._made = make_runs(self.base, self.home / "runs")
            except BaseException as exc:  # pytest.fail's exception too: re-raised by runs()
                self._made = exc

        self._runs = threading.Thread(target=make, name="ui-make-runs", daemon=True)
        self._runs.start()

    def runs(self) -> dict[str, str]:
        """The ids ``make_runs.py`` printed: made in the background if begun, else made now."""
        if self._runs is None:
            self._made = make_runs(self.base, self.home / "runs")
        else:
            self._runs.join(timeout=300)
        if isinstance(self._made, BaseException):
            raise self._made
        assert isinstance(self._made, subprocess.CompletedProcess), "make_runs.py did not finish within 300 s"
        assert self._made.returncode == 0, self._made.stderr[-4000:]
        return json.loads(self._made.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)


def make_runs(base: str, work: Path) -> subprocess.CompletedProcess:
    """A single-video run, a batch and its rerun, and a deployment, made in a separate process."""
    work.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, str(Path(__file__).with_name("make_runs.py"))],
        cwd=work,
        env=_env(work / "home", f"{base}/api"),
        capture_output=True,
        text=True,
        timeout=240,
    )


_boot: list[_UiServer] = []  # started when the browser tests were collected


@pytest.fixture(scope="session")
def running_ui_server():
    """The UI server (started at collection, or here when that did not happen), once it answers."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    server = _boot.pop() if _boot else _UiServer.start()
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ui_server(running_ui_server) -> str:
    """The UI server's base URL."""
    return running_ui_server.base


@pytest.fixture(scope="session")
def ui_runs(running_ui_server) -> dict[str, str]:
    """A single-video run, a batch and its rerun, and a deployment (see :func:`make_runs`)."""
    return running_ui_server.runs()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ui-screenshots")
    print(f"\nbrowser screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser(ui_server, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser, screenshots, request):
    page = browser.new_page()
    yield page
    page.screenshot(path=str(screenshots / f"{request.node.name}.png"), full_page=True)
    page.close()


@pytest.fixture(scope="session")
def api(ui_server):
    with httpx.Client(base_url=f"{ui_server}/api", timeout=30) as client:
        yield client
