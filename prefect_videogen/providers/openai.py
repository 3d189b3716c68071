"""OpenAI Videos API (``/v1/videos``), also served by OpenAI-compatible gateways.

Wire format (OpenAI API reference, openai-python ``resources/videos.py``):

- ``POST /videos`` with ``prompt``, ``model``, ``seconds`` as a STRING ("4", not 4: an integer gets
  HTTP 400) and ``size`` "WxH". An image goes in ``input_reference``: a multipart file upload (the
  whole request is then multipart/form-data) or, for a URL, JSON ``{"image_url": url}``. The image
  must match ``size``.
- ``GET /videos/{id}`` returns the Video object; a failure is HTTP 200 with ``status: failed`` and
  ``error: {code, message}``; the create response itself can already be failed. The
  ``openai-poll-after-ms`` header is the server's poll hint (the SDK's ``poll()`` reads it).
- ``GET /videos/{id}/content?variant=video`` returns the MP4; it needs the API key.

OpenAI does not dedupe ``POST /videos`` (no documented idempotency key), so a submit is sent with
``paid=True``: re-sent only when nothing can have been created (connect failure, 429).

Example:
    ```python
    from prefect_videogen.providers.openai import OpenAIVideoProvider

    async with OpenAIVideoProvider(api_key="sk-...", base_url="https://gateway.example/v1") as client:
        job = await client.submit(plan)
    ```
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlparse

import httpx

from prefect_videogen.catalog import VideoPlan, ensure_available
from prefect_videogen.errors import (
    InsufficientCredits,
    InvalidVideoRequest,
    ModelUnavailable,
    ProviderError,
    ProviderUnavailable,
    register_secret,
)
from prefect_videogen.models import JobStatus, Rejection, RejectionStage, VideoJob
from prefect_videogen.policy import check_local_image
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.base import VideoProvider, map_status
from prefect_videogen.providers.http import ErrorInfo, HttpTransport, Sleep, json_object
from prefect_videogen.providers.retry import RetryPolicy

DEFAULT_BASE_URL = "https://api.openai.com/v1"
OFFICIAL_HOST = "api.openai.com"
POLL_HINT_HEADER = "openai-poll-after-ms"
# A job found for an unanswered submit may carry a created_at this much before the claim's.
LOOKUP_SKEW_SECONDS = 120

# The documented Video.status vocabulary. Anything else is "still running" (map_status).
STATUS_TABLE: dict[str, JobStatus] = {
    "queued": JobStatus.QUEUED,
    "in_progress": JobStatus.RUNNING,
    "completed": JobStatus.SUCCEEDED,
    "failed": JobStatus.FAILED,
}

# input_reference accepts these image types (OpenAI video generation guide).
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}

# Fields this adapter sets itself; provider_options may add others (the API rejects unknown ones).
MANAGED_FIELDS = ("prompt", "model", "seconds", "size", "input_reference")


def classify_rejection(code: str | None, message: str | None) -> Rejection | None:
    """Tell a content-policy failure from other failures, by OpenAI's documented error codes.

    - ``sentinel_block``: the request was blocked before generation; nothing was generated or
      billed. The message says whether the prompt or the image was flagged; "prompt" otherwise,
      since the prompt is the one input every request has.
    - ``moderation_blocked``: the generated video was blocked after generation; users report
      being billed for it, so ``charged`` is True.

    Other codes are ordinary failures (``JobFailed``).
    """
    text = (message or "").lower()
    if code == "sentinel_block":
        stage: RejectionStage = (
            "image" if ("image" in text or "input_reference" in text) and "prompt" not in text else "prompt"
        )
        return Rejection(stage=stage, charged=False)
    if code == "moderation_blocked":
        return Rejection(stage="output", charged=True)
    return None


class OpenAIVideoProvider(VideoProvider):
    """Generate videos through OpenAI's Videos API or an OpenAI-compatible gateway.

    Args:
        api_key: sent as ``Authorization: Bearer``; registered for redaction, never logged.
        base_url: API root ending in ``/v1``; a gateway, proxy or the emulator.
        organization: optional ``OpenAI-Organization`` header.
        project: optional ``OpenAI-Project`` header.
        account_label: non-secret name of the billed account (cache keys, ledger).
        policy, sleep, transport: passed to :class:`HttpTransport` (tests inject them).
    """

    name = "openai"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        organization: str | None = None,
        project: str | None = None,
        account_label: str | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key is empty; set OPENAI_API_KEY or the block's api_key")
        headers = openai_headers(api_key, organization=organization, project=project)
        self.base_url = base_url.rstrip("/")
        self.host = urlparse(self.base_url).hostname or ""
        self._account_id = account_id_for(api_key, organization=organization, project=project, label=account_label)
        self._http = HttpTransport(
            self.name,
            self.base_url,
            headers=headers,
            error_mapper=self._map_error,
            policy=policy,
            sleep=sleep,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"OpenAIVideoProvider(base_url={self.base_url!r}, account_id={self._account_id!r})"

    @property
    def account_id(self) -> str:
        return self._account_id

    @property
    def is_official_api(self) -> bool:
        """True for OpenAI's own API, where the catalog's retirement dates apply."""
        return self.host == OFFICIAL_HOST

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(self, plan: VideoPlan, *, idempotency_key: str | None = None) -> VideoJob:
        """Create the video job. ``idempotency_key`` is ignored: OpenAI documents none for videos.

        Raises:
            ModelUnavailable: the model is retired (OpenAI's own API: checked before any request)
                or the server says it does not serve it.
            InvalidVideoRequest: the image is missing, of an unsupported type, or not ``plan.size``.
        """
        if self.is_official_api:
            # OpenAI shut Sora down on 2026-09-24; gateways may still serve it, so only here.
            ensure_available(plan)
        request = plan.request
        fields: dict[str, Any] = {
            "prompt": request.prompt,
            "model": plan.spec.provider_model_id,
            "seconds": str(request.duration),  # a string: an integer is rejected with HTTP 400
            "size": plan.size,
        }
        clash = sorted(set(request.provider_options) & set(MANAGED_FIELDS))
        if clash:
            raise InvalidVideoRequest(
                "provider_options", clash, f"keys other than {', '.join(MANAGED_FIELDS)} (set through the request)"
            )
        fields.update(request.provider_options)
        if request.image is None:
            kwargs: dict[str, Any] = {"json": fields}
        elif request.image.startswith(("http://", "https://")):
            kwargs = {"json": {**fields, "input_reference": {"image_url": request.image}}}
        else:
            kwargs = {"data": _form_fields(fields), "files": {"input_reference": _reference_file(request.image, plan)}}
        try:
            response = await self._http.send("POST", "videos", paid=True, **kwargs)
        except ModelUnavailable as exc:
            raise ModelUnavailable(
                f"model {request.model!r} ({plan.spec.provider_model_id}) is not served at {self.host}: {exc.detail}",
                provider=self.name,
                model=request.model or "",
                status_code=exc.status_code,
                request_id=exc.request_id,
            ) from exc
        video = _video_body(response, self.name, maybe_created=True)
        return self._job(video, response, model=request.model or plan.spec.provider_model_id)

    async def find_job(self, plan: VideoPlan, claim: Any, *, max_pages: int = 20) -> VideoJob | None:
        """The job an unanswered submit created, from ``GET /videos`` (newest first), or None.

        Matches the claimed request (prompt, model, size, seconds) among the videos created from
        ``LOOKUP_SKEW_SECONDS`` before the claim on (clock skew between us and the provider); the
        one created closest to the claim wins. Used for a claim without a job id (a crash or an
        ambiguous failure mid-submit), never to decide to pay again.
        """
        request, claimed_at = plan.request, claim.created_at.timestamp()
        wanted = {
            "prompt": request.prompt,
            "model": plan.spec.provider_model_id,
            "size": plan.size,
            "seconds": str(request.duration),
        }
        since = claimed_at - LOOKUP_SKEW_SECONDS
        params: dict[str, Any] = {"limit": 100, "order": "desc"}
        found: list[dict[str, Any]] = []
        for _ in range(max_pages):
            page = await self._http.json("GET", "videos", params=params)
            videos = page.get("data") if isinstance(page, dict) else None
            if not isinstance(videos, list):
                break
            older = False
            for video in videos:
                created = video.get("created_at") if isinstance(video, dict) else None
                if not isinstance(created, (int, float)):
                    continue
                if created < since:
                    older = True
                    continue
                if all(str(video.get(name)) == value for name, value in wanted.items()) and video.get("id"):
                    found.append(video)
            if older or not page.get("has_more") or not page.get("last_id"):
                break
            params["after"] = page["last_id"]
        if not found:
            return None
        best = min(found, key=lambda video: abs(video["created_at"] - claimed_at))
        placeholder = VideoJob(
            provider=self.name,
            job_id=str(best["id"]),
            model=request.model or "",
            status=JobStatus.QUEUED,
            raw_status="found",
        )
        return await self.get_job(placeholder)

    async def get_job(self, job: VideoJob) -> VideoJob:
        response = await self._http.send("GET", f"videos/{job.job_id}")
        return self._job(_video_body(response, self.name), response, model=job.model)

    @asynccontextmanager
    async def stream_video(self, job: VideoJob) -> AsyncIterator[AsyncIterator[bytes]]:
        # /content needs the API key, so it goes through the authenticated API client.
        async with self._http.stream(f"videos/{job.job_id}/content?variant=video", authenticated=True) as chunks:
            yield chunks

    async def delete(self, job: VideoJob) -> bool:
        """Delete a completed or failed video and its assets from the provider."""
        response = await self._http.send("DELETE", f"videos/{job.job_id}")
        return bool(_video_body(response, self.name).get("deleted"))

    def _job(self, video: dict[str, Any], response: httpx.Response, *, model: str) -> VideoJob:
        raw_status = video.get("status")
        status = map_status(STATUS_TABLE, raw_status if isinstance(raw_status, str) else None)
        progress = video.get("progress")
        error = json_object(video.get("error"))
        code = str(error["code"]) if error.get("code") else None
        message = str(error["message"]) if error.get("message") else None
        provider_data: dict[str, Any] = {
            key: video[key] for key in ("model", "size", "seconds", "expires_at") if video.get(key) is not None
        }
        rejection = classify_rejection(code, message) if status is JobStatus.FAILED else None
        return VideoJob(
            provider=self.name,
            job_id=str(video.get("id") or ""),
            model=model,
            status=status,
            raw_status=str(raw_status),
            progress=min(max(progress / 100.0, 0.0), 1.0)
            if isinstance(progress, (int, float)) and not isinstance(progress, bool)
            else None,
            error_code=code,
            error_message=message,
            poll_after_seconds=_poll_hint(response),
            rejection=rejection,
            provider_data=provider_data,
        )

    def _map_error(self, response: httpx.Response, info: ErrorInfo) -> ProviderError | None:
        return map_openai_error(self.name, info)


def openai_headers(api_key: str, *, organization: str | None = None, project: str | None = None) -> dict[str, str]:
    """Auth headers of the OpenAI API shape (Videos and chat completions); registers the key for redaction."""
    register_secret(api_key)
    headers = {"Authorization": f"Bearer {api_key}"}
    if organization:
        headers["OpenAI-Organization"] = organization
    if project:
        headers["OpenAI-Project"] = project
    return headers


def map_openai_error(provider: str, info: ErrorInfo) -> ProviderError | None:
    """The OpenAI error shape's special cases, before the shared status mapping."""
    error = info.body.get("error") if isinstance(info.body, dict) else None
    error = json_object(error)
    kwargs: dict[str, Any] = {"provider": provider, "status_code": info.status, "request_id": info.request_id}
    code, param = error.get("code"), error.get("param")
    # 404 model_not_found (OpenAI) or 400 naming the model parameter (gateways, enum checks).
    if code == "model_not_found" or (info.status in (400, 404) and param == "model"):
        return ModelUnavailable(info.message, model="", **kwargs)
    # OpenAI answers an exhausted balance with 429 insufficient_quota: waiting does not help.
    if info.status == 429 and code == "insufficient_quota":
        return InsufficientCredits(info.message, **kwargs)
    return None


def _poll_hint(response: httpx.Response) -> float | None:
    try:
        return max(float(response.headers[POLL_HINT_HEADER]) / 1000.0, 0.0)
    except (KeyError, ValueError):
        return None


def _video_body(response: httpx.Response, provider: str, *, maybe_created: bool = False) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not body.get("id"):
        raise ProviderUnavailable(
            f"{response.request.method} {response.request.url.path} answered {response.status_code} without a "
            "Video object",
            provider=provider,
            status_code=response.status_code,
            maybe_created=maybe_created,
        )
    return body


def _form_fields(fields: dict[str, Any]) -> dict[str, str]:
    form = {}
    for key, value in fields.items():
        if isinstance(value, (dict, list)) or value is None:
            raise InvalidVideoRequest(
                "provider_options", {key: value}, "plain values when an image is uploaded (multipart form)"
            )
        form[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return form


def _reference_file(path_text: str, plan: VideoPlan) -> tuple[str, bytes, str]:
    """Read a local image for upload, checking what OpenAI checks: type and exact size.

    The worker's policy and the content check (magic bytes, header decode) come first; the bytes
    (an image within the policy's cap, small enough to hold and re-send on a 429) are read from the
    same checked file.
    """
    image = check_local_image("image", path_text, read=True)
    if image.format not in IMAGE_TYPES:
        raise InvalidVideoRequest("image", path_text, "a JPEG, PNG or WebP image (OpenAI input_reference)")
    if (image.width, image.height) != (plan.width, plan.height):
        # OpenAI rejects a reference that does not match `size`; resizing would change the user's frame.
        raise InvalidVideoRequest(
            "image", f"{path_text} ({image.width}x{image.height})", f"an image of exactly {plan.size}, the video's size"
        )
    return image.name, image.data or b"", IMAGE_TYPES[image.format]
