"""Google's Gemini API (generativelanguage.googleapis.com): Veo video models as long-running operations.

Wire format (shared/provider-apis.md section 6; everything a model takes is catalog data):

- Auth ``x-goog-api-key: KEY``, as a header only: a ``?key=`` query would put the key in every URL
  that is logged or shown.
- Submit ``POST {base}/models/{model}:predictLongRunning`` with ``{"instances": [{prompt, image,
  lastFrame, referenceImages}], "parameters": {...}}`` -> an operation ``{"name":
  "models/{model}/operations/{id}", "done": false}``. The prompt and the images go in the instance
  (host knowledge: the same for every Veo model); the parameter object and the names of every
  field, images included, come from the catalog row's wire. Images are sent inline as
  ``{"bytesBase64Encoded", "mimeType"}``.
- Poll ``GET {base}/{operation name}`` until ``"done": true``: then ``error`` ({code, message,
  status}) or ``response.generateVideoResponse`` with ``generatedSamples[].video.uri`` and, for a
  safety block, ``raiMediaFilteredCount`` / ``raiMediaFilteredReasons`` (both spellings, with and
  without ``Media``, are read).
- The sample URI is downloaded with the key when it is on the API's own origin (Gemini's file
  download); the key is never sent to another origin, redirects included: httpx copies every
  header but ``Authorization`` to a redirect target, so the key is added per hop by a request hook
  that checks the hop's origin (:meth:`GeminiVideoProvider._key_for_api_only`).
- Errors ``{"error": {code, message, status}}``: 400 INVALID_ARGUMENT, 403 PERMISSION_DENIED,
  404 NOT_FOUND (an unknown model: :class:`ModelUnavailable` listing the catalog's live models),
  429 RESOURCE_EXHAUSTED (a ``google.rpc.RetryInfo`` ``retryDelay`` in ``details`` is a wait
  hint), 5xx.

Money: Gemini has no idempotency key and documents no way to list a key's operations, so the submit
is sent with ``paid=True`` (never re-sent once its body may have arrived) and an unanswered submit
cannot be looked up: the claim stays, and the run fails with ``SubmitUncertain`` naming it (as for
Scenario). An answered submit's operation name is the job id the claim records at once. Gemini
reports no cost: the ledger books the catalog's USD per second (estimated).

Example:
    ```python
    from prefect_videogen.catalog import load_catalog
    from prefect_videogen.models import VideoRequest
    from prefect_videogen.providers.gemini import GeminiVideoProvider

    plan = load_catalog().plan("gemini", VideoRequest(prompt="a fox in snow", duration=8))
    async with GeminiVideoProvider("AIza...") as client:
        job = await client.submit(plan)
    ```
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from prefect_videogen.catalog import VideoPlan, unavailable_message
from prefect_videogen.errors import (
    AuthError,
    InvalidVideoRequest,
    JobFailed,
    ModelUnavailable,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    register_secret,
)
from prefect_videogen.models import JobStatus, Rejection, RejectionStage, VideoJob
from prefect_videogen.policy import check_image_bytes, check_local_image, current, fetch_url, has_scheme
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.base import VideoProvider, raise_for_job
from prefect_videogen.providers.http import DEFAULT_TIMEOUT, ErrorInfo, HttpTransport, Sleep, json_object
from prefect_videogen.providers.retry import RetryPolicy

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
KEY_HEADER = "x-goog-api-key"
#: Account ids of Gemini keys without a label: this prefix and a hash of the key (providers.accounts).
ACCOUNT_PREFIX = "gemini-"
SUBMIT_SUFFIX = ":predictLongRunning"

# The request fields that are images: they go in the instance, inline, under the wire's names.
_IMAGE_FIELDS = ("image", "end_image", "reference_images")
# What the instance carries besides the images; provider_options may not set these.
_INSTANCE_FIELDS = ("prompt",)
# An operation name is "models/{model}/operations/{id}": path segments only, so a job id read back
# from a claim can never point the key at another URL.
_OPERATION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]*(/[A-Za-z0-9][A-Za-z0-9._~-]*)+$")
# An operation error whose text says a safety filter refused it (Google's Veo notes quote "Veo could not
# generate videos because the input image violates ... usage guidelines"): a rejection, not a failure.
_SAFETY_WORDS = ("usage guidelines", "safety", "responsible ai", "content policy")
_RETRY_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def classify_rejection(count: Any, reasons: Any) -> Rejection | None:
    """A safety block from ``raiMediaFilteredCount`` / ``raiMediaFilteredReasons``, or None.

    Gemini filters generated samples it will not return and says why in free text. The stage is
    the input the reason names ("input image" -> image, "prompt" -> prompt); a reason naming
    neither is the output (samples generated, then withheld). Whether a filtered job is billed is
    not documented (a public question about it on discuss.google.dev has no official answer), so
    ``charged`` stays None.
    """
    texts = [str(reason) for reason in reasons] if isinstance(reasons, list) else []
    filtered = isinstance(count, int) and not isinstance(count, bool) and count > 0
    if not filtered and not texts:
        return None
    text = " ".join(texts).lower()
    stage: RejectionStage = "image" if "image" in text else "prompt" if "prompt" in text else "output"
    return Rejection(stage=stage, charged=None)


def _origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
    parsed = httpx.URL(str(url))
    return parsed.scheme, parsed.host, parsed.port


class GeminiVideoProvider(VideoProvider):
    """Generate videos with Veo through the Gemini API.

    Args:
        api_key: sent as the ``x-goog-api-key`` header, to ``base_url``'s origin only; registered
            for redaction.
        base_url: API root ending in the API version (``.../v1beta``); proxies and the emulator fit here.
        account_label: non-secret name of the billed account; default: a short sha256 prefix of the key.
        poll_interval_seconds: fixed wait between polls. Gemini sends no poll hint, so by default
            the shared growing schedule applies.
        policy, sleep, transport, timeout: passed to the shared HTTP transport (tests inject them).
    """

    name = "gemini"

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
            raise ValueError("Gemini api_key is empty; create one in Google AI Studio (GEMINI_API_KEY)")
        register_secret(api_key)
        self._key = api_key
        self._account = account_id_for(api_key, prefix=ACCOUNT_PREFIX, label=account_label)
        self.poll_interval_seconds = poll_interval_seconds
        self.http = HttpTransport(
            self.name,
            base_url,
            error_mapper=self._map_error,
            policy=policy,
            sleep=sleep,
            transport=transport,
            timeout=timeout,
        )
        self._api_origin = _origin(self.http.base_url)
        api = self.http.api
        # The key goes on through the hook below, hop by hop: never as a client default header,
        # which httpx would copy to a redirect's other origin.
        api.event_hooks = {**api.event_hooks, "request": [*api.event_hooks["request"], self._key_for_api_only]}
        api.follow_redirects = True  # the file download redirects to storage; the hook keeps the key home

    def __repr__(self) -> str:
        return f"GeminiVideoProvider(base_url={self.http.base_url!r}, account_id={self._account!r})"

    @property
    def account_id(self) -> str:
        return self._account

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _key_for_api_only(self, request: httpx.Request) -> None:
        if _origin(request.url) == self._api_origin:
            request.headers[KEY_HEADER] = self._key
        else:
            request.headers.pop(KEY_HEADER, None)

    async def submit(self, plan: VideoPlan, *, idempotency_key: str | None = None) -> VideoJob:
        """Start the operation (paid, sent once). Gemini has no idempotency key: ``idempotency_key`` is unused.

        Raises:
            InvalidVideoRequest: the plan has no wire, provider_options clash, or an image is unusable.
            ModelUnavailable: Gemini answers 404 for the model; no operation was started.
            ProviderUnavailable: ``maybe_created=True`` when the answer was lost after sending.
        """
        body = await self._body(plan)
        model_id = plan.spec.provider_model_id
        path = f"models/{quote(model_id, safe='')}{SUBMIT_SUFFIX}"
        try:
            response = await self.http.send("POST", path, paid=True, json=body)
        except ModelUnavailable as exc:
            raise ModelUnavailable(
                _unavailable_message(plan, exc.detail),
                provider=self.name,
                model=plan.request.model or model_id,
                status_code=exc.status_code,
                request_id=exc.request_id,
            ) from exc
        operation = _operation(response, self.name, maybe_created=True)
        job = VideoJob(
            provider=self.name,
            job_id=str(operation["name"]),
            model=plan.request.model or model_id,
            status=JobStatus.QUEUED,
            raw_status="submitted",
        )
        return self._update(job, operation)

    async def get_job(self, job: VideoJob) -> VideoJob:
        response = await self.http.send("GET", _operation_path(job.job_id, self.name))
        return self._update(job, _operation(response, self.name))

    @asynccontextmanager
    async def stream_video(self, job: VideoJob) -> AsyncIterator[AsyncIterator[bytes]]:
        uri = job.provider_data.get("video_uri")
        if not uri:
            job = await self.get_job(job)
            raise_for_job(job)
            uri = job.provider_data.get("video_uri")
        if not isinstance(uri, str) or urlsplit(uri).scheme not in ("http", "https"):
            raise JobFailed(f"no downloadable sample video.uri ({uri!r})", provider=self.name, job_id=job.job_id)
        # On the API's origin the download needs the key (the hook adds it, and drops it on any hop
        # that leaves the origin); anywhere else it goes through the client that carries no key.
        on_api = _origin(uri) == self._api_origin
        async with self.http.stream(uri, authenticated=on_api) as chunks:
            yield chunks

    # -- request body -------------------------------------------------------------------------

    async def _body(self, plan: VideoPlan) -> dict[str, Any]:
        wire = plan.wire
        if wire is None or not wire.params_object:
            raise InvalidVideoRequest(
                "model",
                plan.request.model,
                "a gemini catalog row with a wire whose params_object names the parameter object",
            )
        request = plan.request
        managed = {*wire.fields.values(), *_INSTANCE_FIELDS}
        clash = sorted(set(request.provider_options) & managed)
        if clash:
            raise InvalidVideoRequest(
                "provider_options", clash, f"keys other than {', '.join(sorted(managed))} (set through the request)"
            )
        instance: dict[str, Any] = {"prompt": request.prompt}
        parameters: dict[str, Any] = {}
        for field, name in wire.fields.items():
            if field in _IMAGE_FIELDS:
                continue
            value = getattr(request, field)
            if value is None:
                continue
            if field == "duration" and wire.duration_type == "string":
                value = str(value)
            elif field in wire.values:
                value = wire.values[field].get(str(value), value)
            parameters[name] = value
        parameters.update(request.provider_options)  # checked against wire.options in Catalog.plan
        if request.image is not None and "image" in wire.fields:
            instance[wire.fields["image"]] = await self._inline_image("image", request.image)
        if request.end_image is not None and "end_image" in wire.fields:
            instance[wire.fields["end_image"]] = await self._inline_image("end_image", request.end_image)
        if request.reference_images and "reference_images" in wire.fields:
            instance[wire.fields["reference_images"]] = [
                {"image": await self._inline_image(f"reference_images[{index}]", item)}
                for index, item in enumerate(request.reference_images)
            ]
        return {"instances": [instance], wire.params_object: parameters}

    async def _inline_image(self, field: str, image: str) -> dict[str, str]:
        """``{"bytesBase64Encoded", "mimeType"}`` of an image checked by the worker's policy and by content.

        A URL is fetched by the worker (its destination checked at every hop, capped, never echoed);
        a local file passes the path policy and a header check, and its bytes come from the same file.
        """
        limit = current(None).max_image_bytes
        if image.startswith(("http://", "https://")):
            data = await asyncio.to_thread(
                fetch_url, field, image, max_bytes=limit, setting="PREFECT_VIDEOGEN_MAX_IMAGE_BYTES"
            )
            checked = check_image_bytes(field, image, data)
        elif has_scheme(image):
            raise InvalidVideoRequest(field, image, "a local file path or an http(s) URL")
        else:
            checked = await asyncio.to_thread(check_local_image, field, image, read=True)
        return {"bytesBase64Encoded": base64.b64encode(checked.data or b"").decode("ascii"), "mimeType": checked.mime}

    # -- answers ------------------------------------------------------------------------------

    def _update(self, job: VideoJob, operation: dict[str, Any]) -> VideoJob:
        done = operation.get("done") is True
        data = dict(job.provider_data)
        status, raw = (JobStatus.RUNNING, "running") if not done else (JobStatus.SUCCEEDED, "done")
        code = message = None
        rejection: Rejection | None = None
        if done:
            error = json_object(operation.get("error"))
            video = json_object(json_object(operation.get("response")).get("generateVideoResponse"))
            samples = video.get("generatedSamples")
            uris = [
                str(uri)
                for sample in (samples if isinstance(samples, list) else [])
                if isinstance(uri := json_object(json_object(sample).get("video")).get("uri"), str) and uri
            ]
            count = video.get("raiMediaFilteredCount", video.get("raiFilteredCount"))
            reasons = video.get("raiMediaFilteredReasons", video.get("raiFilteredReasons"))
            if error:
                status, raw = JobStatus.FAILED, "error"
                code = str(error.get("status") or error.get("code") or "") or None
                message = str(error.get("message") or "the operation ended with an error")
                if any(word in message.lower() for word in _SAFETY_WORDS):
                    rejection = classify_rejection(None, [message])
            elif uris:
                data["video_uri"] = uris[0]
            elif (rejection := classify_rejection(count, reasons)) is not None:
                status, raw, code = JobStatus.FAILED, "rai_filtered", "rai_filtered"
                texts = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) and reasons else ""
                message = "blocked by Gemini's safety filters" + (f": {texts}" if texts else "")
            else:
                status, raw, code = JobStatus.FAILED, "no_result", "no_result"
                message = "the operation is done without a generated sample"
        return job.model_copy(
            update={
                "status": status,
                "raw_status": raw,
                "progress": 1.0 if status is JobStatus.SUCCEEDED else job.progress,
                "error_code": code,
                "error_message": message,
                "poll_after_seconds": None if status.is_terminal else self.poll_interval_seconds,
                "rejection": rejection,
                "provider_data": data,
            }
        )

    def _map_error(self, response: httpx.Response, info: ErrorInfo) -> ProviderError | None:
        """Gemini specifics: an invalid key is a 400, a 429's wait hint is in ``details``, 404 on submit."""
        error = json_object(info.body.get("error") if isinstance(info.body, dict) else None)
        details = [json_object(d) for d in error.get("details") or [] if isinstance(d, dict)]
        kwargs: dict[str, Any] = {"provider": self.name, "status_code": info.status, "request_id": info.request_id}
        status_word = str(error.get("status") or "")
        if status_word and status_word not in info.message:
            # Google's status word says more than the code (PERMISSION_DENIED, RESOURCE_EXHAUSTED):
            # kept in the message of every error, the shared mapping's included.
            info.message = f"{info.message} ({status_word})"
        message = info.message
        # Google APIs answer a wrong key with 400 INVALID_ARGUMENT and reason API_KEY_INVALID.
        if info.status == 400 and any(d.get("reason") == "API_KEY_INVALID" for d in details):
            return AuthError(message, **kwargs)
        if info.status == 429:
            return RateLimited(message, retry_after=_retry_delay(details, info.retry_after), **kwargs)
        if info.status == 404 and response.request.url.path.endswith(SUBMIT_SUFFIX):
            return ModelUnavailable(message, model="", **kwargs)
        return None


def _retry_delay(details: list[dict[str, Any]], header: float | None) -> float | None:
    """The wait of a ``google.rpc.RetryInfo`` detail ("37s", "1.5s"), else the Retry-After header's."""
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _RETRY_DELAY.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match[1])
    return header


def _unavailable_message(plan: VideoPlan, detail: str) -> str:
    """The catalog's "model not found" message (its live alternatives), naming the Gemini model id."""
    model = plan.request.model or plan.spec.provider_model_id
    return unavailable_message(
        plan, f"model {model!r} ({plan.spec.provider_model_id}) is not served by the Gemini API ({detail})"
    )


def _operation_path(name: str, provider: str) -> str:
    if not _OPERATION_NAME.match(name) or ".." in name.split("/"):
        raise ProviderError(f"not a Gemini operation name: {name[:200]!r}", provider=provider)
    return name


def _operation(response: httpx.Response, provider: str, *, maybe_created: bool = False) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(name, str) or not _OPERATION_NAME.match(name):
        raise ProviderUnavailable(
            f"{response.request.method} {response.request.url.path} answered {response.status_code} without an "
            f"operation name ({str(name)[:100]!r})",
            provider=provider,
            status_code=response.status_code,
            maybe_created=maybe_created,
        )
    return body
