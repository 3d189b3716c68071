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


def pytest_collection_modifyitems(items):
    # Browser tests run last: Playwright's sync API drives its own event loop in the main thread while
    # the browser is open, and the async tests of the session's loop cannot run meanwhile.
    browser_items = [item for item in items if "tests/ui/" in str(item.fspath).replace(os.sep, "/")]
    for item in browser_items:
        item.add_marker(pytest.mark.browser)
    items[:] = [item for item in items if item not in browser_items] + browser_items
    if browser_items and CHROMIUM is not None:
        # The server's first start (its database built from nothing) takes half a minute: begin it now,
        # so that it happens while the rest of the suite runs, not while the suite waits for it.
        _boot.append(_UiServer.start())


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

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)


_boot: list[_UiServer] = []  # started when the browser tests were collected


@pytest.fixture(scope="session")
def ui_server():
    """The UI server's base URL (started at collection, or here when that did not happen)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    server = _boot.pop() if _boot else _UiServer.start()
    try:
        server.wait_until_up()
        yield server.base
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ui_runs(ui_server, tmp_path_factory) -> dict[str, str]:
    """A single-video run, a batch and its rerun, and a deployment, made in a separate process."""
    work = tmp_path_factory.mktemp("ui-runs")
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("make_runs.py"))],
        cwd=work,
        env=_env(work / "home", f"{ui_server}/api"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


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
