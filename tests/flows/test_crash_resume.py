"""A batch killed mid-way (SIGKILL) and run again pays for no job twice and stores every video.

Everything is a real process: the APIFrame emulator runs on its own (``prefect-videogen emulator``)
and the test reads its counters over HTTP; the batch runs in ``tests/crash_runner.py`` against the
session's Prefect API, with the same PREFECT_HOME so both runs share cached task results. The
runner prints each progress event as it happens, so the kill lands at a known point without
sleeping: right after the first job was created (other submits still in flight, nothing
downloaded), or right after the first video was stored (jobs waiting, others not yet submitted).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from prefect_videogen.batch.manifest import Manifest, load_manifest
from prefect_videogen.blocks import LocalVideoStorage
from prefect_videogen.media import mismatch, probe_video
from prefect_videogen.spend.ledger import Ledger
from prefect_videogen.testing.server import free_port

RUNNER = Path(__file__).resolve().parent.parent / "crash_runner.py"
ITEMS = 8
# A subprocess flow imports Prefect and talks to the harness: allow for a loaded 2-core machine.
RUN_TIMEOUT = 180


def runner_env() -> dict[str, str]:
    """The harness's API and PREFECT_HOME, so the runner's task caches are the test's."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME

    return {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_HOME": str(PREFECT_HOME.value()),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }


@pytest.fixture
def apiframe_process(tmp_path) -> Iterator[str]:
    """The APIFrame emulator in its own process (1.5 s per job); yields its base URL."""
    port = free_port()
    log = (tmp_path / "emulator.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect_videogen.cli", "emulator", "apiframe", "--port", str(port), "--latency", "1.5"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # readiness: the port answers (polled; nothing else to wait on)
            try:
                httpx.get(f"{base_url}/_emulator/state", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"emulator did not start: {(tmp_path / 'emulator.log').read_text()}") from None
                time.sleep(0.05)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def emulator_state(base_url: str) -> dict:
    return httpx.get(f"{base_url}/_emulator/state", timeout=5).json()


def start_runner(args: dict, stderr_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(RUNNER), json.dumps(args)],
        env=runner_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=stderr_path.open("a"),
    )


def kill_at(process: subprocess.Popen, event: str, stderr_path: Path) -> list[str]:
    """Read the runner's events until the first ``event``, then SIGKILL it; returns the lines seen."""
    seen = []
    for line in process.stdout:  # blocks on the runner's own output: no sleeping
        seen.append(line.strip())
        if line.startswith(f"event {event} "):
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=RUN_TIMEOUT)
    assert process.returncode == -signal.SIGKILL, (seen, stderr_path.read_text()[-3000:])
    return seen


def run_to_completion(args: dict, stderr_path: Path) -> dict:
    process = start_runner(args, stderr_path)
    out, _ = process.communicate(timeout=RUN_TIMEOUT)
    assert process.returncode == 0, stderr_path.read_text()[-3000:]
    result = [line for line in out.splitlines() if line.startswith("result ")]
    return json.loads(result[-1].removeprefix("result "))


def check_stored(storage_dir: Path, width: int, height: int) -> Manifest:
    """Every item of the manifest is stored, its file exists and PyAV reads the video asked for."""
    manifest = load_manifest(str(storage_dir / "manifests" / "crash-resume.json"))
    assert len(manifest.items) == ITEMS
    for item in manifest.items.values():
        assert item.status == "stored" and item.video_key and item.sidecar_key, item
        assert (storage_dir / item.sidecar_key).is_file()
        probe = probe_video(storage_dir / item.video_key)
        assert mismatch(probe, duration=4, width=width, height=height) is None, (item.item_id, probe)
    return manifest


def ledger_lines(storage_dir: Path, provider: str) -> dict[str, int]:
    """Job id -> number of charges recorded in its ledger file.

    The ``pending`` lines booked when the submit was claimed (under the claim, then under the job id)
    are not charges; every other line is one.
    """
    counts = {}
    for f in (storage_dir / "ledger" / provider).glob("*.jsonl"):
        charges = [
            line
            for line in f.read_text().splitlines()
            if line.strip() and json.loads(line)["charge_status"] != "pending"
        ]
        if charges or not f.stem.startswith("claim-"):
            counts[f.stem] = len(charges)
    return counts


