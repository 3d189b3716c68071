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

from prefect_videogen.catalog import IMAGE_FIELDS, VideoPlan
from prefect_videogen.catalog import wire_params as catalog_wire_params
from prefect_videogen.errors import InvalidVideoRequest
from prefect_videogen.policy import check_local_image, has_scheme

PROMPT_PARAM = "prompt"


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
    """The model's parameters for ``plan``: the prompt, then :func:`prefect_videogen.catalog.wire_params`.

    Images are turned into what the host takes first (URLs passed through, local files inlined);
    everything else (names, value tables, the duration's type, provider_options) is the catalog's.

    Raises:
        InvalidVideoRequest: the row has no wire description, provider_options names the prompt, or
            a local image is refused by the worker's policy or the host's inline limit.
    """
    request = plan.request
    if plan.wire is None:
        raise InvalidVideoRequest(
            "model",
            request.model,
            "a catalog row with a `wire` description (which parameters the model takes)",
            context=f"{plan.provider} model {request.model!r}",
        )
    if PROMPT_PARAM in request.provider_options:
        raise InvalidVideoRequest("provider_options", PROMPT_PARAM, "names other than the prompt's")
    images: dict[str, Any] = {}
    for field in IMAGE_FIELDS:
        value = getattr(request, field)
        if value is None or value == [] or field not in plan.wire.fields:
            continue
        items = value if isinstance(value, list) else [value]
        converted = [await image_value(field, item, max_bytes=max_image_bytes, limit_text=limit_text) for item in items]
        images[field] = converted if isinstance(value, list) else converted[0]
    return {PROMPT_PARAM: request.prompt, **catalog_wire_params(plan, images)}
