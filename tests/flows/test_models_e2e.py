"""Every catalog model of the seed providers, end to end on its strict emulator (issue 17).

The emulators check each body against their OWN per-model tables (testing/model_tables.py, written by
hand), so a wrong catalog row (a field name, a value, a parameter object, a price) fails here.

- Provider-client path for every model: submit, poll, download over loopback HTTP, the stored MP4
  read back with PyAV (size and duration), the credits the emulator charged equal to the catalog's
  estimate; image-to-video, end frame and reference images wherever the model has them.
- The Prefect flow path (ledger booked) for a representative subset.
- A model added only in a JSON override file, on an emulator told about it, with no Python change.
- The done-when command: ``prefect-videogen generate "a heron at dawn" --provider apiframe --model
  veo-3.1 --duration 8 --aspect 16:9`` against the APIFrame emulator.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from PIL import Image
from prefect.settings import PREFECT_API_URL

from prefect_videogen.blocks import APIFrameCredentials, LocalVideoStorage, ScenarioCredentials
from prefect_videogen.catalog import CATALOG_ENV, load_catalog
from prefect_videogen.flows import generate_video
from prefect_videogen.media import probe_video
from prefect_videogen.models import VideoRequest
from prefect_videogen.pipeline import generate
from prefect_videogen.providers.apiframe import APIFrameVideoProvider
from prefect_videogen.providers.scenario import ScenarioVideoProvider
from prefect_videogen.spend.costs import estimate_cost
from prefect_videogen.spend.ledger import Ledger
from prefect_videogen.storage import VideoStorage
from prefect_videogen.testing import APIFrameEmulator, EmulatorServer, ScenarioEmulator
from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY

from fakes import SleepRecorder

SCENARIO_KEY, SCENARIO_SECRET = "emu-key", "emu-secret"

# --- a model that exists only in JSON: the catalog override and the emulators' own tables -----------

OVERRIDE_CATALOG = {
    "providers": {
        "apiframe": {
            "models": {
                "wan-9-turbo": {
                    "provider_model_id": "wan-9-turbo",
                    "description": "Made up: a model APIFrame added after this release.",
                    "status": "unconfirmed",
                    "source": "test fixture, 2026-11-30",
                    "unconfirmed": ["everything"],
                    "durations": [3, 7],
                    "aspect_ratios": ["16:9", "1:1"],
                    "sizes": {"480p": {"16:9": "854x480", "1:1": "480x480"}},
                    "wire": {
                        "params_object": "wanParams",
                        "fields": {"duration": "length", "aspect_ratio": "ratio", "image": "first_frame"},
                        "options": {"motion": {"type": "integer", "min": 1, "max": 10}},
                    },
                    "price": {"unit": "credits", "per_second": {"480p": 3}, "usd_per_unit": 0.01, "source": "test"},
                }
            }
        },
        "scenario": {
            "models": {
                "made-up": {
                    "provider_model_id": "model_made-up-video",
                    "source": "test fixture, 2026-11-30",
                    "durations": [3, 6],
                    "aspect_ratios": ["16:9"],
                    "sizes": {"hd": {"16:9": "1280x720"}},
                    "wire": {
                        "fields": {"duration": "seconds", "image": "sourceImage"},
                        "duration_type": "string",
                        "options": {"style": {"type": "string", "values": ["calm", "wild"]}},
                    },
                    "price": {"unit": "creative_units", "per_second": {"hd": 7}, "usd_per_unit": 0.01},
                }
            }
        },
    }
}
APIFRAME_TABLES = {
    "wan-9-turbo": {
        "params_object": "wanParams",
        "fields": {
            "length": {"type": "integer", "values": [3, 7]},
            "ratio": {"type": "string", "values": ["16:9", "1:1"]},
            "first_frame": {"type": "url"},
            "motion": {"type": "integer", "min": 1, "max": 10},
        },
        "duration_field": "length",
        "aspect_field": "ratio",
        "default_duration": 3,
        "default_tier": "480p",
        "sizes": {"480p": {"16:9": "854x480", "1:1": "480x480"}},
        "credits_per_second": {"480p": 3},
    }
}
SCENARIO_TABLES = {
    "model_made-up-video": {
        "fields": {
            "seconds": {"type": "string", "values": ["3", "6"]},
            "sourceImage": {"type": "asset"},
            "style": {"type": "string", "values": ["calm", "wild"]},
        },
        "duration_field": "seconds",
        "default_duration": 3,
        "default_tier": "hd",
        "sizes": {"hd": {"16:9": "1280x720"}},
        "credits_per_second": {"hd": 7},
    }
}


@pytest.fixture(scope="module")
def apiframe():
    with EmulatorServer(APIFrameEmulator(latency_seconds=0.05, extra_models=APIFRAME_TABLES)) as server:
        yield server


@pytest.fixture(scope="module")
def scenario():
    emulator = ScenarioEmulator(
        api_key=SCENARIO_KEY, api_secret=SCENARIO_SECRET, latency_seconds=0.05, extra_models=SCENARIO_TABLES
    )
    with EmulatorServer(emulator) as server:
        yield server


@pytest.fixture
def frames(tmp_path) -> list[str]:
    """Three small distinct PNGs: start frame, end frame, reference."""
    paths = []
    for index, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        path = tmp_path / f"frame-{index}.png"
        Image.new("RGB", (96, 54), colour).save(path)
        paths.append(str(path))
    return paths


def client_for(provider: str, server: EmulatorServer):
    if provider == "apiframe":
        return APIFrameVideoProvider(
            EMULATOR_API_KEY, base_url=server.base_url, poll_interval_seconds=0.01, sleep=SleepRecorder()
        )
    return ScenarioVideoProvider(
        SCENARIO_KEY, SCENARIO_SECRET, base_url=server.base_url + "/v1", poll_interval=0.01, sleep=SleepRecorder()
    )


def shortest(spec) -> int:
    return spec.durations[0] if isinstance(spec.durations, list) else spec.durations.min


def model_cases() -> list[tuple[str, str]]:
    catalog = load_catalog()
    return [(name, key) for name in ("apiframe", "scenario") for key in sorted(catalog.provider(name).models)]


def sent_params(provider: str, emulator, job_id: str, plan) -> dict:
    """The model's parameters as the emulator received them for ``job_id``."""
    if provider == "apiframe":
        body = emulator.jobs[job_id]["input"]
        assert set(body) == {"model", "prompt", plan.wire.params_object}
        assert body["model"] == plan.spec.provider_model_id
        return body[plan.wire.params_object]
    body = dict(emulator.requests[-1]["body"])
    assert body.pop("prompt") == plan.request.prompt
    return body


