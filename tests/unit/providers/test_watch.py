"""Many waits on one provider client share their status reads (JobWatcher), against the APIFrame emulator.

Time is virtual: the emulator and every wait read one VirtualClock, which moves only when every wait
sleeps, to the earliest wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from prefect_videogen.blocks.apiframe import APIFrameCredentials
from prefect_videogen.catalog import load_catalog
from prefect_videogen.models import JobStatus, VideoJob, VideoRequest
from prefect_videogen.providers import watch
from prefect_videogen.providers.apiframe import APIFrameVideoProvider
from prefect_videogen.providers.polling import wait_for_job
from prefect_videogen.providers.watch import (
    FINISHED_PAGE_YIELD,
    FRESH_GATHER_SECONDS,
    LISTING_MIN_JOBS,
    MIN_PACE,
    JobWatcher,
)
from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY, APIFrameEmulator
from prefect_videogen.testing.server import EmulatorServer, Fault

from tests.fakes import FakeClock, VirtualClock

JOBS = LISTING_MIN_JOBS + 4


@pytest.fixture(scope="module")
def clock() -> VirtualClock:
    return VirtualClock(start=1000.0)


@pytest.fixture(scope="module")
def server(clock):
    with EmulatorServer(APIFrameEmulator(latency_seconds=1200, clock=clock)) as running:
        clock.servers.add(("127.0.0.1", running.port))
        yield running
        clock.servers.discard(("127.0.0.1", running.port))


@pytest.fixture
def emulator(server) -> APIFrameEmulator:
    server.emulator.reset()
    return server.emulator


@pytest.fixture
def short_jobs(emulator, monkeypatch) -> None:
    """Jobs of 120 s instead of 1,200 for the tests that read every job alone: a tenth of the reads,
    each a real request and a step of the clock, and the fallbacks they check are the same."""
    monkeypatch.setattr(emulator, "latency_seconds", 120)


def provider_for(server, clock) -> APIFrameVideoProvider:
    return APIFrameVideoProvider(EMULATOR_API_KEY, base_url=server.base_url, sleep=clock.sleep)


class Unlisted(APIFrameVideoProvider):
    """APIFrame without its job listing: each wait polls its own job."""

    list_active_jobs = None  # type: ignore[assignment]  # opts out of the ListsJobs capability


@contextlib.contextmanager
def watching_all(watcher: JobWatcher, jobs: list) -> Iterator[None]:
    """Every one of ``jobs`` counted among the watched jobs, as their waits would."""
    with contextlib.ExitStack() as stack:
        for job in jobs:
            stack.enter_context(watcher.watching(job))
        yield


def counting_observes(watcher: JobWatcher, key: Callable[[VideoJob, float | None], str]) -> Counter:
    """Count the watcher's ``observe`` calls by ``key(job, max_age)`` from now on."""
    counts: Counter = Counter()
    observe = watcher.observe

    async def counted(job, *, max_age=None):
        counts[key(job, max_age)] += 1
        return await observe(job, max_age=max_age)

    watcher.observe = counted  # type: ignore[method-assign]
    return counts


async def wait_for_all(provider: APIFrameVideoProvider, clock: VirtualClock, count: int = JOBS) -> list:
    plan = load_catalog().plan("apiframe", VideoRequest(prompt="a heron lifting off a pond", duration=4))
    jobs = [await provider.submit(plan) for _ in range(count)]
    return await asyncio.gather(
        *(wait_for_job(provider, job, timeout=100_000, clock=clock, sleep=clock.sleep) for job in jobs)
    )


