"""Replicate predictions: the adapter against httpx.MockTransport, then end to end against the strict emulator."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import httpx
import pytest
from PIL import Image

from prefect_videogen.blocks.replicate import ReplicateCredentials
from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import (
    AuthError,
    ContentRejected,
    InvalidRequest,
    InvalidVideoRequest,
    JobFailed,
    ModelUnavailable,
    ProviderUnavailable,
)
from prefect_videogen.media import probe_video
from prefect_videogen.models import JobStatus, Rejection, VideoJob, VideoRequest
from prefect_videogen.pipeline import generate, store_video
from prefect_videogen.providers.polling import wait_for_job
from prefect_videogen.providers.replicate import ReplicateVideoProvider, classify_rejection
from prefect_videogen.providers.wire_params import wire_params
from prefect_videogen.spend.claims import ClaimStore, JobClaim, claimed_submit
from prefect_videogen.spend.costs import estimate_cost
from prefect_videogen.storage.base import VideoStorage
from prefect_videogen.testing.replicate_emulator import EMULATOR_API_TOKEN, ReplicateEmulator
from prefect_videogen.testing.server import EmulatorServer, Fault

from fakes import SleepRecorder

# The cheapest clip to render: 480p, 5 s (the emulator renders real MP4s).
CHEAP = {"model": "seedance-1-pro", "duration": 5, "resolution": "480p"}
UNIT_TOKEN = "r8_unit_test_token_0123456789abcdef"
API = "https://api.replicate.test/v1"


def plan_for(**fields):
    return load_catalog().plan("replicate", VideoRequest(prompt=fields.pop("prompt", "a red fox in snow"), **fields))


def unit_client(handler, **kwargs) -> ReplicateVideoProvider:
    return ReplicateVideoProvider(
        UNIT_TOKEN, base_url=API, transport=httpx.MockTransport(handler), sleep=SleepRecorder(), **kwargs
    )


def prediction(status: str = "starting", **fields) -> dict:
    return {
        "id": "p1",
        "model": "bytedance/seedance-1-pro",
        "status": status,
        "input": {},
        "output": None,
        "error": None,
        "created_at": "2026-11-30T00:00:00Z",
        "urls": {},
        "metrics": {},
        **fields,
    }


def a_job() -> VideoJob:
    return VideoJob(
        provider="replicate", job_id="p1", model="seedance-1-pro", status=JobStatus.QUEUED, raw_status="starting"
    )


def png(tmp_path: Path, name: str = "first-frame.png", size: tuple[int, int] = (128, 72)) -> str:
    path = tmp_path / name
    Image.new("RGB", size, (200, 40, 40)).save(path)
    return str(path)


# --- unit: request mapping, status and errors ---------------------------------------------------


async def test_submit_sends_input_with_bearer_and_no_prefer_wait():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=prediction())

    client = unit_client(handler)
    plan = plan_for(**{**CHEAP, "aspect_ratio": "9:16", "seed": 3}, provider_options={"camera_fixed": True})
    job = await client.submit(plan)

    (request,) = seen
    assert request.url.path == "/v1/models/bytedance/seedance-1-pro/predictions"
    assert json.loads(request.content) == {
        "input": {
            "prompt": "a red fox in snow",
            "duration": 5,
            "aspect_ratio": "9:16",
            "resolution": "480p",
            "seed": 3,
            "camera_fixed": True,
        }
    }
    assert request.headers["authorization"] == f"Bearer {UNIT_TOKEN}" and "prefer" not in request.headers
    assert (job.job_id, job.status, job.raw_status) == ("p1", JobStatus.QUEUED, "starting")
    await client.aclose()


async def test_values_are_mapped_by_the_catalog_row():
    # Replicate's Sora took portrait|landscape and `seconds` (provider-apis.md section 4).
    params = await wire_params(
        plan_for(model="sora-2", aspect_ratio="9:16", duration=8), max_image_bytes=1, limit_text=""
    )
    assert params == {"prompt": "a red fox in snow", "seconds": 8, "aspect_ratio": "portrait"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("starting", JobStatus.QUEUED),
        ("processing", JobStatus.RUNNING),
        ("succeeded", JobStatus.SUCCEEDED),
        ("failed", JobStatus.FAILED),
        ("canceled", JobStatus.CANCELED),
        ("booting", JobStatus.RUNNING),  # unknown: still running until the deadline
    ],
)
async def test_status_table(raw, expected):
    output = ["https://replicate.delivery/x/cover.png", "https://replicate.delivery/x/output.mp4"]
    client = unit_client(lambda request: httpx.Response(200, json=prediction(raw, output=output)))
    job = await client.get_job(a_job())
    assert (job.status, job.raw_status) == (expected, raw)
    if expected is JobStatus.SUCCEEDED:
        assert job.provider_data["video_url"].endswith("output.mp4")  # the video among a list of outputs
    await client.aclose()


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("NSFW content detected in the prompt.", Rejection(stage="prompt")),
        ("NSFW content detected in the input image.", Rejection(stage="image")),
        ("The input or output was flagged as sensitive. Please try again with different inputs. (E005)", Rejection()),
        ("CUDA out of memory", None),
        (None, None),
    ],
)
def test_rejection_classification(error, expected):
    assert classify_rejection(error) == expected


async def test_validation_errors_name_the_field_and_5xx_on_create_is_not_resent():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            invalid = [{"type": "enum", "field": "input.duration", "description": "must be one of 5, 10"}]
            body = {"title": "Input validation failed", "detail": "- input.duration: ...", "status": 422}
            return httpx.Response(422, json={**body, "invalid_fields": invalid})
        return httpx.Response(503, json={"title": "Service Unavailable", "detail": "down", "status": 503})

    client = unit_client(handler)
    with pytest.raises(InvalidRequest, match="input.duration: must be one of 5, 10"):
        await client.submit(plan_for(**CHEAP))
    with pytest.raises(ProviderUnavailable) as caught:
        await client.submit(plan_for(**CHEAP))
    assert caught.value.maybe_created is True and len(calls) == 2
    await client.aclose()


async def test_a_large_local_image_is_refused_before_any_call(tmp_path):
    big = tmp_path / "big.png"
    Image.frombytes("RGB", (700, 700), random.Random(1).randbytes(700 * 700 * 3)).save(big)  # noise: no compression
    assert big.stat().st_size > 1024 * 1024
    calls = []
    client = unit_client(lambda request: calls.append(request) or httpx.Response(500))
    with pytest.raises(InvalidVideoRequest, match="1 MB"):
        await client.submit(plan_for(**CHEAP, image=str(big)))
    assert calls == []
    await client.aclose()


def test_the_ledger_estimate_says_replicate_reports_no_price():
    cost = estimate_cost(plan_for(**CHEAP))
    assert (cost.unit, cost.usd) == ("usd", pytest.approx(0.15))
    assert "reports run time, not a price" in cost.source


# --- end to end against the emulator over loopback HTTP ----------------------------------------------


@pytest.fixture(scope="module")
def clock():
    return [1000.0]


@pytest.fixture(scope="module")
def server(clock):
    with EmulatorServer(ReplicateEmulator(latency_seconds=0.0, clock=lambda: clock[0])) as running:
        yield running


@pytest.fixture
def emulator(server, clock) -> ReplicateEmulator:
    server.emulator.reset()
    clock[0] = 1000.0
    server.emulator.latency_seconds = 0.0  # the emulator's clock stands still: predictions finish at once
    server.emulator.page_size = 100
    return server.emulator


@pytest.fixture
def sleep() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def client(server, emulator, sleep):
    async with ReplicateVideoProvider(
        EMULATOR_API_TOKEN, base_url=server.base_url + "/v1", poll_interval_seconds=0.01, sleep=sleep
    ) as provider:
        yield provider


async def test_text_to_video_end_to_end(client, emulator, tmp_path):
    fields = {**CHEAP, "aspect_ratio": "9:16"}
    result = await generate(client, VideoRequest(prompt="a red fox in snow", **fields), VideoStorage(str(tmp_path)))

    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height) == (480, 864) and abs(probe.duration_seconds - 5) < 0.5
    assert emulator.charges == {result.job_id: 0.15} and estimate_cost(plan_for(**fields)).usd == pytest.approx(0.15)
    assert emulator.counters["jobs_created"] == 1 and emulator.counters["downloads"] == 1
    assert emulator.counters["prefer_wait"] == 0 and emulator.counters["cdn_key_rejections"] == 0


async def test_image_to_video_with_a_local_image_and_with_a_url(client, emulator, tmp_path):
    image = png(tmp_path)
    result = await generate(
        client, VideoRequest(prompt="the fox runs", **CHEAP, image=image), VideoStorage(str(tmp_path))
    )
    assert abs(probe_video(result.video_uri).duration_seconds - 5) < 0.5
    sent = emulator.jobs[result.job_id]["input"]["image"]
    assert sent == "data:image/png;base64," + base64.b64encode(Path(image).read_bytes()).decode()
    url = "https://images.example/fox.png"
    job = await client.submit(plan_for(**CHEAP, image=url))
    assert emulator.jobs[job.job_id]["input"]["image"] == url


async def test_rate_limited_create_waits_as_told_and_creates_one_prediction(client, emulator, sleep, tmp_path):
    emulator.faults.add("create", Fault(status=429, headers={"Retry-After": "4"}))
    result = await generate(client, VideoRequest(prompt="a fox", **CHEAP), VideoStorage(str(tmp_path)))
    assert sleep.delays == [4.0]
    assert emulator.counters["create_requests"] == 2 and list(emulator.charges) == [result.job_id]


async def test_poll_5xx_is_retried(client, emulator, sleep, clock, tmp_path):
    emulator.latency_seconds = 100.0
    plan = plan_for(**CHEAP)
    job = await client.submit(plan)
    assert job.status is JobStatus.QUEUED
    clock[0] += 200
    emulator.faults.add("poll", Fault(status=502), times=2)
    result = await store_video(client, plan, await wait_for_job(client, job, timeout=10), VideoStorage(str(tmp_path)))
    assert abs(probe_video(result.video_uri).duration_seconds - 5) < 0.5
    assert len(sleep.delays) == 2 and emulator.counters["polls"] == 3 and emulator.counters["jobs_created"] == 1


async def test_dropped_download_is_resumed(client, emulator, tmp_path):
    plan = plan_for(**CHEAP)
    job = await wait_for_job(client, await client.submit(plan), timeout=10)
    emulator.faults.add("download", Fault(drop_after_bytes=2000))
    result = await store_video(client, plan, job, VideoStorage(str(tmp_path)))
    assert abs(probe_video(result.video_uri).duration_seconds - 5) < 0.5
    assert emulator.counters["downloads"] == 2 and emulator.counters["jobs_created"] == 1


async def test_output_deleted_after_one_hour_is_a_clear_failure(client, emulator, clock, tmp_path):
    plan = plan_for(**CHEAP)
    job = await wait_for_job(client, await client.submit(plan), timeout=10)
    clock[0] += 3601
    with pytest.raises(JobFailed, match="deletes outputs one hour after") as caught:
        await store_video(client, plan, job, VideoStorage(str(tmp_path)))
    assert caught.value.code == "expired"


@pytest.mark.parametrize(("stage", "expected"), [("prompt", "prompt"), ("output", None)])
async def test_nsfw_failure_is_typed_and_not_resent(client, emulator, tmp_path, stage, expected):
    emulator.faults.add("create", Fault(reject=stage))
    with pytest.raises(ContentRejected) as caught:
        await generate(client, VideoRequest(prompt="a fox", **CHEAP), VideoStorage(str(tmp_path)))
    assert caught.value.stage == expected and caught.value.code == "content_policy"
    assert emulator.counters["create_requests"] == 1 and emulator.counters["downloads"] == 0


async def test_unserved_model_is_unavailable_before_any_prediction(client, emulator, tmp_path):
    emulator.retired_models.add("bytedance/seedance-1-pro")
    with pytest.raises(ModelUnavailable, match="'bytedance/seedance-1-pro' is not served by Replicate") as caught:
        await generate(client, VideoRequest(prompt="a fox", **CHEAP), VideoStorage(str(tmp_path)))
    assert caught.value.status_code == 404 and emulator.counters["jobs_created"] == 0
    assert "live alternatives on replicate in the catalog: veo-3" in str(caught.value)


async def test_bad_token_is_an_auth_error_without_retry(server, emulator, sleep):
    async with ReplicateVideoProvider(
        "r8_wrong_token_000000000", base_url=server.base_url + "/v1", sleep=sleep
    ) as wrong:
        with pytest.raises(AuthError, match="valid authentication token") as caught:
            await wrong.submit(plan_for(**CHEAP))
    assert caught.value.status_code == 401 and sleep.delays == [] and emulator.counters["jobs_created"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": {"prompt": "a fox", "duration": 7}}, "input.duration"),
        ({"input": {"prompt": "a fox", "duration": "5"}}, "input.duration"),
        ({"input": {"prompt": "a fox", "fps": 30}}, "input.fps"),
        ({"input": {"prompt": "a fox", "frames": 30}}, "input"),
        ({"input": {"duration": 5}}, "input"),
        ({"input": {"prompt": "a fox", "image": "file:///fox.png"}}, "input.image"),
        ({"prompt": "a fox"}, "(root)"),
    ],
)
async def test_emulator_refuses_what_replicate_refuses(server, emulator, body, field):
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"Authorization": f"Bearer {EMULATOR_API_TOKEN}"}
    ) as http:
        response = await http.post("/v1/models/bytedance/seedance-1-pro/predictions", json=body)
    assert response.status_code == 422, response.text
    assert field in [item["field"] for item in response.json()["invalid_fields"]]
    assert emulator.counters["jobs_created"] == 0


async def test_cancel_a_starting_prediction(client, emulator):
    emulator.latency_seconds = 100.0
    job = await client.cancel(await client.submit(plan_for(**CHEAP)))
    assert job.status is JobStatus.CANCELED and emulator.charges == {job.job_id: 0.0}


# --- claims: an unanswered submit is found in the listing, never paid again --------------------------


async def test_a_lost_answer_is_found_in_the_listing_and_a_rerun_pays_nothing(client, emulator, tmp_path):
    storage = VideoStorage(str(tmp_path))
    emulator.page_size = 2  # the match is on a later page
    plans = [plan_for(prompt=f"a lighthouse, shot {n}", **CHEAP) for n in range(3)]
    claims = [
        JobClaim(
            key=f"k{n}", provider="replicate", account_id=client.account_id, fingerprint=f"fp{n}", model=CHEAP["model"]
        )
        for n in range(3)
    ]
    # Item 1's answer is lost after the prediction was created (a 500 after creating it).
    emulator.faults.add("create", Fault())
    emulator.faults.add("create", Fault(status=500, after_create=True), times=1)
    first_run = [
        await claimed_submit(client, plan, claim, storage, estimated=estimate_cost(plan))
        for plan, claim in zip(plans, claims, strict=True)
    ]
    assert [adopted for _, adopted in first_run] == [False, True, False]
    assert emulator.counters["listings"] >= 1

    # A process that died between sending and the answer: its prediction exists, its claim has no id.
    orphan_plan = plan_for(prompt="a lighthouse, shot 3", **CHEAP)
    orphan = JobClaim(
        key="k3",
        provider="replicate",
        account_id=client.account_id,
        fingerprint="fp3",
        model=CHEAP["model"],
        pid=2**22 + 9,
    )
    assert await ClaimStore(storage).create(orphan)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {EMULATOR_API_TOKEN}"}) as http:
        body = {"input": await wire_params(orphan_plan, max_image_bytes=1, limit_text="")}
        created = await http.post(f"{client.http.base_url}models/bytedance/seedance-1-pro/predictions", json=body)
    assert created.status_code == 201

    # The rerun of all four items: every prediction is adopted, none is created again.
    rerun = [
        await claimed_submit(
            client,
            plan,
            claim.model_copy(update={"client_token": "rerun", "pid": 1}),
            storage,
            estimated=estimate_cost(plan),
        )
        for plan, claim in zip([*plans, orphan_plan], [*claims, orphan], strict=True)
    ]
    assert all(adopted for _, adopted in rerun)
    assert [job.job_id for job, _ in rerun][:3] == [job.job_id for job, _ in first_run]
    assert rerun[3][0].job_id == created.json()["id"]
    assert emulator.counters["jobs_created"] == 4  # equal to the items: nothing paid twice


# --- blocks and secrets ----------------------------------------------------------------------------


def test_block_validates_and_hides_the_token():
    block = ReplicateCredentials(api_token="r8_secret_token_abcdef123456")
    assert block.base_url == "https://api.replicate.com/v1"
    assert block.account_id().startswith("replicate-") and "r8_secret" not in block.account_id()
    assert "r8_secret" not in repr(block) and "r8_secret" not in block.model_dump_json()
    with pytest.raises(ValueError, match="unknown field"):
        ReplicateCredentials(api_token="t", api_key="typo")
    assert block.get_client().account_id == block.account_id()


async def test_the_token_never_leaks(client, server, emulator, tmp_path, debug_logs):
    emulator.faults.add("create", Fault(status=429, headers={"Retry-After": "0"}))
    result = await generate(client, VideoRequest(prompt="a fox", **CHEAP), VideoStorage(str(tmp_path)))
    errors = []
    emulator.retired_models.add("bytedance/seedance-1-pro")
    for token in (EMULATOR_API_TOKEN, "r8_wrong_token_000000000"):
        async with ReplicateVideoProvider(token, base_url=server.base_url + "/v1") as other:
            with pytest.raises(Exception) as caught:
                await other.submit(plan_for(**CHEAP))
            errors.append(caught.value)
    block = ReplicateCredentials(api_token=EMULATOR_API_TOKEN, base_url=server.base_url + "/v1")
    texts = [
        debug_logs.text,
        *(f"{error} {error!r}" for error in errors),
        result.model_dump_json(),
        Path(result.sidecar_uri).read_text(),
        repr(block),
        block.model_dump_json(),
        block.account_id(),
    ]
    assert any("HTTP Request" in record.getMessage() for record in debug_logs.records)
    for secret in (EMULATOR_API_TOKEN, "r8_wrong_token_000000000"):
        assert not [text for text in texts if secret in text]


# --- the catalog agrees with the emulator's own tables ------------------------------------------------


def catalog_cases():
    from prefect_videogen.testing.replicate_emulator import MODELS

    entry = load_catalog().provider("replicate")
    for key, spec in sorted(entry.models.items()):
        if spec.provider_model_id not in MODELS:
            assert spec.status == "retired", key  # every served row has an emulator table
            continue
        durations = spec.durations if isinstance(spec.durations, list) else [spec.durations.min]
        for tier, aspects in spec.sizes.items():
            for aspect, size in aspects.items():
                yield pytest.param(key, tier, aspect, durations[-1], size, id=f"{key}-{tier}-{aspect}")


@pytest.mark.parametrize(("model", "tier", "aspect", "duration", "size"), list(catalog_cases()))
async def test_every_catalog_row_builds_an_input_the_host_takes(model, tier, aspect, duration, size):
    from prefect_videogen.testing.replicate_emulator import MODELS

    spec = load_catalog().provider("replicate").models[model]
    plan = plan_for(
        model=model, resolution=tier, aspect_ratio=aspect, duration=duration, image="https://img.example/a.png"
    )
    params = await wire_params(plan, max_image_bytes=1, limit_text="")
    table = MODELS[spec.provider_model_id]
    assert table.problems(params) == []
    width, height, seconds, _ = table.render(params)
    assert f"{width}x{height}" == size and seconds == duration
    assert estimate_cost(plan).usd == pytest.approx(table.price(seconds, tier))
