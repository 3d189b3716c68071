"""The interface every provider implements, and the one poll loop that waits on any of them.

Nothing here imports Prefect: providers are plain async code, usable and testable on their own.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import ClassVar

from prefect_videogen.catalog import VideoPlan
from prefect_videogen.errors import ContentRejected, JobFailed, JobTimedOut
from prefect_videogen.models import JobStatus, VideoJob

logger = logging.getLogger("prefect_videogen.providers")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DOWNLOAD_CHUNK_BYTES = 1 << 20


def map_status(table: dict[str, JobStatus], raw: str | None) -> JobStatus:
    """Map a provider status word through ``table`` (case-insensitive).

    An unknown word counts as still running: the poll loop's deadline bounds it, and it is never
    guessed to be queued, done or failed.
    """
    status = table.get((raw or "").strip().lower())
    if status is None:
        logger.warning("unknown provider status %r; treating it as still running", raw)
        return JobStatus.RUNNING
    return status


class VideoProvider(ABC):
    """Submit a job, read its status, stream its video.

    Implementations map our models to one provider's HTTP calls and back; transport, retries and
    error mapping are shared (``prefect_videogen.providers.http``).
    """

    name: ClassVar[str]

    @property
    def account_id(self) -> str:
        """A non-secret identity of the account jobs are billed to (for cache keys and the ledger)."""
        return "default"

    @abstractmethod
    async def submit(self, plan: VideoPlan, *, idempotency_key: str | None = None) -> VideoJob:
        """Create a job. Paid: implementations never re-send it unless the provider dedupes it."""

    @abstractmethod
    async def get_job(self, job: VideoJob) -> VideoJob:
        """Read the job's current status."""

    @abstractmethod
    def stream_video(self, job: VideoJob) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Open the finished job's video as an async iterator of byte chunks."""

    async def aclose(self) -> None:
        """Release connections."""

    async def __aenter__(self) -> VideoProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def raise_for_job(job: VideoJob) -> None:
    """Raise the typed error for a failed or canceled job; do nothing otherwise."""
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELED):
        return
    error = job.provider_data.get("rejection")
    if error:
        rejected = ContentRejected(
            job.error_message or "blocked by the provider's content policy",
            provider=job.provider,
            job_id=job.job_id,
            code=job.error_code,
            stage=error.get("stage"),
            charged=error.get("charged"),
        )
        rejected.job = job
        raise rejected
    failed = JobFailed(
        job.error_message or f"job ended with status {job.raw_status!r}",
        provider=job.provider,
        job_id=job.job_id,
        code=job.error_code,
        charged=job.provider_data.get("charged"),
    )
    failed.job = job
    raise failed


class PollSchedule:
    """When to poll next: the provider's hint when it gives one, else a capped growing interval.

    Args:
        initial: first interval in seconds.
        factor: growth per poll.
        maximum: cap; also the worst-case lag between a job finishing and us noticing.
    """

    def __init__(self, initial: float = 1.0, factor: float = 1.5, maximum: float = 6.0) -> None:
        self.initial, self.factor, self.maximum = initial, factor, maximum
        self._next = initial

    def next_delay(self, hint: float | None) -> float:
        if hint is not None and hint > 0:
            return min(hint, self.maximum)
        delay = self._next
        self._next = min(self._next * self.factor, self.maximum)
        return delay


async def wait_for_job(
    provider: VideoProvider,
    job: VideoJob,
    *,
    timeout: float = 1800.0,
    schedule: PollSchedule | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    on_update: Callable[[VideoJob], None | Awaitable[None]] | None = None,
) -> VideoJob:
    """Poll ``job`` until it is terminal or ``timeout`` seconds pass on ``clock``.

    Logs status changes only. Re-reads the provider's poll hint on every iteration.

    Returns:
        The succeeded job.

    Raises:
        JobFailed / ContentRejected: the job ended unsuccessfully.
        JobTimedOut: no terminal status before the deadline; the job id stays valid.
    """
    schedule = schedule or PollSchedule()
    started = clock()
    deadline = started + timeout
    last_status = None
    while True:
        if job.raw_status != last_status:
            logger.info("%s job %s: %s", job.provider, job.job_id, job.raw_status)
            last_status = job.raw_status
        if on_update and inspect.isawaitable(outcome := on_update(job)):
            await outcome
        if job.status.is_terminal:
            raise_for_job(job)
            return job
        now = clock()
        if now >= deadline:
            raise JobTimedOut(
                provider=job.provider, job_id=job.job_id, waited_seconds=now - started, last_status=job.raw_status
            )
        await sleep(min(schedule.next_delay(job.poll_after_seconds), max(deadline - now, 0.0)))
        job = await provider.get_job(job)
