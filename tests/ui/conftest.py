"""The browser suite's fixtures: a real Prefect server that serves the UI, runs made against it,
and headless system Chromium driven by Playwright.

``prefect_test_harness`` (the ``prefect_server`` fixture) starts its API with PREFECT_UI_ENABLED=0,
so this suite starts ``prefect server start`` on a free loopback port with its own PREFECT_HOME,
once per session. Skipped when Chromium or Playwright is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

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


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory):
    """``prefect server start`` serving API and UI on 127.0.0.1:<free port>; yields the UI's base URL."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    home = tmp_path_factory.mktemp("ui-server-home")
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
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"prefect server exited: {(home / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("prefect server did not start within 120 s")
            time.sleep(0.5)  # waiting for a real subprocess to come up, not a test delay
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


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
