"""The APIFrame and Scenario emulators speak every model of their own tables strictly (issue 17).

Raw HTTP on 127.0.0.1 only. The expected sizes, durations and credits below are written out by hand
(from shared/provider-apis.md and the team's issue-17 notes), not read from the emulators' tables, so
a wrong table row fails here.
"""

from __future__ import annotations

import base64
import io
import json
import time

import httpx
import pytest
from PIL import Image
from pydantic import ValidationError

from prefect_videogen.cli import _parser, main
from prefect_videogen.media import probe_video
from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY, APIFrameEmulator
from prefect_videogen.testing.clips import still_clip
from prefect_videogen.testing.model_tables import APIFRAME_MODELS, SCENARIO_MODELS
from prefect_videogen.testing.scenario_emulator import ScenarioEmulator
from prefect_videogen.testing.server import EmulatorServer, free_port

AF_HEADERS = {"X-API-Key": EMULATOR_API_KEY}
SC_HEADERS = {"authorization": "Basic " + base64.b64encode(b"emu-key:emu-secret").decode()}


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), (200, 80, 20)).save(buffer, format="PNG")
    return buffer.getvalue()


def read_back(data: bytes) -> tuple[int, int, int]:
    probe = probe_video(io.BytesIO(data))
    return probe.width, probe.height, round(probe.duration_seconds)


# --- APIFrame ------------------------------------------------------------------------------------------

UP = "<upload>"  # replaced by a real upload URL of the emulator

# (model, parameter object, parameters, expected width, height, seconds, credits)
APIFRAME_CASES = [
    ("sora-2", "soraParams", {"duration": 8, "aspect_ratio": "9:16", "start_image": UP}, 720, 1280, 8, 8),
    ("sora-2-pro", "soraParams", {"duration": 4, "resolution": "high"}, 1920, 1080, 4, 20),
    (
        "veo-3.1",
        "veoParams",
        {
            "duration": 6,
            "aspect_ratio": "9:16",
            "resolution": "1080p",
            "image": UP,
            "last_frame": UP,
            "reference_images": [UP, UP, UP],
            "negative_prompt": "blur",
            "seed": 7,
            "generate_audio": True,
        },
        1080,
        1920,
        6,
        120,
    ),
    ("veo-3.1", "veoParams", {}, 1280, 720, 8, 120),  # defaults: 8 s, 720p, 16:9
    (
        "kling-2.1",
        "klingParams",
        {
            "duration": 10,
            "aspect_ratio": "1:1",
            "mode": "pro",
            "start_image": UP,
            "end_image": UP,
            "negative_prompt": "text",
            "cfg_scale": 0.5,
        },
        1080,
        1080,
        10,
        70,
    ),
    ("kling-2.1-master", "klingParams", {"duration": 5, "mode": "standard"}, 1280, 720, 5, 40),
    ("kling-2.5-turbo-pro", "klingParams", {"duration": 5, "aspect_ratio": "9:16"}, 720, 1280, 5, 20),
    ("kling-2.6", "klingParams", {}, 1280, 720, 5, 20),
    ("kling-3.0", "klingParams", {"duration": 10, "mode": "pro"}, 1920, 1080, 10, 70),
    (
        "seedance-2",
        "seedanceParams",
        {
            "duration": 7,
            "resolution": "480p",
            "aspect_ratio": "21:9",
            "start_image": UP,
            "end_image": UP,
            "reference_image_urls": [UP, UP, UP, UP],
            "generate_audio": False,
            "seed": 1,
            "camera_fixed": True,
            "return_last_frame": False,
            "web_search": False,
        },
        1120,
        480,
        7,
        35,
    ),
    (
        "seedance-2",
        "seedanceParams",
        {"duration": 4, "resolution": "1080p", "aspect_ratio": "adaptive"},
        1920,
        1080,
        4,
        80,
    ),
    ("seedance-2", "seedanceParams", {"duration": 15, "aspect_ratio": "3:4"}, 720, 960, 15, 150),
    ("hailuo-02", "hailuoParams", {"duration": 10, "resolution": "1080p"}, 1920, 1080, 10, 100),
    ("hailuo-2.3", "hailuoParams", {"duration": 6, "start_image": UP, "prompt_optimizer": True}, 1366, 768, 6, 36),
    ("hailuo-2.3-fast", "hailuoParams", {"duration": 6}, 1366, 768, 6, 18),
    (
        "luma-ray-2",
        "lumaParams",
        {"duration": 9, "aspect_ratio": "1:1", "resolution": "540p", "loop": True},
        540,
        540,
        9,
        54,
    ),
    ("luma-ray-flash-2", "lumaParams", {"duration": 5, "aspect_ratio": "9:16", "end_image": UP}, 720, 1280, 5, 20),
    ("luma-ray-flash-2", "lumaParams", {"duration": 9, "resolution": "540p"}, 960, 540, 9, 22),  # 21.6 billed as 22
    ("grok-imagine-video", "grokParams", {"duration": 6, "aspect_ratio": "1:1", "start_image": UP}, 720, 720, 6, 30),
]


