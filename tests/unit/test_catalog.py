"""Requests are checked against the catalog before any paid call, with errors naming field, value, allowed."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from prefect_videogen.catalog import ensure_available, load_catalog
from prefect_videogen.errors import InvalidVideoRequest, ModelUnavailable
from prefect_videogen.models import VideoRequest


@pytest.mark.parametrize(
    ("provider", "fields", "field", "value", "allowed_text"),
    [
        ("apiframe", {"duration": 5}, "duration", 5, "4, 8, 10, 12, 15"),
        ("apiframe", {"duration": 16}, "duration", 16, "4, 8, 10, 12, 15"),
        ("openai", {"duration": 10}, "duration", 10, "4, 8, 12"),
        ("scenario", {"duration": 10}, "duration", 10, "4, 8, 12, 16, 20"),
        ("scenario", {"resolution": "high"}, "resolution", "high", "'standard'"),
        ("openai", {"resolution": "high"}, "resolution", "high", "'standard'"),
        ("local", {"duration": 61}, "duration", 61, "from 1 to 60"),
        ("local", {"model": "sora-9"}, "model", "sora-9", "'title-card'"),
        ("apiframe", {"prompt": "x" * 4001}, "prompt", "<4001 characters>", "at most 4000"),
    ],
)
def test_catalog_errors_name_field_value_and_allowed(provider, fields, field, value, allowed_text):
    request = VideoRequest(**{"prompt": "a fox", **fields})
    with pytest.raises(InvalidVideoRequest) as caught:
        load_catalog().plan(provider, request)
    error = caught.value
    assert (error.field, error.value) == (field, value)
    assert f"{field}={value!r}" in str(error)
    assert allowed_text in str(error)


def test_unknown_provider_lists_known_ones():
    with pytest.raises(InvalidVideoRequest, match="provider='nope'") as caught:
        load_catalog().plan("nope", VideoRequest(prompt="a fox"))
    known = sorted(load_catalog().providers)
    assert {"apiframe", "local", "openai", "scenario"} <= set(known)
    assert ", ".join(map(repr, known)) in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n"}, "prompt"),
        ({"prompt": "bell\x07"}, "prompt"),
        ({"prompt": "x" * 32_001}, "prompt"),
        ({"duration": 4.5}, "duration"),
        ({"duration": 0}, "duration"),
        ({"duration": -4}, "duration"),
        ({"aspect_ratio": "wide"}, "aspect_ratio"),
        ({"resolution": "4K HD"}, "resolution"),
        ({"image": " "}, "image"),
        ({"seconds": "4"}, "seconds"),
    ],
)
def test_request_model_rejects_bad_fields(fields, loc):
    with pytest.raises(ValidationError) as caught:
        VideoRequest(**{"prompt": "a fox", **fields})
    assert caught.value.errors()[0]["loc"] == (loc,)


def test_nothing_is_rounded_silently():
    # 4.0 is a whole number of seconds and is kept; 4.5 is refused above, never rounded to 4.
    assert VideoRequest(prompt="a fox", duration=4.0).duration == 4
    with pytest.raises(InvalidVideoRequest):
        load_catalog().plan("apiframe", VideoRequest(prompt="a fox", duration=9))


def test_plan_fills_default_model_and_size():
    plan = load_catalog().plan("scenario", VideoRequest(prompt="a fox", aspect_ratio="9:16"))
    assert plan.request.model == "sora-2"
    assert plan.spec.provider_model_id == "model_open-ai-sora-2"
    assert plan.size == "720x1280"
    pro = load_catalog().plan("apiframe", VideoRequest(prompt="a fox", model="sora-2-pro", resolution="high"))
    assert pro.size == "1920x1080"


def test_retirement_is_a_runtime_check_with_a_clear_error():
    plan = load_catalog().plan("openai", VideoRequest(prompt="a fox", model="sora-2-pro"))
    with pytest.raises(ModelUnavailable, match="openai: model 'sora-2-pro' was retired on 2026-09-24"):
        ensure_available(plan)


def test_user_overrides_add_a_model_row(tmp_path):
    override = tmp_path / "catalog.json"
    override.write_text(
        json.dumps(
            {
                "providers": {
                    "apiframe": {
                        "models": {
                            "veo-3": {
                                "provider_model_id": "veo-3",
                                "durations": [8],
                                "aspect_ratios": ["16:9"],
                                "sizes": {"standard": {"16:9": "1280x720"}},
                            }
                        }
                    }
                }
            }
        )
    )
    catalog = load_catalog(override)
    plan = catalog.plan("apiframe", VideoRequest(prompt="a fox", model="veo-3", duration=8))
    assert plan.spec.provider_model_id == "veo-3"
    # Rows not overridden are still there.
    assert "sora-2-pro" in catalog.provider("apiframe").models


# --- catalog v2: every model of the seed providers, its wire, its features ---------------------------

import re  # noqa: E402

import httpx  # noqa: E402

from prefect_videogen.catalog import WireSpec, unavailable_message, wire_params  # noqa: E402
from prefect_videogen.pipeline import generate  # noqa: E402
from prefect_videogen.providers.apiframe import APIFrameVideoProvider  # noqa: E402
from prefect_videogen.providers.scenario import ScenarioVideoProvider  # noqa: E402
from prefect_videogen.spend.costs import estimate_cost  # noqa: E402
from prefect_videogen.storage import VideoStorage  # noqa: E402

URL = "https://images.example/frame.png"


def plan_of(provider: str, model: str, **fields):
    return load_catalog().plan(provider, VideoRequest(prompt="a heron at dawn", model=model, **fields))


def test_the_seed_providers_list_at_least_14_models_each_with_source_status_and_wire():
    catalog = load_catalog()
    rows = [
        (name, key, spec) for name in ("apiframe", "scenario") for key, spec in catalog.provider(name).models.items()
    ]
    assert len(rows) >= 14
    beyond_sora = [key for _, key, spec in rows if "sora" not in spec.provider_model_id]
    assert len(beyond_sora) >= 12
    for name, key, spec in rows:
        entry = catalog.provider(name)
        assert re.search(r"\d{4}-\d{2}-\d{2}", spec.source), (name, key)
        assert spec.status in ("live", "unconfirmed"), (name, key)
        assert entry.wire_for(spec) is not None, (name, key)  # no body shape left to code
        if spec.status == "unconfirmed":
            assert spec.unconfirmed, (name, key)
        assert spec.price is not None and spec.price.as_of is not None, (name, key)
    assert catalog.as_of.isoformat() >= "2026-11-30"


def test_every_row_plans_and_prices_at_every_tier_aspect_and_duration():
    """A row whose sizes, durations and price disagree fails here, not in a user's paid run."""
    catalog = load_catalog()
    for name in ("apiframe", "scenario", "local", "openai"):
        for key, spec in catalog.provider(name).models.items():
            durations = spec.durations if isinstance(spec.durations, list) else [spec.durations.min, spec.durations.max]
            for tier, sizes in spec.sizes.items():
                for aspect in sizes:
                    for duration in durations:
                        plan = plan_of(name, key, resolution=tier, aspect_ratio=aspect, duration=duration)
                        assert plan.size == sizes[aspect]
                        assert estimate_cost(plan).amount >= 0
                        if plan.wire is not None:
                            wire_params(plan)


