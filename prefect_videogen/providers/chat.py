"""Prompt rewriting through an OpenAI-compatible chat completions endpoint. Plain httpx, no Prefect.

Wire format (OpenAI API reference, "Create chat completion"):

- ``POST {base_url}/chat/completions`` with ``Authorization: Bearer KEY`` and a JSON body
  ``{"model", "messages": [{"role": "system", ...}, {"role": "user", ...}], "temperature"}``.
- The answer is a ``chat.completion``: ``choices[0].message.content`` is the text,
  ``choices[0].finish_reason`` says why it ended (``stop``, ``length``, ``content_filter``), and
  ``usage`` counts tokens. Newer models put a refusal in ``choices[0].message.refusal``.
- Errors are ``{"error": {"message", "type", "param", "code"}}``; 429 carries ``retry-after`` /
  ``retry-after-ms``; an exhausted balance is 429 ``insufficient_quota``.

A completion is billed and not deduplicated by the server, so it is sent with ``paid=True``:
re-sent only when nothing can have been generated (connect failure, 429). Any answer that is not
a usable rewrite (empty, filtered, refused, truncated) is an error: a bad rewrite would otherwise
be paid for a second time as a video.

Example:
    ```python
    from prefect_videogen.providers.chat import ChatClient

    async with ChatClient("sk-...", base_url="https://api.openai.com/v1") as client:
        result = await client.rewrite(
            "a fox in snow", instruction="Rewrite as a detailed video prompt.", model="gpt-4o-mini"
        )
        print(result.rewritten, result.total_tokens)
    ```
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field

from prefect_videogen.errors import (
    ContentRejected,
    InvalidVideoRequest,
    JobFailed,
    ModelUnavailable,
    ProviderError,
    ProviderUnavailable,
)
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.http import ErrorInfo, HttpTransport, Sleep, json_object
from prefect_videogen.providers.openai import map_openai_error, openai_headers
from prefect_videogen.providers.retry import RetryPolicy

logger = logging.getLogger("prefect_videogen.providers.chat")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
PROVIDER = "chat"


class RewriteResult(BaseModel):
    """One prompt before and after its rewrite, with what it cost in tokens."""

    model_config = ConfigDict(frozen=True)

    original: str = Field(description="The prompt as given.")
    rewritten: str = Field(description="The model's rewrite, whitespace stripped; never empty.")
    model: str = Field(description="The model that answered, as the server names it.")
    prompt_tokens: int | None = Field(default=None, description="Input tokens billed, when the server said.")
    completion_tokens: int | None = Field(default=None, description="Output tokens billed, when the server said.")
    total_tokens: int | None = Field(default=None, description="All tokens billed, when the server said.")
    completion_id: str | None = Field(default=None, description="The server's id of the completion (chatcmpl-...).")


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ChatClient:
    """Rewrite prompts with an OpenAI-compatible chat completions API.

    Args:
        api_key: sent as ``Authorization: Bearer``; registered for redaction, never logged.
        base_url: API root ending in ``/v1``: OpenAI, a gateway, a local server or the emulator.
        organization: optional ``OpenAI-Organization`` header.
        account_label: non-secret name of the billed account (cache keys, ledger).
        policy, sleep, transport: passed to :class:`HttpTransport` (tests inject them).
    """

    name = PROVIDER

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        organization: str | None = None,
        account_label: str | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key is empty; set the block's api_key")
        headers = openai_headers(api_key, organization=organization)
        self.base_url = base_url.rstrip("/")
        self._account_id = account_id_for(api_key, label=account_label)
        self._http = HttpTransport(
            self.name,
            self.base_url,
            headers=headers,
            error_mapper=self._map_error,
            policy=policy,
            sleep=sleep,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"ChatClient(base_url={self.base_url!r}, account_id={self._account_id!r})"

    @property
    def account_id(self) -> str:
        return self._account_id

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def rewrite(
        self, prompt: str, *, instruction: str, model: str, temperature: float | None = 0.0
    ) -> RewriteResult:
        """Ask ``model`` to rewrite ``prompt`` following the system ``instruction``.

        Args:
            temperature: 0 (the default) for the most repeatable rewrite; None leaves it out of the
                request, for models that accept only their own default.

        Raises:
            InvalidVideoRequest: a blank prompt, instruction or model; nothing was sent.
            ContentRejected: the answer was filtered (``finish_reason`` ``content_filter``) or refused.
            JobFailed: the answer is empty or was cut short (``length``).
            ProviderError: typed by status (``AuthError``, ``RateLimited``, ``ModelUnavailable``...).
        """
        for field, value in (("prompt", prompt), ("instruction", instruction), ("model", model)):
            if not isinstance(value, str) or not value.strip():
                raise InvalidVideoRequest(field, value, "a non-empty string")
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "system", "content": instruction}, {"role": "user", "content": prompt}],
        }
        if temperature is not None:
            body["temperature"] = temperature
        try:
            answer = await self._http.json("POST", "chat/completions", paid=True, json=body)
        except ModelUnavailable as exc:
            raise ModelUnavailable(
                f"model {model!r} is not served at {self.base_url}: {exc.detail}",
                model=model,
                provider=self.name,
                status_code=exc.status_code,
                request_id=exc.request_id,
            ) from exc
        result = self._parse(answer, prompt, model)
        logger.debug("%s rewrote a prompt with %s (%s tokens)", self.name, result.model, result.total_tokens)
        return result

    def _parse(self, answer: Any, prompt: str, model: str) -> RewriteResult:
        choice: dict[str, Any] = {}
        if isinstance(answer, dict) and isinstance(answer.get("choices"), list) and answer["choices"]:
            choice = json_object(answer["choices"][0])
        message = choice.get("message")
        if not isinstance(message, dict):
            # A 200 without a completion: tokens may have been billed, so do not re-send by ourselves.
            raise ProviderUnavailable(
                "chat completion answered without choices[0].message",
                provider=self.name,
                status_code=200,
                maybe_created=True,
            )
        completion_id = str(answer.get("id") or "") or None
        job_id = completion_id or "chat-completion"
        finish = choice.get("finish_reason")
        refusal = message.get("refusal")
        if finish == "content_filter":
            raise ContentRejected(
                "the rewrite was withheld by the provider's content filter (finish_reason content_filter)",
                provider=self.name,
                job_id=job_id,
                code="content_filter",
                stage="output",
                charged=True,
            )
        if isinstance(refusal, str) and refusal.strip():
            raise ContentRejected(
                f"the model refused to rewrite the prompt: {refusal.strip()[:200]}",
                provider=self.name,
                job_id=job_id,
                code="refusal",
                stage="prompt",
                charged=True,
            )
        content = message.get("content")
        rewritten = content.strip() if isinstance(content, str) else ""
        if not rewritten:
            raise JobFailed(
                f"the rewrite is empty (finish_reason {finish!r})",
                provider=self.name,
                job_id=job_id,
                code="empty_rewrite",
                charged=True,
            )
        if finish == "length":
            # Cut off at the token limit: half a prompt would be paid for again as a video.
            raise JobFailed(
                "the rewrite was cut short at the token limit (finish_reason length)",
                provider=self.name,
                job_id=job_id,
                code="length",
                charged=True,
            )
        usage = json_object(answer.get("usage"))
        return RewriteResult(
            original=prompt,
            rewritten=rewritten,
            model=str(answer.get("model") or model),
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(usage.get("completion_tokens")),
            total_tokens=_int_or_none(usage.get("total_tokens")),
            completion_id=completion_id,
        )

    def _map_error(self, response: httpx.Response, info: ErrorInfo) -> ProviderError | None:
        return map_openai_error(self.name, info)
