"""A strict emulator of APIFrame v2 (api.apiframe.ai) for tests and credit-free dry runs.

It answers as shared/provider-apis.md section 3 documents, and refuses what the real API refuses:
a missing or wrong ``X-API-Key`` (401), a body with unknown fields, wrong JSON types or values
outside the allowed sets (400 ``{"error", "details": {path: [messages]}}``; the body schema is
``additionalProperties: false``), a model it does not serve (404 "Model not found"), too few
credits (402), an ``Idempotency-Key`` reused with another body (409). Every answer carries
``x-request-id``. Videos are real MP4s on a ``/cdn/`` path that refuses requests carrying the key.

Each model is checked against the emulator's own table (``model_tables.APIFRAME_MODELS``, written by hand,
not read from the catalog): its parameter object (``soraParams``, ``veoParams``, ``klingParams``...; any
other object is an unknown top-level key), the fields in it with their types and allowed values, the size
rendered per (tier, aspect ratio), the defaults when a field is not sent, and the credits billed
(``creditCost``). Every URL field (``start_image``, ``last_frame``, each element of a reference list)
must be http(s), and an emulator upload URL must name an existing upload. ``extra_models`` adds tables in
the same format, a mapping or a JSON file (the format is documented in ``model_tables``): a test can serve
a made-up model with its own parameter object.

Example:
    ```python
    from prefect_videogen.blocks.apiframe import APIFrameCredentials
    from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY, APIFrameEmulator
    from prefect_videogen.testing.server import EmulatorServer

    with EmulatorServer(APIFrameEmulator()) as server:
        creds = APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=server.base_url)
    ```
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from prefect_videogen.testing.clips import clip_bytes
from prefect_videogen.testing.model_tables import (
    APIFRAME_MODELS,
    FieldRule,
    Issue,
    ModelTable,
    load_tables,
    number_text,
    whole_credits,
)
from prefect_videogen.testing.server import EmulatorState, Fault, video_download

EMULATOR_API_KEY = "afk_emulator_0123456789abcdef"
WEBHOOK_EVENTS = ("progress", "completed", "failed")
# Beside the model's own parameter object (its table's params_object).
TOP_LEVEL_FIELDS = ("model", "prompt", "webhookUrl", "webhookEvents")
STATUSES = ("QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED")
MAX_PROMPT_CHARS = 4000
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
# Size overrides per (model, tier): the 16:9 frame (swapped for a portrait aspect) a model really
# delivers when it is not its table's, so a test can make the provider answer another size.
SIZES: dict[tuple[str, str], tuple[int, int]] = {}
CONTENT_POLICY_ERROR = "Provider returned an error: content policy violation"
GENERATION_ERROR = "Provider returned an error: generation failed"
_DEFAULT_FAULT_BODIES = {
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    """The JSON type name of a parsed value, as zod's messages say it ("received string")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _alternatives(values: list[Any]) -> str:
    return " | ".join(repr(v) if isinstance(v, str) else str(v) for v in values)


def _bounds(rule: FieldRule) -> str:
    if rule.min is not None and rule.max is not None:
        return f"between {number_text(rule.min)} and {number_text(rule.max)}"
    return f"at least {number_text(rule.min)}" if rule.min is not None else f"at most {number_text(rule.max or 0)}"


def _message(rule: FieldRule, issue: Issue, value: Any) -> str:
    """One problem worded as APIFrame's validator (zod) words it."""
    if issue in ("type", "value") and rule.values is not None:
        kind = "" if rule.json_type == "string" else f"{rule.json_type} "
        return f"Expected {kind}{_alternatives(rule.values)}, received {value!r}"
    if issue == "range":
        return f"Expected {rule.json_type} {_bounds(rule)}, received {value!r}"
    if issue == "max_length":
        return f"String must contain at most {rule.max_length} character(s)"
    if issue == "not_list":
        return f"Expected array, received {_json_type(value)}"
    if issue == "too_few":
        return f"Array must contain at least {rule.min_items} element(s)"
    if issue == "too_many":
        return f"Array must contain at most {rule.max_items} element(s)"
    expected = "string" if rule.is_list else rule.json_type  # a list element, or a scalar of the wrong type
    return f"Expected {expected}, received {_json_type(value)}"


