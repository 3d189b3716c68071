"""Gemini API (Veo): the adapter against httpx.MockTransport, then end to end against the strict emulator."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from prefect_videogen.blocks.gemini import GeminiCredentials
from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import (
    AuthError,
    ContentRejected,
    InvalidRequest,
    InvalidVideoRequest,
    JobFailed,
    ModelUnavailable,
    ProviderError,
    ProviderUnavailable,
)
from prefect_videogen.media import probe_video
from prefect_videogen.models import JobStatus, Rejection, VideoJob, VideoRequest
from prefect_videogen.pipeline import generate, store_video
from prefect_videogen.providers.gemini import GeminiVideoProvider, classify_rejection
from prefect_videogen.providers.polling import wait_for_job
from prefect_videogen.storage.base import VideoStorage
from prefect_videogen.testing.gemini_emulator import EMULATOR_API_KEY, MODELS, GeminiEmulator
from prefect_videogen.testing.server import EmulatorServer, Fault

from fakes import SleepRecorder, SteppingClock

UNIT_KEY = "AIzaSyUnitTest-0123456789abcdefghijklmn"
WRONG_KEY = "AIzaSyWrongKey-0123456789abcdefghijklmn"
API = "https://gemini.api.test/v1beta"
OPERATION = "models/veo-3.0-fast-generate-001/operations/op1"


def plan_for(**fields):
    return load_catalog().plan("gemini", VideoRequest(prompt=fields.pop("prompt", "a red fox in snow"), **fields))


def unit_client(handler, **kwargs) -> tuple[GeminiVideoProvider, SleepRecorder]:
    sleep = SleepRecorder()
    client = GeminiVideoProvider(UNIT_KEY, base_url=API, transport=httpx.MockTransport(handler), sleep=sleep, **kwargs)
    return client, sleep


def a_job(**fields) -> VideoJob:
    return VideoJob(
        provider="gemini",
        job_id=OPERATION,
        model="veo-3.0-fast-generate-001",
        status=JobStatus.RUNNING,
        raw_status="running",
        **fields,
    )


def png(tmp_path: Path, name: str = "first-frame.png", color=(200, 40, 40)) -> str:
    path = tmp_path / name
    Image.new("RGB", (128, 72), color).save(path)
    return str(path)


def done(response: dict) -> dict:
    return {"name": OPERATION, "done": True, "response": {"generateVideoResponse": response}}


# --- unit: request mapping ------------------------------------------------------------------


async def test_submit_sends_the_documented_body_with_the_key_in_a_header_only():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"name": OPERATION, "done": False})

    client, _ = unit_client(handler)
    plan = plan_for(
        model="veo-3.1-generate-preview",
        duration=6,
        aspect_ratio="9:16",
        resolution="1080p",
        negative_prompt="rain",
        seed=42,
        provider_options={"personGeneration": "dont_allow"},
    )
    job = await client.submit(plan)

    (request,) = seen
    assert request.url.path == "/v1beta/models/veo-3.1-generate-preview:predictLongRunning"
    assert request.url.query == b""  # the key never goes in the URL
    assert request.headers["x-goog-api-key"] == UNIT_KEY and "authorization" not in request.headers
    assert json.loads(request.content) == {
        "instances": [{"prompt": "a red fox in snow"}],
        "parameters": {
            "durationSeconds": 6,
            "aspectRatio": "9:16",
            "resolution": "1080p",
            "negativePrompt": "rain",
            "seed": 42,
            "personGeneration": "dont_allow",
        },
    }
    assert (job.job_id, job.status, job.model) == (OPERATION, JobStatus.RUNNING, "veo-3.1-generate-preview")
    await client.aclose()


async def test_images_go_inline_in_the_instance_under_the_wire_names(tmp_path):
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"name": OPERATION})

    client, _ = unit_client(handler)
    first, last = png(tmp_path), png(tmp_path, "last.png", (0, 0, 200))
    await client.submit(plan_for(model="veo-3.1-fast-generate-preview", image=first, end_image=last))
    await client.submit(plan_for(model="veo-3.1-fast-generate-preview", reference_images=[first, last]))
    instance, references = seen[0]["instances"][0], seen[1]["instances"][0]
    assert base64.b64decode(instance["image"]["bytesBase64Encoded"]) == Path(first).read_bytes()
    assert instance["image"]["mimeType"] == "image/png"
    assert base64.b64decode(instance["lastFrame"]["bytesBase64Encoded"]) == Path(last).read_bytes()
    assert [base64.b64decode(r["image"]["bytesBase64Encoded"]) for r in references["referenceImages"]] == [
        Path(first).read_bytes(),
        Path(last).read_bytes(),
    ]
    assert "image" not in seen[0]["parameters"] and "lastFrame" not in seen[0]["parameters"]
    await client.aclose()


async def test_bad_inputs_are_refused_before_any_call(tmp_path):
    calls = []
    client, _ = unit_client(lambda request: calls.append(request) or httpx.Response(200, json={"name": OPERATION}))
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    with pytest.raises(InvalidVideoRequest, match="image"):
        await client.submit(plan_for(image=str(not_an_image)))
    with pytest.raises(
        InvalidVideoRequest, match="end_image.*veo-3.1"
    ):  # Veo 3 has no last frame: the catalog says who has
        plan_for(model="veo-3.0-generate-001", image=png(tmp_path), end_image=png(tmp_path))
    with pytest.raises(InvalidVideoRequest, match="provider_options.*durationSeconds"):
        plan_for(provider_options={"durationSeconds": 8})
    with pytest.raises(InvalidVideoRequest, match="provider_options.personGeneration"):
        plan_for(provider_options={"personGeneration": "everyone"})
    with pytest.raises(InvalidVideoRequest, match="duration"):
        plan_for(model="veo-2.0-generate-001", duration=4)
    with pytest.raises(InvalidVideoRequest, match="aspect_ratio"):  # Veo 3 renders 1080p in 16:9 only
        plan_for(model="veo-3.0-generate-001", resolution="1080p", aspect_ratio="9:16")
    assert calls == []
    await client.aclose()


# --- unit: answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "status", "code", "uri"),
    [
        ({"name": OPERATION}, JobStatus.RUNNING, None, None),
        ({"name": OPERATION, "done": False, "metadata": {"x": 1}}, JobStatus.RUNNING, None, None),
        (
            done({"generatedSamples": [{"video": {"uri": f"{API}/files/f1:download?alt=media"}}]}),
            JobStatus.SUCCEEDED,
            None,
            f"{API}/files/f1:download?alt=media",
        ),
        (
            {"name": OPERATION, "done": True, "error": {"code": 13, "message": "boom", "status": "INTERNAL"}},
            JobStatus.FAILED,
            "INTERNAL",
            None,
        ),
        ({"name": OPERATION, "done": True, "error": {"code": 3, "message": "bad"}}, JobStatus.FAILED, "3", None),
        (done({}), JobStatus.FAILED, "no_result", None),
        (
            {
                "name": OPERATION,
                "done": True,
                "error": {"code": 3, "message": "The input image violates the usage guidelines."},
            },
            JobStatus.FAILED,
            "3",
            None,
        ),
        (
            done({"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": ["filtered"]}),
            JobStatus.FAILED,
            "rai_filtered",
            None,
        ),
        (done({"raiFilteredCount": 1}), JobStatus.FAILED, "rai_filtered", None),  # the shorter spelling is read too
    ],
)
async def test_operation_mapping(operation, status, code, uri):
    client, _ = unit_client(lambda request: httpx.Response(200, json=operation))
    job = await client.get_job(a_job())
    assert (job.status, job.error_code, job.provider_data.get("video_uri")) == (status, code, uri)
    rejected = code == "rai_filtered" or "usage guidelines" in (job.error_message or "")
    assert (job.rejection is not None) == rejected
    if "usage guidelines" in (job.error_message or ""):
        assert job.rejection.stage == "image"
    await client.aclose()


@pytest.mark.parametrize(
    ("count", "reasons", "expected"),
    [
        (0, [], None),
        (None, None, None),
        (1, ["Your prompt was blocked"], Rejection(stage="prompt", charged=None)),
        (1, ["the input image violates the usage guidelines"], Rejection(stage="image", charged=None)),
        (2, ["filtered for not meeting safety requirements"], Rejection(stage="output", charged=None)),
        (None, ["a reason without a count"], Rejection(stage="output", charged=None)),
    ],
)
def test_rejection_classification(count, reasons, expected):
    assert classify_rejection(count, reasons) == expected


async def test_a_filtered_operation_raises_content_rejected_with_the_reason(tmp_path):
    reason = "Your prompt was blocked by our safety filters."
    client, _ = unit_client(
        lambda request: httpx.Response(
            200, json=done({"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [reason]})
        )
    )
    with pytest.raises(ContentRejected, match="safety filters") as caught:
        await wait_for_job(client, a_job(), timeout=5)
    assert (caught.value.stage, caught.value.charged, caught.value.code) == ("prompt", None, "rai_filtered")
    await client.aclose()


@pytest.mark.parametrize(
    ("status", "body", "error", "fragment", "calls"),
    [
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
                }
            },
            AuthError,
            "API key not valid",
            1,
        ),
        (
            400,
            {"error": {"code": 400, "message": 'Unknown name "fps"', "status": "INVALID_ARGUMENT"}},
            InvalidRequest,
            "fps",
            1,
        ),
        (
            403,
            {"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}},
            AuthError,
            "PERMISSION_DENIED",
            1,
        ),
        (
            404,
            {"error": {"code": 404, "message": "models/x is not found", "status": "NOT_FOUND"}},
            ModelUnavailable,
            "live alternatives on gemini in the catalog",
            1,
        ),
        (
            503,
            {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}},
            ProviderUnavailable,
            "overloaded",
            1,
        ),
        (502, "<html>Bad gateway</html>", ProviderUnavailable, "Bad gateway", 1),
    ],
)
async def test_submit_error_mapping(status, body, error, fragment, calls):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers={"content-type": "text/html"})
        return httpx.Response(status, json=body)

    client, sleep = unit_client(handler)
    with pytest.raises(error, match=fragment) as caught:
        await client.submit(plan_for())
    assert type(caught.value) is error
    assert len(seen) == calls and sleep.delays == []  # a paid submit is never re-sent after a 5xx
    if error is ProviderUnavailable:
        assert caught.value.maybe_created  # the operation may exist: the claim keeps it
    if error is ModelUnavailable:
        assert caught.value.model == "veo-3.0-fast-generate-001"
        assert "veo-3.1-generate-preview" in str(caught.value) and "veo-3.0-fast-generate-001," not in str(caught.value)
    await client.aclose()


async def test_a_429_waits_for_the_retry_info_hint_and_sends_once_more():
    answers = iter([429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(answers) == 429:
            details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]
            return httpx.Response(
                429,
                json={"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": details}},
            )
        return httpx.Response(200, json={"name": OPERATION})

    client, sleep = unit_client(handler)
    job = await client.submit(plan_for())
    assert job.job_id == OPERATION and sleep.delays == [7.0]
    await client.aclose()


async def test_a_429_without_retry_info_waits_for_retry_after():
    answers = iter([429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(answers) == 429:
            return httpx.Response(
                429, json={"error": {"code": 429, "message": "slow down"}}, headers={"Retry-After": "3"}
            )
        return httpx.Response(200, json={"name": OPERATION})

    client, sleep = unit_client(handler)
    await client.submit(plan_for())
    assert sleep.delays == [3.0]
    await client.aclose()


@pytest.mark.parametrize("name", ["../../etc/passwd", "https://evil.example/x", "/abs/path", "models", "models/../x"])
async def test_a_job_id_that_is_no_operation_name_is_refused_before_any_request(name):
    calls = []
    client, _ = unit_client(lambda request: calls.append(request) or httpx.Response(200, json={"name": OPERATION}))
    with pytest.raises(ProviderError, match="not a Gemini operation name"):
        await client.get_job(a_job().model_copy(update={"job_id": name}))
    assert calls == []
    await client.aclose()


async def test_the_key_goes_to_the_api_origin_only_even_across_redirects():
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("x-goog-api-key")))
        if request.url.host == "gemini.api.test":
            return httpx.Response(302, headers={"location": "https://storage.example/v/f1.mp4?sig=abc"})
        return httpx.Response(200, content=b"\x00\x00\x00\x18ftypmp42", headers={"content-type": "video/mp4"})

    client, _ = unit_client(handler)
    on_api = a_job(provider_data={"video_uri": f"{API}/files/f1:download?alt=media"})
    elsewhere = a_job(provider_data={"video_uri": "https://cdn.example/f2.mp4"})
    for job in (on_api, elsewhere):
        async with client.stream_video(job) as chunks:
            assert b"".join([chunk async for chunk in chunks]).startswith(b"\x00\x00\x00\x18ftyp")
    assert seen == [("gemini.api.test", UNIT_KEY), ("storage.example", None), ("cdn.example", None)]
    await client.aclose()


def test_block_validates_and_hides_the_key():
    block = GeminiCredentials(api_key=UNIT_KEY)
    assert block.base_url == "https://generativelanguage.googleapis.com/v1beta"
    assert UNIT_KEY not in repr(block) and UNIT_KEY not in block.model_dump_json()
    assert block.account_id().startswith("gemini-") and UNIT_KEY not in block.account_id()
    assert GeminiCredentials(api_key=UNIT_KEY, account_label="team-a").account_id() == "team-a"
    assert GeminiCredentials.get_block_type_slug() == "videogen-gemini-credentials"
    assert all(field.description.endswith(".") for field in GeminiCredentials.model_fields.values())
    assert 'GeminiCredentials.load("BLOCK_NAME")' in GeminiCredentials.__doc__
    with pytest.raises(ValueError, match="unknown field.*bse_url") as caught:
        GeminiCredentials(api_key=UNIT_KEY, bse_url="https://x")
    assert UNIT_KEY not in str(caught.value)
    with pytest.raises(ValueError, match="must be an http"):
        GeminiCredentials(api_key=UNIT_KEY, base_url="generativelanguage.googleapis.com")
    with pytest.raises(ValueError, match="api_key is blank"):
        GeminiCredentials(api_key=" ")
    client = block.get_client()
    assert isinstance(client, GeminiVideoProvider) and client.account_id == block.account_id()
    assert GeminiCredentials.model_validate(block.model_dump()).base_url == block.base_url


class TestGeminiBlock(BlockStandardTestSuite):
    @pytest.fixture
    def block(self):
        return GeminiCredentials

    def test_has_a_valid_image(self, block):
        pytest.skip("fetches the logo URL; this machine has no internet")


def test_catalog_rows_are_data_the_adapter_reads():
    entry = load_catalog().provider("gemini")
    assert set(entry.models) == set(MODELS)  # the emulator's own table serves every catalogued model
    for spec in entry.models.values():
        assert spec.status == "unconfirmed" and {"provider_model_id", "durations", "price"} <= set(spec.unconfirmed)
        assert spec.wire is not None and spec.wire.params_object == "parameters" and spec.price.unit == "usd"
    source = Path(GeminiVideoProvider.__module__.replace(".", "/") + ".py")
    text = (Path(__file__).resolve().parents[3] / source).read_text()
    assert "veo-" not in text.lower()  # no model ids in the adapter: they are catalog rows


# --- end to end against the emulator over loopback HTTP ----------------------------------------------


@pytest.fixture(scope="module")
def servers():
    emulator = GeminiEmulator(latency_seconds=0.05)
    with EmulatorServer(emulator) as api, EmulatorServer(emulator) as storage:
        yield api, storage


@pytest.fixture
def server(servers):
    return servers[0]


@pytest.fixture
def emulator(servers) -> GeminiEmulator:
    servers[0].emulator.reset()
    servers[0].emulator.cdn_url = None
    return servers[0].emulator


@pytest.fixture
def sleep() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def client(server, emulator, sleep):
    async with GeminiVideoProvider(
        EMULATOR_API_KEY, base_url=server.base_url + "/v1beta", poll_interval_seconds=0.01, sleep=sleep
    ) as provider:
        yield provider


@pytest.mark.parametrize(
    ("fields", "usd", "size"),
    [
        ({"duration": 4}, 0.6, (1280, 720)),
        (
            {"model": "veo-3.1-generate-preview", "resolution": "1080p", "aspect_ratio": "9:16", "duration": 8},
            3.2,
            (1080, 1920),
        ),
        ({"model": "veo-2.0-generate-001", "duration": 5}, 1.75, (1280, 720)),
    ],
)
async def test_text_to_video_end_to_end(client, emulator, tmp_path, fields, usd, size):
    result = await generate(client, VideoRequest(prompt="a red fox in snow", **fields), VideoStorage(str(tmp_path)))
    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height) == size and abs(probe.duration_seconds - fields["duration"]) < 0.5
    assert emulator.charges == {result.job_id: usd} and result.job_id.startswith("models/")
    assert emulator.counters["jobs_created"] == 1 and emulator.counters["downloads"] == 1
    assert emulator.counters["auth_failures"] == 0 and emulator.counters["key_in_query"] == 0


async def test_image_to_video_end_to_end_with_a_last_frame(client, emulator, tmp_path):
    first, last = png(tmp_path), png(tmp_path, "last.png", (0, 0, 200))
    request = VideoRequest(
        prompt="the fox runs",
        model="veo-3.1-fast-generate-preview",
        duration=4,
        aspect_ratio="9:16",
        image=first,
        end_image=last,
    )
    result = await generate(client, request, VideoStorage(str(tmp_path / "videos")))
    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height) == (720, 1280) and abs(probe.duration_seconds - 4) < 0.5
    instance = emulator.jobs[result.job_id]["input"]["instances"][0]
    assert base64.b64decode(instance["image"]["bytesBase64Encoded"]) == Path(first).read_bytes()
    assert instance["lastFrame"]["mimeType"] == "image/png"


async def test_download_redirected_to_storage_carries_no_key(client, emulator, servers, tmp_path):
    emulator.cdn_url = servers[1].base_url  # another origin
    result = await generate(client, VideoRequest(prompt="a fox"), VideoStorage(str(tmp_path)))
    assert abs(probe_video(result.video_uri).duration_seconds - 4) < 0.5
    assert emulator.counters["redirects"] == 1 and emulator.counters["cdn_key_rejections"] == 0
    async with httpx.AsyncClient() as http:  # the storage origin does refuse a request with the key
        keyed = await http.get(f"{servers[1].base_url}/cdn/videos/x.mp4", headers={"x-goog-api-key": EMULATOR_API_KEY})
    assert keyed.status_code == 403 and emulator.counters["cdn_key_rejections"] == 1


async def test_rate_limited_submit_waits_as_told_and_creates_one_job(client, emulator, sleep, tmp_path):
    emulator.faults.add("create", Fault(status=429))  # Google's body: RetryInfo retryDelay "1s"
    result = await generate(client, VideoRequest(prompt="a fox"), VideoStorage(str(tmp_path)))
    assert sleep.delays[0] == 1.0
    assert emulator.counters["create_requests"] == 2 and emulator.counters["jobs_created"] == 1
    assert list(emulator.charges) == [result.job_id]


async def test_poll_5xx_is_retried(client, emulator, sleep, tmp_path):
    emulator.faults.add("poll", Fault(status=503), times=2)
    result = await generate(client, VideoRequest(prompt="a fox"), VideoStorage(str(tmp_path)))
    assert abs(probe_video(result.video_uri).duration_seconds - 4) < 0.5
    assert emulator.counters["jobs_created"] == 1


async def test_a_5xx_after_the_operation_exists_is_never_resent(client, emulator, sleep):
    emulator.faults.add("create", Fault(status=500, after_create=True))
    with pytest.raises(ProviderUnavailable) as caught:
        await client.submit(plan_for())
    assert caught.value.maybe_created and not caught.value.retryable
    assert emulator.counters["create_requests"] == 1 and emulator.counters["jobs_created"] == 1 and sleep.delays == []


@pytest.mark.parametrize("cdn", [False, True])
async def test_dropped_download_is_resumed(client, emulator, servers, tmp_path, cdn):
    emulator.cdn_url = servers[1].base_url if cdn else None
    plan = plan_for()
    job = await wait_for_job(client, await client.submit(plan), timeout=10)
    emulator.faults.add("download", Fault(drop_after_bytes=2000))
    result = await store_video(client, plan, job, VideoStorage(str(tmp_path)))
    assert abs(probe_video(result.video_uri).duration_seconds - 4) < 0.5
    assert emulator.counters["downloads"] == 2 and emulator.counters["jobs_created"] == 1
    assert emulator.counters["cdn_key_rejections"] == 0


@pytest.mark.parametrize("stage", ["prompt", "image", "output"])
async def test_safety_filtered_operation_is_typed_and_not_resent(client, emulator, tmp_path, stage):
    emulator.faults.add("create", Fault(reject=stage))
    with pytest.raises(ContentRejected, match="safety filters") as caught:
        await generate(client, VideoRequest(prompt="a fox"), VideoStorage(str(tmp_path)))
    assert (caught.value.stage, caught.value.charged) == (stage, None)
    assert emulator.counters["create_requests"] == 1 and emulator.counters["jobs_created"] == 1
    assert emulator.counters["downloads"] == 0 and list(emulator.charges.values()) == [0.0]


def test_a_filtered_operation_is_never_answered_as_a_video_whatever_the_clock_does():
    # The GET reads the clock at 0.9 of the latency and time moves on by 0.2 per read: a view that read
    # the clock twice saw the filtered job unfinished, then finished, and answered with a download link.
    clock = SteppingClock()
    emulator = GeminiEmulator(latency_seconds=1.0, clock=clock)
    emulator.faults.add("create", Fault(reject="output"))
    headers = {"x-goog-api-key": EMULATOR_API_KEY}
    with EmulatorServer(emulator) as server, httpx.Client(base_url=server.base_url, headers=headers) as http:
        created = http.post("/v1beta/models/veo-3.0-fast-generate-001:predictLongRunning", json=VALID).json()
        clock.now, clock.step = 0.9, 0.2
        views = [http.get(f"/v1beta/{created['name']}").json() for _ in range(2)]
    assert [view.get("done", False) for view in views] == [False, True]
    assert all("generatedSamples" not in json.dumps(view) for view in views)
    assert views[-1]["response"]["generateVideoResponse"]["raiMediaFilteredCount"] == 1


async def test_failed_operation_is_a_job_failure(client, emulator, tmp_path):
    emulator.faults.add("create", Fault(fail_on_create=True))
    with pytest.raises(JobFailed, match="Video generation failed") as caught:
        await generate(client, VideoRequest(prompt="a fox"), VideoStorage(str(tmp_path)))
    assert not isinstance(caught.value, ContentRejected) and caught.value.code == "INTERNAL"


async def test_unavailable_model_lists_the_live_ones_and_creates_nothing(client, emulator, tmp_path):
    emulator.retired_models.add("veo-3.0-fast-generate-001")
    with pytest.raises(ModelUnavailable, match="not served by the Gemini API") as caught:
        await generate(client, VideoRequest(prompt="a fox"), VideoStorage(str(tmp_path)))
    assert (caught.value.model, caught.value.status_code) == ("veo-3.0-fast-generate-001", 404)
    assert "veo-3.1-fast-generate-preview" in str(caught.value)
    assert emulator.counters["jobs_created"] == 0 and emulator.counters["create_requests"] == 1


async def test_bad_key_is_an_auth_error_without_retry(server, emulator, sleep):
    async with GeminiVideoProvider(WRONG_KEY, base_url=server.base_url + "/v1beta", sleep=sleep) as wrong:
        with pytest.raises(AuthError, match="API key not valid") as caught:
            await wrong.submit(plan_for())
    assert caught.value.status_code == 400 and WRONG_KEY not in str(caught.value)
    assert emulator.counters["auth_failures"] == 1 and sleep.delays == [] and emulator.counters["jobs_created"] == 0


VALID = {"instances": [{"prompt": "a fox"}], "parameters": {"durationSeconds": 8}}
IMAGE = {"bytesBase64Encoded": base64.b64encode(b"\x89PNG").decode(), "mimeType": "image/png"}


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        ("veo-3.0-generate-001", {**VALID, "parameters": {"durationSeconds": "8"}}, "parameters.durationSeconds"),
        ("veo-3.0-generate-001", {**VALID, "parameters": {"durationSeconds": 5}}, "parameters.durationSeconds"),
        ("veo-3.0-generate-001", {**VALID, "parameters": {"fps": 24}}, "\"fps\" at 'parameters'"),
        ("veo-3.0-generate-001", {**VALID, "parameters": {"aspectRatio": "1:1"}}, "parameters.aspectRatio"),
        (
            "veo-3.0-generate-001",
            {**VALID, "parameters": {"resolution": "1080p", "aspectRatio": "9:16"}},
            "parameters.aspectRatio",
        ),
        ("veo-2.0-generate-001", {**VALID, "parameters": {"resolution": "720p"}}, "\"resolution\" at 'parameters'"),
        (
            "veo-3.0-generate-001",
            {"instances": [{"prompt": "a fox", "lastFrame": IMAGE, "image": IMAGE}]},
            "\"lastFrame\" at 'instances[0]'",
        ),
        (
            "veo-3.1-generate-preview",
            {"instances": [{"prompt": "a fox", "lastFrame": IMAGE}]},
            "instances[0].lastFrame",
        ),
        (
            "veo-3.1-generate-preview",
            {"instances": [{"prompt": "a fox", "image": {**IMAGE, "mimeType": "image/gif"}}]},
            "instances[0].image.mimeType",
        ),
        (
            "veo-3.1-generate-preview",
            {"instances": [{"prompt": "a fox", "referenceImages": [{"image": IMAGE}] * 4}]},
            "referenceImages",
        ),
        ("veo-3.0-generate-001", {"instances": [{"prompt": ""}]}, "instances[0].prompt"),
        ("veo-3.0-generate-001", {**VALID, "sampleCount": 2}, '"sampleCount"'),
    ],
)
async def test_emulator_rejects_unknown_fields_and_values_by_name(server, emulator, model, body, field):
    async with httpx.AsyncClient(base_url=server.base_url, headers={"x-goog-api-key": EMULATOR_API_KEY}) as http:
        response = await http.post(f"/v1beta/models/{model}:predictLongRunning", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and field in error["message"]
    assert emulator.counters["jobs_created"] == 0


async def test_emulator_auth_answers(server, emulator):
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        url = "/v1beta/models/veo-3.0-generate-001:predictLongRunning"
        missing = await http.post(url, json=VALID)
        in_query = await http.post(url, json=VALID, params={"key": EMULATOR_API_KEY})
    assert (missing.status_code, missing.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
    assert in_query.status_code == 400 and emulator.counters["key_in_query"] == 1
    assert emulator.counters["jobs_created"] == 0


async def test_the_key_never_leaks(client, server, emulator, tmp_path, debug_logs):
    emulator.faults.add(
        "create", Fault(status=429, body={"error": {"code": 429, "message": "quota"}}, headers={"Retry-After": "0"})
    )
    result = await generate(client, VideoRequest(prompt="a fox"), VideoStorage(str(tmp_path)))
    errors = []
    emulator.retired_models.add("veo-3.0-fast-generate-001")
    for key in (EMULATOR_API_KEY, WRONG_KEY):
        async with GeminiVideoProvider(key, base_url=server.base_url + "/v1beta") as other:
            with pytest.raises(ProviderError) as caught:
                await other.submit(plan_for())
            errors.append(caught.value)
    block = GeminiCredentials(api_key=EMULATOR_API_KEY, base_url=server.base_url + "/v1beta")
    texts = [
        debug_logs.text,
        *(f"{record.getMessage()} {record.args!r}" for record in debug_logs.records),
        *(f"{error} {error!r}" for error in errors),
        result.model_dump_json(),
        Path(result.sidecar_uri).read_text(),
        repr(block),
        str(block),
        repr(client),
        block.model_dump_json(),
        block.account_id(),
    ]
    assert any("HTTP Request" in record.getMessage() for record in debug_logs.records)  # httpx did log every URL
    for secret in (EMULATOR_API_KEY, WRONG_KEY):
        assert not [text for text in texts if secret in text]
    assert emulator.counters["key_in_query"] == 0


async def test_every_catalog_row_agrees_with_the_emulators_table(client, emulator, tmp_path):
    """Each duration, aspect and tier a row allows, sent as the adapter builds it, is accepted by the
    emulator's own table, renders the planned size and costs the catalog's estimate; then once more with
    every optional field and declared option the row takes."""
    from prefect_videogen.spend.costs import estimate_cost

    catalog = load_catalog()
    sent = 0
    for key, spec in catalog.provider("gemini").models.items():
        durations = (
            spec.durations if isinstance(spec.durations, list) else range(spec.durations.min, spec.durations.max + 1)
        )
        for tier, sizes in spec.sizes.items():
            for aspect in sizes:
                for duration in durations:
                    plan = plan_for(model=key, duration=duration, aspect_ratio=aspect, resolution=tier)
                    job = await client.submit(plan)
                    created = emulator.jobs[job.job_id]
                    assert (created["width"], created["height"]) == (plan.width, plan.height), (key, tier, aspect)
                    assert emulator.charges[job.job_id] == pytest.approx(estimate_cost(plan).usd), (key, tier, duration)
                    sent += 1
        image = png(tmp_path)
        extras = {
            "duration": 8,
            "negative_prompt": "rain",
            "image": image,
            "provider_options": {"personGeneration": "allow_adult"},
        }
        features = spec.features(spec.wire)
        extras |= {"seed": 7} if "seed" in features else {}
        extras |= {"end_image": image} if "end_image" in features else {}
        full = await client.submit(plan_for(model=key, **extras))
        if "reference_images" in features:
            await client.submit(
                plan_for(model=key, duration=8, reference_images=[image] * spec.wire.max_reference_images)
            )
        assert set(emulator.jobs[full.job_id]["input"]["instances"][0]) >= {"prompt", "image"}
    assert sent == 50 and emulator.counters["rejected_requests"] == 0
