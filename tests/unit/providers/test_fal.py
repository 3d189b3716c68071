"""fal queue: the adapter against httpx.MockTransport, then end to end against the strict emulator."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from prefect_videogen.blocks.fal import FalCredentials
from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import (
    AuthError,
    ContentRejected,
    InvalidRequest,
    InvalidVideoRequest,
    JobFailed,
    ModelUnavailable,
    ProviderUnavailable,
    SubmitUncertain,
)
from prefect_videogen.media import probe_video
from prefect_videogen.models import JobStatus, Rejection, VideoJob, VideoRequest
from prefect_videogen.pipeline import generate, store_video
from prefect_videogen.providers.fal import FalVideoProvider, classify_rejection, detail_text
from prefect_videogen.providers.polling import wait_for_job
from prefect_videogen.spend.claims import JobClaim, claimed_submit
from prefect_videogen.spend.costs import estimate_cost
from prefect_videogen.spend.ledger import Ledger
from prefect_videogen.storage.base import VideoStorage
from prefect_videogen.testing.fal_emulator import EMULATOR_API_KEY, FalEmulator
from prefect_videogen.testing.server import EmulatorServer, Fault

from fakes import SleepRecorder

# The cheapest clip to render: 480p, 5 s (the emulator renders real MP4s).
CHEAP = {"model": "seedance-1-pro", "duration": 5, "resolution": "480p"}
UNIT_KEY = "fal_unit_key_id:fal_unit_key_secret_0123456789"
API = "https://queue.fal.test"


def plan_for(**fields):
    return load_catalog().plan("fal", VideoRequest(prompt=fields.pop("prompt", "a red fox in snow"), **fields))


def unit_client(handler, **kwargs) -> FalVideoProvider:
    return FalVideoProvider(
        UNIT_KEY, base_url=API, transport=httpx.MockTransport(handler), sleep=SleepRecorder(), **kwargs
    )


def png(tmp_path: Path, name: str = "first-frame.png") -> str:
    path = tmp_path / name
    Image.new("RGB", (128, 72), (200, 40, 40)).save(path)
    return str(path)


# --- unit: request mapping, status and errors ---------------------------------------------------


async def test_submit_sends_the_flat_input_with_key_and_retention_header():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        root = f"{API}/fal-ai/veo3/requests/req-1"
        return httpx.Response(
            200,
            json={
                "request_id": "req-1",
                "status_url": f"{root}/status",
                "response_url": root,
                "cancel_url": f"{root}/cancel",
            },
        )

    client = unit_client(handler, media_retention_seconds=3600)
    plan = plan_for(
        model="veo-3",
        duration=8,
        aspect_ratio="9:16",
        resolution="1080p",
        negative_prompt="rain",
        seed=7,
        generate_audio=False,
        provider_options={"enhance_prompt": True},
    )
    job = await client.submit(plan)

    (request,) = seen
    assert request.method == "POST" and request.url.path == "/fal-ai/veo3"
    assert json.loads(request.content) == {
        "prompt": "a red fox in snow",
        "duration": "8s",  # the row's value table: 8 -> "8s"
        "aspect_ratio": "9:16",
        "resolution": "1080p",
        "negative_prompt": "rain",
        "seed": 7,
        "generate_audio": False,
        "enhance_prompt": True,
    }
    assert request.headers["authorization"] == f"Key {UNIT_KEY}"
    assert json.loads(request.headers["x-fal-object-lifecycle-preference"]) == {"expiration_duration_seconds": 3600}
    assert (job.job_id, job.status, job.provider_data["endpoint"]) == ("req-1", JobStatus.QUEUED, "fal-ai/veo3")
    await client.aclose()


async def test_status_urls_on_another_origin_never_get_the_key():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"status": "IN_PROGRESS"})

    client = unit_client(handler)
    job = VideoJob(
        provider="fal",
        job_id="req-1",
        model="kling-2.1",
        status=JobStatus.QUEUED,
        raw_status="IN_QUEUE",
        provider_data={"status_url": "https://elsewhere.example/steal/status"},
    )
    job = await client.get_job(job)
    # Built from the catalog row of the job's model, on the API's own origin.
    assert seen == [f"{API}/fal-ai/kling-video/v2.1/master/text-to-video/requests/req-1/status"]
    assert job.status is JobStatus.RUNNING
    await client.aclose()


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        (
            [{"loc": ["body", "prompt"], "msg": "flagged", "type": "content_policy_violation"}],
            Rejection(stage="prompt"),
        ),
        (
            [{"loc": ["body", "image_url"], "msg": "flagged", "type": "content_policy_violation"}],
            Rejection(stage="image"),
        ),
        ([{"loc": [], "msg": "flagged", "type": "content_policy_violation"}], Rejection(stage="output")),
        ("NSFW content detected", Rejection(stage="output")),
        ([{"loc": ["body", "duration"], "msg": "Input should be '5' or '10'", "type": "literal_error"}], None),
        ("Internal error", None),
    ],
)
def test_rejection_classification(detail, expected):
    assert classify_rejection(detail) == expected


def test_validation_details_name_the_field():
    detail = [{"loc": ["body", "duration"], "msg": "Input should be '5' or '10'", "type": "literal_error"}]
    assert detail_text(detail) == "duration: Input should be '5' or '10' (literal_error)"


async def test_an_image_to_video_endpoint_without_an_image_is_refused_before_any_call():
    calls = []
    client = unit_client(lambda request: calls.append(request) or httpx.Response(500))
    with pytest.raises(InvalidVideoRequest, match="image.*image-to-video endpoint"):
        await client.submit(plan_for(model="veo-3-i2v", duration=8))
    with pytest.raises(ModelUnavailable, match="retired on 2026-09-24"):
        await client.submit(plan_for(model="sora-2", duration=4))
    assert calls == []
    await client.aclose()


async def test_an_ambiguous_submit_failure_is_never_resent():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(502, json={"detail": "Bad Gateway"})

    client = unit_client(handler)
    with pytest.raises(ProviderUnavailable) as caught:
        await client.submit(plan_for(model="kling-2.1", duration=5))
    assert caught.value.maybe_created is True and len(calls) == 1
    await client.aclose()


# --- end to end against the emulator over loopback HTTP ----------------------------------------------


@pytest.fixture(scope="module")
def clock():
    return [1000.0]


@pytest.fixture(scope="module")
def server(clock):
    with EmulatorServer(FalEmulator(latency_seconds=0.05, clock=lambda: clock[0])) as running:
        yield running


@pytest.fixture
def emulator(server, clock) -> FalEmulator:
    server.emulator.reset()
    clock[0] = 1000.0
    server.emulator.latency_seconds = 0.0  # the emulator's clock stands still: jobs are done at once
    return server.emulator


@pytest.fixture
def sleep() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def client(server, emulator, sleep):
    async with FalVideoProvider(
        EMULATOR_API_KEY, base_url=server.base_url, poll_interval_seconds=0.01, sleep=sleep
    ) as c:
        yield c


@pytest.mark.parametrize(
    ("fields", "size", "usd"),
    [
        ({"model": "kling-2.1", "duration": 5, "aspect_ratio": "1:1"}, (1080, 1080), 1.4),
        ({"model": "seedance-1-pro", "duration": 5, "resolution": "480p", "aspect_ratio": "1:1"}, (480, 480), 0.15),
    ],
)
async def test_text_to_video_end_to_end(client, emulator, tmp_path, fields, size, usd):
    result = await generate(client, VideoRequest(prompt="a red fox in snow", **fields), VideoStorage(str(tmp_path)))

    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height) == size and abs(probe.duration_seconds - fields["duration"]) < 0.5
    assert emulator.jobs[result.job_id]["input"]["duration"] == str(fields["duration"])  # fal wants "5", not 5
    assert emulator.charges == {result.job_id: usd}
    assert estimate_cost(plan_for(**fields)).usd == pytest.approx(usd)  # the catalog agrees with the host
    sidecar = json.loads(Path(result.sidecar_uri).read_text())
    assert sidecar["reported_cost"] == {"amount": None, "unit": None}  # fal reports none: the ledger estimates
    assert emulator.counters["jobs_created"] == 1 and emulator.counters["downloads"] == 1
    assert emulator.counters["cdn_key_rejections"] == 0


async def test_image_to_video_with_a_local_image_and_with_a_url(client, emulator, tmp_path):
    image = png(tmp_path)
    result = await generate(
        client,
        VideoRequest(prompt="the fox runs", model="veo-3-i2v", duration=8, image=image),
        VideoStorage(str(tmp_path)),
    )
    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height) == (1280, 720) and abs(probe.duration_seconds - 8) < 0.5
    sent = emulator.jobs[result.job_id]["input"]["image_url"]
    assert sent == "data:image/png;base64," + base64.b64encode(Path(image).read_bytes()).decode()

    url = "https://images.example/fox.png"
    job = await client.submit(plan_for(model="veo-3-i2v", duration=8, image=url))
    assert emulator.jobs[job.job_id]["input"]["image_url"] == url


async def test_rate_limited_submit_waits_as_told_and_creates_one_job(client, emulator, sleep, tmp_path):
    emulator.faults.add("create", Fault(status=429, headers={"Retry-After": "3"}))
    result = await generate(client, VideoRequest(prompt="a fox", **CHEAP), VideoStorage(str(tmp_path)))
    assert sleep.delays == [3.0]
    assert emulator.counters["create_requests"] == 2 and list(emulator.charges) == [result.job_id]


async def test_status_and_result_5xx_are_retried(client, emulator, sleep, tmp_path):
    emulator.faults.add("poll", Fault(status=503), times=2)
    emulator.faults.add("result", Fault(status=502))
    result = await generate(client, VideoRequest(prompt="a fox", **CHEAP), VideoStorage(str(tmp_path)))
    assert abs(probe_video(result.video_uri).duration_seconds - 5) < 0.5
    assert len(sleep.delays) == 3 and emulator.counters["jobs_created"] == 1


async def test_a_5xx_before_the_queue_answers_is_not_resent(client, emulator, sleep):
    emulator.faults.add("create", Fault(status=500, after_create=True))
    with pytest.raises(ProviderUnavailable) as caught:
        await client.submit(plan_for(**CHEAP))
    assert caught.value.maybe_created is True and sleep.delays == []
    assert emulator.counters["create_requests"] == 1 and emulator.counters["jobs_created"] == 1


async def test_dropped_download_is_resumed(client, emulator, tmp_path):
    plan = plan_for(**CHEAP)
    job = await wait_for_job(client, await client.submit(plan), timeout=10)
    emulator.faults.add("download", Fault(drop_after_bytes=2000))
    result = await store_video(client, plan, job, VideoStorage(str(tmp_path)))
    assert abs(probe_video(result.video_uri).duration_seconds - 5) < 0.5
    assert emulator.counters["downloads"] == 2 and emulator.counters["jobs_created"] == 1


@pytest.mark.parametrize("stage", ["prompt", "output"])
async def test_content_policy_block_is_typed_and_not_resent(client, emulator, tmp_path, stage):
    emulator.faults.add("create", Fault(reject=stage))
    with pytest.raises(ContentRejected, match="flagged by a content checker") as caught:
        await generate(client, VideoRequest(prompt="a fox", **CHEAP), VideoStorage(str(tmp_path)))
    assert caught.value.stage == stage and caught.value.charged is None  # fal does not say whether it bills
    assert emulator.counters["create_requests"] == 1 and emulator.counters["downloads"] == 0


async def test_a_failed_generation_is_a_job_failure(client, emulator, tmp_path):
    emulator.faults.add("create", Fault(fail_on_create=True))
    with pytest.raises(JobFailed, match="Internal error while generating") as caught:
        await generate(client, VideoRequest(prompt="a fox", **CHEAP), VideoStorage(str(tmp_path)))
    assert not isinstance(caught.value, ContentRejected) and caught.value.code == "http_500"


async def test_unserved_endpoint_is_unavailable_before_any_job(client, emulator, tmp_path):
    emulator.retired_models.add("fal-ai/bytedance/seedance/v1/pro/text-to-video")
    with pytest.raises(ModelUnavailable, match="not served by fal") as caught:
        await generate(client, VideoRequest(prompt="a fox", **CHEAP), VideoStorage(str(tmp_path)))
    assert caught.value.status_code == 404 and emulator.counters["jobs_created"] == 0
    assert "live alternatives on fal in the catalog: kling-2.1, veo-3, veo-3-i2v" in str(caught.value)


async def test_bad_key_is_an_auth_error_without_retry(server, emulator, sleep):
    async with FalVideoProvider("wrong_id:wrong_secret_000000", base_url=server.base_url, sleep=sleep) as wrong:
        with pytest.raises(AuthError, match="Invalid Key") as caught:
            await wrong.submit(plan_for(**CHEAP))
    assert caught.value.status_code == 401 and sleep.delays == []
    assert emulator.counters["auth_failures"] == 1 and emulator.counters["jobs_created"] == 0


async def test_an_input_the_model_does_not_take_is_refused_by_name(client, emulator, tmp_path, monkeypatch):
    # A catalog row that disagrees with the host (an override giving kling a resolution): fal answers 422.
    override = tmp_path / "catalog.json"
    override.write_text(
        json.dumps(
            {
                "providers": {
                    "fal": {
                        "models": {
                            "kling-2.1": {
                                **load_catalog()
                                .provider("fal")
                                .models["kling-2.1"]
                                .model_dump(mode="json", exclude_none=True),
                                "wire": {
                                    "fields": {"duration": "duration", "resolution": "resolution"},
                                    "duration_type": "string",
                                },
                            }
                        }
                    }
                }
            }
        )
    )
    monkeypatch.setenv("PREFECT_VIDEOGEN_CATALOG", str(override))
    with pytest.raises(InvalidRequest, match=r"resolution: Extra inputs are not permitted \(extra_forbidden\)"):
        await client.submit(plan_for(model="kling-2.1", duration=5))
    assert emulator.counters["jobs_created"] == 0


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"prompt": "a fox", "duration": 5}, "duration"),
        ({"prompt": "a fox", "duration": "7"}, "duration"),
        ({"prompt": "a fox", "fps": 30}, "fps"),
        ({"duration": "5"}, "prompt"),
        ({"prompt": "a fox", "cfg_scale": 2}, "cfg_scale"),
        ({"prompt": "x" * 2501}, "prompt"),
    ],
)
async def test_emulator_refuses_what_fal_refuses(server, emulator, body, loc):
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"Authorization": f"Key {EMULATOR_API_KEY}"}
    ) as http:
        response = await http.post("/fal-ai/kling-video/v2.1/master/text-to-video", json=body)
    assert response.status_code == 422, response.text
    assert ["body", loc] in [item["loc"] for item in response.json()["detail"]]
    assert emulator.counters["jobs_created"] == 0


async def test_media_retention_runs_out_on_the_emulator_clock(server, emulator, clock, tmp_path):
    async with FalVideoProvider(
        EMULATOR_API_KEY, base_url=server.base_url, media_retention_seconds=120, poll_interval_seconds=0.01
    ) as short:
        plan = plan_for(**CHEAP)
        job = await wait_for_job(short, await short.submit(plan), timeout=10)
        assert emulator.jobs[job.job_id]["retention"] == 120
        clock[0] += 121
        with pytest.raises(JobFailed, match="media retention ran out") as caught:
            await store_video(short, plan, job, VideoStorage(str(tmp_path)))
    assert caught.value.code == "expired"


async def test_cancel_a_queued_request(client, emulator, clock):
    emulator.latency_seconds = 100.0
    job = await client.submit(plan_for(**CHEAP))
    assert await client.cancel(job) is True
    clock[0] += 200
    assert await client.cancel(job) is False  # completed (canceled) requests cannot be canceled again
    job = await client.get_job(job)
    assert job.status is JobStatus.FAILED and "cancelled" in (job.error_message or "")
    assert emulator.charges == {job.job_id: 0.0}


# --- claims: a crash never loses a request id; an unanswered submit is never paid again --------------


async def test_a_claimed_request_id_is_adopted_and_an_unanswered_submit_is_uncertain(client, emulator, tmp_path):
    storage = VideoStorage(str(tmp_path))
    plan = plan_for(**CHEAP)
    claim = JobClaim(
        key="k-fal-1", provider="fal", account_id=client.account_id, fingerprint="fp", model="seedance-1-pro"
    )
    job, adopted = await claimed_submit(client, plan, claim, storage, estimated=estimate_cost(plan))
    assert adopted is False
    # The rerun (another process after a crash) finds the claim with the request id: no new request.
    again, adopted = await claimed_submit(
        client, plan, claim.model_copy(update={"client_token": "other"}), storage, estimated=estimate_cost(plan)
    )
    assert adopted is True and again.job_id == job.job_id
    assert emulator.counters["jobs_created"] == 1

    # A submit whose answer never arrives (the client timed out; a crash is the same): the request
    # may be queued and fal cannot list it, so the claim stays, its estimate stays in the books, and
    # neither this run nor a rerun sends it again.
    emulator.faults.add("create", Fault(answer_delay_seconds=0.6))
    orphan = JobClaim(
        key="k-fal-2", provider="fal", account_id=client.account_id, fingerprint="fp2", model="seedance-1-pro"
    )
    client.http.api.timeout = httpx.Timeout(0.2)
    for attempt in range(2):
        with pytest.raises(SubmitUncertain, match="claims/fal/k-fal-2.json") as caught:
            await claimed_submit(
                client,
                plan,
                orphan.model_copy(update={"client_token": str(attempt)}),
                storage,
                estimated=estimate_cost(plan),
            )
        assert "documents no way to list" in str(caught.value)
    assert emulator.counters["jobs_created"] == 2 and emulator.counters["create_requests"] == 2
    entries = await Ledger(storage).entries()
    assert sorted((e.claim_key, e.charge_status.value) for e in entries) == [
        ("k-fal-1", "pending"),
        ("k-fal-2", "pending"),
    ]
    assert sum(e.open_usd for e in entries) == pytest.approx(0.3)  # both possible charges are on the books


# --- blocks and secrets ----------------------------------------------------------------------------


def test_block_validates_and_hides_the_key():
    block = FalCredentials(api_key="fal_key_id:fal_secret_abcdef123456")
    assert block.base_url == "https://queue.fal.run"
    assert block.account_id().startswith("fal-") and "fal_secret" not in block.account_id()
    assert "fal_secret" not in repr(block) and "fal_secret" not in block.model_dump_json()
    with pytest.raises(ValueError, match="unknown field"):
        FalCredentials(api_key="k", api_kye="typo")
    with pytest.raises(ValueError, match="media_retention_seconds"):
        FalCredentials(api_key="k:s", media_retention_seconds=5)
    client = block.get_client()
    assert client.account_id == block.account_id()


async def test_the_key_never_leaks(client, server, emulator, tmp_path, debug_logs):
    emulator.faults.add("create", Fault(status=429, headers={"Retry-After": "0"}))
    result = await generate(client, VideoRequest(prompt="a fox", **CHEAP), VideoStorage(str(tmp_path)))
    errors = []
    emulator.retired_models.add("fal-ai/bytedance/seedance/v1/pro/text-to-video")
    for key in (EMULATOR_API_KEY, "wrong_id:wrong_secret_000000"):
        async with FalVideoProvider(key, base_url=server.base_url) as other:
            with pytest.raises(Exception) as caught:
                await other.submit(plan_for(**CHEAP))
            errors.append(caught.value)
    block = FalCredentials(api_key=EMULATOR_API_KEY, base_url=server.base_url)
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
    for secret in (EMULATOR_API_KEY, "fal_emulator_key_secret_0123", "wrong_secret_000000"):
        assert not [text for text in texts if secret in text]


# --- the catalog agrees with the emulator's own tables ------------------------------------------------


def catalog_cases():
    entry = load_catalog().provider("fal")
    for key, spec in sorted(entry.models.items()):
        durations = spec.durations if isinstance(spec.durations, list) else [spec.durations.min]
        for tier, aspects in spec.sizes.items():
            for aspect, size in aspects.items():
                yield pytest.param(key, tier, aspect, durations[-1], size, id=f"{key}-{tier}-{aspect}")


@pytest.mark.parametrize(("model", "tier", "aspect", "duration", "size"), list(catalog_cases()))
async def test_every_catalog_row_builds_an_input_the_host_takes(model, tier, aspect, duration, size):
    from prefect_videogen.providers.wire_params import wire_params
    from prefect_videogen.testing.fal_emulator import MODELS

    spec = load_catalog().provider("fal").models[model]
    image = "https://images.example/first.png" if "image" in spec.features() else None
    plan = plan_for(model=model, resolution=tier, aspect_ratio=aspect, duration=duration, image=image)
    params = await wire_params(plan, max_image_bytes=1, limit_text="")
    table = MODELS[spec.provider_model_id]
    assert table.problems(params) == []
    width, height, seconds, _ = table.render(params)
    assert f"{width}x{height}" == size and seconds == duration
    assert estimate_cost(plan).usd == pytest.approx(table.price(seconds, tier))
