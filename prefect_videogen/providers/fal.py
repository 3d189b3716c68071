"""fal (queue.fal.run): many video models behind fal's durable request queue.

The wire format (shared/provider-apis.md sections 4, 6 and 7; fal's queue docs):

- Auth ``Authorization: Key <FAL_KEY>``. Submit ``POST {base}/{model_id}`` with the model's input as a
  flat JSON object -> ``{request_id, status_url, response_url, cancel_url}``. No idempotency key is
  documented, so the submit is sent with ``paid=True``: never re-sent once its body may have arrived.
  The request id is what the claim records (``spend.claims``), so a crash after the answer never
  loses the paid request.
- Status ``GET .../requests/{id}/status`` -> ``IN_QUEUE`` (``queue_position``) | ``IN_PROGRESS`` |
  ``COMPLETED``; the result ``GET .../requests/{id}`` -> the model's output, ``{"video": {"url"}}``;
  cancel ``PUT .../requests/{id}/cancel``. The URLs the submit answers are used when they are on the
  API's own origin (the key goes nowhere else); otherwise they are built from the model id.
- ``COMPLETED`` says the request ended, not that it succeeded: the result answers the output, or the
  error the model raised (``{"detail": ...}``; validation errors are a list of ``{loc, msg, type}``,
  a moderation block has type ``content_policy_violation`` and ``loc`` naming the flagged input).
- ``X-Fal-Object-Lifecycle-Preference`` sets how long fal keeps the generated media (a block
  setting); the video is copied at once anyway, from fal's CDN, WITHOUT the key.
- fal reports no cost on the request: the ledger uses the catalog's USD per second (estimated).
- An unanswered submit (no request id) cannot be looked up: fal's queue API documents no listing,
  so it resolves to ``SubmitUncertain`` naming the claim, as Scenario's does.

Host rules that are not model data: the prompt goes in ``prompt``; text-to-video and image-to-video
are separate endpoints, and an endpoint whose catalog wire takes ``image`` requires one.

Example:
    ```python
    from prefect_videogen.catalog import load_catalog
    from prefect_videogen.models import VideoRequest
    from prefect_videogen.providers.fal import FalVideoProvider

    plan = load_catalog().plan("fal", VideoRequest(prompt="a fox in snow", model="kling-2.1", duration=5))
    async with FalVideoProvider("FAL_KEY") as client:
        job = await client.submit(plan)
    ```
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from prefect_videogen.catalog import VideoPlan, ensure_available, load_catalog, unavailable_message
from prefect_videogen.errors import (
    InvalidRequest,
    InvalidVideoRequest,
    JobFailed,
    ModelUnavailable,
    ProviderError,
    ProviderUnavailable,
    register_secret,
)
from prefect_videogen.models import JobStatus, Rejection, RejectionStage, VideoJob
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.base import VideoProvider, map_status, raise_for_job
from prefect_videogen.providers.http import DEFAULT_TIMEOUT, ErrorInfo, HttpTransport, Sleep
from prefect_videogen.providers.retry import RetryPolicy
from prefect_videogen.providers.wire_params import wire_params

DEFAULT_BASE_URL = "https://queue.fal.run"
LIFECYCLE_HEADER = "X-Fal-Object-Lifecycle-Preference"
# Inline (data URL) images: fal's own client inlines files; keep a request body reasonable.
MAX_INLINE_IMAGE_BYTES = 10 * 1024 * 1024
CONTENT_POLICY_TYPE = "content_policy_violation"

#: Account ids of fal keys without a label: this prefix and a hash of the key (providers.accounts).
ACCOUNT_PREFIX = "fal-"

# COMPLETED is not in the table on purpose: it is read from the result (output or error).
STATUS_TABLE: dict[str, JobStatus] = {
    "in_queue": JobStatus.QUEUED,
    "in_progress": JobStatus.RUNNING,
}
_MODERATION_WORDS = ("content policy", "content_policy", "flagged", "nsfw", "safety checker", "moderation")


def detail_text(detail: Any) -> str:
    """fal's ``detail``: a string, or validation errors ``[{loc, msg, type}]`` as ``loc: msg (type)``."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if not isinstance(item, dict):
                continue
            loc = ".".join(str(p) for p in item.get("loc") or [] if p != "body")
            kind = f" ({item['type']})" if item.get("type") else ""
            parts.append(f"{loc + ': ' if loc else ''}{item.get('msg') or 'invalid'}{kind}")
        return "; ".join(parts)
    return "" if detail is None else json.dumps(detail)[:300]


