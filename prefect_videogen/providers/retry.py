"""The one retry policy: which failures to retry and how long to wait. Pure and table-tested.

:func:`should_retry` is the only place that decides whether a failure is tried again: the HTTP
transport's loop asks it about raw answers (a status code, an ``httpx`` exception) and every Prefect
``retry_condition_fn`` asks it about the typed error the step raised.

Delays are modelled on openai-python's ``_base_client``: honour ``retry-after-ms``, then
``Retry-After`` as seconds or an HTTP date (capped), else capped exponential backoff with jitter.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

from prefect_videogen.errors import VideoGenError

# 408 (the server gave up reading the request), 429 (a refusal: nothing was done) and 5xx (an outage)
# are worth another try of a free call. 409 is not: an idempotency key reused with another body, or
# a state conflict, answers the same again.
RETRY_STATUSES = frozenset({408, 429})
# A paid call that the provider does not dedupe is re-sent only after a documented refusal.
PAID_RETRY_STATUSES = frozenset({429})
# Transport failures that happen before any byte of the request is sent: nothing can have been created.
NOT_SENT_ERRORS: tuple[type[BaseException], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def is_retry_status(status: int, *, paid: bool = False) -> bool:
    if paid:
        return status in PAID_RETRY_STATUSES
    return status in RETRY_STATUSES or status >= 500


def should_retry(error: BaseException | int | None, *, paid: bool = False) -> bool:
    """Whether the failed step is worth another attempt. Pure: the one retry decision of the package.

    Args:
        error: an HTTP status code, an ``httpx`` transport exception (both as the transport sees
            them), or the typed error a step raised (as a Prefect retry condition sees it); None
            (no failure) is never retried.
        paid: the call creates a billable job that the provider does not dedupe. It matters only
            for raw answers: a typed error already says whether its request may have created a job
            (``ProviderUnavailable.maybe_created``).

    Rules:
        * status: free calls retry 408, 429 and 5xx; paid calls only 429 (a 5xx or 408 after the
          body was sent may have created the job).
        * transport: a connection never established (refused, DNS, connect timeout) is retried,
          paid or not: nothing reached the server. Anything after sending (read timeout, dropped
          connection) is retried only for a free call.
        * typed errors: ``ProviderUnavailable`` is retried unless the job may exist
          (``maybe_created``). An unreachable endpoint (``unreachable``) is not retried for a
          paid step: the transport already retried the connection quickly, a wrong ``base_url``
          or a stopped service does not heal in minutes, and the slow retries only delayed a refused
          submit's error by minutes. For a free step (waiting on or downloading a job that exists and is
          paid for) it is retried: the wait's deadline or the download budget bounds it. Every
          other error says it by its type (``JobTimedOut``, ``VerificationFailed``, ``JobFailed``,
          ``DownloadFailed``, auth and request errors are final; ``RateLimited`` and
          ``StorageError`` are not). Anything that is not a :class:`VideoGenError` is a bug, not
          a transient fault.
    """
    if error is None:
        return False
    if isinstance(error, bool):
        raise TypeError("should_retry takes an error or a status code, not a bool")
    if isinstance(error, int):
        return is_retry_status(error, paid=paid)
    if isinstance(error, httpx.TransportError):
        return isinstance(error, NOT_SENT_ERRORS) or not paid
    if isinstance(error, VideoGenError):
        if paid and getattr(error, "unreachable", False):
            return False
        return bool(error.retryable)  # ProviderUnavailable: not maybe_created
    return False


def is_retryable(exc: BaseException) -> bool:
    """Tell whether ``exc`` is worth another attempt of the same, idempotent step: :func:`should_retry`'s free-call form."""
    return should_retry(exc, paid=False)


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait, from ``retry-after-ms`` or ``Retry-After``; None if absent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if (ms := lowered.get("retry-after-ms")) is not None:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - (now or datetime.now(timezone.utc))).total_seconds(), 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to wait.

    Attributes:
        max_retries: retries after the first attempt.
        max_connect_retries: retries of a connection that could not be established at all: a few
            quick ones ride out a restarting proxy; more would only delay a configuration error.
        initial_delay: first backoff in seconds, doubling per retry.
        max_delay: cap of the computed backoff.
        max_retry_after: cap of a server-requested wait; beyond it we give up rather than stall.
        jitter: fraction of the backoff taken off at random, so clients do not retry in lockstep.
    """

    max_retries: int = 3
    max_connect_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 120.0
    jitter: float = 0.25

    def delay(
        self, retry: int, server_hint: float | None = None, *, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based); None when the server's hint is too long."""
        if server_hint is not None:
            return server_hint if server_hint <= self.max_retry_after else None
        backoff = min(self.initial_delay * 2.0 ** (retry - 1), self.max_delay)
        return backoff * (1.0 - self.jitter * rand())
