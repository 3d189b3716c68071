"""APIFrame v2: the adapter against httpx.MockTransport, then end to end against the strict emulator."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from prefect_videogen.blocks.apiframe import APIFrameCredentials
from prefect_videogen.blocks.storage import LocalVideoStorage
from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import (
    AuthError,
    ContentRejected,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    InvalidVideoRequest,
    JobFailed,
    ModelUnavailable,
    ProviderUnavailable,
    RateLimited,
)
from prefect_videogen.media import probe_video
from prefect_videogen.models import JobStatus, Rejection, VideoJob, VideoRequest
from prefect_videogen.pipeline import generate, store_video
from prefect_videogen.providers.apiframe import APIFrameVideoProvider, classify_rejection
from prefect_videogen.providers.base import raise_for_job
from prefect_videogen.providers.polling import wait_for_job
from prefect_videogen.storage.base import VideoStorage
from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY, APIFrameEmulator
from prefect_videogen.testing.server import EmulatorServer, Fault

from fakes import SleepRecorder

UNIT_KEY = "afk_unit_test_key_0123456789"
API = "https://api.apiframe.test"


def plan_for(**fields):
    return load_catalog().plan("apiframe", VideoRequest(prompt=fields.pop("prompt", "a red fox in snow"), **fields))


def job_body(status: str = "QUEUED", **fields) -> dict:
    body = {
        "id": "job-1",
        "status": status,
        "model": "sora-2",
        "progress": None,
        "error": None,
        "creditCost": None,
        "webhookStatus": None,
        "createdAt": "2026-11-22T00:00:00Z",
        "completedAt": None,
        "expired": False,
        "input": {},
        "result": None,
    }
    return {**body, **fields}


def unit_client(handler, **kwargs) -> tuple[APIFrameVideoProvider, SleepRecorder]:
    sleep = SleepRecorder()
    client = APIFrameVideoProvider(
        UNIT_KEY, base_url=API, transport=httpx.MockTransport(handler), sleep=sleep, **kwargs
    )
    return client, sleep


def a_job(**fields) -> VideoJob:
    return VideoJob(
        provider="apiframe", job_id="job-1", model="sora-2", status=JobStatus.QUEUED, raw_status="QUEUED", **fields
    )


# --- unit: request mapping ------------------------------------------------------------------


async def test_submit_sends_the_documented_body_with_key_and_idempotency_key():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"jobId": "job-1", "status": "QUEUED"}, headers={"x-request-id": "req_1"})

    client, _ = unit_client(handler)
    plan = plan_for(model="sora-2-pro", duration=10, aspect_ratio="9:16", resolution="high")
    job = await client.submit(plan)

    (request,) = seen
    body = json.loads(request.content)
    assert request.url.path == "/v2/videos/generate"
    assert body == {
        "model": "sora-2-pro",
        "prompt": "a red fox in snow",
        "soraParams": {"duration": 10, "aspect_ratio": "9:16", "resolution": "high"},
    }
    assert type(body["soraParams"]["duration"]) is int  # APIFrame wants an integer, not "10" or 10.0
    assert request.headers["x-api-key"] == UNIT_KEY
    assert 1 <= len(request.headers["idempotency-key"]) <= 255
    assert "authorization" not in request.headers
    assert (job.job_id, job.status, job.raw_status) == ("job-1", JobStatus.QUEUED, "QUEUED")
    assert job.provider_data["idempotency_key"] == request.headers["idempotency-key"]
    assert job.provider_data["request_id"] == "req_1"
    assert job.poll_after_seconds is None  # APIFrame sends no poll hint; the shared schedule applies
    await client.aclose()


async def test_each_submit_call_has_its_own_key_and_a_caller_key_is_used_verbatim():
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        return httpx.Response(202, json={"jobId": f"job-{len(keys)}", "status": "QUEUED"})

    client, _ = unit_client(handler)
    await client.submit(plan_for())
    await client.submit(plan_for())
    await client.submit(plan_for(), idempotency_key="order-42")
    assert keys[0] != keys[1] and keys[2] == "order-42"
    with pytest.raises(InvalidVideoRequest, match="idempotency_key"):
        await client.submit(plan_for(), idempotency_key="k" * 256)
    assert len(keys) == 3
    await client.aclose()


async def test_provider_options_cannot_override_what_the_request_sets():
    calls = []
    client, _ = unit_client(lambda request: calls.append(request) or httpx.Response(202, json={"jobId": "x"}))
    with pytest.raises(InvalidVideoRequest, match="provider_options.*duration"):
        await client.submit(plan_for(provider_options={"duration": 5}))
    assert calls == []
    await client.aclose()


PNG_BYTES = b"\x89PNG\r\n\x1a\n"


def recording_client(seen: list[httpx.Request]) -> APIFrameVideoProvider:
    """A unit client whose uploads answer distinct URLs and whose submits are accepted."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v2/uploads":
            return httpx.Response(
                200, json={"id": f"u{len(seen)}", "url": f"https://cdn.apiframe.test/u{len(seen)}.png"}
            )
        return httpx.Response(202, json={"jobId": "job-1", "status": "QUEUED"})

    client, _ = unit_client(handler)
    return client


