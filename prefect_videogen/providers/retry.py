"""The one retry policy: which failures to retry and how long to wait. Pure and table-tested.

Modelled on openai-python's ``_base_client``: honour ``retry-after-ms``, then ``Retry-After`` as
seconds or an HTTP date (capped), else capped exponential backoff with jitter.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({408, 409, 429})


def is_retry_status(status: int) -> bool:
    return status in RETRY_STATUSES or status >= 500


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
        initial_delay: first backoff in seconds, doubling per retry.
        max_delay: cap of the computed backoff.
        max_retry_after: cap of a server-requested wait; beyond it we give up rather than stall.
        jitter: fraction of the backoff taken off at random, so clients do not retry in lockstep.
    """

    max_retries: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 120.0
    jitter: float = 0.25

    def delay(self, retry: int, server_hint: float | None = None, *, rand: Callable[[], float] = random.random) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based); None when the server's hint is too long."""
        if server_hint is not None:
            return server_hint if server_hint <= self.max_retry_after else None
        backoff = min(self.initial_delay * 2 ** (retry - 1), self.max_delay)
        return backoff * (1.0 - self.jitter * rand())
