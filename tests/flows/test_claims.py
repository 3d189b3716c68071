"""Job claims: one submit per request across processes and machines, orphans found, never repaid.

Claims are real files (local ``link``) and real S3 objects (moto server, conditional put); the
flows run on the session's Prefect server against the provider emulators on loopback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from pathlib import Path

import httpx
import pytest

from prefect_videogen.batch.expansion import PromptSource
from prefect_videogen.blocks import APIFrameCredentials, LocalVideoStorage, OpenAICredentials, ScenarioCredentials
from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import SubmitUncertain
from prefect_videogen.flows import generate_video, generate_videos, resume_jobs
from prefect_videogen.models import JobStatus, Rejection, VideoJob, VideoRequest
from prefect_videogen.providers.scenario import classify_rejection
from prefect_videogen.spend.claims import ClaimStore, JobClaim
from prefect_videogen.spend.costs import ChargeStatus, charge_status, estimate_cost, reported_cost
from prefect_videogen.spend.ledger import Ledger, LedgerEntry, summarize
from prefect_videogen.storage import VideoStorage
from prefect_videogen.tasks.caching import SubmitCachePolicy, submit_key
from prefect_videogen.testing import APIFrameEmulator, EmulatorServer, Fault, OpenAIEmulator, ScenarioEmulator
from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY

PROVIDERS = ["openai", "scenario", "apiframe"]


def new_claim(key: str = "k1", **fields) -> JobClaim:
    return JobClaim(key=key, provider="openai", account_id="acct", fingerprint="fp", **fields)


# -- the claim itself ------------------------------------------------------------------------------


async def test_local_claim_is_created_once_among_racing_claimants(tmp_path):
    store = ClaimStore(VideoStorage(str(tmp_path)))
    claimants = [new_claim() for _ in range(16)]
    won = await asyncio.gather(*(store.create(c) for c in claimants))  # 16 threads race for one name
    assert sum(won) == 1
    stored = await store.read("openai", "k1")
    assert stored.client_token == claimants[won.index(True)].client_token
    assert [p.name for p in (tmp_path / "claims" / "openai").iterdir()] == ["k1.json"]  # no staging files left


async def test_claim_freshness_follows_its_owner(tmp_path, monkeypatch):
    assert not new_claim().is_stale()  # this very process: alive, fresh
    dead = new_claim(pid=2**22 + 12345)  # beyond pid_max on Linux by default: no such process
    assert dead.owner_alive() is False and dead.is_stale()
    elsewhere = new_claim(host="another-machine")
    assert elsewhere.owner_alive() is None and not elsewhere.is_stale()
    assert elsewhere.is_stale(fresh_for=-1)  # only its age can tell on another machine
    assert not new_claim(pid=2**22 + 12345, job_id="video_1").is_stale()  # a job id is never an orphan


def test_submit_key_counts_the_base_url():
    direct = submit_key("openai", "acct", "fp", base_url="https://api.openai.com/v1")
    gateway = submit_key("openai", "acct", "fp", base_url="https://gateway.example/v1")
    assert direct != gateway
    assert direct == submit_key("openai", "acct", "fp", base_url="https://api.openai.com/v1/")
    plan = load_catalog().plan("openai", VideoRequest(prompt="a fox", model="sora-2"))
    keys = {
        SubmitCachePolicy().compute_key(
            None, {"plan": plan, "provider": OpenAICredentials(api_key="sk-same-key-for-both", base_url=url)}, {}
        )
        for url in ("https://api.openai.com/v1", "https://gw.example/v1")
    }
    assert len(keys) == 2


def test_scenario_failure_without_a_stage_is_unknown_not_billed():
    rejection = classify_rejection(None, "Your request was rejected by the moderation system")
    assert rejection == Rejection(stage=None, charged=None)
    job = VideoJob(
        provider="scenario",
        job_id="job_1",
        model="sora-2",
        status=JobStatus.FAILED,
        raw_status="failed",
        reported_cost=40,
        reported_cost_unit="creative_units",
        rejection=rejection,
    )
    plan = load_catalog().plan("scenario", VideoRequest(prompt="a fox", model="sora-2"))
    status = charge_status(job, reported_cost(plan, job))
    assert status is ChargeStatus.UNKNOWN
    entry = LedgerEntry.for_job(
        provider="scenario",
        job_id="job_1",
        model="sora-2",
        charge_status=status,
        estimated=estimate_cost(plan),
        reported=reported_cost(plan, job),
    )
    assert entry.charged_amount == 0 and entry.charged_usd == 0 and entry.open_usd == pytest.approx(0.4)
    [row] = summarize([entry])
    assert (row["billed_jobs"], row["usd"], row["unknown_jobs"], row["unknown_usd"]) == (0, 0.0, 1, 0.4)


# -- the ledger survives damage --------------------------------------------------------------------


async def test_ledger_skips_and_counts_damaged_lines(tmp_path, caplog):
    ledger = Ledger(VideoStorage(str(tmp_path)))
    plan = load_catalog().plan("apiframe", VideoRequest(prompt="a fox", model="sora-2"))
    good = LedgerEntry.for_job(
        provider="apiframe",
        job_id="j1",
        model="sora-2",
        charge_status=ChargeStatus.BILLED,
        estimated=estimate_cost(plan),
    )
    await ledger.record(good)
    folder = tmp_path / "ledger" / "apiframe"
    (folder / "j1.jsonl").write_text((folder / "j1.jsonl").read_text() + "{garbage\n")
    (folder / "j2.jsonl").write_text(good.model_copy(update={"job_id": "j2"}).model_dump_json()[:40] + "\n")
    (folder / "j3.jsonl").write_bytes(b"\xff\xfe not utf-8 \x80\n")
    with caplog.at_level(logging.WARNING, logger="prefect_videogen.ledger"):
        entries = await ledger.entries()
    assert [e.job_id for e in entries] == ["j1"]  # the good line of j1 still counts
    assert len(ledger.skipped) == 3
    assert any("j1.jsonl:2" in s for s in ledger.skipped) and any("not UTF-8" in s for s in ledger.skipped)
    assert "j3.jsonl:1" in caplog.text
    # Recording on a damaged file works, and drops the damage from the rewrite.
    assert await ledger.record(good.model_copy(update={"charge_status": ChargeStatus.REFUNDED})) is True
    assert len((folder / "j1.jsonl").read_text().splitlines()) == 2


def test_costs_command_reports_damage_pending_and_unknown(tmp_path, capsys, monkeypatch):
    from prefect_videogen.cli import main

    ledger = Ledger(VideoStorage(str(tmp_path)))
    plan = load_catalog().plan("openai", VideoRequest(prompt="a fox", model="sora-2"))
    estimated = estimate_cost(plan)

    async def book() -> None:
        await ledger.record(
            LedgerEntry.for_job(
                provider="openai",
                job_id="",
                claim_key="c1",
                model="sora-2",
                charge_status=ChargeStatus.PENDING,
                estimated=estimated,
            )
        )
        await ledger.record(
            LedgerEntry.for_job(
                provider="openai", job_id="v2", model="sora-2", charge_status=ChargeStatus.UNKNOWN, estimated=estimated
            )
        )
        await ledger.record(
            LedgerEntry.for_job(
                provider="openai", job_id="v3", model="sora-2", charge_status=ChargeStatus.BILLED, estimated=estimated
            )
        )

    asyncio.run(book())
    (tmp_path / "ledger" / "openai" / "v4.jsonl").write_bytes(b'{"provider": "openai", "job_\xff')
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["costs", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    total = next(line for line in out.splitlines() if "TOTAL" in line)
    cells = [cell.strip() for cell in total.strip("│┃ ").split("│")]
    # TOTAL, jobs, billed, usd, units, pending, pending usd, unknown, unknown usd
    assert cells == ["TOTAL", "3", "1", "0.4000", "", "1", "0.4000", "1", "0.4000"], out
    assert "skipped 1 damaged ledger line" in out and "v4.jsonl:1" in out


async def test_a_claims_pending_line_gives_way_to_its_job(tmp_path):
    ledger = Ledger(VideoStorage(str(tmp_path)))
    plan = load_catalog().plan("openai", VideoRequest(prompt="a fox", model="sora-2"))
    estimated = estimate_cost(plan)
    base = dict(provider="openai", model="sora-2", estimated=estimated, claim_key="c1")
    await ledger.record(LedgerEntry.for_job(job_id="", charge_status=ChargeStatus.PENDING, **base))
    assert [(e.job_id, e.charge_status) for e in await ledger.entries()] == [("", ChargeStatus.PENDING)]
    await ledger.record(LedgerEntry.for_job(job_id="v1", charge_status=ChargeStatus.PENDING, **base))
    await ledger.record(LedgerEntry.for_job(job_id="v1", charge_status=ChargeStatus.BILLED, **base))
    entries = await ledger.entries()
    assert [(e.job_id, e.charge_status) for e in entries] == [("v1", ChargeStatus.BILLED)]  # counted once
    assert summarize(entries)[0]["usd"] == pytest.approx(0.4)


# -- claims on S3 (moto server) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint():
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is needed for the S3 tests")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }.items():
            env.setenv(name, value)
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
        server.stop()


def s3_storage(endpoint: str) -> VideoStorage:
    import boto3

    bucket = f"claims-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return VideoStorage(f"s3://{bucket}/runs", storage_options={"client_kwargs": {"endpoint_url": endpoint}})


async def test_s3_claim_is_a_conditional_put(s3_endpoint):
    storage = s3_storage(s3_endpoint)
    store = ClaimStore(storage)
    first, second = new_claim(), new_claim()
    assert await store.create(first) is True
    assert await store.create(second) is False  # If-None-Match: * -> 412 on the second put
    assert (await store.read("openai", "k1")).client_token == first.client_token
    claimed = await store.set_job(first, "video_1")  # the owner's update
    assert (await store.read("openai", "k1")).job_id == "video_1" == claimed.job_id


async def test_s3_two_claimants_one_wins(s3_endpoint):
    store = ClaimStore(s3_storage(s3_endpoint))
    for key in ("a", "b", "c"):
        claimants = [new_claim(key) for _ in range(2)]
        won = await asyncio.gather(*(store.create(c) for c in claimants))
        assert sorted(won) == [False, True]
        assert (await store.read("openai", key)).client_token == claimants[won.index(True)].client_token


# -- flows on the emulators ------------------------------------------------------------------------


def emulator_of(provider: str, **kwargs):
    return {"openai": OpenAIEmulator, "scenario": ScenarioEmulator, "apiframe": APIFrameEmulator}[provider](**kwargs)


def credentials(provider: str, base_url: str):
    if provider == "openai":
        return OpenAICredentials(api_key="sk-emulator-key", base_url=base_url + "/v1")
    if provider == "scenario":
        return ScenarioCredentials(
            api_key="emu-key", api_secret="emu-secret", base_url=base_url + "/v1", poll_interval_seconds=0.02
        )
    return APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=base_url, poll_interval_seconds=0.02)


def create_fault(emulator, provider: str, fault: Fault) -> None:
    # Scenario's dry-run quote goes to the create endpoint first and takes one fault without effect.
    emulator.faults.add("create", fault, times=2 if provider == "scenario" else 1)


async def ledger_view(storage_dir: Path) -> list[LedgerEntry]:
    return await Ledger(VideoStorage(str(storage_dir))).entries()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_500_after_the_job_exists_never_pays_twice(prefect_server, tmp_path, provider):
    with EmulatorServer(emulator_of(provider, latency_seconds=0.1)) as server:
        emulator = server.emulator
        create_fault(emulator, provider, Fault(status=500, after_create=True))
        creds = credentials(provider, server.base_url)
        storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
        request = VideoRequest(prompt=f"a fox {tmp_path.name}", model="sora-2", duration=4)
        for attempt in range(2):  # the run, then a rerun of the same command
            if provider == "scenario":
                with pytest.raises(SubmitUncertain) as caught:
                    await generate_video(request, provider=creds, storage=storage)
                assert "claims/scenario/" in str(caught.value) and "refresh" in str(caught.value)
            else:
                result = await generate_video(request, provider=creds, storage=storage)
                assert result.job_id in emulator.jobs
            assert emulator.counters["jobs_created"] == 1, attempt
        entries = await ledger_view(tmp_path / "videos")
        assert len(entries) == 1
        if provider == "scenario":  # the books show the job that may exist: pending, at the estimate
            assert entries[0].charge_status is ChargeStatus.PENDING and entries[0].open_usd == pytest.approx(0.4)
            assert sum(emulator.charges.values()) == entries[0].estimated.amount
        else:
            assert entries[0].charge_status is ChargeStatus.BILLED


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_submit_answered_after_the_client_timeout_is_not_paid_again(
    prefect_server, tmp_path, provider, monkeypatch
):
    block_type = type(credentials(provider, "http://127.0.0.1:9"))
    original = block_type.get_client

    def short_timeout_client(self):
        client = original(self)
        transport = getattr(client, "http", None) or client._http
        transport.api.timeout = httpx.Timeout(0.4)  # the create's answer comes after 1 s
        return client

    monkeypatch.setattr(block_type, "get_client", short_timeout_client)
    with EmulatorServer(emulator_of(provider, latency_seconds=0.1)) as server:
        emulator = server.emulator
        create_fault(emulator, provider, Fault(answer_delay_seconds=1.0))
        creds = credentials(provider, server.base_url)
        storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
        request = VideoRequest(prompt=f"an owl {tmp_path.name}", model="sora-2", duration=4)
        for attempt in range(2):
            if provider == "scenario":
                with pytest.raises(SubmitUncertain):
                    await generate_video(request, provider=creds, storage=storage)
            else:
                await generate_video(request, provider=creds, storage=storage)
            assert emulator.counters["jobs_created"] == 1, attempt


async def test_resume_stores_and_books_a_timed_out_job_without_a_new_submit(prefect_server, tmp_path):
    now = [0.0]
    with EmulatorServer(OpenAIEmulator(latency_seconds=100.0, clock=lambda: now[0])) as server:
        emulator = server.emulator
        creds = credentials("openai", server.base_url)
        storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
        request = VideoRequest(prompt=f"a slow heron {tmp_path.name}", model="sora-2", duration=4)
        with pytest.raises(Exception, match="still"):
            await generate_video(request, provider=creds, storage=storage, timeout_seconds=0.2)
        [entry] = await ledger_view(tmp_path / "videos")
        assert entry.charge_status is ChargeStatus.PENDING and entry.job_id in emulator.jobs  # never $0 silently
        [row] = summarize([entry])
        assert row["pending_jobs"] == 1 and row["pending_usd"] == pytest.approx(0.4) and row["usd"] == 0
        now[0] = 200.0  # the job finishes at the provider
        result = await resume_jobs(provider=creds, storage=storage, timeout_seconds=30)
        assert result.counts == {"stored": 1}
        assert emulator.counters["jobs_created"] == 1
        [entry] = await ledger_view(tmp_path / "videos")
        assert entry.charge_status is ChargeStatus.BILLED and entry.charged_usd == sum(emulator.charges.values())
        assert Path(result.jobs[0].video_uri).is_file()
        again = await resume_jobs(provider=creds, storage=storage, timeout_seconds=30)
        assert again.counts == {}  # nothing pending any more


async def test_batch_keeps_job_id_and_charge_when_the_download_fails(prefect_server, tmp_path):
    with EmulatorServer(OpenAIEmulator(latency_seconds=0.05)) as server:
        emulator = server.emulator
        emulator.faults.rate("download", 1.0, Fault(status=404))
        creds = credentials("openai", server.base_url)
        storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
        source = PromptSource(
            template="a crane {n} {tag}",
            grid={"n": ["1", "2"], "tag": [tmp_path.name]},
            defaults={"model": "sora-2", "duration": 4},
        )
        result = await generate_videos(source, provider=creds, storage=storage, batch_name="keeps-charges")
    assert result.counts == {"failed": 2}
    assert {i.job_id for i in result.items} == set(emulator.charges)  # every billed job named
    assert [i.cost_usd for i in result.items] == [0.4, 0.4] and result.total_cost_usd == pytest.approx(0.8)
    from prefect_videogen.batch.manifest import ManifestStore

    manifest = await ManifestStore(storage.get_storage(), "keeps-charges").load(
        batch_id="keeps-charges", provider="openai"
    )
    assert {i.job_id for i in manifest.items.values()} == set(emulator.charges)
    assert {i.charge_status for i in manifest.items.values()} == {"billed"}


def test_resume_command_finishes_a_pending_job(prefect_server, tmp_path, monkeypatch, capsys):
    from prefect_videogen.cli import main

    now = [0.0]
    with EmulatorServer(OpenAIEmulator(latency_seconds=100.0, clock=lambda: now[0])) as server:
        emulator = server.emulator
        creds = credentials("openai", server.base_url)
        storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
        request = VideoRequest(prompt=f"a slow stork {tmp_path.name}", model="sora-2", duration=4)
        with pytest.raises(Exception, match="still"):
            asyncio.run(generate_video(request, provider=creds, storage=storage, timeout_seconds=0.2))
        monkeypatch.setenv("OPENAI_API_KEY", "sk-emulator-key")
        args = [
            "resume",
            "--provider",
            "openai",
            "--base-url",
            server.base_url + "/v1",
            "--out",
            str(tmp_path / "videos"),
        ]
        assert main([*args, "--timeout", "0.2"]) == 1  # still running: reported as pending, nothing submitted
        assert "pending" in capsys.readouterr().out
        now[0] = 200.0
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "stored" in out and "resumed: {'stored': 1}" in out
        assert emulator.counters["jobs_created"] == 1 and emulator.counters["create_requests"] == 1


async def test_batch_rerun_survives_a_damaged_ledger(prefect_server, tmp_path, caplog):
    from prefect_videogen.blocks import LocalRenderer

    storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
    provider = LocalRenderer(jobs_dir=str(tmp_path / "jobs"), queue_delay_seconds=0, fps=6)
    source = PromptSource(
        template="a wren {n} {tag}", grid={"n": ["1", "2"], "tag": [tmp_path.name]}, defaults={"duration": 1}
    )
    first = await generate_videos(source, provider=provider, storage=storage, batch_name="damaged")
    assert first.counts == {"stored": 2}
    job_files = sorted((tmp_path / "videos" / "ledger" / "local").glob("local_*.jsonl"))
    assert len(job_files) == 2
    job_files[0].write_bytes(job_files[0].read_bytes() + b'{"provider": "local", "job_id": "tru\n')
    job_files[1].write_bytes(job_files[1].read_bytes() + b"\xff\xfe\x80 not utf-8\n")
    shutil.rmtree(
        tmp_path / "videos" / "manifests"
    )  # the rerun goes through every step again, and books every job again
    with caplog.at_level(logging.WARNING, logger="prefect_videogen.ledger"):
        again = await generate_videos(source, provider=provider, storage=storage, batch_name="damaged")
    assert again.counts == {"stored": 2}
    assert {i.job_id for i in again.items} == {i.job_id for i in first.items}  # no new job
    assert f"{job_files[0].name}:" in caplog.text and f"{job_files[1].name}:" in caplog.text
    ledger = Ledger(storage.get_storage())
    entries = await ledger.entries()
    assert len(entries) == 2 and {e.charge_status for e in entries} == {ChargeStatus.BILLED}
