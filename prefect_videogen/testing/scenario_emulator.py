"""A strict emulator of Scenario's Generation API (provider-apis.md section 2), on loopback only.

Routes (under ``/v1``, as the real API): ``POST /generate/custom/{modelId}`` (``?dryRun=true`` ->
HTTP 269 price preview), ``GET /models/{modelId}``, ``GET /jobs/{jobId}``, ``POST /assets``,
``GET /assets/{assetId}``; and a CDN under ``/cdn`` that redirects to the bytes and refuses any
request carrying an ``Authorization`` header (a signed URL plus a key is an error on real CDNs too).

Strict like the real API: HTTP Basic auth; per-model parameter sets from the emulator's own tables
(``model_tables.SCENARIO_MODELS``, written by hand, not read from the catalog): unknown parameters
rejected, types and values checked (``duration`` a JSON number from 4/8/12/16/20 for Sora, a STRING
"5"/"10" for kling-v3-4k, absent for veo3-1, which always renders 8 s), image asset ids (``image``,
``lastFrameImage``, each of ``referenceImages``) that must name uploaded images; errors as
``{"reason", "trace_id"}``. Jobs serve an MP4 of the model's size for (tier, aspect ratio) and the
requested duration, and cost the model's creative units. ``extra_models`` adds tables in the same format
(a mapping or a JSON file; format in ``model_tables``). And faithful to its documented traps: ``dryRun``
in the JSON body is accepted and billed as a real run; a ``?dryRun=true`` quote prices a request
without validating it.

Ledger: ``charges[job_id]`` holds the creative units billed; a failed job is reimbursed (0), except a
clip rejected by moderation after rendering, which stays billed.

Example:
    ```python
    from prefect_videogen.testing.server import EmulatorServer
    from prefect_videogen.testing.scenario_emulator import ScenarioEmulator

    with EmulatorServer(ScenarioEmulator()) as server:
        base_url = server.base_url + "/v1"  # the block's base_url
    ```
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from prefect_videogen.testing.clips import clip_bytes
from prefect_videogen.testing.model_tables import (
    SCENARIO_MODELS,
    FieldRule,
    Issue,
    ModelTable,
    load_tables,
    number_text,
    whole_credits,
)
from prefect_videogen.testing.server import EmulatorState, Fault, video_download

MAX_IMAGE_PAYLOAD = 6 * 1024 * 1024
_REJECTIONS = {
    "prompt": "sentinel_block: the prompt was flagged by the content moderation system",
    "image": "sentinel_block: the input image was flagged by the content moderation system",
    "output": "moderation_blocked: the generated video was flagged by content moderation after rendering",
}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "a boolean"}


def _reason(name: str, rule: FieldRule, issue: Issue, value: Any) -> str:
    """One parameter problem, worded as Scenario's reasons are ("duration must be a number, got str")."""
    if issue == "value" and rule.values is not None:
        return f"{name} must be one of {', '.join(map(str, rule.values))}"
    if issue == "range":
        low, high = (number_text(b) if b is not None else None for b in (rule.min, rule.max))
        return f"{name} must be between {low or '-inf'} and {high or 'inf'}"
    if issue == "max_length":
        return f"{name} must be at most {rule.max_length} characters"
    if issue == "not_list":
        return f"{name} must be a list of asset ids"
    if issue == "too_few":
        return f"{name} takes at least {rule.min_items} asset id(s)"
    if issue == "too_many":
        return f"{name} takes at most {rule.max_items} asset id(s)"
    if rule.is_list:  # an element that is not a string
        return f"{name} must be an asset id (a string), got {type(value).__name__}"
    return f"{name} must be {_TYPE_WORDS[rule.json_type]}, got {type(value).__name__}"


def _error(status: int, reason: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"reason": reason, "trace_id": uuid.uuid4().hex, **extra}, status_code=status)


