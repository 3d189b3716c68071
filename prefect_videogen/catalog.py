"""The model catalog: which models each provider serves, what they accept, what they cost.

The catalog is data (``catalog.json`` in this package). Adding a model is a row, not code. Users
override or add rows with a JSON file of the same shape, named by ``PREFECT_VIDEOGEN_CATALOG`` or
passed to :func:`load_catalog`; rows are merged per model.

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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prefect_videogen.errors import InvalidVideoRequest, ModelUnavailable
from prefect_videogen.models import VideoRequest

CATALOG_ENV = "PREFECT_VIDEOGEN_CATALOG"


class DurationRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: int
    max: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.min <= value <= self.max

    def __str__(self) -> str:
        return f"any whole number of seconds from {self.min} to {self.max}"


class Price(BaseModel):
    """A dated price: USD per second (OpenAI), credits per variant (APIFrame), or units per second."""

    model_config = ConfigDict(extra="forbid")
    unit: str
    per_second: dict[str, float] | None = None
    table: dict[str, dict[str, float]] | None = None
    usd_per_unit: float | None = None
    source: str = ""
    as_of: date | None = None


class ModelSpec(BaseModel):
    """One catalog row: a model as one provider serves it."""

    model_config = ConfigDict(extra="forbid")
    provider_model_id: str
    description: str = ""
    durations: list[int] | DurationRange
    aspect_ratios: list[str]
    sizes: dict[str, dict[str, str]] = Field(description="resolution tier -> aspect ratio -> WIDTHxHEIGHT")
    image_input: bool = False
    retired_on: date | None = None
    price: Price | None = None


class ProviderCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_model: str
    max_prompt_chars: int
    models: dict[str, ModelSpec]


class VideoPlan(BaseModel):
    """A request checked against the catalog, with everything the provider call needs."""

    provider: str
    request: VideoRequest = Field(description="The request with its model filled in.")
    spec: ModelSpec
    width: int
    height: int

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def _check_image(image: str) -> None:
    if "://" in image:
        if not image.lower().startswith(("http://", "https://")):
            raise InvalidVideoRequest("image", image, "a local file path or an http(s) URL")
    elif not Path(image).is_file():
        raise InvalidVideoRequest("image", image, "an existing local image file or an http(s) URL")


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


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    as_of: date
    providers: dict[str, ProviderCatalog]

    def provider(self, name: str) -> ProviderCatalog:
        try:
            return self.providers[name]
        except KeyError:
            raise InvalidVideoRequest("provider", name, sorted(self.providers)) from None

    def plan(self, provider: str, request: VideoRequest) -> VideoPlan:
        """Check ``request`` against ``provider``'s catalog rows.

        Raises:
            InvalidVideoRequest: a field's value is not allowed; the message names the field, the
                value and the allowed values. Nothing is rounded or substituted.
        """
        entry = self.provider(provider)
        model = request.model or entry.default_model
        if model not in entry.models:
            raise InvalidVideoRequest("model", model, sorted(entry.models), context=f"provider {provider!r}")
        spec = entry.models[model]
        context = f"{provider} model {model!r}"
        if len(request.prompt) > entry.max_prompt_chars:
            raise InvalidVideoRequest(
                "prompt",
                f"<{len(request.prompt)} characters>",
                f"at most {entry.max_prompt_chars} characters",
                context=context,
            )
        if request.duration not in spec.durations:
            allowed = spec.durations if isinstance(spec.durations, list) else str(spec.durations)
            raise InvalidVideoRequest("duration", request.duration, allowed, context=context)
        if request.aspect_ratio not in spec.aspect_ratios:
            raise InvalidVideoRequest("aspect_ratio", request.aspect_ratio, spec.aspect_ratios, context=context)
        if request.resolution not in spec.sizes:
            raise InvalidVideoRequest("resolution", request.resolution, sorted(spec.sizes), context=context)
        if request.image is not None:
            if not spec.image_input:
                raise InvalidVideoRequest("image", request.image, "no image input for this model", context=context)
            _check_image(request.image)
        width, height = (int(n) for n in spec.sizes[request.resolution][request.aspect_ratio].split("x"))
        return VideoPlan(
            provider=provider,
            request=request.model_copy(update={"model": model}),
            spec=spec,
            width=width,
            height=height,
        )


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
