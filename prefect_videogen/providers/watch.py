"""Many waits on one provider client share their status reads.

Each wait keeps its own :class:`~prefect_videogen.providers.polling.PollSchedule` and sleeps on it as
before; only the read at the end of a sleep changes. Where the provider can list its account's
active jobs (APIFrame ``GET /v2/jobs?status=QUEUED|PROCESSING``) and at least
``LISTING_MIN_JOBS`` jobs are waited on through one client, one *sweep* answers every wait that
comes due at most ``max_age`` seconds after it: jobs still queued or processing come from the listing pages, and
the watched jobs missing from a complete listing (finished since, or too new to be listed) are read
one by one, once. The requests then grow with the number of sweeps, not with jobs times polls, and
a provider's rate limit sees a few requests a second however many jobs are waited on (figures:
BENCHMARKS.md, ``bench/jobs_in_flight.py``).

Nothing is ever guessed: a job absent from the listing, or a listing that fails or is cut off,
falls back to reading that job on its own, exactly as without a watcher. A listing the provider
refuses (404/405: a gateway without it) turns sweeping off for that client.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from prefect_videogen.errors import InvalidRequest, ProviderError
from prefect_videogen.models import VideoJob
from prefect_videogen.providers.base import Clock, ListsJobs, VideoProvider

logger = logging.getLogger("prefect_videogen.providers.watch")

# Below this many watched jobs, reading each due job costs fewer requests than paging a listing.
LISTING_MIN_JOBS = 10
# A sweep at most this old answers a due read: the read is then up to this much earlier than asked.
DEFAULT_MAX_AGE = 2.0
# Missing jobs are read at most this many at once after a sweep.
FALLBACK_CONCURRENCY = 16


class JobWatcher:
    """Shares status reads among the waits of one provider client (see the module docstring).

    One watcher per provider object: ``JobWatcher.of(provider)``. Use :meth:`watching` around a
    wait and :meth:`observe` instead of ``provider.get_job``.
    """

    def __init__(
        self, provider: VideoProvider, *, clock: Clock = time.monotonic, max_age: float = DEFAULT_MAX_AGE
    ) -> None:
        # Weak: the registry below holds watchers by their provider, and a strong reference back would
        # keep every provider (and its connection pool) alive as long as the process.
        self._provider = weakref.ref(provider)
        self.clock = clock
        self.max_age = max_age
        self.listing = isinstance(provider, ListsJobs)
        self._watched: dict[str, tuple[VideoJob, int]] = {}  # job id -> (the job, number of waits on it)
        self._snapshot: dict[str, tuple[dict[str, Any] | VideoJob, float]] = {}  # job id -> (data, read at)
        self._swept_at = float("-inf")
        self._sweep: asyncio.Future[None] | None = None
        self.sweeps = 0

    @property
    def provider(self) -> VideoProvider:
        provider = self._provider()
        if provider is None:  # only reachable through a watcher kept past its provider's life
            raise RuntimeError("the provider of this JobWatcher was garbage-collected")
        return provider

    @classmethod
    def of(cls, provider: VideoProvider, *, clock: Clock = time.monotonic) -> JobWatcher:
        """The provider object's watcher, created on first use."""
        watcher = _WATCHERS.get(provider)
        if watcher is None:
            watcher = _WATCHERS[provider] = cls(provider, clock=clock)
        return watcher

    @contextmanager
    def watching(self, job: VideoJob) -> Iterator[None]:
        """Count ``job`` among the watched jobs for as long as it is waited on."""
        first, count = self._watched.get(job.job_id, (job, 0))
        self._watched[job.job_id] = (first, count + 1)
        try:
            yield
        finally:
            first, count = self._watched.pop(job.job_id)
            if count > 1:
                self._watched[job.job_id] = (first, count - 1)

    async def observe(self, job: VideoJob, *, max_age: float | None = None) -> tuple[VideoJob, float]:
        """The job's current status, from a sweep when one is worth it, else read alone; and when
        (on the watcher's clock) it was read.

        Args:
            max_age: how old (seconds) a sweep may be to answer; at most the watcher's own
                ``max_age``. ``wait_for_job`` passes half of the delay it just slept, so a job
                polled every 0.5 s is never answered from data older than 0.25 s, and 0 for the
                read aimed at a job's predicted finish: 0 reads the job alone, now.
        """
        if not self.listing or len(self._watched) < LISTING_MIN_JOBS or max_age == 0:
            return await self._read_alone(job)
        oldest = self.max_age if max_age is None else min(max_age, self.max_age)
        if self._sweep is None and self.clock() - self._swept_at > oldest:
            self._sweep = asyncio.ensure_future(self._run_sweep())
        if self._sweep is not None:
            # Shielded: one waiter cancelled (its task run stopped) must not cancel everyone's sweep.
            await asyncio.shield(self._sweep)
        found = self._snapshot.get(job.job_id)
        if found is None:
            return await self._read_alone(job)
        data, read_at = found
        return (data if isinstance(data, VideoJob) else cast(ListsJobs, self.provider).apply_listed(job, data)), read_at

    async def _read_alone(self, job: VideoJob) -> tuple[VideoJob, float]:
        read = await self.provider.get_job(job)
        return read, self.clock()

    async def _run_sweep(self) -> None:
        started = self.clock()
        try:
            snapshot = await self._collect()
        except ProviderError as exc:
            snapshot = {}
            if isinstance(exc, InvalidRequest) and exc.status_code in (404, 405):
                self.listing = False
                logger.info("%s does not list jobs (%s); reading each job", self.provider.name, exc)
            else:
                logger.warning("%s job listing failed (%s); reading each job this time", self.provider.name, exc)
        finally:
            self._sweep = None
        self._snapshot, self._swept_at = snapshot, started
        self.sweeps += 1

    async def _collect(self) -> dict[str, tuple[dict[str, Any] | VideoJob, float]]:
        listed_at = self.clock()  # dated when asked for: within one request's time of the truth
        active, complete = await cast(ListsJobs, self.provider).list_active_jobs()
        snapshot: dict[str, tuple[dict[str, Any] | VideoJob, float]] = {
            job_id: (data, listed_at) for job_id, data in active.items() if job_id in self._watched
        }
        if not complete:
            return snapshot  # the rest read on their own when due
        missing = [job for job_id, (job, _) in self._watched.items() if job_id not in snapshot]
        gate = asyncio.Semaphore(FALLBACK_CONCURRENCY)

        async def one(job: VideoJob) -> None:
            async with gate:
                try:
                    snapshot[job.job_id] = await self._read_alone(job)
                except ProviderError as exc:  # left out: that waiter reads (and raises) on its own
                    logger.info("%s job %s: %s", self.provider.name, job.job_id, exc)

        await asyncio.gather(*(one(job) for job in missing))
        return snapshot


# One watcher per provider object, for as long as that object lives.
_WATCHERS: weakref.WeakKeyDictionary[VideoProvider, JobWatcher] = weakref.WeakKeyDictionary()
