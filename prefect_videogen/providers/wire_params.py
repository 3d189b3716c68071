"""Request parameters built from a catalog row's wire description, for hosts that serve many models.

fal (a flat JSON input) and Replicate (the same object under ``"input"``) take one model's parameters
by the names that model declares; which names and values is catalog data (``WireSpec``), so this
module knows no model. The prompt's place (``"prompt"`` in the parameters) is the hosts' own rule.

Images: an http(s) URL is passed through (the host fetches it); a local file passes the worker's
path policy and a content check, then goes inline as a ``data:`` URL, which both hosts document as
a file input (fal_client encodes files so; Replicate recommends it below 1 MB). Inline data keeps
the input identical from one submit to the next, so a listing can match it (Replicate's find_job).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import urlsplit

from prefect_videogen.catalog import VideoPlan
from prefect_videogen.errors import InvalidVideoRequest
from prefect_videogen.policy import check_local_image, has_scheme

PROMPT_PARAM = "prompt"
_IMAGE_FIELDS = ("image", "end_image", "reference_images")


async def image_value(param: str, image: str, *, max_bytes: int, limit_text: str) -> str:
    """``image`` as the host takes it: an http(s) URL unchanged, a checked local file as a data URL."""
    scheme = urlsplit(image).scheme.lower()
    if scheme in ("http", "https"):
        return image
    if has_scheme(image):
        raise InvalidVideoRequest(param, image, "a local image file or an http(s) URL")
    checked = await asyncio.to_thread(
        check_local_image, param, image, read=True, max_bytes=max_bytes, limit_text=limit_text
    )
    return f"data:{checked.mime};base64,{base64.b64encode(checked.data or b'').decode()}"


async def wire_params(plan: VideoPlan, *, max_image_bytes: int, limit_text: str) -> dict[str, Any]:
    """The model's parameters for ``plan``: prompt, the mapped request fields, then provider_options.

    Fields the row does not map are not sent (the catalog already refused a request that sets one);
    values go through the row's value table and the duration in its declared JSON type.

    Raises:
        InvalidVideoRequest: the row has no wire description, or provider_options names the prompt.
    """
    wire, request = plan.wire, plan.request
    if wire is None:
        raise InvalidVideoRequest(
            "model",
            request.model,
            "a catalog row with a `wire` description (which parameters the model takes)",
            context=f"{plan.provider} model {request.model!r}",
        )
    if PROMPT_PARAM in request.provider_options:
        raise InvalidVideoRequest("provider_options", PROMPT_PARAM, "names other than the prompt's")
    params: dict[str, Any] = {PROMPT_PARAM: request.prompt}
    for field, name in wire.fields.items():
        value: Any = getattr(request, field)
        if value is None or value == []:
            continue
        if field in _IMAGE_FIELDS:
            images = value if isinstance(value, list) else [value]
            converted = [
                await image_value(field, image, max_bytes=max_image_bytes, limit_text=limit_text) for image in images
            ]
            params[name] = converted if isinstance(value, list) else converted[0]
            continue
        if field == "duration" and wire.duration_type == "string":
            value = str(value)
        mapped = wire.values.get(field, {})
        if not isinstance(value, bool) and str(value) in mapped:
            value = mapped[str(value)]
        params[name] = value
    params.update(request.provider_options)
    return params
