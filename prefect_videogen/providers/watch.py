"""Many waits on one provider client share their status reads.

Each wait keeps its own :class:`~prefect_videogen.providers.polling.PollSchedule` and sleeps on it as
before; only the read at the end of a sleep changes. Where the provider can list its account's jobs
(APIFrame ``GET /v2/jobs?status=...``) and at least ``LISTING_MIN_JOBS`` jobs are waited on through
one client, one *sweep* answers every wait that comes due at most ``max_age`` seconds after it:

1. jobs still queued or processing come from the active listing's pages;
2. the watched jobs missing from a complete active listing (finished since, or too new to be listed)
   are looked for in the finished listing, at most one page per ``FINISHED_PAGE_YIELD`` of them (its
   order is not documented, so a listing that finds none of them costs at most a quarter more than
   reading them alone), and once a page has found that many, no further than two pages in a row
   that found fewer (past the pages that held them);
3. the rest are read one by one, once.

The read a wait aims at its job's predicted finish must not be older than the aim. Where such reads
come many at once (at least ``FINISHED_PAGE_YIELD`` per ``FRESH_GATHER_SECONDS``, as when thousands
of jobs end together), those asked within ``FRESH_GATHER_SECONDS`` of the first are looked for
together in the finished listing, read after the last of them asked; those not in it (aimed too early,
or failed) read their own job. Otherwise each reads its job alone, at once. Listed jobs are dated by
their own page, so the aims made from a long sweep's last pages are not early by the sweep's length.

Sweeps keep a pace (:attr:`JobWatcher.pace`): at least ``MIN_PACE`` apart, and after a sweep of many
requests (thousands of jobs: a hundred pages and more) ``SWEEP_REQUEST_PACE`` per request it made, so
that sweeping takes a small share of the waiting process however many jobs it waits on. A wait
sleeps until the next sweep may start, since polling sooner would be answered by the last one,
unless its job's predicted finish comes first, or less than a poll interval after that sweep (the
read after the sweep could not aim any more): that read is aimed at the finish. A job that reports
no progress is then seen to end up to one pace late: the price of sweeps that would otherwise take
most of the waiting process's CPU (BENCHMARKS.md). Short sweeps do not stretch a wait's own
interval: a batch of 3 s jobs is seen to end as soon as without a watcher.

A wait whose job read unchanged and that has no predicted finish to aim at (a queued job, or one
that reports no progress) parks (:meth:`JobWatcher.until_changed`): it sleeps until a sweep lists
its job changed or not at all, sweeping stops, or its deadline is near, instead of waking at every
sweep to find its job as it was. While any wait is parked, the watcher starts a sweep itself at
the :attr:`~JobWatcher.parked_pace` (``max_age``, or the pace where longer), as a parked wait's
growing interval would have polled; sweeps the other waits ask for wake them sooner.

The requests then grow with the number of sweeps, not with jobs times polls, and a provider's rate
limit sees a few requests a second however many jobs are waited on (figures: BENCHMARKS.md,
``bench/jobs_in_flight.py``).

Nothing is ever guessed: a job absent from the listings, or a listing that fails or is cut off,
falls back to reading that job on its own, exactly as without a watcher. A listing the provider
refuses (404/405: a gateway without it) turns sweeping off for that client.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Coroutine, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from prefect_videogen.errors import InvalidRequest, ProviderError
from prefect_videogen.models import VideoJob
from prefect_videogen.providers.base import Clock, ListsJobs, Sleep, VideoProvider

logger = logging.getLogger("prefect_videogen.providers.watch")

# Below this many watched jobs, reading each due job costs fewer requests than paging a listing.
LISTING_MIN_JOBS = 10
# A sweep at most this old answers a due read: the read is then up to this much earlier than asked.
# Also how often sweeps start while every wait is parked (JobWatcher.parked_pace).
DEFAULT_MAX_AGE = 5.0
# Sweeps start at most this often however short they are: a wait's shortest interval (PollSchedule's
# ``initial``), so a short sweep never makes a wait poll later than its own schedule would.
MIN_PACE = 1.0
# Missing jobs are read at most this many at once after a sweep.
FALLBACK_CONCURRENCY = 16
# The finished listing is paged at most once per this many jobs looked for in it (a page costs about
# as much as this many reads alone), and once a page has found this many, no further than two pages
# in a row that found fewer.
FINISHED_PAGE_YIELD = 4
# Reads aimed at jobs' finishes asked within this long of each other are looked for together.
FRESH_GATHER_SECONDS = 0.1
# Each request a sweep made (a listing page, a job read alone) puts this long between its start and the
# next sweep's, so that 10,000 jobs' ~100 pages are swept as far apart as the waiting process's CPU
# was measured best (BENCHMARKS.md). Counted, not timed: a sweep's wall time grows with a busy event
# loop (a batch flow's task runs) or a slow provider, and spacing sweeps by it left a batch's jobs
# unseen for several of their own lengths after they ended.
SWEEP_REQUEST_PACE = 0.12


class Snapshot:
    """Watched jobs as a sweep or a finish check read them: each one's listed object (or the job read
    alone), and when it was read.

    Two flat dicts rather than a (data, time) pair per job: with 10,000 jobs waited on, a sweep's
    pairs are 10,000 objects the garbage collector walks until the next sweep replaces them; a dict
    of floats it does not track (measured: BENCHMARKS.md).
    """

    __slots__ = ("data", "read_at", "requests")

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any] | VideoJob] = {}
        self.read_at: dict[str, float] = {}
        self.requests = 0  # made to read it: listing pages and jobs read alone

    def add(self, job_id: str, data: dict[str, Any] | VideoJob, read_at: float) -> None:
        self.data[job_id], self.read_at[job_id] = data, read_at

    def update(self, other: Snapshot) -> None:
        self.data.update(other.data)
        self.read_at.update(other.read_at)
        self.requests += other.requests


class JobWatcher:
    """Shares status reads among the waits of one provider client (see the module docstring).

    One watcher per provider object: ``JobWatcher.of(provider)``. Use :meth:`watching` around a
    wait and :meth:`observe` instead of ``provider.get_job``.
    """

    def __init__(
        self,
        provider: VideoProvider,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> None:
        # Weak: the registry below holds watchers by their provider, and a strong reference back would
        # keep every provider (and its connection pool) alive as long as the process.
        self._provider = weakref.ref(provider)
        self.clock, self.sleep = clock, sleep
        self.max_age = max_age
        self.listing = isinstance(provider, ListsJobs)
        self.finished_listing = self.listing
        self._watched: dict[str, tuple[VideoJob, int]] = {}  # job id -> (the job, number of waits on it)
        self._snapshot = Snapshot()
        self._swept_at = float("-inf")
        self._sweep_began = float("-inf")  # when the last sweep (or the one running) began
        self._spacing = 0.0  # the last finished sweep's requests x SWEEP_REQUEST_PACE
        self._sweep: _Shared | None = None
        self._aimed_at: deque[float] = deque()  # when the aimed reads of the last second were asked
        self._finish_check: _FinishCheck | None = None  # gathering aimed reads
        # Waits parked until their job changes: each one's (job id, its listed object then, deadline).
        self._parked: dict[asyncio.Future[None], tuple[str, object, float]] = {}
        self._ticker: asyncio.Future[None] | None = None  # sweeps at the pace while waits are parked
        self.sweeps = 0

    @property
    def provider(self) -> VideoProvider:
        provider = self._provider()
        if provider is None:  # only reachable through a watcher kept past its provider's life
            raise RuntimeError("the provider of this JobWatcher was garbage-collected")
        return provider

    @classmethod
    def of(cls, provider: VideoProvider, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> JobWatcher:
        """The provider object's watcher, created on first use."""
        watcher = _WATCHERS.get(provider)
        if watcher is None:
            watcher = _WATCHERS[provider] = cls(provider, clock=clock, sleep=sleep)
        return watcher

    @property
    def sweeping(self) -> bool:
        """Listing sweeps answer this client's waits (see the module docstring)."""
        return self.listing and len(self._watched) >= LISTING_MIN_JOBS

    @property
    def pace(self) -> float:
        """The least time between two sweeps' starts: ``MIN_PACE``, longer after a sweep of many
        requests (``SWEEP_REQUEST_PACE`` each)."""
        return max(MIN_PACE, self._spacing)

    @property
    def parked_pace(self) -> float:
        """How often the watcher starts a sweep itself while waits are parked: ``max_age``, or the
        pace where longer. A parked wait's job told it nothing new at its last read (queued, or no
        progress reported), and its own growing interval would have polled no more often."""
        return max(self.max_age, self.pace)

    def next_sweep_in(self) -> float:
        """Seconds until a sweep newer than the last one may start (0 when one may start now).

        A wait answered by sweeps that polls sooner learns nothing new: ``wait_for_job`` sleeps at
        least this long, except for the read aimed at its job's predicted finish.
        """
        return max(self._sweep_began + self.pace - self.clock(), 0.0)

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
            if self._parked and not self.sweeping:
                self._wake_parked(every=True)  # too few left to sweep for: each polls its own job

    async def until_changed(self, job: VideoJob, *, deadline: float) -> bool:
        """Until a sweep lists ``job`` otherwise than the last one did (or not at all), sweeping stops,
        or ``deadline`` (watcher's clock) is less than a :attr:`parked_pace` away. False, at once,
        where it does not wait: sweeps are off, the last one did not list the job, or the deadline
        is that near.

        A wait whose last read told it nothing new calls this instead of sleeping: polling again
        would wake it at every sweep only to find its job unchanged (10,000 queued jobs: most of the
        waiting process's wake-ups, BENCHMARKS.md). Sweeps go on at the parked pace while any wait is
        parked.
        """
        seen = self._snapshot.data.get(job.job_id)
        if seen is None or not self.sweeping or deadline - self.clock() <= self.parked_pace:
            return False
        woken = asyncio.get_running_loop().create_future()
        self._parked[woken] = (job.job_id, seen, deadline)
        if self._ticker is None:
            self._ticker = asyncio.ensure_future(self._tick())
        try:
            await woken
        finally:
            self._parked.pop(woken, None)
        return True

    async def _tick(self) -> None:
        """Sweeps at the parked pace for as long as waits are parked: they do not poll, so nothing
        else would start the sweep that wakes them (the other waits' sweeps do, where there are any)."""
        try:
            while self._parked:
                began = self._sweep_began
                await self.sleep(max(began + self.parked_pace - self.clock(), 0.0))
                if not self._parked:
                    break
                if self._sweep_began != began:
                    continue  # a sweep the other waits asked for came first
                if self._sweep is None:
                    self._sweep = _Shared(self._run_sweep())
                await self._sweep.wait()
        finally:
            self._ticker = None
            self._wake_parked(every=True)  # a sweep that raised: the waits go back to polling

    def _wake_parked(self, *, every: bool = False) -> None:
        """Wake the parked waits whose job the snapshot lists otherwise (or not at all), whose deadline
        is near, or ``every`` one."""
        now, listed = self.clock(), self._snapshot.data
        for woken, (job_id, seen, deadline) in list(self._parked.items()):
            if every or listed.get(job_id) != seen or deadline - now <= self.parked_pace:
                del self._parked[woken]
                if not woken.done():
                    woken.set_result(None)

    async def observe(self, job: VideoJob, *, max_age: float | None = None) -> tuple[VideoJob, float]:
        """The job's current status, from a sweep when one is worth it, else read alone; and when
        (on the watcher's clock) it was read.

        Args:
            max_age: how old (seconds) a sweep may be to answer; at most the watcher's own
                ``max_age``, and at least the time sweeps leave between them where they are long
                (:attr:`pace`). ``wait_for_job`` passes half of the delay it just slept, and 0 for
                the read aimed at a job's predicted finish: 0 is answered only by what is read
                after the call (see the module docstring).
        """
        if not self.sweeping:
            return await self._read_alone(job)
        if max_age == 0:
            return await self._observe_aimed(job)
        oldest = self.max_age if max_age is None else min(max_age, self.max_age)
        oldest = max(oldest, self._spacing)  # a sweep of many requests answers for longer
        if self._sweep is None and self.clock() - self._swept_at >= oldest:
            self._sweep = _Shared(self._run_sweep())
        if self._sweep is not None:
            await self._sweep.wait()
        return await self._answer(job, self._snapshot)

    async def _observe_aimed(self, job: VideoJob) -> tuple[VideoJob, float]:
        now = self.clock()
        self._aimed_at.append(now)
        while self._aimed_at[0] < now - 1.0:
            self._aimed_at.popleft()
        check = self._finish_check
        if check is None:
            if not self.finished_listing or len(self._aimed_at) * FRESH_GATHER_SECONDS < FINISHED_PAGE_YIELD:
                return await self._read_alone(job)  # too few at once to share a page
            check = self._finish_check = _FinishCheck()
            check.done = _Shared(self._run_finish_check(check))
        check.jobs[job.job_id] = job
        await check.done.wait()
        return await self._answer(job, check.found)

    async def _answer(self, job: VideoJob, snapshot: Snapshot) -> tuple[VideoJob, float]:
        data = snapshot.data.get(job.job_id)
        if data is None:
            return await self._read_alone(job)
        listed = data if isinstance(data, VideoJob) else cast(ListsJobs, self.provider).apply_listed(job, data)
        return listed, snapshot.read_at[job.job_id]

    async def _read_alone(self, job: VideoJob) -> tuple[VideoJob, float]:
        read = await self.provider.get_job(job)
        return read, self.clock()

    async def _run_sweep(self) -> None:
        started = self._sweep_began = self.clock()
        try:
            snapshot = await self._collect()
        except ProviderError as exc:
            snapshot = Snapshot()
            if isinstance(exc, InvalidRequest) and exc.status_code in (404, 405):
                self.listing = False
                logger.info("%s does not list jobs (%s); reading each job", self.provider.name, exc)
            else:
                logger.warning("%s job listing failed (%s); reading each job this time", self.provider.name, exc)
        finally:
            self._sweep = None
        self._snapshot, self._swept_at = snapshot, started
        self._spacing = snapshot.requests * SWEEP_REQUEST_PACE
        self.sweeps += 1
        self._wake_parked()

    async def _run_finish_check(self, check: _FinishCheck) -> None:
        try:
            await self.sleep(FRESH_GATHER_SECONDS)
        finally:
            self._finish_check = None  # the reads aimed from now on gather for the next check
        # Read after every gathered read was asked: never older than any of their aims. Not a whole
        # sweep: with the jobs dated by their own page, few aims are early, and a sweep (every active
        # job's page) cost more than the early ones' reads of their own (BENCHMARKS.md).
        check.found = await self._find_finished(check.jobs)

    async def _collect(self) -> Snapshot:
        provider = cast(ListsJobs, self.provider)
        active = await provider.list_active_jobs(clock=self.clock)
        snapshot = Snapshot()
        snapshot.requests = active.requests
        for job_id, data in active.jobs.items():
            if job_id in self._watched:
                snapshot.add(job_id, data, active.read_at[job_id])
        if not active.complete:
            return snapshot  # the rest read on their own when due
        missing = {job_id: job for job_id, (job, _) in self._watched.items() if job_id not in snapshot.data}
        snapshot.update(await self._find_finished(missing))
        return snapshot

    async def _find_finished(self, jobs: dict[str, VideoJob]) -> Snapshot:
        """``jobs`` from the finished listing (within its page budget), the rest read alone."""
        found = Snapshot()
        if self.finished_listing and len(jobs) >= FINISHED_PAGE_YIELD:
            try:
                finished = await cast(ListsJobs, self.provider).list_finished_jobs(
                    jobs,
                    max_pages=len(jobs) // FINISHED_PAGE_YIELD,
                    min_page_yield=FINISHED_PAGE_YIELD,
                    clock=self.clock,
                )
            except ProviderError as exc:  # read alone below; a gateway that lists active jobs only: for good
                if isinstance(exc, InvalidRequest) and exc.status_code in (400, 404, 405):
                    self.finished_listing = False
                logger.info("%s finished-job listing failed (%s); reading each", self.provider.name, exc)
            else:
                found.requests += finished.requests
                for job_id in finished.jobs.keys() & jobs.keys():
                    found.add(job_id, finished.jobs[job_id], finished.read_at[job_id])
        await self._read_each((job for job_id, job in jobs.items() if job_id not in found.data), into=found)
        return found

    async def _read_each(self, jobs: Iterable[VideoJob], *, into: Snapshot) -> None:
        gate = asyncio.Semaphore(FALLBACK_CONCURRENCY)

        async def one(job: VideoJob) -> None:
            async with gate:
                into.requests += 1
                try:
                    into.add(job.job_id, *await self._read_alone(job))
                except ProviderError as exc:  # left out: that waiter reads (and raises) on its own
                    logger.info("%s job %s: %s", self.provider.name, job.job_id, exc)

        await asyncio.gather(*(one(job) for job in jobs))