@pytest.mark.parametrize(
    ("fields", "params_object", "params"),
    [
        (
            {
                "model": "veo-3.1",
                "duration": 6,
                "aspect_ratio": "9:16",
                "resolution": "1080p",
                "negative_prompt": "rain",
                "seed": 42,
                "generate_audio": True,
                "image": "IMG",
                "end_image": "END",
                "reference_images": ["R1", "R2"],
            },
            "veoParams",
            {
                "duration": 6,
                "aspect_ratio": "9:16",
                "resolution": "1080p",
                "negative_prompt": "rain",
                "seed": 42,
                "generate_audio": True,
                "image": "IMG",
                "last_frame": "END",
                "reference_images": ["R1", "R2"],
            },
        ),
        (
            {
                "model": "kling-2.1",
                "duration": 10,
                "aspect_ratio": "1:1",
                "resolution": "1080p",
                "image": "IMG",
                "end_image": "END",
                "negative_prompt": "blur",
                "provider_options": {"cfg_scale": 0.7},
            },
            "klingParams",
            {
                "duration": 10,
                "aspect_ratio": "1:1",
                "mode": "pro",
                "start_image": "IMG",
                "end_image": "END",
                "negative_prompt": "blur",
                "cfg_scale": 0.7,
            },
        ),
        (
            {"model": "kling-3.0", "duration": 5},
            "klingParams",
            {"duration": 5, "aspect_ratio": "16:9", "mode": "standard"},
        ),
        (
            {
                "model": "seedance-2",
                "duration": 11,
                "aspect_ratio": "adaptive",
                "resolution": "480p",
                "image": "IMG",
                "end_image": "END",
                "reference_images": ["R1"],
                "generate_audio": False,
                "seed": 0,
                "provider_options": {"camera_fixed": True, "web_search": False},
            },
            "seedanceParams",
            {
                "duration": 11,
                "resolution": "480p",
                "aspect_ratio": "adaptive",
                "start_image": "IMG",
                "end_image": "END",
                "reference_image_urls": ["R1"],
                "generate_audio": False,
                "seed": 0,
                "camera_fixed": True,
                "web_search": False,
            },
        ),
        (
            {
                "model": "hailuo-2.3-fast",
                "duration": 10,
                "resolution": "1080p",
                "image": "IMG",
                "provider_options": {"prompt_optimizer": False},
            },
            "hailuoParams",
            {"duration": 10, "resolution": "1080p", "start_image": "IMG", "prompt_optimizer": False},
        ),
        (
            {
                "model": "luma-ray-flash-2",
                "duration": 9,
                "aspect_ratio": "9:16",
                "resolution": "540p",
                "end_image": "END",
                "provider_options": {"loop": True},
            },
            "lumaParams",
            {"duration": 9, "aspect_ratio": "9:16", "resolution": "540p", "end_image": "END", "loop": True},
        ),
        (
            {"model": "grok-imagine-video", "duration": 6, "aspect_ratio": "1:1", "image": "IMG"},
            "grokParams",
            {"duration": 6, "aspect_ratio": "1:1", "start_image": "IMG"},
        ),
        (
            {"model": "sora-2", "duration": 12, "image": "IMG"},
            "soraParams",
            {"duration": 12, "aspect_ratio": "16:9", "resolution": "standard", "start_image": "IMG"},
        ),
    ],
)
async def test_each_model_family_body_field_by_field(tmp_path, fields, params_object, params):
    """Image fields are local files here: each is uploaded first and its URL lands in the field the wire names."""
    paths = {}
    for name in ("IMG", "END", "R1", "R2"):
        path = tmp_path / f"{name}.png"
        Image.new("RGB", (64, 36), (len(paths) * 60, 40, 40)).save(path)
        paths[name] = str(path)
    local = {
        k: (paths[v] if isinstance(v, str) and v in paths else [paths[i] for i in v] if k == "reference_images" else v)
        for k, v in fields.items()
    }
    seen: list[httpx.Request] = []
    client = recording_client(seen)
    await client.submit(plan_for(**local))
    uploads = [r for r in seen if r.url.path == "/v2/uploads"]
    (submit,) = [r for r in seen if r.url.path == "/v2/videos/generate"]
    assert seen[-1] is submit  # every upload before the paid POST
    url_of = {}
    for request in uploads:
        answer_url = f"https://cdn.apiframe.test/u{seen.index(request) + 1}.png"
        url_of[answer_url] = request
    body = json.loads(submit.content)
    assert set(body) == {"model", "prompt", params_object}
    assert body["model"] == fields["model"] and body["prompt"] == "a red fox in snow"
    sent = body[params_object]
    assert list(sent) and set(sent) == set(params)
    for name, expected in params.items():
        value = sent[name]
        if isinstance(expected, str) and expected in paths:
            assert value in url_of, name  # an upload URL, not the local path
        elif isinstance(expected, list) and expected and expected[0] in paths:
            assert len(value) == len(expected) and all(item in url_of for item in value), name
        else:
            assert value == expected and type(value) is type(expected), name
    images = [v for v in local.values() if isinstance(v, str) and v in paths.values()] + local.get(
        "reference_images", []
    )
    assert len(uploads) == len(set(images))
    await client.aclose()


