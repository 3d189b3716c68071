"""What OpenAI-shaped emulators (Videos, chat completions) share: the error body and Bearer auth."""

from __future__ import annotations

import uuid
from collections.abc import Container
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def error_response(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """``{"error": {message, type, param, code}}`` with an ``x-request-id``, as OpenAI answers."""
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(
        body, status_code=status, headers={"x-request-id": f"req_{uuid.uuid4().hex}", **(headers or {})}
    )


class Refusal(Exception):
    """Raised inside a handler to answer with ``response`` at once."""

    def __init__(self, response: Response) -> None:
        self.response = response


def refuse(status: int, message: str, **kwargs: Any) -> Refusal:
    return Refusal(error_response(status, message, **kwargs))


def check_bearer(request: Request, accepted: Container[str]) -> None:
    """Refuse a missing or wrong ``Authorization: Bearer`` key with OpenAI's own 401 answers."""
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise refuse(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    key = header[7:].strip()
    if key not in accepted:
        # OpenAI echoes a masked key: enough to recognise it, not enough to use it.
        masked = f"{key[:3]}{'*' * 8}{key[-4:]}" if len(key) > 8 else "***"
        raise refuse(
            401,
            f"Incorrect API key provided: {masked}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