async def test_waits_share_listing_sweeps_and_use_fewer_requests_than_polling_each(server, emulator, clock):
    async with Unlisted(EMULATOR_API_KEY, base_url=server.base_url, sleep=clock.sleep) as each:
        done = await wait_for_all(each, clock)
    alone = {"listings": 0, **emulator.counters}
    assert all(job.status is JobStatus.SUCCEEDED for job in done)
    assert alone["listings"] == 0

    emulator.reset()
    async with provider_for(server, clock) as shared:
        done = await wait_for_all(shared, clock)
        watcher = JobWatcher.of(shared)
    shared_counts = {"listings": 0, "polls": 0, **emulator.counters}
    assert all(job.status is JobStatus.SUCCEEDED and job.provider_data["video_url"] for job in done)
    assert watcher.sweeps >= 2 and shared_counts["listings"] >= 2 * 2  # QUEUED and PROCESSING per sweep
    # A job that left the active listing is found in the finished listing, not read on its own.
    assert shared_counts["polls"] < JOBS, (shared_counts, alone)
    # 14 waits of 1,200 s each: 1,330 reads of their own, 191 listing pages shared (a sweep's QUEUED and
    # PROCESSING pages, and the finished listing), the same on every run with the VirtualClock.
    assert shared_counts["polls"] + shared_counts["listings"] < alone["polls"] * 0.25, (shared_counts, alone)
    assert shared_counts["jobs_created"] == JOBS


async def test_waits_on_short_jobs_end_as_soon_as_waits_polling_alone(server, emulator, clock, monkeypatch):
    """Sweeps no sooner than ``max_age`` (5 s) apart once stretched every wait on a 3 s job to the next
    sweep: ~6 s each, and a batch of short jobs took twice as long as polling each alone."""
    monkeypatch.setattr(emulator, "latency_seconds", 3)

    async def waited(provider: APIFrameVideoProvider) -> float:
        started = clock()
        done = await wait_for_all(provider, clock)
        assert all(job.status is JobStatus.SUCCEEDED for job in done)
        return clock() - started

    async with Unlisted(EMULATOR_API_KEY, base_url=server.base_url, sleep=clock.sleep) as each:
        alone = await waited(each)
    async with provider_for(server, clock) as shared:
        together = await waited(shared)
        sweeps = JobWatcher.of(shared).sweeps
    assert sweeps >= 1 and together <= alone + 0.5, (together, alone, sweeps)


async def test_a_failing_listing_falls_back_to_reading_each_job(server, emulator, clock, short_jobs):
    emulator.faults.rate("list", 1.0, Fault(status=503))
    async with provider_for(server, clock) as provider:
        done = await wait_for_all(provider, clock)
        assert JobWatcher.of(provider).listing  # a 503 is not "no listing": tried again next sweep
    assert all(job.status is JobStatus.SUCCEEDED for job in done)
    assert emulator.counters["listings"] >= 1 and emulator.counters["polls"] >= JOBS


async def test_a_gateway_without_listing_turns_sweeps_off(server, emulator, clock, short_jobs):
    emulator.faults.rate("list", 1.0, Fault(status=404, body={"error": "Not found"}))
    async with provider_for(server, clock) as provider:
        done = await wait_for_all(provider, clock)
        assert JobWatcher.of(provider).listing is False
    assert all(job.status is JobStatus.SUCCEEDED for job in done)
    assert emulator.counters["listings"] <= 2  # one sweep's two listings, then never again


async def test_listing_pages_and_says_when_it_was_cut_off(server, emulator, clock):
    async with provider_for(server, clock) as provider:
        plan = load_catalog().plan("apiframe", VideoRequest(prompt="five jobs", duration=4))
        jobs = [await provider.submit(plan) for _ in range(5)]
        found, complete, requests, _ = await provider.list_active_jobs(page_size=2, max_pages=2)
        assert not complete and len(found) == 4 and requests == 1 + 2  # PROCESSING: one empty page; QUEUED: 2
        found, complete, _, read_at = await provider.list_active_jobs(page_size=2, max_pages=3)
        assert complete and set(found) == {job.job_id for job in jobs} and read_at.keys() == found.keys()
        listed = provider.apply_listed(jobs[0], found[jobs[0].job_id])
        assert listed.job_id == jobs[0].job_id and listed.status is JobStatus.QUEUED
        assert listed.provider_data["idempotency_key"] == jobs[0].provider_data["idempotency_key"]