class _FinishCheck:
    """Aimed reads gathered to be looked for together in the finished listing."""

    def __init__(self) -> None:
        self.jobs: dict[str, VideoJob] = {}
        self.found = Snapshot()
        self.done: _Shared


class _Shared:
    """Work many waits await, each through a future of its own.

    A waiter cancelled (its task run stopped) must not cancel everyone's work: ``asyncio.shield``
    per waiter does that at two futures and two loop callbacks each, and with 10,000 waits answered
    by one sweep that was a tenth of the waiting process's CPU. Here a cancelled waiter cancels only
    its own future, and the work's end wakes each waiter once.
    """

    def __init__(self, work: Coroutine[Any, Any, None]) -> None:
        self._waiters: list[asyncio.Future[None]] = []
        self._task = asyncio.ensure_future(work)
        self._task.add_done_callback(self._wake)

    async def wait(self) -> None:
        """Until the work has ended; raises what it raised."""
        if self._task.done():
            return self._task.result()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _wake(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        for waiter in self._waiters:
            if waiter.done():
                continue
            if task.cancelled():
                waiter.cancel()
            elif error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(None)
        self._waiters.clear()


# One watcher per provider object, for as long as that object lives.
_WATCHERS: weakref.WeakKeyDictionary[VideoProvider, JobWatcher] = weakref.WeakKeyDictionary()
