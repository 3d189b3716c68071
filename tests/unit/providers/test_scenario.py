"""Scenario: the adapter on httpx.MockTransport, then end to end over loopback HTTP against the strict emulator."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from prefect_videogen.blocks import LocalVideoStorage
from prefect_videogen.blocks.scenario import ScenarioCredentials
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
    RateLimited,
)
from prefect_videogen.media import probe_video
from prefect_videogen.models import JobStatus, VideoRequest
from prefect_videogen.pipeline import generate, store_video
from prefect_videogen.providers.base import raise_for_job
from prefect_videogen.providers.polling import wait_for_job
from prefect_videogen.providers.retry import is_retryable
from prefect_videogen.providers.scenario import ScenarioVideoProvider
from prefect_videogen.storage import VideoStorage
from prefect_videogen.testing.scenario_emulator import ScenarioEmulator
from prefect_videogen.testing.server import EmulatorServer, Fault

from fakes import SleepRecorder

KEY = "scn-key-7f3a9c1e5b2d4f60"
SECRET = "scn-secret-0c9e8d7f6a5b4c3d"
BASIC = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
API = "https://api.scenario.test/v1"


def plan(**fields):
    return load_catalog().plan("scenario", VideoRequest(prompt=fields.pop("prompt", "a fox in fresh snow"), **fields))


def job_body(status="queued", progress=0.0, **metadata):
    return {
        "job": {
            "jobId": "job_1",
            "status": status,
            "progress": progress,
            "jobType": "inference",
            "metadata": {"assetIds": [], **metadata},
        }
    }


class Mock:
    """A MockTransport handler answering from a queue per (method, path suffix), recording every request."""

    def __init__(self, answers: dict[tuple[str, str], list]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for (method, suffix), queue in self.answers.items():
            if request.method == method and request.url.path.endswith(suffix):
                answer = queue.pop(0) if len(queue) > 1 else queue[0]
                if isinstance(answer, Exception):
                    raise answer
                return answer
        return httpx.Response(404, json={"reason": "no route in the mock"})

    def count(self, method: str) -> int:
        return sum(1 for r in self.requests if r.method == method)


def mocked(answers, **kwargs) -> tuple[ScenarioVideoProvider, Mock, SleepRecorder]:
    mock, sleeps = Mock(answers), SleepRecorder()
    provider = ScenarioVideoProvider(
        KEY, SECRET, base_url=API, transport=httpx.MockTransport(mock), sleep=sleeps, **kwargs
    )
    return provider, mock, sleeps


def created(cost=40, **job):
    return httpx.Response(200, json={**job_body(**job), "creativeUnitsCost": cost})


# -- unit: the adapter on MockTransport ------------------------------------------------------------


async def test_submit_sends_the_documented_body_once_with_basic_auth():
    provider, mock, _ = mocked(
        {("POST", "/generate/custom/model_open-ai-sora-2-pro"): [created(cost=400)]}, project_id="proj_demo"
    )
    job = await provider.submit(plan(model="sora-2-pro", duration=8, aspect_ratio="9:16", resolution="high"))
    (request,) = mock.requests
    body = json.loads(request.content)
    assert body == {
        "prompt": "a fox in fresh snow",
        "aspectRatio": "9:16",
        "duration": 8,
        "resolution": "high",
    }
    assert type(body["duration"]) is int  # a JSON number, never "8"
    assert dict(request.url.params) == {"projectId": "proj_demo"}
    assert request.headers["authorization"] == BASIC
    assert (job.job_id, job.status) == ("job_1", JobStatus.QUEUED)
    assert (job.reported_cost, job.reported_cost_unit) == (400.0, "creative_units")


async def test_sora_2_gets_no_resolution_and_options_cannot_smuggle_dry_run():
    provider, mock, _ = mocked({("POST", "/generate/custom/model_open-ai-sora-2"): [created()]})
    await provider.submit(plan(duration=12))
    assert json.loads(mock.requests[0].content) == {
        "prompt": "a fox in fresh snow",
        "aspectRatio": "16:9",
        "duration": 12,
    }
    # dryRun in the body is billed as a real run by Scenario: refused before anything is sent.
    for options in ({"dryRun": True}, {"duration": "12"}):
        with pytest.raises(InvalidVideoRequest, match="provider_options"):
            await provider.submit(plan(provider_options=options))
    assert len(mock.requests) == 1


def frames_in(tmp_path: Path, *names: str) -> dict[str, str]:
    paths = {}
    for index, name in enumerate(names):
        path = tmp_path / f"{name}.png"
        Image.new("RGB", (64, 36), (index * 60, 90, 30)).save(path)
        paths[name] = str(path)
    return paths


def asset_answers(n: int) -> list[httpx.Response]:
    return [httpx.Response(200, json={"asset": {"id": f"asset_{i}"}}) for i in range(1, n + 1)]


@pytest.mark.parametrize(
    ("fields", "model_id", "expected"),
    [
        (
            {
                "model": "veo-3.1",
                "duration": 8,
                "resolution": "1080p",
                "image": "IMG",
                "end_image": "END",
                "reference_images": ["R1", "R2"],
                "negative_prompt": "rain",
                "provider_options": {"referenceImagesType": "STYLE"},
            },
            "model_veo3-1",
            {
                "image": "asset_1",
                "lastFrameImage": "asset_2",
                "referenceImages": ["asset_3", "asset_4"],
                "negativePrompt": "rain",
                "resolution": "1080p",
                "referenceImagesType": "STYLE",
            },
        ),
        (
            {
                "model": "veo-3",
                "duration": 6,
                "aspect_ratio": "9:16",
                "image": "IMG",
                "negative_prompt": "rain",
                "seed": 5,
                "generate_audio": False,
            },
            "model_veo3",
            {
                "image": "asset_1",
                "negativePrompt": "rain",
                "resolution": "720p",
                "generateAudio": False,
                "aspectRatio": "9:16",
                "duration": 6,
                "seed": 5,
            },
        ),
        (
            {
                "model": "kling-v3-4k",
                "duration": 10,
                "aspect_ratio": "1:1",
                "generate_audio": True,
                "negative_prompt": "blur",
                "provider_options": {"shotType": "intelligence", "cfgScale": 0.5},
            },
            "model_kling-v3-t2v-4k",
            {
                "duration": "10",
                "aspectRatio": "1:1",
                "generateAudio": True,
                "negativePrompt": "blur",
                "shotType": "intelligence",
                "cfgScale": 0.5,
            },
        ),
        (
            {"model": "sora-2", "duration": 16, "aspect_ratio": "9:16", "image": "IMG"},
            "model_open-ai-sora-2",
            {"duration": 16, "aspectRatio": "9:16", "image": "asset_1"},
        ),
    ],
)
async def test_each_model_body_field_by_field(tmp_path, fields, model_id, expected):
    paths = frames_in(tmp_path, "IMG", "END", "R1", "R2")
    local = {
        k: [paths[i] for i in v] if k == "reference_images" else paths.get(v, v) if isinstance(v, str) else v
        for k, v in fields.items()
    }
    provider, mock, _ = mocked(
        {
            ("GET", f"/models/{model_id}"): [httpx.Response(200, json={"model": {"id": model_id}})],
            ("POST", "/assets"): asset_answers(4),
            ("POST", f"/generate/custom/{model_id}"): [created()],
        }
    )
    await provider.submit(plan(**local))
    uploads = [r for r in mock.requests if r.url.path.endswith("/assets")]
    submit = mock.requests[-1]
    assert submit.url.path.endswith(f"/generate/custom/{model_id}")
    body = json.loads(submit.content)
    assert body.pop("prompt") == "a fox in fresh snow"
    assert body == expected
    assert {k: type(v) for k, v in body.items()} == {k: type(v) for k, v in expected.items()}  # "10" a string
    if uploads:  # the model is checked before the first upload, so a retired model costs no asset
        assert mock.requests[0].method == "GET" and mock.requests[0].url.path.endswith(f"/models/{model_id}")
    sent = [json.loads(r.content)["image"] for r in uploads]
    images = [local[f] for f in ("image", "end_image") if f in local] + local.get("reference_images", [])
    assert len(sent) == len(images)
    for data_url, path in zip(sent, images, strict=True):
        assert base64.b64decode(data_url.split(",", 1)[1]) == Path(path).read_bytes()


async def test_quote_sends_the_submit_body_without_its_assets(tmp_path):
    paths = frames_in(tmp_path, "IMG", "R1")
    answer = httpx.Response(269, json={"creativeUnitsCost": 320, "creativeUnitsDiscount": 0, "costDetails": {}})
    provider, mock, _ = mocked({("POST", "/generate/custom/model_veo3-1"): [answer]})
    quoted = await provider.quote(
        plan(model="veo-3.1", duration=8, image=paths["IMG"], reference_images=[paths["R1"]], negative_prompt="rain")
    )
    assert quoted == (320.0, "creative_units")
    (request,) = mock.requests  # no upload, no model check: a dry run prices without validating
    assert request.url.params["dryRun"] == "true"
    assert json.loads(request.content) == {
        "prompt": "a fox in fresh snow",
        "negativePrompt": "rain",
        "resolution": "720p",
    }


async def test_model_not_found_lists_the_live_alternatives(tmp_path):
    paths = frames_in(tmp_path, "IMG")
    missing = httpx.Response(404, json={"reason": "Model not found"})
    provider, mock, _ = mocked(
        {("GET", "/models/model_veo3"): [missing], ("POST", "/generate/custom/model_veo3"): [missing]}
    )
    for request in (plan(model="veo-3", duration=8, image=paths["IMG"]), plan(model="veo-3", duration=8)):
        with pytest.raises(ModelUnavailable) as caught:
            await provider.submit(request)
        text = str(caught.value)
        assert "model 'model_veo3' not found" in text
        assert "live alternatives on scenario in the catalog: kling-v3-4k, sora-2, sora-2-pro, veo-3.1 " in text
        assert caught.value.model == "model_veo3"
    assert not [r for r in mock.requests if r.url.path.endswith("/assets")]  # no orphan upload


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"end_image": "NOTES"}, "end_image"), ({"reference_images": ["IMG", "NOTES"]}, "reference_images[1]")],
)
async def test_bad_end_and_reference_images_are_refused_before_any_call(tmp_path, fields, field):
    paths = frames_in(tmp_path, "IMG")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    paths["NOTES"] = str(notes)
    fields = {k: [paths[i] for i in v] if isinstance(v, list) else paths[v] for k, v in fields.items()}
    provider, mock, _ = mocked({})
    with pytest.raises(InvalidVideoRequest) as caught:
        await provider.submit(plan(model="veo-3.1", duration=8, **fields))
    assert caught.value.field == field and mock.requests == []


async def test_quote_puts_dry_run_in_the_query_string():
    answer = httpx.Response(269, json={"creativeUnitsCost": 120, "creativeUnitsDiscount": 0, "costDetails": {}})
    provider, mock, _ = mocked({("POST", "/generate/custom/model_open-ai-sora-2-pro"): [answer]})
    assert await provider.quote(plan(model="sora-2-pro", duration=4)) == (120.0, "creative_units")
    (request,) = mock.requests
    assert request.url.params["dryRun"] == "true"
    assert "dryRun" not in json.loads(request.content)


async def test_quote_that_ran_as_a_real_job_is_reported_not_retried():
    # A gateway that drops the query string turns the preview into a billed run: say so, never re-send.
    provider, mock, _ = mocked({("POST", "/generate/custom/model_open-ai-sora-2"): [created()]})
    with pytest.raises(ProviderError, match="real, billed job .job_1."):
        await provider.quote(plan())
    assert mock.count("POST") == 1


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("queued", JobStatus.QUEUED),
        ("warming-up", JobStatus.QUEUED),
        ("processing", JobStatus.RUNNING),
        ("in-progress", JobStatus.RUNNING),
        ("success", JobStatus.SUCCEEDED),
        ("SUCCESS", JobStatus.SUCCEEDED),
        ("failed", JobStatus.FAILED),
        ("failure", JobStatus.FAILED),
        ("canceled", JobStatus.CANCELED),
        ("re-queued-by-new-backend", JobStatus.RUNNING),
    ],  # unknown: still running until the deadline
)
async def test_status_words_map_through_the_table(word, status):
    provider, _, _ = mocked(
        {
            ("POST", "/custom/model_open-ai-sora-2"): [created()],
            ("GET", "/jobs/job_1"): [httpx.Response(200, json=job_body(word, 0.5))],
        }
    )
    job = await provider.get_job(await provider.submit(plan()))
    assert (job.status, job.raw_status) == (status, word)


@pytest.mark.parametrize(("reported", "progress"), [(0.42, 0.42), (42, 0.42), (None, None), ("half", None), (-1, 0.0)])
async def test_progress_is_normalised_and_cost_kept_from_submit(reported, progress):
    provider, _, _ = mocked(
        {
            ("POST", "/custom/model_open-ai-sora-2"): [created(cost=80)],
            ("GET", "/jobs/job_1"): [httpx.Response(200, json=job_body("processing", reported))],
        },
        poll_interval=0.25,
    )
    job = await provider.get_job(await provider.submit(plan(duration=8)))
    assert job.progress == progress
    assert (job.reported_cost, job.poll_after_seconds) == (80.0, 0.25)  # GET /jobs does not repeat the cost


def error_response(status, *, json_body=None, text=None, headers=None, path="/v1/jobs/job_1"):
    request = httpx.Request("POST" if "generate" in path else "GET", "https://api.scenario.test" + path)
    if json_body is not None:
        return httpx.Response(status, json=json_body, headers=headers, request=request)
    return httpx.Response(status, text=text, headers={"content-type": "text/html", **(headers or {})}, request=request)


@pytest.mark.parametrize(
    ("response", "kind", "text"),
    [
        (error_response(401, json_body={"reason": "Unauthorized", "trace_id": "tr_1"}), AuthError, "Unauthorized"),
        (
            error_response(403, json_body={"reason": "Your plan (Creator) does not include this model"}),
            AuthError,
            "plan (Creator)",
        ),
        (error_response(400, json_body={"message": "duration must be a number"}), InvalidRequest, "must be a number"),
        (error_response(404, json_body={"reason": "Job not found"}), InvalidRequest, "Job not found"),
        (
            error_response(
                404, json_body={"reason": "Model not found"}, path="/v1/generate/custom/model_open-ai-sora-2"
            ),
            ModelUnavailable,
            "'model_open-ai-sora-2' not found",
        ),
        (error_response(429, json_body={"reason": "cooldown", "remainingSeconds": 9}), RateLimited, "cooldown"),
        (
            error_response(
                429, json_body={"reason": "Too many requests", "details": {"actionName": "generate", "actionLimit": 10}}
            ),
            RateLimited,
            "limit of 10 on generate",
        ),
        (error_response(502, text="<html><body>Bad gateway</body></html>"), ProviderUnavailable, "Bad gateway"),
        (error_response(500, text=""), ProviderUnavailable, "HTTP 500"),
    ],
)
def test_error_bodies_map_to_the_error_tree(response, kind, text):
    provider = ScenarioVideoProvider(KEY, SECRET, base_url=API)
    error = provider.http.to_error(response)
    assert type(error) is kind
    assert text in str(error) and str(error).startswith("scenario: ")
    if response.status_code == 401:
        assert error.request_id == "tr_1"  # the body's trace_id, for support tickets
    if kind is ModelUnavailable:
        assert error.model == "model_open-ai-sora-2"


@pytest.mark.parametrize(
    ("body", "headers", "delay"),
    [
        ({"reason": "cooldown", "remainingSeconds": 7}, {}, 7.0),
        (
            {"reason": "Too many requests", "details": {"actionName": "generate", "actionLimit": 10}},
            {"Retry-After": "3"},
            3.0,
        ),
    ],
)
async def test_429_on_submit_waits_the_hint_and_is_resent(body, headers, delay):
    provider, mock, sleeps = mocked(
        {("POST", "/custom/model_open-ai-sora-2"): [httpx.Response(429, json=body, headers=headers), created()]}
    )
    job = await provider.submit(plan())
    assert job.job_id == "job_1"
    assert sleeps.delays == [delay]
    assert mock.count("POST") == 2  # a 429 creates nothing, so re-sending cannot pay twice


async def test_cooldown_longer_than_the_cap_is_raised_with_its_hint():
    provider, mock, sleeps = mocked(
        {
            ("POST", "/custom/model_open-ai-sora-2"): [
                httpx.Response(429, json={"reason": "cooldown", "remainingSeconds": 600})
            ]
        }
    )
    with pytest.raises(RateLimited) as caught:
        await provider.submit(plan())
    assert (caught.value.retry_after, sleeps.delays, mock.count("POST")) == (600.0, [], 1)


@pytest.mark.parametrize("failure", [httpx.Response(502, text="upstream died"), httpx.ReadTimeout("slow")])
async def test_ambiguous_submit_failure_is_never_resent(failure):
    provider, mock, sleeps = mocked({("POST", "/custom/model_open-ai-sora-2"): [failure, created()]})
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.submit(plan())
    assert caught.value.maybe_created and not is_retryable(caught.value)
    assert (mock.count("POST"), sleeps.delays) == (1, [])


async def test_poll_5xx_is_retried_with_backoff():
    done = httpx.Response(200, json=job_body("success", 1.0, assetIds=["a1"]))
    provider, mock, sleeps = mocked(
        {
            ("POST", "/custom/model_open-ai-sora-2"): [created()],
            ("GET", "/jobs/job_1"): [httpx.Response(503, text="busy"), done],
        }
    )
    job = await provider.get_job(await provider.submit(plan()))
    assert (job.status, job.provider_data["asset_ids"]) == (JobStatus.SUCCEEDED, ["a1"])
    assert mock.count("GET") == 2 and len(sleeps.delays) == 1 and 0 < sleeps.delays[0] <= 0.5


async def test_auth_error_is_not_retried():
    provider, mock, sleeps = mocked(
        {
            ("GET", "/jobs/job_1"): [httpx.Response(403, json={"reason": "Your plan (Free) ..."})],
            ("POST", "/custom/model_open-ai-sora-2"): [created()],
        }
    )
    with pytest.raises(AuthError, match="plan"):
        await provider.get_job(await provider.submit(plan()))
    assert (mock.count("GET"), sleeps.delays) == (1, [])


@pytest.mark.parametrize(
    ("status", "error", "stage", "charged"),
    [
        ("failed", "sentinel_block: the prompt was flagged by moderation", "prompt", False),
        ("failed", {"code": "sentinel_block", "message": "input image flagged"}, "image", False),
        ("failure", "moderation_blocked: the generated video was flagged", "output", True),
        ("failed", "Your request was rejected by the content policy", None, None),
        ("failed", "Generation failed: upstream timeout", "not-a-rejection", False),
        ("canceled", None, "not-a-rejection", None),
    ],
)
async def test_failures_are_classified(status, error, stage, charged):
    metadata = {"error": error} if error else {}
    provider, _, _ = mocked(
        {
            ("POST", "/custom/model_open-ai-sora-2"): [created(cost=40)],
            ("GET", "/jobs/job_1"): [httpx.Response(200, json=job_body(status, 0.3, **metadata))],
        }
    )
    job = await provider.get_job(await provider.submit(plan()))
    with pytest.raises(JobFailed) as caught:
        raise_for_job(job)
    if stage == "not-a-rejection":
        assert type(caught.value) is JobFailed and job.rejection is None
    else:
        assert isinstance(caught.value, ContentRejected)
        assert (caught.value.stage, caught.value.charged) == (stage, charged)
    assert caught.value.charged is charged
    assert job.reported_cost == 40.0  # announced at submit; whether it was refunded is `charged`


# -- the block --------------------------------------------------------------------------------------


def test_block_validates_fields_and_hides_secrets():
    with pytest.raises(ValueError, match="unknown field.*api_secert"):
        ScenarioCredentials(api_key=KEY, api_secert=SECRET)
    with pytest.raises(ValueError, match="http"):
        ScenarioCredentials(api_key=KEY, api_secret=SECRET, base_url="ftp://gateway.example/v1")
    creds = ScenarioCredentials(api_key=KEY, api_secret=SECRET, base_url="https://gw.example/scenario/v1/")
    assert creds.base_url == "https://gw.example/scenario/v1"
    for text in (repr(creds), str(creds), creds.model_dump_json(), creds.account_id()):
        assert KEY not in text and SECRET not in text
    assert creds.account_id().startswith("scenario-") and len(creds.account_id()) == len("scenario-") + 12
    assert ScenarioCredentials(api_key=KEY, api_secret=SECRET, account_label="studio-a").account_id() == "studio-a"
    # What Prefect adds when it serializes a block must still load.
    data = {
        "api_key": KEY,
        "api_secret": SECRET,
        "block_type_slug": "videogen-scenario-credentials",
        "_block_document_id": None,
    }
    assert ScenarioCredentials.model_validate(data).get_block_type_slug() == "videogen-scenario-credentials"
    assert all(f.description.endswith(".") for f in ScenarioCredentials.model_fields.values())


# -- end to end: loopback HTTP against the emulator ------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with EmulatorServer(ScenarioEmulator(api_key=KEY, api_secret=SECRET, latency_seconds=0.05)) as running:
        yield running


@pytest.fixture
def emulator(server):
    server.emulator.reset()
    yield server.emulator
    server.emulator.retired_models.clear()
    server.emulator.plan_limited_models.clear()


@pytest.fixture
def sleeps():
    return SleepRecorder()


@pytest.fixture
async def client(server, emulator, sleeps):
    async with ScenarioVideoProvider(
        KEY, SECRET, base_url=server.base_url + "/v1", poll_interval=0.01, project_id="proj_demo", sleep=sleeps
    ) as provider:
        yield provider


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "first-frame.png"
    Image.new("RGB", (128, 72), "orange").save(path)
    return path


def storage(tmp_path: Path) -> VideoStorage:
    return VideoStorage(str(tmp_path / "videos"))


@pytest.mark.parametrize(
    ("fields", "size", "units"),
    [
        ({"duration": 4}, (1280, 720), 40),
        ({"model": "sora-2-pro", "duration": 8, "aspect_ratio": "9:16", "resolution": "high"}, (1080, 1920), 400),
    ],
)
async def test_text_to_video_end_to_end(client, emulator, tmp_path, fields, size, units):
    result = await generate(client, VideoRequest(prompt="a red fox running through snow", **fields), storage(tmp_path))
    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height) == size
    assert probe.duration_seconds == pytest.approx(fields["duration"], abs=0.01)
    assert emulator.charges == {result.job_id: units}
    sidecar = json.loads(Path(result.sidecar_uri).read_text())
    assert sidecar["reported_cost"] == {"amount": units, "unit": "creative_units"}  # the ledger matches the bill
    assert emulator.counters["jobs_created"] == 1 and emulator.counters["downloads"] == 1
    assert emulator.counters["cdn_auth_rejected"] == 0  # the key never went to the CDN
    assert emulator.jobs[result.job_id]["project_id"] == "proj_demo"


async def test_image_to_video_from_a_local_file(client, emulator, tmp_path, png):
    request = VideoRequest(
        prompt="the fox wakes up", model="sora-2-pro", duration=4, aspect_ratio="9:16", image=str(png)
    )
    result = await generate(client, request, storage(tmp_path))
    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height, round(probe.duration_seconds)) == (720, 1280, 4)
    (asset_id,) = emulator.assets
    assert emulator.requests[-1]["body"]["image"] == asset_id
    assert emulator.assets[asset_id]["bytes"] == png.read_bytes()
    assert emulator.assets[asset_id]["project_id"] == "proj_demo"
    assert emulator.counters["uploads"] == 1 and emulator.counters["jobs_created"] == 1


async def test_image_to_video_from_a_url_is_fetched_without_the_key(
    client, server, emulator, tmp_path, png, monkeypatch
):
    # A public image URL (here: one on the emulator's CDN, which rejects any Authorization header);
    # the worker policy fetches from loopback only when the worker allows that host explicitly.
    monkeypatch.setenv("PREFECT_VIDEOGEN_ALLOWED_URL_HOSTS", "127.0.0.1")
    async with httpx.AsyncClient(base_url=server.base_url + "/v1", headers={"authorization": BASIC}) as raw:
        data_url = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
        asset = (await raw.post("assets", json={"image": data_url, "name": "frame.png"})).json()["asset"]
        url = (await raw.get(f"assets/{asset['id']}")).json()["asset"]["url"]
    result = await generate(client, VideoRequest(prompt="the fox wakes up", duration=4, image=url), storage(tmp_path))
    assert probe_video(result.video_uri).width == 1280
    assert emulator.counters["uploads"] == 2 and emulator.counters["cdn_auth_rejected"] == 0
    assert emulator.assets[emulator.requests[-1]["body"]["image"]]["bytes"] == png.read_bytes()


async def test_quote_creates_no_job_but_dry_run_in_the_body_is_billed(client, server, emulator):
    assert await client.quote(plan(model="sora-2-pro", duration=8, resolution="high")) == (400.0, "creative_units")
    assert (emulator.counters["jobs_created"], emulator.counters["dry_runs"], emulator.charges) == (0, 1, {})
    # The documented trap, reproduced: dryRun in the JSON body is a real, billed run.
    async with httpx.AsyncClient(headers={"authorization": BASIC}) as raw:
        answer = await raw.post(
            server.base_url + "/v1/generate/custom/model_open-ai-sora-2",
            json={"prompt": "a fox", "duration": 4, "dryRun": True},
        )
    assert answer.status_code == 200
    assert emulator.charges == {answer.json()["job"]["jobId"]: 40}
    assert emulator.counters["body_dry_runs_billed"] == 1


async def test_429_on_create_is_retried_without_a_duplicate_job(client, emulator, sleeps, tmp_path):
    emulator.faults.add("create", Fault(status=429, body={"reason": "cooldown", "remainingSeconds": 2}))
    result = await generate(client, VideoRequest(prompt="a fox", duration=4), storage(tmp_path))
    assert sleeps.delays == [2.0]
    assert (emulator.counters["create_requests"], emulator.counters["jobs_created"]) == (2, 1)
    assert list(emulator.charges) == [result.job_id]


async def test_ambiguous_5xx_after_create_is_not_resent(client, emulator, sleeps):
    emulator.faults.add("create", Fault(status=502, after_create=True))
    with pytest.raises(ProviderUnavailable) as caught:
        await client.submit(plan())
    assert caught.value.maybe_created and "not re-sent" in str(caught.value)
    assert (emulator.counters["create_requests"], emulator.counters["jobs_created"], sleeps.delays) == (1, 1, [])


async def test_5xx_on_poll_is_retried(client, emulator, sleeps, tmp_path):
    emulator.faults.add("poll", Fault(status=503), times=2)
    result = await generate(client, VideoRequest(prompt="a fox", duration=4), storage(tmp_path))
    assert probe_video(result.video_uri).height == 720
    assert len(sleeps.delays) == 2 and emulator.counters["jobs_created"] == 1


async def test_dropped_download_is_resumed(client, emulator, tmp_path):
    emulator.faults.add("download", Fault(drop_after_bytes=2000))
    the_plan = plan(duration=4)
    job = await wait_for_job(client, await client.submit(the_plan))
    result = await store_video(client, the_plan, job, storage(tmp_path))  # resumed with Range (test_downloads.py)
    assert probe_video(result.video_uri).duration_seconds == pytest.approx(4, abs=0.01)
    assert (emulator.counters["downloads"], emulator.counters["jobs_created"]) == (2, 1)


@pytest.mark.parametrize(
    ("stage", "charged", "word"), [("prompt", False, "failed"), ("image", False, "failed"), ("output", True, "failure")]
)
async def test_content_policy_rejection(client, emulator, tmp_path, png, stage, charged, word):
    emulator.faults.add("create", Fault(reject=stage))
    request = VideoRequest(prompt="a fox", duration=4, image=str(png) if stage == "image" else None)
    with pytest.raises(ContentRejected) as caught:
        await generate(client, request, storage(tmp_path))
    error = caught.value
    assert (error.stage, error.charged, error.job.raw_status) == (stage, charged, word)
    assert emulator.counters["jobs_created"] == 1 and emulator.counters["create_requests"] == 1  # not re-sent
    assert emulator.charges == {error.job_id: 40 if charged else 0}  # reimbursed unless moderated after rendering


async def test_already_failed_create(client, emulator, tmp_path):
    emulator.faults.add("create", Fault(fail_on_create=True))
    with pytest.raises(JobFailed) as caught:
        await generate(client, VideoRequest(prompt="a fox", duration=4), storage(tmp_path))
    assert type(caught.value) is JobFailed and caught.value.charged is False
    assert emulator.counters["polls"] == 0 and emulator.charges == {caught.value.job_id: 0}


@pytest.mark.parametrize("with_image", [False, True])
async def test_retired_model_fails_before_any_spend(client, emulator, tmp_path, png, with_image):
    emulator.retired_models.add("model_open-ai-sora-2-pro")
    request = VideoRequest(prompt="a fox", model="sora-2-pro", image=str(png) if with_image else None)
    with pytest.raises(ModelUnavailable) as caught:
        await generate(client, request, storage(tmp_path))
    assert "scenario" in str(caught.value) and caught.value.model == "model_open-ai-sora-2-pro"
    assert (emulator.counters["jobs_created"], emulator.counters["uploads"]) == (0, 0)


async def test_bad_credentials_and_plan_limits_are_not_retried(server, emulator, sleeps):
    async with ScenarioVideoProvider(KEY, "wrong-secret", base_url=server.base_url + "/v1", sleep=sleeps) as wrong:
        with pytest.raises(AuthError, match="HTTP 401"):
            await wrong.submit(plan())
    assert emulator.counters["auth_failures"] == 1
    emulator.plan_limited_models.add("model_open-ai-sora-2")
    async with ScenarioVideoProvider(KEY, SECRET, base_url=server.base_url + "/v1", sleep=sleeps) as right:
        with pytest.raises(AuthError, match="plan"):
            await right.submit(plan())
    assert (emulator.counters["create_requests"], emulator.counters["jobs_created"], sleeps.delays) == (1, 0, [])


@pytest.mark.parametrize(
    ("model", "body", "status", "reason"),
    [
        ("model_open-ai-sora-2", {"prompt": "a fox", "duration": "4"}, 400, "must be a number"),
        ("model_open-ai-sora-2", {"prompt": "a fox", "duration": 5}, 400, "one of 4, 8, 12, 16, 20"),
        (
            "model_open-ai-sora-2",
            {"prompt": "a fox", "resolution": "high"},
            400,
            "Unknown parameter(s) for model_open-ai-sora-2: resolution",
        ),
        ("model_open-ai-sora-2-pro", {"prompt": "a fox", "resolution": "4k"}, 400, "resolution must be one of"),
        ("model_open-ai-sora-2", {"prompt": "a fox", "seconds": "4"}, 400, "Unknown parameter"),
        ("model_open-ai-sora-2", {"duration": 4}, 400, "prompt is required"),
        ("model_open-ai-sora-2", {"prompt": "a fox", "aspectRatio": "1:1"}, 400, "aspectRatio"),
        ("model_open-ai-sora-2", {"prompt": "a fox", "image": "asset_missing"}, 400, "asset_missing"),
        ("model_open-ai-sora-2", ["a fox"], 400, "JSON object"),
        ("model_gone", {"prompt": "a fox"}, 404, "Model not found"),
    ],
)
async def test_emulator_rejects_what_scenario_rejects(server, emulator, model, body, status, reason):
    async with httpx.AsyncClient(headers={"authorization": BASIC}) as raw:
        answer = await raw.post(f"{server.base_url}/v1/generate/custom/{model}", json=body)
    assert answer.status_code == status
    assert reason in answer.json()["reason"] and answer.json()["trace_id"]
    assert emulator.counters["jobs_created"] == 0


async def test_emulator_cdn_refuses_credentials_and_redirects(client, server, emulator):
    job = await wait_for_job(client, await client.submit(plan()))
    async with httpx.AsyncClient(base_url=server.base_url + "/v1", headers={"authorization": BASIC}) as raw:
        assert (await raw.get(f"jobs/{job.job_id}", headers={"authorization": "Basic bm9wZTpub3Bl"})).status_code == 401
        url = (await raw.get(f"assets/{job.provider_data['asset_ids'][0]}")).json()["asset"]["url"]
        assert (await raw.get(url)).status_code == 400  # a provider key sent to the CDN is refused
    async with httpx.AsyncClient() as anonymous:
        redirect = await anonymous.get(url)
        assert redirect.status_code == 302
        video = await anonymous.get(url, follow_redirects=True)
    assert video.headers["content-type"] == "video/mp4" and video.content[4:8] == b"ftyp"
    assert emulator.counters["cdn_auth_rejected"] == 1


async def test_generate_video_flow_with_the_block(prefect_server, server, emulator, tmp_path):
    from prefect.client.orchestration import get_client

    from prefect_videogen.flows import generate_video

    creds = ScenarioCredentials(
        api_key=KEY, api_secret=SECRET, base_url=server.base_url + "/v1", poll_interval_seconds=0.01
    )
    result = await generate_video(
        VideoRequest(prompt="a fox in the flow", duration=4, aspect_ratio="9:16"),
        provider=creds,
        storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
    )
    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height, round(probe.duration_seconds)) == (720, 1280, 4)
    assert (result.provider, result.model) == ("scenario", "sora-2")
    assert emulator.counters["jobs_created"] == 1 and emulator.charges == {result.job_id: 40}
    async with get_client() as prefect:
        runs = await prefect.read_flow_runs()
    stored = json.dumps([run.parameters for run in runs], default=str)
    assert KEY not in stored and SECRET not in stored  # the API server never saw the secrets


async def test_secrets_never_leak(server, emulator, tmp_path, debug_logs, sleeps):
    creds = ScenarioCredentials(
        api_key=KEY, api_secret=SECRET, base_url=server.base_url + "/v1", poll_interval_seconds=0.01
    )
    errors = []
    async with creds.get_client() as client:
        client.http.sleep = sleeps
        result = await generate(client, VideoRequest(prompt="a fox", duration=4), storage(tmp_path))
        emulator.faults.add("poll", Fault(status=503))
        emulator.faults.add("create", Fault(status=500, after_create=True))
        with pytest.raises(ProviderUnavailable) as ambiguous:
            await client.submit(plan())
        errors.append(ambiguous.value)
        emulator.faults.add("create", Fault(status=429, body={"reason": "cooldown", "remainingSeconds": 999}))
        with pytest.raises(RateLimited) as limited:
            await client.submit(plan())
        errors.append(limited.value)
    async with ScenarioVideoProvider(KEY, "not-the-secret", base_url=server.base_url + "/v1") as wrong:
        with pytest.raises(AuthError) as refused:
            await wrong.submit(plan())
        errors.append(refused.value)
    token = BASIC.split()[1]
    texts = [record.getMessage() for record in debug_logs.records]
    assert any("HTTP Request" in text for text in texts)  # httpx's own logs were captured
    texts += [str(e) for e in errors] + [repr(e) for e in errors] + [repr(creds), str(creds)]
    texts += [result.model_dump_json(), Path(result.sidecar_uri).read_text()]
    for text in texts:
        assert KEY not in text and SECRET not in text and token not in text