async def test_url_images_pass_through_in_every_image_field():
    seen: list[httpx.Request] = []
    client = recording_client(seen)
    url = "https://images.example/"
    await client.submit(
        plan_for(
            model="veo-3.1", duration=8, image=url + "a.png", end_image=url + "b.png", reference_images=[url + "c.png"]
        )
    )
    (request,) = seen
    params = json.loads(request.content)["veoParams"]
    assert (params["image"], params["last_frame"], params["reference_images"]) == (
        url + "a.png",
        url + "b.png",
        [url + "c.png"],
    )
    await client.aclose()


@pytest.mark.parametrize(
    ("fields", "field", "allowed"),
    [
        ({"end_image": "NOTES"}, "end_image", "an image file"),
        ({"reference_images": ["https://ok.example/a.png", "BIG"]}, "reference_images[1]", "at most 25 MB"),
    ],
)
async def test_bad_end_and_reference_images_are_refused_before_any_call(tmp_path, fields, field, allowed):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    big = tmp_path / "huge.png"
    with open(big, "wb") as handle:
        handle.truncate(25 * 1024 * 1024 + 1)
    swap = {"NOTES": str(notes), "BIG": str(big)}
    fields = {k: [swap.get(i, i) for i in v] if isinstance(v, list) else swap.get(v, v) for k, v in fields.items()}
    calls = []
    client, _ = unit_client(lambda request: calls.append(request) or httpx.Response(500))
    with pytest.raises(InvalidVideoRequest, match=allowed) as caught:
        await client.submit(plan_for(model="veo-3.1", duration=8, **fields))
    assert caught.value.field == field and calls == []
    await client.aclose()


async def test_model_not_found_lists_the_live_alternatives():
    client, _ = unit_client(lambda request: httpx.Response(404, json={"error": "Model not found: veo-3.1"}))
    with pytest.raises(ModelUnavailable) as caught:
        await client.submit(plan_for(model="veo-3.1", duration=8))
    text = str(caught.value)
    assert "model 'veo-3.1' is not available on APIFrame" in text
    assert (
        "live alternatives on apiframe in the catalog: grok-imagine-video, hailuo-02," in text and "seedance-2" in text
    )
    assert "veo-3.1," not in text.split("alternatives")[1]
    assert (caught.value.model, caught.value.status_code) == ("veo-3.1", 404)
    await client.aclose()


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        ("s3://bucket/fox.png", "http(s) URL"),
        ("/nonexistent/fox.png", "existing local image file"),
        ("NOTES", "an image file"),
        ("BIG", "at most 25 MB"),
    ],
)
async def test_bad_images_are_refused_before_any_call(tmp_path, image, allowed):
    if image == "NOTES":
        image = str(tmp_path / "notes.txt")
        Path(image).write_text("not an image")
    elif image == "BIG":
        image = str(tmp_path / "huge.png")
        with open(image, "wb") as handle:
            handle.truncate(25 * 1024 * 1024 + 1)  # sparse: no 25 MB written
    calls = []
    client, _ = unit_client(lambda request: calls.append(request) or httpx.Response(500))
    with pytest.raises(InvalidVideoRequest, match=allowed.replace("(", r"\(").replace(")", r"\)")):
        await client.submit(plan_for(image=image))
    assert calls == []
    await client.aclose()


# --- unit: status and failure mapping ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected", "progress", "expected_progress"),
    [
        ("QUEUED", JobStatus.QUEUED, None, None),
        ("PROCESSING", JobStatus.RUNNING, 40, 0.4),
        ("processing", JobStatus.RUNNING, 0, 0.0),
        ("Completed", JobStatus.SUCCEEDED, 100, 1.0),
        ("FAILED", JobStatus.FAILED, None, None),
        ("CANCELLED", JobStatus.CANCELED, None, None),
        ("CANCELED", JobStatus.CANCELED, None, None),
        ("WARMING_UP", JobStatus.RUNNING, None, None),  # unknown: still running until the deadline
    ],
)
async def test_status_table(raw, expected, progress, expected_progress):
    result = {"videoUrl": "https://cdn2.apiframe.test/videos/job-1.mp4"} if raw.lower() == "completed" else None
    client, _ = unit_client(lambda request: httpx.Response(200, json=job_body(raw, progress=progress, result=result)))
    job = await client.get_job(a_job())
    assert (job.status, job.raw_status) == (expected, raw)
    assert job.progress == expected_progress
    await client.aclose()