class ScenarioEmulator(EmulatorState):
    """Scenario's API with jobs that go queued -> warming-up -> processing -> in-progress -> success.

    Args:
        api_key, api_secret: the only credentials accepted.
        retired_models: model ids answered 404 "Model not found".
        plan_limited_models: model ids answered 403, naming the account's plan.
        extra_models: more model tables (model id -> table, or a JSON file of them; format in
            ``prefect_videogen.testing.model_tables``), served beside (or instead of) the built-in ones.
        **kwargs: EmulatorState (latency_seconds, poll_after_ms, clock, seed).
    """

    provider = "scenario"

    def __init__(
        self,
        *,
        api_key: str = "emu-key",
        api_secret: str = "emu-secret",
        retired_models: set[str] | None = None,
        plan_limited_models: set[str] | None = None,
        extra_models: Mapping[str, ModelTable | Mapping[str, Any]] | str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        extra = load_tables(extra_models) if extra_models is not None else {}
        if nested := sorted(model for model, table in extra.items() if table.params_object is not None):
            raise ValueError(f"Scenario model tables take a flat body (no params_object): {nested}")
        self.models: dict[str, ModelTable] = {**SCENARIO_MODELS, **extra}
        self.api_key, self.api_secret = api_key, api_secret
        self.retired_models = set(retired_models or ())
        self.plan_limited_models = set(plan_limited_models or ())
        self.charges: dict[str, float] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        self.cdn: dict[str, str] = {}  # signed token -> asset id
        self.requests: list[dict[str, Any]] = []  # every generate call: query and body, for tests

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.charges.clear()
            self.assets.clear()
            self.cdn.clear()
            self.requests.clear()

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/generate/custom/{model_id}", self._generate, methods=["POST"]),
                Route("/v1/models/{model_id}", self._model, methods=["GET"]),
                Route("/v1/jobs/{job_id}", self._get_job, methods=["GET"]),
                Route("/v1/assets", self._upload, methods=["POST"]),
                Route("/v1/assets/{asset_id}", self._get_asset, methods=["GET"]),
                Route("/cdn/{token}", self._cdn_redirect, methods=["GET"]),
                Route("/cdn/objects/{token}", self._cdn_object, methods=["GET"]),
            ]
        )

    # -- helpers -----------------------------------------------------------------------------

    def _auth_error(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            decoded = base64.b64decode(token, validate=True).decode() if scheme.lower() == "basic" else ""
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        if decoded != f"{self.api_key}:{self.api_secret}":
            self.count("auth_failures")
            return _error(401, "Unauthorized: invalid or missing API key and secret (HTTP Basic)")
        return None

    def _fault_response(self, fault: Fault) -> Response:
        status = fault.status or 500
        body = fault.body
        if body is None:
            body = (
                {"reason": "Too many requests", "details": {"actionName": "generate", "actionLimit": 10}}
                if status == 429
                else {"reason": "Internal server error"}
            )
        if isinstance(body, dict):
            body = {**body, "trace_id": uuid.uuid4().hex}
        return JSONResponse(body, status_code=status, headers=fault.headers)

    def _model_error(self, model_id: str) -> Response | None:
        if model_id not in self.models or model_id in self.retired_models:
            return _error(404, "Model not found")
        if model_id in self.plan_limited_models:
            return _error(403, f"Your plan (Creator) does not include {model_id}; upgrade to Pro to use it")
        return None

    def _validate(self, model_id: str, body: Any) -> str | None:
        """The reason a generate body is rejected (every problem, "; "-joined), or None."""
        if not isinstance(body, dict):
            return "Request body must be a JSON object of the model's parameters"
        table = self.models[model_id]
        unknown = sorted(set(body) - set(table.fields) - {"prompt", "dryRun"})  # dryRun: the documented body trap
        if unknown:
            return f"Unknown parameter(s) for {model_id}: {', '.join(unknown)}"
        problems = []
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            problems.append("prompt is required and must be a non-empty string")
        elif table.max_prompt_chars is not None and len(prompt) > table.max_prompt_chars:
            problems.append(f"prompt must be at most {table.max_prompt_chars} characters")
        for name, rule in table.fields.items():
            if name not in body:
                continue
            value = body[name]
            issues = list(rule.check(value))
            for suffix, issue in issues:
                problems.append(_reason(name + suffix, rule, issue, value[int(suffix[1:])] if suffix else value))
            if issues or rule.type not in ("asset", "asset_list"):
                continue
            for asset_id in [value] if rule.type == "asset" else value:
                if self.assets.get(asset_id, {}).get("type") != "image":
                    problems.append(f"{name} must be the id of an uploaded image asset; {asset_id!r} not found")
        return "; ".join(problems) or None

    def _units(self, model_id: str, body: dict[str, Any]) -> int:
        """The model's price for this body (defaults where a parameter is absent or invalid)."""
        table = self.models[model_id]
        duration, tier, _ = table.choices(body)
        return whole_credits(table.credits(tier, duration))

    def _job_view(self, job: dict[str, Any]) -> dict[str, Any]:
        """The job as GET /jobs shows it now; failures settle the ledger (reimbursement) once."""
        fraction = 1.0 if job["failed_at_create"] else self.elapsed_fraction(job)
        metadata: dict[str, Any] = {"modelId": job["model_id"], "input": job["params"], "assetIds": []}
        reject = job["reject"]
        # Request-time blocks (prompt, image) fail early; output moderation only after rendering.
        fails_now = job["failed_at_create"] or (
            reject is not None and fraction >= (1.0 if reject == "output" else 0.25)
        )
        if fails_now:
            # Two words for the same outcome, as Scenario's own pages disagree.
            status, progress = ("failure" if reject == "output" else "failed"), fraction
            metadata["error"] = _REJECTIONS[reject] if reject else "Generation failed: upstream provider error"
            with self.lock:
                if reject != "output":  # failed jobs are reimbursed; clips moderated after rendering are billed
                    self.charges[job["id"]] = 0
        elif fraction >= 1.0:
            status, progress = "success", 1.0
            metadata["assetIds"] = [job["asset_id"]]
        else:
            status = (
                "queued"
                if fraction < 0.25
                else "warming-up"
                if fraction < 0.5
                else "processing"
                if fraction < 0.75
                else "in-progress"
            )
            progress = round(fraction, 3)
        return {
            "jobId": job["id"],
            "jobType": "inference",
            "status": status,
            "progress": progress,
            "metadata": metadata,
            "createdAt": job["created_at"],
            "updatedAt": _now(),
        }

    # -- API routes --------------------------------------------------------------------------

    async def _generate(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        model_id = request.path_params["model_id"]
        self.count("create_requests")
        fault = self.faults.take("create")
        if fault and fault.status and not fault.after_create:
            return self._fault_response(fault)
        if (problem := self._model_error(model_id)) is not None:
            return problem
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Request body is not valid JSON")
        dry_run = request.query_params.get("dryRun", "").lower() == "true"
        self.requests.append({"model_id": model_id, "query": dict(request.query_params), "body": body})
        if dry_run:
            # A dry run prices the request without validating it (Scenario skills repo, 2026-08).
            self.count("dry_runs")
            units = self._units(model_id, body if isinstance(body, dict) else {})
            return JSONResponse(
                {
                    "creativeUnitsCost": units,
                    "creativeUnitsDiscount": 0,
                    "costDetails": {"modelId": model_id, "creativeUnits": units},
                },
                status_code=269,
            )
        if (reason := self._validate(model_id, body)) is not None:
            return _error(400, reason)
        job_id = f"job_{uuid.uuid4().hex[:20]}"
        units = self._units(model_id, body)
        table = self.models[model_id]
        duration, tier, aspect = table.choices(body)
        width, height = table.size(tier, aspect)
        job = {
            "id": job_id,
            "model_id": model_id,
            "params": body,
            "created": self.clock(),
            "created_at": _now(),
            "width": width,
            "height": height,
            "duration": duration,
            "render": table.render,
            "reject": fault.reject if fault else None,
            "failed_at_create": bool(fault and fault.fail_on_create),
            "asset_id": f"asset_{uuid.uuid4().hex[:20]}",
            "project_id": request.query_params.get("projectId"),
        }
        with self.lock:
            self.jobs[job_id] = job
            self.charges[job_id] = units
            self.counters["jobs_created"] += 1
            if "dryRun" in body:
                self.counters["body_dry_runs_billed"] += 1
        if fault and fault.answer_delay_seconds:
            await asyncio.sleep(fault.answer_delay_seconds)  # the job exists; its answer is late
        if fault and fault.status and fault.after_create:
            return self._fault_response(fault)  # the job exists and is billed; the client cannot know
        return JSONResponse({"job": self._job_view(job), "creativeUnitsCost": units})

    async def _model(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        model_id = request.path_params["model_id"]
        if (problem := self._model_error(model_id)) is not None:
            return problem
        table = self.models[model_id]
        takes_image = any(rule.type == "asset" for rule in table.fields.values())
        return JSONResponse(
            {
                "model": {
                    "id": model_id,
                    "type": "custom",
                    "capabilities": ["txt2video", *(["img2video"] if takes_image else [])],
                    "inputs": sorted({"prompt", *table.fields}),
                    "parameters": {
                        name: rule.model_dump(exclude_none=True) for name, rule in sorted(table.fields.items())
                    },
                }
            }
        )

    async def _get_job(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        self.count("polls")
        if (fault := self.faults.take("poll")) and fault.status:
            return self._fault_response(fault)
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return _error(404, "Job not found")
        return JSONResponse({"job": self._job_view(job)})

    async def _upload(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        if (fault := self.faults.take("upload")) and fault.status:
            return self._fault_response(fault)
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Request body is not valid JSON")
        if not isinstance(body, dict) or set(body) - {"image", "name"}:
            return _error(400, "Unknown field(s); an upload takes image and name")
        image, name = body.get("image"), body.get("name", "image")
        if not isinstance(image, str) or not image or not isinstance(name, str):
            return _error(400, "image (base64 or data URL) is required; name must be a string")
        if len(image) >= MAX_IMAGE_PAYLOAD:
            return _error(400, "Image is too large (max 6MB)")
        try:
            data = base64.b64decode(image.split(",", 1)[1] if image.startswith("data:") else image, validate=True)
        except (binascii.Error, ValueError):
            return _error(400, "image is not valid base64")
        if not (data.startswith((b"\x89PNG", b"\xff\xd8\xff")) or data[8:12] == b"WEBP"):
            return _error(400, "image is not a PNG, JPEG or WEBP")
        asset_id = f"asset_{uuid.uuid4().hex[:20]}"
        with self.lock:
            self.assets[asset_id] = {
                "type": "image",
                "name": name,
                "bytes": data,
                "project_id": request.query_params.get("projectId"),
            }
            self.counters["uploads"] += 1
        return JSONResponse({"asset": {"id": asset_id, "type": "image", "name": name, "status": "success"}})

    async def _get_asset(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        if (fault := self.faults.take("asset")) and fault.status:
            return self._fault_response(fault)
        asset_id = request.path_params["asset_id"]
        job = next(
            (j for j in self.jobs.values() if j["asset_id"] == asset_id and self._job_view(j)["status"] == "success"),
            None,
        )
        if asset_id not in self.assets and job is None:
            return _error(404, "Asset not found")
        token = uuid.uuid4().hex
        with self.lock:
            self.cdn[token] = asset_id
        url = f"{str(request.base_url).rstrip('/')}/cdn/{token}?signature={uuid.uuid4().hex[:16]}"
        if job is not None:
            asset = {
                "id": asset_id,
                "type": "video",
                "mimeType": "video/mp4",
                "url": url,
                "metadata": {"width": job["width"], "height": job["height"], "duration": job["duration"]},
            }
        else:
            asset = {"id": asset_id, "type": "image", "name": self.assets[asset_id]["name"], "url": url}
        return JSONResponse({"asset": asset})

    # -- CDN ---------------------------------------------------------------------------------

    def _cdn_denied(self, request: Request) -> Response | None:
        if "authorization" in request.headers:
            self.count("cdn_auth_rejected")
            return Response(
                "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>",
                status_code=400,
                media_type="application/xml",
            )
        if request.path_params["token"].removesuffix(".bin") not in self.cdn:
            return Response("<Error><Code>NoSuchKey</Code></Error>", status_code=404, media_type="application/xml")
        return None

    async def _cdn_redirect(self, request: Request) -> Response:
        if (denied := self._cdn_denied(request)) is not None:
            return denied
        return RedirectResponse(f"/cdn/objects/{request.path_params['token']}.bin", status_code=302)

    async def _cdn_object(self, request: Request) -> Response:
        if (denied := self._cdn_denied(request)) is not None:
            return denied
        asset_id = self.cdn[request.path_params["token"].removesuffix(".bin")]
        if asset_id in self.assets:
            image = self.assets[asset_id]["bytes"]
            return Response(image, media_type="image/png" if image.startswith(b"\x89PNG") else "image/jpeg")
        job = next(j for j in self.jobs.values() if j["asset_id"] == asset_id)
        self.count("downloads")
        fault = self.faults.take("download")
        payload = clip_bytes(job["render"], job["width"], job["height"], job["duration"])
        if fault and fault.status:
            return self._fault_response(fault)
        return video_download(self, request, payload, fault)  # type: ignore[no-any-return]
