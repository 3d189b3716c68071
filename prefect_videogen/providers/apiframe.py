"""APIFrame v2 (api.apiframe.ai): every video model APIFrame serves, through its one job API.

Wire format (shared/provider-apis.md sections 3 and 6, docs-v2.apiframe.ai):

- Auth ``X-API-Key: afk_...``. Submit ``POST /v2/videos/generate`` with ``{model, prompt,
  <parameter object>: {...}}``: ONE parameter object per model family (``soraParams``,
  ``veoParams``, ``klingParams``...). Its name, field names and values are catalog data
  (``VideoPlan.wire``), never code here. The body is ``additionalProperties: false`` at every
  level, so unknown fields are answered 400. -> 202 ``{jobId, status}``.
- ``Idempotency-Key`` (<= 255 characters): a replay within 24 h returns the original job, the same
  key with another body is a 409. APIFrame is the one provider that dedupes submits, so every
  submit carries a key and is retried like any idempotent request (timeouts and 5xx included).
- Images are URLs: every local image (start image, end frame, each reference image) is uploaded
  first (``POST /v2/uploads``, multipart ``file``, <= 25 MB) and its URL is sent in the field the
  wire names (``soraParams.start_image``, ``veoParams.last_frame``...); an http(s) URL is passed
  straight through.
- An unknown or retired model is answered 400/404 "Model not found": the error lists the
  catalog's live alternatives.
- Poll ``GET /v2/jobs/{id}``: status QUEUED|PROCESSING|COMPLETED|FAILED|CANCELLED, progress
  0..100|null, error text|null, creditCost, expired (24 h retention), ``result.videoUrl`` on a CDN,
  downloaded WITHOUT the key. APIFrame sends no poll hint.

Example:
    ```python
    from prefect_videogen.providers.apiframe import APIFrameVideoProvider

    async with APIFrameVideoProvider("afk_...") as client:
        job = await client.submit(plan)
    ```
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from prefect_videogen.catalog import VideoPlan, request_images, unavailable_message, wire_params
from prefect_videogen.errors import (
    IdempotencyConflict,
    InvalidRequest,
    InvalidVideoRequest,
    JobFailed,
    ModelUnavailable,
    ProviderError,
    ProviderUnavailable,
    register_secret,
)
from prefect_videogen.models import JobStatus, Rejection, RejectionStage, VideoJob
from prefect_videogen.policy import check_local_image
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.base import Clock, Listing, VideoProvider, map_status, raise_for_job
from prefect_videogen.providers.http import (
    DEFAULT_TIMEOUT,
    ErrorInfo,
    HttpTransport,
    Sleep,
    json_object,
)
from prefect_videogen.providers.retry import RetryPolicy

DEFAULT_BASE_URL = "https://api.apiframe.ai"
MAX_IDEMPOTENCY_KEY_CHARS = 255
# "replay within 24 h returns the original job" (APIFrame docs-v2).
IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
GENERATE_PATH = "/v2/videos/generate"

STATUS_TABLE: dict[str, JobStatus] = {
    "queued": JobStatus.QUEUED,
    "processing": JobStatus.RUNNING,
    "completed": JobStatus.SUCCEEDED,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELED,
    "canceled": JobStatus.CANCELED,  # US spelling: tolerated, the documented word is CANCELLED
}

EXPIRED_MESSAGE = "result expired after APIFrame's 24 h retention; the video is lost (a new submit is a new, paid job)"


#: Account ids of APIFrame keys without a label: this prefix and a hash of the key (providers.accounts).
ACCOUNT_PREFIX = "apiframe-"


def classify_rejection(error: str | None, credit_cost: float | None) -> Rejection | None:
    """Tell a content-policy failure from other failures, from APIFrame's error text.

    APIFrame reports failures as bare text; the documented moderation text is "Provider returned
    an error: content policy violation" (its ``failed`` webhook example). It does not say which
    input was flagged, so the stage is only set when the text names one (prompt, image, output);
    whether it was billed is what the job reports: ``creditCost`` > 0 charged, 0 not charged,
    null unknown.
    """
    text = (error or "").lower()
    if not any(marker in text for marker in ("content policy", "moderation", "safety system")):
        return None
    stage: RejectionStage | None = None
    if "prompt" in text:
        stage = "prompt"
    elif "image" in text:
        stage = "image"
    elif "output" in text or "generated" in text:
        stage = "output"
    charged = None if credit_cost is None else credit_cost > 0
    return Rejection(stage=stage, charged=charged)


class APIFrameVideoProvider(VideoProvider):
    """Generate videos through APIFrame v2.

    Args:
        api_key: the ``afk_...`` key; registered for redaction, sent to ``base_url`` only.
        base_url: API root; gateways, proxies and the emulator fit here.
        account_label: non-secret name of the billed account; default: a short sha256 prefix of the key.
        poll_interval_seconds: fixed wait between polls. APIFrame sends no poll hint, so by default
            the shared growing schedule applies (its SDK waits 2 s growing x1.5 to 5 s).
        policy, sleep, transport, timeout: passed to the shared HTTP transport (tests inject them).
    """

    name = "apiframe"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        account_label: str | None = None,
        poll_interval_seconds: float | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("APIFrame api_key is empty; create one in the APIFrame dashboard (afk_...)")
        register_secret(api_key)
        self._account = account_id_for(api_key, prefix=ACCOUNT_PREFIX, label=account_label)
        self.poll_interval_seconds = poll_interval_seconds
        self.http = HttpTransport(
            self.name,
            base_url,
            headers={"X-API-Key": api_key},
            error_mapper=self._map_error,
            policy=policy,
            sleep=sleep,
            transport=transport,
            timeout=timeout,
        )
        # Uploaded local images by content hash: a resubmit reuses the URL, keeping the body (and so
        # an Idempotency-Key replay) identical. Upload URLs live ~1-2 h.
        self._uploads: dict[str, str] = {}

    @property
    def account_id(self) -> str:
        return self._account

    async def aclose(self) -> None:
        await self.http.aclose()

    async def submit(self, plan: VideoPlan, *, idempotency_key: str | None = None) -> VideoJob:
        """Create the job; retried under one Idempotency-Key, so APIFrame bills it at most once.

        Raises:
            InvalidVideoRequest: a bad image or idempotency key, found before anything is paid.
            ModelUnavailable: APIFrame does not (or no longer) serve the model; nothing was created.
            IdempotencyConflict: the key was already used with a different body.
        """
        key = idempotency_key or uuid.uuid4().hex  # one key per call: the retries below reuse it
        if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
            raise InvalidVideoRequest("idempotency_key", f"<{len(key)} characters>", "at most 255 characters")
        body = await self._generate_body(plan)
        try:
            response = await self.http.send("POST", GENERATE_PATH, json=body, headers={"Idempotency-Key": key})
            data = response.json()
        except ValueError as exc:  # a 2xx that is not JSON: the job may exist; the key finds it again
            raise ProviderUnavailable(
                f"submit answered with a body that is not JSON; resubmit with idempotency_key={key!r} "
                "within 24 h to get the same job",
                provider=self.name,
            ) from exc
        except ModelUnavailable as exc:
            raise ModelUnavailable(
                unavailable_message(plan, exc.detail),
                model=exc.model,
                provider=self.name,
                status_code=exc.status_code,
                request_id=exc.request_id,
            ) from exc
        except ProviderUnavailable as exc:
            if exc.unreachable:
                raise  # nothing was sent: there is no job to get back with the key
            raise ProviderUnavailable(
                f"{exc.detail}; resubmit with idempotency_key={key!r} within 24 h to get the same job "
                "instead of paying for a new one",
                provider=self.name,
                status_code=exc.status_code,
                request_id=exc.request_id,
            ) from exc
        if not isinstance(data, dict) or not data.get("jobId"):
            raise ProviderUnavailable(f"submit answered without a jobId: {str(data)[:200]}", provider=self.name)
        job = VideoJob(
            provider=self.name,
            job_id=str(data["jobId"]),
            model=plan.request.model or "",
            status=JobStatus.QUEUED,
            raw_status="QUEUED",
            provider_data={"idempotency_key": key, "request_id": response.headers.get("x-request-id")},
        )
        job = self._update(job, data)
        if job.status.is_terminal:
            # The create answer can already be failed; its error text and cost are on the job.
            job = await self.get_job(job)
        return job

    def idempotency_window(self) -> timedelta:
        """APIFrame documents that a key dedupes for 24 h."""
        return timedelta(seconds=IDEMPOTENCY_WINDOW_SECONDS)

    async def find_job(self, plan: VideoPlan, claim: Any) -> VideoJob | None:
        """The job an unanswered submit created: the same request under the claim's Idempotency-Key.

        APIFrame documents that a replay within 24 h returns the original job (and bills nothing
        more); when the first request never arrived, this is the first and only payment. After
        24 h the key no longer dedupes, so None (the caller then fails with SubmitUncertain).
        """
        if claim.age_seconds() >= IDEMPOTENCY_WINDOW_SECONDS:
            return None
        return await self.submit(plan, idempotency_key=claim.key)

    async def get_job(self, job: VideoJob) -> VideoJob:
        data = await self.http.json("GET", f"/v2/jobs/{quote(job.job_id, safe='')}")
        if not isinstance(data, dict):
            raise ProviderUnavailable(f"job {job.job_id} answered {str(data)[:200]}", provider=self.name)
        return self._update(job, data)

    async def list_active_jobs(
        self, *, page_size: int = 100, max_pages: int = 200, clock: Clock = time.monotonic
    ) -> Listing:
        """``GET /v2/jobs?status=...`` for QUEUED, then PROCESSING, page by page.

        Incomplete when either status had more than ``max_pages`` pages, or answered in a shape we
        do not know. A page answers up to ``page_size`` waits for one request, so ``max_pages``
        covers twice the 10,000 jobs one process is built to wait on: an incomplete listing sends
        every job it left out to a read of its own.

        One after the other, never both at once: a job only moves forward (QUEUED, PROCESSING, an
        end), so one that starts while QUEUED is listed is PROCESSING (or has ended, and is looked for
        among the finished) when that listing comes, whereas two listings side by side miss a job that
        starts between their passes over it, and each one missed costs finished-listing pages and a
        read of its own (BENCHMARKS.md).
        """
        queued = await self._list("QUEUED", page_size, max_pages, clock)
        processing = await self._list("PROCESSING", page_size, max_pages, clock)
        return Listing(
            {**queued.jobs, **processing.jobs},
            processing.complete and queued.complete,
            processing.requests + queued.requests,
            {**queued.read_at, **processing.read_at},
        )

    async def list_finished_jobs(
        self,
        wanted: Collection[str],
        *,
        max_pages: int,
        min_page_yield: int = 0,
        page_size: int = 100,
        clock: Clock = time.monotonic,
    ) -> Listing:
        """``GET /v2/jobs?status=COMPLETED`` until every wanted job is found, at most ``max_pages`` pages,
        and once a page found ``min_page_yield`` of them, no further than two in a row that found fewer.

        A listed job is taken only with its ``result.videoUrl`` and its ``creditCost``: what the
        download and the books need. The listing's order is not documented, so the caller bounds
        the pages; failed and cancelled jobs (rare) are left to a read of their own.
        """
        ids = set(wanted)
        return await self._list(
            "COMPLETED",
            page_size,
            max_pages,
            clock,
            keep=lambda job: str(job["id"]) in ids and _answers(job),
            wanted=len(ids),
            min_page_yield=min_page_yield,
        )

    async def _list(
        self,
        status: str,
        page_size: int,
        max_pages: int,
        clock: Clock,
        *,
        keep: Callable[[dict[str, Any]], bool] = lambda job: True,
        wanted: int | None = None,
        min_page_yield: int = 0,
    ) -> Listing:
        """One status's jobs that ``keep`` accepts, page by page, until the listing ends, ``max_pages``
        pages are read, ``wanted`` jobs are found, or two pages in a row kept fewer than
        ``min_page_yield`` after one that kept as many."""
        found: dict[str, dict[str, Any]] = {}
        read_at: dict[str, float] = {}
        params: dict[str, Any] = {"status": status, "limit": page_size}
        paid_off, lean = False, 0  # a page kept min_page_yield jobs; pages in a row since that kept fewer
        for pages in range(1, max_pages + 1):
            page = await self.http.json("GET", "/v2/jobs", params=params)
            # Dated when the answer arrived, never earlier than the server read the jobs: a page
            # dated when it was asked for (queued behind other requests in a busy process) makes its
            # jobs look further along than they were, and the reads aimed at their finish early.
            answered = clock()
            jobs = page.get("jobs") if isinstance(page, dict) else None
            if not isinstance(jobs, list):
                return Listing(found, False, pages, read_at)
            kept_before = len(found)
            # Only the fields a read uses are kept (not the echoed input): a sweep's snapshot lives
            # for seconds, and with 10,000 jobs its nested objects are most of what the garbage
            # collector walks.
            for job in jobs:
                if isinstance(job, dict) and job.get("id") and job.get("status") and keep(job):
                    job_id = str(job["id"])
                    found[job_id] = {field: job[field] for field in _READ_FIELDS if field in job}
                    read_at[job_id] = answered
            if wanted is not None and len(found) >= wanted:
                return Listing(found, True, pages, read_at)
            if len(found) - kept_before >= min_page_yield:
                paid_off, lean = True, 0
            elif paid_off and (lean := lean + 1) == 2:
                # Past the pages that held the wanted jobs (a listing ordered by any time lists the
                # jobs that ended together close together): the ones left are read one by one.
                return Listing(found, False, pages, read_at)
            if not page.get("hasMore") or not page.get("nextCursor"):
                return Listing(found, wanted is None, pages, read_at)
            params["cursor"] = page["nextCursor"]
        return Listing(found, False, max_pages, read_at)

    def apply_listed(self, job: VideoJob, data: dict[str, Any]) -> VideoJob:
        return self._update(job, data)

    @asynccontextmanager
    async def stream_video(self, job: VideoJob) -> AsyncIterator[AsyncIterator[bytes]]:
        url = job.provider_data.get("video_url")
        if not url:
            job = await self.get_job(job)
            raise_for_job(job)
            url = job.provider_data.get("video_url")
        if not url or urlsplit(url).scheme not in ("http", "https"):
            raise JobFailed(f"no downloadable result.videoUrl ({url!r})", provider=self.name, job_id=job.job_id)
        try:
            # The video sits on APIFrame's CDN: the key is never sent there.
            async with self.http.stream(url, authenticated=False) as chunks:
                yield chunks
        except InvalidRequest as exc:
            if exc.status_code in (404, 410):  # the CDN may simply have dropped an expired video
                current = await self.get_job(job)
                raise_for_job(current)
            raise

    async def _generate_body(self, plan: VideoPlan) -> dict[str, Any]:
        """``{model, prompt, <params_object>: {...}}``, the parameter object built from the catalog's wire."""
        wire = plan.wire
        if wire is None or not wire.params_object:
            raise InvalidVideoRequest(
                "model",
                plan.request.model,
                "a catalog row whose wire names its parameter object (APIFrame: soraParams, veoParams...)",
                context="apiframe",
            )
        # Durations go out typed as the wire says (APIFrame: integers); the catalog only lets listed ones through.
        params = wire_params(plan, await self._image_urls(plan))
        return {"model": plan.spec.provider_model_id, "prompt": plan.request.prompt, wire.params_object: params}

    async def _image_urls(self, plan: VideoPlan) -> dict[str, Any]:
        """Every image of the request as a URL, uploaded first when local: all before the paid POST."""
        urls: dict[str, Any] = {}
        for field, image in request_images(plan.request):
            url = await self._image_url(field, image)
            if field.startswith("reference_images"):
                urls.setdefault("reference_images", []).append(url)
            else:
                urls[field] = url
        return urls

    async def _image_url(self, field: str, image: str) -> str:
        scheme = urlsplit(image).scheme.lower()
        if scheme in ("http", "https"):
            return image
        if "://" in image or scheme == "data":
            raise InvalidVideoRequest(field, image, "a local image file or an http(s) URL")
        # The worker's policy and the content check first; the bytes come from the same checked file.
        checked = await asyncio.to_thread(
            check_local_image, field, image, read=True, max_bytes=MAX_UPLOAD_BYTES, limit_text="APIFrame uploads"
        )
        data, content_type = checked.data or b"", checked.mime
        digest = hashlib.sha256(data).hexdigest()
        if digest not in self._uploads:
            # Uploads are free, so the shared retries apply; a duplicate upload costs nothing.
            answer = await self.http.json("POST", "/v2/uploads", files={"file": (checked.name, data, content_type)})
            url = answer.get("url") if isinstance(answer, dict) else None
            if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
                raise ProviderUnavailable(
                    f"upload answered without an http(s) url: {str(answer)[:200]}", provider=self.name
                )
            self._uploads[digest] = url
        return self._uploads[digest]

    def _update(self, job: VideoJob, data: dict[str, Any]) -> VideoJob:
        raw = str(data.get("status") or "")
        status = map_status(STATUS_TABLE, raw)
        progress = data.get("progress")
        cost = data.get("creditCost")
        cost = float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None
        error = data.get("error")
        error = error if isinstance(error, str) or error is None else json.dumps(error)[:500]
        result = data.get("result")
        # GET returns {"videoUrl": ...}; the completed webhook carries a bare URL string: accept both.
        video_url = result.get("videoUrl") if isinstance(result, dict) else result if isinstance(result, str) else None
        provider_data = {**job.provider_data, "video_url": video_url}
        error_code = None
        rejection = classify_rejection(error, cost) if status is JobStatus.FAILED else None
        if rejection is not None:
            error_code = "content_policy"
        if data.get("expired") is True and status not in (JobStatus.FAILED, JobStatus.CANCELED):
            status, error, error_code = JobStatus.FAILED, EXPIRED_MESSAGE, "expired"
            provider_data["video_url"] = None
        elif status is JobStatus.SUCCEEDED and not video_url:
            status, error, error_code = JobStatus.FAILED, "job COMPLETED without result.videoUrl", "no_result"
        update = {
            "status": status,
            "raw_status": raw or job.raw_status,
            "progress": (
                min(max(float(progress) / 100.0, 0.0), 1.0)
                if isinstance(progress, (int, float)) and not isinstance(progress, bool)
                else (1.0 if status is JobStatus.SUCCEEDED else job.progress)
            ),
            "error_code": error_code,
            "error_message": error,
            "reported_cost": cost,
            "reported_cost_unit": "credits" if cost is not None else None,
            "poll_after_seconds": None if status.is_terminal else self.poll_interval_seconds,
            "rejection": rejection,
            "charged": None if cost is None else cost > 0,
            "provider_data": provider_data,
        }
        # Unchanged (a job read again while it runs): the same object. Many waits re-read their
        # jobs every few seconds, and a copy each time is garbage the collector then walks.
        if all(getattr(job, field) == value for field, value in update.items()):
            return job
        return job.model_copy(update=update)

    def _map_error(self, response: httpx.Response, info: ErrorInfo) -> ProviderError | None:
        """APIFrame specifics: "model not found" answers, 400 details, 409 on a reused key."""
        kwargs: dict[str, Any] = {"provider": self.name, "status_code": info.status, "request_id": info.request_id}
        body = info.body if isinstance(info.body, dict) else {}
        details = json_object(body.get("details"))
        message = info.message
        if details:
            message += ": " + "; ".join(
                f"{path}: {', '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
                for path, msgs in details.items()
            )
        on_submit = response.request.url.path.endswith(GENERATE_PATH)
        # 400 names the field in details; 404 "Model not found: sora-2" is the retired/unknown answer.
        lowered = info.message.lower()
        about_model = "model" in details or "model not found" in lowered or (info.status == 404 and "model" in lowered)
        if on_submit and info.status in (400, 404) and about_model:
            model = _sent_model(response.request)
            return ModelUnavailable(
                f"model {model!r} is not available on APIFrame ({message}); choose another model in the catalog",
                model=model,
                **kwargs,
            )
        if info.status == 409:
            return IdempotencyConflict(
                f"{message}; the Idempotency-Key was already used with a different request body "
                "(a changed request, or a local image uploaded again under a new URL)",
                **kwargs,
            )
        if info.status == 400 and details:
            return InvalidRequest(message, **kwargs)
        return None


def _sent_model(request: httpx.Request) -> str:
    try:
        return str(json.loads(request.content).get("model") or "")
    except (ValueError, AttributeError, httpx.RequestNotRead):
        return ""


# What ``_update`` reads from a job object.
_READ_FIELDS = ("id", "status", "progress", "creditCost", "error", "result", "expired")


def _answers(job: dict[str, Any]) -> bool:
    """A listed job answers as fully as ``GET /v2/jobs/{id}``: completed, with its video URL and its charge."""
    result, cost = job.get("result"), job.get("creditCost")
    return (
        job.get("status") == "COMPLETED"
        and isinstance(result, dict)
        and bool(result.get("videoUrl"))
        and isinstance(cost, (int, float))
        and not isinstance(cost, bool)
    )