@pytest.mark.parametrize(
    ("error", "credit_cost", "expected"),
    [
        ("Provider returned an error: content policy violation", 0, {"stage": None, "charged": False}),
        ("Provider returned an error: content policy violation", 12, {"stage": None, "charged": True}),
        ("Provider returned an error: content policy violation", None, {"stage": None, "charged": None}),
        ("Content policy violation: the prompt was flagged", 0, {"stage": "prompt", "charged": False}),
        ("content policy violation in start image", 0, {"stage": "image", "charged": False}),
        ("moderation blocked the generated output", 20, {"stage": "output", "charged": True}),
        ("Provider returned an error: upstream timeout", 0, None),
        (None, None, None),
    ],
)
def test_rejection_classification(error, credit_cost, expected):
    assert classify_rejection(error, credit_cost) == (Rejection(**expected) if expected else None)


async def test_failed_jobs_raise_typed_errors_with_cost():
    bodies = iter(
        [
            job_body("FAILED", error="Provider returned an error: content policy violation", creditCost=4),
            job_body("FAILED", error="Provider returned an error: upstream timeout", creditCost=0),
        ]
    )
    client, _ = unit_client(lambda request: httpx.Response(200, json=next(bodies)))
    rejected = await client.get_job(a_job())
    assert (rejected.reported_cost, rejected.reported_cost_unit) == (4.0, "credits")
    with pytest.raises(ContentRejected) as caught:
        raise_for_job(rejected)
    assert (caught.value.stage, caught.value.charged) == (None, True)
    failed = await client.get_job(a_job())
    with pytest.raises(JobFailed, match="upstream timeout") as caught:
        raise_for_job(failed)
    assert not isinstance(caught.value, ContentRejected) and caught.value.charged is False
    await client.aclose()


async def test_expired_and_urlless_results_fail_clearly():
    bodies = iter(
        [
            job_body(
                "COMPLETED",
                progress=100,
                expired=True,
                creditCost=4,
                result={"videoUrl": "https://cdn2.apiframe.test/videos/job-1.mp4"},
            ),
            job_body("COMPLETED", progress=100, creditCost=4, result=None),
        ]
    )
    client, _ = unit_client(lambda request: httpx.Response(200, json=next(bodies)))
    with pytest.raises(JobFailed, match="expired after APIFrame's 24 h retention; the video is lost"):
        raise_for_job(await client.get_job(a_job()))
    with pytest.raises(JobFailed, match="without result.videoUrl"):
        raise_for_job(await client.get_job(a_job()))
    await client.aclose()


# --- unit: errors and retries -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error", "fragment", "calls"),
    [
        (
            400,
            {"error": "Validation failed", "details": {"soraParams.duration": ["Expected integer"]}},
            InvalidRequest,
            "soraParams.duration: Expected integer",
            1,
        ),
        (
            400,
            {"error": "Validation failed", "details": {"model": ["Invalid enum value"]}},
            ModelUnavailable,
            "model 'sora-2' is not available on APIFrame",
            1,
        ),
        (404, {"error": "Model not found: sora-2"}, ModelUnavailable, "Model not found: sora-2", 1),
        (
            400,
            {"error": "Invalid request for model sora-2", "details": {"prompt": ["Required"]}},
            InvalidRequest,
            "prompt: Required",
            1,
        ),
        (401, {"error": "Invalid API key"}, AuthError, "Invalid API key", 1),
        (403, "<html><body>Forbidden</body></html>", AuthError, "Forbidden", 1),
        (
            402,
            {"error": "Insufficient credits", "creditsRequired": 12, "creditsAvailable": 3},
            InsufficientCredits,
            "Insufficient credits",
            1,
        ),
        (409, {"error": "Idempotency key conflict"}, IdempotencyConflict, "different request body", 1),
        (502, "<html>Bad gateway</html>", ProviderUnavailable, "Bad gateway", 4),
    ],
)
async def test_submit_error_mapping(status, body, error, fragment, calls):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        headers = {"x-request-id": "req_9"}
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers={**headers, "content-type": "text/html"})
        return httpx.Response(status, json=body, headers=headers)

    client, sleep = unit_client(handler)
    with pytest.raises(error, match=fragment) as caught:
        await client.submit(plan_for())
    assert type(caught.value) is error  # not merely a subclass: a bad prompt is no missing model
    assert len(seen) == calls and len(sleep.delays) == calls - 1
    assert caught.value.request_id == "req_9" and caught.value.provider == "apiframe"
    if error is ModelUnavailable:
        assert caught.value.model == "sora-2"
    if error is InsufficientCredits:
        assert (caught.value.credits_required, caught.value.credits_available) == (12, 3)
    if error is ProviderUnavailable:
        assert seen[0].headers["idempotency-key"] in str(caught.value)  # to resume without paying twice
    await client.aclose()


