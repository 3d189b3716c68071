"""The flows' parameter schemas, as the Prefect UI renders them into the Run > Custom run form."""

from __future__ import annotations

import pytest
from prefect.utilities.callables import parameter_schema

from prefect_videogen import registry
from prefect_videogen.blocks import (
    ChatCompletionsCredentials,
    LocalVideoStorage,
    S3VideoStorage,
)
from prefect_videogen.flows import generate_video, generate_videos

PROVIDER_SLUGS = {
    "videogen-local-renderer",
    "videogen-openai-credentials",
    "videogen-scenario-credentials",
    "videogen-apiframe-credentials",
    "videogen-gemini-credentials",
    "videogen-fal-credentials",
    "videogen-replicate-credentials",
}
STORAGE_SLUGS = {"videogen-local-storage", "videogen-s3-storage"}


def schema_of(flow) -> dict:
    return parameter_schema(flow.fn).model_dump(exclude_none=True)


def definition(schema: dict, ref: str) -> dict:
    prefix = "#/definitions/"
    assert ref.startswith(prefix), ref
    return schema["definitions"][ref[len(prefix) :]]


def choices(schema: dict, name: str) -> list[dict]:
    """The non-null alternatives of an optional parameter, resolved to their definitions."""
    options = schema["properties"][name].get("anyOf") or [schema["properties"][name]]
    return [definition(schema, o["$ref"]) for o in options if "$ref" in o]


def assert_model_form(schema: dict, model: dict) -> None:
    """A pydantic model renders as nested fields, each with help text; unknown keys refused."""
    assert model["type"] == "object" and model["additionalProperties"] is False
    for name, field in model["properties"].items():
        assert field.get("description", "").strip(), f"{model['title']}.{name} has no help text in the UI"
        if "$ref" in field:
            assert_model_form(schema, definition(schema, field["$ref"]))


def test_block_slugs_are_the_registered_ones():
    assert {block.get_block_type_slug() for block in registry.block_classes()} == PROVIDER_SLUGS
    assert {b.get_block_type_slug() for b in (LocalVideoStorage, S3VideoStorage)} == STORAGE_SLUGS


def test_generate_video_form():
    schema = schema_of(generate_video)
    assert schema["required"] == ["request"]
    request = definition(schema, schema["properties"]["request"]["$ref"])
    assert request["title"] == "VideoRequest" and request["required"] == ["prompt"]
    assert "prefect-videogen models" in schema["properties"]["request"]["description"]
    assert_model_form(schema, request)
    # Aspect ratios and tiers are catalog data: free text of a checked shape, the catalog names what a
    # model takes (its help points at `prefect-videogen models`). Numbers carry their bounds.
    assert_catalog_shaped(request)
    assert request["properties"]["duration"]["maximum"] == 600
    assert request["properties"]["prompt"]["minLength"] == 1
    assert_new_request_fields(schema, request)


# The request fields of the models beyond Sora, each with words its help text must contain.
NEW_FIELDS = {
    "end_image": ("last frame", "http(s) URL"),
    "reference_images": ("reference images", "model's count"),
    "negative_prompt": ("should not show",),
    "seed": ("seed",),
    "generate_audio": ("sound",),
    "provider_options": ("catalog",),
}


def assert_catalog_shaped(model: dict) -> None:
    aspect = model["properties"]["aspect_ratio"]
    assert "enum" not in aspect and aspect["pattern"] and "prefect-videogen models" in aspect["description"]
    [tier] = [o for o in model["properties"]["resolution"]["anyOf"] if o.get("type") == "string"]
    assert "enum" not in tier and tier["pattern"]
    assert model["properties"]["resolution"]["default"] is None  # the model's default tier
    assert "default tier" in model["properties"]["resolution"]["description"]


