"""Downloads are free, so they persist: dropped downloads resume with HTTP Range, within a time budget.

Real HTTP on loopback against each provider's emulator (OpenAI-shaped, Scenario, APIFrame); the
emulators honour ``Range`` (206 + ``Content-Range``) and count the body bytes they serve, so a test
can prove a resumed download fetched the file about once. Backoff sleeps are recorded, never slept.
"""

from __future__ import annotations

import pytest

from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import DownloadFailed, VerificationFailed
from prefect_videogen.media import probe_video
from prefect_videogen.models import VideoRequest
from prefect_videogen.pipeline import store_video
from prefect_videogen.providers.apiframe import APIFrameVideoProvider
from prefect_videogen.providers.openai import OpenAIVideoProvider
from prefect_videogen.providers.polling import wait_for_job
from prefect_videogen.providers.scenario import ScenarioVideoProvider
from prefect_videogen.storage.base import VideoStorage
from prefect_videogen.testing import EmulatorServer, Fault
from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY, APIFrameEmulator
from prefect_videogen.testing.openai_emulator import OpenAIEmulator
from prefect_videogen.testing.scenario_emulator import ScenarioEmulator

from fakes import FakeClock, SleepRecorder

OPENAI_KEY = "sk-test-0123456789abcdefDOWNLOADS"
SCN_KEY, SCN_SECRET = "scn-key-download-0001", "scn-secret-download-0001"
PROVIDERS = ["openai", "scenario", "apiframe"]


@pytest.fixture(scope="module")
def servers():
    emulators = {
        "openai": OpenAIEmulator(api_key=OPENAI_KEY, latency_seconds=0.02, poll_after_ms=5),
        "scenario": ScenarioEmulator(api_key=SCN_KEY, api_secret=SCN_SECRET, latency_seconds=0.02),
        "apiframe": APIFrameEmulator(latency_seconds=0.02),
    }
    running = {name: EmulatorServer(emulator).start() for name, emulator in emulators.items()}
    yield running
    for server in running.values():
        server.stop()


def make_client(name: str, server: EmulatorServer, sleep):
    if name == "openai":
        return OpenAIVideoProvider(OPENAI_KEY, base_url=server.base_url + "/v1", sleep=sleep)
    if name == "scenario":
        return ScenarioVideoProvider(
            SCN_KEY,
            SCN_SECRET,
            base_url=server.base_url + "/v1",
            poll_interval=0.01,
            project_id="proj_demo",
            sleep=sleep,
        )
    return APIFrameVideoProvider(EMULATOR_API_KEY, base_url=server.base_url, poll_interval_seconds=0.01, sleep=sleep)


def transport_of(client):
    return getattr(client, "http", None) or client._http


@pytest.fixture(params=PROVIDERS)
async def setup(request, servers, tmp_path):
    name = request.param
    server = servers[name]
    server.emulator.reset()
    sleep = SleepRecorder()
    client = make_client(name, server, sleep)
    plan = load_catalog().plan(name, VideoRequest(prompt=f"resumed download {name}", duration=4))
    job = await wait_for_job(client, await client.submit(plan), timeout=20, sleep=_fast_sleep)
    yield name, server.emulator, client, plan, job, VideoStorage(str(tmp_path / "videos")), sleep
    await client.aclose()


async def _fast_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(min(seconds, 0.01))  # the emulator's job needs a few real ms to finish


def files(tmp_path) -> list:
    return [p for p in (tmp_path / "videos").rglob("*") if p.is_file()]


@pytest.mark.parametrize("drops", [3, 6])
async def test_dropped_downloads_resume_with_range(setup, drops):
    name, emulator, client, plan, job, storage, sleep = setup
    # Each attempt drops after a further 8 KB (of ~80 KB): the resumed ranges must be appended, not restarted.
    emulator.faults.add("download", Fault(drop_after_bytes=8_000), times=drops)
    result = await store_video(client, plan, job, storage)
    probe = probe_video(result.video_uri)
    assert probe.duration_seconds == pytest.approx(4, abs=0.5) and (probe.width, probe.height) == (
        plan.width,
        plan.height,
    )
    assert emulator.counters["downloads"] == drops + 1
    assert emulator.counters["jobs_created"] == 1
    served = emulator.counters["download_bytes"]
    assert result.bytes <= served < 1.5 * result.bytes, (served, result.bytes)  # Range used, not byte 0 again
    assert len(sleep.delays) >= drops  # backed off between attempts (recorded, not slept)


async def test_a_server_that_ignores_range_still_yields_the_right_video(setup):
    name, emulator, client, plan, job, storage, _ = setup
    emulator.faults.add("download", Fault(drop_after_bytes=20_000))
    emulator.faults.add("download", Fault(ignore_range=True))  # answers the resume with the whole body (200)
    result = await store_video(client, plan, job, storage)
    assert probe_video(result.video_uri).duration_seconds == pytest.approx(4, abs=0.5)
    assert emulator.counters["download_bytes"] == 20_000 + result.bytes  # the prefix was skipped, not doubled