async def test_unknown_job_is_an_invalid_request_not_a_missing_model():
    client, _ = unit_client(lambda request: httpx.Response(404, json={"error": "Job not found"}))
    with pytest.raises(InvalidRequest, match="Job not found") as caught:
        await client.get_job(a_job())
    assert not isinstance(caught.value, ModelUnavailable)
    await client.aclose()


async def test_ambiguous_submit_failures_are_resent_only_under_the_same_key():
    """A timeout or 5xx after the body was sent may have created the job: APIFrame dedupes by key."""
    answers = iter(["timeout", "500", "202"])
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        answer = next(answers)
        if answer == "timeout":
            raise httpx.ReadTimeout("no answer", request=request)
        if answer == "500":
            return httpx.Response(500, json={"error": "Internal server error"})
        return httpx.Response(202, json={"jobId": "job-1", "status": "QUEUED"})

    client, sleep = unit_client(handler)
    job = await client.submit(plan_for())
    assert job.job_id == "job-1"
    assert len(keys) == 3 and len(set(keys)) == 1
    assert len(sleep.delays) == 2
    await client.aclose()


async def test_retry_after_is_honoured_and_a_too_long_wait_is_not():
    answers = iter(
        [
            httpx.Response(429, json={"error": "Too many requests"}, headers={"Retry-After": "7"}),
            httpx.Response(202, json={"jobId": "job-1", "status": "QUEUED"}),
            httpx.Response(429, json={"error": "Too many requests"}, headers={"Retry-After": "3600"}),
        ]
    )
    client, sleep = unit_client(lambda request: next(answers))
    await client.submit(plan_for())
    assert sleep.delays == [7.0]
    with pytest.raises(RateLimited) as caught:
        await client.submit(plan_for())
    assert caught.value.retry_after == 3600.0 and sleep.delays == [7.0]
    await client.aclose()


async def test_poll_retries_5xx_then_reads_the_job():
    answers = iter(
        [
            httpx.Response(503, text="upstream down"),
            httpx.Response(200, json=job_body("PROCESSING", progress=50)),
        ]
    )
    client, sleep = unit_client(lambda request: next(answers))
    job = await client.get_job(a_job())
    assert job.progress == 0.5 and len(sleep.delays) == 1
    await client.aclose()


async def test_cdn_download_carries_no_key():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"\x00" * 3000, headers={"content-type": "video/mp4"})

    client, _ = unit_client(handler)
    job = a_job(provider_data={"video_url": "https://cdn2.apiframe.test/videos/job-1.mp4"})
    async with client.stream_video(job) as chunks:
        data = b"".join([chunk async for chunk in chunks])
    assert len(data) == 3000
    assert seen[0].url.host == "cdn2.apiframe.test" and "x-api-key" not in seen[0].headers
    await client.aclose()


# --- block ------------------------------------------------------------------------------------------


def test_block_validates_and_hides_the_key():
    block = APIFrameCredentials(api_key=UNIT_KEY, base_url="https://gateway.example/apiframe/")
    assert block.base_url == "https://gateway.example/apiframe"
    assert UNIT_KEY not in repr(block) and UNIT_KEY not in block.model_dump_json()
    assert block.account_id().startswith("apiframe-") and UNIT_KEY not in block.account_id()
    assert APIFrameCredentials(api_key=UNIT_KEY, account_label="team-a").account_id() == "team-a"
    assert APIFrameCredentials.get_block_type_slug() == "videogen-apiframe-credentials"
    assert all(field.description.endswith(".") for field in APIFrameCredentials.model_fields.values())
    assert 'APIFrameCredentials.load("BLOCK_NAME")' in APIFrameCredentials.__doc__
    with pytest.raises(ValueError, match="unknown field.*bse_url") as caught:
        APIFrameCredentials(api_key=UNIT_KEY, bse_url="https://x")
    assert UNIT_KEY not in str(caught.value)
    with pytest.raises(ValueError, match="must be an http"):
        APIFrameCredentials(api_key=UNIT_KEY, base_url="api.apiframe.ai")
    with pytest.raises(ValueError, match="api_key is blank"):
        APIFrameCredentials(api_key=" ")
    assert isinstance(block.get_client(), APIFrameVideoProvider)
    assert APIFrameCredentials.model_validate(block.model_dump()).base_url == block.base_url  # Prefect round trip


# --- end to end against the emulator over loopback HTTP ----------------------------------------------


@pytest.fixture(scope="module")
def server():
    with EmulatorServer(APIFrameEmulator(latency_seconds=0.05)) as running:
        yield running


