"""Shared HTTP transport of the provider adapters: retries, error mapping, safe submits, streaming.

An adapter gives the transport its base URL, auth headers and, where its error bodies differ, a
function that turns an error response into one of our typed errors. Everything else is here once.

Paid submits: ``send(..., paid=True)`` re-sends only when the request provably created nothing:
the connection was never established (``httpx.ConnectError``/``ConnectTimeout``), or the server
answered 429 (a documented refusal: no job is created). A timeout or 5xx after the body was sent
may have created a job, so it is raised as ``ProviderUnavailable`` with ``maybe_created = True``
and never re-sent. An adapter whose provider dedupes by ``Idempotency-Key`` sends with
``paid=False`` plus the key.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from prefect_videogen.errors import (
    AuthError,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from prefect_videogen.providers.retry import (
    RetryPolicy,
    is_retry_status,
    parse_retry_after,
)

logger = logging.getLogger("prefect_videogen.providers.http")

ErrorMapper = Callable[[httpx.Response, "ErrorInfo"], ProviderError | None]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# httpx keeps only 20 idle connections by default: with hundreds of jobs polled from one process,
# most polls would then open a new TCP (and TLS) connection. Keep as many alive as may be in use.
DEFAULT_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=30.0)
_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-trace-id", "trace-id")


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), built once per process.

    httpx builds a new context for every client, loading the CA bundle each time: about 28 ms of
    CPU, twice per transport. Task runs open a client each, so a 100-video batch spent ~17 s of
    CPU there (``bench/batch_vs_bare.py``). A configured ``SSLContext`` is safe to share.
    """
    return httpx.create_ssl_context()