async def test_a_download_that_keeps_failing_names_the_job_and_the_resume_command(setup, tmp_path):
    name, emulator, client, plan, job, storage, _ = setup
    clock = FakeClock()
    transport = transport_of(client)
    transport.clock, transport.sleep = clock, clock.sleep
    # 100 bytes per attempt: progress, but far too slow to finish within the budget.
    emulator.faults.add("download", Fault(drop_after_bytes=100), times=500)
    with pytest.raises(DownloadFailed) as caught:
        await store_video(client, plan, job, storage)
    error = caught.value
    assert error.job_id == job.job_id and job.job_id in str(error)
    assert f"prefect-videogen resume --out {storage.uri('')}" in str(error)
    assert "download budget" in str(error) and not error.retryable
    assert 0 < clock.now <= transport.download_budget  # gave up within the budget, on the injected clock
    assert emulator.counters["jobs_created"] == 1
    assert files(tmp_path) == []  # nothing partial published, no staging object left


async def test_a_body_that_is_not_a_video_is_refused_naming_the_job(setup, tmp_path):
    name, emulator, client, plan, job, storage, _ = setup
    emulator.faults.add("download", Fault(payload=b'{"error": {"message": "internal error"}}'))
    with pytest.raises(VerificationFailed) as caught:
        await store_video(client, plan, job, storage)
    assert job.job_id in str(caught.value) and "billed" in str(caught.value) and "not a video" in str(caught.value)
    assert files(tmp_path) == []  # nothing published
    assert emulator.counters["jobs_created"] == 1


async def test_a_resumed_download_into_s3_keeps_one_upload_open(servers, tmp_path):
    """On S3 the resume happens inside the one chunk stream: the staging upload stays open across drops."""
    import logging
    import os
    import uuid

    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is needed for the S3 test")
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
        moto = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        try:
            host, port = moto.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            bucket = f"videos-{uuid.uuid4().hex[:12]}"
            s3.create_bucket(Bucket=bucket)
            storage = VideoStorage(
                f"s3://{bucket}/videos", storage_options={"client_kwargs": {"endpoint_url": endpoint}}
            )

            server = servers["apiframe"]
            server.emulator.reset()
            client = make_client("apiframe", server, SleepRecorder())
            plan = load_catalog().plan("apiframe", VideoRequest(prompt="resumed into s3", duration=4))
            job = await wait_for_job(client, await client.submit(plan), timeout=20, sleep=_fast_sleep)
            server.emulator.faults.add("download", Fault(drop_after_bytes=8_000), times=4)
            result = await store_video(client, plan, job, storage)
            await client.aclose()
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
            assert sorted(k.rsplit(".", 1)[1] for k in keys) == ["json", "mp4"]  # no staging object left
            assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
            video = s3.get_object(Bucket=bucket, Key=next(k for k in keys if k.endswith(".mp4")))["Body"].read()
            assert len(video) == result.bytes and server.emulator.counters["download_bytes"] < 1.5 * result.bytes
            assert server.emulator.counters["downloads"] == 5
        finally:
            moto.stop()


# -- the resume rules, on exact answers (httpx.MockTransport) --

import httpx  # noqa: E402

from prefect_videogen.providers.http import DownloadRestart, HttpTransport  # noqa: E402

DATA = bytes(range(256)) * 4  # 1,024 bytes
ETAG = '"v1"'


class Dropping(httpx.AsyncByteStream):
    def __init__(self, data: bytes, keep: int) -> None:
        self.data, self.keep = data, keep

    async def __aiter__(self):
        yield self.data[: self.keep]
        raise httpx.ReadError("connection reset")


def first_answer_drops_at(keep: int) -> httpx.Response:
    return httpx.Response(
        200,
        headers={"content-length": str(len(DATA)), "etag": ETAG, "content-type": "video/mp4"},
        stream=Dropping(DATA, keep),
    )


async def fetch(*answers: httpx.Response) -> tuple[bytes, list[httpx.Request]]:
    queue, seen = list(answers), []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0)

    sleep = SleepRecorder()
    transport = HttpTransport("testprov", "https://api.test/v1", transport=httpx.MockTransport(handler), sleep=sleep)
    try:
        async with transport.stream("https://cdn.test/v.mp4", authenticated=False, chunk_size=300) as chunks:
            return b"".join([c async for c in chunks]), seen
    finally:
        await transport.aclose()


async def test_a_206_with_our_offset_is_appended():
    body, seen = await fetch(
        first_answer_drops_at(100),
        httpx.Response(
            206,
            content=DATA[100:],
            headers={"content-range": f"bytes 100-1023/{len(DATA)}", "content-type": "video/mp4"},
        ),
    )
    assert body == DATA
    assert seen[1].headers["range"] == "bytes=100-" and seen[1].headers["if-range"] == ETAG
    assert all(r.headers["accept-encoding"] == "identity" for r in seen)


async def test_a_200_for_the_same_object_is_skipped_to_the_offset():
    body, _ = await fetch(
        first_answer_drops_at(100),
        httpx.Response(200, content=DATA, headers={"etag": ETAG, "content-type": "video/mp4"}),
    )
    assert body == DATA


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(206, content=DATA[50:], headers={"content-range": "bytes 50-1023/1024"}),  # not our offset
        httpx.Response(206, content=DATA[100:], headers={"content-range": "bytes 100-2047/2048"}),  # another total
        httpx.Response(200, content=DATA + b"x", headers={"etag": ETAG}),  # another length
        httpx.Response(200, content=DATA, headers={"etag": '"v2"'}),  # another version
    ],
)
async def test_an_object_that_changed_restarts(answer):
    with pytest.raises(DownloadRestart):
        await fetch(first_answer_drops_at(100), answer)


async def test_a_drop_after_the_last_byte_needs_no_resume():
    body, seen = await fetch(first_answer_drops_at(len(DATA)))
    assert body == DATA and len(seen) == 1