def _is_http_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://")) and len(value) > 8


class APIFrameEmulator(EmulatorState):
    """APIFrame v2 on loopback.

    Args:
        api_key: the one key it accepts.
        credits_available: the account's balance; a submit costing more is answered 402.
        retired_models: models answered 404 ``{"error": "Model not found: <model>"}``.
        extra_models: more model tables (model id -> table, or a JSON file of them; format in
            ``prefect_videogen.testing.model_tables``), served beside (or instead of) the built-in ones.

    Attributes:
        charges: credits billed per job id (0 for a job refunded after a request-time rejection).
        counters: jobs_created, create_requests, idempotent_replays, polls, listings, downloads, uploads,
            auth_failures, rejected_requests, cdn_key_rejections.
    """

    provider = "apiframe"

    def __init__(
        self,
        *,
        api_key: str = EMULATOR_API_KEY,
        credits_available: int = 100_000,
        retired_models: tuple[str, ...] | set[str] = (),
        extra_models: Mapping[str, ModelTable | Mapping[str, Any]] | str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        extra = load_tables(extra_models) if extra_models is not None else {}
        if flat := sorted(model for model, table in extra.items() if table.params_object is None):
            raise ValueError(f"APIFrame model tables need a params_object (soraParams, veoParams...): {flat}")
        self.models: dict[str, ModelTable] = {**APIFRAME_MODELS, **extra}
        self.api_key = api_key
        self._initial_credits = credits_available
        self._initial_retired = set(retired_models)
        self.credits_available = credits_available
        self.retired_models = set(retired_models)
        self.charges: dict[str, int] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[str, tuple[str, str, float]] = {}
        self._app = self._build_app()

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.charges.clear()
            self.uploads.clear()
            self.idempotency.clear()
            self.credits_available = self._initial_credits
            self.retired_models = set(self._initial_retired)

    def expire(self, job_id: str) -> None:
        """Mark a job past APIFrame's 24 h retention: expired=true, its video gone from the CDN."""
        with self.lock:
            self.jobs[job_id]["expired"] = True

    @property
    def app(self) -> Any:
        return self._app

    def _build_app(self) -> Any:
        starlette = Starlette(
            routes=[
                Route("/v2/videos/generate", self._generate, methods=["POST"]),
                Route("/v2/uploads", self._upload, methods=["POST"]),
                Route("/v2/jobs", self._list_jobs, methods=["GET"]),
                Route("/v2/jobs/{job_id}", self._get_job, methods=["GET"]),
                Route("/cdn/videos/{name}", self._download, methods=["GET"]),
                Route("/cdn/uploads/{upload_id}", self._uploaded_file, methods=["GET"]),
            ]
        )

        async def app(scope: dict, receive: Any, send: Any) -> None:
            # Every APIFrame answer carries x-request-id.
            request_id = f"req_{uuid.uuid4().hex[:16]}"

            async def send_with_id(message: dict) -> None:
                if message["type"] == "http.response.start":
                    headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                    message = {**message, "headers": headers}
                await send(message)

            await starlette(scope, receive, send_with_id if scope["type"] == "http" else send)

        return app

    # -- helpers ---------------------------------------------------------------------------

    def _auth_error(self, request: Request) -> Response | None:
        key = request.headers.get("x-api-key")
        if key == self.api_key:
            return None
        self.count("auth_failures")
        return JSONResponse({"error": "Missing API key" if key is None else "Invalid API key"}, status_code=401)

    def _invalid(self, details: dict[str, list[str]], error: str = "Validation failed") -> Response:
        self.count("rejected_requests")
        return JSONResponse({"error": error, "details": details}, status_code=400)

    @staticmethod
    def _fault_response(fault: Fault) -> Response:
        headers = dict(fault.headers)
        status = fault.status or 500
        if status == 429:
            headers.setdefault("Retry-After", "1")  # APIFrame's 429 carries Retry-After seconds
        if isinstance(fault.body, str):
            return PlainTextResponse(fault.body, status_code=status, headers=headers)
        body = fault.body if fault.body is not None else {"error": _DEFAULT_FAULT_BODIES.get(status, "Error")}
        return JSONResponse(body, status_code=status, headers=headers)

    def _view(self, job: dict[str, Any]) -> dict[str, Any]:
        fraction = self.elapsed_fraction(job)
        error, completed, result, progress = None, None, None, None
        cost: int | None = job["cost"]
        if job["fail"] == "create":
            status, error, cost = "FAILED", GENERATION_ERROR, 0
        elif job["fail"] in ("prompt", "image"):  # refused before generation: refunded
            status, error, cost = "FAILED", CONTENT_POLICY_ERROR, 0
        elif fraction < 0.3:
            status, cost = "QUEUED", None
        elif fraction < 1.0:
            status, progress = "PROCESSING", int(fraction * 100)
        elif job["fail"] == "output":  # rendered, then blocked: billed
            status, error, progress = "FAILED", CONTENT_POLICY_ERROR, 100
        else:
            status, progress = "COMPLETED", 100
            if not job["expired"]:
                result = {"videoUrl": f"{job['cdn_base']}/cdn/videos/{job['id']}.mp4"}
        if status in ("COMPLETED", "FAILED"):
            completed = _iso(job["created_at"] + timedelta(seconds=self.latency_seconds))
        return {
            "id": job["id"],
            "status": status,
            "model": job["model"],
            "progress": progress,
            "error": error,
            "creditCost": cost,
            "webhookStatus": None,
            "createdAt": _iso(job["created_at"]),
            "completedAt": completed,
            "expired": job["expired"],
            "input": job["input"],
            "result": result,
        }

    def _validate(self, body: dict[str, Any]) -> dict[str, list[str]]:
        details: dict[str, list[str]] = {}

        def bad(path: str, message: str) -> None:
            details.setdefault(path, []).append(message)

        model = body.get("model")
        table = self.models.get(model) if isinstance(model, str) else None
        # Without a known model, any model's parameter object is let through to the model error.
        objects = {table.params_object} if table is not None else {t.params_object for t in self.models.values()}
        for name in body:
            if name not in TOP_LEVEL_FIELDS and name not in objects:
                bad(name, "Unrecognized key")
        if "model" not in body:
            bad("model", "Required")
        elif not isinstance(model, str):
            bad("model", f"Expected string, received {_json_type(model)}")
        prompt = body.get("prompt")
        limit = (table.max_prompt_chars if table is not None else None) or MAX_PROMPT_CHARS
        if prompt is None:
            bad("prompt", "Required")
        elif not isinstance(prompt, str):
            bad("prompt", f"Expected string, received {_json_type(prompt)}")
        elif not 1 <= len(prompt) <= limit:
            bad("prompt", f"String must contain between 1 and {limit} character(s)")
        if table is not None and table.params_object is not None:
            self._validate_params(table, table.params_object, body.get(table.params_object, {}), bad)
        if "webhookUrl" in body and not _is_http_url(body["webhookUrl"]):
            bad("webhookUrl", "Invalid url")
        if "webhookEvents" in body:
            events = body["webhookEvents"]
            if not isinstance(events, list) or any(e not in WEBHOOK_EVENTS for e in events):
                bad("webhookEvents", "Expected array of 'progress' | 'completed' | 'failed'")
        return details

    def _validate_params(
        self, table: ModelTable, object_name: str, params: Any, bad: Callable[[str, str], None]
    ) -> None:
        if not isinstance(params, dict):
            bad(object_name, f"Expected object, received {_json_type(params)}")
            return
        for name, value in params.items():
            path = f"{object_name}.{name}"
            rule = table.fields.get(name)
            if rule is None:
                bad(path, "Unrecognized key")
                continue
            problems = list(rule.check(value))
            for suffix, issue in problems:
                item = value[int(suffix[1:])] if suffix else value
                bad(path + suffix, _message(rule, issue, item))
            if problems or rule.type not in ("url", "url_list"):
                continue
            for suffix, url in [("", value)] if rule.type == "url" else [(f".{i}", u) for i, u in enumerate(value)]:
                if not _is_http_url(url):
                    bad(path + suffix, "Invalid url")
                elif "/cdn/uploads/" in url and url.rsplit("/", 1)[-1] not in self.uploads:
                    bad(path + suffix, "Image could not be fetched")

    # -- endpoints ---------------------------------------------------------------------------

    async def _generate(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        self.count("create_requests")
        fault = self.faults.take("create") or Fault()
        if fault.status and not fault.after_create:
            return self._fault_response(fault)
        key = request.headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= 255:
            return self._invalid({"Idempotency-Key": ["Must be between 1 and 255 characters"]})
        if "application/json" not in request.headers.get("content-type", ""):
            return self._invalid({}, "Content-Type must be application/json")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._invalid({}, "Invalid JSON body")
        if not isinstance(body, dict):
            return self._invalid({"": ["Expected object"]})
        model = body.get("model")
        if isinstance(model, str) and (model in self.retired_models or model not in self.models):
            self.count("rejected_requests")
            return JSONResponse({"error": f"Model not found: {model}"}, status_code=404)
        if details := self._validate(body):
            return self._invalid(details)
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with self.lock:
            if key is not None and key in self.idempotency:
                seen_fingerprint, job_id, seen_at = self.idempotency[key]
                if self.clock() - seen_at <= IDEMPOTENCY_WINDOW_SECONDS:
                    if seen_fingerprint != fingerprint:
                        self.counters["rejected_requests"] += 1
                        return JSONResponse(
                            {"error": "Idempotency-Key was already used with a different request body"},
                            status_code=409,
                        )
                    self.counters["idempotent_replays"] += 1
                    replayed = self._view(self.jobs[job_id])["status"]
                    return JSONResponse({"jobId": job_id, "status": replayed}, status_code=202)
            table = self.models[str(model)]  # a valid body names a served model
            duration, tier, aspect = table.choices(body.get(table.params_object or "", {}))
            cost = whole_credits(table.credits(tier, duration))
            if cost > self.credits_available:
                self.counters["rejected_requests"] += 1
                return JSONResponse(
                    {
                        "error": "Insufficient credits",
                        "creditsRequired": cost,
                        "creditsAvailable": self.credits_available,
                    },
                    status_code=402,
                )
            width, height = table.size(tier, aspect)
            if (str(model), tier) in SIZES:
                override = SIZES[(str(model), tier)]
                width, height = (min(override), max(override)) if height > width else override
            fail = "create" if fault.fail_on_create else fault.reject
            job_id = str(uuid.uuid4())
            billed = 0 if fail in ("create", "prompt", "image") else cost
            self.credits_available -= billed
            self.charges[job_id] = billed
            self.jobs[job_id] = {
                "id": job_id,
                "model": model,
                "input": body,
                "cost": cost,
                "fail": fail,
                "expired": False,
                "created": self.clock(),
                "created_at": datetime.now(timezone.utc),
                "duration": duration,
                "width": width,
                "height": height,
                "render": table.render,
                "cdn_base": str(request.base_url).rstrip("/"),
            }
            if key is not None:
                self.idempotency[key] = (fingerprint, job_id, self.clock())
            self.counters["jobs_created"] += 1
            status = self._view(self.jobs[job_id])["status"]
        if fault and fault.answer_delay_seconds:
            await asyncio.sleep(fault.answer_delay_seconds)  # the job exists; its answer is late
        if fault.status:  # after_create: the job exists, the answer says otherwise (ambiguous)
            return self._fault_response(fault)
        return JSONResponse({"jobId": job_id, "status": status}, status_code=202)

    async def _get_job(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        self.count("polls")
        if (fault := self.faults.take("poll")) and fault.status:
            return self._fault_response(fault)
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return JSONResponse({"error": "Job not found"}, status_code=404)
        return JSONResponse(self._view(job))

    async def _list_jobs(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        self.count("listings")
        if (fault := self.faults.take("list")) and fault.status:
            return self._fault_response(fault)
        query = request.query_params
        details: dict[str, list[str]] = {}
        status = query.get("status")
        if status is not None and status.upper() not in STATUSES:
            details["status"] = [f"Expected {' | '.join(STATUSES)}"]
        limit_text = query.get("limit", "20")
        limit = int(limit_text) if limit_text.isdigit() else 0
        if not 1 <= limit <= 100:
            details["limit"] = ["Expected integer between 1 and 100"]
        cursor = query.get("cursor", "0")
        if not cursor.isdigit():
            details["cursor"] = ["Invalid cursor"]
        if details:
            return self._invalid(details)
        # Newest first. The cursor is a position in creation order (jobs are only ever added, at
        # the end), so a page renders only the jobs it passes over: a sweep over 10,000 jobs stays
        # linear instead of rendering every job for every page.
        ordered = list(self.jobs.values())
        wanted_status, model = status.upper() if status else None, query.get("model")

        def matches(view: dict[str, Any]) -> bool:
            return (wanted_status is None or view["status"] == wanted_status) and (
                model is None or view["model"] == model
            )

        position = min(int(cursor), len(ordered)) if "cursor" in query else len(ordered)
        page: list[dict[str, Any]] = []
        while position > 0 and len(page) < limit:
            position -= 1
            if matches(view := self._view(ordered[position])):
                page.append(view)
        more = any(matches(self._view(job)) for job in reversed(ordered[:position]))
        return JSONResponse({"jobs": page, "nextCursor": str(position) if more else None, "hasMore": more})

    async def _upload(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        if (fault := self.faults.take("upload")) and fault.status:
            return self._fault_response(fault)
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data") or "boundary=" not in content_type:
            return self._invalid({"file": ["Expected multipart/form-data with a file field"]})
        boundary = content_type.split("boundary=", 1)[1].split(";")[0].strip().strip('"').encode()
        fields = _multipart_fields(await request.body(), boundary)
        if "file" not in fields or fields["file"][1] is None:
            return self._invalid({"file": ["Required"]})
        data, file_type = fields["file"][0], fields["file"][1] or ""
        if file_type not in IMAGE_TYPES:
            return self._invalid({"file": [f"Unsupported file type {file_type!r}; expected an image"]})
        if not data or len(data) > MAX_UPLOAD_BYTES:
            return self._invalid({"file": ["File must be between 1 byte and 25 MB"]})
        upload_id = uuid.uuid4().hex
        expires = datetime.now(timezone.utc) + timedelta(hours=2)
        with self.lock:
            self.uploads[upload_id] = {"data": data, "contentType": file_type}
            self.counters["uploads"] += 1
        return JSONResponse(
            {
                "id": upload_id,
                "url": f"{str(request.base_url).rstrip('/')}/cdn/uploads/{upload_id}",
                "kind": "image",
                "contentType": file_type,
                "byteSize": len(data),
                "expiresAt": _iso(expires),
            }
        )

    def _cdn_refusal(self, request: Request) -> Response | None:
        # The CDN is not the API: a request carrying the API key proves a client leaks it.
        if "x-api-key" in request.headers or "authorization" in request.headers:
            self.count("cdn_key_rejections")
            return PlainTextResponse("Forbidden: credentials must not be sent to the CDN", status_code=403)
        return None

    async def _uploaded_file(self, request: Request) -> Response:
        if (refused := self._cdn_refusal(request)) is not None:
            return refused
        upload = self.uploads.get(request.path_params["upload_id"])
        if upload is None:
            return PlainTextResponse("Not Found", status_code=404)
        return Response(upload["data"], media_type=upload["contentType"])

    async def _download(self, request: Request) -> Response:
        if (refused := self._cdn_refusal(request)) is not None:
            return refused
        self.count("downloads")
        job = self.jobs.get(request.path_params["name"].removesuffix(".mp4"))
        if job is None or job["expired"] or self._view(job)["status"] != "COMPLETED":
            return PlainTextResponse("Not Found", status_code=404)
        fault = self.faults.take("download")
        if fault and fault.status:
            return self._fault_response(fault)
        data = clip_bytes(job["render"], job["width"], job["height"], job["duration"])
        return video_download(self, request, data, fault)  # type: ignore[no-any-return]


def _multipart_fields(body: bytes, boundary: bytes) -> dict[str, tuple[bytes, str | None]]:
    """Parse multipart/form-data exactly (python-multipart is not a dependency): name -> (data, file type)."""
    fields: dict[str, tuple[bytes, str | None]] = {}
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        params = dict(
            (k.strip(), v.strip().strip('"')) for k, _, v in (p.partition("=") for p in disposition.split(";")[1:])
        )
        if "name" in params:
            is_file = "filename" in params
            fields[params["name"]] = (data.removesuffix(b"\r\n"), headers.get("content-type", "") if is_file else None)
    return fields
