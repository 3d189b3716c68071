"""Every ```python block of README.md runs, so an example can never break silently again.

Blocks run in order, each in a fresh namespace, in a temporary working directory (``./videos`` lands
there), against the session's Prefect test server. A block with top-level ``await`` is wrapped in an
``async def`` and run with ``asyncio.run``, as the README tells users to do in a script. Blocks that load
saved provider blocks get them pointed at the project's emulators on loopback first: no example ever
reaches a real provider.
"""

from __future__ import annotations

import ast
import asyncio
import re
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def uses_await(source: str) -> bool:
    try:
        compile(source, "README.md", "exec")
        return False
    except SyntaxError:  # 'await' outside function: valid only as top-level await
        compile(source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        return True


def run_block(source: str) -> dict:
    namespace: dict = {"__name__": "readme_example"}
    if not uses_await(source):
        exec(compile(source, "README.md", "exec"), namespace)
        return namespace
    body = textwrap.indent(source, "    ")
    exec(compile(f"async def _example():\n{body}\n    return locals()\n", "README.md", "exec"), namespace)
    return asyncio.run(namespace["_example"]())


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 4


@pytest.fixture
def emulated_blocks(prefect_server):
    """Saved blocks named as in the README, pointing at emulators on 127.0.0.1 (saved after the README's
    own examples save theirs, so they win)."""
    from prefect.blocks.notifications import SlackWebhook

    from prefect_videogen.blocks import APIFrameCredentials
    from prefect_videogen.testing import APIFrameEmulator, EmulatorServer

    with EmulatorServer(APIFrameEmulator(latency_seconds=0.05)) as server:

        def save() -> None:
            APIFrameCredentials(api_key=server.emulator.api_key, base_url=server.base_url).save(
                "apiframe", overwrite=True
            )
            SlackWebhook(url="http://127.0.0.1:9/hook").save("videogen-alerts", overwrite=True)

        yield save, server
    # The README's automation notifies on failed-video events: not for the rest of this session.
    from prefect.automations import Automation

    for _ in range(5):
        try:
            Automation.read(name="videogen: a video failed").delete()
        except ValueError:  # none left
            break


def test_every_python_block_runs(emulated_blocks, tmp_path, monkeypatch):
    save_emulated, server = emulated_blocks
    monkeypatch.chdir(tmp_path)
    ran = []
    for number, source in enumerate(BLOCKS, 1):
        if "APIFrameCredentials.aload(" in source or "SlackWebhook.load(" in source:
            save_emulated()
        try:
            namespace = run_block(source)
        except Exception as exc:
            pytest.fail(f"README python block {number} failed: {type(exc).__name__}: {exc}\n{source}")
        ran.append(namespace)
    batch = next(ns["result"] for ns in ran if "generate_videos" in ns and "result" in ns)
    assert batch.counts == {"stored": 4}
    assert server.emulator.counters["jobs_created"] == 4  # the batch example went to the emulator, nowhere else
    single = next(ns["result"] for ns in ran if "generate_video" in ns and "result" in ns)
    assert single.video_uri.startswith(str(tmp_path / "videos"))
