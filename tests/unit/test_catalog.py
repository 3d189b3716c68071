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
    with pytest.raises(
        InvalidVideoRequest, match="provider='nope'.*'apiframe'.*'gemini'.*'local'.*'openai'.*'scenario'"
    ):
        load_catalog().plan("nope", VideoRequest(prompt="a fox"))


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
