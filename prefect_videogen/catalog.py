"""The model catalog: which models each provider serves, what they accept, what they cost.

The catalog is data (``catalog.json`` in this package). Adding a model is a row, not code. Users
override or add rows with a JSON file of the same shape, named by ``PREFECT_VIDEOGEN_CATALOG`` or
passed to :func:`load_catalog`; rows are merged per model.

A row says what the model takes (durations, aspect ratios, resolution tiers and their sizes), what it
costs (:class:`Price`, dated, in the provider's unit), how sure we are (``status``, ``source``,
``unconfirmed``) and how its request body is built (:class:`WireSpec`: the parameter object, each
request field's wire name, value translations, the duration's JSON type, declared
``provider_options``). :meth:`Catalog.plan` checks a request against its row before any call;
:func:`wire_params` builds the parameters the APIFrame and Scenario adapters send, so no model name
or field name lives in provider code.

Example:
    ```python
    from prefect_videogen.catalog import load_catalog
    from prefect_videogen.models import VideoRequest

    plan = load_catalog().plan("local", VideoRequest(prompt="a fox", duration=4, aspect_ratio="9:16"))
    assert (plan.width, plan.height) == (720, 1280)
    ```
"""

from __future__ import annotations

import json
import os
from datetime import date
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prefect_videogen.errors import InvalidVideoRequest, ModelUnavailable
from prefect_videogen.models import FEATURE_FIELDS, VideoRequest

CATALOG_ENV = "PREFECT_VIDEOGEN_CATALOG"
#: The request fields that name images: an adapter uploads or passes each through, never sends the path.
IMAGE_FIELDS = ("image", "end_image", "reference_images")


class DurationRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: int
    max: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.min <= value <= self.max

    def __str__(self) -> str:
        return f"any whole number of seconds from {self.min} to {self.max}"


class Price(BaseModel):
    """A dated price in the provider's unit, in exactly one of three forms.

    ``per_second`` (tier -> rate: OpenAI USD, Scenario creative units, APIFrame credits per second),
    ``table`` (tier -> duration in seconds -> amount: APIFrame's credit tables) or ``per_clip``
    (tier -> amount, whatever the duration).
    """

    model_config = ConfigDict(extra="forbid")
    unit: str
    per_second: dict[str, float] | None = None
    table: dict[str, dict[str, float]] | None = None
    per_clip: dict[str, float] | None = None
    usd_per_unit: float | None = None
    source: str = ""
    as_of: date | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Price:
        forms = [name for name in ("per_second", "table", "per_clip") if getattr(self, name) is not None]
        if len(forms) != 1:
            raise ValueError(f"a price has exactly one of per_second, table, per_clip; this one has {forms or 'none'}")
        return self

    @property
    def tiers(self) -> set[str]:
        return set(self.per_second or self.table or self.per_clip or {})

    def amount(self, tier: str, duration: int) -> float | None:
        """The price of one ``duration``-second clip at ``tier``; None where the row has no figure."""
        if self.table is not None:
            return self.table.get(tier, {}).get(str(duration))
        if self.per_clip is not None:
            return self.per_clip.get(tier)
        rate = (self.per_second or {}).get(tier)
        return None if rate is None else rate * duration


# The request fields a model's wire description can map to a name in its request body.
RequestField = Literal[
    "duration",
    "aspect_ratio",
    "resolution",
    "image",
    "end_image",
    "reference_images",
    "negative_prompt",
    "seed",
    "generate_audio",
]
OptionType = Literal["string", "integer", "number", "boolean"]
_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


class OptionSpec(BaseModel):
    """A model-specific extra a request may set in ``provider_options``: its type and allowed values."""

    model_config = ConfigDict(extra="forbid")
    type: OptionType
    values: list[str | int | float] | None = Field(default=None, description="The allowed values, when a list.")
    min: float | None = None
    max: float | None = None
    description: str = ""

    def check(self, name: str, value: Any, *, context: str) -> None:
        """Raise InvalidVideoRequest naming ``provider_options.<name>`` when ``value`` is not allowed."""
        field = f"provider_options.{name}"
        types = _OPTION_TYPES[self.type]
        # bool is an int in Python; only a "boolean" option takes one.
        if not isinstance(value, types) or (isinstance(value, bool) and self.type != "boolean"):
            raise InvalidVideoRequest(field, value, f"a {self.type}", context=context)
        if self.values is not None and value not in self.values:
            raise InvalidVideoRequest(field, value, self.values, context=context)
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise InvalidVideoRequest(field, value, f"from {self.min} to {self.max}", context=context)


