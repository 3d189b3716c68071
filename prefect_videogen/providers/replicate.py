"""Replicate (api.replicate.com/v1): many video models through predictions.

The wire format (shared/provider-apis.md sections 4, 6 and 7; Replicate's HTTP API reference):

- Auth ``Authorization: Bearer <token>``. Submit ``POST /models/{owner}/{name}/predictions`` with
  ``{"input": {...}}`` -> 201 prediction ``{id, model, status, input, output, error, metrics,
  urls: {get, cancel}, created_at}``. ``Prefer: wait`` (hold the request up to 60 s) is NOT sent:
  video jobs run for minutes, and a held request that times out is an ambiguous paid submit. No
  idempotency key is documented, so the submit is sent with ``paid=True``.
- Poll ``GET /predictions/{id}``: ``starting`` | ``processing`` | ``succeeded`` | ``failed`` |
  ``canceled``; ``output`` is a URI string or a list of them; ``error`` is text.
- API inputs and outputs are deleted after one hour: the video is downloaded at once, from
  Replicate's delivery CDN, WITHOUT the token.
- An unanswered submit is looked up in ``GET /predictions`` (newest first, ``{results, next}``):
  the prediction of the same model with the same input created from just before the claim on.
- Replicate reports run time (``metrics.predict_time``), not a price: the ledger uses the catalog's
  USD per second of video (estimated), and the job keeps ``predict_time`` for reference.
- Moderation: a ``failed`` prediction whose error says the input or output was flagged (NSFW,
  "flagged as sensitive", E005) is a content-policy rejection, never re-sent.

Host rules that are not model data: the prompt goes in ``input.prompt``; the model path is the
catalog row's ``provider_model_id`` (``owner/name``).

Example:
    ```python
    from prefect_videogen.catalog import load_catalog
    from prefect_videogen.models import VideoRequest
    from prefect_videogen.providers.replicate import ReplicateVideoProvider

    plan = load_catalog().plan("replicate", VideoRequest(prompt="a fox in snow", model="veo-3", duration=8))
    async with ReplicateVideoProvider("r8_...") as client:
        job = await client.submit(plan)
    ```
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from prefect_videogen.catalog import VideoPlan, ensure_available, unavailable_message
from prefect_videogen.errors import (
    InvalidRequest,
    JobFailed,
    ModelUnavailable,
    ProviderError,
    ProviderUnavailable,
    register_secret,
)
from prefect_videogen.models import JobStatus, Rejection, RejectionStage, VideoJob
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.base import VideoProvider, map_status, raise_for_job
from prefect_videogen.providers.http import DEFAULT_TIMEOUT, ErrorInfo, HttpTransport, Sleep, json_object
from prefect_videogen.providers.retry import RetryPolicy
from prefect_videogen.providers.wire_params import wire_params

DEFAULT_BASE_URL = "https://api.replicate.com/v1"
# "This is only recommended if the file is less than 1MB" (Replicate docs, input files: data URIs).
MAX_INLINE_IMAGE_BYTES = 1024 * 1024
# A prediction found for an unanswered submit may carry a created_at this much before the claim's.
LOOKUP_SKEW_SECONDS = 120
OUTPUT_LIFETIME_SECONDS = 3600

#: Account ids of Replicate tokens without a label: this prefix and a hash of the token (providers.accounts).
ACCOUNT_PREFIX = "replicate-"

STATUS_TABLE: dict[str, JobStatus] = {
    "starting": JobStatus.QUEUED,
    "processing": JobStatus.RUNNING,
    "succeeded": JobStatus.SUCCEEDED,
    "failed": JobStatus.FAILED,
    "canceled": JobStatus.CANCELED,
    "aborted": JobStatus.CANCELED,  # tolerated: newer API answers for a prediction stopped before it ran
}
_MODERATION_MARKERS = ("nsfw", "flagged as sensitive", "(e005)", "content policy", "safety filter", "moderation")
_VIDEO_SUFFIXES = (".mp4", ".mov", ".webm")


def classify_rejection(error: str | None) -> Rejection | None:
    """A content-policy failure from a failed prediction's error text, and what it names.

    Replicate relays the model's own text: "NSFW content detected", or its generic "The input or
    output was flagged as sensitive. Please try again with different inputs. (E005)". The stage is
    set only where the text names one input; whether a blocked prediction is billed is not said.
    """
    text = (error or "").lower()
    if not any(marker in text for marker in _MODERATION_MARKERS):
        return None
    stage: RejectionStage | None = None
    if "input or output" not in text:
        if "prompt" in text:
            stage = "prompt"
        elif "image" in text:
            stage = "image"
        elif "output" in text or "generated" in text:
            stage = "output"
    return Rejection(stage=stage, charged=None)


def _video_url(output: Any) -> str | None:
    """The video among the output: a URI string, or a list (the first video-looking URI, else the first)."""
    items = output if isinstance(output, list) else [output]
    urls = [item for item in items if isinstance(item, str) and urlsplit(item).scheme in ("http", "https")]
    return next((u for u in urls if urlsplit(u).path.lower().endswith(_VIDEO_SUFFIXES)), urls[0] if urls else None)


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class ReplicateVideoProvider(VideoProvider):
    """Replicate's predictions API client.

    Args:
        api_token: the ``r8_...`` token; registered for redaction, sent to ``base_url`` only.
        base_url: API root ending in /v1 (the emulator, a proxy or a gateway fit here).
        account_label: non-secret name of the billed account; default a short sha256 prefix of the token.
        poll_interval_seconds: fixed wait between polls; Replicate sends no hint, so by default the
            shared growing schedule applies.
        policy, sleep, transport, timeout: passed to :class:`HttpTransport` (tests inject them).
    """

    name = "replicate"

    def __init__(
        self,
        api_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        account_label: str | None = None,
        poll_interval_seconds: float | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        if not api_token or not api_token.strip():
            raise ValueError("Replicate api_token is empty; create one at replicate.com/account/api-tokens")
        register_secret(api_token)
        self._account = account_id_for(api_token, prefix=ACCOUNT_PREFIX, label=account_label)
        self.poll_interval_seconds = poll_interval_seconds
        self.http = HttpTransport(
            self.name,
            base_url,
            headers={"Authorization": f"Bearer {api_token}"},
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

    async def _input(self, plan: VideoPlan) -> dict[str, Any]:
        """The model's input object (the body wraps it in ``"input"``, the row's params_object)."""
        return await wire_params(
            plan, max_image_bytes=MAX_INLINE_IMAGE_BYTES, limit_text="1 MB (Replicate data URLs; give an http(s) URL)"
        )

    @staticmethod
    def _body(plan: VideoPlan, params: dict[str, Any]) -> dict[str, Any]:
        wire = plan.wire
        return {(wire.params_object if wire is not None and wire.params_object else "input"): params}

    async def submit(self, plan: VideoPlan, *, idempotency_key: str | None = None) -> VideoJob:
        """Create the prediction (paid, sent once). Replicate documents no idempotency key: it is unused.

        Raises:
            InvalidVideoRequest: a bad local image (over 1 MB inline), found before anything is sent.
            ModelUnavailable: Replicate answers 404 for the model; nothing was created.
            InvalidRequest: Replicate refused the input (422, the message names the field).
            ProviderUnavailable: ``maybe_created=True`` when the answer was lost after sending.
        """
        ensure_available(plan)  # Replicate's Sora rows went with OpenAI's shutdown (catalog retired_on)
        body = self._body(plan, await self._input(plan))
        try:
            response = await self.http.send("POST", self._create_path(plan), paid=True, json=body)
        except ModelUnavailable as exc:
            raise ModelUnavailable(
                unavailable_message(plan, exc.detail),
                provider=self.name,
                model=exc.model,
                status_code=exc.status_code,
                request_id=exc.request_id,
            ) from exc
        try:
            prediction = response.json()
        except ValueError as exc:
            raise ProviderUnavailable(
                f"create answered HTTP {response.status_code} with a body that is not JSON; the prediction may exist",
                provider=self.name,
                status_code=response.status_code,
                maybe_created=True,
            ) from exc
        if not isinstance(prediction, dict) or not prediction.get("id"):
            raise ProviderUnavailable(
                f"create answered without a prediction id: {str(prediction)[:200]}",
                provider=self.name,
                maybe_created=True,
            )
        return self._job(prediction, model=plan.request.model or "")

    async def find_job(self, plan: VideoPlan, claim: Any, *, max_pages: int = 20) -> VideoJob | None:
        """The prediction an unanswered submit created, from ``GET /predictions`` (newest first), or None.

        Matches the model and the exact input among predictions created from ``LOOKUP_SKEW_SECONDS``
        before the claim on; the one created closest to the claim wins. Used for a claim without a
        job id (a crash or an ambiguous failure mid-submit), never to decide to pay again.
        """
        wanted_input = await self._input(plan)
        model = plan.spec.provider_model_id
        claimed_at = claim.created_at.timestamp()
        since = claimed_at - LOOKUP_SKEW_SECONDS
        path: str | None = "predictions"
        found: list[dict[str, Any]] = []
        for _ in range(max_pages):
            if path is None:
                break
            page = await self.http.json("GET", path)
            results = page.get("results") if isinstance(page, dict) else None
            if not isinstance(results, list):
                break
            older = False
            for prediction in results:
                if not isinstance(prediction, dict):
                    continue
                created = _timestamp(prediction.get("created_at"))
                if created is None:
                    continue
                if created < since:
                    older = True
                    continue
                if (
                    prediction.get("model") == model
                    and prediction.get("input") == wanted_input
                    and prediction.get("id")
                ):
                    found.append({**prediction, "_created": created})
            path = self._same_origin(page.get("next"))
            if older:
                break
        if not found:
            return None
        best = min(found, key=lambda p: abs(p["_created"] - claimed_at))
        placeholder = self._job({k: v for k, v in best.items() if k != "_created"}, model=plan.request.model or "")
        return await self.get_job(placeholder)

    async def get_job(self, job: VideoJob) -> VideoJob:
        prediction = await self.http.json("GET", f"predictions/{quote(job.job_id, safe='')}")
        if not isinstance(prediction, dict) or not prediction.get("id"):
            raise ProviderUnavailable(f"prediction {job.job_id} answered {str(prediction)[:200]}", provider=self.name)
        return self._job(prediction, model=job.model)

    async def cancel(self, job: VideoJob) -> VideoJob:
        """``POST /predictions/{id}/cancel``; the prediction as Replicate then describes it."""
        prediction = await self.http.json("POST", f"predictions/{quote(job.job_id, safe='')}/cancel")
        if not isinstance(prediction, dict) or not prediction.get("id"):
            return await self.get_job(job)
        return self._job(prediction, model=job.model)

    @asynccontextmanager
    async def stream_video(self, job: VideoJob) -> AsyncIterator[AsyncIterator[bytes]]:
        url = job.provider_data.get("video_url")
        if not url:
            job = await self.get_job(job)
            raise_for_job(job)
            url = job.provider_data.get("video_url")
        if not url:
            raise JobFailed("the prediction has no output URL", provider=self.name, job_id=job.job_id)
        try:
            # Replicate's delivery CDN: the token is never sent there.
            async with self.http.stream(url, authenticated=False) as chunks:
                yield chunks
        except InvalidRequest as exc:
            if exc.status_code in (403, 404, 410):
                raise JobFailed(
                    f"the output is gone (HTTP {exc.status_code}): Replicate deletes outputs one hour after the "
                    "prediction; the paid video can no longer be fetched",
                    provider=self.name,
                    job_id=job.job_id,
                    code="expired",
                    charged=True,
                ) from exc
            raise

    def _create_path(self, plan: VideoPlan) -> str:
        owner, _, name = plan.spec.provider_model_id.partition("/")
        return f"models/{quote(owner, safe='')}/{quote(name, safe='')}/predictions"

    def _same_origin(self, url: Any) -> str | None:
        """A pagination URL, followed only on the API's own origin (it gets the token)."""
        if not isinstance(url, str) or not url:
            return None
        parts, base = urlsplit(url), urlsplit(self.http.base_url)
        return url if (parts.scheme, parts.netloc) == (base.scheme, base.netloc) else None

    def _job(self, prediction: dict[str, Any], *, model: str) -> VideoJob:
        raw = str(prediction.get("status") or "")
        status = map_status(STATUS_TABLE, raw)
        error = prediction.get("error")
        error = error if isinstance(error, str) or error is None else json.dumps(error)[:500]
        metrics = json_object(prediction.get("metrics"))
        data: dict[str, Any] = {
            "model_path": prediction.get("model"),
            "created_at": prediction.get("created_at"),
            "completed_at": prediction.get("completed_at"),
        }
        if isinstance(metrics.get("predict_time"), (int, float)):
            data["predict_time"] = float(metrics["predict_time"])
        code = None
        rejection = classify_rejection(error) if status is JobStatus.FAILED else None
        if rejection is not None:
            code = "content_policy"
        if status is JobStatus.SUCCEEDED:
            data["video_url"] = _video_url(prediction.get("output"))
            if not data["video_url"]:
                status, code = JobStatus.FAILED, "no_result"
                error = f"prediction succeeded without an output URL: {str(prediction.get('output'))[:200]}"
        return VideoJob(
            provider=self.name,
            job_id=str(prediction.get("id") or ""),
            model=model,
            status=status,
            raw_status=raw,
            progress=1.0 if status is JobStatus.SUCCEEDED else None,
            error_code=code,
            error_message=error,
            poll_after_seconds=None if status.is_terminal else self.poll_interval_seconds,
            rejection=rejection,
            provider_data={k: v for k, v in data.items() if v is not None},
        )

    def _map_error(self, response: httpx.Response, info: ErrorInfo) -> ProviderError | None:
        """Replicate answers problem details ``{title, detail, status}``; 404 on create = an unknown model."""
        body = info.body if isinstance(info.body, dict) else {}
        detail = body.get("detail") if isinstance(body.get("detail"), str) else None
        title = body.get("title") if isinstance(body.get("title"), str) else None
        text = detail or title or info.message
        invalid = body.get("invalid_fields")
        if isinstance(invalid, list):
            fields = "; ".join(
                f"{f.get('field')}: {f.get('description')}" for f in invalid if isinstance(f, dict) and f.get("field")
            )
            text = f"{title or 'Input validation failed'}: {fields}" if fields else text
        kwargs: dict[str, Any] = {"provider": self.name, "status_code": info.status, "request_id": info.request_id}
        request = response.request
        if request.method == "POST" and request.url.path.endswith("/predictions") and info.status == 404:
            model = "/".join(request.url.path.split("/")[-3:-1])
            return ModelUnavailable(
                f"model {model!r} is not served by Replicate ({text}); choose another model in the catalog",
                model=model,
                **kwargs,
            )
        if info.status in (400, 404, 422):
            return InvalidRequest(text, **kwargs)
        return None
