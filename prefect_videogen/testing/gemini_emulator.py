"""A strict emulator of Google's Gemini API for Veo (``predictLongRunning`` and operations).

It answers as shared/provider-apis.md section 6 and the brief of issue 18 describe, and refuses what
a strict reading refuses, with Google's error shape ``{"error": {code, message, status}}``:

- no ``x-goog-api-key`` header: 403 PERMISSION_DENIED; a wrong key: 400 INVALID_ARGUMENT with
  reason API_KEY_INVALID; a ``?key=`` in the URL: 400 (a client must keep the key out of URLs);
- a model outside its own table (or retired): 404 NOT_FOUND;
- an instance or parameter field the model does not take, a wrong JSON type, a value outside the
  model's sets: 400 INVALID_ARGUMENT naming the field (``Unknown name "fps" at 'parameters'``).

Operations finish after the latency; the sample URI is a file download on the API's origin that
requires the key. With ``cdn_url`` set it redirects (302) there instead, to a path that refuses any
request carrying the key, so a client that forwards its key across a redirect is caught.

Example:
    ```python
    from prefect_videogen.blocks.gemini import GeminiCredentials
    from prefect_videogen.testing.gemini_emulator import EMULATOR_API_KEY, GeminiEmulator
    from prefect_videogen.testing.server import EmulatorServer

    with EmulatorServer(GeminiEmulator()) as server:
        creds = GeminiCredentials(api_key=EMULATOR_API_KEY, base_url=server.base_url + "/v1beta")
    ```
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from prefect_videogen.testing.server import EmulatorState, Fault, video_bytes, video_download

EMULATOR_API_KEY = "AIzaSyEmulator-0123456789abcdefghijklmn"
API_VERSION = "v1beta"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
PERSON_GENERATION = ("allow_all", "allow_adult", "dont_allow")
REFERENCE_TYPES = ("asset", "style")
HD720 = {"16:9": (1280, 720), "9:16": (720, 1280)}
HD1080 = {"16:9": (1920, 1080), "9:16": (1080, 1920)}


@dataclass(frozen=True)
class VeoModel:
    """What one Veo model takes, as this emulator enforces it (its own table, not the catalog)."""

    durations: tuple[int, ...]
    sizes: dict[str, dict[str, tuple[int, int]]]  # resolution -> aspect ratio -> (width, height)
    usd_per_second: float
    parameters: frozenset[str]
    last_frame: bool = False
    max_reference_images: int = 0


_VEO3 = frozenset({"aspectRatio", "durationSeconds", "negativePrompt", "resolution", "seed", "personGeneration"})
MODELS: dict[str, VeoModel] = {
    "veo-3.1-generate-preview": VeoModel((4, 6, 8), {"720p": HD720, "1080p": HD1080}, 0.40, _VEO3, True, 3),
    "veo-3.1-fast-generate-preview": VeoModel((4, 6, 8), {"720p": HD720, "1080p": HD1080}, 0.15, _VEO3, True, 3),
    "veo-3.0-generate-001": VeoModel((4, 6, 8), {"720p": HD720, "1080p": {"16:9": (1920, 1080)}}, 0.40, _VEO3),
    "veo-3.0-fast-generate-001": VeoModel((4, 6, 8), {"720p": HD720, "1080p": {"16:9": (1920, 1080)}}, 0.15, _VEO3),
    "veo-2.0-generate-001": VeoModel(
        (5, 6, 7, 8),
        {"720p": HD720},
        0.35,
        frozenset({"aspectRatio", "durationSeconds", "negativePrompt", "personGeneration"}),
    ),
}
DEFAULT_RESOLUTION = "720p"
DEFAULT_DURATION = 8
RAI_REASONS = {
    "prompt": "Your prompt was blocked by our safety filters (support code 90789179).",
    "image": "Veo could not generate videos because the input image violates the usage guidelines.",
    "output": "The generated video was filtered by our safety filters for not meeting safety requirements.",
}
_STATUS_WORDS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def google_error(status: int, message: str, *, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    """Google's error body: ``{"error": {code, message, status[, details]}}``."""
    error: dict[str, Any] = {"code": status, "message": message, "status": _STATUS_WORDS.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class GeminiEmulator(EmulatorState):
    """The Gemini API's Veo endpoints on loopback, under ``/v1beta``.

    Args:
        api_key: the one key it accepts.
        retired_models: models answered 404 NOT_FOUND although they are in the table.
        cdn_url: where sample downloads redirect to (another origin of the same emulator, for
            example a second ``EmulatorServer``); None serves the video at the sample URI itself.

    Attributes:
        charges: USD billed per operation name (0 for a failed or safety-filtered operation).
        counters: create_requests, jobs_created, polls, downloads, auth_failures, rejected_requests,
            key_in_query, cdn_key_rejections, redirects.
    """

    provider = "gemini"
    #: The path its API lives under: a client's base_url is the server's root plus this.
    api_root = f"/{API_VERSION}"

    def __init__(
        self,
        *,
        api_key: str = EMULATOR_API_KEY,
        retired_models: tuple[str, ...] | set[str] = (),
        cdn_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self.cdn_url = cdn_url.rstrip("/") if cdn_url else None
        self._initial_retired = set(retired_models)
        self.retired_models = set(retired_models)
        self.charges: dict[str, float] = {}
        self._app = Starlette(
            routes=[
                Route(f"/{API_VERSION}/models/{{action}}", self._predict, methods=["POST"]),
                Route(f"/{API_VERSION}/models/{{model}}/operations/{{op_id}}", self._get_operation, methods=["GET"]),
                Route(f"/{API_VERSION}/files/{{action}}", self._file, methods=["GET"]),
                Route("/cdn/videos/{name}", self._cdn, methods=["GET"]),
            ]
        )

    @property
    def app(self) -> Any:
        return self._app

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.charges.clear()
            self.retired_models = set(self._initial_retired)

    # -- helpers ---------------------------------------------------------------------------

    def _auth_error(self, request: Request) -> Response | None:
        if "key" in request.query_params:
            self.count("key_in_query")
            return google_error(400, "The API key must be sent in the x-goog-api-key header, not in the URL.")
        key = request.headers.get("x-goog-api-key")
        if key == self.api_key:
            return None
        self.count("auth_failures")
        if key is None:
            return google_error(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        return google_error(
            400,
            "API key not valid. Please pass a valid API key.",
            details=[
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ],
        )

    def _invalid(self, message: str) -> Response:
        self.count("rejected_requests")
        return google_error(400, message)

    @staticmethod
    def _fault_response(fault: Fault) -> Response:
        status = fault.status or 500
        if isinstance(fault.body, str):
            return PlainTextResponse(fault.body, status_code=status, headers=fault.headers)
        if fault.body is not None:
            return JSONResponse(fault.body, status_code=status, headers=fault.headers)
        details = None
        if status == 429:  # Google's quota answer carries its wait as a google.rpc.RetryInfo detail
            details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]
        message = "Resource has been exhausted (e.g. check quota)." if status == 429 else "An internal error occurred."
        response = google_error(status, message, details=details)
        response.headers.update(fault.headers)
        return response

    def _image_problem(self, where: str, value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"Invalid value at '{where}': expected an object with bytesBase64Encoded and mimeType."
        for name in value:
            if name not in ("bytesBase64Encoded", "mimeType"):
                return f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field."
        data = value.get("bytesBase64Encoded")
        if not isinstance(data, str) or not data:
            return f"Invalid value at '{where}.bytesBase64Encoded': a base64 string is required."
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return f"Invalid value at '{where}.bytesBase64Encoded': not valid base64."
        if value.get("mimeType") not in IMAGE_TYPES:
            return f"Invalid value at '{where}.mimeType' ({value.get('mimeType')!r}): expected one of {', '.join(IMAGE_TYPES)}."
        return None

    def _validate(self, model: VeoModel, body: Any) -> str | None:
        """The first problem of ``body`` for ``model`` (Google answers one), or None."""
        if not isinstance(body, dict):
            return "Invalid JSON payload received. Expected an object."
        for name in body:
            if name not in ("instances", "parameters"):
                return f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
        instances = body.get("instances")
        if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
            return "Invalid value at 'instances': exactly one instance object is required."
        instance = instances[0]
        allowed = {"prompt", "image"} | ({"lastFrame"} if model.last_frame else set())
        allowed |= {"referenceImages"} if model.max_reference_images else set()
        for name in instance:
            if name not in allowed:
                return f"Invalid JSON payload received. Unknown name \"{name}\" at 'instances[0]': Cannot find field."
        prompt = instance.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return "Invalid value at 'instances[0].prompt': a non-empty string is required."
        for name in ("image", "lastFrame"):
            if name in instance and (problem := self._image_problem(f"instances[0].{name}", instance[name])):
                return problem
        if "lastFrame" in instance and "image" not in instance:
            return "Invalid value at 'instances[0].lastFrame': a last frame needs a first frame (image)."
        references = instance.get("referenceImages", [])
        if not isinstance(references, list) or len(references) > model.max_reference_images:
            return f"Invalid value at 'instances[0].referenceImages': at most {model.max_reference_images} images."
        for index, reference in enumerate(references):
            where = f"instances[0].referenceImages[{index}]"
            if not isinstance(reference, dict):
                return f"Invalid value at '{where}': expected an object."
            for name in reference:
                if name not in ("image", "referenceType"):
                    return f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field."
            if problem := self._image_problem(f"{where}.image", reference.get("image")):
                return problem
            if "referenceType" in reference and reference["referenceType"] not in REFERENCE_TYPES:
                return f"Invalid value at '{where}.referenceType' ({reference['referenceType']!r})."
        params = body.get("parameters", {})
        if not isinstance(params, dict):
            return "Invalid value at 'parameters': expected an object."
        for name in params:
            if name not in model.parameters:
                return f"Invalid JSON payload received. Unknown name \"{name}\" at 'parameters': Cannot find field."
        duration = params.get("durationSeconds", DEFAULT_DURATION)
        if not _is_int(duration) or duration not in model.durations:
            return f"Invalid value at 'parameters.durationSeconds' ({duration!r}): expected one of {list(model.durations)}."
        resolution = params.get("resolution", DEFAULT_RESOLUTION)
        if resolution not in model.sizes:
            return f"Invalid value at 'parameters.resolution' ({resolution!r}): expected one of {sorted(model.sizes)}."
        aspect = params.get("aspectRatio", "16:9")
        if aspect not in model.sizes[resolution]:
            return (
                f"Invalid value at 'parameters.aspectRatio' ({aspect!r}): expected one of "
                f"{sorted(model.sizes[resolution])} at {resolution}."
            )
        if "negativePrompt" in params and not isinstance(params["negativePrompt"], str):
            return "Invalid value at 'parameters.negativePrompt': a string is required."
        if "seed" in params and not (_is_int(params["seed"]) and 0 <= params["seed"] < 2**32):
            return f"Invalid value at 'parameters.seed' ({params['seed']!r}): a uint32 is required."
        if "personGeneration" in params and params["personGeneration"] not in PERSON_GENERATION:
            return f"Invalid value at 'parameters.personGeneration' ({params['personGeneration']!r})."
        return None

    def _view(self, job: dict[str, Any]) -> dict[str, Any]:
        """The operation as GET returns it; done once the latency passed (or at once for an input block)."""
        view: dict[str, Any] = {"name": job["name"]}
        fail = job["fail"]
        # One clock read per view: read twice, a filtered job could cross its latency between the
        # reads and be answered as a finished video.
        finished = self.elapsed_fraction(job) >= 1.0
        if fail == "create":
            view.update(done=True, error={"code": 13, "message": "Video generation failed.", "status": "INTERNAL"})
        elif fail in ("prompt", "image") or (fail == "output" and finished):
            filtered = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [RAI_REASONS[fail]]}
            view.update(done=True, response={"generateVideoResponse": filtered})
        elif finished:
            uri = f"{job['base']}/{API_VERSION}/files/{job['file_id']}:download?alt=media"
            samples = {"generatedSamples": [{"video": {"uri": uri}}]}
            view.update(
                done=True,
                response={
                    "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                    "generateVideoResponse": samples,
                },
            )
        return view

    # -- endpoints ---------------------------------------------------------------------------

    async def _predict(self, request: Request) -> Response:
        model_id, _, method = request.path_params["action"].partition(":")
        if method != "predictLongRunning":
            return google_error(404, f"Method {method or '(none)'!r} not found on models/{model_id}.")
        if (denied := self._auth_error(request)) is not None:
            return denied
        self.count("create_requests")
        fault = self.faults.take("create") or Fault()
        if fault.status and not fault.after_create:
            return self._fault_response(fault)
        model = MODELS.get(model_id)
        if model is None or model_id in self.retired_models:
            self.count("rejected_requests")
            return google_error(
                404,
                f"models/{model_id} is not found for API version {API_VERSION}, or is not supported for "
                "predictLongRunning. Call ListModels to see the list of available models and their supported methods.",
            )
        if "application/json" not in request.headers.get("content-type", ""):
            return self._invalid("Invalid JSON payload received. Content-Type must be application/json.")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._invalid("Invalid JSON payload received.")
        if (problem := self._validate(model, body)) is not None:
            return self._invalid(problem)
        params = body.get("parameters", {})
        duration = params.get("durationSeconds", DEFAULT_DURATION)
        width, height = model.sizes[params.get("resolution", DEFAULT_RESOLUTION)][params.get("aspectRatio", "16:9")]
        fail = "create" if fault.fail_on_create else fault.reject
        op_id = uuid.uuid4().hex[:16]
        name = f"models/{model_id}/operations/{op_id}"
        with self.lock:
            self.jobs[name] = {
                "name": name,
                "model": model_id,
                "input": body,
                "fail": fail,
                "created": self.clock(),
                "duration": duration,
                "width": width,
                "height": height,
                "file_id": op_id,
                "base": str(request.base_url).rstrip("/"),
            }
            # Billed when a video is produced; failed and filtered operations cost nothing here.
            self.charges[name] = 0.0 if fail else round(model.usd_per_second * duration, 6)
            self.counters["jobs_created"] += 1
            view = self._view(self.jobs[name])
        if fault.answer_delay_seconds:
            await asyncio.sleep(fault.answer_delay_seconds)  # the operation exists; its answer is late
        if fault.status:  # after_create: the operation exists, the answer says otherwise
            return self._fault_response(fault)
        return JSONResponse(view)

    async def _get_operation(self, request: Request) -> Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        self.count("polls")
        if (fault := self.faults.take("poll")) and fault.status:
            return self._fault_response(fault)
        name = f"models/{request.path_params['model']}/operations/{request.path_params['op_id']}"
        job = self.jobs.get(name)
        if job is None:
            return google_error(404, f"Operation {name} not found.")
        return JSONResponse(self._view(job))

    def _finished(self, file_id: str) -> dict[str, Any] | None:
        job = next((j for j in self.jobs.values() if j["file_id"] == file_id), None)
        if job is None:
            return None
        response = self._view(job).get("response", {})
        return job if response.get("generateVideoResponse", {}).get("generatedSamples") else None

    async def _file(self, request: Request) -> Any:
        file_id, _, method = request.path_params["action"].partition(":")
        if method != "download":
            return google_error(404, f"Method {method or '(none)'!r} not found on files/{file_id}.")
        if (denied := self._auth_error(request)) is not None:
            return denied
        if request.query_params.get("alt") != "media":
            return self._invalid("Invalid value at 'alt': the download needs alt=media.")
        job = self._finished(file_id)
        if job is None:
            return google_error(404, f"File files/{file_id} not found.")
        if self.cdn_url:
            self.count("redirects")
            return RedirectResponse(f"{self.cdn_url}/cdn/videos/{file_id}.mp4", status_code=302)
        return self._serve(request, job)

    async def _cdn(self, request: Request) -> Any:
        # Storage is not the API: a request carrying the key proves a client leaks it across a redirect.
        if "x-goog-api-key" in request.headers or "key" in request.query_params:
            self.count("cdn_key_rejections")
            return PlainTextResponse("Forbidden: credentials must not be sent to storage", status_code=403)
        job = self._finished(request.path_params["name"].removesuffix(".mp4"))
        if job is None:
            return PlainTextResponse("Not Found", status_code=404)
        return self._serve(request, job)

    def _serve(self, request: Request, job: dict[str, Any]) -> Any:
        self.count("downloads")
        fault = self.faults.take("download")
        if fault and fault.status:
            return self._fault_response(fault)
        data = video_bytes(job["width"], job["height"], job["duration"])
        return video_download(self, request, data, fault)
