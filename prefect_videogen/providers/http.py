"""Shared HTTP transport of the provider adapters: retries, error mapping, safe submits, streaming.

An adapter gives the transport its base URL, auth headers and, where its error bodies differ, a
function that turns an error response into one of our typed errors. Everything else is here once.

Paid submits: ``send(..., paid=True)`` re-sends only when the request provably created nothing:
the connection was never established (``httpx.ConnectError``/``ConnectTimeout``), or the server
answered 429 (a documented refusal: no job is created). A timeout or 5xx after the body was sent
may have created a job, so it is raised as ``ProviderUnavailable`` with ``maybe_created = True``
and never re-sent. An adapter whose provider dedupes by ``Idempotency-Key`` sends with
``paid=False`` plus the key. A connection that cannot be made at all is tried a couple of times,
quickly, then raised as ``ProviderUnavailable(unreachable=True)`` naming the URL: nothing was sent.

Every request goes through one retry loop (``HttpTransport._request``), and whether a failure is
retried is decided by :func:`prefect_videogen.providers.retry.should_retry` alone, the same function
the Prefect retry conditions use. Downloads resume with ``Range`` where they broke off
(:class:`_Download`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson

from prefect_videogen.errors import (
    AuthError,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from prefect_videogen.providers.base import DOWNLOAD_CHUNK_BYTES
from prefect_videogen.providers.retry import (
    NOT_SENT_ERRORS,
    RetryPolicy,
    parse_retry_after,
    should_retry,
)

logger = logging.getLogger("prefect_videogen.providers.http")

ErrorMapper = Callable[[httpx.Response, "ErrorInfo"], ProviderError | None]
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# Downloads cost nothing, so a dropped one is resumed and retried for this long before giving up.
DEFAULT_DOWNLOAD_BUDGET_SECONDS = 600.0
# API requests (not downloads) in flight at once through one transport; the rest wait their turn
# here, in order. httpcore's pool does its bookkeeping each time a request starts or ends, over every
# queued request and every connection (two syscalls per idle connection, and a count of the idle
# ones per idle one): with thousands of waits' reads falling due together, a pool of 256 connections
# and an unbounded queue made that a full core for minutes (BENCHMARKS.md, ``jobs_in_flight.py``).
API_REQUESTS_IN_FLIGHT = 16
# Kept alive: as many connections as the gate lets run at once, so a steady stream of polls reuses
# them instead of opening new TCP (and TLS) connections; room above that for streamed downloads
# through the API client (OpenAI's ``/content``), which do not pass the gate.
DEFAULT_LIMITS = httpx.Limits(
    max_connections=2 * API_REQUESTS_IN_FLIGHT, max_keepalive_connections=API_REQUESTS_IN_FLIGHT, keepalive_expiry=30.0
)
_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-trace-id", "trace-id")


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), built once per process.

    httpx builds a new context for every client, loading the CA bundle each time, and every transport
    opens clients; one context shared by all of them loads it once (cost: BENCHMARKS.md). A configured
    ``SSLContext`` is safe to share.
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
                    return str(body[key])
        text = response.text.strip()  # the caller has read the body
        return text[:300] or response.reason_phrase or f"HTTP {response.status_code}"


def json_object(value: object) -> dict[str, Any]:
    """``value`` where it is a JSON object, else an empty one: answers are read defensively."""
    return value if isinstance(value, dict) else {}


def default_error(provider: str, info: ErrorInfo) -> ProviderError:
    """Map an HTTP error to our tree by status code alone."""
    kwargs: dict[str, Any] = {"provider": provider, "status_code": info.status, "request_id": info.request_id}
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
        policy: retry policy; ``sleep`` and ``clock`` are injectable so tests never wait.
        download_budget: seconds a dropped download is resumed and retried before it fails.
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
        clock: Clock = time.monotonic,
        download_budget: float = DEFAULT_DOWNLOAD_BUDGET_SECONDS,
    ) -> None:
        self.provider = provider
        self.policy = policy or RetryPolicy()
        self.error_mapper = error_mapper
        self.sleep = sleep
        self.clock = clock
        self.download_budget = download_budget
        self.api = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=dict(headers or {}),
            auth=auth,
            timeout=timeout,
            transport=transport,
            limits=DEFAULT_LIMITS,
            verify=shared_ssl_context(),
        )
        self._api_gate = asyncio.Semaphore(API_REQUESTS_IN_FLIGHT)
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
        url = path.lstrip("/")

        async def send_once() -> httpx.Response:
            async with self._api_gate:
                return await self.api.request(method, url, **kwargs)

        return await self._request(
            send_once,
            what=f"{method} {path}",
            origin=self.base_url,
            paid=paid,
            retry=retry,
        )

    @property
    def base_url(self) -> str:
        return str(self.api.base_url)

    async def _request(
        self,
        send_once: Callable[[], Awaitable[httpx.Response]],
        *,
        what: str,
        origin: str,
        paid: bool,
        retry: bool = True,
    ) -> httpx.Response:
        """The one retry loop of the transport: ``send_once`` until it answers 2xx or must stop.

        Whether a failure is tried again is :func:`should_retry`'s decision alone; this loop only
        types the failure, counts attempts and sleeps the policy's delay. A connection that cannot
        be established at all is tried ``policy.max_connect_retries`` more times, quickly, and then
        raised as ``ProviderUnavailable(unreachable=True, maybe_created=False)`` naming ``origin``.
        """
        attempt = connect_failures = 0
        while True:
            attempt += 1
            hint: float | None = None
            cause: BaseException | None = None
            try:
                response = await send_once()
            except httpx.TransportError as exc:
                cause = exc
                allowed = should_retry(exc, paid=paid)
                if isinstance(exc, NOT_SENT_ERRORS):
                    connect_failures += 1
                    allowed = allowed and connect_failures <= self.policy.max_connect_retries
                    detail = f": {exc}" if str(exc) else ""
                    consequence = (
                        ", so no job was created: check the base URL and that the service is running"
                        if origin == self.base_url
                        else ""
                    )
                    error: ProviderError = ProviderUnavailable(
                        f"cannot connect to {origin} ({type(exc).__name__}{detail}); nothing was sent{consequence}",
                        provider=self.provider,
                        unreachable=True,
                    )
                else:
                    error = ProviderUnavailable(
                        f"{type(exc).__name__} during {what}", provider=self.provider, maybe_created=paid
                    )
            else:
                if response.is_success:
                    return response
                await response.aread()
                await response.aclose()
                error = self.to_error(response)
                if paid and isinstance(error, ProviderUnavailable) and not error.maybe_created:
                    # A 5xx or 408 after the body was sent: the provider may have created the job.
                    error = ProviderUnavailable(
                        error.detail,
                        provider=self.provider,
                        status_code=error.status_code,
                        request_id=error.request_id,
                        maybe_created=True,
                    )
                hint = getattr(error, "retry_after", None)
                allowed = should_retry(error, paid=paid)
            delay = (
                self.policy.delay(attempt, hint) if retry and allowed and attempt <= self.policy.max_retries else None
            )
            if delay is None:
                if cause is not None:
                    raise error from cause
                raise error
            logger.info("%s %s failed (%s); retry %d in %.2f s", self.provider, what, error, attempt, delay)
            await self.sleep(delay)

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.send(method, path, **kwargs)
        try:
            # orjson (Prefect's own JSON library) rather than ``response.json()``: faster on the
            # thousands of 100-job listing pages that 10,000 waits read (figures: BENCHMARKS.md).
            return orjson.loads(response.content)
        except ValueError as exc:
            raise ProviderUnavailable(
                f"{method} {path} answered {response.status_code} with a body that is not JSON",
                provider=self.provider,
                status_code=response.status_code,
            ) from exc

    @asynccontextmanager
    async def stream(
        self, url: str, *, authenticated: bool, chunk_size: int = DOWNLOAD_CHUNK_BYTES
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """Open ``url`` as one uninterrupted stream of byte chunks, resuming dropped connections.

        ``authenticated=True`` goes through the API client (for example OpenAI's ``/content``);
        otherwise the CDN client, which carries no provider key. Downloads are free, so they persist:
        a connection dropped mid-body is reopened with ``Range: bytes=N-`` from the bytes already
        yielded, with backoff, for up to ``download_budget`` seconds (see :class:`_Download`). The
        consumer (the storage's staging object, kept open meanwhile) sees one contiguous body.

        Raises:
            ProviderUnavailable: the budget ran out, or the server answered JSON/HTML instead of video.
            ProviderError: a final answer (404 expired, 403...) from the server.
        """
        client = self.api if authenticated else self.cdn
        download = _Download(self, client, url.lstrip("/") if authenticated else url, chunk_size)
        try:
            await download.open()
            yield download.chunks()
        finally:
            await download.aclose()


def _origin(url: str | httpx.URL) -> str:
    """``scheme://host[:port]`` of ``url``: CDN paths and queries may carry signed tokens, never shown."""
    parsed = httpx.URL(str(url))
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"


_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class DownloadRestart(ProviderUnavailable):
    """The object changed under a resumed download (other length or validator): start again from byte 0."""


class NotVideoBody(ProviderUnavailable):
    """A download answered JSON or HTML (an error page, an expiry notice) instead of video bytes."""

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return False  # the same URL answers the same page again


class _Download:
    """One download that resumes with HTTP ``Range`` where it broke off.

    Rules:
        * A drop after N bytes reopens with ``Range: bytes=N-`` (and ``If-Range`` with the first
          answer's ``ETag`` or ``Last-Modified`` when it had one). A ``206`` must carry
          ``Content-Range: bytes N-.../TOTAL`` with our offset and the original total; its body is
          appended. A ``200`` means the server ignored the range (or, with ``If-Range``, that the
          object changed): with the same length and validator it is the same object, so its first N
          bytes are skipped and the stream stays contiguous; otherwise :class:`DownloadRestart`.
        * Every reopen goes through the transport's one retry loop; transient failures of the
          reopen itself (5xx, refused) count against the same budget. Final answers (404, 403)
          and a JSON or HTML body instead of video are raised at once.
        * Reopens back off with the transport's policy and stop when ``download_budget`` seconds
          (on the transport's clock) have passed since the download started.
    """

    def __init__(self, transport: HttpTransport, client: httpx.AsyncClient, url: str, chunk_size: int) -> None:
        self.transport, self.client, self.url, self.chunk_size = transport, client, url, chunk_size
        self.origin = transport.base_url if client is transport.api else _origin(url)
        self.response: httpx.Response | None = None
        self.received = 0
        self.total: int | None = None
        self.validator: str | None = None
        self.started = transport.clock()
        self.failures = 0
        self.skip = 0  # bytes of a whole-body answer to drop (the server ignored our Range)

    async def open(self) -> None:
        while True:
            try:
                self.response = await self._open_once()
                return
            except ProviderUnavailable as exc:
                if isinstance(exc, DownloadRestart) or not should_retry(exc):
                    raise
                await self._back_off(exc)

    async def _open_once(self) -> httpx.Response:
        # Identity encoding: Range offsets count the bytes on the wire, which must be the file's bytes.
        headers = {"Accept-Encoding": "identity"}
        if self.received:
            headers["Range"] = f"bytes={self.received}-"
            if self.validator:
                headers["If-Range"] = self.validator
        transport = self.transport
        response = await transport._request(
            lambda: self.client.send(self.client.build_request("GET", self.url, headers=headers), stream=True),
            what=f"download from {self.origin}",
            origin=self.origin,
            paid=False,
        )
        content_type = response.headers.get("content-type", "")
        if "json" in content_type or "text/html" in content_type:
            await response.aread()
            await response.aclose()
            raise NotVideoBody(
                f"download answered {content_type!r} instead of video bytes",
                provider=transport.provider,
                status_code=response.status_code,
            )
        try:
            self._check_resumed(response)
        except BaseException:
            await response.aclose()
            raise
        return response

    def _check_resumed(self, response: httpx.Response) -> None:
        length = response.headers.get("content-length")
        validator = response.headers.get("etag") or response.headers.get("last-modified")
        if not self.received:
            self.total = int(length) if length and length.isdigit() else None
            self.validator = validator
            return
        changed = DownloadRestart(
            f"the video changed during its download ({response.status_code}, "
            f"Content-Range {response.headers.get('content-range')!r})",
            provider=self.transport.provider,
        )
        if response.status_code == 206:
            match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
            if not match or int(match[1]) != self.received:
                raise changed
            if match[3] != "*":
                if self.total is not None and int(match[3]) != self.total:
                    raise changed
                self.total = int(match[3])
            return
        same_length = self.total is not None and length is not None and length.isdigit() and int(length) == self.total
        if not same_length or (self.validator and validator != self.validator):
            raise changed
        self.skip = self.received  # a whole body again: drop what we already have

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, in pieces of about ``chunk_size`` bytes, across as many reopened responses as needed.

        Pieces are gathered here rather than by ``aiter_bytes(chunk_size)``, whose buffer is lost
        when the connection drops: every byte received counts towards the resume offset.
        """
        buffer = bytearray()
        while True:
            assert self.response is not None
            skip, self.skip = self.skip, 0
            problem: BaseException | None = None
            try:
                async for piece in self.response.aiter_bytes():
                    if skip:
                        dropped = min(skip, len(piece))
                        piece, skip = piece[dropped:], skip - dropped
                    self.received += len(piece)
                    buffer += piece
                    if len(buffer) >= self.chunk_size:
                        yield bytes(buffer)
                        buffer.clear()
            except httpx.TransportError as exc:
                if not should_retry(exc, paid=False):
                    raise
                problem = exc
            if buffer:
                yield bytes(buffer)
                buffer.clear()
            if self.total is not None and self.received >= self.total:
                return  # every byte arrived; only the connection's end was lost
            if problem is None:
                if self.total is None:
                    return
                problem = ProviderUnavailable(
                    f"download ended at byte {self.received} of {self.total}", provider=self.transport.provider
                )
            await self.response.aclose()
            await self._back_off(problem)
            await self.open()

    async def _back_off(self, problem: BaseException) -> None:
        transport = self.transport
        self.failures += 1
        delay = transport.policy.delay(self.failures) or transport.policy.max_delay
        spent = transport.clock() - self.started
        if spent + delay > transport.download_budget:
            of = f" of {self.total}" if self.total is not None else ""
            raise ProviderUnavailable(
                f"download from {self.origin} failed {self.failures} time(s) in {spent:.0f} s, the last at byte "
                f"{self.received}{of} ({type(problem).__name__}: {problem}); gave up after the "
                f"{transport.download_budget:.0f} s download budget",
                provider=transport.provider,
            ) from problem
        logger.info(
            "%s download from %s interrupted at byte %d (%s); resuming in %.2f s",
            transport.provider,
            self.origin,
            self.received,
            type(problem).__name__,
            delay,
        )
        await transport.sleep(delay)

    async def aclose(self) -> None:
        if self.response is not None:
            await self.response.aclose()
