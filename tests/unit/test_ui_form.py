"""The flows' parameter schemas, as the Prefect UI renders them into the Run > Custom run form."""

from __future__ import annotations

import pytest
from prefect.utilities.callables import parameter_schema

from prefect_videogen.blocks import (
    APIFrameCredentials,
    ChatCompletionsCredentials,
    LocalRenderer,
    LocalVideoStorage,
    OpenAICredentials,
    S3VideoStorage,
    ScenarioCredentials,
)
from prefect_videogen.flows import generate_video, generate_videos

PROVIDER_SLUGS = {
    "videogen-local-renderer",
    "videogen-openai-credentials",
    "videogen-scenario-credentials",
    "videogen-apiframe-credentials",
    "videogen-gemini-credentials",
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
    assert {
        b.get_block_type_slug() for b in (LocalRenderer, OpenAICredentials, ScenarioCredentials, APIFrameCredentials)
    } == PROVIDER_SLUGS
    assert {b.get_block_type_slug() for b in (LocalVideoStorage, S3VideoStorage)} == STORAGE_SLUGS


def test_generate_video_form():
    schema = schema_of(generate_video)
    assert schema["required"] == ["request"]
    request = definition(schema, schema["properties"]["request"]["$ref"])
    assert request["title"] == "VideoRequest" and request["required"] == ["prompt"]
    assert_model_form(schema, request)
    # Literal fields are dropdowns; numbers carry their bounds.
    assert request["properties"]["aspect_ratio"]["enum"] == ["16:9", "9:16"]
    assert request["properties"]["resolution"]["enum"] == ["standard", "high"]
    assert request["properties"]["duration"]["maximum"] == 600
    assert request["properties"]["prompt"]["minLength"] == 1


def test_generate_videos_form():
    schema = schema_of(generate_videos)
    assert schema["required"] == ["prompts"]
    prompts = definition(schema, schema["properties"]["prompts"]["$ref"])
    assert prompts["title"] == "PromptSource"
    assert_model_form(schema, prompts)
    defaults = definition(schema, prompts["properties"]["defaults"]["$ref"])
    assert defaults["properties"]["aspect_ratio"]["enum"] == ["16:9", "9:16"]
    assert defaults["properties"]["resolution"]["enum"] == ["standard", "high"]
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