async def test_finished_jobs_are_found_by_id_and_only_with_their_video_and_charge(server, emulator, clock):
    async with provider_for(server, clock) as provider:
        plan = load_catalog().plan("apiframe", VideoRequest(prompt="six jobs", duration=4))
        jobs = [await provider.submit(plan) for _ in range(6)]
        await clock.sleep(1201)
        emulator.expire(jobs[1].job_id)  # completed, but its video is gone: only a read of its own says so
        ids = [job.job_id for job in jobs]
        found, complete, requests, _ = await provider.list_finished_jobs(ids[:4], max_pages=10, page_size=2)
        assert set(found) == {ids[0], ids[2], ids[3]} and not complete and requests == 3  # the listing ended
        found, complete, requests, _ = await provider.list_finished_jobs([ids[5], ids[4]], max_pages=10, page_size=2)
        assert set(found) == {ids[4], ids[5]} and complete and requests == 1  # newest first: one page found both
        found, complete, requests, _ = await provider.list_finished_jobs([ids[0]], max_pages=1, page_size=2)
        assert found == {} and not complete and requests == 1  # the page budget ran out
        listed = provider.apply_listed(jobs[2], (await provider.list_finished_jobs([ids[2]], max_pages=3)).jobs[ids[2]])
    read = await provider_for(server, clock).get_job(jobs[2])
    assert listed.status is JobStatus.SUCCEEDED and listed.model_dump() == read.model_dump()


async def test_few_waits_read_each_job_without_listing(server, emulator, clock, short_jobs):
    async with provider_for(server, clock) as provider:
        done = await wait_for_all(provider, clock, count=LISTING_MIN_JOBS - 1)
    assert all(job.status is JobStatus.SUCCEEDED for job in done)
    assert emulator.counters["listings"] == 0


async def test_a_sweep_answers_reads_within_their_age_and_is_dated_when_it_read(server, emulator, clock):
    async with provider_for(server, clock) as provider:
        plan = load_catalog().plan("apiframe", VideoRequest(prompt="a read at the finish", duration=4))
        jobs = [await provider.submit(plan) for _ in range(LISTING_MIN_JOBS)]
        watcher = JobWatcher.of(provider, clock=clock, sleep=clock.sleep)
        with watching_all(watcher, jobs):
            swept_at = clock()
            await watcher.observe(jobs[0], max_age=1.0)  # a sweep: listings, no single reads of listed jobs
            swept = dict(emulator.counters)
            assert swept["listings"] >= 1 and "polls" not in swept
            await clock.sleep(0.5)
            _, read_at = await watcher.observe(jobs[3], max_age=1.0)  # the same sweep answers
            assert emulator.counters == swept
            assert read_at == swept_at  # dated when the sweep read it, not when it was asked for
            await clock.sleep(1201)  # every job has finished since that sweep
            again, _ = await watcher.observe(jobs[2], max_age=1.0)  # the sweep is now too old: a new one
    assert again.status is JobStatus.SUCCEEDED and emulator.counters["listings"] > swept["listings"]


async def aim_at_the_finish(provider, clock, emulator, *, finished: int, running: int):
    """Reads aimed at ``finished`` jobs (which have all ended) while ``running`` others run.

    Returns the answers, the counters' growth, and when the reads were asked.
    """
    plan = load_catalog().plan("apiframe", VideoRequest(prompt="reads at the finish", duration=4))
    ended = [await provider.submit(plan) for _ in range(finished)]
    await clock.sleep(1201)
    still = [await provider.submit(plan) for _ in range(running)]
    watcher = JobWatcher.of(provider, clock=clock, sleep=clock.sleep)
    with watching_all(watcher, ended + still):
        await watcher.observe(still[0], max_age=1.0)  # a sweep: what one costs is known
        before, asked_at = dict(emulator.counters), clock()
        fresh, read_at = await watcher.observe(ended[0], max_age=0)
        assert fresh.status is JobStatus.SUCCEEDED and read_at == asked_at  # read alone, at once
        assert emulator.counters["polls"] == before.get("polls", 0) + 1
        assert emulator.counters["listings"] == before["listings"]
        await clock.sleep(1.5)  # that read is over a second old: the rate starts afresh
        before, asked_at = dict(emulator.counters), clock()
        answers = await asyncio.gather(*(watcher.observe(job, max_age=0) for job in ended))
    grown = {name: emulator.counters[name] - before.get(name, 0) for name in ("polls", "listings")}
    assert all(job.status is JobStatus.SUCCEEDED and read_at >= asked_at for job, read_at in answers)
    return answers, grown, asked_at