@pytest.fixture
def emulator(server) -> APIFrameEmulator:
    server.emulator.reset()
    return server.emulator


@pytest.fixture
def sleep() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def client(server, emulator, sleep):
    async with APIFrameVideoProvider(
        EMULATOR_API_KEY, base_url=server.base_url, poll_interval_seconds=0.01, sleep=sleep
    ) as provider:
        yield provider


def png(tmp_path: Path) -> str:
    path = tmp_path / "first-frame.png"
    Image.new("RGB", (128, 72), (200, 40, 40)).save(path)
    return str(path)


@pytest.mark.parametrize(
    ("fields", "credits", "size"),
    [
        ({"duration": 4}, 4, (1280, 720)),
        ({"model": "sora-2-pro", "resolution": "high", "aspect_ratio": "9:16", "duration": 4}, 20, (1080, 1920)),
    ],
)
async def test_text_to_video_end_to_end(client, emulator, tmp_path, fields, credits, size):
    storage = VideoStorage(str(tmp_path / "videos"))
    result = await generate(client, VideoRequest(prompt="a red fox in snow", **fields), storage)

    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height) == size and abs(probe.duration_seconds - fields["duration"]) < 0.5
    sidecar = json.loads(Path(result.sidecar_uri).read_text())
    assert sidecar["reported_cost"] == {"amount": credits, "unit": "credits"}
    assert emulator.charges == {result.job_id: credits}
    assert emulator.counters["jobs_created"] == 1 and emulator.counters["downloads"] == 1
    assert emulator.counters["polls"] >= 1 and emulator.counters["cdn_key_rejections"] == 0


async def test_image_to_video_uploads_a_local_image(client, emulator, server, tmp_path):
    request = VideoRequest(prompt="the fox starts running", duration=8, aspect_ratio="9:16", image=png(tmp_path))
    result = await generate(client, request, VideoStorage(str(tmp_path / "videos")))

    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height) == (720, 1280) and abs(probe.duration_seconds - 8) < 0.5
    start_image = emulator.jobs[result.job_id]["input"]["soraParams"]["start_image"]
    assert start_image.startswith(f"{server.base_url}/cdn/uploads/")
    assert emulator.counters["uploads"] == 1 and emulator.charges == {result.job_id: 8}


async def test_image_url_is_passed_straight_through(client, emulator, tmp_path):
    url = "https://images.example/fox.png"
    result = await generate(client, VideoRequest(prompt="a fox", image=url), VideoStorage(str(tmp_path)))
    assert emulator.jobs[result.job_id]["input"]["soraParams"]["start_image"] == url
    assert emulator.counters["uploads"] == 0


async def test_rate_limited_submit_waits_as_told_and_creates_one_job(client, emulator, sleep, tmp_path):
    emulator.faults.add("create", Fault(status=429, headers={"Retry-After": "3"}))
    result = await generate(client, VideoRequest(prompt="a fox"), VideoStorage(str(tmp_path)))
    assert sleep.delays == [3.0]
    assert emulator.counters["create_requests"] == 2 and emulator.counters["jobs_created"] == 1
    assert list(emulator.charges) == [result.job_id]


async def test_poll_5xx_is_retried(client, emulator, sleep, tmp_path):
    emulator.faults.add("poll", Fault(status=503), times=2)
    result = await generate(client, VideoRequest(prompt="a fox"), VideoStorage(str(tmp_path)))
    assert abs(probe_video(result.video_uri).duration_seconds - 4) < 0.5
    assert len(sleep.delays) == 2 and emulator.counters["jobs_created"] == 1


async def test_ambiguous_5xx_after_create_replays_the_original_job(client, emulator, sleep):
    emulator.faults.add("create", Fault(status=500, after_create=True))
    job = await client.submit(plan_for())
    assert emulator.counters["jobs_created"] == 1 and emulator.counters["idempotent_replays"] == 1
    assert list(emulator.jobs) == [job.job_id] and list(emulator.charges) == [job.job_id]
    assert len(sleep.delays) == 1


async def test_same_key_same_body_replays_and_different_body_conflicts(client, emulator):
    first = await client.submit(plan_for(), idempotency_key="order-42")
    again = await client.submit(plan_for(), idempotency_key="order-42")
    assert again.job_id == first.job_id
    with pytest.raises(IdempotencyConflict) as caught:
        await client.submit(plan_for(duration=8), idempotency_key="order-42")
    assert caught.value.status_code == 409
    assert emulator.counters["jobs_created"] == 1 and len(emulator.charges) == 1


async def test_dropped_download_is_resumed(client, emulator, tmp_path):
    storage = VideoStorage(str(tmp_path / "videos"))
    plan = plan_for()
    job = await wait_for_job(client, await client.submit(plan), timeout=10)
    emulator.faults.add("download", Fault(drop_after_bytes=2000))
    result = await store_video(client, plan, job, storage)  # the drop is resumed with Range (test_downloads.py)
    assert abs(probe_video(result.video_uri).duration_seconds - 4) < 0.5
    assert emulator.counters["downloads"] == 2 and emulator.counters["jobs_created"] == 1