@pytest.mark.parametrize(
    ("provider", "model", "fields", "expected"),
    [
        (
            "apiframe",
            "veo-3.1",
            {"duration": 8, "resolution": "1080p", "negative_prompt": "rain", "seed": 7, "generate_audio": False},
            {
                "duration": 8,
                "aspect_ratio": "16:9",
                "resolution": "1080p",
                "negative_prompt": "rain",
                "seed": 7,
                "generate_audio": False,
            },
        ),
        (
            "apiframe",
            "kling-2.1",
            {"duration": 10, "resolution": "1080p", "aspect_ratio": "1:1", "provider_options": {"cfg_scale": 0.5}},
            {"duration": 10, "aspect_ratio": "1:1", "mode": "pro", "cfg_scale": 0.5},
        ),
        (
            "apiframe",
            "seedance-2",
            {"duration": 7, "aspect_ratio": "adaptive", "provider_options": {"camera_fixed": True}},
            {"duration": 7, "aspect_ratio": "adaptive", "resolution": "720p", "camera_fixed": True},
        ),
        ("apiframe", "hailuo-2.3", {"duration": 6}, {"duration": 6, "resolution": "768p"}),
        (
            "apiframe",
            "grok-imagine-video",
            {"duration": 6, "aspect_ratio": "9:16"},
            {"duration": 6, "aspect_ratio": "9:16"},
        ),
        ("scenario", "sora-2", {"duration": 8}, {"duration": 8, "aspectRatio": "16:9"}),
        ("scenario", "veo-3.1", {"duration": 8}, {"resolution": "720p"}),
        (
            "scenario",
            "veo-3",
            {"duration": 6, "aspect_ratio": "9:16", "seed": 3, "generate_audio": True},
            {"duration": 6, "aspectRatio": "9:16", "resolution": "720p", "seed": 3, "generateAudio": True},
        ),
        (
            "scenario",
            "kling-v3-4k",
            {"duration": 10, "negative_prompt": "blur", "provider_options": {"shotType": "customize"}},
            {"duration": "10", "aspectRatio": "16:9", "negativePrompt": "blur", "shotType": "customize"},
        ),
    ],
)
def test_wire_params_follow_the_rows_wire(provider, model, fields, expected):
    params = wire_params(plan_of(provider, model, **fields))
    assert params == expected
    assert {k: type(v) for k, v in params.items()} == {k: type(v) for k, v in expected.items()}  # "10" stays a string


