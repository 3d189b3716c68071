"""A strict emulator of Replicate's predictions API (api.replicate.com/v1) for tests and dry runs.

It answers as shared/provider-apis.md sections 4 and 6 document, and refuses what Replicate refuses:
a missing or wrong ``Authorization: Bearer`` token (401), a model it does not serve (404), a body
or an input with unknown names, wrong types or values outside the model's own table (422 problem
details ``{title, detail, status, invalid_fields: [{type, field, description}]}``; tables in
:data:`MODELS`, written by hand, not read from the catalog). Predictions walk ``starting`` ->
``processing`` -> ``succeeded`` | ``failed``; ``GET /predictions`` lists them newest first in pages
(``{results, next}``). A request carrying ``Prefer: wait`` is counted (``prefer_wait``): the
adapter must not hold video jobs open. Videos are real MP4s of the model's size and duration on a
``/cdn/`` path that refuses requests carrying the token and deletes them one hour after the
prediction completed, on the emulator's injectable clock.

Charges: Replicate reports run time, not a price; the emulator bills each prediction its model's
USD per second of video at creation, and bills no prediction that failed or was blocked.

Example:
    ```python
    from prefect_videogen.providers.replicate import ReplicateVideoProvider
    from prefect_videogen.testing.replicate_emulator import EMULATOR_API_TOKEN, ReplicateEmulator
    from prefect_videogen.testing.server import EmulatorServer

    with EmulatorServer(ReplicateEmulator()) as server:
        client = ReplicateVideoProvider(EMULATOR_API_TOKEN, base_url=server.base_url + "/v1")
    ```
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from prefect_videogen.testing.host_models import HostModel, Input, sizes
from prefect_videogen.testing.server import EmulatorState, Fault, video_bytes, video_download

EMULATOR_API_TOKEN = "r8_emulator_token_0123456789abcdef"
OUTPUT_LIFETIME_SECONDS = 3600  # "API inputs and outputs deleted after 1 h"
BODY_FIELDS = ("input", "webhook", "webhook_events_filter", "version")
DEFAULT_PAGE_SIZE = 100

_TEXT = Input("string")
_IMAGE = Input("image")
_SEEDANCE_ASPECTS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")

#: ``owner/name`` -> the model's inputs and output, as Replicate serves it.
MODELS: dict[str, HostModel] = {
    "google/veo-3": HostModel(
        inputs={
            "prompt": _TEXT,
            "duration": Input("integer", (8,)),
            "aspect_ratio": Input("string", ("16:9", "9:16")),
            "resolution": Input("string", ("720p", "1080p")),
            "image": _IMAGE,
            "negative_prompt": _TEXT,
            "seed": Input("integer"),
        },
        sizes=sizes({"720p": ("16:9", "9:16"), "1080p": ("16:9", "9:16")}),
        usd_per_second={"720p": 0.4, "1080p": 0.4},
        duration=("duration", 8),
        aspect=("aspect_ratio", "16:9"),
        resolution=("resolution", "720p"),
    ),
    "bytedance/seedance-1-pro": HostModel(
        inputs={
            "prompt": _TEXT,
            "duration": Input("integer", (5, 10)),
            "aspect_ratio": Input("string", _SEEDANCE_ASPECTS),
            "resolution": Input("string", ("480p", "720p", "1080p")),
            "image": _IMAGE,
            "seed": Input("integer"),
            "camera_fixed": Input("boolean"),
            "fps": Input("integer", (24,)),
        },
        sizes=sizes({tier: _SEEDANCE_ASPECTS for tier in ("480p", "720p", "1080p")}),
        usd_per_second={"480p": 0.03, "720p": 0.06, "1080p": 0.15},
        duration=("duration", 5),
        aspect=("aspect_ratio", "16:9"),
        resolution=("resolution", "1080p"),
    ),
    "openai/sora-2": HostModel(
        inputs={
            "prompt": _TEXT,
            "seconds": Input("integer", (4, 8, 12)),
            "aspect_ratio": Input("string", ("portrait", "landscape")),
            "input_reference": _IMAGE,
        },
        sizes={"standard": {"16:9": (1280, 720), "9:16": (720, 1280)}},
        usd_per_second={"standard": 0.1},
        duration=("seconds", 4),
        aspect=("aspect_ratio", "portrait"),
        aspect_names={"portrait": "9:16", "landscape": "16:9"},
    ),
}
# OpenAI shut Sora down on 2026-09-24, and Replicate's openai/sora-2 with it: answered 404 by default.
RETIRED_MODELS = frozenset({"openai/sora-2"})

_FLAGGED = {
    "prompt": "NSFW content detected in the prompt. Please try again with a different prompt.",
    "image": "NSFW content detected in the input image.",
    "output": "The input or output was flagged as sensitive. Please try again with different inputs. (E005)",
}
GENERATION_ERROR = "Prediction failed: the model raised an error while generating the video"
_DEFAULT_FAULT_DETAIL = {
    429: ("Request was throttled.", "Request was throttled. Your rate limit resets in ~1s."),
    500: ("Internal Server Error", "Something went wrong."),
    502: ("Bad Gateway", "Bad gateway."),
    503: ("Service Unavailable", "The service is temporarily unavailable."),
}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"title": title, "detail": detail, "status": status, **extra}, status_code=status)


class ReplicateEmulator(EmulatorState):
    """Replicate's predictions API on loopback (mount it at ``/v1`` of the base URL).

    Args:
        api_token: the one token it accepts.
        retired_models: ``owner/name`` answered 404 (default: openai/sora-2).
        models: extra or replacement model tables (:class:`HostModel`), merged over :data:`MODELS`.
        page_size: predictions per listing page.

    Attributes:
        charges: USD billed per prediction id (0 for a failed or blocked one).
        counters: jobs_created, create_requests, polls, listings, downloads, cancels, prefer_wait,
            auth_failures, rejected_requests, cdn_key_rejections.
    """

    provider = "replicate"

    def __init__(
        self,
        *,
        api_token: str = EMULATOR_API_TOKEN,
        retired_models: tuple[str, ...] | set[str] | frozenset[str] = RETIRED_MODELS,
        models: dict[str, HostModel] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api_token = api_token
        self.models = {**MODELS, **(models or {})}
        self._initial_retired = set(retired_models)
        self.retired_models = set(retired_models)
        self.page_size = page_size
        self.charges: dict[str, float] = {}
        self._app = Starlette(
            routes=[
                Route("/v1/models/{owner}/{name}/predictions", self._create, methods=["POST"]),
                Route("/v1/predictions", self._list, methods=["GET"]),
                Route("/v1/predictions/{prediction_id}", self._get, methods=["GET"]),
                Route("/v1/predictions/{prediction_id}/cancel", self._cancel, methods=["POST"]),
                Route("/cdn/{prediction_id}/output.mp4", self._download, methods=["GET"]),
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
        if request.headers.get("authorization") == f"Bearer {self.api_token}":
            return None
        self.count("auth_failures")
        return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")

    @staticmethod
    def _fault_response(fault: Fault) -> Response:
        status = fault.status or 500
        headers = dict(fault.headers)
        if isinstance(fault.body, str):
            return PlainTextResponse(fault.body, status_code=status, headers=headers)
        if fault.body is not None:
            return JSONResponse(fault.body, status_code=status, headers=headers)
        title, detail = _DEFAULT_FAULT_DETAIL.get(status, ("Error", "Error"))
        return JSONResponse({"title": title, "detail": detail, "status": status}, status_code=status, headers=headers)

    def _completed_at(self, job: dict[str, Any]) -> float:
        return job["created"] + self.latency_seconds

    def _view(self, job: dict[str, Any]) -> dict[str, Any]:
        fraction = self.elapsed_fraction(job)
        output, error, completed, metrics = None, None, None, {}
        if job["canceled"]:
            status = "canceled"
        elif job["fail"] in ("prompt", "image"):  # refused by the safety check before running
            status, error = "failed", _FLAGGED[job["fail"]]
        elif fraction < 0.3:
            status = "starting"
        elif fraction < 1.0:
            status = "processing"
        elif job["fail"] == "output":
            status, error = "failed", _FLAGGED["output"]
        elif job["fail"] == "create":
            status, error = "failed", GENERATION_ERROR
        else:
            status = "succeeded"
            output = f"{job['base']}/cdn/{job['id']}/output.mp4"
            metrics = {"predict_time": round(self.latency_seconds * 0.7, 3)}
        if status in ("succeeded", "failed", "canceled"):
            completed = _iso(job["created_at"] + timedelta(seconds=self.latency_seconds))
        api = f"{job['base']}/v1/predictions/{job['id']}"
        return {
            "id": job["id"],
            "model": job["model"],
            "version": "hidden",
            "input": job["input"],
            "logs": "",
            "output": output,
            "data_removed": False,
            "error": error,
            "status": status,
            "created_at": _iso(job["created_at"]),
            "started_at": None if status == "starting" else _iso(job["created_at"]),
            "completed_at": completed,
            "urls": {"get": api, "cancel": f"{api}/cancel", "web": f"https://replicate.com/p/{job['id']}"},
            "metrics": metrics,
        }

    def _validate(self, body: Any, spec: HostModel) -> list[dict[str, str]]:
        if not isinstance(body, dict):
            return [{"type": "invalid_type", "field": "(root)", "description": "Invalid type. Expected: object"}]
        invalid = [
            {
                "type": "additional_property_not_allowed",
                "field": "(root)",
                "description": f"Additional property {name} is not allowed",
            }
            for name in body
            if name not in BODY_FIELDS
        ]
        params = body.get("input")
        if not isinstance(params, dict):
            return [*invalid, {"type": "required", "field": "input", "description": "input is required"}]
        for name, message, kind in spec.problems(params):
            if kind == "extra_forbidden":
                invalid.append(
                    {
                        "type": "additional_property_not_allowed",
                        "field": "input",
                        "description": f"Additional property {name} is not allowed",
                    }
                )
            elif kind == "missing":
                invalid.append({"type": "required", "field": "input", "description": f"{name} is required"})
            else:
                invalid.append({"type": kind, "field": f"input.{name}", "description": message})
        return invalid

    # -- endpoints ---------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        self.count("create_requests")
        if "prefer" in request.headers:
            self.count("prefer_wait")
        fault = self.faults.take("create") or Fault()
        if fault.status and not fault.after_create:
            return self._fault_response(fault)
        model = f"{request.path_params['owner']}/{request.path_params['name']}"
        spec = self.models.get(model)
        if spec is None or model in self.retired_models:
            self.count("rejected_requests")
            return _problem(404, "Not found", "The requested resource could not be found.")
        try:
            body = json.loads(await request.body())
        except ValueError:
            self.count("rejected_requests")
            return _problem(400, "Invalid JSON", "The request body is not valid JSON.")
        if invalid := self._validate(body, spec):
            self.count("rejected_requests")
            detail = "\n".join(f"- {item['field']}: {item['description']}" for item in invalid)
            return _problem(422, "Input validation failed", detail, invalid_fields=invalid)
        width, height, seconds, tier = spec.render(body["input"])
        fail = "create" if fault.fail_on_create else fault.reject
        job_id = uuid.uuid4().hex[:26]
        with self.lock:
            self.charges[job_id] = 0.0 if fail else spec.price(seconds, tier)
            self.jobs[job_id] = {
                "id": job_id,
                "model": model,
                "input": body["input"],
                "fail": fail,
                "canceled": False,
                "created": self.clock(),
                "created_at": datetime.now(timezone.utc),
                "width": width,
                "height": height,
                "duration": seconds,
                "base": str(request.base_url).rstrip("/"),
            }
            self.counters["jobs_created"] += 1
            view = self._view(self.jobs[job_id])
        if fault.answer_delay_seconds:
            await asyncio.sleep(fault.answer_delay_seconds)  # the prediction exists; its answer is late
        if fault.status:  # after_create: created, and the answer says otherwise (ambiguous)
            return self._fault_response(fault)
        return JSONResponse(view, status_code=201)

    async def _get(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        self.count("polls")
        if (fault := self.faults.take("poll")) and fault.status:
            return self._fault_response(fault)
        job = self.jobs.get(request.path_params["prediction_id"])
        if job is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        return JSONResponse(self._view(job))

    async def _list(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        self.count("listings")
        if (fault := self.faults.take("list")) and fault.status:
            return self._fault_response(fault)
        cursor = request.query_params.get("cursor", "0")
        if not cursor.isdigit():
            return _problem(400, "Invalid cursor", "The cursor is not valid.")
        jobs = sorted(self.jobs.values(), key=lambda j: j["created"], reverse=True)
        start = int(cursor)
        page = [self._view(job) for job in jobs[start : start + self.page_size]]
        more = start + self.page_size < len(jobs)
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "previous": None if start == 0 else f"{base}/v1/predictions?cursor={max(start - self.page_size, 0)}",
                "next": f"{base}/v1/predictions?cursor={start + self.page_size}" if more else None,
                "results": page,
            }
        )

    async def _cancel(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        self.count("cancels")
        job = self.jobs.get(request.path_params["prediction_id"])
        if job is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        with self.lock:
            if self._view(job)["status"] in ("starting", "processing"):
                job["canceled"] = True
                self.charges[job["id"]] = 0.0
        return JSONResponse(self._view(job))

    async def _download(self, request: Request) -> Response:
        # The delivery CDN is not the API: a request carrying the token proves a client leaks it.
        if "authorization" in request.headers:
            self.count("cdn_key_rejections")
            return PlainTextResponse("Forbidden: credentials must not be sent to the CDN", status_code=403)
        self.count("downloads")
        job = self.jobs.get(request.path_params["prediction_id"])
        if job is None or self._view(job)["status"] != "succeeded":
            return PlainTextResponse("Not Found", status_code=404)
        if self.clock() - self._completed_at(job) > OUTPUT_LIFETIME_SECONDS:
            return PlainTextResponse("Not Found", status_code=404)  # outputs are deleted after one hour
        fault = self.faults.take("download")
        if fault and fault.status:
            return self._fault_response(fault)
        data = video_bytes(job["width"], job["height"], job["duration"])
        return video_download(self, request, data, fault)  # type: ignore[no-any-return]
