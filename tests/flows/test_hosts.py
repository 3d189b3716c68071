"""fal and Replicate through the CLI, the emulator command and the flows, on the session's Prefect server.

The emulator runs as the user starts it (``prefect-videogen emulator fal|replicate``, its own process);
the CLI runs in this process with the keys in the environment, as the README says. Each run must
store a verified video and its ledger line; a lost submit answer and a rerun pay for nothing twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from prefect_videogen.batch.expansion import PromptSource
from prefect_videogen.blocks import LocalVideoStorage
from prefect_videogen.blocks.fal import FalCredentials
from prefect_videogen.blocks.replicate import ReplicateCredentials
from prefect_videogen.cli import main
from prefect_videogen.flows import generate_video, generate_videos
from prefect_videogen.media import probe_video
from prefect_videogen.models import VideoRequest
from prefect_videogen.spend.costs import ChargeStatus
from prefect_videogen.spend.ledger import Ledger
from prefect_videogen.storage import VideoStorage
from prefect_videogen.testing import EmulatorServer, Fault
from prefect_videogen.testing.fal_emulator import EMULATOR_API_KEY, FalEmulator
from prefect_videogen.testing.replicate_emulator import EMULATOR_API_TOKEN, ReplicateEmulator
from prefect_videogen.testing.server import free_port

# provider -> (environment of the CLI, API path under the emulator's root, a cheap model and its flags)
HOSTS = {
    "fal": (
        {"FAL_KEY": EMULATOR_API_KEY},
        "",
        ["--model", "seedance-1-pro", "--duration", "5", "--resolution", "480p"],
    ),
    "replicate": (
        {"REPLICATE_API_TOKEN": EMULATOR_API_TOKEN},
        "/v1",
        ["--model", "seedance-1-pro", "--duration", "5", "--resolution", "480p"],
    ),
}
BASE_URL_ENV = {"fal": "FAL_BASE_URL", "replicate": "REPLICATE_BASE_URL"}


@pytest.fixture
def start_emulator(tmp_path) -> Iterator:
    """Starts ``prefect-videogen emulator <provider>`` in its own process; returns its root URL."""
    running: list[tuple[subprocess.Popen, object]] = []

    def start(provider: str) -> str:
        port = free_port()
        log = (tmp_path / f"{provider}-emulator.log").open("w")
        command = [
            sys.executable,
            "-m",
            "prefect_videogen.cli",
            "emulator",
            provider,
            "--port",
            str(port),
            "--latency",
            "0.3",
        ]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        running.append((process, log))
        root = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:  # readiness: the port answers (polled; nothing else to wait on)
            try:
                httpx.get(f"{root}/_emulator/state", timeout=1).raise_for_status()
                return root
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"emulator did not start: {Path(log.name).read_text()}") from None
                time.sleep(0.05)

    yield start
    for process, log in running:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def png(tmp_path: Path) -> str:
    path = tmp_path / "first-frame.png"
    Image.new("RGB", (128, 72), (30, 90, 200)).save(path)
    return str(path)


def entries(out: Path) -> list:
    """The ledger's entries, read in a thread of its own (callers may run inside an event loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(Ledger(VideoStorage(str(out))).entries())).result()