def test_image_fields_come_from_the_adapter_and_are_left_out_without_it():
    plan = plan_of("apiframe", "veo-3.1", duration=8, image=URL, end_image=URL, reference_images=[URL])
    assert "image" not in wire_params(plan) and "reference_images" not in wire_params(plan)
    sent = wire_params(plan, {"image": "u1", "end_image": "u2", "reference_images": ["u3"]})
    assert (sent["image"], sent["last_frame"], sent["reference_images"]) == ("u1", "u2", ["u3"])


@pytest.mark.parametrize(
    ("provider", "model", "fields", "field", "having"),
    [
        ("apiframe", "sora-2", {"end_image": URL}, "end_image", "apiframe/kling-2.1"),
        ("apiframe", "kling-2.1", {"duration": 5, "reference_images": [URL]}, "reference_images", "apiframe/veo-3.1"),
        ("scenario", "sora-2", {"negative_prompt": "rain"}, "negative_prompt", "scenario/veo-3"),
        ("apiframe", "kling-2.1", {"duration": 5, "seed": 7}, "seed", "apiframe/seedance-2"),
        ("apiframe", "hailuo-02", {"duration": 6, "generate_audio": True}, "generate_audio", "scenario/kling-v3-4k"),
        ("scenario", "kling-v3-4k", {"duration": 5, "image": URL}, "image", "scenario/veo-3.1"),
        ("local", "title-card", {"seed": 1}, "seed", "apiframe/veo-3.1"),
    ],
)
def test_a_field_the_model_lacks_is_refused_naming_the_models_that_have_it(provider, model, fields, field, having):
    with pytest.raises(InvalidVideoRequest) as caught:
        plan_of(provider, model, **fields)
    error = caught.value
    assert error.field == field and error.value == fields[field]
    text = str(error)
    assert f"{field}={fields[field]!r} is not allowed for {provider} model {model!r}" in text
    assert f"nothing: this model has no {field}" in text and "models that have it:" in text and having in text
    assert f"{provider}/{model}," not in text  # the model itself is not suggested


