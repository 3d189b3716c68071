"""Per-model input tables of the multi-model host emulators (fal, Replicate), written by hand.

They are NOT generated from catalog.json: the emulators check what a host would accept on their
own, so a test catches a catalog row that disagrees with them. A table lists each input's type
and allowed values; :meth:`HostModel.problems` checks one input object and :meth:`HostModel.render`
says what video the host would make of it (size, seconds, tier) and its price in USD.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

IMAGE_MIME_TYPES = ("image/png", "image/jpeg", "image/webp")


@dataclass(frozen=True)
class Input:
    """One input of a model: ``kind`` string | integer | number | boolean | image, allowed ``values``."""

    kind: str
    values: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def problem(self, value: Any) -> tuple[str, str] | None:
        """``(message, error type)`` when ``value`` is not allowed, else None."""
        if self.kind == "image":
            return None if is_image_reference(value) else ("Invalid image: give an http(s) URL or a data URI", "url")
        if self.kind == "boolean":
            return None if isinstance(value, bool) else ("Input should be a valid boolean", "bool_type")
        if self.kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            return ("Input should be a valid integer", "int_type")
        if self.kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return ("Input should be a valid number", "float_type")
        if self.kind == "string" and not isinstance(value, str):
            return ("Input should be a valid string", "string_type")
        if self.values is not None and value not in self.values:
            allowed = " or ".join(repr(v) for v in self.values)
            return (f"Input should be {allowed}", "literal_error")
        if self.minimum is not None and value < self.minimum:
            return (f"Input should be greater than or equal to {self.minimum}", "greater_than_equal")
        if self.maximum is not None and value > self.maximum:
            return (f"Input should be less than or equal to {self.maximum}", "less_than_equal")
        return None


def is_image_reference(value: Any) -> bool:
    """An http(s) URL, or a ``data:image/...;base64,`` URI whose payload decodes."""
    if not isinstance(value, str):
        return False
    if value.startswith(("http://", "https://")) and len(value) > 10:
        return True
    head, _, payload = value.partition(",")
    if not head.startswith("data:") or not head.endswith(";base64"):
        return False
    if head[5:].removesuffix(";base64") not in IMAGE_MIME_TYPES:
        return False
    try:
        return bool(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        return False


@dataclass(frozen=True)
class HostModel:
    """One model's inputs and output as a host serves it.

    Attributes:
        inputs: every accepted input by name (anything else is refused).
        required: inputs that must be present (the prompt, an image-to-video endpoint's image).
        duration: (input name, default wire value); None when the model has one fixed length.
        aspect: (input name, default wire value); wire values mapped by ``aspect_names`` when they differ.
        resolution: (input name, default wire value); None when the model has one tier.
        sizes: tier -> aspect ratio -> (width, height).
        usd_per_second: tier -> USD per second of video.
        fixed_seconds: the length when there is no duration input.
    """

    inputs: dict[str, Input]
    sizes: dict[str, dict[str, tuple[int, int]]]
    usd_per_second: dict[str, float]
    required: tuple[str, ...] = ("prompt",)
    duration: tuple[str, Any] | None = None
    aspect: tuple[str, str] | None = None
    resolution: tuple[str, str] | None = None
    aspect_names: dict[str, str] = field(default_factory=dict)
    fixed_seconds: int = 8
    max_prompt_chars: int = 5000

    def problems(self, params: dict[str, Any]) -> list[tuple[str, str, str]]:
        """``(input name, message, error type)`` for every unknown, missing or invalid input."""
        found: list[tuple[str, str, str]] = []
        for name in params:
            if name not in self.inputs:
                found.append((name, "Extra inputs are not permitted", "extra_forbidden"))
        for name in self.required:
            if name not in params:
                found.append((name, "Field required", "missing"))
        for name, value in params.items():
            spec = self.inputs.get(name)
            problem = spec.problem(value) if spec else None
            if problem:
                found.append((name, *problem))
        prompt = params.get("prompt")
        if isinstance(prompt, str) and not 1 <= len(prompt) <= self.max_prompt_chars:
            found.append(("prompt", f"String should have 1 to {self.max_prompt_chars} characters", "string_too_long"))
        return found

    def render(self, params: dict[str, Any]) -> tuple[int, int, int, str]:
        """(width, height, seconds, tier) of the video this input makes (the input is valid)."""
        seconds = self.fixed_seconds
        if self.duration is not None:
            raw = params.get(self.duration[0], self.duration[1])
            seconds = int(str(raw).removesuffix("s"))
        tier = next(iter(self.sizes))
        if self.resolution is not None:
            tier = str(params.get(self.resolution[0], self.resolution[1]))
        aspect = "16:9"
        if self.aspect is not None:
            raw_aspect = str(params.get(self.aspect[0], self.aspect[1]))
            aspect = self.aspect_names.get(raw_aspect, raw_aspect)
        width, height = self.sizes[tier][aspect]
        return width, height, seconds, tier

    def price(self, seconds: int, tier: str) -> float:
        return round(self.usd_per_second[tier] * seconds, 6)


def sizes(tiers: dict[str, tuple[str, ...]]) -> dict[str, dict[str, tuple[int, int]]]:
    """Sizes of the usual tiers for the given aspect ratios."""
    heights = {"480p": 480, "720p": 720, "1080p": 1080}
    ratios = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1), "4:3": (4, 3), "3:4": (3, 4), "21:9": (21, 9)}
    table: dict[str, dict[str, tuple[int, int]]] = {}
    for tier, aspects in tiers.items():
        short = heights[tier]
        row = {}
        for aspect in aspects:
            w, h = ratios[aspect]
            # The short side is the tier; 480p 16:9 is 864x480 (a multiple of 16, as the hosts render it).
            wide = (max(w, h), min(w, h))
            long_side = {("480p", (16, 9)): 864, ("480p", (21, 9)): 1120}.get((tier, wide), short * wide[0] // wide[1])
            row[aspect] = (long_side, short) if w >= h else (short, long_side)
        table[tier] = row
    return table
