"""A paid video is never thrown away: another size is stored and flagged; only a non-video or a far-off duration is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from prefect_videogen.blocks import LocalVideoStorage
from prefect_videogen.blocks.apiframe import APIFrameCredentials
from prefect_videogen.errors import VerificationFailed
from prefect_videogen.flows import generate_video
from prefect_videogen.media import VideoProbe, judge, mismatch, probe_video
from prefect_videogen.models import VideoRequest
from prefect_videogen.spend.ledger import Ledger
from prefect_videogen.testing import EmulatorServer, Fault, apiframe_emulator
from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY, APIFrameEmulator


def probe(duration: float, width: int = 1280, height: int = 720) -> VideoProbe:
    return VideoProbe(duration_seconds=duration, width=width, height=height, codec="h264", frames=int(duration * 24))


@pytest.mark.parametrize(
    ("got", "want", "refused", "warnings"),
    [
        (probe(4.0), 4, False, 0),
        (probe(4.4), 4, False, 0),  # within the 0.5 s tolerance: nothing to say
        (probe(4.9), 4, False, 1),  # off by 0.9 s: under max(1 s, 25 %) -> kept, flagged
        (probe(5.1), 4, True, 0),  # off by 1.1 s > max(1 s, 1 s): refused
        (probe(11.0), 12, False, 1),  # 1 s of 12: under 25 % (3 s) -> kept, flagged
        (probe(8.9), 12, True, 0),  # 3.1 s of 12 > 3 s: refused
        (probe(4.0, 1792, 1024), 4, False, 1),  # APIFrame sora-2-pro "high": another size, kept
        (probe(4.0, 1920, 1088), 4, False, 0),  # macroblock padding: within 2 %
        (probe(4.8, 1792, 1024), 4, False, 2),
    ],
)
def test_judge_keeps_every_usable_video(got, want, refused, warnings):
    expected_w, expected_h = (1920, 1080) if got.width > 1280 else (1280, 720)
    verdict = judge(got, duration=want, width=expected_w, height=expected_h)
    assert (verdict.refusal is not None) is refused
    assert len(verdict.warnings) == warnings
    strict = mismatch(got, duration=want, width=expected_w, height=expected_h)
    assert (strict is None) is (not refused and warnings == 0)  # the strict check still sees every difference


@pytest.fixture
def apiframe_1792(monkeypatch):
    # The catalog guesses 1920x1080 for sora-2-pro "high"; the provider delivers 1792x1024.
    monkeypatch.setitem(apiframe_emulator.SIZES, ("sora-2-pro", "high"), (1792, 1024))
    with EmulatorServer(APIFrameEmulator(latency_seconds=0.05)) as server:
        yield server


def creds(server) -> APIFrameCredentials:
    return APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=server.base_url, poll_interval_seconds=0.02)


async def test_an_output_at_another_size_is_stored_flagged_and_booked(prefect_server, tmp_path, apiframe_1792):
    request = VideoRequest(
        prompt=f"high but not 1080p {tmp_path.name}", model="sora-2-pro", resolution="high", duration=4
    )
    storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
    state = await generate_video(request, provider=creds(apiframe_1792), storage=storage, return_state=True)
    result = await state.aresult()

    assert (result.width, result.height) == (1792, 1024) and result.resolution == "1792x1024"
    assert result.warnings and "1792x1024" in result.warnings[0] and "1920x1080" in result.warnings[0]
    real = probe_video(result.video_uri)
    assert (real.width, real.height) == (1792, 1024)
    sidecar = json.loads(Path(result.sidecar_uri).read_text())
    assert sidecar["warnings"] == result.warnings
    assert (sidecar["video"]["width"], sidecar["video"]["height"]) == (1792, 1024)  # the real size is recorded
    assert (sidecar["expected"]["width"], sidecar["expected"]["height"]) == (1920, 1080)

    entries = await Ledger(storage.get_storage()).entries()
    assert [e.job_id for e in entries] == [result.job_id]  # booked
    assert entries[0].charged_amount == apiframe_1792.emulator.charges[result.job_id] > 0  # what the provider billed
    assert apiframe_1792.emulator.counters["jobs_created"] == 1

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    # Prefect 3.8 stores a link artifact as markdown.
    links = [a for a in artifacts if a.type in ("link", "markdown") and result.job_id in (a.description or "")]
    assert links and "1792x1024" in links[-1].description and "Warnings" in links[-1].description


async def test_a_body_that_is_not_a_video_fails_the_flow_naming_the_job(prefect_server, tmp_path):
    with EmulatorServer(APIFrameEmulator(latency_seconds=0.05)) as server:
        server.emulator.faults.add("download", Fault(payload=b'{"error": "rendering failed"}'), times=5)
        storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
        with pytest.raises(VerificationFailed) as caught:
            await generate_video(
                VideoRequest(prompt=f"garbage {tmp_path.name}", duration=4), provider=creds(server), storage=storage
            )
        assert "job " in str(caught.value) and "billed" in str(caught.value)
        assert not list((tmp_path / "videos").rglob("*.mp4"))  # nothing published
        entries = await Ledger(storage.get_storage()).entries()
        assert len(entries) == 1 and entries[0].job_id in str(caught.value)  # the paid job is still booked
        assert server.emulator.counters["jobs_created"] == 1 and server.emulator.counters["downloads"] == 1
