"""The emulators' own per-model schema tables (APIFrame and Scenario), written by hand.

These tables are deliberately NOT generated from ``catalog.json``: the emulators play the providers, so a
wrong catalog row (a misspelt field, a duration the model does not take, a wrong parameter object) is
refused by the emulator and a test catches it. They follow shared/provider-apis.md sections 2, 3 and 6
and, where those say UNCONFIRMED, the choices fixed in the team's issue-17 notes (models17.md).

The table format (also the format of ``extra_models`` and of ``prefect-videogen emulator ... --models
FILE.json``, a JSON object of model id -> table)::

    {
      "my-model": {
        "params_object": "myParams",        # APIFrame: the body's parameter object; Scenario: omit (flat body)
        "fields": {                          # every parameter the model accepts (anything else is refused)
          "duration": {"type": "integer", "values": [5, 10]},
          "aspect_ratio": {"type": "string", "values": ["16:9", "9:16"]},
          "resolution": {"type": "string", "values": ["720p", "1080p"]},
          "start_image": {"type": "url"},                           # Scenario: "asset" (an uploaded asset id)
          "reference_images": {"type": "url_list", "max_items": 3}, # Scenario: "asset_list"
          "cfg_scale": {"type": "number", "min": 0, "max": 1},
          "seed": {"type": "integer", "min": 0, "max": 4294967295},
          "generate_audio": {"type": "boolean"},
          "negative_prompt": {"type": "string", "max_length": 2000}
        },
        "duration_field": "duration",        # which field carries the seconds (omit: default_duration always)
        "aspect_field": "aspect_ratio",      # which field carries the aspect ratio (omit: default_aspect)
        "tier_field": "resolution",          # which field carries the resolution tier (omit: default_tier)
        "tier_values": {"standard": "720p"}, # wire value of tier_field -> tier of `sizes`, where they differ
        "default_duration": 5, "default_aspect": "16:9", "default_tier": "720p",
        "sizes": {"720p": {"16:9": "1280x720", "9:16": "720x1280"}, "1080p": {...}},
        "credits_per_second": {"720p": 10, "1080p": 20},   # and/or, winning where both name a clip:
        "credits_per_clip": {"720p": {"5": 45}},           # tier -> seconds -> credits
        "max_prompt_chars": 4000,            # optional
        "render": "still"                    # "still" (cheap, default) or "title_card" (moving; the Sora seeds)
      }
    }

Field types: ``integer`` (a JSON integer, never a boolean or 4.0), ``number`` (integer or float),
``string``, ``boolean``, ``url`` (an http(s) URL; an emulator upload URL must name an existing upload),
``url_list``, ``asset`` (a Scenario asset id that must exist), ``asset_list``. ``values`` lists the
allowed values (compared with ``==`` after the type check), ``min``/``max`` bound numbers,
``max_length`` bounds strings, ``min_items``/``max_items`` bound lists. A duration sent as a string
(Scenario kling-v3-4k: ``"5"``) is read as its seconds. An aspect ratio without its own size
("adaptive") renders the table's 16:9 size.

Example:
    ```python
    from prefect_videogen.testing.model_tables import APIFRAME_MODELS, load_tables

    veo = APIFRAME_MODELS["veo-3.1"]
    assert veo.params_object == "veoParams" and veo.size("1080p", "9:16") == (1080, 1920)
    extra = load_tables("my-models.json")  # {model id: ModelTable}
    ```
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

FieldType = Literal["integer", "number", "string", "boolean", "url", "url_list", "asset", "asset_list"]
# What a field's problem is; each emulator words it in its provider's style.
Issue = Literal["type", "value", "range", "max_length", "not_list", "too_few", "too_many"]
_LIST_TYPES = {"url_list", "asset_list"}
_STRING_TYPES = {"string", "url", "asset"}


def number_text(value: float) -> str:
    """A bound as people write it: 0, 1, 4294967295, 0.5 (never 4.29497e+09)."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class FieldRule(BaseModel):
    """One parameter of a model: its JSON type and what values it takes."""

    model_config = ConfigDict(extra="forbid")
    type: FieldType
    values: list[int | float | str] | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    min_items: int | None = None
    max_items: int | None = None

    @property
    def is_list(self) -> bool:
        return self.type in _LIST_TYPES

    def check(self, value: Any) -> Iterator[tuple[str, Issue]]:
        """The problems of ``value`` as (path suffix, issue): "" for the value itself, ".N" for list element N.

        URL and asset fields are only type-checked here: whether they name a real upload is the
        emulator's state, checked by the emulator.
        """
        if self.is_list:
            if not isinstance(value, list):
                yield "", "not_list"
                return
            if self.min_items is not None and len(value) < self.min_items:
                yield "", "too_few"
            if self.max_items is not None and len(value) > self.max_items:
                yield "", "too_many"
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    yield f".{index}", "type"
            return
        if not self._has_type(value):
            yield "", "type"
            return
        if self.values is not None and value not in self.values:
            yield "", "value"
        elif _is_number(value) and (
            (self.min is not None and value < self.min) or (self.max is not None and value > self.max)
        ):
            yield "", "range"
        if isinstance(value, str) and self.max_length is not None and len(value) > self.max_length:
            yield "", "max_length"

    def _has_type(self, value: Any) -> bool:
        if self.type == "integer":
            return _is_int(value)
        if self.type == "number":
            return _is_number(value)
        if self.type == "boolean":
            return isinstance(value, bool)
        return isinstance(value, str)

    @property
    def json_type(self) -> str:
        """The JSON type a value must have ("integer", "number", "string", "boolean", "array")."""
        if self.is_list:
            return "array"
        return "string" if self.type in _STRING_TYPES else self.type