@pytest.mark.parametrize("provider", list(HOSTS))
def test_cli_generate_against_the_emulator_command(
    prefect_server, start_emulator, tmp_path, capsys, monkeypatch, provider
):
    root = start_emulator(provider)
    env, path, flags = HOSTS[provider]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(BASE_URL_ENV[provider], root + path)
    out = tmp_path / "videos"
    code = main(["generate", f"a heron at dawn on {provider}", "--provider", provider, *flags, "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    video = next(line.split(None, 1)[1] for line in printed.out.splitlines() if line.startswith("video:"))
    probe = probe_video(video)
    assert (probe.width, probe.height) == (864, 480) and abs(probe.duration_seconds - 5) < 0.5

    state = httpx.get(f"{root}/_emulator/state", timeout=5).json()
    assert state["provider"] == provider and state["counters"]["jobs_created"] == 1
    assert state["counters"].get("cdn_key_rejections", 0) == 0
    [entry] = entries(out)
    [(job_id, usd)] = state["charges"].items()
    assert entry.job_id == job_id and entry.charge_status is ChargeStatus.BILLED
    assert entry.charged_usd == pytest.approx(usd)  # the catalog's USD per second is what the host billed
    assert entry.reported is None and "the ledger uses this" in entry.estimated.source


async def test_fal_image_to_video_through_generate_video(prefect_server, tmp_path):
    with EmulatorServer(FalEmulator(latency_seconds=0.1)) as server:
        block = FalCredentials(api_key=EMULATOR_API_KEY, base_url=server.base_url, poll_interval_seconds=0.02)
        result = await generate_video(
            VideoRequest(prompt="the heron takes off", model="veo-3-i2v", duration=8, image=png(tmp_path)),
            provider=block,
            storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
        )
        probe = probe_video(result.video_uri)
        assert (probe.width, probe.height) == (1280, 720) and abs(probe.duration_seconds - 8) < 0.5
        assert server.emulator.jobs[result.job_id]["input"]["image_url"].startswith("data:image/png;base64,")
        assert result.provider == "fal" and server.emulator.counters["jobs_created"] == 1


async def test_replicate_image_to_video_through_generate_video(prefect_server, tmp_path):
    with EmulatorServer(ReplicateEmulator(latency_seconds=0.1)) as server:
        block = ReplicateCredentials(
            api_token=EMULATOR_API_TOKEN, base_url=server.base_url + "/v1", poll_interval_seconds=0.02
        )
        result = await generate_video(
            VideoRequest(
                prompt="the heron lands", model="seedance-1-pro", duration=5, resolution="480p", image=png(tmp_path)
            ),
            provider=block,
            storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
        )
        assert abs(probe_video(result.video_uri).duration_seconds - 5) < 0.5
        assert server.emulator.jobs[result.job_id]["input"]["image"].startswith("data:image/png;base64,")
        assert server.emulator.counters["prefer_wait"] == 0


def batch(tag: str, items: int) -> PromptSource:
    return PromptSource(
        template="a lighthouse in a storm, shot {n}, {tag}",
        grid={"n": [str(i) for i in range(items)], "tag": [tag]},
        defaults={"model": "seedance-1-pro", "duration": 5, "resolution": "480p"},
    )


@pytest.mark.parametrize("provider", ["replicate", "fal"])
async def test_a_lost_submit_answer_and_a_rerun_create_one_job_per_item(prefect_server, tmp_path, provider):
    """A 5xx after the job exists (the answer lost, as in a crash mid-submit), then the same batch again."""
    items = 3
    emulator = ReplicateEmulator(latency_seconds=0.1) if provider == "replicate" else FalEmulator(latency_seconds=0.1)
    with EmulatorServer(emulator) as server:
        emulator.faults.add("create", Fault(status=500, after_create=True))
        if provider == "replicate":
            block = ReplicateCredentials(
                api_token=EMULATOR_API_TOKEN, base_url=server.base_url + "/v1", poll_interval_seconds=0.02
            )
        else:
            block = FalCredentials(api_key=EMULATOR_API_KEY, base_url=server.base_url, poll_interval_seconds=0.02)
        storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
        for attempt in range(2):  # the run, then a rerun of the same batch
            result = await generate_videos(
                batch(f"{provider}-{tmp_path.name}", items),
                provider=block,
                storage=storage,
                batch_name="hosts",
                max_concurrency=1,
            )
            assert emulator.counters["jobs_created"] == items, attempt
            stored = [item for item in result.items if item.status == "stored"]
            if provider == "replicate":  # the lost answer is found in GET /predictions and adopted
                assert len(stored) == items
            else:  # fal cannot list it: that item is uncertain (its claim named), never paid again
                assert len(stored) == items - 1
                [uncertain] = [item for item in result.items if item.status != "stored"]
                assert "claims/fal/" in (uncertain.error or "")
        books = entries(tmp_path / "videos")
        billed = [e for e in books if e.charge_status is ChargeStatus.BILLED]
        assert len(billed) == (items if provider == "replicate" else items - 1)
        if provider == "fal":  # the uncertain job's estimate stays on the books as pending
            assert [e.charge_status for e in books if e not in billed] == [ChargeStatus.PENDING]