async def run_model(provider, server, request, tmp_path):
    """Generate ``request`` on the emulator; return (plan, result, charged), all checks done."""
    emulator = server.emulator
    plan = load_catalog().plan(provider, request)
    async with client_for(provider, server) as client:
        result = await generate(client, request, VideoStorage(str(tmp_path / "videos")))
    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height) == (plan.width, plan.height), (provider, request.model)
    assert abs(probe.duration_seconds - request.duration) < 0.5, (provider, request.model, probe.duration_seconds)
    charged = emulator.charges[result.job_id]
    # The emulator prices from its own table; the catalog's estimate must agree (APIFrame bills whole credits).
    assert charged == pytest.approx(estimate_cost(plan).amount, abs=0.999), (provider, request.model)
    return plan, result, charged


@pytest.mark.parametrize(("provider", "model"), model_cases())
async def test_every_model_text_to_video(provider, model, apiframe, scenario, tmp_path):
    server = apiframe if provider == "apiframe" else scenario
    spec = load_catalog().provider(provider).models[model]
    # A non-default aspect where the model has one, so the aspect field is exercised too.
    aspect = spec.aspect_ratios[-1]
    request = VideoRequest(prompt=f"a heron at dawn {model}", model=model, duration=shortest(spec), aspect_ratio=aspect)
    plan, result, _ = await run_model(provider, server, request, tmp_path)
    params = sent_params(provider, server.emulator, result.job_id, plan)
    for field, wire_name in plan.wire.fields.items():
        if field in ("duration", "aspect_ratio", "resolution"):
            assert wire_name in params, (model, field)  # what the request sets is on the wire, under its name
    assert not {"image", "start_image", "last_frame", "end_image"} & set(params)