class WireSpec(BaseModel):
    """How a model's request body is built; the provider adapters read this, not model names.

    ``fields`` maps the request's own fields to their names on the wire. A request field that is not
    mapped is never sent, and a request that sets it is refused before any call (the catalog names the
    models that do have it).
    """

    model_config = ConfigDict(extra="forbid")
    params_object: str | None = Field(
        default=None,
        description="The body's parameter object (APIFrame: soraParams, veoParams, klingParams...); "
        "empty: the parameters sit at the top of the body (Scenario).",
    )
    fields: dict[RequestField, str] = Field(default_factory=dict, description="request field -> name on the wire")
    duration_type: Literal["integer", "string"] = Field(
        default="integer", description='How the duration is sent: a JSON number or a string such as "5".'
    )
    values: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="request field -> our value -> the value on the wire, where they differ "
        "(for example resolution standard -> 720p).",
    )
    max_reference_images: int = Field(default=0, ge=0, description="How many reference images the model takes.")
    options: dict[str, OptionSpec] = Field(
        default_factory=dict, description="Model-specific extras allowed in provider_options, by wire name."
    )

    @model_validator(mode="after")
    def _consistent(self) -> WireSpec:
        names = list(self.fields.values())
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"two request fields are sent under the same wire name: {twice}")
        clash = sorted(set(names) & set(self.options))
        if clash:
            raise ValueError(f"options {clash} are already the wire names of request fields")
        unmapped = sorted(set(self.values) - set(self.fields))
        if unmapped:
            raise ValueError(f"values are given for fields that are not sent: {unmapped}")
        if ("reference_images" in self.fields) != (self.max_reference_images > 0):
            raise ValueError("reference_images is sent exactly when max_reference_images is above 0")
        return self

    def wire_value(self, field: str, value: Any) -> Any:
        """Our value of ``field`` as the provider spells it: ``values`` where the row names it (a user's
        correction wins over the type), else the duration typed per ``duration_type``."""
        spelled = self.values.get(field, {}).get(str(value))
        if spelled is not None:
            return spelled
        if field == "duration" and self.duration_type == "string":
            return str(value)
        return value


ModelStatus = Literal["live", "unconfirmed", "retired"]


class ModelSpec(BaseModel):
    """One catalog row: a model as one provider serves it."""

    model_config = ConfigDict(extra="forbid")
    provider_model_id: str
    description: str = ""
    status: ModelStatus = Field(
        default="live",
        description="live: documented and served; unconfirmed: listed by the provider, but some of this row "
        "is not documented (see `unconfirmed`); retired: no longer served (see retired_on).",
    )
    source: str = Field(default="", description="Where this row's facts come from, with its date.")
    unconfirmed: list[str] = Field(
        default_factory=list,
        description="What in this row no stored source confirms (for example aspect_ratios, price): "
        "correct it with a PREFECT_VIDEOGEN_CATALOG override.",
    )
    durations: list[int] | DurationRange
    aspect_ratios: list[str]
    sizes: dict[str, dict[str, str]] = Field(description="resolution tier -> aspect ratio -> WIDTHxHEIGHT")
    default_resolution: str | None = Field(default=None, description="The tier used when a request names none.")
    max_prompt_chars: int | None = Field(
        default=None, description="This model's prompt limit, if below the provider's."
    )
    image_input: bool = False
    wire: WireSpec | None = Field(default=None, description="How the body is built; empty: the provider's default.")
    retired_on: date | None = None
    price: Price | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.wire is not None and "image" in self.wire.fields:
            self.image_input = True
        if self.default_resolution is not None and self.default_resolution not in self.sizes:
            raise ValueError(f"default_resolution {self.default_resolution!r} is not one of the sizes' tiers")
        return self

    @property
    def tier(self) -> str:
        """The resolution tier used when a request names none."""
        return self.default_resolution or next(iter(self.sizes))

    def features(self, wire: WireSpec | None = None) -> list[str]:
        """The optional request fields this model takes: image, end_image, reference_images, ...

        ``wire`` is the row's effective wire (its own, else the provider's default).
        """
        fields = (wire or self.wire or WireSpec()).fields
        taken = ["image"] if self.image_input or "image" in fields else []
        return taken + [name for name in FEATURE_FIELDS if name in fields]

    def check_price(self) -> None:
        """Raise ValueError when the price leaves out a tier or (credit tables) a listed duration."""
        if self.price is None:
            return
        missing = sorted(set(self.sizes) - self.price.tiers)
        if missing:
            raise ValueError(f"the price has no figure for the tiers {missing}")
        if self.price.table is not None:
            durations = (
                self.durations
                if isinstance(self.durations, list)
                else list(range(self.durations.min, self.durations.max + 1))
            )
            for tier in self.sizes:
                gaps = [d for d in durations if str(d) not in self.price.table[tier]]
                if gaps:
                    raise ValueError(f"the price table has no {tier} figure for the durations {gaps}")


class ProviderCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_model: str
    max_prompt_chars: int
    default_wire: WireSpec | None = Field(default=None, description="The wire of rows that describe none.")
    models: dict[str, ModelSpec]

    @model_validator(mode="after")
    def _rows_consistent(self) -> ProviderCatalog:
        if self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not one of the models")
        for key, spec in self.models.items():
            wire = self.wire_for(spec)
            try:
                spec.check_price()
                if wire is not None and spec.image_input and "image" not in wire.fields:
                    raise ValueError("image_input is set but its wire sends no image")
            except ValueError as exc:
                raise ValueError(f"model {key!r}: {exc}") from None
        return self

    def wire_for(self, spec: ModelSpec) -> WireSpec | None:
        return spec.wire or self.default_wire

    def find(self, name: str) -> str | None:
        """The catalog key of ``name``, given as a catalog key or as the provider's own model id."""
        if name in self.models:
            return name
        return next((key for key, spec in self.models.items() if spec.provider_model_id == name), None)

    def live_models(self, *, today: date | None = None) -> list[str]:
        """The models not retired by ``today``: what to suggest when a model is not served."""
        day = today or date.today()
        return sorted(
            key
            for key, spec in self.models.items()
            if spec.status != "retired" and not (spec.retired_on and spec.retired_on <= day)
        )


class VideoPlan(BaseModel):
    """A request checked against the catalog, with everything the provider call needs."""

    provider: str
    request: VideoRequest = Field(description="The request with its model filled in.")
    spec: ModelSpec
    wire: WireSpec | None = Field(default=None, description="How the body is built (the row's, else the provider's).")
    width: int
    height: int
    live_alternatives: list[str] = Field(
        default_factory=list,
        description="The provider's other models the catalog does not mark retired: "
        "what a 'model not found' error suggests.",
    )

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def _check_image(field: str, image: str) -> None:
    if "://" in image:
        if not image.lower().startswith(("http://", "https://")):
            raise InvalidVideoRequest(field, image, "a local file path or an http(s) URL")
    elif not Path(image).is_file():
        raise InvalidVideoRequest(field, image, "an existing local image file or an http(s) URL")


def request_images(request: VideoRequest) -> list[tuple[str, str]]:
    """Every image the request names, as (field, value): image, end_image, then each reference image.

    Adapters upload or pass these through by the same rules as ``image``; the field names the
    image in errors (``reference_images[1]`` for the second reference).
    """
    named = [("image", request.image), ("end_image", request.end_image)]
    named += [(f"reference_images[{index}]", item) for index, item in enumerate(request.reference_images)]
    return [(field, value) for field, value in named if value is not None]