def assert_new_request_fields(schema: dict, model: dict, fields: dict = NEW_FIELDS) -> None:
    """The fields show in the form, optional, each with its help text."""
    for name, words in fields.items():
        field = model["properties"][name]
        assert name not in model.get("required", []), name
        for word in words:
            assert word in field["description"], (name, field["description"])
    assert model["properties"]["reference_images"]["items"] == {"type": "string"}
    seed = next(o for o in model["properties"]["seed"]["anyOf"] if o.get("type") == "integer")
    assert (seed["minimum"], seed["maximum"]) == (0, 2**32 - 1)
    assert {o.get("type") for o in model["properties"]["generate_audio"]["anyOf"]} == {"boolean", "null"}


def test_generate_videos_form():
    schema = schema_of(generate_videos)
    assert schema["required"] == ["prompts"]
    prompts = definition(schema, schema["properties"]["prompts"]["$ref"])
    assert prompts["title"] == "PromptSource"
    assert_model_form(schema, prompts)
    defaults = definition(schema, prompts["properties"]["defaults"]["$ref"])
    assert_catalog_shaped(defaults)
    # Every item's defaults; the first and last frames are per item (row columns image, end_image).
    assert_new_request_fields(schema, defaults, {k: v for k, v in NEW_FIELDS.items() if k != "end_image"})
    assert "option.NAME" in defaults["properties"]["provider_options"]["description"]
    assert prompts["properties"]["grid"]["additionalProperties"] == {"items": {"type": "string"}, "type": "array"}


@pytest.mark.parametrize("flow", [generate_video, generate_videos], ids=["generate_video", "generate_videos"])
def test_provider_and_storage_are_block_pickers(flow):
    schema = schema_of(flow)
    for name, slugs in (("provider", PROVIDER_SLUGS), ("storage", STORAGE_SLUGS)):
        options = choices(schema, name)
        assert {o["block_type_slug"] for o in options} == slugs
        assert schema["properties"][name]["default"] is None  # optional: local renderer / ./videos
        for option in options:
            # Secrets are password inputs and never shown back.
            for secret in option["secret_fields"]:
                field = option["properties"][secret.split(".")[0]]
                inputs = [o for o in field.get("anyOf", [field]) if o.get("type") == "string"]
                assert inputs and all(o["format"] == "password" and o["writeOnly"] is True for o in inputs)
    for option in choices(schema, "provider"):
        if option["block_type_slug"] != "videogen-local-renderer":
            assert option["secret_fields"], option["title"]


def test_rewrite_is_a_chat_block_picker():
    [chat] = choices(schema_of(generate_videos), "rewrite")
    assert chat["block_type_slug"] == ChatCompletionsCredentials.get_block_type_slug() == "videogen-chat-credentials"
    assert chat["secret_fields"] == ["api_key"]


def test_every_generate_videos_parameter_has_help_text():
    schema = schema_of(generate_videos)
    missing = [name for name, field in schema["properties"].items() if not field.get("description")]
    assert missing == []


def test_every_generate_video_parameter_has_help_text():
    schema = schema_of(generate_video)
    assert [name for name, field in schema["properties"].items() if not field.get("description")] == []


@pytest.mark.parametrize(
    ("flow", "params"),
    [
        (generate_videos, {"prompts": {"rows": [{"prompt": "a fox"}]}, "max_concurrency": 0}),
        (generate_videos, {"prompts": {"rows": [{"prompt": "a fox"}]}, "timeout_seconds": 0}),
        (generate_video, {"request": {"prompt": "a fox"}, "max_cost_usd": -1}),
    ],
    ids=["max_concurrency=0", "timeout_seconds=0", "max_cost_usd=-1"],
)
def test_numeric_bounds_reach_the_form_and_validation(flow, params):
    schema = schema_of(flow)
    [name] = [k for k in params if k not in ("prompts", "request")]
    field = schema["properties"][name]
    bounds = [field, *field.get("anyOf", [])]
    assert any("minimum" in b or "exclusiveMinimum" in b for b in bounds), f"{name} has no bound in the form"
    with pytest.raises(Exception, match=name):
        flow.validate_parameters(params)