def image_cases() -> list[tuple[str, str, str]]:
    catalog = load_catalog()
    cases = []
    for provider, model in model_cases():
        entry = catalog.provider(provider)
        features = entry.models[model].features(entry.wire_for(entry.models[model]))
        if "image" in features:
            cases.append((provider, model, "image+end_image" if "end_image" in features else "image"))
        if "reference_images" in features:
            cases.append((provider, model, "reference_images"))
    return cases


@pytest.mark.parametrize(("provider", "model", "inputs"), image_cases())
async def test_every_model_with_images(provider, model, inputs, apiframe, scenario, tmp_path, frames):
    server = apiframe if provider == "apiframe" else scenario
    emulator = server.emulator
    spec = load_catalog().provider(provider).models[model]
    fields: dict = {"image": frames[0]}
    if inputs == "image+end_image":
        fields["end_image"] = frames[1]
    if inputs == "reference_images":
        fields = {"reference_images": frames[:2]}
    uploads_before = emulator.counters["uploads"]
    request = VideoRequest(prompt=f"a heron lands {model}", model=model, duration=shortest(spec), **fields)
    plan, result, _ = await run_model(provider, server, request, tmp_path)
    params = sent_params(provider, emulator, result.job_id, plan)
    names = plan.wire.fields
    sent = [params[names[field]] for field in fields]
    flat = [item for value in sent for item in (value if isinstance(value, list) else [value])]
    assert len(flat) == len(set(flat)) == emulator.counters["uploads"] - uploads_before  # one upload per image
    if provider == "apiframe":
        assert all(url.startswith(f"{server.base_url}/cdn/uploads/") for url in flat)
    else:
        assert all(emulator.assets[asset]["bytes"] == Path(frames[i]).read_bytes() for i, asset in enumerate(flat))


async def test_a_url_reference_image_is_passed_through_unfetched(apiframe, tmp_path):
    url = "https://images.example/heron.png"
    request = VideoRequest(prompt="a heron", model="seedance-2", duration=4, reference_images=[url], end_image=url)
    uploads = apiframe.emulator.counters["uploads"]
    plan, result, _ = await run_model("apiframe", apiframe, request, tmp_path)
    params = apiframe.emulator.jobs[result.job_id]["input"]["seedanceParams"]
    assert (params["reference_image_urls"], params["end_image"]) == ([url], url)
    assert apiframe.emulator.counters["uploads"] == uploads


# --- the Prefect flow path, ledger included: a representative subset ----------------------------------


async def ledger_total(storage: LocalVideoStorage) -> tuple[list, float]:
    entries = await Ledger(storage.get_storage()).entries()
    return entries, sum(e.charged_amount for e in entries)


@pytest.mark.parametrize(
    ("provider", "fields", "credits"),
    [
        ("apiframe", {"model": "kling-2.1", "duration": 10, "resolution": "1080p", "aspect_ratio": "1:1"}, 70),
        ("scenario", {"model": "veo-3.1", "duration": 8, "negative_prompt": "rain"}, 320),
    ],
)
async def test_flow_books_the_charge(prefect_server, apiframe, scenario, tmp_path, frames, provider, fields, credits):
    server = apiframe if provider == "apiframe" else scenario
    if provider == "apiframe":
        block = APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=server.base_url, poll_interval_seconds=0.01)
        fields = {**fields, "image": frames[0], "end_image": frames[1]}
    else:
        block = ScenarioCredentials(
            api_key=SCENARIO_KEY,
            api_secret=SCENARIO_SECRET,
            base_url=server.base_url + "/v1",
            poll_interval_seconds=0.01,
        )
        fields = {**fields, "reference_images": frames, "provider_options": {"referenceImagesType": "STYLE"}}
    storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
    result = await generate_video(
        VideoRequest(prompt=f"a heron at dawn {uuid.uuid4().hex[:6]}", **fields), provider=block, storage=storage
    )
    probe = probe_video(result.video_uri)
    plan = load_catalog().plan(provider, VideoRequest(prompt="x", **fields))
    assert (probe.width, probe.height) == (plan.width, plan.height)
    assert abs(probe.duration_seconds - fields["duration"]) < 0.5
    assert server.emulator.charges[result.job_id] == credits
    entries, total = await ledger_total(storage)
    assert [e.job_id for e in entries] == [result.job_id] and total == credits


