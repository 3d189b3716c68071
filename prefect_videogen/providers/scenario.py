"""Scenario (api.cloud.scenario.com/v1): Sora 2 and other video models through the Generation API.

The wire format, from provider-apis.md section 2 and Scenario's model reference:

- HTTP Basic auth, base64(API_KEY:API_SECRET); ``?projectId=`` on generate and upload calls when set.
- ``POST /generate/custom/{modelId}`` with ``prompt`` and the model's parameters as a flat JSON
  object -> ``{"job": {...}, "creativeUnitsCost": n}``. Each model names its parameters its own way
  (``aspectRatio``, ``lastFrameImage``, ``negativePrompt``...; a duration as a number or a string):
  that is catalog data (``VideoPlan.wire``), never code here. There is no
  idempotency key, so the submit is sent with ``paid=True``: never re-sent once its body may have
  arrived.
- Image inputs (start image, end frame, reference images) are Scenario asset ids:
  ``POST /assets {"image": data URL, "name"}`` first, after ``GET /models/{id}`` confirms the model.
- ``GET /jobs/{jobId}`` -> ``{"job": {status, progress (0-1), metadata: {assetIds, error?}}}``.
- The video: ``GET /assets/{id}`` -> ``{"asset": {url}}``, a CDN URL fetched without credentials.
- Price preview: ``?dryRun=true`` IN THE QUERY STRING -> HTTP 269 ``{creativeUnitsCost}``. Scenario's
  own skills repo warns that ``dryRun`` in the JSON body is accepted and billed as a real run.

Example:
    ```python
    from prefect_videogen.catalog import load_catalog
    from prefect_videogen.models import VideoRequest
    from prefect_videogen.providers.scenario import ScenarioVideoProvider

    plan = load_catalog().plan("scenario", VideoRequest(prompt="a fox in snow", duration=8))
    async with ScenarioVideoProvider("KEY", "SECRET") as client:
        units, unit = await client.quote(plan)
        job = await client.submit(plan)
    ```
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import unquote

import httpx

from prefect_videogen.catalog import VideoPlan, request_images, unavailable_message, wire_params
from prefect_videogen.errors import (
    InvalidVideoRequest,
    JobFailed,
    ModelUnavailable,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    register_secret,
)
from prefect_videogen.models import JobStatus, Rejection, RejectionStage, VideoJob
from prefect_videogen.policy import check_image_bytes, check_local_image, fetch_url, has_scheme
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.base import VideoProvider, map_status
from prefect_videogen.providers.http import (
    DEFAULT_TIMEOUT,
    ErrorInfo,
    HttpTransport,
    Sleep,
    json_object,
)
from prefect_videogen.providers.retry import RetryPolicy

DEFAULT_BASE_URL = "https://api.cloud.scenario.com/v1"
COST_UNIT = "creative_units"
DRY_RUN_STATUS = 269  # Scenario's price preview answers 269: a success, not an error

# Scenario documents "< 6 MB" for POST /assets without saying whether before or after base64; we
# apply it to the payload as sent (the data URL), the stricter reading.
MAX_IMAGE_PAYLOAD = 6 * 1024 * 1024

# Status words seen across Scenario's docs and help pages disagree; all are listed. warming-up is a
# model being loaded: nothing is generating yet, so it counts as queued.
STATUS_TABLE: dict[str, JobStatus] = {
    "queued": JobStatus.QUEUED,
    "warming-up": JobStatus.QUEUED,
    "processing": JobStatus.RUNNING,
    "in-progress": JobStatus.RUNNING,
    "success": JobStatus.SUCCEEDED,
    "failed": JobStatus.FAILED,
    "failure": JobStatus.FAILED,
    "canceled": JobStatus.CANCELED,
}

# Query-string names that must never be in the body (whatever a catalog override declares):
# dryRun in the body is the documented trap that bills a real run.
_QUERY_ONLY = frozenset({"dryRun", "projectId"})
_IMAGE_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
_MODERATION_WORDS = ("moderation", "content policy", "safety", "nsfw", "flagged")
_KNOWN_CODES = re.compile(r"\b(sentinel_block|moderation_blocked)\b")


#: Account ids of Scenario keys without a label: this prefix and a hash of the key (providers.accounts).
ACCOUNT_PREFIX = "scenario-"


def classify_rejection(code: str | None, message: str | None) -> Rejection | None:
    """Tell a content-policy failure from other failures, and which input was flagged.

    Scenario relays the upstream (OpenAI) moderation result in ``metadata.error`` as text or as
    ``{code, message}``. Classified here, and why:

    - ``moderation_blocked``, or a moderation message about the output/generated clip: blocked
      after rendering, stage "output", charged True (Scenario bills clips rejected by moderation
      after rendering, per its skills repo).
    - ``sentinel_block``, or a moderation message naming the image or the prompt: blocked at request
      time, stage "image"/"prompt", charged False (Scenario reimburses failed jobs).
    - A moderation message that names no stage: stage None, charged None (we cannot tell).
    """
    text = f"{code or ''} {message or ''}".lower()
    moderated = any(word in text for word in _MODERATION_WORDS)
    if "moderation_blocked" in text or (moderated and ("output" in text or "generated" in text)):
        return Rejection(stage="output", charged=True)
    if "sentinel_block" in text or moderated:
        stage: RejectionStage | None = "image" if "image" in text else "prompt" if "prompt" in text else None
        return Rejection(stage=stage, charged=False if stage or "sentinel_block" in text else None)
    return None


def _error_of(error: Any) -> tuple[str | None, str | None]:
    """(code, message) of ``metadata.error``: a string or an object, tolerated either way."""
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message") or error.get("reason") or error.get("detail")
        return (str(code) if code else None), (str(message) if message else None)
    if isinstance(error, str) and error.strip():
        found = _KNOWN_CODES.search(error)
        return (found.group(1) if found else None), error.strip()
    return None, None


def _progress(value: Any, status: JobStatus) -> float | None:
    if status is JobStatus.SUCCEEDED:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    fraction = float(value)
    if fraction > 1.0:  # documented as 0-1; a percentage from another endpoint is scaled, not clamped to done
        fraction /= 100.0
    return min(max(fraction, 0.0), 1.0)


def _image_type(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _IMAGE_TYPES.items() if data.startswith(magic)), None)


def _model_id_in(path: str) -> str:
    """The model id of a ``.../generate/custom/{id}`` or ``.../models/{id}`` URL path."""
    parts = [unquote(p) for p in path.split("/") if p]
    for marker in ("custom", "models"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return parts[parts.index(marker) + 1]
    return parts[-1] if parts else ""


class ScenarioVideoProvider(VideoProvider):
    """Scenario's Generation API client.

    Args:
        api_key: Scenario API key.
        api_secret: the secret that goes with it.
        base_url: API root ending in /v1 (gateways, proxies and emulators fit here).
        project_id: sent as ``?projectId=`` on generate and upload calls when set.
        account_label: non-secret account name for cache keys and the ledger.
        poll_interval: seconds between polls. Scenario sends no poll hint, so this stands in for
            one; None leaves the shared growing schedule.
        policy, sleep, transport, timeout: passed to :class:`HttpTransport` (tests inject them).
    """

    name = "scenario"

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        project_id: str | None = None,
        account_label: str | None = None,
        poll_interval: float | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        for secret in (api_key, api_secret, base64.b64encode(f"{api_key}:{api_secret}".encode()).decode()):
            register_secret(secret)
        self.project_id = project_id
        self.poll_interval = poll_interval
        self._account_id = account_id_for(api_key, prefix=ACCOUNT_PREFIX, label=account_label)
        self.http = HttpTransport(
            self.name,
            base_url,
            auth=httpx.BasicAuth(api_key, api_secret),
            error_mapper=self._map_error,
            policy=policy,
            sleep=sleep,
            transport=transport,
            timeout=timeout,
        )

    @property
    def account_id(self) -> str:
        return self._account_id

    async def aclose(self) -> None:
        await self.http.aclose()

    async def submit(self, plan: VideoPlan, *, idempotency_key: str | None = None) -> VideoJob:
        """Create the job (paid, sent once). Scenario has no idempotency key: ``idempotency_key`` is unused.

        Every image (start image, end frame, each reference image) is checked, then uploaded as an
        asset, all before the paid POST; the model is checked (``GET /models/{id}``) before the first
        upload, so a retired model costs no orphan asset.

        Raises:
            InvalidVideoRequest: the plan has no wire, or an image is unusable.
            ModelUnavailable: Scenario answers "Model not found" (with the catalog's live alternatives);
                no job was created.
            ProviderUnavailable: ``maybe_created=True`` when the answer was lost after sending.
        """
        self._check_wire(plan)
        model_id = plan.spec.provider_model_id
        images = [(field, image, await self._load_image(field, image)) for field, image in request_images(plan.request)]
        asset_ids: dict[str, Any] = {}
        async with self._model_errors(plan):
            if images:
                await self.http.json("GET", f"models/{url_quote(model_id, safe='')}")
            for field, image, content in images:
                asset_id = await self._upload(content, name=Path(image.split("?")[0]).name or "image")
                if field.startswith("reference_images"):
                    asset_ids.setdefault("reference_images", []).append(asset_id)
                else:
                    asset_ids[field] = asset_id
            response = await self.http.send(
                "POST",
                self._generate_path(plan),
                paid=True,
                json=self._params(plan, asset_ids),
                params=self._project_query(),
            )
        payload = self._decode(response, maybe_created=True)
        cost = payload.get("creativeUnitsCost") if isinstance(payload, dict) else None
        data: dict[str, Any] = {"model_id": model_id, "image_asset_id": asset_ids.get("image")}
        if set(asset_ids) - {"image"}:
            data["asset_ids_sent"] = asset_ids
        if isinstance(cost, (int, float)) and not isinstance(cost, bool):
            data["creative_units_cost"] = float(cost)  # GET /jobs may not repeat it: keep it from here
        return self._to_job(payload, model=plan.request.model or "", previous=data, maybe_created=True)

    async def quote(self, plan: VideoPlan) -> tuple[float, str]:
        """Price ``plan`` with Scenario's dry run (HTTP 269) without creating a job.

        ``dryRun=true`` goes in the query string: in the JSON body Scenario runs and bills the job.
        A dry run prices without validating, so the images (uploads) are left out: the body is the
        submit's, minus its asset ids.

        Returns:
            ``(creative units, "creative_units")``.
        """
        self._check_wire(plan)
        params = self._params(plan, {})
        async with self._model_errors(plan):
            # paid=True: were a gateway to drop the query string, this would be a real, billed run.
            response = await self.http.send(
                "POST",
                self._generate_path(plan),
                paid=True,
                json=params,
                params={**self._project_query(), "dryRun": "true"},
            )
        payload = self._decode(response, maybe_created=True)
        job = payload.get("job") if isinstance(payload, dict) else None
        if response.status_code != DRY_RUN_STATUS or job:
            job_id = job.get("jobId") if isinstance(job, dict) else None
            raise ProviderError(
                f"dry run answered HTTP {response.status_code} instead of {DRY_RUN_STATUS}; it may have run "
                f"as a real, billed job{f' ({job_id})' if job_id else ''}",
                provider=self.name,
                status_code=response.status_code,
            )
        cost = payload.get("creativeUnitsCost")
        if isinstance(cost, bool) or not isinstance(cost, (int, float)):
            raise ProviderUnavailable("dry run answered without creativeUnitsCost", provider=self.name)
        return float(cost), COST_UNIT

    @asynccontextmanager
    async def _model_errors(self, plan: VideoPlan) -> AsyncIterator[None]:
        """Name the catalog's live alternatives in a "model not found" answer."""
        try:
            yield
        except ModelUnavailable as exc:
            raise ModelUnavailable(
                unavailable_message(plan, exc.detail),
                model=exc.model,
                provider=self.name,
                status_code=exc.status_code,
                request_id=exc.request_id,
            ) from exc

    async def get_job(self, job: VideoJob) -> VideoJob:
        payload = await self.http.json("GET", f"jobs/{url_quote(job.job_id, safe='')}")
        return self._to_job(payload, model=job.model, previous=job.provider_data)

    @asynccontextmanager
    async def stream_video(self, job: VideoJob) -> AsyncIterator[AsyncIterator[bytes]]:
        asset_ids = job.provider_data.get("asset_ids") or (await self.get_job(job)).provider_data.get("asset_ids")
        if not asset_ids:
            raise JobFailed("the job has no output asset", provider=self.name, job_id=job.job_id)
        url = await self._video_url(asset_ids)
        # The asset URL is a CDN URL: fetched with the client that carries no Scenario credentials.
        async with self.http.stream(url, authenticated=False) as chunks:
            yield chunks

    async def _video_url(self, asset_ids: list[str]) -> str:
        for asset_id in asset_ids:
            payload = await self.http.json("GET", f"assets/{url_quote(asset_id, safe='')}")
            asset = payload.get("asset") if isinstance(payload, dict) else None
            if not isinstance(asset, dict) or not asset.get("url"):
                continue
            kind = str(asset.get("type") or asset.get("mimeType") or "video").lower()
            if "video" in kind:
                return str(asset["url"])
        raise ProviderUnavailable(f"no video URL among assets {', '.join(asset_ids)}", provider=self.name)

    def _generate_path(self, plan: VideoPlan) -> str:
        return f"generate/custom/{url_quote(plan.spec.provider_model_id, safe='')}"

    def _project_query(self) -> dict[str, str]:
        return {"projectId": self.project_id} if self.project_id else {}

    def _check_wire(self, plan: VideoPlan) -> None:
        if plan.wire is None:
            raise InvalidVideoRequest(
                "model",
                plan.request.model,
                "a catalog row with a wire (Scenario's parameter names)",
                context="scenario",
            )
        # The query string's own names: dryRun in the body is the documented trap that bills a real run.
        smuggled = sorted(_QUERY_ONLY & set(plan.request.provider_options))
        if smuggled:
            raise InvalidVideoRequest(
                "provider_options",
                {key: plan.request.provider_options[key] for key in smuggled},
                "names other than dryRun and projectId (dryRun is quote()'s job: in the body Scenario bills a real run)",
                context=f"scenario model {plan.request.model!r}",
            )

    def _params(self, plan: VideoPlan, asset_ids: dict[str, Any]) -> dict[str, Any]:
        """The flat body: ``prompt`` and the model's parameters named by the catalog's wire."""
        return {"prompt": plan.request.prompt, **wire_params(plan, asset_ids)}

    async def _load_image(self, field: str, image: str) -> bytes:
        """The image's bytes, checked by the worker's policy and by content before any upload.

        A URL is fetched by the worker (its destination checked at every hop, the answer capped and
        never echoed); a local file passes the path policy and a header check before it is read.
        """
        if image.startswith(("http://", "https://")):
            data = await asyncio.to_thread(
                fetch_url, field, image, max_bytes=MAX_IMAGE_PAYLOAD, setting="Scenario's 6 MB upload limit"
            )
            check_image_bytes(field, image, data)
        elif has_scheme(image):
            raise InvalidVideoRequest(field, image, "a local file path or an http(s) URL")
        else:
            checked = await asyncio.to_thread(
                check_local_image,
                field,
                image,
                read=True,
                max_bytes=MAX_IMAGE_PAYLOAD,
                limit_text="Scenario's 6 MB upload limit",
            )
            data = checked.data or b""
        kind = _image_type(data)
        if kind is None:
            raise InvalidVideoRequest(field, image, "a PNG, JPEG or WEBP image")
        if len(self._data_url(data, kind)) >= MAX_IMAGE_PAYLOAD:
            raise InvalidVideoRequest(field, image, "an image under 6 MB once base64-encoded (Scenario's upload limit)")
        return data

    @staticmethod
    def _data_url(data: bytes, kind: str) -> str:
        return f"data:{kind};base64,{base64.b64encode(data).decode()}"

    async def _upload(self, data: bytes, *, name: str) -> str:
        body = {"image": self._data_url(data, _image_type(data) or "image/png"), "name": name}
        # Uploads are free and create only an asset: retrying one risks a duplicate asset, never a bill.
        payload = await self.http.json("POST", "assets", json=body, params=self._project_query())
        asset = payload.get("asset") if isinstance(payload, dict) else None
        if not isinstance(asset, dict) or not asset.get("id"):
            raise ProviderUnavailable("asset upload answered without an asset id", provider=self.name)
        return str(asset["id"])

    def _decode(self, response: httpx.Response, *, maybe_created: bool = False) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ProviderUnavailable(
                f"HTTP {response.status_code} answer is not JSON",
                provider=self.name,
                status_code=response.status_code,
                maybe_created=maybe_created,
            ) from exc

    def _to_job(self, payload: Any, *, model: str, previous: dict[str, Any], maybe_created: bool = False) -> VideoJob:
        job = payload.get("job") if isinstance(payload, dict) else None
        if not isinstance(job, dict) or not job.get("jobId"):
            raise ProviderUnavailable("answer without a job", provider=self.name, maybe_created=maybe_created)
        raw_status = str(job.get("status") or "")
        status = map_status(STATUS_TABLE, raw_status)
        metadata = json_object(job.get("metadata"))
        data = {**previous, "asset_ids": [str(a) for a in metadata.get("assetIds") or [] if a]}
        code = message = None
        rejection: Rejection | None = None
        charged: bool | None = None
        if status in (JobStatus.FAILED, JobStatus.CANCELED):
            code, message = _error_of(metadata.get("error"))
            rejection = classify_rejection(code, message)
            if rejection is None and status is JobStatus.FAILED:
                charged = False  # "Failed jobs are reimbursed" (provider-apis.md section 2)
        cost = previous.get("creative_units_cost")
        return VideoJob(
            provider=self.name,
            job_id=str(job["jobId"]),
            model=model,
            status=status,
            raw_status=raw_status,
            progress=_progress(job.get("progress"), status),
            error_code=code,
            error_message=message,
            poll_after_seconds=None if status.is_terminal else self.poll_interval,
            reported_cost=cost,
            reported_cost_unit=COST_UNIT if cost is not None else None,
            rejection=rejection,
            charged=charged,
            provider_data=data,
        )

    def _map_error(self, response: httpx.Response, info: ErrorInfo) -> ProviderError | None:
        body = info.body if isinstance(info.body, dict) else {}
        kwargs: dict[str, Any] = {"provider": self.name, "status_code": info.status, "request_id": info.request_id}
        if info.status == 429:
            # Two documented shapes: {"reason": "cooldown", "remainingSeconds": N} and
            # {details: {actionName, actionLimit}} (then only a Retry-After header, if any).
            remaining = body.get("remainingSeconds")
            hint = float(remaining) if isinstance(remaining, (int, float)) and not isinstance(remaining, bool) else None
            details = json_object(body.get("details"))
            message = info.message
            if details.get("actionName"):
                message = f"{message} (limit of {details.get('actionLimit', '?')} on {details['actionName']})"
            return RateLimited(message, retry_after=hint if hint is not None else info.retry_after, **kwargs)
        if info.status == 404 and "model not found" in info.message.lower():
            model_id = _model_id_in(response.request.url.path)
            return ModelUnavailable(
                f"model {model_id!r} not found: Scenario does not serve it (unknown or retired); choose another "
                "model or provider (catalog overrides: PREFECT_VIDEOGEN_CATALOG)",
                model=model_id,
                **kwargs,
            )
        return None
