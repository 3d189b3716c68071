"""What the benchmarks share: an emulator in its own process, a private Prefect home, memory and CPU.

The emulator runs in a separate process so that its CPU and memory are not counted against the
client being measured. Run directly, this module is that process:

    python bench/_common.py serve apiframe --port 8123 --latency 3 --warm 1280x720x4
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def quiet_prefect_home() -> str:
    """A private PREFECT_HOME and no telemetry (no network here); call before importing Prefect."""
    home = tempfile.mkdtemp(prefix="videogen-bench-prefect-")
    os.environ["PREFECT_HOME"] = home
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # Hundreds of task runs' INFO lines would drown the figures; they still go to the API.
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "WARNING"
    os.environ.setdefault("PREFECT_VIDEOGEN_LOCAL_JOBS", os.path.join(home, "local-jobs"))
    return home


async def recorded_task_runs(flow_run_id, *, timeout: float = 120.0) -> dict:
    """The flow run's finished task runs, once the server has recorded them all.

    The server records task runs from events, seconds behind the flow (on SQLite under a batch's
    load, tens of seconds): read until two reads a second apart agree, at most ``timeout`` s.
    """
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    async def read_all(client) -> dict:
        runs, offset = {}, 0
        while page := await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            offset=offset,
            limit=200,
            sort=TaskRunSort.EXPECTED_START_TIME_DESC,
        ):
            runs.update((run.id, run) for run in page)
            offset += len(page)
        return {run_id: run for run_id, run in runs.items() if run.end_time}

    deadline = time.monotonic() + timeout
    async with get_client() as client:
        runs, previous = await read_all(client), None
        while (previous is None or len(runs) != len(previous)) and time.monotonic() < deadline:
            await asyncio.sleep(1)
            previous, runs = runs, await read_all(client)
    return runs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmulatorProcess:
    """An emulator served by a child process; ``state()`` and ``reset()`` use its control routes."""

    def __init__(self, process: subprocess.Popen, base_url: str) -> None:
        self.process, self.base_url = process, base_url

    def state(self) -> dict:
        return httpx.get(f"{self.base_url}/_emulator/state", timeout=30).json()

    def counters(self) -> dict[str, int]:
        return self.state()["counters"]

    def reset(self) -> None:
        httpx.post(f"{self.base_url}/_emulator/reset", timeout=30).raise_for_status()


@contextmanager
def emulator_process(
    provider: str = "apiframe",
    *,
    latency: float,
    warm: str | None = None,
    poll_after_ms: int | None = None,
) -> Iterator[EmulatorProcess]:
    """Start ``provider``'s emulator in a child process and wait until it answers (and has rendered ``warm``)."""
    port = free_port()
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "serve",
        provider,
        "--port",
        str(port),
        "--latency",
        str(latency),
    ]
    if warm:
        command += ["--warm", warm]
    if poll_after_ms is not None:
        command += ["--poll-after-ms", str(poll_after_ms)]
    process = subprocess.Popen(command)
    emulator = EmulatorProcess(process, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                emulator.state()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{provider} emulator did not start") from None
                time.sleep(0.1)
        yield emulator
    finally:
        process.terminate()
        process.wait(timeout=30)


def rss_mib(pid: int | str = "self") -> float:
    """Resident set size now (Linux /proc), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc (Linux only)")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}"


def _serve(args: argparse.Namespace) -> None:
    from prefect_videogen.testing import EMULATORS, EmulatorServer
    from prefect_videogen.testing.server import video_bytes

    if args.warm:  # render the clip before serving, so no measured request pays for it
        width, height, duration = (int(part) for part in args.warm.split("x"))
        video_bytes(width, height, duration)
    kwargs = {"latency_seconds": args.latency}
    if args.poll_after_ms is not None:
        kwargs["poll_after_ms"] = args.poll_after_ms
    EmulatorServer(EMULATORS[args.provider](**kwargs), port=args.port).serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="serve an emulator for the benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("provider")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--latency", type=float, required=True)
    serve.add_argument("--warm", help="WIDTHxHEIGHTxSECONDS of a clip to render before serving")
    serve.add_argument("--poll-after-ms", type=int)
    _serve(parser.parse_args())