# --- a model only in a JSON override: no Python change --------------------------------------------------


@pytest.fixture
def override(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "catalog-override.json"
    path.write_text(json.dumps(OVERRIDE_CATALOG))
    monkeypatch.setenv(CATALOG_ENV, str(path))
    return path


async def test_override_only_models_generate_end_to_end(prefect_server, override, apiframe, scenario, tmp_path, frames):
    storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
    af_block = APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=apiframe.base_url, poll_interval_seconds=0.01)
    sc_block = ScenarioCredentials(
        api_key=SCENARIO_KEY, api_secret=SCENARIO_SECRET, base_url=scenario.base_url + "/v1", poll_interval_seconds=0.01
    )
    tag = uuid.uuid4().hex[:6]
    made_up = VideoRequest(
        prompt=f"a heron {tag}",
        model="wan-9-turbo",
        duration=7,
        aspect_ratio="1:1",
        image=frames[0],
        provider_options={"motion": 4},
    )
    first = await generate_video(made_up, provider=af_block, storage=storage)
    probe = probe_video(first.video_uri)
    assert (probe.width, probe.height) == (480, 480) and abs(probe.duration_seconds - 7) < 0.5
    body = apiframe.emulator.jobs[first.job_id]["input"]
    assert body["model"] == "wan-9-turbo" and set(body) == {"model", "prompt", "wanParams"}
    assert body["wanParams"]["length"] == 7 and body["wanParams"]["ratio"] == "1:1" and body["wanParams"]["motion"] == 4
    assert body["wanParams"]["first_frame"].startswith(f"{apiframe.base_url}/cdn/uploads/")
    assert apiframe.emulator.charges[first.job_id] == 21

    second = await generate_video(
        VideoRequest(
            prompt=f"a heron {tag}", model="made-up", duration=6, image=frames[1], provider_options={"style": "calm"}
        ),
        provider=sc_block,
        storage=storage,
    )
    probe = probe_video(second.video_uri)
    assert (probe.width, probe.height) == (1280, 720) and abs(probe.duration_seconds - 6) < 0.5
    sent = scenario.emulator.requests[-1]["body"]
    assert sent["seconds"] == "6" and sent["style"] == "calm" and sent["sourceImage"] in scenario.emulator.assets
    assert scenario.emulator.charges[second.job_id] == 42
    _, total = await ledger_total(storage)
    assert total == 21 + 42


def test_override_models_are_unknown_without_the_file():
    assert load_catalog().provider("apiframe").find("wan-9-turbo") is None  # the override, not code, adds it


# --- done when: the command against the APIFrame emulator ---------------------------------------


def test_done_when_cli_generates_veo_3_1_on_the_apiframe_emulator(prefect_server, tmp_path):
    out = tmp_path / "videos"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "APIFRAME_", "SCENARIO_"))}
    env.pop(CATALOG_ENV, None)
    with EmulatorServer(APIFrameEmulator(latency_seconds=0.05)) as server:
        env.update(
            PREFECT_API_URL=str(PREFECT_API_URL.value()),
            APIFRAME_API_KEY=EMULATOR_API_KEY,
            APIFRAME_BASE_URL=server.base_url,
        )
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "prefect_videogen.cli",
                "generate",
                "a heron at dawn",
                "--provider",
                "apiframe",
                "--model",
                "veo-3.1",
                "--duration",
                "8",
                "--aspect",
                "16:9",
                "--out",
                str(out),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        charges = dict(server.emulator.charges)
    assert completed.returncode == 0, completed.stderr[-2000:]
    video = next(line.split(None, 1)[1] for line in completed.stdout.splitlines() if line.startswith("video:"))
    probe = probe_video(video)
    assert (probe.width, probe.height) == (1280, 720) and abs(probe.duration_seconds - 8) < 0.5
    assert list(charges.values()) == [120]  # 720p at 15 credits a second
    entries = asyncio.run(Ledger(LocalVideoStorage(base_path=str(out)).get_storage()).entries())
    assert [(e.job_id, e.charged_amount) for e in entries] == [(list(charges)[0], 120)]