@pytest.fixture(scope="module")
def apiframe_server():
    with EmulatorServer(APIFrameEmulator(latency_seconds=0)) as server:
        yield server


@pytest.fixture
def apiframe(apiframe_server):
    apiframe_server.emulator.reset()
    with httpx.Client(base_url=apiframe_server.base_url, headers=AF_HEADERS) as http:
        yield http


def apiframe_upload(http: httpx.Client) -> str:
    answer = http.post("/v2/uploads", files={"file": ("frame.png", png_bytes(), "image/png")})
    assert answer.status_code == 200, answer.text
    return answer.json()["url"]


def with_uploads(params: dict, marker: str, real: str) -> dict:
    """``params`` with every ``marker`` (alone or in a list) replaced by a real upload URL or asset id."""

    def one(value):
        return real if value == marker else value

    return {name: [one(v) for v in value] if isinstance(value, list) else one(value) for name, value in params.items()}


def test_every_apiframe_model_has_a_case():
    assert {case[0] for case in APIFRAME_CASES} == set(APIFRAME_MODELS)


@pytest.mark.parametrize(("model", "params_object", "params", "width", "height", "seconds", "credits"), APIFRAME_CASES)
def test_apiframe_model_served_at_its_size_duration_and_price(
    apiframe, apiframe_server, model, params_object, params, width, height, seconds, credits
):
    params = with_uploads(params, UP, apiframe_upload(apiframe))
    body = {"model": model, "prompt": "a heron at dawn", params_object: params}
    created = apiframe.post("/v2/videos/generate", json=body)
    assert created.status_code == 202, created.text
    job = apiframe.get(f"/v2/jobs/{created.json()['jobId']}").json()
    assert (job["status"], job["model"], job["creditCost"]) == ("COMPLETED", model, credits)
    assert apiframe_server.emulator.charges == {job["id"]: credits}
    with httpx.Client() as cdn:  # the CDN takes no key
        video = cdn.get(job["result"]["videoUrl"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert read_back(video.content) == (width, height, seconds)


def apiframe_refusal(http: httpx.Client, body: dict) -> dict:
    answer = http.post("/v2/videos/generate", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "Validation failed" and answer.headers["x-request-id"]
    return answer.json()["details"]


@pytest.mark.parametrize(
    ("model", "top", "path", "message"),
    [
        ("veo-3.1", {"veoParams": {"fps": 24}}, "veoParams.fps", "Unrecognized key"),  # unknown field
        ("veo-3.1", {"soraParams": {"duration": 8}}, "soraParams", "Unrecognized key"),  # another model's object
        ("kling-2.1", {"veoParams": {}}, "veoParams", "Unrecognized key"),
        ("veo-3.1", {"veoParams": []}, "veoParams", "Expected object, received array"),
        ("grok-imagine-video", {"grokParams": {"resolution": "720p"}}, "grokParams.resolution", "Unrecognized key"),
        ("hailuo-2.3", {"hailuoParams": {"aspect_ratio": "16:9"}}, "hailuoParams.aspect_ratio", "Unrecognized key"),
        ("kling-2.1", {"klingParams": {"resolution": "1080p"}}, "klingParams.resolution", "Unrecognized key"),
        ("veo-3.1", {"veoParams": {"duration": "8"}}, "veoParams.duration", "Expected integer 4 | 6 | 8, received '8'"),
        ("veo-3.1", {"veoParams": {"duration": 8.0}}, "veoParams.duration", "Expected integer 4 | 6 | 8"),
        ("veo-3.1", {"veoParams": {"duration": 5}}, "veoParams.duration", "Expected integer 4 | 6 | 8, received 5"),
        ("veo-3.1", {"veoParams": {"aspect_ratio": "1:1"}}, "veoParams.aspect_ratio", "Expected '16:9' | '9:16'"),
        ("veo-3.1", {"veoParams": {"generate_audio": "yes"}}, "veoParams.generate_audio", "Expected boolean"),
        ("veo-3.1", {"veoParams": {"seed": -1}}, "veoParams.seed", "Expected integer between 0 and 4294967295"),
        ("veo-3.1", {"veoParams": {"seed": True}}, "veoParams.seed", "Expected integer, received boolean"),
        ("veo-3.1", {"veoParams": {"negative_prompt": 3}}, "veoParams.negative_prompt", "Expected string"),
        ("veo-3.1", {"veoParams": {"image": "file:///fox.png"}}, "veoParams.image", "Invalid url"),
        ("veo-3.1", {"veoParams": {"last_frame": "fox.png"}}, "veoParams.last_frame", "Invalid url"),
        (
            "veo-3.1",
            {"veoParams": {"reference_images": ["https://127.0.0.1/a.png", "ftp://127.0.0.1/b.png"]}},
            "veoParams.reference_images.1",
            "Invalid url",
        ),
        (
            "veo-3.1",
            {"veoParams": {"reference_images": "https://127.0.0.1/a.png"}},
            "veoParams.reference_images",
            "Expected array",
        ),
        ("veo-3.1", {"veoParams": {"reference_images": [7]}}, "veoParams.reference_images.0", "Expected string"),
        (
            "veo-3.1",
            {"veoParams": {"reference_images": ["https://127.0.0.1/a.png"] * 4}},
            "veoParams.reference_images",
            "Array must contain at most 3 element(s)",
        ),
        ("kling-2.1", {"klingParams": {"duration": 6}}, "klingParams.duration", "Expected integer 5 | 10"),
        ("kling-2.1", {"klingParams": {"mode": "1080p"}}, "klingParams.mode", "Expected 'standard' | 'pro'"),
        ("kling-2.1", {"klingParams": {"cfg_scale": 1.5}}, "klingParams.cfg_scale", "Expected number between 0 and 1"),
        ("seedance-2", {"seedanceParams": {"duration": 16}}, "seedanceParams.duration", "between 4 and 15"),
        ("seedance-2", {"seedanceParams": {"aspect_ratio": "5:4"}}, "seedanceParams.aspect_ratio", "'adaptive'"),
        ("luma-ray-2", {"lumaParams": {"resolution": "1080p"}}, "lumaParams.resolution", "Expected '540p' | '720p'"),
        ("hailuo-02", {"hailuoParams": {"duration": 8}}, "hailuoParams.duration", "Expected integer 6 | 10"),
        ("grok-imagine-video", {"grokParams": {"duration": 10}}, "grokParams.duration", "Expected integer 6"),
        (
            "sora-2",
            {"soraParams": {"last_frame": "https://127.0.0.1/a.png"}},
            "soraParams.last_frame",
            "Unrecognized key",
        ),
        ("veo-3.1", {"prompt": "x" * 4001}, "prompt", "between 1 and 4000"),
    ],
)
def test_apiframe_refuses_what_the_model_does_not_take(apiframe, apiframe_server, model, top, path, message):
    details = apiframe_refusal(apiframe, {"model": model, "prompt": "a heron", **top})
    assert path in details, details
    assert any(message in text for text in details[path]), details[path]
    assert apiframe_server.emulator.counters["jobs_created"] == 0


def test_apiframe_upload_urls_must_name_real_uploads(apiframe, apiframe_server):
    real = apiframe_upload(apiframe)
    gone = real.rsplit("/", 1)[0] + "/0123456789abcdef"
    body = {"model": "seedance-2", "prompt": "a heron", "seedanceParams": {"reference_image_urls": [real, gone]}}
    details = apiframe_refusal(apiframe, body)
    assert details == {"seedanceParams.reference_image_urls.1": ["Image could not be fetched"]}
    body = {"model": "kling-2.1", "prompt": "a heron", "klingParams": {"end_image": gone}}
    assert apiframe_refusal(apiframe, body) == {"klingParams.end_image": ["Image could not be fetched"]}
    assert apiframe_server.emulator.counters["jobs_created"] == 0


def test_apiframe_unknown_model_is_not_found(apiframe, apiframe_server):
    answer = apiframe.post("/v2/videos/generate", json={"model": "veo-9", "prompt": "a heron", "veoParams": {}})
    assert (answer.status_code, answer.json()) == (404, {"error": "Model not found: veo-9"})
    assert apiframe_server.emulator.counters["jobs_created"] == 0


def test_apiframe_too_few_credits_for_the_models_price(apiframe, apiframe_server):
    apiframe_server.emulator.credits_available = 119  # veo-3.1 1080p 6 s costs 120
    body = {"model": "veo-3.1", "prompt": "a heron", "veoParams": {"duration": 6, "resolution": "1080p"}}
    answer = apiframe.post("/v2/videos/generate", json=body)
    assert answer.status_code == 402 and answer.json()["creditsRequired"] == 120
    assert apiframe_server.emulator.counters["jobs_created"] == 0


# --- Scenario ------------------------------------------------------------------------------------------

ASSET = "<asset>"

# (model id, body without prompt, expected width, height, seconds, creative units)
SCENARIO_CASES = [
    ("model_open-ai-sora-2", {"duration": 8, "aspectRatio": "9:16", "image": ASSET}, 720, 1280, 8, 80),
    ("model_open-ai-sora-2-pro", {"duration": 4, "resolution": "high"}, 1920, 1080, 4, 200),
    (
        "model_veo3-1",
        {
            "image": ASSET,
            "lastFrameImage": ASSET,
            "referenceImages": [ASSET, ASSET, ASSET],
            "referenceImagesType": "STYLE",
            "negativePrompt": "blur",
            "resolution": "1080p",
        },
        1920,
        1080,
        8,
        480,
    ),
    ("model_veo3-1", {}, 1280, 720, 8, 320),
    (
        "model_veo3",
        {
            "duration": 6,
            "aspectRatio": "9:16",
            "resolution": "720p",
            "generateAudio": True,
            "seed": 3,
            "negativePrompt": "blur",
            "image": ASSET,
        },
        720,
        1280,
        6,
        240,
    ),
    ("model_veo3", {"duration": 4.0, "resolution": "1080p"}, 1920, 1080, 4, 240),
    (
        "model_kling-v3-t2v-4k",
        {
            "duration": "10",
            "aspectRatio": "16:9",
            "generateAudio": False,
            "shotType": "wide",
            "cfgScale": 0.5,
            "negativePrompt": "text",
        },
        3840,
        2160,
        10,
        800,
    ),
    ("model_kling-v3-t2v-4k", {"duration": "5", "aspectRatio": "1:1"}, 2160, 2160, 5, 400),
]


@pytest.fixture(scope="module")
def scenario_server():
    with EmulatorServer(ScenarioEmulator(latency_seconds=0)) as server:
        yield server


@pytest.fixture
def scenario(scenario_server):
    scenario_server.emulator.reset()
    with httpx.Client(base_url=scenario_server.base_url + "/v1", headers=SC_HEADERS) as http:
        yield http


def scenario_upload(http: httpx.Client) -> str:
    answer = http.post("/assets", json={"image": base64.b64encode(png_bytes()).decode(), "name": "frame"})
    assert answer.status_code == 200, answer.text
    return answer.json()["asset"]["id"]


def test_every_scenario_model_has_a_case():
    assert {case[0] for case in SCENARIO_CASES} == set(SCENARIO_MODELS)


@pytest.mark.parametrize(("model", "params", "width", "height", "seconds", "units"), SCENARIO_CASES)
def test_scenario_model_served_at_its_size_duration_and_price(
    scenario, scenario_server, model, params, width, height, seconds, units
):
    body = {"prompt": "a heron at dawn", **with_uploads(params, ASSET, scenario_upload(scenario))}
    quote = scenario.post(f"/generate/custom/{model}", params={"dryRun": "true"}, json=body)
    assert (quote.status_code, quote.json()["creativeUnitsCost"]) == (269, units)
    created = scenario.post(f"/generate/custom/{model}", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["creativeUnitsCost"] == units
    job = scenario.get(f"/jobs/{created.json()['job']['jobId']}").json()["job"]
    assert job["status"] == "success" and scenario_server.emulator.charges == {job["jobId"]: units}
    asset_view = scenario.get(f"/assets/{job['metadata']['assetIds'][0]}").json()["asset"]
    assert (asset_view["metadata"]["width"], asset_view["metadata"]["height"]) == (width, height)
    with httpx.Client() as cdn:  # the CDN takes no Authorization header
        video = cdn.get(asset_view["url"], follow_redirects=True)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert read_back(video.content) == (width, height, seconds)


@pytest.mark.parametrize(
    ("model", "params", "reason"),
    [
        ("model_kling-v3-t2v-4k", {"duration": 5}, "duration must be a string, got int"),
        ("model_kling-v3-t2v-4k", {"duration": "7"}, "duration must be one of 5, 10"),
        ("model_kling-v3-t2v-4k", {"image": ASSET}, "Unknown parameter(s) for model_kling-v3-t2v-4k: image"),
        ("model_kling-v3-t2v-4k", {"cfgScale": 1.5}, "cfgScale must be between 0 and 1"),
        ("model_kling-v3-t2v-4k", {"resolution": "4k"}, "Unknown parameter(s) for model_kling-v3-t2v-4k: resolution"),
        ("model_veo3", {"duration": "8"}, "duration must be a number, got str"),
        ("model_veo3", {"duration": 5}, "duration must be one of 4, 6, 8"),
        ("model_veo3", {"resolution": "4k"}, "resolution must be one of 720p, 1080p"),
        ("model_veo3", {"generateAudio": "true"}, "generateAudio must be a boolean, got str"),
        ("model_veo3", {"seed": -1}, "seed must be between 0 and 4294967295"),
        ("model_veo3", {"aspectRatio": "1:1"}, "aspectRatio must be one of 16:9, 9:16"),
        ("model_veo3", {"negative_prompt": "blur"}, "Unknown parameter(s) for model_veo3: negative_prompt"),
        ("model_veo3-1", {"duration": 8}, "Unknown parameter(s) for model_veo3-1: duration"),
        ("model_veo3-1", {"aspectRatio": "16:9"}, "Unknown parameter(s) for model_veo3-1: aspectRatio"),
        ("model_veo3-1", {"referenceImages": [ASSET] * 4}, "referenceImages takes at most 3 asset id(s)"),
        ("model_veo3-1", {"referenceImages": []}, "referenceImages takes at least 1 asset id(s)"),
        ("model_veo3-1", {"referenceImages": ASSET}, "referenceImages must be a list of asset ids"),
        ("model_veo3-1", {"referenceImages": [ASSET, "asset_missing"]}, "'asset_missing' not found"),
        ("model_veo3-1", {"lastFrameImage": "asset_gone"}, "lastFrameImage must be the id of an uploaded image asset"),
        ("model_veo3-1", {"referenceImagesType": "LOOK"}, "referenceImagesType must be one of ASSET, STYLE"),
        ("model_open-ai-sora-2", {"resolution": "high"}, "Unknown parameter(s) for model_open-ai-sora-2: resolution"),
    ],
)
def test_scenario_refuses_what_the_model_does_not_take(scenario, scenario_server, model, params, reason):
    params = with_uploads(params, ASSET, scenario_upload(scenario))
    answer = scenario.post(f"/generate/custom/{model}", json={"prompt": "a heron", **params})
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["reason"] and answer.json()["trace_id"]
    assert scenario_server.emulator.counters["jobs_created"] == 0


def test_scenario_model_description_and_unknown_model(scenario):
    veo = scenario.get("/models/model_veo3-1")
    assert veo.status_code == 200
    model = veo.json()["model"]
    assert model["inputs"] == sorted(
        ["prompt", "image", "lastFrameImage", "referenceImages", "referenceImagesType", "negativePrompt", "resolution"]
    )
    assert model["parameters"]["resolution"] == {"type": "string", "values": ["720p", "1080p"]}
    assert "img2video" in model["capabilities"]
    assert "img2video" not in scenario.get("/models/model_kling-v3-t2v-4k").json()["model"]["capabilities"]
    missing = scenario.get("/models/model_nope")
    assert missing.status_code == 404 and missing.json()["reason"] == "Model not found"
    generate = scenario.post("/generate/custom/model_nope", json={"prompt": "a heron"})
    assert generate.status_code == 404 and generate.json()["reason"] == "Model not found"


# --- extra models from a file, and the CLI ---------------------------------------------------------------

ACME_APIFRAME = {
    "acme-video-1": {
        "params_object": "acmeParams",
        "fields": {
            "seconds": {"type": "integer", "values": [3, 6]},
            "ratio": {"type": "string", "values": ["16:9", "4:5"]},
            "quality": {"type": "string", "values": ["draft", "final"]},
            "first_frame": {"type": "url"},
        },
        "duration_field": "seconds",
        "aspect_field": "ratio",
        "tier_field": "quality",
        "default_duration": 3,
        "default_tier": "draft",
        "sizes": {"draft": {"16:9": "640x360", "4:5": "576x720"}, "final": {"16:9": "1280x720", "4:5": "864x1080"}},
        "credits_per_clip": {"draft": {"3": 2, "6": 4}},
        "credits_per_second": {"final": 3},
    }
}
ACME_SCENARIO = {
    "model_acme-clip": {
        "fields": {"clipLength": {"type": "number", "values": [2, 4]}, "startAsset": {"type": "asset"}},
        "duration_field": "clipLength",
        "default_duration": 2,
        "default_tier": "hd",
        "sizes": {"hd": {"16:9": "1280x720"}},
        "credits_per_second": {"hd": 7},
    }
}


def test_apiframe_extra_model_from_a_json_file(tmp_path):
    path = tmp_path / "models.json"
    path.write_text(json.dumps(ACME_APIFRAME))
    with (
        EmulatorServer(APIFrameEmulator(latency_seconds=0, extra_models=str(path))) as server,
        httpx.Client(base_url=server.base_url, headers=AF_HEADERS) as http,
    ):
        body = {
            "model": "acme-video-1",
            "prompt": "a heron",
            "acmeParams": {"seconds": 6, "ratio": "4:5", "quality": "final"},
        }
        created = http.post("/v2/videos/generate", json=body)
        assert created.status_code == 202, created.text
        job = http.get(f"/v2/jobs/{created.json()['jobId']}").json()
        assert job["creditCost"] == 18
        assert read_back(httpx.get(job["result"]["videoUrl"]).content) == (864, 1080, 6)
        refused = http.post("/v2/videos/generate", json={**body, "acmeParams": {"seconds": 4}})
        assert refused.status_code == 400 and "acmeParams.seconds" in refused.json()["details"]
        foreign = http.post("/v2/videos/generate", json={**body, "veoParams": {}})
        assert foreign.json()["details"] == {"veoParams": ["Unrecognized key"]}
        # the built-in models are still served beside it
        assert http.post("/v2/videos/generate", json={"model": "veo-3.1", "prompt": "a heron"}).status_code == 202
        assert server.emulator.counters["jobs_created"] == 2


def test_scenario_extra_model_from_a_mapping():
    with (
        EmulatorServer(ScenarioEmulator(latency_seconds=0, extra_models=ACME_SCENARIO)) as server,
        httpx.Client(base_url=server.base_url + "/v1", headers=SC_HEADERS) as http,
    ):
        created = http.post("/generate/custom/model_acme-clip", json={"prompt": "a heron", "clipLength": 4})
        assert created.status_code == 200 and created.json()["creativeUnitsCost"] == 28
        refused = http.post("/generate/custom/model_acme-clip", json={"prompt": "a heron", "startAsset": "asset_x"})
        assert refused.status_code == 400 and "'asset_x' not found" in refused.json()["reason"]
        assert server.emulator.counters["jobs_created"] == 1


@pytest.mark.parametrize(
    ("emulator", "tables", "error"),
    [
        (APIFrameEmulator, ACME_SCENARIO, "need a params_object"),  # a flat table on APIFrame
        (ScenarioEmulator, ACME_APIFRAME, "flat body"),
        (APIFrameEmulator, {"x": {**ACME_APIFRAME["acme-video-1"], "credits_per_second": {}}}, "'final' has no price"),
        (APIFrameEmulator, {"x": {**ACME_APIFRAME["acme-video-1"], "colour": "red"}}, "colour"),
        (APIFrameEmulator, {"x": {**ACME_APIFRAME["acme-video-1"], "duration_field": "length"}}, "length"),
        (ScenarioEmulator, {"x": {**ACME_SCENARIO["model_acme-clip"], "sizes": {"hd": {"16:9": "1281x720"}}}}, "even"),
    ],
)
def test_a_table_off_the_format_is_refused(emulator, tables, error):
    with pytest.raises((ValueError, ValidationError), match=error):
        emulator(extra_models=tables)


def test_cli_emulator_models_flag_is_parsed():
    args = _parser().parse_args(["emulator", "apiframe", "--models", "models.json", "--port", "9000"])
    assert (args.provider, args.models, args.port) == ("apiframe", "models.json", 9000)
    assert _parser().parse_args(["emulator", "scenario"]).models is None


@pytest.fixture
def cli_emulators(monkeypatch):
    """``prefect-videogen emulator`` run in-process: its server starts in the background instead of
    blocking in the foreground, so the test can talk to it and stop it."""
    started: list[EmulatorServer] = []

    def in_background(self: EmulatorServer) -> None:
        started.append(self.start())

    monkeypatch.setattr(EmulatorServer, "serve_forever", in_background)
    yield started
    for server in started:
        server.stop()


def test_cli_emulator_serves_the_models_file(tmp_path, cli_emulators, capsys):
    path = tmp_path / "models.json"
    path.write_text(json.dumps(ACME_SCENARIO))
    port = free_port()
    assert main(["emulator", "scenario", "--models", str(path), "--port", str(port), "--latency", "0"]) == 0
    assert f"127.0.0.1:{port}" in capsys.readouterr().out
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", headers=SC_HEADERS) as http:
        model = http.get("/models/model_acme-clip")
        assert model.status_code == 200 and model.json()["model"]["inputs"] == ["clipLength", "prompt", "startAsset"]
        assert http.get("/models/model_veo3").status_code == 200  # the built-in models too


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["emulator", "apiframe", "--models", "{bad}"], "default_duration"),
        (["emulator", "apiframe", "--models", "{missing}"], "No such file"),
        (["emulator", "openai", "--models", "{bad}"], "fixed model list"),
    ],
)
def test_cli_emulator_refuses_a_bad_models_file(tmp_path, cli_emulators, capsys, argv, error):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"x": {"fields": {}}}))
    argv = [arg.format(bad=bad, missing=tmp_path / "missing.json") for arg in argv]
    assert main(argv) == 2
    assert "--models" in (err := capsys.readouterr().err) and error in err
    assert cli_emulators == []  # nothing was started


def test_a_4k_clip_is_cheap_and_exact():
    still_clip.cache_clear()
    started = time.process_time()
    data = still_clip(3840, 2160, 10)
    assert time.process_time() - started < 3.0  # measured about 0.6 s; the title card takes about 7.5 s
    assert read_back(data) == (3840, 2160, 10)
