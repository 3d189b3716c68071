"""Gemini API (Veo) through the flows: stored, verified videos with their ledger lines; claims never repay.

The flows run on the session's Prefect server against the strict Gemini emulator on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from prefect.settings import PREFECT_API_URL

from prefect_videogen.batch.expansion import PromptSource
from prefect_videogen.blocks import LocalVideoStorage
from prefect_videogen.blocks.gemini import GeminiCredentials
from prefect_videogen.errors import SubmitUncertain
from prefect_videogen.flows import generate_video, generate_videos
from prefect_videogen.media import probe_video
from prefect_videogen.models import VideoRequest
from prefect_videogen.spend.costs import ChargeStatus
from prefect_videogen.spend.ledger import Ledger
from prefect_videogen.storage import VideoStorage
from prefect_videogen.testing.gemini_emulator import EMULATOR_API_KEY, GeminiEmulator
from prefect_videogen.testing.server import EmulatorServer, Fault, free_port


@pytest.fixture
def gemini():
    with EmulatorServer(GeminiEmulator(latency_seconds=0.05)) as server:
        yield server


def credentials(base_url: str) -> GeminiCredentials:
    return GeminiCredentials(api_key=EMULATOR_API_KEY, base_url=base_url + "/v1beta", poll_interval_seconds=0.02)


async def ledger_entries(storage_dir: Path):
    return await Ledger(VideoStorage(str(storage_dir))).entries()


async def test_text_and_image_to_video_flows_store_verified_videos_with_ledger_lines(prefect_server, tmp_path, gemini):
    emulator = gemini.emulator
    creds = credentials(gemini.base_url)
    storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
    image = tmp_path / "first.png"
    Image.new("RGB", (160, 90), (10, 120, 200)).save(image)
    text = await generate_video(
        VideoRequest(prompt=f"a fox at dawn {tmp_path.name}", duration=4), provider=creds, storage=storage
    )
    moving = await generate_video(
        VideoRequest(
            prompt=f"the picture comes alive {tmp_path.name}",
            model="veo-3.1-fast-generate-preview",
            duration=6,
            aspect_ratio="9:16",
            image=str(image),
        ),
        provider=creds,
        storage=storage,
    )
    for result, size, seconds in ((text, (1280, 720), 4), (moving, (720, 1280), 6)):
        probe = probe_video(result.video_uri)
        assert (probe.width, probe.height) == size and abs(probe.duration_seconds - seconds) < 0.5
        assert result.provider == "gemini" and result.job_id in emulator.jobs
    assert emulator.jobs[moving.job_id]["input"]["instances"][0]["image"]["mimeType"] == "image/png"
    entries = await ledger_entries(tmp_path / "videos")
    assert sorted(e.job_id for e in entries) == sorted([text.job_id, moving.job_id])
    for entry in entries:  # Gemini reports no cost: the catalog's USD per second is what the books hold
        assert entry.charge_status is ChargeStatus.BILLED and entry.reported is None
        assert entry.estimated.unit == "usd" and entry.charged_usd == pytest.approx(emulator.charges[entry.job_id])
    assert emulator.counters["jobs_created"] == 2


async def test_a_500_after_the_operation_exists_never_pays_twice(prefect_server, tmp_path, gemini):
    emulator = gemini.emulator
    emulator.faults.add("create", Fault(status=500, after_create=True))
    creds = credentials(gemini.base_url)
    storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
    request = VideoRequest(prompt=f"an owl {tmp_path.name}", duration=4)
    for attempt in range(2):  # the run, then a rerun of the same command
        with pytest.raises(SubmitUncertain) as caught:
            await generate_video(request, provider=creds, storage=storage)
        # Gemini lists no operations: the claim is named, nothing is sent again.
        assert "claims/gemini/" in str(caught.value) and "refresh" in str(caught.value)
        assert emulator.counters["jobs_created"] == 1 and emulator.counters["create_requests"] == 1, attempt
    [entry] = await ledger_entries(tmp_path / "videos")
    # The books keep the operation that may exist: pending, at the catalog's estimate.
    assert entry.charge_status is ChargeStatus.PENDING
    assert entry.estimated.usd == pytest.approx(sum(emulator.charges.values()))


async def test_batch_ledger_matches_the_emulator_with_faults_and_rerun(prefect_server, tmp_path, gemini):
    emulator = gemini.emulator
    emulator.faults.add("create", Fault(status=429))  # RetryInfo "1s"
    emulator.faults.add("poll", Fault(status=503))
    emulator.faults.add("download", Fault(drop_after_bytes=1500))
    emulator.faults.add("create", Fault(reject="prompt"))
    creds = credentials(gemini.base_url)
    storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
    source = PromptSource(
        template="{animal} {n} {tag}",
        grid={"animal": ["heron"], "n": ["1", "2", "3", "4"], "tag": [tmp_path.name]},
        defaults={"duration": 4, "resolution": "720p"},  # the batch default tier is "standard" (issue 17 changes it)
    )
    first = await generate_videos(source, provider=creds, storage=storage, max_concurrency=2)
    assert first.counts == {"stored": 3, "rejected": 1}
    assert emulator.counters["jobs_created"] == 4
    again = await generate_videos(source, provider=creds, storage=storage)
    assert again.counts == {"stored": 3, "rejected": 1}
    assert emulator.counters["jobs_created"] == 4  # nothing paid twice, the filtered prompt not re-sent
    entries = await ledger_entries(tmp_path / "videos")
    assert len(entries) == 4
    assert sum(e.charged_usd for e in entries) == pytest.approx(sum(emulator.charges.values()))


async def test_sigkill_during_in_flight_submits_then_rerun_pays_each_operation_once(prefect_server, tmp_path):
    """The crash-resume pattern of test_crash_resume.py: the batch dies while 4 submits await their answer."""
    from test_crash_resume import finished, start_runner, wait_until

    items, storage_dir, stderr = 8, tmp_path / "videos", tmp_path / "runner.log"
    with EmulatorServer(GeminiEmulator(latency_seconds=0.3)) as server:
        emulator = server.emulator
        emulator.faults.rate("create", 1.0, Fault(answer_delay_seconds=5.0))  # created at once, answered late
        args = {
            "provider": "gemini",
            "base_url": server.base_url,
            "storage": str(storage_dir),
            "tag": f"gemini-{tmp_path.name}",
            "items": items,
            "concurrency": 4,
        }
        process = start_runner(args, stderr)
        wait_until(lambda: emulator.counters["jobs_created"] >= 4, "four operations in flight")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        assert emulator.counters["jobs_created"] == 4
        claims = list((storage_dir / "claims" / "gemini").glob("*.json"))
        assert len(claims) == 4 and all(json.loads(c.read_text())["job_id"] is None for c in claims)
        emulator.faults.clear()

        counts, results = finished(start_runner(args, stderr), stderr)
        # Gemini lists no operations: the four unanswered submits fail as SubmitUncertain naming their
        # claims, none is paid again, and the other four are created once and stored.
        assert emulator.counters["jobs_created"] == items
        assert counts == {"stored": items - 4, "failed": 4}
        assert all("claims/gemini/" in (i["error"] or "") for i in results if i["status"] == "failed")
        entries = await ledger_entries(storage_dir)
        pending = [e for e in entries if e.charge_status is ChargeStatus.PENDING]
        billed = [e for e in entries if e.charge_status is ChargeStatus.BILLED]
        assert len(pending) == 4 and len(billed) == items - 4
        assert sum(e.charged_usd for e in billed) + sum(e.estimated.usd for e in pending) == pytest.approx(
            sum(emulator.charges.values())
        )


async def test_cli_generate_against_the_emulator_command_stores_a_verified_video_with_its_ledger_line(
    prefect_server, tmp_path
):
    """`prefect-videogen emulator gemini` in one process, `prefect-videogen generate --provider gemini` in another."""
    port = free_port()
    log = (tmp_path / "emulator.log").open("w")
    emulator = subprocess.Popen(
        [sys.executable, "-m", "prefect_videogen.cli", "emulator", "gemini", "--port", str(port), "--latency", "0.2"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # readiness: the port answers (polled; nothing else to wait on)
            try:
                httpx.get(f"{root}/_emulator/state", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                assert emulator.poll() is None and time.monotonic() < deadline, (tmp_path / "emulator.log").read_text()
                time.sleep(0.05)
        env = {key: value for key, value in os.environ.items() if not key.startswith("GEMINI_")}
        env |= {
            "PREFECT_API_URL": str(PREFECT_API_URL.value()),
            "GEMINI_API_KEY": EMULATOR_API_KEY,
            "GEMINI_BASE_URL": f"{root}/v1beta",
        }
        prompt = f"a kingfisher dives {tmp_path.name}"
        command = ["generate", prompt, "--provider", "gemini", "--duration", "6", "--aspect", "9:16"]
        completed = subprocess.run(
            [sys.executable, "-m", "prefect_videogen.cli", *command, "--resolution", "720p", "--out", "videos"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        state = httpx.get(f"{root}/_emulator/state", timeout=5).json()
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        log.close()
    video = next(line.split(None, 1)[1] for line in completed.stdout.splitlines() if line.startswith("video:"))
    probe = probe_video(video)
    assert (probe.width, probe.height) == (720, 1280) and abs(probe.duration_seconds - 6) < 0.5
    assert state["counters"]["jobs_created"] == 1 and state["counters"]["downloads"] == 1
    [entry] = await ledger_entries(tmp_path / "videos")
    assert entry.provider == "gemini" and entry.charge_status is ChargeStatus.BILLED
    assert entry.charged_usd == pytest.approx(sum(state["charges"].values())) == pytest.approx(0.9)
    assert EMULATOR_API_KEY not in completed.stdout + completed.stderr  # (the emulator prints its own test key)
    assert "export GEMINI_API_KEY=" in (tmp_path / "emulator.log").read_text()
