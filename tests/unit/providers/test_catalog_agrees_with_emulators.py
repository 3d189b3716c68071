"""Every APIFrame and Scenario catalog row agrees with the emulator's own hand-written table (issue 17).

The emulators' tables are not generated from the catalog, so this is where a wrong row shows: for each
row and each duration, aspect ratio and tier it allows, the body the catalog builds (``wire_params``) is
sent over loopback HTTP and must be accepted, at the size the plan expects and the price the catalog
estimates; then once more with every optional field and provider option the row declares.
"""

from __future__ import annotations

import base64
import io
import itertools
import math

import httpx
import pytest
from PIL import Image

from prefect_videogen.catalog import DurationRange, load_catalog, wire_params
from prefect_videogen.models import VideoRequest
from prefect_videogen.spend.costs import estimate_cost
from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY, APIFrameEmulator
from prefect_videogen.testing.scenario_emulator import ScenarioEmulator
from prefect_videogen.testing.server import EmulatorServer

CATALOG = load_catalog()
SCENARIO_AUTH = {"authorization": "Basic " + base64.b64encode(b"emu-key:emu-secret").decode()}
# Never fetched by anyone: the request only needs image fields set for the catalog to check them.
IMAGE_URL = "http://127.0.0.1:9/frame.png"


def rows(provider: str) -> list[str]:
    return sorted(CATALOG.provider(provider).models)


def combinations(provider: str, key: str) -> list[tuple[int, str, str]]:
    spec = CATALOG.provider(provider).models[key]
    # A range: its ends and a middle value (every whole second of seedance's 4..15 at 21 sizes: 500 requests).
    durations = (
        sorted({spec.durations.min, (spec.durations.min + spec.durations.max) // 2, spec.durations.max})
        if isinstance(spec.durations, DurationRange)
        else spec.durations
    )
    return [
        (duration, aspect, tier)
        for duration, aspect, tier in itertools.product(durations, spec.aspect_ratios, spec.sizes)
        if aspect in spec.sizes[tier] or aspect == "adaptive"
    ]


def option_sample(option) -> object:
    if option.values:
        return option.values[-1]
    if option.type == "boolean":
        return True
    if option.type in ("integer", "number"):
        return option.max if option.max is not None else option.min if option.min is not None else 1
    return "wide"


def full_request(provider: str, key: str) -> VideoRequest:
    """The row's default clip with every optional field and declared provider option set."""
    entry = CATALOG.provider(provider)
    spec = entry.models[key]
    wire = entry.wire_for(spec)
    features = spec.features(wire)
    fields: dict = {
        "image": IMAGE_URL if "image" in features else None,
        "end_image": IMAGE_URL if "end_image" in features else None,
        "reference_images": [IMAGE_URL] * wire.max_reference_images if "reference_images" in features else [],
        "negative_prompt": "blurry, text" if "negative_prompt" in features else None,
        "seed": 4_294_967_295 if "seed" in features else None,
        "generate_audio": True if "generate_audio" in features else None,
        "provider_options": {name: option_sample(option) for name, option in wire.options.items()},
    }
    duration, aspect, _ = combinations(provider, key)[-1]
    return VideoRequest(prompt="a heron at dawn", model=key, duration=duration, aspect_ratio=aspect, **fields)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 18), (10, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def apiframe():
    with EmulatorServer(APIFrameEmulator(latency_seconds=0)) as server:
        yield server


@pytest.fixture(scope="module")
def scenario():
    with EmulatorServer(ScenarioEmulator(latency_seconds=0)) as server:
        yield server


def apiframe_submit(server: EmulatorServer, http: httpx.Client, plan, images: dict) -> dict:
    body = {"model": plan.spec.provider_model_id, "prompt": plan.request.prompt}
    body[plan.wire.params_object] = wire_params(plan, images)
    created = http.post("/v2/videos/generate", json=body)
    assert created.status_code == 202, (plan.request.model, body, created.text)
    view = http.get(f"/v2/jobs/{created.json()['jobId']}").json()
    job = server.emulator.jobs[view["id"]]
    return {"width": job["width"], "height": job["height"], "duration": job["duration"], "cost": view["creditCost"]}


def scenario_submit(server: EmulatorServer, http: httpx.Client, plan, images: dict) -> dict:
    body = {"prompt": plan.request.prompt, **wire_params(plan, images)}
    path = f"/v1/generate/custom/{plan.spec.provider_model_id}"
    quote = http.post(path, params={"dryRun": "true"}, json=body)
    created = http.post(path, json=body)
    assert created.status_code == 200, (plan.request.model, body, created.text)
    job = server.emulator.jobs[created.json()["job"]["jobId"]]
    assert quote.json()["creativeUnitsCost"] == created.json()["creativeUnitsCost"]
    return {
        "width": job["width"],
        "height": job["height"],
        "duration": job["duration"],
        "cost": created.json()["creativeUnitsCost"],
    }


def expected(plan) -> dict:
    # The providers bill whole units: a fractional estimate (a x0.4 model) is billed rounded up.
    estimate = estimate_cost(plan).amount
    return {
        "width": plan.width,
        "height": plan.height,
        "duration": plan.request.duration,
        "cost": math.ceil(round(estimate, 6)),
    }


@pytest.mark.parametrize("key", rows("apiframe"))
def test_apiframe_row_agrees_with_the_emulator(apiframe, key):
    with httpx.Client(base_url=apiframe.base_url, headers={"X-API-Key": EMULATOR_API_KEY}) as http:
        for duration, aspect, tier in combinations("apiframe", key):
            request = VideoRequest(prompt="a heron", model=key, duration=duration, aspect_ratio=aspect, resolution=tier)
            plan = CATALOG.plan("apiframe", request)
            assert apiframe_submit(apiframe, http, plan, {}) == expected(plan), (duration, aspect, tier)
        upload = http.post("/v2/uploads", files={"file": ("frame.png", png(), "image/png")}).json()["url"]
        plan = CATALOG.plan("apiframe", full_request("apiframe", key))
        images = {
            "image": upload,
            "end_image": upload,
            "reference_images": [upload] * len(plan.request.reference_images),
        }
        assert apiframe_submit(apiframe, http, plan, images) == expected(plan)


@pytest.mark.parametrize("key", rows("scenario"))
def test_scenario_row_agrees_with_the_emulator(scenario, key):
    with httpx.Client(base_url=scenario.base_url, headers=SCENARIO_AUTH) as http:
        for duration, aspect, tier in combinations("scenario", key):
            request = VideoRequest(prompt="a heron", model=key, duration=duration, aspect_ratio=aspect, resolution=tier)
            plan = CATALOG.plan("scenario", request)
            assert scenario_submit(scenario, http, plan, {}) == expected(plan), (duration, aspect, tier)
        uploaded = http.post("/v1/assets", json={"image": base64.b64encode(png()).decode(), "name": "frame"})
        asset = uploaded.json()["asset"]["id"]
        plan = CATALOG.plan("scenario", full_request("scenario", key))
        images = {"image": asset, "end_image": asset, "reference_images": [asset] * len(plan.request.reference_images)}
        assert scenario_submit(scenario, http, plan, images) == expected(plan)