@pytest.mark.parametrize("kill_after", ["submitted", "stored"])
async def test_apiframe_batch_killed_and_rerun_pays_each_job_once(
    prefect_server, tmp_path, apiframe_process, kill_after
):
    storage_dir = tmp_path / "videos"
    args = {
        "provider": "apiframe",
        "base_url": apiframe_process,
        "storage": str(storage_dir),
        "tag": f"apiframe-{tmp_path.name}",
        "items": ITEMS,
        "concurrency": 4,
    }
    stderr = tmp_path / "runner.log"

    kill_at(start_runner(args, stderr), kill_after, stderr)
    at_kill = emulator_state(apiframe_process)["counters"]
    print(f"\nkilled after first {kill_after!r}: {at_kill}")
    # Killed mid-way, really. After the first "stored" every job may already exist: an item frees its
    # provider slot once its job is done, so the next wave is submitted while the first downloads.
    assert 1 <= at_kill.get("jobs_created", 0)
    if kill_after == "submitted":
        assert at_kill["jobs_created"] < ITEMS
    assert at_kill.get("downloads", 0) < ITEMS

    counts = run_to_completion(args, stderr)
    state = emulator_state(apiframe_process)
    print(f"after rerun: {state['counters']}")
    assert counts == {"stored": ITEMS}
    assert state["counters"]["jobs_created"] == ITEMS  # no job created twice across the crash

    manifest = check_stored(storage_dir, 1280, 720)
    assert {i.job_id for i in manifest.items.values()} == set(state["charges"])
    lines = ledger_lines(storage_dir, "apiframe")
    assert lines == {job_id: 1 for job_id in state["charges"]}  # exactly one entry per job
    entries = await Ledger(LocalVideoStorage(base_path=str(storage_dir)).get_storage()).entries()
    assert sum(e.charged_amount for e in entries) == sum(state["charges"].values())


async def test_local_batch_killed_and_rerun_renders_each_job_once(prefect_server, tmp_path):
    storage_dir, jobs_dir = tmp_path / "videos", tmp_path / "jobs"
    args = {
        "provider": "local",
        "jobs_dir": str(jobs_dir),
        "storage": str(storage_dir),
        "tag": f"local-{tmp_path.name}",
        "items": ITEMS,
        "concurrency": 4,
        "queue_delay_seconds": 1.5,
    }
    stderr = tmp_path / "runner.log"

    kill_at(start_runner(args, stderr), "submitted", stderr)
    created = sorted(jobs_dir.glob("*.json"))
    assert 1 <= len(created) < ITEMS and not list(storage_dir.rglob("*.mp4"))

    assert run_to_completion(args, stderr) == {"stored": ITEMS}
    jobs = sorted(p.name for p in jobs_dir.glob("*.json"))
    assert len(jobs) == ITEMS and {p.name for p in created} <= set(jobs)  # the rerun reused the first jobs
    manifest = check_stored(storage_dir, 1280, 720)
    assert {f"{i.job_id}.json" for i in manifest.items.values()} == set(jobs)
    assert ledger_lines(storage_dir, "local") == {Path(j).stem: 1 for j in jobs}


# -- in-flight creates and concurrent processes, for every paid provider ----------------------------
# The emulator runs in this process (a loopback server thread), so its faults and counters are at hand;
# the batches run in subprocesses that share only the storage (no Redis).

PAID = ["openai", "scenario", "apiframe"]


def emulator_of(provider: str):
    from prefect_videogen.testing import APIFrameEmulator, OpenAIEmulator, ScenarioEmulator

    return {"openai": OpenAIEmulator, "scenario": ScenarioEmulator, "apiframe": APIFrameEmulator}[provider](
        latency_seconds=0.3
    )


