"""Many waits on one provider client share their status reads (JobWatcher), against the APIFrame emulator.

Time is virtual: the emulator and every wait read one VirtualClock, which moves only when every wait
sleeps, to the earliest wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from prefect_videogen.blocks.apiframe import APIFrameCredentials
from prefect_videogen.catalog import load_catalog
from prefect_videogen.models import JobStatus, VideoRequest
from prefect_videogen.providers.apiframe import APIFrameVideoProvider
from prefect_videogen.providers.polling import wait_for_job
from prefect_videogen.providers.watch import LISTING_MIN_JOBS, JobWatcher
from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY, APIFrameEmulator
from prefect_videogen.testing.server import EmulatorServer, Fault

from tests.fakes import VirtualClock

JOBS = LISTING_MIN_JOBS + 4


@pytest.fixture(scope="module")
def clock() -> VirtualClock:
    return VirtualClock(start=1000.0)


@pytest.fixture(scope="module")
def server(clock):
    with EmulatorServer(APIFrameEmulator(latency_seconds=1200, clock=clock)) as running:
        yield running


@pytest.fixture
def emulator(server) -> APIFrameEmulator:
    server.emulator.reset()
    return server.emulator


def provider_for(server, clock) -> APIFrameVideoProvider:
    return APIFrameVideoProvider(EMULATOR_API_KEY, base_url=server.base_url, sleep=clock.sleep)


class Unlisted(APIFrameVideoProvider):
    """APIFrame without its job listing: each wait polls its own job."""

    list_active_jobs = None  # type: ignore[assignment]  # opts out of the ListsJobs capability


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
    shared_counts = {"listings": 0, **emulator.counters}
    assert all(job.status is JobStatus.SUCCEEDED and job.provider_data["video_url"] for job in done)
    assert watcher.sweeps >= 2 and shared_counts["listings"] >= 2 * 2  # QUEUED and PROCESSING per sweep
    # Each job is read on its own about once (when it leaves the active listing), not every poll.
    assert shared_counts["polls"] <= 2 * JOBS, (shared_counts, alone)
    # With so few jobs the two listings a sweep costs (QUEUED, PROCESSING) take most of the saving:
    # about half the requests here (waits sleeping concurrently on the VirtualClock); 1,000 jobs make
    # 1.7 requests each instead of 11 (bench/jobs_in_flight.py).
    assert shared_counts["polls"] + shared_counts["listings"] < alone["polls"] * 0.75, (shared_counts, alone)
    assert shared_counts["jobs_created"] == JOBS


async def test_a_failing_listing_falls_back_to_reading_each_job(server, emulator, clock):
    emulator.faults.rate("list", 1.0, Fault(status=503))
    async with provider_for(server, clock) as provider:
        done = await wait_for_all(provider, clock)
        assert JobWatcher.of(provider).listing  # a 503 is not "no listing": tried again next sweep
    assert all(job.status is JobStatus.SUCCEEDED for job in done)
    assert emulator.counters["listings"] >= 1 and emulator.counters["polls"] >= JOBS


async def test_a_gateway_without_listing_turns_sweeps_off(server, emulator, clock):
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
        found, complete = await provider.list_active_jobs(page_size=2, max_pages=2)
        assert not complete and len(found) == 4
        found, complete = await provider.list_active_jobs(page_size=2, max_pages=3)
        assert complete and set(found) == {job.job_id for job in jobs}
        listed = provider.apply_listed(jobs[0], found[jobs[0].job_id])
        assert listed.job_id == jobs[0].job_id and listed.status is JobStatus.QUEUED
        assert listed.provider_data["idempotency_key"] == jobs[0].provider_data["idempotency_key"]


async def test_few_waits_read_each_job_without_listing(server, emulator, clock):
    async with provider_for(server, clock) as provider:
        done = await wait_for_all(provider, clock, count=LISTING_MIN_JOBS - 1)
    assert all(job.status is JobStatus.SUCCEEDED for job in done)
    assert emulator.counters["listings"] == 0


async def test_a_read_aimed_at_the_predicted_finish_reads_the_job_alone_and_fresh(server, emulator, clock):
    async with provider_for(server, clock) as provider:
        plan = load_catalog().plan("apiframe", VideoRequest(prompt="a read at the finish", duration=4))
        jobs = [await provider.submit(plan) for _ in range(LISTING_MIN_JOBS)]
        watcher = JobWatcher.of(provider, clock=clock)
        with contextlib.ExitStack() as stack:
            for job in jobs:
                stack.enter_context(watcher.watching(job))
            swept_at = clock()
            await watcher.observe(jobs[0], max_age=1.0)  # a sweep: listings, no single reads of listed jobs
            swept = dict(emulator.counters)
            assert swept["listings"] >= 1
            await clock.sleep(0.5)
            _, read_at = await watcher.observe(jobs[3], max_age=1.0)  # the same sweep answers
            assert emulator.counters == swept
            assert read_at == swept_at  # dated when the sweep read it, not when it was asked for
            await clock.sleep(1201)  # every job has finished since that sweep
            fresh, read_at = await watcher.observe(jobs[1], max_age=0)
            assert read_at == clock()
            assert fresh.status is JobStatus.SUCCEEDED
            assert emulator.counters["polls"] == swept.get("polls", 0) + 1  # that job alone, no sweep
            assert emulator.counters["listings"] == swept["listings"]
            again, _ = await watcher.observe(jobs[2], max_age=1.0)  # the sweep is now too old: a new one
    assert again.status is JobStatus.SUCCEEDED and emulator.counters["listings"] > swept["listings"]


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