def _parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()) or int(width) % 2 or int(height) % 2:
        raise ValueError(f"size {text!r} must be WIDTHxHEIGHT with even numbers (H.264 4:2:0 needs them)")
    return int(width), int(height)


class ModelTable(BaseModel):
    """One model as an emulator serves it: its parameters, sizes, defaults and price."""

    model_config = ConfigDict(extra="forbid")
    params_object: str | None = Field(default=None, description="APIFrame parameter object; None: a flat body.")
    fields: dict[str, FieldRule]
    duration_field: str | None = None
    aspect_field: str | None = None
    tier_field: str | None = None
    tier_values: dict[str, str] = Field(default_factory=dict)
    default_duration: int = Field(gt=0)
    default_aspect: str = "16:9"
    default_tier: str
    sizes: dict[str, dict[str, str]]
    credits_per_second: dict[str, float] = Field(default_factory=dict)
    credits_per_clip: dict[str, dict[int, float]] = Field(default_factory=dict)
    max_prompt_chars: int | None = None
    render: Literal["still", "title_card"] = "still"

    @field_validator("sizes")
    @classmethod
    def _sizes_parse(cls, sizes: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for by_aspect in sizes.values():
            for text in by_aspect.values():
                _parse_size(text)
        return sizes

    @model_validator(mode="after")
    def _consistent(self) -> ModelTable:
        for role in ("duration_field", "aspect_field", "tier_field"):
            name = getattr(self, role)
            if name is not None and name not in self.fields:
                raise ValueError(f"{role} {name!r} is not one of the fields")
        if self.default_tier not in self.sizes:
            raise ValueError(f"default_tier {self.default_tier!r} has no sizes")
        for tier in self.sizes:
            if tier not in self.credits_per_second and tier not in self.credits_per_clip:
                raise ValueError(f"tier {tier!r} has no price (credits_per_second or credits_per_clip)")
        tiers = [self.default_tier]
        if self.tier_field is not None and (values := self.fields[self.tier_field].values) is not None:
            tiers = [self.tier_values.get(str(v), str(v)) for v in values]
        aspects = [self.default_aspect]
        if self.aspect_field is not None and (values := self.fields[self.aspect_field].values) is not None:
            aspects = [str(v) for v in values]
        durations = [self.default_duration]
        if self.duration_field is not None:
            rule = self.fields[self.duration_field]
            durations = [int(float(v)) for v in rule.values] if rule.values is not None else []
        for tier in self.sizes:
            if tier in self.credits_per_second:
                continue
            if not durations:
                raise ValueError(f"tier {tier!r}: a range of durations needs credits_per_second")
            if missing := [d for d in durations if d not in self.credits_per_clip[tier]]:
                raise ValueError(f"tier {tier!r} has no credits_per_second and no clip price for {missing} s")
        for tier in tiers:
            if tier not in self.sizes:
                raise ValueError(f"tier {tier!r} has no sizes")
            for aspect in aspects:
                self.size(tier, aspect)  # raises when the aspect has no size and no 16:9 fallback
        return self

    def size(self, tier: str, aspect: str) -> tuple[int, int]:
        """(width, height) rendered for this tier and aspect ratio; "adaptive" and the like: the 16:9 size."""
        by_aspect = self.sizes[tier]
        text = by_aspect.get(aspect) or by_aspect.get("16:9")
        if text is None:
            raise ValueError(f"tier {tier!r} has no size for aspect {aspect!r} and no 16:9 size")
        return _parse_size(text)

    def credits(self, tier: str, duration: int) -> float:
        """What one clip of ``duration`` seconds at ``tier`` costs."""
        clip = self.credits_per_clip.get(tier, {})
        if duration in clip:
            return clip[duration]
        if tier in self.credits_per_second:
            return self.credits_per_second[tier] * duration
        raise ValueError(f"no price for {duration} s at tier {tier!r}")

    def choices(self, params: Mapping[str, Any]) -> tuple[int, str, str]:
        """(seconds, tier, aspect) of a request's parameters, the table's defaults where a field is absent
        or not valid (a Scenario dry run prices without validating)."""

        def sent(role: str) -> Any:
            name = getattr(self, role)
            if name is None or name not in params:
                return None
            value = params[name]
            return None if any(True for _ in self.fields[name].check(value)) else value

        seconds = sent("duration_field")
        tier = sent("tier_field")
        aspect = sent("aspect_field")
        return (
            int(float(seconds)) if seconds is not None else self.default_duration,
            self.tier_values.get(str(tier), str(tier)) if tier is not None else self.default_tier,
            str(aspect) if aspect is not None else self.default_aspect,
        )


_TABLES = TypeAdapter(dict[str, ModelTable])


def load_tables(source: str | Path | Mapping[str, Any]) -> dict[str, ModelTable]:
    """Model tables from a JSON file (a path) or an already parsed mapping of model id -> table.

    Raises:
        pydantic.ValidationError: a table that does not follow the format (the module docstring).
    """
    if isinstance(source, (str, Path)):
        return _TABLES.validate_json(Path(source).read_bytes())
    return _TABLES.validate_python(dict(source))


def _f(type_: FieldType, **rules: Any) -> FieldRule:
    return FieldRule(type=type_, **rules)


def _aspects(*aspects: str) -> FieldRule:
    return _f("string", values=list(aspects))


SEED = _f("integer", min=0, max=2**32 - 1)
LANDSCAPE_PORTRAIT = {
    "480p": {"16:9": "864x480", "9:16": "480x864"},
    "540p": {"16:9": "960x540", "9:16": "540x960"},
    "720p": {"16:9": "1280x720", "9:16": "720x1280"},
    "1080p": {"16:9": "1920x1080", "9:16": "1080x1920"},
}
SQUARE = {"480p": "480x480", "540p": "540x540", "720p": "720x720", "1080p": "1080x1080"}


def _with_square(*tiers: str) -> dict[str, dict[str, str]]:
    return {tier: {**LANDSCAPE_PORTRAIT[tier], "1:1": SQUARE[tier]} for tier in tiers}


# --- APIFrame (provider-apis.md §3 and §6; models17.md) ------------------------------------------------

_SORA_DURATIONS = [4, 8, 10, 12, 15]
_SORA_FIELDS = {
    "duration": _f("integer", values=_SORA_DURATIONS),
    "aspect_ratio": _aspects("16:9", "9:16"),
    "resolution": _f("string", values=["standard", "high"]),
    "start_image": _f("url"),
}
_SORA_COMMON: dict[str, Any] = {
    "params_object": "soraParams",
    "fields": _SORA_FIELDS,
    "duration_field": "duration",
    "aspect_field": "aspect_ratio",
    "tier_field": "resolution",
    "default_duration": 4,
    "default_tier": "standard",
    "max_prompt_chars": 4000,
    "render": "title_card",
}
_KLING_FIELDS = {
    "duration": _f("integer", values=[5, 10]),
    "aspect_ratio": _aspects("16:9", "9:16", "1:1"),
    "mode": _f("string", values=["standard", "pro"]),
    "start_image": _f("url"),
    "end_image": _f("url"),
    "negative_prompt": _f("string"),
    "cfg_scale": _f("number", min=0, max=1),
}


def _kling(factor: int) -> ModelTable:
    return ModelTable(
        params_object="klingParams",
        fields=_KLING_FIELDS,
        duration_field="duration",
        aspect_field="aspect_ratio",
        tier_field="mode",
        tier_values={"standard": "720p", "pro": "1080p"},
        default_duration=5,
        default_tier="720p",
        sizes=_with_square("720p", "1080p"),
        credits_per_clip={"720p": {5: 20 * factor, 10: 40 * factor}, "1080p": {5: 35 * factor, 10: 70 * factor}},
        max_prompt_chars=4000,
    )


def _hailuo(factor: float) -> ModelTable:
    return ModelTable(
        params_object="hailuoParams",
        fields={
            "duration": _f("integer", values=[6, 10]),
            "resolution": _f("string", values=["768p", "1080p"]),
            "start_image": _f("url"),
            "prompt_optimizer": _f("boolean"),
        },
        duration_field="duration",
        tier_field="resolution",
        default_duration=6,
        default_tier="768p",
        sizes={"768p": {"16:9": "1366x768"}, "1080p": {"16:9": "1920x1080"}},
        credits_per_second={"768p": 6 * factor, "1080p": 10 * factor},
        max_prompt_chars=4000,
    )


def _luma(factor: float) -> ModelTable:
    return ModelTable(
        params_object="lumaParams",
        fields={
            "duration": _f("integer", values=[5, 9]),
            "aspect_ratio": _aspects("16:9", "9:16", "1:1"),
            "resolution": _f("string", values=["540p", "720p"]),
            "start_image": _f("url"),
            "end_image": _f("url"),
            "loop": _f("boolean"),
        },
        duration_field="duration",
        aspect_field="aspect_ratio",
        tier_field="resolution",
        default_duration=5,
        default_tier="720p",
        sizes=_with_square("540p", "720p"),
        credits_per_second={"540p": 6 * factor, "720p": 10 * factor},
        max_prompt_chars=4000,
    )


APIFRAME_MODELS: dict[str, ModelTable] = {
    "sora-2": ModelTable(
        **_SORA_COMMON,
        # sora-2 "may ignore" resolution: it always renders 720p, at one credit per second.
        sizes={"standard": LANDSCAPE_PORTRAIT["720p"], "high": LANDSCAPE_PORTRAIT["720p"]},
        credits_per_clip={"standard": {d: d for d in _SORA_DURATIONS}, "high": {d: d for d in _SORA_DURATIONS}},
    ),
    "sora-2-pro": ModelTable(
        **_SORA_COMMON,
        sizes={"standard": LANDSCAPE_PORTRAIT["720p"], "high": LANDSCAPE_PORTRAIT["1080p"]},
        credits_per_clip={
            "standard": {4: 12, 8: 24, 10: 30, 12: 36, 15: 45},
            "high": {4: 20, 8: 40, 10: 50, 12: 60, 15: 75},
        },
    ),
    "veo-3.1": ModelTable(
        params_object="veoParams",
        fields={
            "duration": _f("integer", values=[4, 6, 8]),
            "aspect_ratio": _aspects("16:9", "9:16"),
            "resolution": _f("string", values=["720p", "1080p"]),
            "image": _f("url"),
            "last_frame": _f("url"),
            "reference_images": _f("url_list", max_items=3),
            "negative_prompt": _f("string"),
            "seed": SEED,
            "generate_audio": _f("boolean"),
        },
        duration_field="duration",
        aspect_field="aspect_ratio",
        tier_field="resolution",
        default_duration=8,
        default_tier="720p",
        sizes={tier: LANDSCAPE_PORTRAIT[tier] for tier in ("720p", "1080p")},
        credits_per_second={"720p": 15, "1080p": 20},  # generated audio costs nothing more
        max_prompt_chars=4000,
    ),
    "kling-2.1": _kling(1),
    "kling-2.1-master": _kling(2),
    "kling-2.5-turbo-pro": _kling(1),
    "kling-2.6": _kling(1),
    "kling-3.0": _kling(1),
    "seedance-2": ModelTable(
        params_object="seedanceParams",
        fields={
            "duration": _f("integer", min=4, max=15),
            "resolution": _f("string", values=["480p", "720p", "1080p"]),
            "aspect_ratio": _aspects("adaptive", "16:9", "9:16", "1:1", "4:3", "3:4", "21:9"),
            "start_image": _f("url"),
            "end_image": _f("url"),
            "reference_image_urls": _f("url_list", max_items=4),
            "reference_video_urls": _f("url_list"),
            "reference_audio_urls": _f("url_list"),
            "generate_audio": _f("boolean"),
            "return_last_frame": _f("boolean"),
            "web_search": _f("boolean"),
            "seed": SEED,
            "camera_fixed": _f("boolean"),
        },
        duration_field="duration",
        aspect_field="aspect_ratio",
        tier_field="resolution",
        default_duration=5,
        default_aspect="adaptive",
        default_tier="720p",
        sizes={
            "480p": {**_with_square("480p")["480p"], "4:3": "640x480", "3:4": "480x640", "21:9": "1120x480"},
            "720p": {**_with_square("720p")["720p"], "4:3": "960x720", "3:4": "720x960", "21:9": "1680x720"},
            "1080p": {**_with_square("1080p")["1080p"], "4:3": "1440x1080", "3:4": "1080x1440", "21:9": "2520x1080"},
        },
        credits_per_second={"480p": 5, "720p": 10, "1080p": 20},
        max_prompt_chars=4000,
    ),
    "hailuo-02": _hailuo(1),
    "hailuo-2.3": _hailuo(1),
    "hailuo-2.3-fast": _hailuo(0.5),
    "luma-ray-2": _luma(1),
    "luma-ray-flash-2": _luma(0.4),
    "grok-imagine-video": ModelTable(
        params_object="grokParams",
        fields={
            "duration": _f("integer", values=[6]),
            "aspect_ratio": _aspects("16:9", "9:16", "1:1"),
            "start_image": _f("url"),
        },
        duration_field="duration",
        aspect_field="aspect_ratio",
        default_duration=6,
        default_tier="720p",
        sizes=_with_square("720p"),
        credits_per_clip={"720p": {6: 30}},
        max_prompt_chars=4000,
    ),
}


# --- Scenario (provider-apis.md §2 and §6; models17.md) ----------------------------------------------

_SCENARIO_SORA_FIELDS = {
    "image": _f("asset"),
    "aspectRatio": _aspects("16:9", "9:16"),
    "duration": _f("number", values=[4, 8, 12, 16, 20]),
}
_SCENARIO_SORA: dict[str, Any] = {
    "duration_field": "duration",
    "aspect_field": "aspectRatio",
    "default_duration": 4,
    "default_tier": "standard",
    "render": "title_card",
}
_VEO_SIZES = {tier: LANDSCAPE_PORTRAIT[tier] for tier in ("720p", "1080p")}

SCENARIO_MODELS: dict[str, ModelTable] = {
    "model_open-ai-sora-2": ModelTable(
        **_SCENARIO_SORA,
        fields=_SCENARIO_SORA_FIELDS,
        sizes={"standard": LANDSCAPE_PORTRAIT["720p"]},
        credits_per_second={"standard": 10},
    ),
    "model_open-ai-sora-2-pro": ModelTable(
        **_SCENARIO_SORA,
        fields={**_SCENARIO_SORA_FIELDS, "resolution": _f("string", values=["standard", "high"])},
        tier_field="resolution",
        sizes={"standard": LANDSCAPE_PORTRAIT["720p"], "high": LANDSCAPE_PORTRAIT["1080p"]},
        credits_per_second={"standard": 30, "high": 50},
    ),
    # Veo 3.1 on Scenario: no duration and no aspect field documented, so 8 s at 16:9 always.
    "model_veo3-1": ModelTable(
        fields={
            "image": _f("asset"),
            "lastFrameImage": _f("asset"),
            "referenceImages": _f("asset_list", min_items=1, max_items=3),
            "referenceImagesType": _f("string", values=["ASSET", "STYLE"]),
            "negativePrompt": _f("string"),
            "resolution": _f("string", values=["720p", "1080p"]),
        },
        tier_field="resolution",
        default_duration=8,
        default_tier="720p",
        sizes=_VEO_SIZES,
        credits_per_second={"720p": 40, "1080p": 60},
    ),
    "model_veo3": ModelTable(
        fields={
            "image": _f("asset"),
            "negativePrompt": _f("string"),
            "resolution": _f("string", values=["720p", "1080p"]),
            "generateAudio": _f("boolean"),
            "aspectRatio": _aspects("16:9", "9:16"),
            "duration": _f("number", values=[4, 6, 8]),
            "seed": SEED,
        },
        duration_field="duration",
        aspect_field="aspectRatio",
        tier_field="resolution",
        default_duration=8,
        default_tier="720p",
        sizes=_VEO_SIZES,
        credits_per_second={"720p": 40, "1080p": 60},
    ),
    # Text only; its duration is a STRING ("5"), unlike every other Scenario video model.
    "model_kling-v3-t2v-4k": ModelTable(
        fields={
            "duration": _f("string", values=["5", "10"]),
            "generateAudio": _f("boolean"),
            "aspectRatio": _aspects("16:9", "9:16", "1:1"),
            "negativePrompt": _f("string"),
            "shotType": _f("string"),
            "cfgScale": _f("number", min=0, max=1),
        },
        duration_field="duration",
        aspect_field="aspectRatio",
        default_duration=5,
        default_tier="4k",
        sizes={"4k": {"16:9": "3840x2160", "9:16": "2160x3840", "1:1": "2160x2160"}},
        credits_per_second={"4k": 80},
    ),
}


def whole_credits(amount: float) -> int:
    """APIFrame bills whole credits: a fractional price (a x0.4 model) is rounded up, never down."""
    return math.ceil(round(amount, 6))