@pytest.mark.parametrize(
    ("provider", "model", "fields", "field", "value", "allowed"),
    [
        (
            "apiframe",
            "kling-2.1",
            {"duration": 5, "provider_options": {"fps": 30}},
            "provider_options",
            "fps",
            "'cfg_scale'",
        ),
        (
            "apiframe",
            "veo-3.1",
            {"duration": 8, "provider_options": {"fps": 30}},
            "provider_options",
            "fps",
            "declares no extras",
        ),
        (
            "apiframe",
            "kling-2.1",
            {"duration": 5, "provider_options": {"mode": "pro"}},
            "provider_options",
            "mode",
            "set it as the request's resolution",
        ),
        (
            "apiframe",
            "kling-2.1",
            {"duration": 5, "provider_options": {"cfg_scale": 2}},
            "provider_options.cfg_scale",
            2,
            "from 0.0 to 1.0",
        ),
        (
            "apiframe",
            "kling-2.1",
            {"duration": 5, "provider_options": {"cfg_scale": "high"}},
            "provider_options.cfg_scale",
            "high",
            "a number",
        ),
        (
            "apiframe",
            "seedance-2",
            {"duration": 5, "provider_options": {"camera_fixed": 1}},
            "provider_options.camera_fixed",
            1,
            "a boolean",
        ),
        (
            "scenario",
            "veo-3.1",
            {"duration": 8, "provider_options": {"referenceImagesType": "CHARACTER"}},
            "provider_options.referenceImagesType",
            "CHARACTER",
            "'ASSET', 'STYLE'",
        ),
        (
            "scenario",
            "kling-v3-4k",
            {"duration": 5, "provider_options": {"dryRun": True}},
            "provider_options",
            "dryRun",
            "'cfgScale', 'shotType'",
        ),
        (
            "apiframe",
            "veo-3.1",
            {"duration": 8, "reference_images": [URL] * 4},
            "reference_images",
            "<4 images>",
            "at most 3",
        ),
        (
            "apiframe",
            "kling-2.1",
            {"duration": 5, "aspect_ratio": "21:9"},
            "aspect_ratio",
            "21:9",
            "'16:9', '9:16', '1:1'",
        ),
        ("apiframe", "seedance-2", {"duration": 16}, "duration", 16, "from 4 to 15"),
        ("apiframe", "veo-3.1", {"duration": 8, "resolution": "4k"}, "resolution", "4k", "'720p', '1080p'"),
        ("scenario", "veo-3.1", {"duration": 6}, "duration", 6, "8"),
        (
            "apiframe",
            "veo-3.1",
            {"duration": 8, "end_image": "s3://b/f.png"},
            "end_image",
            "s3://b/f.png",
            "http(s) URL",
        ),
        (
            "apiframe",
            "veo-3.1",
            {"duration": 8, "reference_images": [URL, "/nonexistent/ref.png"]},
            "reference_images[1]",
            "/nonexistent/ref.png",
            "existing local image file",
        ),
        (
            "apiframe",
            "veo-3.1",
            {"duration": 8, "negative_prompt": "x" * 4001},
            "negative_prompt",
            "<4001 characters>",
            "at most 4000",
        ),
    ],
)
def test_new_fields_and_options_are_checked_with_field_value_and_allowed(
    provider, model, fields, field, value, allowed
):
    with pytest.raises(InvalidVideoRequest) as caught:
        plan_of(provider, model, **fields)
    assert (caught.value.field, caught.value.value) == (field, value)
    assert allowed in str(caught.value)


@pytest.mark.parametrize("provider", ["apiframe", "scenario"])
async def test_a_refused_field_costs_zero_provider_requests(tmp_path, provider):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500)

    transport = httpx.MockTransport(handler)
    if provider == "apiframe":
        client = APIFrameVideoProvider(
            "afk_unit_test_key_0123456789", base_url="https://api.apiframe.test", transport=transport
        )
        requests = [
            VideoRequest(prompt="a heron", model="sora-2", seed=7),
            VideoRequest(prompt="a heron", model="kling-2.1", duration=5, provider_options={"fps": 30}),
            VideoRequest(prompt="a heron", model="kling-2.1", duration=5, provider_options={"cfg_scale": 9}),
        ]
    else:
        client = ScenarioVideoProvider("key", "secret", base_url="https://api.scenario.test/v1", transport=transport)
        requests = [
            VideoRequest(prompt="a heron", model="kling-v3-4k", duration=5, generate_audio=True, seed=1),
            VideoRequest(prompt="a heron", model="veo-3.1", duration=8, provider_options={"referenceImagesType": "X"}),
            VideoRequest(prompt="a heron", model="sora-2", provider_options={"dryRun": True}),
        ]
    async with client:
        for request in requests:
            with pytest.raises(InvalidVideoRequest):
                await generate(client, request, VideoStorage(str(tmp_path)))
    assert seen == []


