"""A strict loopback emulator of an OpenAI-compatible chat completions API, for tests and dry runs.

It refuses what the API refuses, in OpenAI's error shape: a missing or wrong key (401), a body that
is not a JSON object, unknown top-level arguments, wrong types, missing ``model``/``messages``
(400), an unknown model (404 ``model_not_found``). A valid request gets a deterministic rewrite of
the last user message (``"cinematic, 35mm: " + prompt`` unless ``rewrite`` says otherwise) and a
word-count ``usage``.

Faults (``emulator.faults.add("completions", Fault(...))``): ``status`` answers with that status
(429 and 5xx get OpenAI's bodies; ``headers`` such as ``retry-after-ms`` pass through);
``status=200`` with ``body`` answers that body; ``reject="output"`` finishes with
``finish_reason: content_filter`` and no content; ``after_create=True`` generates (and bills) the
completion, then answers ``status`` anyway.

Counters: ``requests`` (every POST, refused or not: proves what a client re-sent) and
``completions`` (completions generated, i.e. billed).

Example:
    ```python
    from prefect_videogen.testing.chat_emulator import ChatEmulator
    from prefect_videogen.testing.server import EmulatorServer

    with EmulatorServer(ChatEmulator(api_key="sk-test")) as server:
        base_url = f"{server.base_url}/v1"
    ```
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from prefect_videogen.testing.openai_shape import (
    Refusal,
    check_bearer,
    error_response,
    refuse,
)
from prefect_videogen.testing.server import EmulatorState, Fault

# Top-level arguments the emulator understands; anything else is refused as OpenAI refuses it.
FIELDS = {"model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "user"}
ROLES = {"system", "developer", "user", "assistant"}
MODELS = frozenset({"gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"})


def cinematic(instruction: str, prompt: str) -> str:
    """The default rewrite: deterministic, and visibly different from its input."""
    return f"cinematic, 35mm: {prompt}"


def _invalid_type(param: str, expected: str) -> Refusal:
    return refuse(400, f"Invalid type for '{param}': expected {expected}.", param=param, code="invalid_type")


class ChatEmulator(EmulatorState):
    """OpenAI's chat completions on loopback, served at ``/v1/chat/completions`` and ``/chat/completions``.

    Args:
        api_key: the key (or keys) clients must send as ``Authorization: Bearer``.
        models: models served; others get 404 ``model_not_found``.
        rewrite: ``(instruction, prompt) -> text``; the instruction is the system message.
        **kwargs: :class:`EmulatorState` settings.
    """

    provider = "chat"

    def __init__(
        self,
        *,
        api_key: str | Iterable[str] = "sk-emulator-key",
        models: Iterable[str] = MODELS,
        rewrite: Callable[[str, str], str] = cinematic,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api_keys = {api_key} if isinstance(api_key, str) else set(api_key)
        self.models = set(models)
        self.rewrite = rewrite
        self.requests: list[dict[str, Any]] = []  # accepted bodies, for tests that check what was sent
        routes = [Route("/chat/completions", self._completions, methods=["POST"])]
        self._app = Starlette(routes=[Mount("/v1", routes=routes), *routes])

    @property
    def app(self) -> Starlette:
        return self._app

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.requests.clear()

    def _authorize(self, request: Request) -> None:
        check_bearer(request, self.api_keys)

    @staticmethod
    def _fault_response(fault: Fault) -> Response:
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

    async def _completions(self, request: Request) -> Response:
        self.count("requests")
        try:
            self._authorize(request)
            fault = self.faults.take("completions") or Fault()
            if fault.status and not fault.after_create:
                return self._fault_response(fault)
            body = await self._body(request)
            answer = self._complete(body, fault)
        except Refusal as refusal:
            return refusal.response
        if fault.status and fault.after_create:
            return self._fault_response(fault)  # generated and billed, then lost: an ambiguous failure
        return JSONResponse(answer, headers={"x-request-id": f"req_{uuid.uuid4().hex}"})

    async def _body(self, request: Request) -> dict[str, Any]:
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise refuse(400, "Invalid content type: expected application/json.")
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise refuse(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly.)",
            ) from None
        if not isinstance(body, dict):
            raise _invalid_type("body", "an object")
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            raise refuse(
                400, f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0], code="unknown_parameter"
            )
        model = body.get("model")
        if model is None:
            raise refuse(400, "you must provide a model parameter", param="model", code="missing_required_parameter")
        if not isinstance(model, str):
            raise _invalid_type("model", "a string")
        messages = body.get("messages")
        if messages is None:
            raise refuse(
                400, "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
            )
        if not isinstance(messages, list):
            raise _invalid_type("messages", "an array")
        if not messages:
            raise refuse(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                param="messages",
                code="empty_array",
            )
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise _invalid_type(f"messages[{i}]", "an object")
            if message.get("role") not in ROLES:
                raise refuse(
                    400,
                    f"Invalid value: '{message.get('role')}'. Supported values are: "
                    + ", ".join(f"'{r}'" for r in sorted(ROLES))
                    + ".",
                    param=f"messages[{i}].role",
                    code="invalid_value",
                )
            if not isinstance(message.get("content"), str):
                raise _invalid_type(f"messages[{i}].content", "a string")
            extra = sorted(set(message) - {"role", "content", "name"})
            if extra:
                raise refuse(
                    400,
                    f"Unrecognized request argument supplied: messages[{i}].{extra[0]}",
                    param=f"messages[{i}].{extra[0]}",
                    code="unknown_parameter",
                )
        temperature = body.get("temperature")
        if temperature is not None:
            if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
                raise _invalid_type("temperature", "a number")
            if not 0 <= temperature <= 2:
                raise refuse(
                    400,
                    f"Invalid 'temperature': decimal above maximum value. Expected a value <= 2, "
                    f"but got {temperature} instead.",
                    param="temperature",
                    code="decimal_above_max_value",
                )
        if model not in self.models:
            raise refuse(
                404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
            )
        if not any(m["role"] == "user" for m in messages):
            raise refuse(400, "Invalid 'messages': at least one 'user' message is required.", param="messages")
        return body

    def _complete(self, body: dict[str, Any], fault: Fault) -> dict[str, Any]:
        messages = body["messages"]
        instruction = "\n".join(m["content"] for m in messages if m["role"] in ("system", "developer"))
        prompt = [m["content"] for m in messages if m["role"] == "user"][-1]
        if fault.reject:
            content, finish = None, "content_filter"
        else:
            content, finish = self.rewrite(instruction, prompt), "stop"
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        completion_tokens = len((content or "").split())
        with self.lock:
            self.requests.append(body)
            self.counters["completions"] += 1
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_emulator",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
