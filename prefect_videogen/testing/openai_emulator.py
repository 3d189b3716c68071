"""A strict loopback emulator of OpenAI's Videos API, for tests and credit-free dry runs.

It answers as the documented API does, including its refusals: a wrong or missing key (401), an
integer ``seconds`` (400, OpenAI's own message), unknown or missing parameters, sizes the model does
not offer, a reference image that does not match ``size``, a retired model (404 model_not_found).
Jobs move queued -> in_progress -> completed over ``latency_seconds``; GETs carry the
``openai-poll-after-ms`` hint; ``/content`` serves a real MP4 of the job's size and duration.

Routes are served under ``/v1`` (use ``f"{server.base_url}/v1"`` as base_url, like
https://api.openai.com/v1) and, for convenience, at the root as well.

Example:
    ```python
    from prefect_videogen.testing import EmulatorServer
    from prefect_videogen.testing.openai_emulator import OpenAIEmulator

    with EmulatorServer(OpenAIEmulator(api_key="sk-test")) as server:
        base_url = f"{server.base_url}/v1"
    ```
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import time
import uuid
from email import policy
from email.parser import BytesParser
from typing import Any

from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from prefect_videogen.media import first_frame_image
from prefect_videogen.testing.openai_shape import (
    Refusal,
    check_bearer,
    error_response,
    refuse,
)
from prefect_videogen.testing.server import (
    EmulatorState,
    Fault,
    video_bytes,
    video_download,
)

STANDARD_SIZES = ("720x1280", "1280x720")
PRO_SIZES = (*STANDARD_SIZES, "1024x1792", "1792x1024")
# Served models -> sizes they accept (dated snapshots share their family's sizes).
MODELS = {
    "sora-2": STANDARD_SIZES,
    "sora-2-2025-10-06": STANDARD_SIZES,
    "sora-2-pro": PRO_SIZES,
    "sora-2-pro-2025-10-06": PRO_SIZES,
}
SECONDS = ("4", "8", "12")
CREATE_FIELDS = {"prompt", "model", "seconds", "size", "input_reference"}
IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp"}
# USD per second of output (OpenAI pricing page; 1792x1024 pro third-party), for the charges ledger.
PRICES = {("sora-2", "720"): 0.10, ("sora-2-pro", "720"): 0.30, ("sora-2-pro", "1024"): 0.50}
EXPIRY_SECONDS = 3600  # "Downloads expire after 1 hours"


class OpenAIEmulator(EmulatorState):
    """OpenAI's Videos API on loopback.

    Args:
        api_key: the key clients must send as ``Authorization: Bearer``.
        organization, project: when set, an ``OpenAI-Organization``/``OpenAI-Project`` header
            must match them (401 otherwise), as for a key scoped to them.
        retired_models: models answered with 404 ``model_not_found``, as after a shutdown.
        **kwargs: :class:`EmulatorState` settings (latency_seconds, poll_after_ms, clock).

    Counters: ``create_requests`` (every POST /videos), ``jobs_created``, ``polls``, ``downloads``, ``uploads``, ``lists``, ``deletes``;
    ``charges`` maps job id -> USD billed (completed jobs and jobs moderated after generation).
    """

    provider = "openai"

    def __init__(
        self,
        *,
        api_key: str = "sk-emulator-key",
        organization: str | None = None,
        project: str | None = None,
        retired_models: set[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self.organization = organization
        self.project = project
        self.retired_models = set(retired_models or ())
        self.charges: dict[str, float] = {}
        routes = [
            Route("/videos", self._create, methods=["POST"]),
            Route("/videos", self._list, methods=["GET"]),
            Route("/videos/{video_id}", self._retrieve, methods=["GET"]),
            Route("/videos/{video_id}", self._delete, methods=["DELETE"]),
            Route("/videos/{video_id}/content", self._content, methods=["GET"]),
        ]
        self._app = Starlette(routes=[Mount("/v1", routes=routes), *routes])

    @property
    def app(self) -> Starlette:
        return self._app

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.charges.clear()

    # -- helpers -----------------------------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        check_bearer(request, {self.api_key})
        org = request.headers.get("openai-organization")
        if self.organization and org and org != self.organization:
            raise refuse(
                401, "OpenAI-Organization header should match organization for API key.", code="mismatched_organization"
            )
        proj = request.headers.get("openai-project")
        if self.project and proj and proj != self.project:
            raise refuse(401, "OpenAI-Project header should match project for API key.", code="mismatched_project")

    def _fault_response(self, fault: Fault) -> Response:
        status = fault.status or 500
        if fault.body is not None:
            return JSONResponse(fault.body, status_code=status, headers=fault.headers)
        if status == 429:
            return error_response(
                429,
                "Rate limit reached for requests. Please try again shortly.",
                type="requests",
                code="rate_limit_exceeded",
                headers=fault.headers,
            )
        return error_response(
            status,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
            headers=fault.headers,
        )

    def _job(self, video_id: str) -> dict[str, Any]:
        job = self.jobs.get(video_id)
        if job is None:
            raise refuse(404, f"Video with id '{video_id}' not found.", param="video_id")
        return job

    def _advance(self, job: dict[str, Any]) -> None:
        """Move ``job`` along its life on the emulator clock; bill it when it finishes rendering."""
        if job["status"] in ("completed", "failed"):
            return
        fraction = self.elapsed_fraction(job)
        if fraction >= 1.0:
            job["progress"] = 100
            job["completed_at"] = job["created_at"] + max(int(self.latency_seconds), 1)
            job["expires_at"] = job["completed_at"] + EXPIRY_SECONDS
            if job["reject"] == "output":
                job["status"] = "failed"
                job["error"] = {
                    "code": "moderation_blocked",
                    "message": "The generated video was blocked by our moderation system.",
                }
            else:
                job["status"] = "completed"
            with self.lock:
                self.charges[job["id"]] = round(job["price"] * int(job["seconds"]), 4)
        elif fraction >= 0.3:
            job["status"], job["progress"] = "in_progress", int(fraction * 100)

    @staticmethod
    def _video(job: dict[str, Any]) -> dict[str, Any]:
        return {
            key: job[key]
            for key in (
                "id",
                "object",
                "model",
                "status",
                "progress",
                "created_at",
                "completed_at",
                "expires_at",
                "prompt",
                "size",
                "seconds",
                "remixed_from_video_id",
                "error",
            )
        }

    # -- create ------------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        self.count("create_requests")  # every POST, refused or not: proves what a client re-sent
        try:
            self._authorize(request)
            fault = self.faults.take("create") or Fault()
            if fault.status and not fault.after_create:
                return self._fault_response(fault)
            fields, image = await self._create_fields(request)
            job = self._new_job(fields, fault)
            if image is not None:
                self.count("uploads")
        except Refusal as refusal:
            return refusal.response
        if fault and fault.answer_delay_seconds:
            await asyncio.sleep(fault.answer_delay_seconds)  # the job exists; its answer is late
        if fault.status and fault.after_create:
            return self._fault_response(fault)  # the job exists (and will bill): an ambiguous failure
        return JSONResponse(self._video(job))

    async def _create_fields(self, request: Request) -> tuple[dict[str, Any], bytes | None]:
        content_type = request.headers.get("content-type", "")
        body = await request.body()
        image: bytes | None = None
        if content_type.startswith("application/json"):
            try:
                fields = json.loads(body)
            except ValueError:
                raise refuse(
                    400,
                    "We could not parse the JSON body of your request. (HINT: This likely means "
                    "you aren't using your HTTP library correctly.)",
                ) from None
            if not isinstance(fields, dict):
                raise refuse(400, "Invalid type for request body: expected an object.", code="invalid_type")
        elif content_type.startswith("multipart/form-data"):
            fields, image = self._parse_multipart(content_type, body)
        else:
            raise refuse(
                400, f"Unsupported content type: '{content_type}'. Send application/json or multipart/form-data."
            )
        unknown = sorted(set(fields) - CREATE_FIELDS)
        if unknown:
            raise refuse(400, f"Unknown parameter: '{unknown[0]}'.", param=unknown[0], code="unknown_parameter")
        prompt = fields.get("prompt")
        if prompt is None:
            raise refuse(
                400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter"
            )
        if not isinstance(prompt, str) or not 1 <= len(prompt) <= 32000:
            raise refuse(
                400,
                "Invalid 'prompt': expected a string of 1 to 32000 characters.",
                param="prompt",
                code="invalid_value",
            )
        model = fields.setdefault("model", "sora-2")
        if not isinstance(model, str):
            raise refuse(400, "Invalid type for 'model': expected a string.", param="model", code="invalid_type")
        if model in self.retired_models:
            raise refuse(
                404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
            )
        if model not in MODELS:
            raise refuse(
                400,
                f"Invalid value: '{model}'. Supported values are: " + ", ".join(f"'{m}'" for m in MODELS) + ".",
                param="model",
                code="invalid_value",
            )
        seconds = fields.setdefault("seconds", "4")
        if not isinstance(seconds, str):
            kind = "an integer" if isinstance(seconds, int) and not isinstance(seconds, bool) else "another type"
            raise refuse(
                400,
                f"Invalid type for 'seconds': expected one of '4', '8', or '12', but got {kind} instead.",
                param="seconds",
                code="invalid_type",
            )
        if seconds not in SECONDS:
            raise refuse(
                400,
                f"Invalid value: '{seconds}'. Supported values are: '4', '8', and '12'.",
                param="seconds",
                code="invalid_value",
            )
        size = fields.setdefault("size", "720x1280")
        if size not in MODELS[model]:
            raise refuse(
                400,
                f"Invalid value: '{size}'. Supported values for {model} are: "
                + ", ".join(f"'{s}'" for s in MODELS[model])
                + ".",
                param="size",
                code="invalid_value",
            )
        reference = fields.get("input_reference")
        if content_type.startswith("application/json") and reference is not None:
            image = self._json_reference(reference)
        elif reference is not None and image is None:
            # The most reported mistake: a URL string in a form field where a file upload belongs.
            raise refuse(
                400,
                "Invalid type for 'input_reference': expected a file, but got a string instead.",
                param="input_reference",
                code="invalid_type",
            )
        if image is not None:
            self._check_image(image, size)
        return fields, image

    def _parse_multipart(self, content_type: str, body: bytes) -> tuple[dict[str, Any], bytes | None]:
        message = BytesParser(policy=policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        if not message.is_multipart():
            raise refuse(400, "Could not parse multipart form data.")
        fields: dict[str, Any] = {}
        image = None
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if name == "input_reference" and part.get_filename():
                if part.get_content_type() not in IMAGE_TYPES:
                    raise refuse(
                        400,
                        f"Invalid file format for 'input_reference': '{part.get_content_type()}'. "
                        "Supported formats are: 'image/jpeg', 'image/png', and 'image/webp'.",
                        param="input_reference",
                        code="invalid_value",
                    )
                fields[name], image = part.get_filename(), payload
            elif name:
                fields[name] = payload.decode("utf-8", errors="replace")
        return fields, image

    @staticmethod
    def _json_reference(reference: Any) -> bytes | None:
        if not isinstance(reference, dict) or len(reference) != 1 or not ({"image_url", "file_id"} >= set(reference)):
            raise refuse(
                400,
                "Invalid 'input_reference': expected an object with exactly one of 'image_url' or 'file_id'.",
                param="input_reference",
                code="invalid_type",
            )
        url = reference.get("image_url")
        if url is None:
            return None  # a file_id: the emulator has no Files API to resolve it against
        if not isinstance(url, str) or not url.startswith(("https://", "http://", "data:image/")):
            raise refuse(
                400,
                "Invalid 'input_reference.image_url': expected an http(s) URL or a base64 data URL.",
                param="input_reference.image_url",
                code="invalid_value",
            )
        if url.startswith("data:image/"):
            try:
                return base64.b64decode(url.split(",", 1)[1], validate=True)
            except (IndexError, binascii.Error):
                raise refuse(
                    400,
                    "Invalid base64 image data in 'input_reference.image_url'.",
                    param="input_reference.image_url",
                    code="invalid_value",
                ) from None
        return None  # no network on loopback: remote URLs are taken on trust

    @staticmethod
    def _check_image(data: bytes, size: str) -> None:
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except (UnidentifiedImageError, OSError):
            raise refuse(
                400,
                "Invalid image in 'input_reference': the file could not be decoded.",
                param="input_reference",
                code="invalid_image",
            ) from None
        if f"{width}x{height}" != size:
            # OpenAI's documented rule: the reference image must match the target size.
            raise refuse(400, "Inpaint image must match the requested width and height", param="input_reference")

    def _new_job(self, fields: dict[str, Any], fault: Fault) -> dict[str, Any]:
        created = int(time.time())
        family = "sora-2-pro" if fields["model"].startswith("sora-2-pro") else "sora-2"
        job: dict[str, Any] = {
            "id": f"video_{uuid.uuid4().hex}",
            "object": "video",
            "model": fields["model"],
            "status": "queued",
            "progress": 0,
            "created_at": created,
            "completed_at": None,
            "expires_at": None,
            "prompt": fields["prompt"],
            "size": fields["size"],
            "seconds": fields["seconds"],
            "remixed_from_video_id": None,
            "error": None,
            "created": self.clock(),
            "reject": fault.reject,
            "price": PRICES[(family, "1024" if "1024" in fields["size"] else "720")],
        }
        if fault.reject in ("prompt", "image"):
            # Blocked at request time: nothing generated, nothing billed.
            what = "prompt" if fault.reject == "prompt" else "input image"
            job["status"] = "failed"
            job["error"] = {"code": "sentinel_block", "message": f"Your {what} was blocked by our safety system."}
        elif fault.fail_on_create:
            job["status"] = "failed"
            job["error"] = {"code": "video_generation_failed", "message": "Video generation failed."}
        with self.lock:
            self.jobs[job["id"]] = job
            self.counters["jobs_created"] += 1
        return job

    # -- read, list, delete, download --------------------------------------------------------

    async def _retrieve(self, request: Request) -> Response:
        try:
            self._authorize(request)
            self.count("polls")
            fault = self.faults.take("poll")
            if fault and fault.status:
                return self._fault_response(fault)
            job = self._job(request.path_params["video_id"])
        except Refusal as refusal:
            return refusal.response
        self._advance(job)
        return JSONResponse(self._video(job), headers={"openai-poll-after-ms": str(self.poll_after_ms)})

    async def _list(self, request: Request) -> Response:
        try:
            self._authorize(request)
            self.count("lists")
            params = request.query_params
            try:
                limit = int(params.get("limit", "20"))
            except ValueError:
                raise refuse(
                    400, "Invalid type for 'limit': expected an integer.", param="limit", code="invalid_type"
                ) from None
            if not 0 <= limit <= 100:
                raise refuse(
                    400, "Invalid 'limit': expected a value from 0 to 100.", param="limit", code="integer_out_of_range"
                )
            order = params.get("order", "desc")
            if order not in ("asc", "desc"):
                raise refuse(
                    400,
                    f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
                    param="order",
                    code="invalid_value",
                )
        except Refusal as refusal:
            return refusal.response
        jobs = sorted(self.jobs.values(), key=lambda job: job["created"], reverse=order == "desc")
        after = params.get("after")
        if after:
            ids = [job["id"] for job in jobs]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        for job in jobs:
            self._advance(job)
        page = [self._video(job) for job in jobs[:limit]]
        return JSONResponse(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(jobs) > limit,
            }
        )

    async def _delete(self, request: Request) -> Response:
        try:
            self._authorize(request)
            job = self._job(request.path_params["video_id"])
            self._advance(job)
            if job["status"] not in ("completed", "failed"):
                raise refuse(
                    400,
                    f"Video '{job['id']}' cannot be deleted while it is {job['status']}; only "
                    "completed or failed videos can be deleted.",
                    param="video_id",
                )
        except Refusal as refusal:
            return refusal.response
        with self.lock:
            self.jobs.pop(job["id"], None)
            self.counters["deletes"] += 1
        return JSONResponse({"id": job["id"], "object": "video.deleted", "deleted": True})

    async def _content(self, request: Request) -> Response:
        try:
            self._authorize(request)
            self.count("downloads")
            fault = self.faults.take("download") or Fault()
            if fault.status:
                return self._fault_response(fault)
            job = self._job(request.path_params["video_id"])
            self._advance(job)
            variant = request.query_params.get("variant", "video")
            if variant not in ("video", "thumbnail", "spritesheet"):
                raise refuse(
                    400,
                    f"Invalid value: '{variant}'. Supported values are: 'video', 'thumbnail', and 'spritesheet'.",
                    param="variant",
                    code="invalid_value",
                )
            if job["status"] != "completed":
                raise refuse(
                    404,
                    f"Video '{job['id']}' is {job['status']}: content is only available for completed videos.",
                    param="video_id",
                )
        except Refusal as refusal:
            return refusal.response
        width, height = (int(n) for n in job["size"].split("x"))
        data = video_bytes(width, height, int(job["seconds"]))
        if variant != "video":
            image_format, media_type = ("WEBP", "image/webp") if variant == "thumbnail" else ("JPEG", "image/jpeg")
            return Response(first_frame_image(io.BytesIO(data), image_format=image_format), media_type=media_type)
        return video_download(self, request, data, fault)
