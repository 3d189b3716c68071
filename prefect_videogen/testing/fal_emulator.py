"""A strict emulator of fal's queue (queue.fal.run) for tests and credit-free dry runs.

It answers as shared/provider-apis.md sections 4 and 6 document, and refuses what fal refuses: a
missing or wrong ``Authorization: Key`` (401 ``{"detail"}``), an endpoint it does not serve (404),
an input with unknown names, wrong types or values outside the model's own table (422
``{"detail": [{loc, msg, type}]}``; tables in :data:`MODELS`, written by hand, not read from the
catalog). Submits answer ``{request_id, status_url, response_url, cancel_url}``; the status walks
IN_QUEUE (with ``queue_position``) -> IN_PROGRESS -> COMPLETED; the result is ``{"video": {url, ...}}``
or, for a failed request, the model's error (a moderation block: 422 ``content_policy_violation``
with ``loc`` naming the flagged input; a generation failure: 500). Videos are real MP4s of the
model's size and duration on a ``/cdn/`` path that refuses requests carrying the key, and expire
after the media retention the submit asked for (``X-Fal-Object-Lifecycle-Preference``), on the
emulator's injectable clock.

Charges: fal documents no cost on the request; the emulator bills each request its model's USD per
second at creation and bills no request that failed or was blocked (fal does not document whether
blocked requests are billed).

Example:
    ```python
    from prefect_videogen.providers.fal import FalVideoProvider
    from prefect_videogen.testing.fal_emulator import EMULATOR_API_KEY, FalEmulator
    from prefect_videogen.testing.server import EmulatorServer

    with EmulatorServer(FalEmulator()) as server:
        client = FalVideoProvider(EMULATOR_API_KEY, base_url=server.base_url)
    ```
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from prefect_videogen.testing.host_models import HostModel, Input, sizes
from prefect_videogen.testing.server import EmulatorState, Fault, video_bytes, video_download

EMULATOR_API_KEY = "fal_emulator_key_id:fal_emulator_key_secret_0123"
# fal's default media retention is not documented; the emulator keeps media a week unless asked.
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600
LIFECYCLE_HEADER = "x-fal-object-lifecycle-preference"

_TEXT = Input("string")
_SORA_INPUTS = {
    "prompt": _TEXT,
    "duration": Input("integer", (4, 8, 12, 16, 20)),
    "aspect_ratio": Input("string", ("16:9", "9:16")),
}
_VEO_INPUTS = {
    "prompt": _TEXT,
    "duration": Input("string", ("8s",)),
    "aspect_ratio": Input("string", ("16:9", "9:16")),
    "resolution": Input("string", ("720p", "1080p")),
    "generate_audio": Input("boolean"),
}
_SEEDANCE_ASPECTS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")

#: Endpoint id -> the model's inputs and output, as fal serves it.
MODELS: dict[str, HostModel] = {
    "fal-ai/veo3": HostModel(
        inputs={**_VEO_INPUTS, "negative_prompt": _TEXT, "seed": Input("integer"), "enhance_prompt": Input("boolean")},
        sizes=sizes({"720p": ("16:9", "9:16"), "1080p": ("16:9", "9:16")}),
        usd_per_second={"720p": 0.4, "1080p": 0.4},
        duration=("duration", "8s"),
        aspect=("aspect_ratio", "16:9"),
        resolution=("resolution", "720p"),
    ),
    "fal-ai/veo3/image-to-video": HostModel(
        inputs={**_VEO_INPUTS, "image_url": Input("image")},
        required=("prompt", "image_url"),
        sizes=sizes({"720p": ("16:9", "9:16"), "1080p": ("16:9", "9:16")}),
        usd_per_second={"720p": 0.4, "1080p": 0.4},
        duration=("duration", "8s"),
        aspect=("aspect_ratio", "16:9"),
        resolution=("resolution", "720p"),
    ),
    "fal-ai/kling-video/v2.1/master/text-to-video": HostModel(
        inputs={
            "prompt": _TEXT,
            "duration": Input("string", ("5", "10")),
            "aspect_ratio": Input("string", ("16:9", "9:16", "1:1")),
            "negative_prompt": _TEXT,
            "cfg_scale": Input("number", minimum=0, maximum=1),
        },
        sizes=sizes({"1080p": ("16:9", "9:16", "1:1")}),
        usd_per_second={"1080p": 0.28},
        duration=("duration", "5"),
        aspect=("aspect_ratio", "16:9"),
        max_prompt_chars=2500,
    ),
    "fal-ai/bytedance/seedance/v1/pro/text-to-video": HostModel(
        inputs={
            "prompt": _TEXT,
            "duration": Input("string", ("5", "10")),
            "aspect_ratio": Input("string", _SEEDANCE_ASPECTS),
            "resolution": Input("string", ("480p", "720p", "1080p")),
            "seed": Input("integer"),
            "camera_fixed": Input("boolean"),
        },
        sizes=sizes({tier: _SEEDANCE_ASPECTS for tier in ("480p", "720p", "1080p")}),
        usd_per_second={"480p": 0.03, "720p": 0.06, "1080p": 0.124},
        duration=("duration", "5"),
        aspect=("aspect_ratio", "16:9"),
        resolution=("resolution", "1080p"),
    ),
    "fal-ai/sora-2/text-to-video": HostModel(
        inputs={**_SORA_INPUTS, "resolution": Input("string", ("720p",))},
        sizes=sizes({"720p": ("16:9", "9:16")}),
        usd_per_second={"720p": 0.1},
        duration=("duration", 4),
        aspect=("aspect_ratio", "16:9"),
        resolution=("resolution", "720p"),
    ),
    "fal-ai/sora-2/image-to-video": HostModel(
        inputs={**_SORA_INPUTS, "resolution": Input("string", ("720p",)), "image_url": Input("image")},
        required=("prompt", "image_url"),
        sizes=sizes({"720p": ("16:9", "9:16")}),
        usd_per_second={"720p": 0.1},
        duration=("duration", 4),
        aspect=("aspect_ratio", "16:9"),
        resolution=("resolution", "720p"),
    ),
    "fal-ai/sora-2/text-to-video/pro": HostModel(
        inputs={**_SORA_INPUTS, "resolution": Input("string", ("720p", "1080p"))},
        sizes=sizes({"720p": ("16:9", "9:16"), "1080p": ("16:9", "9:16")}),
        usd_per_second={"720p": 0.3, "1080p": 0.5},
        duration=("duration", 4),
        aspect=("aspect_ratio", "16:9"),
        resolution=("resolution", "720p"),
    ),
}
# OpenAI shut Sora down on 2026-09-24 and fal's Sora endpoints with it: answered 404 by default.
RETIRED_MODELS = frozenset(
    {"fal-ai/sora-2/text-to-video", "fal-ai/sora-2/image-to-video", "fal-ai/sora-2/text-to-video/pro"}
)

_FLAGGED_AT = {"prompt": ["body", "prompt"], "image": ["body", "image_url"], "output": []}
CONTENT_POLICY_MESSAGE = (
    "The content could not be processed because it contained material flagged by a content checker."
)
_DEFAULT_FAULT_DETAIL = {
    429: "Rate limit exceeded",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class FalEmulator(EmulatorState):
    """fal's queue on loopback.

    Args:
        api_key: the one key it accepts.
        retired_models: endpoint ids answered 404 (default: the Sora endpoints).
        models: extra or replacement endpoint tables (:class:`HostModel`), merged over :data:`MODELS`.

    Attributes:
        charges: USD billed per request id (0 for a failed or blocked request).
        counters: jobs_created, create_requests, polls, results, downloads, cancels, auth_failures,
            rejected_requests, cdn_key_rejections.
    """

    provider = "fal"

    def __init__(
        self,
        *,
        api_key: str = EMULATOR_API_KEY,
        retired_models: tuple[str, ...] | set[str] | frozenset[str] = RETIRED_MODELS,
        models: dict[str, HostModel] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self.models = {**MODELS, **(models or {})}
        self._initial_retired = set(retired_models)
        self.retired_models = set(retired_models)
        self.charges: dict[str, float] = {}
        self._app = Starlette(
            routes=[
                Route("/cdn/{name}", self._download, methods=["GET"]),
                Route("/{model_id:path}/requests/{request_id}/status", self._status, methods=["GET"]),
                Route("/{model_id:path}/requests/{request_id}/cancel", self._cancel, methods=["PUT"]),
                Route("/{model_id:path}/requests/{request_id}", self._result, methods=["GET"]),
                Route("/{model_id:path}", self._submit, methods=["POST"]),
            ]
        )

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.charges.clear()
            self.retired_models = set(self._initial_retired)

    @property
    def app(self) -> Any:
        return self._app

    # -- helpers ---------------------------------------------------------------------------

    def _auth_error(self, request: Request) -> Response | None:
        header = request.headers.get("authorization")
        if header == f"Key {self.api_key}":
            return None
        self.count("auth_failures")
        message = "Missing authorization header" if header is None else "Invalid Key authorization header"
        return JSONResponse({"detail": message}, status_code=401)

    @staticmethod
    def _fault_response(fault: Fault) -> Response:
        status = fault.status or 500
        headers = dict(fault.headers)
        if isinstance(fault.body, str):
            return PlainTextResponse(fault.body, status_code=status, headers=headers)
        body = fault.body if fault.body is not None else {"detail": _DEFAULT_FAULT_DETAIL.get(status, "Error")}
        return JSONResponse(body, status_code=status, headers=headers)

    def _phase(self, job: dict[str, Any]) -> str:
        if job["canceled"]:
            return "COMPLETED"
        fraction = self.elapsed_fraction(job)
        if fraction < 0.3:
            return "IN_QUEUE"
        return "IN_PROGRESS" if fraction < 1.0 else "COMPLETED"

    def _job(self, request: Request) -> dict[str, Any] | None:
        job = self.jobs.get(request.path_params["request_id"])
        if job is None or job["model"] != request.path_params["model_id"]:
            return None
        return job

    def _urls(self, job: dict[str, Any]) -> dict[str, str]:
        root = f"{job['base']}/{job['model']}/requests/{job['id']}"
        return {"status_url": f"{root}/status", "response_url": root, "cancel_url": f"{root}/cancel"}

    # -- endpoints ---------------------------------------------------------------------------

    async def _submit(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        self.count("create_requests")
        fault = self.faults.take("create") or Fault()
        if fault.status and not fault.after_create:
            return self._fault_response(fault)
        model_id = request.path_params["model_id"]
        spec = self.models.get(model_id)
        if spec is None or model_id in self.retired_models:
            self.count("rejected_requests")
            return JSONResponse({"detail": f"Application '{model_id}' not found"}, status_code=404)
        try:
            params = json.loads(await request.body())
        except ValueError:
            self.count("rejected_requests")
            return JSONResponse({"detail": [{"loc": ["body"], "msg": "Invalid JSON", "type": "json_invalid"}]}, 422)
        if not isinstance(params, dict):
            self.count("rejected_requests")
            return JSONResponse(
                {"detail": [{"loc": ["body"], "msg": "Input should be an object", "type": "dict_type"}]}, 422
            )
        problems = spec.problems(params)
        retention = DEFAULT_RETENTION_SECONDS
        lifecycle = request.headers.get(LIFECYCLE_HEADER)
        if lifecycle is not None:
            try:
                retention = int(json.loads(lifecycle)["expiration_duration_seconds"])
            except (ValueError, KeyError, TypeError):
                problems.append(("header", f"Invalid {LIFECYCLE_HEADER}", "value_error"))
        if problems:
            self.count("rejected_requests")
            detail = [{"loc": ["body", name], "msg": msg, "type": kind} for name, msg, kind in problems]
            return JSONResponse({"detail": detail}, status_code=422)
        width, height, seconds, tier = spec.render(params)
        fail = "create" if fault.fail_on_create else fault.reject
        job_id = str(uuid.uuid4())
        with self.lock:
            self.charges[job_id] = 0.0 if fail else spec.price(seconds, tier)
            self.jobs[job_id] = {
                "id": job_id,
                "model": model_id,
                "input": params,
                "fail": fail,
                "canceled": False,
                "created": self.clock(),
                "retention": retention,
                "width": width,
                "height": height,
                "duration": seconds,
                "base": str(request.base_url).rstrip("/"),
            }
            self.counters["jobs_created"] += 1
        job = self.jobs[job_id]
        if fault.answer_delay_seconds:
            await asyncio.sleep(fault.answer_delay_seconds)  # the request is queued; its answer is late
        if fault.status:  # after_create: queued, and the answer says otherwise (ambiguous)
            return self._fault_response(fault)
        return JSONResponse({"request_id": job_id, "status": "IN_QUEUE", **self._urls(job)})

    async def _status(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        self.count("polls")
        if (fault := self.faults.take("poll")) and fault.status:
            return self._fault_response(fault)
        job = self._job(request)
        if job is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        phase = self._phase(job)
        body: dict[str, Any] = {
            "status": phase,
            "request_id": job["id"],
            "response_url": self._urls(job)["response_url"],
        }
        if phase == "IN_QUEUE":
            body["queue_position"] = 0
        if request.query_params.get("logs") == "1":
            body["logs"] = []
        return JSONResponse(body)

    async def _result(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        self.count("results")
        if (fault := self.faults.take("result")) and fault.status:
            return self._fault_response(fault)
        job = self._job(request)
        if job is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        if self._phase(job) != "COMPLETED":
            return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
        if job["canceled"]:
            return JSONResponse({"detail": "Request was cancelled"}, status_code=400)
        if job["fail"] == "create":
            return JSONResponse({"detail": "Internal error while generating the video"}, status_code=500)
        if job["fail"] in _FLAGGED_AT:
            detail = [
                {"loc": _FLAGGED_AT[job["fail"]], "msg": CONTENT_POLICY_MESSAGE, "type": "content_policy_violation"}
            ]
            return JSONResponse({"detail": detail}, status_code=422)
        return JSONResponse(
            {
                "video": {
                    "url": f"{job['base']}/cdn/{job['id']}.mp4",
                    "content_type": "video/mp4",
                    "file_name": "output.mp4",
                    "file_size": len(video_bytes(job["width"], job["height"], job["duration"])),
                }
            }
        )

    async def _cancel(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        self.count("cancels")
        job = self._job(request)
        if job is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        if self._phase(job) != "IN_QUEUE":
            return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
        with self.lock:
            job["canceled"] = True
            self.charges[job["id"]] = 0.0
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)

    async def _download(self, request: Request) -> Response:
        # The CDN is not the API: a request carrying the key proves a client leaks it.
        if "authorization" in request.headers:
            self.count("cdn_key_rejections")
            return PlainTextResponse("Forbidden: credentials must not be sent to the CDN", status_code=403)
        self.count("downloads")
        job = self.jobs.get(request.path_params["name"].removesuffix(".mp4"))
        if job is None or job["fail"] or job["canceled"] or self._phase(job) != "COMPLETED":
            return PlainTextResponse("Not Found", status_code=404)
        if self.clock() - job["created"] - self.latency_seconds > job["retention"]:
            return PlainTextResponse("Not Found", status_code=404)  # the media's retention ran out
        fault = self.faults.take("download")
        if fault and fault.status:
            return self._fault_response(fault)
        data = video_bytes(job["width"], job["height"], job["duration"])
        return video_download(self, request, data, fault)  # type: ignore[no-any-return]
