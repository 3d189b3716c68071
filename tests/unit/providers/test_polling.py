"""PollSchedule and wait_for_job on a fake clock: hints, progress estimates, lag, poll counts, deadline."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest

from prefect_videogen.errors import JobTimedOut
from prefect_videogen.models import JobStatus, VideoJob
from prefect_videogen.providers.base import VideoProvider
from prefect_videogen.providers.polling import PollSchedule, _poll_until_done, wait_for_job

from fakes import FakeClock


def linear(f):
    return JobStatus.RUNNING, round(f, 3)


def queued_then_percent(f):  # APIFrame: no progress while QUEUED (first 30 %), then whole percents
    return (JobStatus.QUEUED, None) if f < 0.3 else (JobStatus.RUNNING, int(f * 100) / 100)


def openai_like(f):  # queued at 0 %, then whole percents
    return (JobStatus.QUEUED, 0.0) if f < 0.3 else (JobStatus.RUNNING, int(f * 100) / 100)


def no_progress(f):
    return JobStatus.RUNNING, None


def misleading(f):  # progress says twice the real time: the job ends at 50 %
    return JobStatus.RUNNING, round(f / 2, 3)


class TimedProvider(VideoProvider):
    """One job of ``seconds``; status and progress are ``shape(fraction of time)`` on the fake clock."""

    name = "timed"

    def __init__(self, clock: FakeClock, seconds: float, shape, hint: float | None = None) -> None:
        self.clock, self.seconds, self.shape, self.hint = clock, seconds, shape, hint
        self.polls = 0

    def view(self, job: VideoJob) -> VideoJob:
        fraction = self.clock() / self.seconds
        status, progress = (JobStatus.SUCCEEDED, 1.0) if fraction >= 1 else self.shape(fraction)
        return job.model_copy(
            update={
                "status": status,
                "raw_status": status.value,
                "progress": progress,
                "poll_after_seconds": None if status.is_terminal else self.hint,
            }
        )

    async def submit(self, plan, *, idempotency_key=None):
        raise NotImplementedError

    async def get_job(self, job: VideoJob) -> VideoJob:
        self.polls += 1
        return self.view(job)

    @asynccontextmanager
    async def stream_video(self, job):
        yield None


def start(provider: TimedProvider) -> VideoJob:
    return provider.view(
        VideoJob(provider="timed", job_id="j1", model="m", status=JobStatus.QUEUED, raw_status="queued")
    )


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        pytest.param([(None, None, None)] * 7, [1.0, 1.5, 2.25, 3.375, 5.0625, 6.0, 6.0], id="growing-to-cap"),
        pytest.param([(2.0, None, None)] * 3, [2.0, 2.0, 2.0], id="hint-followed"),
        pytest.param([(60.0, None, None)], [6.0], id="hint-capped-at-maximum"),
        pytest.param([(0.0, None, None), (None, None, None)], [1.0, 1.5], id="zero-hint-ignored"),
        pytest.param(
            [(None, 0.1, 10), (None, 0.2, 20), (None, 0.5, 50), (None, 0.9, 90), (None, 0.95, 95)],
            [1.0, 30.0, 25.0, 5.0, 5.25],
            id="linear-progress-far-then-at-finish",
        ),
        pytest.param([(None, 0.1, 10), (None, 0.1, 20), (None, 0.1, 30)], [1.0, 1.5, 2.25], id="stall-falls-back"),
        pytest.param([(None, 0.5, 10), (None, 0.2, 20)], [1.0, 1.5], id="progress-back-resets"),
        pytest.param([(None, 0.0, 10), (None, 1.0, 20)], [1.0, 1.5], id="0-and-1-say-nothing"),
        pytest.param([(2.0, 0.1, 10), (2.0, 0.2, 20)], [2.0, 30.0], id="far-finish-stretches-hint"),
        pytest.param([(2.0, 0.90, 90), (2.0, 0.99, 99)], [2.0, 2.0], id="hint-is-the-floor-near-finish"),
        pytest.param(
            [(0.01, 0.2, 0.01), (0.01, 0.4, 0.02), (0.01, 0.7, 0.035)],
            [0.01, 0.01, 0.016],
            id="tiny-hint-tiny-job-samples-again-then-aims",
        ),
        pytest.param(
            [(None, 0.2, 10), (None, 0.3, 20), (None, 0.5, 25)], [1.0, 30.0, 6.25], id="speed-up-uses-last-rate"
        ),
        pytest.param([(None, 0.98, 0), (None, 0.999, 1)], [1.0, 1.0], id="initial-floors-a-crawl"),
    ],
)
def test_next_delay(calls, expected):
    schedule = PollSchedule()
    delays = [schedule.next_delay(hint, progress=progress, elapsed=elapsed) for hint, progress, elapsed in calls]
    assert delays == pytest.approx(expected)


def test_near_finish_says_when_the_delay_aims_at_the_predicted_finish():
    schedule = PollSchedule()
    schedule.next_delay(None, progress=0.10, elapsed=10)
    schedule.next_delay(None, progress=0.20, elapsed=20)  # 80 s left: far
    assert not schedule.near_finish
    schedule.next_delay(None, progress=0.95, elapsed=95)  # 5 s left: aims at the finish
    assert schedule.near_finish
    schedule.next_delay(None)  # no progress: no prediction
    assert not schedule.near_finish


def test_an_old_sample_counts_from_when_it_was_read():
    fresh, shared = PollSchedule(), PollSchedule()
    for schedule in (fresh, shared):
        schedule.next_delay(None, progress=0.80, elapsed=80)
    # The same sample (95 % at 95 s: 5 s left), read now or by a shared sweep 2 s ago.
    assert fresh.next_delay(None, progress=0.95, elapsed=95) == pytest.approx(5.25)
    assert shared.next_delay(None, progress=0.95, elapsed=95, age=2.0) == pytest.approx(3.25)
    assert shared.near_finish


def test_a_short_sample_span_takes_one_more_sample_before_aiming():
    schedule = PollSchedule(initial=0.5)
    schedule.next_delay(0.5, progress=0.35, elapsed=1.0)
    # 1.5 s left, measured over 0.5 s: one more poll at the interval rather than aiming at 3.0 s.
    assert schedule.next_delay(0.5, progress=0.52, elapsed=1.5) == pytest.approx(0.5)
    assert not schedule.near_finish
    # 0.94 s left measured over 1 s: aims 2 % of the 2.94 s predicted (0.06 s) past the finish.
    left = (1 - 0.685) / ((0.685 - 0.35) / 1.0)
    assert schedule.next_delay(0.5, progress=0.685, elapsed=2.0) == pytest.approx(left + 0.02 * (2.0 + left))
    assert schedule.near_finish


def test_a_queued_job_stretches_a_short_hint_and_a_running_one_follows_it():
    schedule = PollSchedule()
    assert [schedule.next_delay(1.0, queued=True) for _ in range(4)] == pytest.approx([1.0, 1.5, 2.25, 3.375])
    assert schedule.next_delay(1.0) == 1.0
    assert schedule.next_delay(9.0, queued=True) == 6.0  # never past the cap


def test_old_positional_signature_still_works():
    schedule = PollSchedule(0.5, 2, 3)
    assert [schedule.next_delay(None) for _ in range(4)] == [0.5, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("shape", "hint", "max_polls", "max_lag"),
    [
        pytest.param(linear, None, 9, 0.5, id="progress-from-start"),
        pytest.param(queued_then_percent, None, 16, 1.0, id="apiframe-queued-then-percent"),
        pytest.param(openai_like, 5.0, 14, 1.0, id="openai-hint-5s"),
        # OpenAI's SDK default: a 1 s hint. Followed while running, stretched while queued (was 44 polls).
        pytest.param(openai_like, 1.0, 20, 1.5, id="openai-hint-1s"),
        pytest.param(no_progress, None, 23, 6.0, id="no-progress-growing-interval"),
        pytest.param(no_progress, 2.0, 60, 2.0, id="hint-only"),
        pytest.param(misleading, None, 6, 30.0, id="misleading-progress-bounded-by-long-maximum"),
    ],
)
async def test_a_120_s_job_is_polled_few_times_and_seen_soon(shape, hint, max_polls, max_lag):
    clock = FakeClock()
    provider = TimedProvider(clock, 120.0, shape, hint)
    done = await wait_for_job(provider, start(provider), clock=clock, sleep=clock.sleep)
    assert done.status is JobStatus.SUCCEEDED
    assert provider.polls <= max_polls
    assert 0.0 <= clock.now - 120.0 <= max_lag
    if hint:
        assert min(clock.slept) >= hint  # never sooner than the server asked


@pytest.mark.parametrize("seconds", [30, 47, 90, 120, 181, 240])
@pytest.mark.parametrize("shape", [linear, queued_then_percent], ids=["linear", "queued-then-percent"])
async def test_honest_progress_keeps_the_lag_under_the_maximum(seconds, shape):
    clock = FakeClock()
    provider = TimedProvider(clock, float(seconds), shape)
    await wait_for_job(provider, start(provider), clock=clock, sleep=clock.sleep)
    assert clock.now - seconds <= 6.0
    assert provider.polls <= max(20, seconds / 6)


async def test_a_stretched_wait_still_stops_at_the_deadline():
    clock = FakeClock()
    provider = TimedProvider(clock, 120.0, linear)
    with pytest.raises(JobTimedOut) as caught:
        await wait_for_job(provider, start(provider), timeout=40, clock=clock, sleep=clock.sleep)
    assert clock.now == pytest.approx(40)
    assert max(clock.slept) > 6  # the estimate did stretch a wait, and the deadline cut the last one
    assert caught.value.job_id == "j1"


class SweepsEverySecond:
    """A stand-in for a sweeping :class:`~prefect_videogen.providers.watch.JobWatcher`: sweeps start
    at ``phase`` + whole seconds on the fake clock, and every read it answers is fresh."""

    sweeping, pace = True, 1.0

    def __init__(self, provider: TimedProvider, clock: FakeClock, phase: float) -> None:
        self.provider, self.clock, self.phase = provider, clock, phase

    def next_sweep_in(self) -> float:
        return (self.phase - self.clock()) % 1.0

    async def observe(self, job: VideoJob, *, max_age: float | None = None) -> tuple[VideoJob, float]:
        return await self.provider.get_job(job), self.clock()

    async def until_changed(self, job: VideoJob, *, deadline: float) -> bool:
        return False


@pytest.mark.parametrize(("waited_from", "phase"), [(0.3, 0.75), (0.4, 0.85), (0.45, 0.9), (0.5, 0.95)])
async def test_a_wait_among_sweeps_aims_at_its_finish_when_the_read_after_the_next_sweep_would_be_late(
    waited_from, phase
):
    """A 3 s job read no sooner than every 0.5 s (its hint), sweeps a second apart. Where the job was
    predicted to end after the next sweep but less than 0.5 s after it, the wait slept until the
    sweep and could then read only 0.5 s later: 4 reads, the end seen 0.25-0.45 s late. It now aims
    at the finish instead."""
    clock = FakeClock()
    provider = TimedProvider(clock, 3.0, queued_then_percent, hint=0.5)
    job = start(provider)
    clock.now = waited_from  # the wait starts after the job, as a task run after its submit does
    watcher = SweepsEverySecond(provider, clock, phase)
    done = await _poll_until_done(provider, job, watcher, 100.0, PollSchedule(), clock, clock.sleep, None)
    assert done.status is JobStatus.SUCCEEDED
    assert clock.now - 3.0 <= 0.15 and provider.polls == 3, [round(step, 3) for step in clock.slept]
    assert min(clock.slept) >= 0.5  # never sooner than the hint


# -- timeout_seconds bounds the whole wait of a flow, on the emulators (real time: the jobs never finish) --

STUCK_TIMEOUT = 4.0
MAX_POLL_INTERVAL = PollSchedule().maximum


@pytest.fixture(scope="module")
def stuck_servers():
    from prefect_videogen.testing import EmulatorServer
    from prefect_videogen.testing.apiframe_emulator import APIFrameEmulator
    from prefect_videogen.testing.openai_emulator import OpenAIEmulator
    from prefect_videogen.testing.scenario_emulator import ScenarioEmulator

    hour = 3600.0  # the jobs stay queued/processing for the whole test
    servers = {
        "openai": EmulatorServer(OpenAIEmulator(api_key="sk-emulator-key", latency_seconds=hour)).start(),
        "scenario": EmulatorServer(
            ScenarioEmulator(api_key="stuck-key", api_secret="stuck-secret", latency_seconds=hour)
        ).start(),
        "apiframe": EmulatorServer(APIFrameEmulator(latency_seconds=hour)).start(),
    }
    yield servers
    for server in servers.values():
        server.stop()


def stuck_credentials(name, server):
    from prefect_videogen.blocks import APIFrameCredentials, OpenAICredentials, ScenarioCredentials
    from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY

    if name == "openai":
        return OpenAICredentials(api_key="sk-emulator-key", base_url=server.base_url + "/v1")
    if name == "scenario":
        return ScenarioCredentials(api_key="stuck-key", api_secret="stuck-secret", base_url=server.base_url + "/v1")
    return APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=server.base_url)


async def test_a_stuck_job_ends_the_flow_at_timeout_seconds_without_a_retry(prefect_server, tmp_path, stuck_servers):
    """A job that never finishes ends the wait at its timeout, once: ``--timeout 8`` once polled for 58 s
    (JobTimedOut was retried twice)."""
    import asyncio
    import time

    from prefect.client.orchestration import get_client

    from prefect_videogen.blocks import LocalVideoStorage
    from prefect_videogen.flows import generate_video
    from prefect_videogen.models import VideoRequest

    async def run(name, server):
        started = time.monotonic()
        state = await generate_video(
            VideoRequest(prompt=f"stuck {name} {tmp_path.name}", duration=4),
            provider=stuck_credentials(name, server),
            storage=LocalVideoStorage(base_path=str(tmp_path / name)),
            timeout_seconds=STUCK_TIMEOUT,
            return_state=True,
        )
        elapsed = time.monotonic() - started
        return name, state, elapsed, await state.aresult(raise_on_failure=False)

    outcomes = await asyncio.gather(*(run(name, server) for name, server in stuck_servers.items()))
    async with get_client() as client:
        task_runs = await client.read_task_runs()
    for name, state, elapsed, error in outcomes:
        assert isinstance(error, JobTimedOut), (name, error)
        assert error.job_id in str(error)  # the job stays resumable by its id
        waits = [
            r for r in task_runs if r.flow_run_id == state.state_details.flow_run_id and r.name.startswith("wait ")
        ]
        assert len(waits) == 1 and waits[0].run_count == 1, (name, [(w.name, w.run_count) for w in waits])
        # Within one poll interval of the deadline (plus the submit and Prefect's own overhead).
        wait_seconds = waits[0].total_run_time.total_seconds()
        assert STUCK_TIMEOUT - 0.5 <= wait_seconds <= STUCK_TIMEOUT + MAX_POLL_INTERVAL, (name, wait_seconds)
        assert elapsed < STUCK_TIMEOUT + MAX_POLL_INTERVAL + 10, (name, elapsed)
        assert stuck_servers[name].emulator.counters["jobs_created"] >= 1


async def test_a_retried_wait_only_waits_for_what_is_left(monkeypatch):
    """A wait task retried for another reason (a poll outage) keeps the first attempt's deadline."""
    from prefect_videogen.tasks import generation as tasks

    run_id = "run-1"
    monkeypatch.setattr(tasks.task_run, "id", run_id, raising=False)
    tasks._wait_started[run_id] = __import__("time").time() - 100.0  # the first attempt started 100 s ago
    job = VideoJob(provider="timed", model="m", job_id="j9", status=JobStatus.RUNNING, raw_status="running")
    with pytest.raises(JobTimedOut) as caught:
        await tasks.wait_for_video.fn(job, provider=None, timeout_seconds=60.0)
    assert caught.value.job_id == "j9" and caught.value.waited_seconds >= 100
    assert run_id not in tasks._wait_started  # final: the start is forgotten
