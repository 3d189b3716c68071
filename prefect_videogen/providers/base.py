"""The interface every provider implements, and the typed error a failed job raises.

The poll loop that waits on any provider is :mod:`prefect_videogen.providers.polling`. Nothing here
imports Prefect: providers are plain async code, usable and testable on their own.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar

from prefect_videogen.catalog import VideoPlan
from prefect_videogen.errors import ContentRejected, JobFailed
from prefect_videogen.models import JobStatus, VideoJob

logger = logging.getLogger("prefect_videogen.providers")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# The size of the pieces a provider's ``stream_video`` yields (the HTTP download and the local renderer).
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
    # True where the provider lists its account's queued and processing jobs in pages: waits on
    # many jobs through one client then share one listing (``prefect_videogen.providers.watch``).
    lists_active_jobs: ClassVar[bool] = False

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

    async def list_active_jobs(self) -> tuple[dict[str, dict[str, Any]], bool]:
        """The account's queued and processing jobs as raw provider objects by id, and whether that is all of them."""
        raise NotImplementedError(f"{self.name} does not list jobs")

    def apply_listed(self, job: VideoJob, data: dict[str, Any]) -> VideoJob:
        """``job`` updated from its object in a listing (the same shape ``get_job`` reads)."""
        raise NotImplementedError(f"{self.name} does not list jobs")

    @abstractmethod
    def stream_video(self, job: VideoJob) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Open the finished job's video as an async iterator of byte chunks."""

    async def aclose(self) -> None:  # noqa: B027 (a provider without connections has nothing to release)
        """Release connections."""

    async def __aenter__(self) -> VideoProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def raise_for_job(job: VideoJob) -> None:
    """Raise the typed error for a failed or canceled job; do nothing otherwise."""
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELED):
        return
    if job.rejection is not None:
        rejected = ContentRejected(
            job.error_message or "blocked by the provider's content policy",
            provider=job.provider,
            job_id=job.job_id,
            code=job.error_code,
            stage=job.rejection.stage,
            charged=job.rejection.charged,
        )
        rejected.job = job
        raise rejected
    failed = JobFailed(
        job.error_message or f"job ended with status {job.raw_status!r}",
        provider=job.provider,
        job_id=job.job_id,
        code=job.error_code,
        charged=job.charged,
    )
    failed.job = job
    raise failed
