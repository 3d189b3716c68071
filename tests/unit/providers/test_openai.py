"""OpenAI Videos: the adapter on httpx.MockTransport, then end to end over loopback against the emulator."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import httpx
import pytest
from PIL import Image

from prefect_videogen.blocks import LocalVideoStorage
from prefect_videogen.blocks.openai import OpenAICredentials
from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import (
    AuthError,
    ContentRejected,
    InsufficientCredits,
    InvalidRequest,
    InvalidVideoRequest,
    JobFailed,
    ModelUnavailable,
    ProviderUnavailable,
)
from prefect_videogen.media import probe_video
from prefect_videogen.models import JobStatus, Rejection, VideoJob, VideoRequest
from prefect_videogen.pipeline import generate, store_video
from prefect_videogen.providers.base import raise_for_job
from prefect_videogen.providers.openai import STATUS_TABLE, OpenAIVideoProvider, classify_rejection
from prefect_videogen.providers.polling import wait_for_job
from prefect_videogen.providers.retry import RetryPolicy
from prefect_videogen.storage import VideoStorage
from prefect_videogen.testing.openai_emulator import OpenAIEmulator
from prefect_videogen.testing.server import EmulatorServer, Fault

from fakes import SleepRecorder

KEY = "sk-test-0123456789abcdefSECRET"
GATEWAY = "https://gateway.example/v1"


def plan_for(**fields):
    return load_catalog().plan("openai", VideoRequest(prompt=fields.pop("prompt", "a red fox in snow"), **fields))


def video(status="queued", progress=0, error=None, **extra):
    return {
        "id": "video_123",
        "object": "video",
        "model": "sora-2",
        "status": status,
        "progress": progress,
        "created_at": 1,
        "completed_at": None,
        "expires_at": None,
        "prompt": "p",
        "size": "720x1280",
        "seconds": "4",
        "error": error,
        **extra,
    }


def mock_client(handler, *, base_url=GATEWAY, sleep=None, **kwargs) -> tuple[OpenAIVideoProvider, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = OpenAIVideoProvider(
        KEY, base_url=base_url, transport=httpx.MockTransport(record), sleep=sleep or SleepRecorder(), **kwargs
    )
    return client, seen


def png(path: Path, width: int, height: int) -> str:
    Image.new("RGB", (width, height), (200, 80, 40)).save(path)
    return str(path)


# -- unit: the adapter on MockTransport --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "progress"),
    [
        ("queued", JobStatus.QUEUED, 0.0),
        ("in_progress", JobStatus.RUNNING, 0.42),
        ("completed", JobStatus.SUCCEEDED, 1.0),
        ("failed", JobStatus.FAILED, 1.0),
        ("rendering", JobStatus.RUNNING, 0.42),  # unknown word: still running, never guessed done or failed
        ("COMPLETED", JobStatus.SUCCEEDED, 1.0),
    ],
)
async def test_status_table_and_progress(raw, status, progress):
    pct = {0.0: 0, 0.42: 42, 1.0: 100}[progress]
    client, _ = mock_client(
        lambda r: httpx.Response(200, json=video(raw, pct, quality="standard"), headers={"openai-poll-after-ms": "250"})
    )
    job = await client.get_job(
        VideoJob(provider="openai", job_id="video_123", model="sora-2", status="queued", raw_status="queued")
    )
    assert (job.status, job.raw_status, job.progress) == (status, raw, progress)
    assert job.poll_after_seconds == 0.25 and job.model == "sora-2"
    assert set(STATUS_TABLE) == {"queued", "in_progress", "completed", "failed"}


async def test_submit_sends_documented_json_types_and_headers():
    client, seen = mock_client(lambda r: httpx.Response(200, json=video()), organization="org-1", project="proj_2")
    job = await client.submit(
        plan_for(
            model="sora-2-pro",
            duration=12,
            aspect_ratio="16:9",
            resolution="high",
            provider_options={"remix_hint": "x"},
        )
    )
    body = json.loads(seen[0].content)
    assert body == {
        "prompt": "a red fox in snow",
        "model": "sora-2-pro",
        "seconds": "12",
        "size": "1792x1024",
        "remix_hint": "x",
    }
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert (seen[0].headers["openai-organization"], seen[0].headers["openai-project"]) == ("org-1", "proj_2")
    assert str(seen[0].url) == f"{GATEWAY}/videos"
    assert job.job_id == "video_123" and job.model == "sora-2-pro" and job.status is JobStatus.QUEUED


async def test_provider_options_cannot_override_managed_fields():
    client, seen = mock_client(lambda r: httpx.Response(200, json=video()))
    with pytest.raises(InvalidVideoRequest, match="provider_options"):
        await client.submit(plan_for(provider_options={"seconds": 4}))
    assert seen == []


async def test_local_image_is_uploaded_as_multipart_file(tmp_path):
    client, seen = mock_client(lambda r: httpx.Response(200, json=video()))
    await client.submit(plan_for(aspect_ratio="9:16", image=png(tmp_path / "first.png", 720, 1280)))
    request = seen[0]
    assert request.headers["content-type"].startswith("multipart/form-data")
    content = request.content
    assert b'name="input_reference"; filename="first.png"' in content and b"Content-Type: image/png" in content
    assert b'name="seconds"\r\n\r\n4\r\n' in content and b'name="size"\r\n\r\n720x1280\r\n' in content


async def test_image_url_goes_as_json_image_url():
    client, seen = mock_client(lambda r: httpx.Response(200, json=video()))
    await client.submit(plan_for(image="https://cdn.example/first.png"))
    assert json.loads(seen[0].content)["input_reference"] == {"image_url": "https://cdn.example/first.png"}


@pytest.mark.parametrize(
    ("size", "name", "match"),
    [((640, 480), "f.png", "exactly 1280x720"), (None, "missing.png", "existing local image")],
)
async def test_bad_local_image_fails_before_any_request(tmp_path, size, name, match):
    client, seen = mock_client(lambda r: httpx.Response(200, json=video()))
    image = png(tmp_path / name, *size) if size else str(tmp_path / name)
    with pytest.raises(InvalidVideoRequest, match=match):
        await client.submit(plan_for(image=image))
    assert seen == []


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (
            401,
            {
                "error": {
                    "message": "Incorrect API key provided: sk-***cret.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            AuthError,
            "Incorrect API key",
        ),
        (
            404,
            {
                "error": {
                    "message": "The model `sora-2` does not exist or you do not have access to it.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "model_not_found",
                }
            },
            ModelUnavailable,
            r"model .sora-2. \(sora-2\) is not served at gateway\.example",
        ),
        (
            400,
            {
                "error": {
                    "message": "Invalid value: 'sora-2'.",
                    "type": "invalid_request_error",
                    "param": "model",
                    "code": "invalid_value",
                }
            },
            ModelUnavailable,
            "not served",
        ),
        (
            429,
            {
                "error": {
                    "message": "You exceeded your current quota, please check your plan and billing details.",
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            },
            InsufficientCredits,
            "exceeded your current quota",
        ),
        (
            400,
            {
                "error": {
                    "message": "Invalid type for 'seconds': expected one of '4', '8', or '12', but got an "
                    "integer instead.",
                    "type": "invalid_request_error",
                    "param": "seconds",
                    "code": "invalid_type",
                }
            },
            InvalidRequest,
            "Invalid type for 'seconds'",
        ),
        (400, "<html><body>Bad Request</body></html>", InvalidRequest, "Bad Request"),
        (502, "<html>Bad Gateway</html>", ProviderUnavailable, "Bad Gateway"),
    ],
)
async def test_submit_error_bodies_map_to_typed_errors_and_are_sent_once(status, body, error, text):
    def answer(request):
        kwargs = {"json": body} if isinstance(body, dict) else {"text": body}
        return httpx.Response(status, headers={"x-request-id": "req_9"}, **kwargs)

    client, seen = mock_client(answer)
    with pytest.raises(error, match=text) as caught:
        await client.submit(plan_for())
    assert len(seen) == 1  # permanent errors are not retried; a paid 5xx is never re-sent
    assert caught.value.request_id == "req_9" and caught.value.status_code == status
    if isinstance(caught.value, ModelUnavailable):
        assert (caught.value.provider, caught.value.model) == ("openai", "sora-2")
    if isinstance(caught.value, ProviderUnavailable):
        assert caught.value.maybe_created and not caught.value.retryable


async def test_read_timeout_after_sending_a_paid_submit_is_not_resent():
    def answer(request):
        raise httpx.ReadTimeout("no answer", request=request)

    client, seen = mock_client(answer)
    with pytest.raises(ProviderUnavailable, match="not re-sent") as caught:
        await client.submit(plan_for())
    assert caught.value.maybe_created and len(seen) == 1


async def test_create_answer_without_a_video_object_may_have_created_a_job():
    client, seen = mock_client(lambda r: httpx.Response(200, text="<html>proxy login</html>"))
    with pytest.raises(ProviderUnavailable) as caught:
        await client.submit(plan_for())
    assert caught.value.maybe_created and len(seen) == 1


async def test_retry_hints_are_honoured_on_submit_and_poll():
    answers = iter(
        [
            httpx.Response(
                429,
                json={
                    "error": {"message": "slow down", "type": "requests", "param": None, "code": "rate_limit_exceeded"}
                },
                headers={"retry-after-ms": "250"},
            ),
            httpx.Response(429, headers={"retry-after": "2"}, text="busy"),
            httpx.Response(200, json=video()),
            httpx.Response(503, text="upstream connect error"),
            httpx.Response(200, json=video("completed", 100)),
        ]
    )
    sleep = SleepRecorder()
    client, seen = mock_client(lambda r: next(answers), sleep=sleep, policy=RetryPolicy(jitter=0))
    job = await client.submit(plan_for())
    done = await client.get_job(job)
    assert done.status is JobStatus.SUCCEEDED
    assert sleep.delays == [0.25, 2.0, 0.5]  # server hints, then the policy's own first backoff
    assert [r.method for r in seen] == ["POST", "POST", "POST", "GET", "GET"]


async def test_retry_hint_beyond_the_cap_gives_up_instead_of_stalling():
    client, seen = mock_client(lambda r: httpx.Response(429, headers={"retry-after": "3600"}, text="later"))
    with pytest.raises(Exception, match="later") as caught:
        await client.submit(plan_for())
    assert caught.value.retry_after == 3600 and len(seen) == 1


@pytest.mark.parametrize(
    ("code", "message", "rejection"),
    [
        ("sentinel_block", "Your prompt was blocked by our safety system.", {"stage": "prompt", "charged": False}),
        ("sentinel_block", "Your input image was blocked.", {"stage": "image", "charged": False}),
        ("sentinel_block", "Request blocked.", {"stage": "prompt", "charged": False}),
        ("moderation_blocked", "The generated video was blocked.", {"stage": "output", "charged": True}),
        ("video_generation_failed", "Video generation failed.", None),
        (None, None, None),
    ],
)
async def test_failed_video_classification(code, message, rejection):
    assert classify_rejection(code, message) == (Rejection(**rejection) if rejection else None)
    client, _ = mock_client(
        lambda r: httpx.Response(
            200, json=video("failed", 0, {"code": code, "message": message}) if code else video("failed", 0)
        )
    )
    job = await client.submit(plan_for())
    assert job.status is JobStatus.FAILED and job.error_code == code
    expected = ContentRejected if rejection else JobFailed
    with pytest.raises(expected) as caught:
        raise_for_job(job)
    assert type(caught.value) is expected
    if rejection:
        assert (caught.value.stage, caught.value.charged) == (rejection["stage"], rejection["charged"])


async def test_retired_model_fails_fast_on_openai_itself_but_not_on_a_gateway():
    plan = plan_for()
    assert plan.spec.retired_on and plan.spec.retired_on <= date.today()
    official, seen = mock_client(lambda r: httpx.Response(200, json=video()), base_url="https://api.openai.com/v1")
    with pytest.raises(ModelUnavailable, match="retired on 2026-09-24") as caught:
        await official.submit(plan)
    assert seen == [] and (caught.value.provider, caught.value.model) == ("openai", "sora-2")
    gateway, seen = mock_client(lambda r: httpx.Response(200, json=video()))
    assert (await gateway.submit(plan)).job_id == "video_123" and len(seen) == 1


# -- the credentials block ---------------------------------------------------------------------------


def test_block_validates_its_fields():
    with pytest.raises(ValueError, match="unknown field.*api_kye"):
        OpenAICredentials(api_kye=KEY)
    with pytest.raises(ValueError, match="must be an http"):
        OpenAICredentials(api_key=KEY, base_url="api.openai.com/v1")
    with pytest.raises(ValueError, match="blank"):
        OpenAICredentials(api_key="  ")


def test_block_account_id_is_non_secret_and_client_points_at_base_url():
    assert OpenAICredentials(api_key=KEY, account_label="team-a").account_id() == "team-a"
    assert OpenAICredentials(api_key=KEY, organization="org-1", project="proj_2").account_id() == "org-1/proj_2"
    hashed = OpenAICredentials(api_key=KEY).account_id()
    assert hashed.startswith("key-sha256-") and KEY not in hashed and "SECRET" not in hashed
    client = OpenAICredentials(api_key=KEY, base_url=GATEWAY + "/").get_client()
    assert isinstance(client, OpenAIVideoProvider) and client.base_url == GATEWAY and not client.is_official_api


# -- end to end: loopback HTTP against the emulator --------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with EmulatorServer(OpenAIEmulator(api_key=KEY, latency_seconds=0.05, poll_after_ms=10)) as running:
        yield running


@pytest.fixture
def emulator(server):
    server.emulator.reset()
    server.emulator.retired_models.clear()
    server.emulator.latency_seconds = 0.05
    return server.emulator


@pytest.fixture
def api(server):
    return f"{server.base_url}/v1"


@pytest.fixture
def sleep():
    return SleepRecorder()


@pytest.fixture
async def client(api, sleep, emulator):
    async with OpenAIVideoProvider(KEY, base_url=api, sleep=sleep) as provider:
        yield provider


@pytest.fixture
def storage(tmp_path):
    return VideoStorage(str(tmp_path / "videos"))


def stored_files(tmp_path) -> list[Path]:
    return sorted(p for p in (tmp_path / "videos").rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("fields", "size"),
    [
        ({"duration": 4, "aspect_ratio": "9:16"}, (720, 1280)),
        ({"model": "sora-2-pro", "duration": 8, "aspect_ratio": "16:9", "resolution": "high"}, (1792, 1024)),
    ],
)
async def test_text_to_video_end_to_end(client, emulator, storage, fields, size):
    request = VideoRequest(prompt="a red fox running through fresh snow", **fields)
    result = await generate(client, request, storage)
    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height) == size and probe.duration_seconds == pytest.approx(fields["duration"])
    assert result.provider == "openai" and result.model == (fields.get("model") or "sora-2")
    assert emulator.counters["jobs_created"] == 1 and emulator.counters["downloads"] == 1
    price = 0.5 if size == (1792, 1024) else 0.1
    assert emulator.charges == {result.job_id: pytest.approx(price * fields["duration"])}


async def test_image_to_video_uploads_the_local_file(client, emulator, storage, tmp_path):
    image = png(tmp_path / "first.png", 1280, 720)
    result = await generate(client, VideoRequest(prompt="the fox turns", duration=4, image=image), storage)
    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height, probe.duration_seconds) == (1280, 720, 4.0)
    assert emulator.counters["uploads"] == 1 and emulator.counters["jobs_created"] == 1


async def test_image_to_video_from_a_url(client, emulator, storage):
    request = VideoRequest(prompt="the fox turns", duration=4, aspect_ratio="9:16", image="https://cdn.example/f.png")
    result = await generate(client, request, storage)
    assert (probe_video(result.video_uri).width, emulator.counters["uploads"]) == (720, 0)


async def test_rate_limited_submit_is_retried_without_a_duplicate_job(client, emulator, storage, sleep):
    emulator.faults.add("create", Fault(status=429, headers={"retry-after-ms": "20"}), times=2)
    result = await generate(client, VideoRequest(prompt="a fox"), storage)
    assert sleep.delays[:2] == [0.02, 0.02]
    assert emulator.counters["create_requests"] == 3 and emulator.counters["jobs_created"] == 1
    assert list(emulator.charges) == [result.job_id]


async def test_ambiguous_5xx_after_create_is_not_resent(client, emulator, storage, tmp_path):
    emulator.faults.add("create", Fault(status=500, after_create=True))
    with pytest.raises(ProviderUnavailable) as caught:
        await generate(client, VideoRequest(prompt="a fox"), storage)
    assert caught.value.maybe_created and not caught.value.retryable
    assert emulator.counters["create_requests"] == 1 and emulator.counters["jobs_created"] == 1
    assert stored_files(tmp_path) == []


async def test_5xx_on_poll_is_retried(client, emulator, storage, sleep):
    emulator.faults.add("poll", Fault(status=503), times=2)
    result = await generate(client, VideoRequest(prompt="a fox"), storage)
    assert probe_video(result.video_uri).duration_seconds == 4.0
    assert emulator.counters["jobs_created"] == 1 and len(sleep.delays) == 2


async def test_dropped_download_is_resumed(client, emulator, storage, tmp_path):
    emulator.faults.add("download", Fault(drop_after_bytes=2000))
    plan = plan_for(duration=8)
    job = await wait_for_job(client, await client.submit(plan))
    result = await store_video(client, plan, job, storage)  # the drop is resumed with Range (test_downloads.py)
    assert probe_video(result.video_uri).duration_seconds == 8.0
    assert (emulator.counters["downloads"], emulator.counters["jobs_created"]) == (2, 1)


@pytest.mark.parametrize(("stage", "charged"), [("prompt", False), ("image", False), ("output", True)])
async def test_content_policy_rejection(client, emulator, storage, tmp_path, stage, charged):
    emulator.faults.add("create", Fault(reject=stage))
    image = png(tmp_path / "f.png", 1280, 720) if stage == "image" else None
    with pytest.raises(ContentRejected) as caught:
        await generate(client, VideoRequest(prompt="a fox", image=image), storage)
    assert (caught.value.stage, caught.value.charged) == (stage, charged)
    assert caught.value.code == ("moderation_blocked" if stage == "output" else "sentinel_block")
    assert emulator.counters["jobs_created"] == 1 and emulator.counters["downloads"] == 0
    assert bool(emulator.charges) is charged


async def test_create_response_already_failed(client, emulator, storage):
    emulator.faults.add("create", Fault(fail_on_create=True))
    with pytest.raises(JobFailed, match="video_generation_failed") as caught:
        await generate(client, VideoRequest(prompt="a fox"), storage)
    assert type(caught.value) is JobFailed and not caught.value.retryable
    assert emulator.counters["polls"] == 0 and emulator.counters["jobs_created"] == 1


async def test_retired_model_at_a_gateway_is_model_unavailable(client, emulator, storage):
    emulator.retired_models.add("sora-2-pro")
    with pytest.raises(ModelUnavailable, match="sora-2-pro.*does not exist") as caught:
        await generate(client, VideoRequest(prompt="a fox", model="sora-2-pro"), storage)
    assert (caught.value.provider, caught.value.model, caught.value.status_code) == ("openai", "sora-2-pro", 404)
    assert emulator.counters["create_requests"] == 1 and emulator.counters["jobs_created"] == 0


async def test_bad_key_is_auth_error_and_not_retried(api, emulator, storage):
    async with OpenAIVideoProvider("sk-wrong-key-000000000", base_url=api, sleep=SleepRecorder()) as wrong:
        with pytest.raises(AuthError, match="Incorrect API key") as caught:
            await generate(wrong, VideoRequest(prompt="a fox"), storage)
    assert caught.value.status_code == 401 and "sk-wrong-key-000000000" not in str(caught.value)
    assert emulator.counters["create_requests"] == 1 and emulator.counters["jobs_created"] == 0


# -- the emulator is as strict as the documented API -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "param", "message"),
    [
        (
            {"prompt": "a fox", "seconds": 4},
            400,
            "seconds",
            "Invalid type for 'seconds': expected one of '4', '8', or '12', but got an integer instead.",
        ),
        (
            {"prompt": "a fox", "seconds": "5"},
            400,
            "seconds",
            "Invalid value: '5'. Supported values are: '4', '8', and '12'.",
        ),
        ({"seconds": "4"}, 400, "prompt", "Missing required parameter: 'prompt'."),
        ({"prompt": "a fox", "duration": 4}, 400, "duration", "Unknown parameter: 'duration'."),
        (
            {"prompt": "a fox", "size": "1792x1024"},
            400,
            "size",
            "Invalid value: '1792x1024'. Supported values for sora-2 are: '720x1280', '1280x720'.",
        ),
        ({"prompt": "a fox", "model": "sora-9"}, 400, "model", "Invalid value: 'sora-9'."),
        (
            {"prompt": "a fox", "input_reference": "https://cdn.example/f.png"},
            400,
            "input_reference",
            "Invalid 'input_reference'",
        ),
    ],
)
async def test_emulator_rejects_what_the_api_rejects(api, emulator, body, status, param, message):
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        response = await http.post(f"{api}/videos", json=body)
    error = response.json()["error"]
    assert response.status_code == status and error["param"] == param and error["message"].startswith(message)
    assert set(error) == {"message", "type", "param", "code"} and emulator.counters["jobs_created"] == 0


async def test_emulator_checks_uploads_and_auth(api, emulator, tmp_path):
    image = Path(png(tmp_path / "small.png", 640, 360)).read_bytes()
    form = {"prompt": "a fox", "size": "1280x720"}
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        wrong_size = await http.post(
            f"{api}/videos", data=form, files={"input_reference": ("s.png", image, "image/png")}
        )
        as_text = await http.post(
            f"{api}/videos", data=form, files={"input_reference": (None, "https://cdn.example/f.png")}
        )
        gif = await http.post(f"{api}/videos", data=form, files={"input_reference": ("s.gif", image, "image/gif")})
        no_key = await http.post(f"{api}/videos", json={"prompt": "a fox"}, headers={"Authorization": ""})
    assert wrong_size.json()["error"]["message"] == "Inpaint image must match the requested width and height"
    assert as_text.json()["error"]["message"].startswith("Invalid type for 'input_reference': expected a file")
    assert gif.json()["error"]["message"].startswith("Invalid file format for 'input_reference'")
    assert (wrong_size.status_code, as_text.status_code, gif.status_code, no_key.status_code) == (400, 400, 400, 401)
    assert emulator.counters["jobs_created"] == 0


async def test_emulator_lists_and_deletes_only_finished_videos(client, api, emulator):
    emulator.latency_seconds = 60  # the job stays unfinished however slow this machine is
    job = await client.submit(plan_for())
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        early = await http.delete(f"{api}/videos/{job.job_id}")
        listed = (await http.get(f"{api}/videos", params={"limit": 10})).json()
        bad_limit = await http.get(f"{api}/videos", params={"limit": 101})
    assert early.status_code == 400 and bad_limit.status_code == 400
    assert listed["object"] == "list" and [v["id"] for v in listed["data"]] == [job.job_id]
    assert listed["first_id"] == listed["last_id"] == job.job_id and listed["has_more"] is False
    emulator.latency_seconds = 0
    await wait_for_job(client, job)
    assert await client.delete(job) is True
    with pytest.raises(InvalidRequest, match="not found") as caught:
        await client.get_job(job)
    assert caught.value.status_code == 404 and not isinstance(caught.value, ModelUnavailable)


# -- Prefect flow and secrets ------------------------------------------------------------------------


async def test_generate_video_flow_with_the_openai_block(prefect_server, server, emulator, tmp_path):
    from prefect_videogen.flows import generate_video

    creds = OpenAICredentials(api_key=KEY, base_url=f"{server.base_url}/v1")
    request = VideoRequest(prompt="a red fox running through fresh snow", duration=4, aspect_ratio="9:16")
    result = await generate_video(request, provider=creds, storage=LocalVideoStorage(base_path=str(tmp_path)))
    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height, probe.duration_seconds) == (720, 1280, 4.0)
    assert result.provider == "openai" and result.model == "sora-2"
    assert emulator.counters["jobs_created"] == 1


async def test_api_key_never_leaks(api, emulator, storage, tmp_path, debug_logs):
    creds = OpenAICredentials(api_key=KEY, base_url=api)
    texts = [repr(creds), str(creds), repr(creds.get_client()), creds.account_id()]
    async with creds.get_client() as client:
        emulator.faults.add("create", Fault(status=429, headers={"retry-after-ms": "1"}))
        result = await generate(client, VideoRequest(prompt="a fox"), storage)
        # A gateway that echoes the key in an error body: the message is redacted.
        emulator.faults.add(
            "create",
            Fault(
                status=400,
                body={
                    "error": {
                        "message": f"bad request from Bearer {KEY} (key {KEY})",
                        "type": "x",
                        "param": None,
                        "code": None,
                    }
                },
            ),
        )
        with pytest.raises(InvalidRequest) as caught:
            await client.submit(plan_for())
    texts += [str(caught.value), repr(caught.value), caught.value.detail, result.model_dump_json()]
    texts += [p.read_text() for p in stored_files(tmp_path) if p.suffix == ".json"]
    texts += [record.getMessage() for record in debug_logs.records]
    assert len(texts) > 8 and any("HTTP Request" in text for text in texts)  # httpx debug logs were captured
    assert not [text for text in texts if KEY in text or "0123456789abcdefSECRET" in text]