class ErrorInfo:
    """What an error response says, parsed defensively (non-JSON bodies are normal)."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.request_id = next((response.headers[h] for h in _REQUEST_ID_HEADERS if h in response.headers), None)
        self.body: Any = None
        try:
            self.body = response.json()
        except ValueError:
            pass
        self.message = self._message(response)
        if self.request_id is None and isinstance(self.body, dict):
            trace = self.body.get("trace_id") or self.body.get("traceId")
            self.request_id = str(trace) if trace else None
        self.retry_after = parse_retry_after(response.headers)

    def _message(self, response: httpx.Response) -> str:
        body = self.body
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict) and error.get("message"):
                return str(error["message"])
            for key in ("error", "message", "reason", "detail"):
                if isinstance(body.get(key), str) and body[key]:
                    return body[key]
        text = response.text.strip()  # the caller has read the body
        return text[:300] or response.reason_phrase or f"HTTP {response.status_code}"


def default_error(provider: str, info: ErrorInfo) -> ProviderError:
    """Map an HTTP error to our tree by status code alone."""
    kwargs = {"provider": provider, "status_code": info.status, "request_id": info.request_id}
    if info.status in (401, 403):
        return AuthError(info.message, **kwargs)
    if info.status == 402:
        body = info.body if isinstance(info.body, dict) else {}
        return InsufficientCredits(
            info.message,
            credits_required=body.get("creditsRequired"),
            credits_available=body.get("creditsAvailable"),
            **kwargs,
        )
    if info.status == 429:
        return RateLimited(info.message, retry_after=info.retry_after, **kwargs)
    if info.status == 409:
        return IdempotencyConflict(info.message, **kwargs)
    if info.status >= 500 or info.status == 408:
        return ProviderUnavailable(info.message, **kwargs)
    return InvalidRequest(info.message, **kwargs)


class HttpTransport:
    """One provider's HTTP client with the shared retry policy.

    Args:
        provider: provider name, for error messages.
        base_url: API root (gateways, proxies, regional endpoints and emulators all fit here).
        headers: auth headers; sent to ``base_url`` only, never to CDN URLs.
        error_mapper: provider-specific mapping, tried before :func:`default_error`.
        policy: retry policy; ``sleep`` is injectable so tests never wait.
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        error_mapper: ErrorMapper | None = None,
        policy: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.policy = policy or RetryPolicy()
        self.error_mapper = error_mapper
        self.sleep = sleep
        self.api = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/", headers=dict(headers or {}), auth=auth, timeout=timeout,
            transport=transport, limits=DEFAULT_LIMITS, verify=shared_ssl_context(),
        )
        # CDN downloads: a separate client that carries no provider credentials at all.
        self.cdn = httpx.AsyncClient(
            timeout=timeout, follow_redirects=True, transport=transport, verify=shared_ssl_context()
        )

    async def aclose(self) -> None:
        await self.api.aclose()
        await self.cdn.aclose()

    def to_error(self, response: httpx.Response) -> ProviderError:
        info = ErrorInfo(response)
        mapped = self.error_mapper(response, info) if self.error_mapper else None
        return mapped or default_error(self.provider, info)

    async def send(
        self,
        method: str,
        path: str,
        *,
        paid: bool = False,
        retry: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request to the API and return its successful response.

        Args:
            paid: the request creates a billable job and the provider does not dedupe it.
            retry: False sends once (for example a request whose body is a one-shot stream).

        Raises:
            ProviderError: typed by status; ``ProviderUnavailable`` for transport failures.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self.api.request(method, path.lstrip("/"), **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Never connected: nothing reached the server, so even a paid request is safe to re-send.
                error: ProviderError = ProviderUnavailable(f"cannot connect: {type(exc).__name__}", provider=self.provider)
                cause: BaseException = exc
                hint = None
            except httpx.TransportError as exc:
                error = ProviderUnavailable(
                    f"{type(exc).__name__} during {method} {path}", provider=self.provider, maybe_created=paid
                )
                cause, hint = exc, None
                if paid:
                    raise error from exc
            else:
                if response.is_success:
                    return response
                await response.aread()
                error, cause = self.to_error(response), None
                hint = getattr(error, "retry_after", None)
                retryable_status = is_retry_status(response.status_code) and error.retryable
                if not retryable_status or (paid and response.status_code != 429):
                    if paid and isinstance(error, ProviderUnavailable):
                        raise ProviderUnavailable(
                            error.detail, provider=self.provider, status_code=error.status_code,
                            request_id=error.request_id, maybe_created=True,
                        )
                    raise error
            delay = self.policy.delay(attempt, hint) if retry and attempt <= self.policy.max_retries else None
            if delay is None:
                if cause is not None:
                    raise error from cause
                raise error
            logger.info("%s %s %s failed (%s); retry %d in %.2f s", self.provider, method, path, error, attempt, delay)
            await self.sleep(delay)

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ProviderUnavailable(
                f"{method} {path} answered {response.status_code} with a body that is not JSON",
                provider=self.provider,
                status_code=response.status_code,
            ) from exc

    @asynccontextmanager
    async def stream(
        self, url: str, *, authenticated: bool, chunk_size: int = 1 << 20
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """Open ``url`` as a stream of byte chunks, retrying until the body starts.

        ``authenticated=True`` goes through the API client (for example OpenAI's ``/content``);
        otherwise the CDN client, which carries no provider key. A connection dropped mid-body
        raises ``ProviderUnavailable`` (retryable: the download restarts, storage discards partials).
        """
        client = self.api if authenticated else self.cdn
        attempt = 0
        while True:
            attempt += 1
            request = client.build_request("GET", url.lstrip("/") if authenticated else url)
            try:
                response = await client.send(request, stream=True)
            except httpx.TransportError as exc:
                error: ProviderError = ProviderUnavailable(f"download failed: {type(exc).__name__}", provider=self.provider)
                delay = self.policy.delay(attempt) if attempt <= self.policy.max_retries else None
                if delay is None:
                    raise error from exc
                await self.sleep(delay)
                continue
            if not response.is_success:
                await response.aread()
                await response.aclose()
                error = self.to_error(response)
                retryable = is_retry_status(response.status_code) and error.retryable
                delay = self.policy.delay(attempt, getattr(error, "retry_after", None)) if retryable and attempt <= self.policy.max_retries else None
                if delay is None:
                    raise error
                await self.sleep(delay)
                continue
            content_type = response.headers.get("content-type", "")
            if "json" in content_type or "text/html" in content_type:
                await response.aread()
                await response.aclose()
                raise ProviderUnavailable(
                    f"download answered {content_type!r} instead of video bytes", provider=self.provider,
                    status_code=response.status_code,
                )

            async def chunks() -> AsyncIterator[bytes]:
                try:
                    async for chunk in response.aiter_bytes(chunk_size):
                        yield chunk
                except httpx.TransportError as exc:
                    raise ProviderUnavailable(
                        f"download interrupted: {type(exc).__name__}", provider=self.provider
                    ) from exc

            try:
                yield chunks()
            finally:
                await response.aclose()
            return
