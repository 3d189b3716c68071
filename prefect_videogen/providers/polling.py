"""Waiting on a job: when to poll next (:class:`PollSchedule`) and the one poll loop (:func:`wait_for_job`).

It works on any :class:`~prefect_videogen.providers.base.VideoProvider`; where the provider lists its
active jobs, the waits on one provider object share their reads through
:class:`~prefect_videogen.providers.watch.JobWatcher`. Plain Python: no Prefect import.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext

from prefect_videogen.errors import JobTimedOut
from prefect_videogen.models import JobStatus, VideoJob
from prefect_videogen.providers.base import Clock, ListsJobs, Sleep, VideoProvider, raise_for_job
from prefect_videogen.providers.watch import JobWatcher

logger = logging.getLogger("prefect_videogen.providers")


class PollSchedule:
    """When to poll next: the provider's hint, the job's progress, else a capped growing interval.

    One schedule serves one wait (it remembers the progress it has seen). Without progress it is the
    plain growing interval: ``initial`` x ``factor`` per poll up to ``maximum``, or the provider's
    hint (capped at ``maximum``) when it sends one; while the job is queued, a hint shorter than the
    growing interval is stretched to it.

    Once progress (0..1) has moved between two polls, it estimates the time left from the rate of
    progress and sleeps ``share`` of it (at most ``long_maximum``) while the finish is more than
    ``maximum`` away, then polls just after the predicted finish; never sooner than a hint (polls and
    lag per job: BENCHMARKS.md, ``bench/polling.py``). The rate is the faster of the
    rate since the first sample and over the last two, so a speeding-up job shortens the wait; the
    lag stays under ``maximum`` unless the job ends before ``share`` of its predicted time left,
    and is at worst ``long_maximum`` when progress misleads (a job that ends halfway).

    Aiming at the finish: progress comes in whole percents, so a rate measured over a short time
    is rough. While the samples span less time than is left, and an interval still fits before
    the finish, it polls at the usual interval once more instead of aiming. It then aims
    ``margin_share`` of the job's predicted length past the finish (at most ``margin``), so a short
    job is seen soon after it ends at the price of about one more poll.

    Args:
        initial: first interval in seconds; also the shortest wait chosen from an estimate.
        factor: growth per poll.
        maximum: cap of every interval not stretched by an estimate; the worst-case lag between a
            job finishing and us noticing when no progress is reported.
        long_maximum: cap of an interval stretched by a progress estimate.
        share: the part of the estimated time left slept while the finish is far.
        margin: at most this many seconds past the predicted finish to poll at.
        margin_share: the part of the job's predicted length to poll at past its predicted finish.

    Example:
        ```python
        schedule = PollSchedule()
        schedule.next_delay(None)                             # 1.0, then 1.5, 2.25... up to 6.0
        schedule.next_delay(None, progress=0.30, elapsed=36)  # first sample: still the growing interval
        schedule.next_delay(None, progress=0.35, elapsed=42)  # 78 s left: sleeps 30 s
        ```
    """

    def __init__(
        self,
        initial: float = 1.0,
        factor: float = 1.5,
        maximum: float = 6.0,
        *,
        long_maximum: float = 30.0,
        share: float = 0.5,
        margin: float = 0.25,
        margin_share: float = 0.02,
    ) -> None:
        self.initial, self.factor, self.maximum = initial, factor, maximum
        self.long_maximum, self.share, self.margin = max(long_maximum, maximum), share, margin
        self.margin_share = margin_share
        self._next = initial
        self.near_finish = False  # the last delay aims just past the predicted finish
        self.aim: float | None = None  # after the last delay: seconds to just past the predicted finish
        self.floor = initial  # after the last delay: the shortest the delay could have been (hint or initial)
        self._first: tuple[float, float] | None = None  # (elapsed, progress) of the first sample
        self._last: tuple[float, float] | None = None

    def next_delay(
        self,
        hint: float | None,
        *,
        progress: float | None = None,
        elapsed: float | None = None,
        age: float = 0.0,
        queued: bool = False,
    ) -> float:
        """Seconds to sleep before the next poll.

        Args:
            hint: the provider's poll hint in seconds, if it sent one: never polled sooner than it
                (capped at ``maximum``).
            progress: the job's reported progress (0..1), if any.
            elapsed: when ``progress`` was read, in seconds since the wait started (one clock for
                every call).
            age: how long ago that read was: a read shared with other waits
                (:class:`~prefect_videogen.providers.watch.JobWatcher`) can be older than the poll
                it answers, and dating it at the poll would make the job look slower than it is.
            queued: the job is still waiting to start. A hint is then stretched to the growing
                interval: a queued job cannot finish before it has started and reported progress,
                and a short hint (OpenAI's is 1 s) would otherwise poll a long queue every second.
        """
        growing = self._next
        self._next = min(self._next * self.factor, self.maximum)
        hinted = min(hint, self.maximum) if hint is not None and hint > 0 else None
        if hinted is None:
            interval = growing
        elif queued:
            interval = max(hinted, growing)
        else:
            interval = hinted
        # A hint is the earliest the server wants the next poll; without one, ``initial`` keeps a
        # job whose progress creeps towards 1.0 from being polled in a tight loop.
        floor = self.floor = self.initial if hinted is None else hinted
        left = self.estimate_left(progress, elapsed)
        self.near_finish, self.aim = False, None
        if left is None:
            return interval
        left = max(left - age, 0.0)
        aim = self.aim = left + min(self.margin, self.margin_share * ((elapsed or 0.0) + age + left), left)
        if left > self.maximum:  # far from the finish: a share of the time left
            return max(min(max(left * self.share, self.initial), self.long_maximum), floor)
        if self._baseline() < left and aim - interval >= floor:
            # A rate measured over less time than is left is too rough to aim with (whole percents
            # over half a second are +-6 %): one more sample at the usual interval, then aim.
            return max(interval, floor)
        self.near_finish = True  # just after the predicted finish
        return max(min(aim, self.maximum), floor)

    def _baseline(self) -> float:
        """Seconds between the first and the last progress sample of the current estimate."""
        return self._last[0] - self._first[0] if self._first and self._last else 0.0

    def estimate_left(self, progress: float | None, elapsed: float | None) -> float | None:
        """Record a progress sample; the estimated seconds left, or None without a moving rate."""
        if progress is None or elapsed is None or not 0.0 < progress < 1.0:
            return None
        if self._first is None or self._last is None or progress < self._last[1]:
            self._first = self._last = (elapsed, progress)  # first sample, or progress went back
            return None
        if progress == self._last[1]:
            return None  # a stall says nothing about the time left: fall back to hint or interval
        previous, self._last = self._last, (elapsed, progress)
        rates = [(progress - p) / (elapsed - t) for t, p in (self._first, previous) if elapsed > t and progress > p]
        return (1.0 - progress) / max(rates) if rates else None


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

    Logs status changes only. Re-reads the provider's poll hint and the job's progress on every
    iteration (see :class:`PollSchedule`). Where the provider lists active jobs, the reads of all
    waits on the same provider object are shared (:class:`~prefect_videogen.providers.watch.JobWatcher`).

    Returns:
        The succeeded job.

    Raises:
        JobFailed / ContentRejected: the job ended unsuccessfully.
        JobTimedOut: no terminal status before the deadline; the job id stays valid.
    """
    schedule = schedule or PollSchedule()
    watcher = JobWatcher.of(provider, clock=clock, sleep=sleep) if isinstance(provider, ListsJobs) else None
    with watcher.watching(job) if watcher else nullcontext():
        return await _poll_until_done(provider, job, watcher, timeout, schedule, clock, sleep, on_update)


async def _poll_until_done(
    provider: VideoProvider,
    job: VideoJob,
    watcher: JobWatcher | None,
    timeout: float,
    schedule: PollSchedule,
    clock: Clock,
    sleep: Sleep,
    on_update: Callable[[VideoJob], None | Awaitable[None]] | None,
) -> VideoJob:
    started = clock()
    deadline = started + timeout
    last_status = None
    read_at = started
    previous: VideoJob | None = None  # the job before the last read: the same object when it told nothing new
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
        if (
            watcher is not None
            and job is previous
            and schedule.aim is None
            and await watcher.until_changed(job, deadline=deadline)
        ):
            # Unchanged, and no finish predicted to aim at (queued, or no progress reported): it slept
            # until a sweep listed the job changed instead of polling what the sweeps would answer
            # unchanged (the schedule learns nothing from a read that did not move).
            previous = job
            job, read_at = await watcher.observe(job, max_age=watcher.pace)
            continue
        delay = schedule.next_delay(
            job.poll_after_seconds,
            progress=job.progress,
            elapsed=read_at - started,
            age=now - read_at,
            queued=job.status is JobStatus.QUEUED,
        )
        aimed = schedule.near_finish
        if watcher is not None and watcher.sweeping and not aimed:
            # Sooner than the next sweep, the last one would answer; where the read after the next
            # sweep could not aim any more (the predicted finish comes before it, or sooner after it
            # than the shortest interval between two reads), the poll aims at the finish instead.
            until_sweep = watcher.next_sweep_in()
            if schedule.aim is not None and schedule.aim < until_sweep + schedule.floor:
                delay, aimed = schedule.aim, True
            else:
                delay = max(delay, until_sweep)
        delay = min(delay, max(deadline - now, 0.0))
        await sleep(delay)
        # Shared reads may be up to half a sleep old, except the one aimed at the predicted finish:
        # stale data there would add to the lag the schedule just cut.
        previous = job
        if watcher:
            job, read_at = await watcher.observe(job, max_age=0.0 if aimed else delay / 2)
        else:
            job, read_at = await provider.get_job(job), clock()