@pytest.mark.parametrize(("stage", "charged", "credits"), [("output", True, 4), ("prompt", False, 0)])
async def test_content_policy_rejection_is_typed_and_not_resent(client, emulator, tmp_path, stage, charged, credits):
    emulator.faults.add("create", Fault(reject=stage))
    with pytest.raises(ContentRejected, match="content policy violation") as caught:
        await generate(client, VideoRequest(prompt="a fox"), VideoStorage(str(tmp_path)))
    # APIFrame's error text does not say what was flagged: the stage stays unknown; creditCost says the charge.
    assert (caught.value.stage, caught.value.charged) == (None, charged)
    assert emulator.counters["create_requests"] == 1 and emulator.counters["jobs_created"] == 1
    assert list(emulator.charges.values()) == [credits]
    assert emulator.counters["downloads"] == 0


async def test_create_answer_already_failed(client, emulator, tmp_path):
    emulator.faults.add("create", Fault(fail_on_create=True))
    with pytest.raises(JobFailed, match="generation failed") as caught:
        await generate(client, VideoRequest(prompt="a fox"), VideoStorage(str(tmp_path)))
    assert not isinstance(caught.value, ContentRejected) and caught.value.charged is False
    assert emulator.counters["jobs_created"] == 1 and emulator.counters["polls"] == 1


async def test_retired_model_is_unavailable_before_any_job(client, emulator, tmp_path):
    emulator.retired_models.add("sora-2")
    with pytest.raises(ModelUnavailable, match="apiframe: model 'sora-2' is not available") as caught:
        await generate(client, VideoRequest(prompt="a fox"), VideoStorage(str(tmp_path)))
    assert (caught.value.provider, caught.value.model, caught.value.status_code) == ("apiframe", "sora-2", 404)
    assert emulator.counters["jobs_created"] == 0 and emulator.counters["create_requests"] == 1


async def test_bad_key_is_an_auth_error_without_retry(server, emulator, sleep):
    async with APIFrameVideoProvider("afk_wrong_key_0000000000", base_url=server.base_url, sleep=sleep) as wrong:
        with pytest.raises(AuthError, match="Invalid API key") as caught:
            await wrong.submit(plan_for())
    assert caught.value.status_code == 401 and caught.value.request_id.startswith("req_")
    assert emulator.counters["auth_failures"] == 1 and sleep.delays == [] and emulator.counters["jobs_created"] == 0


async def test_insufficient_credits_creates_nothing(client, emulator, sleep):
    emulator.credits_available = 3
    with pytest.raises(InsufficientCredits) as caught:
        await client.submit(plan_for())
    assert (caught.value.credits_required, caught.value.credits_available) == (4, 3)
    assert emulator.counters["create_requests"] == 1 and emulator.counters["jobs_created"] == 0 and sleep.delays == []


async def test_unknown_provider_option_is_refused_before_any_call(client, emulator):
    # Sora declares no extras: the catalog refuses the name before APIFrame would ("Unrecognized key").
    with pytest.raises(InvalidVideoRequest, match="provider_options='fps'.*declares no extras"):
        await client.submit(plan_for(provider_options={"fps": 30}))
    assert emulator.counters["create_requests"] == 0


async def test_expired_result_is_a_clear_failure(client, emulator):
    job = await wait_for_job(client, await client.submit(plan_for()), timeout=10)
    emulator.expire(job.job_id)
    with pytest.raises(JobFailed, match="expired") as caught:
        async with client.stream_video(job):  # the old URL: the CDN answers 404, the job says expired
            pass
    assert caught.value.code == "expired"


VALID = {"model": "sora-2", "prompt": "a fox", "soraParams": {"duration": 4}}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({**VALID, "soraParams": {"duration": "4"}}, "soraParams.duration"),
        ({**VALID, "soraParams": {"duration": 4.0}}, "soraParams.duration"),
        ({**VALID, "soraParams": {"duration": 5}}, "soraParams.duration"),
        ({**VALID, "soraParams": {"aspect_ratio": "1:1"}}, "soraParams.aspect_ratio"),
        ({**VALID, "soraParams": {"resolution": "1080p"}}, "soraParams.resolution"),
        ({**VALID, "soraParams": {"start_image": "file:///fox.png"}}, "soraParams.start_image"),
        ({**VALID, "soraParams": {"seconds": 4}}, "soraParams.seconds"),
        ({**VALID, "seconds": "4"}, "seconds"),
        ({"model": "sora-2", "soraParams": {}}, "prompt"),
        ({**VALID, "prompt": "x" * 4001}, "prompt"),
        ({**VALID, "prompt": 42}, "prompt"),
    ],
)
async def test_emulator_rejects_what_apiframe_rejects(server, emulator, body, path):
    async with httpx.AsyncClient(base_url=server.base_url, headers={"X-API-Key": EMULATOR_API_KEY}) as http:
        response = await http.post("/v2/videos/generate", json=body)
    assert response.status_code == 400, response.text
    assert path in response.json()["details"] and response.headers["x-request-id"]
    assert emulator.counters["jobs_created"] == 0