def wait_until(condition, what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` (an emulator counter the subprocess moves); bounded."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def finished(process: subprocess.Popen, stderr_path: Path) -> tuple[dict, list[dict]]:
    out, _ = process.communicate(timeout=RUN_TIMEOUT)
    assert process.returncode == 0, stderr_path.read_text()[-3000:]
    lines = out.splitlines()
    counts = json.loads(next(line for line in reversed(lines) if line.startswith("result ")).removeprefix("result "))
    items = json.loads(next(line for line in reversed(lines) if line.startswith("items ")).removeprefix("items "))
    return counts, items


@pytest.mark.parametrize("provider", PAID)
async def test_sigkill_during_in_flight_creates_then_rerun_pays_each_job_once(prefect_server, tmp_path, provider):
    from prefect_videogen.testing import EmulatorServer, Fault

    storage_dir = tmp_path / "videos"
    stderr = tmp_path / "runner.log"
    with EmulatorServer(emulator_of(provider)) as server:
        emulator = server.emulator
        # Every create is made at once and answered 5 s later: the kill lands while 4 answers are in flight.
        emulator.faults.rate("create", 1.0, Fault(answer_delay_seconds=5.0))
        args = {
            "provider": provider,
            "base_url": server.base_url,
            "storage": str(storage_dir),
            "tag": f"{provider}-{tmp_path.name}",
            "items": ITEMS,
            "concurrency": 4,
        }
        process = start_runner(args, stderr)
        wait_until(lambda: emulator.counters["jobs_created"] >= 4, "four jobs in flight")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=RUN_TIMEOUT)
        in_flight = emulator.counters["jobs_created"]
        assert in_flight == 4  # the provider bound holds the other items back
        claims = list((storage_dir / "claims" / provider).glob("*.json"))
        assert len(claims) == 4 and all(json.loads(c.read_text())["job_id"] is None for c in claims)
        emulator.faults.clear()

        counts, items = finished(start_runner(args, stderr), stderr)
        print(f"\n{provider} after rerun: {dict(emulator.counters)} {counts}")
        assert emulator.counters["jobs_created"] == ITEMS  # the orphans were adopted or refused, never repaid
        entries = await Ledger(LocalVideoStorage(base_path=str(storage_dir)).get_storage()).entries()
        billed = sum(e.charged_amount for e in entries if e.charge_status.value == "billed")
        pending = [e for e in entries if e.charge_status.value == "pending"]
        if provider == "scenario":
            # No jobs listing is documented: the four orphans fail as SubmitUncertain, zero new jobs for them,
            # and their estimates stay in the books as pending.
            assert counts == {"stored": ITEMS - 4, "failed": 4}
            assert all(
                "SubmitUncertain" in (i["error"] or "") or "cannot be looked up" in (i["error"] or "")
                for i in items
                if i["status"] == "failed"
            )
            assert len(pending) == 4
            assert billed + sum(e.estimated.amount for e in pending) == sum(emulator.charges.values())
        else:
            assert counts == {"stored": ITEMS}
            assert pending == [] and len(entries) == ITEMS
            assert billed == pytest.approx(sum(emulator.charges.values()))


@pytest.mark.parametrize("provider", PAID)
async def test_two_processes_run_the_same_batch_at_once_without_redis(prefect_server, tmp_path, provider):
    from prefect_videogen.testing import EmulatorServer, Fault

    storage_dir = tmp_path / "videos"
    with EmulatorServer(emulator_of(provider)) as server:
        emulator = server.emulator
        # A slow answer widens the window in which both processes want the same item.
        emulator.faults.rate("create", 1.0, Fault(answer_delay_seconds=0.3))
        args = {
            "provider": provider,
            "base_url": server.base_url,
            "storage": str(storage_dir),
            "tag": f"{provider}-{tmp_path.name}",
            "items": 6,
            "concurrency": 3,
        }
        env = {k: v for k, v in runner_env().items() if k != "PREFECT_VIDEOGEN_REDIS_URL"}
        processes = [
            subprocess.Popen(
                [sys.executable, str(RUNNER), json.dumps(args)],
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=(tmp_path / f"runner{i}.log").open("a"),
            )
            for i in range(2)
        ]
        results = [finished(p, tmp_path / f"runner{i}.log") for i, p in enumerate(processes)]
        print(f"\n{provider} two processes: {dict(emulator.counters)} {[r[0] for r in results]}")
        assert emulator.counters["jobs_created"] == 6
        assert all(counts == {"stored": 6} for counts, _ in results)
        assert {i["job_id"] for i in results[0][1]} == {i["job_id"] for i in results[1][1]} == set(emulator.jobs)
        entries = await Ledger(LocalVideoStorage(base_path=str(storage_dir)).get_storage()).entries()
        assert len(entries) == 6 and {e.charge_status.value for e in entries} == {"billed"}