async def test_reads_aimed_at_the_finish_are_read_after_they_ask_alone_or_together(server, emulator, clock):
    """A few aimed reads read their jobs; many at once are looked for in the finished listing after the last asked."""
    async with provider_for(server, clock) as provider:
        answers, grown, asked_at = await aim_at_the_finish(provider, clock, emulator, finished=100, running=10)
    alone = int(FINISHED_PAGE_YIELD / FRESH_GATHER_SECONDS) - 1  # until 40 a second: each reads alone
    assert grown["polls"] == alone
    # The other 61 are on one page of the finished listing: not a whole sweep of the active jobs.
    assert grown["listings"] == 1
    assert clock() == pytest.approx(asked_at + FRESH_GATHER_SECONDS)  # they gathered, then listed
    assert all(read_at == clock() for _, read_at in answers[alone:])


async def test_listed_jobs_are_dated_by_their_own_page(server, emulator, clock):
    """A long listing's last pages are read seconds after its first: each job carries its page's time."""
    async with provider_for(server, clock) as provider:
        plan = load_catalog().plan("apiframe", VideoRequest(prompt="five jobs, three pages", duration=4))
        jobs = [await provider.submit(plan) for _ in range(5)]
        ticks = itertools.count(start=1)
        listing = await provider.list_active_jobs(page_size=2, max_pages=5, clock=lambda: float(next(ticks)))
    assert sorted(Counter(listing.read_at.values()).values()) == [1, 2, 2]  # QUEUED pages of 2, 2 and 1
    dated = [listing.read_at[job.job_id] for job in reversed(jobs)]  # newest first, as listed
    assert dated == sorted(dated) and dated[0] < dated[-1]


async def test_blocks_share_one_client_per_configuration_while_in_use():
    first = APIFrameCredentials(api_key="afk_first_key_0001", base_url="http://127.0.0.1:9")
    same = APIFrameCredentials(api_key="afk_first_key_0001", base_url="http://127.0.0.1:9")
    other = APIFrameCredentials(api_key="afk_other_key_0002", base_url="http://127.0.0.1:9")
    assert "afk_first_key_0001" not in first._configuration_key()
    async with first.shared_client() as a, same.shared_client() as b, other.shared_client() as c:
        assert a is b and a is not c
    assert a.http.api.is_closed and c.http.api.is_closed
    async with first.shared_client() as again:
        assert again is not a


def test_one_watcher_per_provider_object_that_does_not_outlive_it(server, clock):
    """The registry holds watchers by provider weakly: a dropped provider (and its pool) is freed."""
    import gc
    import weakref

    provider = provider_for(server, clock)
    watcher = JobWatcher.of(provider)
    assert JobWatcher.of(provider) is watcher and watcher.provider is provider
    assert not hasattr(provider, "_job_watcher")
    other = provider_for(server, clock)
    assert JobWatcher.of(other) is not watcher
    gone = weakref.ref(provider)
    del provider
    gc.collect()
    assert gone() is None
    with pytest.raises(RuntimeError, match="garbage-collected"):
        watcher.provider  # noqa: B018


