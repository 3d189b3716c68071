"""The interface every provider implements, the capabilities some add, and the typed error a failed job raises.

Every client implements :class:`VideoProvider` (submit, read, stream). What only some providers can
do is a capability: a small ``typing.Protocol`` the client implements or not, checked with
``isinstance(client, Quotes)`` where it is used (or ``issubclass`` on a block's client class before
any client exists), instead of flags and ``NotImplementedError`` stubs on the base class:

- :class:`Quotes`: prices a request without creating a job (Scenario's dry run).
- :class:`ListsJobs`: lists the account's active and finished jobs, so many waits share one listing.
- :class:`FindsJobs`: finds the job of a submit whose answer was lost (never pays again).
- :class:`Idempotent`: ``submit`` honours ``idempotency_key``: the same key replays the first job.

The poll loop that waits on any provider is :mod:`prefect_videogen.providers.polling`. Nothing here
imports Prefect: providers are plain async code, usable and testable on their own.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

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

    async def aclose(self) -> None:  # noqa: B027 (a provider without connections has nothing to release)
        """Release connections."""

    async def __aenter__(self) -> VideoProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# Capabilities. Members are methods only, so that ``issubclass`` works on a client class too (the
# flows decide on a quote from the block's client class, before any client is built). A class opts
# out of an inherited capability by setting the method to None (typing's protocol rule).


@runtime_checkable
class Quotes(Protocol):
    """Prices a request without creating a job (Scenario's ``?dryRun=true``).

    The flows ask for the quote before the submit, reserve the larger of quote and catalog
    estimate against the budget, and book the quote as the job's *quoted* cost.
    """

    async def quote(self, plan: VideoPlan) -> tuple[float, str]:
        """The price of ``plan`` as (amount, unit), e.g. ``(12.0, "creative_units")``. Creates no job."""
        ...


class Listing(NamedTuple):
    """What a paged job listing found."""

    jobs: dict[str, dict[str, Any]]
    """Raw provider job objects by id."""
    complete: bool
    """Every job asked for is accounted for: not cut off at its page limit, nor in a shape we do not know."""
    requests: int
    """Pages read."""
    read_at: dict[str, float]
    """When the answer of the page that listed each job arrived, on the caller's clock. Per page, not
    per listing: a 100-page sweep takes seconds, and dating its last pages at its start made those
    jobs look seconds further behind than they were, so reads aimed at their finish came too early."""


@runtime_checkable
class ListsJobs(Protocol):
    """Lists the account's jobs in pages: the queued and processing ones, and finished ones by id.

    Waits on many jobs through one client then share one listing
    (:class:`~prefect_videogen.providers.watch.JobWatcher`) instead of each polling its job.
    """

    async def list_active_jobs(self, *, clock: Clock = time.monotonic) -> Listing:
        """The account's queued and processing jobs; complete when that is all of them, including a
        job that moved from queued to processing while the listing was read (the watcher takes a job
        missing from a complete listing for finished)."""
        ...

    async def list_finished_jobs(
        self, wanted: Collection[str], *, max_pages: int, min_page_yield: int = 0, clock: Clock = time.monotonic
    ) -> Listing:
        """Those of ``wanted`` found among the account's finished jobs within ``max_pages`` pages; once a
        page has found ``min_page_yield`` of them, read no further than two pages in a row that found fewer.

        Only objects that answer as fully as ``get_job`` would (a finished job with its result and
        its charge) are returned; complete when every wanted job was found.
        """
        ...

    def apply_listed(self, job: VideoJob, data: dict[str, Any]) -> VideoJob:
        """``job`` updated from its object in a listing (the same shape ``get_job`` reads)."""
        ...


@runtime_checkable
class FindsJobs(Protocol):
    """Finds the job a submit created when its answer never arrived (a crash, a timeout, a 5xx).

    Called with the submit's claim (:class:`~prefect_videogen.spend.claims.JobClaim`: ``key``,
    ``created_at``, the request); a provider without it leaves such a claim ``SubmitUncertain``.
    """

    async def find_job(self, plan: VideoPlan, claim: Any) -> VideoJob | None:
        """The job the claimed submit created, or None when none is found. Never pays for a new one."""
        ...


@runtime_checkable
class Idempotent(Protocol):
    """``submit(plan, idempotency_key=k)`` honours ``k``: the same key replays the first job, billed once."""

    def idempotency_window(self) -> timedelta | None:
        """How long the provider remembers a key (None: as long as the job exists)."""
        ...


#: The capabilities by the name the docs and ``ProviderInfo.capabilities`` use.
CAPABILITIES: dict[str, type] = {
    "quotes": Quotes,
    "lists jobs": ListsJobs,
    "finds jobs": FindsJobs,
    "idempotent": Idempotent,
}


def capabilities_of(client: object) -> list[str]:
    """The capability names ``client`` (an instance or a client class) implements, in ``CAPABILITIES`` order."""
    if isinstance(client, type):
        return [name for name, protocol in CAPABILITIES.items() if issubclass(client, protocol)]
    return [name for name, protocol in CAPABILITIES.items() if isinstance(client, protocol)]


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