@pytest.mark.parametrize(
    ("provider", "model", "fields", "amount", "unit", "usd"),
    [
        ("apiframe", "veo-3.1", {"duration": 8, "resolution": "1080p"}, 160, "credits", 1.6),
        ("apiframe", "veo-3.1", {"duration": 4}, 60, "credits", 0.6),
        ("apiframe", "kling-2.1", {"duration": 10, "resolution": "1080p"}, 70, "credits", 0.7),
        ("apiframe", "kling-2.1-master", {"duration": 5}, 40, "credits", 0.4),
        ("apiframe", "seedance-2", {"duration": 7, "resolution": "480p"}, 35, "credits", 0.35),
        ("apiframe", "hailuo-2.3-fast", {"duration": 10}, 30, "credits", 0.3),
        ("apiframe", "luma-ray-flash-2", {"duration": 5, "resolution": "540p"}, 12, "credits", 0.12),
        ("apiframe", "grok-imagine-video", {"duration": 6}, 30, "credits", 0.3),
        ("scenario", "veo-3.1", {"duration": 8, "resolution": "1080p"}, 480, "creative_units", 4.8),
        ("scenario", "kling-v3-4k", {"duration": 5}, 400, "creative_units", 4.0),
    ],
)
def test_estimates_for_every_price_form(provider, model, fields, amount, unit, usd):
    cost = estimate_cost(plan_of(provider, model, **fields))
    assert (cost.amount, cost.unit, cost.usd) == (amount, unit, usd)
    assert cost.source.startswith("catalog as of 2026-11-30")


def test_model_not_found_names_the_live_alternatives():
    plan = plan_of("scenario", "veo-3", duration=8)
    assert plan.live_alternatives == ["kling-v3-4k", "sora-2", "sora-2-pro", "veo-3.1"]
    text = unavailable_message(plan, "model 'model_veo3' not found")
    assert text.startswith("model 'model_veo3' not found; live alternatives on scenario in the catalog: kling-v3-4k,")


def test_a_retired_row_is_no_alternative(tmp_path):
    override = tmp_path / "retire.json"
    override.write_text(
        json.dumps(
            {
                "providers": {
                    "scenario": {
                        "models": {
                            "sora-2": {
                                **load_catalog()
                                .provider("scenario")
                                .models["sora-2"]
                                .model_dump(mode="json", exclude_none=True),
                                "status": "retired",
                            }
                        }
                    }
                }
            }
        )
    )
    plan = load_catalog(override).plan("scenario", VideoRequest(prompt="a fox", model="veo-3", duration=8))
    assert "sora-2" not in plan.live_alternatives and "veo-3.1" in plan.live_alternatives


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"price": {"unit": "credits", "per_second": {"720p": 1}, "source": "x"}}, "no figure for the tiers ['1080p']"),
        (
            {"price": {"unit": "credits", "table": {"720p": {"4": 1}, "1080p": {"4": 2}}}},
            "no 720p figure for the durations [6, 8]",
        ),
        (
            {"price": {"unit": "credits", "per_second": {"720p": 1, "1080p": 1}, "per_clip": {"720p": 1}}},
            "exactly one of",
        ),
        (
            {
                "wire": {
                    "params_object": "veoParams",
                    "fields": {"seed": "seed"},
                    "options": {"seed": {"type": "integer"}},
                }
            },
            "already the wire names",
        ),
        ({"wire": {"params_object": "veoParams", "fields": {"reference_images": "refs"}}}, "max_reference_images"),
        ({"wire": {"params_object": "veoParams", "fields": {"duration": "d", "seed": "d"}}}, "same wire name"),
    ],
)
def test_an_inconsistent_override_row_is_refused_on_load(tmp_path, row, message):
    base = load_catalog().provider("apiframe").models["veo-3.1"].model_dump(mode="json", exclude_none=True)
    override = tmp_path / f"bad-{abs(hash(message))}.json"
    override.write_text(json.dumps({"providers": {"apiframe": {"models": {"veo-3.1": {**base, **row}}}}}))
    with pytest.raises(ValidationError, match=re.escape(message)):
        load_catalog(override)


def test_a_rows_spelled_values_win_over_its_duration_type():
    """A row that sends durations as strings and spells some of them ("8" -> "8s", as fal's Veo rows
    do) sends the spelling; before, ``duration_type: string`` silently dropped ``values``."""
    wire = WireSpec(fields={"duration": "duration"}, duration_type="string", values={"duration": {"8": "8s"}})
    assert wire.wire_value("duration", 8) == "8s"
    assert wire.wire_value("duration", 5) == "5"
    integer = WireSpec(fields={"duration": "duration"}, values={"duration": {"8": "8s"}})
    assert (integer.wire_value("duration", 8), integer.wire_value("duration", 5)) == ("8s", 5)