async def test_a_cancelled_wait_does_not_cancel_the_sweep_the_others_wait_for():
    from prefect_videogen.providers.watch import _Shared

    release, ran = asyncio.Event(), []

    async def sweep() -> None:
        await release.wait()
        ran.append("done")

    shared = _Shared(sweep())
    waits = [asyncio.ensure_future(shared.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    waits[0].cancel()  # its task run was stopped
    release.set()
    await asyncio.gather(*waits[1:])
    assert ran == ["done"] and waits[0].cancelled()
    await shared.wait()  # already over: returns at once

    async def failing() -> None:
        raise RuntimeError("a bug in the sweep")

    broken = _Shared(failing())
    results = await asyncio.gather(broken.wait(), broken.wait(), return_exceptions=True)
    assert [str(result) for result in results] == ["a bug in the sweep"] * 2  # every waiter sees it


class SlowListing(APIFrameVideoProvider):
    """APIFrame whose active listing takes ``LISTING_SECONDS`` of the clock, as 10,000 jobs' pages do, or
    a few pages in a busy event loop."""

    virtual_sleep = None

    async def list_active_jobs(self, **kwargs):
        await self.virtual_sleep(LISTING_SECONDS)
        return await super().list_active_jobs(**kwargs)


LISTING_SECONDS = 3.0


def slow_listing(server, clock) -> SlowListing:
    provider = SlowListing(EMULATOR_API_KEY, base_url=server.base_url, sleep=clock.sleep)
    provider.virtual_sleep = clock.sleep
    return provider


# Seconds per request that space a sweep of a few pages (a QUEUED and a PROCESSING one) as ~100 pages are.
LONG_SWEEP_REQUEST_PACE = 15.0


async def test_sweeps_of_many_requests_are_spaced_by_their_requests(server, emulator, clock, monkeypatch):
    monkeypatch.setattr(watch, "SWEEP_REQUEST_PACE", LONG_SWEEP_REQUEST_PACE)
    async with provider_for(server, clock) as provider:
        plan = load_catalog().plan("apiframe", VideoRequest(prompt="a long sweep", duration=4))
        jobs = [await provider.submit(plan) for _ in range(LISTING_MIN_JOBS)]
        watcher = JobWatcher.of(provider, clock=clock, sleep=clock.sleep)
        with watching_all(watcher, jobs):
            await watcher.observe(jobs[0], max_age=1.0)  # a sweep
            requests = emulator.counters["listings"]
            assert watcher.sweeps == 1 and watcher.pace == pytest.approx(requests * LONG_SWEEP_REQUEST_PACE)
            await clock.sleep(5.0)
            await watcher.observe(jobs[1], max_age=1.0)  # 5 s old, asked for 1 s: answered all the same
            assert watcher.sweeps == 1 and watcher.next_sweep_in() == pytest.approx(watcher.pace - 5.0)
            await clock.sleep(watcher.next_sweep_in())
            await watcher.observe(jobs[1], max_age=1.0)  # the pace has passed: a new sweep
            assert watcher.sweeps == 2


async def test_a_sweep_slow_to_answer_does_not_space_the_next(server, emulator, clock):
    """A few pages that take seconds to arrive (a busy event loop, a slow provider) cost the waiting
    process no more than quick ones. Spaced by their wall time, a 200-item batch's sweeps came 20-30 s
    apart and its 10 s jobs were seen to end that late."""
    async with slow_listing(server, clock) as provider:
        plan = load_catalog().plan("apiframe", VideoRequest(prompt="a slow sweep", duration=4))
        jobs = [await provider.submit(plan) for _ in range(LISTING_MIN_JOBS)]
        watcher = JobWatcher.of(provider, clock=clock, sleep=clock.sleep)
        with watching_all(watcher, jobs):
            await watcher.observe(jobs[0], max_age=1.0)  # a sweep of 3 s
            assert watcher.sweeps == 1 and watcher.pace == MIN_PACE and watcher.next_sweep_in() == 0.0


async def test_waits_on_long_sweeps_sleep_until_the_next_and_aim_at_their_finish(server, emulator, clock, monkeypatch):
    monkeypatch.setattr(watch, "SWEEP_REQUEST_PACE", LONG_SWEEP_REQUEST_PACE)
    async with slow_listing(server, clock) as provider:
        watcher = JobWatcher.of(provider, clock=clock, sleep=clock.sleep)
        observed = counting_observes(watcher, lambda job, max_age: "aimed" if max_age == 0 else "shared")
        plan = load_catalog().plan("apiframe", VideoRequest(prompt="waits on long sweeps", duration=4))
        jobs = [await provider.submit(plan) for _ in range(JOBS)]
        submitted_at = clock()
        done = await asyncio.gather(
            *(wait_for_job(provider, job, timeout=100_000, clock=clock, sleep=clock.sleep) for job in jobs)
        )
        lag = clock() - (submitted_at + emulator.latency_seconds)
    assert all(job.status is JobStatus.SUCCEEDED for job in done)
    # 1,200 s jobs, sweeps at least 30 s apart (two pages or more at 15 s each): about 40 sweeps, and
    # each wait's shared polls one per sweep, not one per growing interval (~95 each at 6 s).
    spacing = 2 * LONG_SWEEP_REQUEST_PACE
    assert watcher.sweeps <= 1200 / spacing + 3, watcher.sweeps
    assert observed["shared"] <= JOBS * (watcher.sweeps + 2), observed
    # The sweeps' spacing does not delay the end: each wait aims at its job's predicted finish.
    assert observed["aimed"] >= JOBS and lag < spacing / 2, (lag, observed)


async def test_waits_on_queued_jobs_sleep_until_a_sweep_lists_them_changed(server, emulator, clock):
    """A queued job reads the same at every sweep: its wait parks until one lists it started."""
    async with provider_for(server, clock) as provider:
        watcher = JobWatcher.of(provider, clock=clock, sleep=clock.sleep)
        reads = counting_observes(watcher, lambda job, _: job.job_id if job.status is JobStatus.QUEUED else "other")
        submitted_at = clock()
        done = await wait_for_all(provider, clock)
        lag = clock() - (submitted_at + emulator.latency_seconds)
    assert all(job.status is JobStatus.SUCCEEDED for job in done)
    # Queued for 360 s of 1,200: polled at the 6 s interval that was ~60 reads a wait. Parked: the
    # read that found it queued, the one that found it unchanged, and the one after it started.
    queued_reads = [count for job_id, count in reads.items() if job_id != "other"]
    assert len(queued_reads) == JOBS and max(queued_reads) <= 3, reads
    assert watcher.sweeps >= 360 / watcher.parked_pace  # the sweeps went on while every wait was parked
    assert lag < watcher.parked_pace, lag


async def test_the_finished_listing_stops_two_lean_pages_past_the_wanted_jobs(server, emulator, clock):
    async with provider_for(server, clock) as provider:
        plan = load_catalog().plan("apiframe", VideoRequest(prompt="twelve jobs", duration=4))
        jobs = [await provider.submit(plan) for _ in range(12)]
        await clock.sleep(1201)
        wanted = [jobs[9].job_id, jobs[8].job_id, jobs[1].job_id]  # newest first, pages of 2: the 2nd and 6th
        found, complete, requests, _ = await provider.list_finished_jobs(wanted, max_pages=10, page_size=2)
        assert set(found) == set(wanted) and complete and requests == 6
        found, complete, requests, _ = await provider.list_finished_jobs(
            wanted, max_pages=10, min_page_yield=2, page_size=2
        )
    # A lean page before the first that paid off, the one that did, then two lean ones: stop there.
    assert set(found) == set(wanted[:2]) and not complete and requests == 4


async def test_listed_jobs_are_dated_when_their_page_arrived(server, emulator):
    clock = FakeClock(100.0)
    async with APIFrameVideoProvider(EMULATOR_API_KEY, base_url=server.base_url) as provider:
        plan = load_catalog().plan("apiframe", VideoRequest(prompt="three jobs", duration=4))
        for _ in range(3):
            await provider.submit(plan)
        json = provider.http.json

        async def a_second_each(*args, **kwargs):
            answer = await json(*args, **kwargs)
            clock.now += 1.0
            return answer

        provider.http.json = a_second_each  # type: ignore[method-assign]
        listing = await provider.list_active_jobs(page_size=2, max_pages=5, clock=clock)
    # Asked at 100 and answered at 101: a page dated when it was asked for makes its jobs look
    # further along than they were, and the reads aimed at their finish early.
    assert sorted(set(listing.read_at.values())) == [101.0, 102.0]