def classify_rejection(detail: Any) -> Rejection | None:
    """A content-policy failure from fal's error ``detail``, and which input it names.

    fal types a moderation block ``content_policy_violation`` and points ``loc`` at the flagged input
    (``prompt``, ``image_url``...); an error naming no input was raised on the output. fal does not
    say whether a blocked request is billed: ``charged`` stays unknown.
    """
    items = [item for item in detail if isinstance(item, dict)] if isinstance(detail, list) else []
    flagged = [item for item in items if item.get("type") == CONTENT_POLICY_TYPE]
    if not flagged:
        text = detail_text(detail).lower()
        if not any(word in text for word in _MODERATION_WORDS):
            return None
        flagged = [{"loc": [], "msg": text}]
    places = {str(part) for item in flagged for part in item.get("loc") or [] if part != "body"}
    stage: RejectionStage | None = None
    if "prompt" in places or "negative_prompt" in places:
        stage = "prompt"
    elif any("image" in place for place in places):
        stage = "image"
    elif not places:
        stage = "output"
    return Rejection(stage=stage, charged=None)


def _app_path(model_id: str) -> str:
    return "/".join(quote(part, safe="") for part in model_id.split("/"))


class FalVideoProvider(VideoProvider):
    """fal's queue API client.

    Args:
        api_key: the fal key (``key_id:key_secret``); registered for redaction, sent to ``base_url`` only.
        base_url: queue root (the emulator, a proxy or a gateway fit here).
        account_label: non-secret name of the billed account; default a short sha256 prefix of the key.
        media_retention_seconds: sent as ``X-Fal-Object-Lifecycle-Preference`` on submit; None sends
            nothing (fal's default retention).
        poll_interval_seconds: fixed wait between polls; fal sends no hint, so by default the shared
            growing schedule applies (fal_client's 0.1 s would be 50 polls for a 5 s wait).
        policy, sleep, transport, timeout: passed to :class:`HttpTransport` (tests inject them).
    """

    name = "fal"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        account_label: str | None = None,
        media_retention_seconds: int | None = None,
        poll_interval_seconds: float | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("fal api_key is empty; create a key at fal.ai/dashboard/keys")
        register_secret(api_key)
        for part in api_key.split(":"):
            register_secret(part)  # the key id and the key secret are each secret-shaped
        self._account = account_id_for(api_key, prefix=ACCOUNT_PREFIX, label=account_label)
        self.media_retention_seconds = media_retention_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self.http = HttpTransport(
            self.name,
            base_url,
            headers={"Authorization": f"Key {api_key}"},
            error_mapper=self._map_error,
            policy=policy,
            sleep=sleep,
            transport=transport,
            timeout=timeout,
        )

    @property
    def account_id(self) -> str:
        return self._account

    async def aclose(self) -> None:
        await self.http.aclose()

    async def submit(self, plan: VideoPlan, *, idempotency_key: str | None = None) -> VideoJob:
        """Queue the request (paid, sent once). fal documents no idempotency key: ``idempotency_key`` is unused.

        Raises:
            InvalidVideoRequest: an image-to-video endpoint without an image, or a bad local image,
                found before anything is sent.
            ModelUnavailable: fal answers 404 for the endpoint; nothing was queued.
            InvalidRequest: fal refused the input (422, the message names the field).
            ProviderUnavailable: ``maybe_created=True`` when the answer was lost after sending.
        """
        ensure_available(plan)  # fal's Sora endpoints went with OpenAI's shutdown (catalog retired_on)
        wire = plan.wire
        if wire is not None and "image" in wire.fields and plan.request.image is None:
            raise InvalidVideoRequest(
                "image",
                None,
                "a first frame (a local image or an http(s) URL): this is an image-to-video endpoint",
                context=f"fal model {plan.request.model!r}",
            )
        params = await wire_params(plan, max_image_bytes=MAX_INLINE_IMAGE_BYTES, limit_text="10 MB (fal inline images)")
        model_id = plan.spec.provider_model_id
        headers = {}
        if self.media_retention_seconds is not None:
            headers[LIFECYCLE_HEADER] = json.dumps({"expiration_duration_seconds": self.media_retention_seconds})
        try:
            response = await self.http.send("POST", _app_path(model_id), paid=True, json=params, headers=headers)
        except ModelUnavailable as exc:
            raise ModelUnavailable(
                unavailable_message(plan, exc.detail),
                provider=self.name,
                model=exc.model,
                status_code=exc.status_code,
                request_id=exc.request_id,
            ) from exc
        try:
            data = response.json()
        except ValueError as exc:
            raise ProviderUnavailable(
                f"submit answered HTTP {response.status_code} with a body that is not JSON; the request may be queued",
                provider=self.name,
                status_code=response.status_code,
                maybe_created=True,
            ) from exc
        request_id = data.get("request_id") if isinstance(data, dict) else None
        if not request_id:
            raise ProviderUnavailable(
                f"submit answered without a request_id: {str(data)[:200]}", provider=self.name, maybe_created=True
            )
        urls = {name: data.get(name) for name in ("status_url", "response_url", "cancel_url")}
        return VideoJob(
            provider=self.name,
            job_id=str(request_id),
            model=plan.request.model or "",
            status=JobStatus.QUEUED,
            raw_status=str(data.get("status") or "IN_QUEUE"),
            poll_after_seconds=self.poll_interval_seconds,
            provider_data={"endpoint": model_id, **{k: v for k, v in urls.items() if isinstance(v, str)}},
        )

    async def get_job(self, job: VideoJob) -> VideoJob:
        """Read the request's status; on ``COMPLETED``, its result (the video URL, or the error)."""
        if job.status is JobStatus.SUCCEEDED and job.provider_data.get("video_url"):
            return job
        status = await self.http.json("GET", self._url(job, "status_url", "/status"))
        if not isinstance(status, dict):
            raise ProviderUnavailable(f"status of {job.job_id} answered {str(status)[:200]}", provider=self.name)
        raw = str(status.get("status") or "")
        data = {**job.provider_data, "endpoint": self._endpoint(job)}
        if isinstance(status.get("queue_position"), int):
            data["queue_position"] = status["queue_position"]
        if raw.upper() != "COMPLETED":
            return job.model_copy(
                update={
                    "status": map_status(STATUS_TABLE, raw),
                    "raw_status": raw,
                    "poll_after_seconds": self.poll_interval_seconds,
                    "provider_data": data,
                }
            )
        return await self._read_result(job.model_copy(update={"provider_data": data}))

    async def _read_result(self, job: VideoJob) -> VideoJob:
        try:
            result = await self.http.json("GET", self._url(job, "response_url", ""))
        except InvalidRequest as exc:
            detail = getattr(exc, "fal_detail", exc.detail)
            if exc.status_code == 404:
                raise  # an unknown request id: not a result
            return self._failed(job, detail, status_code=exc.status_code)
        except ProviderUnavailable as exc:
            if exc.status_code is None or exc.status_code < 500:
                raise
            # COMPLETED, and the result answers 5xx after the retries: the model raised an error.
            return self._failed(job, getattr(exc, "fal_detail", exc.detail), status_code=exc.status_code)
        video = result.get("video") if isinstance(result, dict) else None
        url = video.get("url") if isinstance(video, dict) else None
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            return job.model_copy(
                update={
                    "status": JobStatus.FAILED,
                    "raw_status": "COMPLETED",
                    "error_code": "no_result",
                    "error_message": f"request COMPLETED without video.url: {str(result)[:200]}",
                }
            )
        return job.model_copy(
            update={
                "status": JobStatus.SUCCEEDED,
                "raw_status": "COMPLETED",
                "progress": 1.0,
                "poll_after_seconds": None,
                "provider_data": {**job.provider_data, "video_url": url},
            }
        )

    def _failed(self, job: VideoJob, detail: Any, *, status_code: int | None) -> VideoJob:
        rejection = classify_rejection(detail)
        return job.model_copy(
            update={
                "status": JobStatus.FAILED,
                "raw_status": "COMPLETED",
                "error_code": "content_policy" if rejection else f"http_{status_code}",
                "error_message": detail_text(detail) or f"the result answered HTTP {status_code}",
                "rejection": rejection,
                "poll_after_seconds": None,
            }
        )

    async def cancel(self, job: VideoJob) -> bool:
        """Ask fal to cancel a queued request; True when fal accepted (a running one may still finish)."""
        try:
            await self.http.send("PUT", self._url(job, "cancel_url", "/cancel"))
        except InvalidRequest as exc:
            if exc.status_code == 400:  # already running or done: fal answers it cannot cancel
                return False
            raise
        return True

    @asynccontextmanager
    async def stream_video(self, job: VideoJob) -> AsyncIterator[AsyncIterator[bytes]]:
        url = job.provider_data.get("video_url")
        if not url:
            job = await self.get_job(job)
            raise_for_job(job)
            url = job.provider_data.get("video_url")
        if not url:
            raise JobFailed("the request has no video.url", provider=self.name, job_id=job.job_id)
        try:
            # fal's media CDN: the key is never sent there.
            async with self.http.stream(url, authenticated=False) as chunks:
                yield chunks
        except InvalidRequest as exc:
            if exc.status_code in (403, 404, 410):
                raise JobFailed(
                    f"the video at fal's CDN is gone (HTTP {exc.status_code}): its media retention ran out; "
                    f"raise media_retention_seconds on the block so the next videos are kept longer",
                    provider=self.name,
                    job_id=job.job_id,
                    code="expired",
                    charged=True,
                ) from exc
            raise

    def _endpoint(self, job: VideoJob) -> str:
        """The model id the request was queued on: kept on the job, else the catalog row of its model."""
        endpoint = job.provider_data.get("endpoint")
        if endpoint:
            return str(endpoint)
        entry = load_catalog().provider(self.name)
        key = entry.find(job.model)
        if key is None:
            raise InvalidVideoRequest("model", job.model, sorted(entry.models), context="fal job " + job.job_id)
        return entry.models[key].provider_model_id

    def _url(self, job: VideoJob, name: str, suffix: str) -> str:
        """The answered URL when it is on the API's origin (it gets the key), else one built from the model id."""
        given = job.provider_data.get(name)
        base = urlsplit(self.http.base_url)
        if isinstance(given, str):
            parts = urlsplit(given)
            if (parts.scheme, parts.netloc) == (base.scheme, base.netloc):
                return given
        return f"{_app_path(self._endpoint(job))}/requests/{quote(job.job_id, safe='')}{suffix}"

    def _map_error(self, response: httpx.Response, info: ErrorInfo) -> ProviderError | None:
        """fal specifics: ``detail`` strings or validation lists, 404 on submit = an unknown endpoint."""
        body = info.body if isinstance(info.body, dict) else {}
        detail = body.get("detail")
        text = detail_text(detail) or info.message
        kwargs: dict[str, Any] = {"provider": self.name, "status_code": info.status, "request_id": info.request_id}
        request = response.request
        on_submit = request.method == "POST" and "/requests/" not in request.url.path
        error: ProviderError | None = None
        if on_submit and info.status == 404:
            model = request.url.path.strip("/")
            error = ModelUnavailable(
                f"model endpoint {model!r} is not served by fal ({text}); choose another model in the catalog",
                model=model,
                **kwargs,
            )
        elif info.status in (400, 404, 422):
            error = InvalidRequest(text, **kwargs)
        elif info.status >= 500 and detail is not None:
            error = ProviderUnavailable(text, **kwargs)
        if error is not None:
            error.fal_detail = detail if detail is not None else text  # type: ignore[attr-defined]
        return error