def wire_params(plan: VideoPlan, images: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model's parameters as its wire names them: the request's fields, then provider_options.

    Each request field the wire maps is sent under its wire name, with our value translated through
    ``wire.values`` and the duration typed per ``duration_type``; unset fields are not sent. Image
    fields are not read from the request: ``images`` gives them as the provider takes them (URLs,
    asset ids) under the request field's name, ``reference_images`` as a list; an image field
    missing from ``images`` is left out (a Scenario dry-run quote prices without uploads).

    Example:
        ```python
        plan = load_catalog().plan("apiframe", VideoRequest(prompt="a fox", model="kling-2.1", duration=5))
        wire_params(plan)  # {"duration": 5, "aspect_ratio": "16:9", "mode": "standard"}
        ```

    Raises:
        ValueError: the plan has no wire (a provider whose body shape is its API's, e.g. OpenAI).
    """
    wire = plan.wire
    if wire is None:
        raise ValueError(f"{plan.provider} model {plan.request.model!r} has no wire description in the catalog")
    images = images or {}
    request = plan.request
    params: dict[str, Any] = {}
    for field, name in wire.fields.items():
        if field in IMAGE_FIELDS:
            value = images.get(field)
        else:
            value = getattr(request, field)
        if value is None or value == []:
            continue
        params[name] = value if field in IMAGE_FIELDS else wire.wire_value(field, value)
    # Catalog.plan checked the options against wire.options; a plan built by hand still may not
    # override what the request's own fields set.
    clash = sorted(set(request.provider_options) & set(wire.fields.values()))
    if clash:
        raise InvalidVideoRequest(
            "provider_options", clash, "names other than the request's own fields' wire names", context=plan.provider
        )
    params.update(request.provider_options)
    return params


def ensure_available(plan: VideoPlan, *, today: date | None = None) -> None:
    """Raise ModelUnavailable when the catalog marks ``plan``'s model retired on or before ``today``.

    Provider adapters call this where the retirement applies (OpenAI's own API), not for
    OpenAI-compatible gateways, which may still serve a model: there the provider's own "model not
    found" answer is mapped to the same error.
    """
    spec = plan.spec
    if spec.retired_on and spec.retired_on <= (today or date.today()):
        raise ModelUnavailable(
            f"model {plan.request.model!r} was retired on {spec.retired_on.isoformat()}; choose another model "
            "or a provider that still serves it (catalog overrides: PREFECT_VIDEOGEN_CATALOG)",
            provider=plan.provider,
            model=plan.request.model or "",
        )


def unavailable_message(plan: VideoPlan, detail: str) -> str:
    """A "model not found" message that lists the catalog's live alternatives for the plan's provider."""
    others = [key for key in plan.live_alternatives if key != plan.request.model]
    suggestion = (
        f"live alternatives on {plan.provider} in the catalog: {', '.join(others)}"
        if others
        else f"the catalog lists no other live model on {plan.provider}"
    )
    return f"{detail}; {suggestion} (`prefect-videogen models --provider {plan.provider}`; catalog overrides: {CATALOG_ENV})"


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    as_of: date
    providers: dict[str, ProviderCatalog]

    def provider(self, name: str) -> ProviderCatalog:
        try:
            return self.providers[name]
        except KeyError:
            raise InvalidVideoRequest("provider", name, sorted(self.providers)) from None

    def models_with(self, feature: str) -> list[str]:
        """``provider/model`` of every catalog row that takes the optional request field ``feature``."""
        return [
            f"{name}/{key}"
            for name, entry in sorted(self.providers.items())
            for key, spec in sorted(entry.models.items())
            if feature in spec.features(entry.wire_for(spec))
        ]

    def plan(self, provider: str, request: VideoRequest) -> VideoPlan:
        """Check ``request`` against ``provider``'s catalog rows and fill in the model's defaults.

        Raises:
            InvalidVideoRequest: a field's value is not allowed; the message names the field, the
                value and the allowed values. Nothing is rounded or substituted.
        """
        entry = self.provider(provider)
        model = entry.find(request.model or entry.default_model)
        if model is None:
            raise InvalidVideoRequest("model", request.model, sorted(entry.models), context=f"provider {provider!r}")
        spec = entry.models[model]
        wire = entry.wire_for(spec)
        context = f"{provider} model {model!r}"
        limit = min(entry.max_prompt_chars, spec.max_prompt_chars or entry.max_prompt_chars)
        if len(request.prompt) > limit:
            raise InvalidVideoRequest(
                "prompt", f"<{len(request.prompt)} characters>", f"at most {limit} characters", context=context
            )
        if request.negative_prompt is not None and len(request.negative_prompt) > limit:
            raise InvalidVideoRequest(
                "negative_prompt",
                f"<{len(request.negative_prompt)} characters>",
                f"at most {limit} characters",
                context=context,
            )
        if request.duration not in spec.durations:
            allowed = spec.durations if isinstance(spec.durations, list) else str(spec.durations)
            raise InvalidVideoRequest("duration", request.duration, allowed, context=context)
        if request.aspect_ratio not in spec.aspect_ratios:
            raise InvalidVideoRequest("aspect_ratio", request.aspect_ratio, spec.aspect_ratios, context=context)
        tier = request.resolution or spec.tier
        if tier not in spec.sizes:
            raise InvalidVideoRequest("resolution", tier, list(spec.sizes), context=context)
        size = spec.sizes[tier].get(request.aspect_ratio)
        if size is None:
            raise InvalidVideoRequest(
                "aspect_ratio", request.aspect_ratio, sorted(spec.sizes[tier]), context=f"{context} at {tier}"
            )
        self._check_features(request, spec, wire, context)
        width, height = (int(n) for n in size.split("x"))
        return VideoPlan(
            provider=provider,
            request=request.model_copy(update={"model": model, "resolution": tier}),
            spec=spec,
            wire=wire,
            width=width,
            height=height,
            live_alternatives=[key for key in entry.live_models() if key != model],
        )

    def _check_features(self, request: VideoRequest, spec: ModelSpec, wire: WireSpec | None, context: str) -> None:
        taken = spec.features(wire)
        for name, value in {"image": request.image, **request.features_set()}.items():
            if value is None:
                continue
            if name not in taken:
                having = self.models_with(name)
                raise InvalidVideoRequest(
                    name,
                    value,
                    f"nothing: this model has no {name}"
                    + (f" (models that have it: {', '.join(having)})" if having else ""),
                    context=context,
                )
        for field, image in request_images(request):
            _check_image(field, image)
        if wire is None:
            return  # no wire description (OpenAI shape, local renderer): the adapter checks its own options
        if len(request.reference_images) > wire.max_reference_images:
            raise InvalidVideoRequest(
                "reference_images",
                f"<{len(request.reference_images)} images>",
                f"at most {wire.max_reference_images}",
                context=context,
            )
        managed = set(wire.fields.values())
        for name, value in request.provider_options.items():
            if name in managed:
                owner = next(field for field, wire_name in wire.fields.items() if wire_name == name)
                raise InvalidVideoRequest(
                    "provider_options",
                    name,
                    f"names other than {name!r}: set it as the request's {owner}",
                    context=context,
                )
            option = wire.options.get(name)
            if option is None:
                raise InvalidVideoRequest(
                    "provider_options",
                    name,
                    sorted(wire.options) or "none: this model declares no extras",
                    context=context,
                )
            option.check(name, value, context=context)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Overlay ``override`` on ``base``: provider settings replace, model rows replace per model."""
    merged = {**base, **{k: v for k, v in override.items() if k != "providers"}}
    providers = dict(base["providers"])
    for name, entry in override.get("providers", {}).items():
        current = providers.get(name, {})
        providers[name] = {**current, **entry, "models": {**current.get("models", {}), **entry.get("models", {})}}
    merged["providers"] = providers
    return merged


def load_catalog(override_path: str | os.PathLike[str] | None = None) -> Catalog:
    """Load the packaged catalog, merged with the user's overrides (argument or environment)."""
    path = override_path or os.environ.get(CATALOG_ENV) or None
    return _load(str(path) if path else None)


@lru_cache(maxsize=8)
def _load(override_path: str | None) -> Catalog:
    data = json.loads(resources.files("prefect_videogen").joinpath("catalog.json").read_text())
    data.pop("_comment", None)
    if override_path:
        override = json.loads(Path(override_path).read_text())
        override.pop("_comment", None)
        data = _merge(data, override)
    return Catalog.model_validate(data)