async def test_emulator_auth_cdn_and_listing(server, emulator, client):
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        missing = await http.get("/v2/jobs")
        bearer = await http.get("/v2/jobs", headers={"Authorization": f"Bearer {EMULATOR_API_KEY}"})
        assert (missing.status_code, missing.json()) == (401, {"error": "Missing API key"})
        assert bearer.status_code == 401
        first = await wait_for_job(client, await client.submit(plan_for()), timeout=10)
        await client.submit(plan_for(duration=8))
        keyed = await http.get(first.provider_data["video_url"], headers={"X-API-Key": EMULATOR_API_KEY})
        assert keyed.status_code == 403 and emulator.counters["cdn_key_rejections"] == 1
        auth = {"X-API-Key": EMULATOR_API_KEY}
        page = (await http.get("/v2/jobs", params={"limit": 1}, headers=auth)).json()
        assert page["hasMore"] is True and len(page["jobs"]) == 1
        rest = (await http.get("/v2/jobs", params={"limit": 1, "cursor": page["nextCursor"]}, headers=auth)).json()
        assert rest["hasMore"] is False and {page["jobs"][0]["id"], rest["jobs"][0]["id"]} == set(emulator.jobs)
        done = (await http.get("/v2/jobs", params={"status": "COMPLETED"}, headers=auth)).json()
        assert [j["id"] for j in done["jobs"]] == [first.job_id]
        assert (await http.get("/v2/jobs", params={"limit": 0}, headers=auth)).status_code == 400


# --- Prefect flow and secrets -------------------------------------------------------------------------


async def test_generate_video_flow_with_the_block(prefect_server, server, emulator, tmp_path):
    from prefect_videogen.flows.generate import generate_video

    block = APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=server.base_url, poll_interval_seconds=0.01)
    result = await generate_video(
        VideoRequest(prompt="a fox at dawn", duration=4, aspect_ratio="9:16"),
        provider=block,
        storage=LocalVideoStorage(base_path=str(tmp_path)),
    )
    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height) == (720, 1280) and abs(probe.duration_seconds - 4) < 0.5
    assert result.provider == "apiframe" and emulator.counters["jobs_created"] == 1


async def test_the_key_never_leaks(client, server, emulator, tmp_path, debug_logs):
    emulator.faults.add("create", Fault(status=429, headers={"Retry-After": "0"}))
    result = await generate(client, VideoRequest(prompt="a fox"), VideoStorage(str(tmp_path)))
    errors = []
    emulator.retired_models.add("sora-2")
    for provider_key in (EMULATOR_API_KEY, "afk_wrong_key_0000000000"):
        async with APIFrameVideoProvider(provider_key, base_url=server.base_url) as other:
            with pytest.raises(Exception) as caught:
                await other.submit(plan_for())
            errors.append(caught.value)
    block = APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=server.base_url)

    texts = [
        debug_logs.text,
        *(f"{record.getMessage()} {record.args!r}" for record in debug_logs.records),
        *(f"{error} {error!r}" for error in errors),
        result.model_dump_json(),
        Path(result.sidecar_uri).read_text(),
        repr(block),
        str(block),
        block.model_dump_json(),
        block.account_id(),
    ]
    assert any("HTTP Request" in record.getMessage() for record in debug_logs.records)  # httpx did log
    for secret in (EMULATOR_API_KEY, "afk_wrong_key_0000000000"):
        assert not [text for text in texts if secret in text]


async def test_a_job_that_starts_while_the_active_jobs_are_listed_is_still_listed():
    """QUEUED and PROCESSING listed side by side missed a job that started between their passes over
    it (10,000 waits: 787 running jobs a sweep then read alone). The emulator's time here moves half a
    second per listing page, so all six jobs start (at 3 s) while their pages are being read."""
    emulator = APIFrameEmulator(latency_seconds=10)
    emulator.clock = lambda: 1000.0 + 0.5 * emulator.counters.get("listings", 0)
    with EmulatorServer(emulator) as server:
        async with APIFrameVideoProvider(EMULATOR_API_KEY, base_url=server.base_url) as provider:
            jobs = [await provider.submit(plan_for()) for _ in range(6)]
            listing = await provider.list_active_jobs(page_size=1)
    assert {job.job_id for job in jobs} == set(listing.jobs) and listing.complete
    assert emulator.clock() >= 1000.0 + 0.3 * 10  # they started (at 30 % of their time) during the listing
