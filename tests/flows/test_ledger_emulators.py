"""The ledger total equals what the emulated providers charged, exactly: with faults and reruns."""

from __future__ import annotations

import pytest

from prefect_videogen.batch.expansion import PromptSource
from prefect_videogen.blocks import APIFrameCredentials, LocalVideoStorage, ScenarioCredentials
from prefect_videogen.errors import InsufficientCredits
from prefect_videogen.flows import generate_video, generate_videos
from prefect_videogen.models import VideoRequest
from prefect_videogen.spend.costs import ChargeStatus
from prefect_videogen.spend.ledger import Ledger
from prefect_videogen.testing import APIFrameEmulator, EmulatorServer, Fault, ScenarioEmulator
from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY


@pytest.fixture
def apiframe():
    with EmulatorServer(APIFrameEmulator(latency_seconds=0.05)) as server:
        yield server


@pytest.fixture
def scenario():
    with EmulatorServer(ScenarioEmulator(latency_seconds=0.05)) as server:
        yield server


def source(tag, n=6):
    return PromptSource(
        template="{animal} {n} {tag}",
        grid={"animal": ["fox"], "n": [str(i) for i in range(n)], "tag": [tag]},
        defaults={"model": "sora-2-pro", "duration": 4},
    )


async def ledger_total(storage):
    entries = await Ledger(storage.get_storage()).entries()
    return entries, sum(e.charged_amount for e in entries)


async def test_apiframe_ledger_matches_reported_charges_with_faults_and_rerun(prefect_server, tmp_path, apiframe):
    emulator = apiframe.emulator
    emulator.faults.add("create", Fault(status=429, headers={"Retry-After": "0"}))
    emulator.faults.add("create", Fault(status=500, after_create=True))  # ambiguous: replayed by Idempotency-Key
    emulator.faults.add("download", Fault(drop_after_bytes=1500))
    emulator.faults.add("poll", Fault(status=503))
    emulator.faults.add("create", Fault(reject="output"))  # moderated after rendering: billed
    creds = APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=apiframe.base_url, poll_interval_seconds=0.02)
    storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
    first = await generate_videos(source(tmp_path.name), provider=creds, storage=storage, max_concurrency=3)
    assert first.counts == {"stored": 5, "rejected": 1}
    assert emulator.counters["jobs_created"] == 6  # no job created twice
    entries, total = await ledger_total(storage)
    assert total == sum(emulator.charges.values()) == 5 * 12 + 12
    assert sorted(e.charge_status for e in entries).count(ChargeStatus.FAILED_BUT_BILLED) == 1

    again = await generate_videos(source(tmp_path.name), provider=creds, storage=storage)
    assert again.counts == {"stored": 5, "rejected": 1}
    assert emulator.counters["jobs_created"] == 6  # the rejected input was not re-sent
    _, rerun_total = await ledger_total(storage)
    assert rerun_total == total  # a rerun never counts twice


async def test_scenario_ledger_matches_reported_units(prefect_server, tmp_path, scenario):
    emulator = scenario.emulator
    emulator.faults.add("create", Fault(status=429, body={"reason": "cooldown", "remainingSeconds": 0}))
    creds = ScenarioCredentials(
        api_key="emu-key", api_secret="emu-secret", base_url=scenario.base_url + "/v1", poll_interval_seconds=0.02
    )
    storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
    result = await generate_videos(source(tmp_path.name, n=3), provider=creds, storage=storage)
    assert result.counts == {"stored": 3}
    entries, total = await ledger_total(storage)
    assert total == sum(emulator.charges.values()) > 0
    assert all(e.quoted is not None and e.quoted.unit == "creative_units" for e in entries)  # dry-run quotes kept
    assert emulator.counters["jobs_created"] == 3


async def test_apiframe_402_is_a_clear_error_and_no_charge(prefect_server, tmp_path):
    with EmulatorServer(APIFrameEmulator(credits_available=5)) as server:
        creds = APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=server.base_url, poll_interval_seconds=0.02)
        storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
        with pytest.raises(InsufficientCredits) as caught:
            await generate_video(
                VideoRequest(prompt="too dear", model="sora-2-pro", duration=4), provider=creds, storage=storage
            )
        assert caught.value.credits_required == 12 and caught.value.credits_available == 5
        assert "Insufficient credits" in str(caught.value)
        assert server.emulator.counters["jobs_created"] == 0
    entries, total = await ledger_total(storage)
    assert entries == [] and total == 0


async def test_budget_holds_for_twenty_concurrent_real_submits(prefect_server, tmp_path, apiframe):
    creds = APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=apiframe.base_url, poll_interval_seconds=0.02)
    storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
    batch = PromptSource(
        template="budget {n} {tag}",
        grid={"n": [str(i) for i in range(20)], "tag": [tmp_path.name]},
        defaults={"model": "sora-2", "duration": 4},
    )  # 4 credits = $0.04 each
    result = await generate_videos(batch, provider=creds, storage=storage, max_cost_usd=0.28, max_concurrency=20)
    assert result.counts == {"stored": 7, "refused": 13}
    assert apiframe.emulator.counters["jobs_created"] == 7
    assert apiframe.emulator.counters["create_requests"] == 7  # refused submits sent nothing
    assert result.total_cost_usd == pytest.approx(0.28)


async def test_a_billed_job_whose_video_could_not_be_stored_is_still_in_the_ledger(prefect_server, tmp_path, apiframe):
    from prefect_videogen.errors import ProviderUnavailable

    emulator = apiframe.emulator
    # The CDN answers an error page instead of the video (dropped downloads are resumed: test_downloads.py).
    emulator.faults.add("download", Fault(status=200, body={"error": "expired"}))
    creds = APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=apiframe.base_url, poll_interval_seconds=0.02)
    storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
    request = VideoRequest(prompt=f"not stored {tmp_path.name}", duration=4)
    with pytest.raises(ProviderUnavailable, match="instead of video bytes.*prefect-videogen resume --out"):
        await generate_video(request, provider=creds, storage=storage)
    entries, total = await ledger_total(storage)
    assert [e.charge_status for e in entries] == [ChargeStatus.BILLED]
    assert total == sum(emulator.charges.values()) == 4
    # The rerun stores the video from the same (cached) job and counts nothing twice.
    result = await generate_video(request, provider=creds, storage=storage)
    assert result.job_id == entries[0].job_id and emulator.counters["jobs_created"] == 1
    assert (await ledger_total(storage))[1] == 4
