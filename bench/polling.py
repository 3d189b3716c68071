"""Benchmark: polls per job and detection lag of ``wait_for_job`` for a long job, on a simulated clock.

A fake provider's job status is a function of a fake clock; ``wait_for_job`` sleeps on that clock,
so a 120 s job is simulated in milliseconds with the real ``PollSchedule`` and the real poll loop.
Progress shapes follow the project's emulators (which follow the providers' docs):

- apiframe: QUEUED without progress for the first 30 %, then PROCESSING with whole percents; no hint.
- scenario: progress (3 decimals) from the start; no hint.
- openai:   queued at 0 % for the first 30 %, then whole percents; ``openai-poll-after-ms`` hint.
- none:     no progress and no hint (the plain growing interval).
- speed-up: progress says the job takes twice its real time, then it ends at 50 %: misleading progress,
  the case where trusting an estimate costs lag (bounded by ``PollSchedule.long_maximum``).

Each shape is run with the current schedule and with the previous one (progress ignored), side by side.
Targets for a 120 s job: <= 20 polls and <= 6 s lag.

Usage:
    python bench/polling.py [--seconds 120] [--hint-ms 1000 5000]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from contextlib import asynccontextmanager

from prefect_videogen.models import JobStatus, VideoJob
from prefect_videogen.providers.base import VideoProvider
from prefect_videogen.providers.polling import PollSchedule, wait_for_job

Shape = Callable[[float], tuple[JobStatus, float | None]]  # fraction of the job's time -> status, progress


def apiframe(f: float) -> tuple[JobStatus, float | None]:
    return (JobStatus.QUEUED, None) if f < 0.3 else (JobStatus.RUNNING, int(f * 100) / 100)


def scenario(f: float) -> tuple[JobStatus, float | None]:
    return JobStatus.RUNNING, round(f, 3)


def openai(f: float) -> tuple[JobStatus, float | None]:
    return (JobStatus.QUEUED, 0.0) if f < 0.3 else (JobStatus.RUNNING, int(f * 100) / 100)


def no_progress(f: float) -> tuple[JobStatus, float | None]:
    return JobStatus.RUNNING, None


def speed_up(f: float) -> tuple[JobStatus, float | None]:
    return JobStatus.RUNNING, round(f / 2, 3)


SHAPES: dict[str, tuple[Shape, bool]] = {  # name -> (shape, sends a hint)
    "apiframe": (apiframe, False),
    "scenario": (scenario, False),
    "openai": (openai, True),
    "none": (no_progress, False),
    "speed-up": (speed_up, False),
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class SimulatedProvider(VideoProvider):
    """A job of ``seconds`` whose status and progress are ``shape`` of the fake clock; counts polls."""

    name = "simulated"

    def __init__(self, clock: FakeClock, seconds: float, shape: Shape, hint: float | None) -> None:
        self.clock, self.seconds, self.shape, self.hint = clock, seconds, shape, hint
        self.poll_times: list[float] = []

    def view(self, job: VideoJob) -> VideoJob:
        fraction = self.clock() / self.seconds
        status, progress = (JobStatus.SUCCEEDED, 1.0) if fraction >= 1.0 else self.shape(fraction)
        return job.model_copy(
            update={
                "status": status,
                "raw_status": status.value,
                "progress": progress,
                "poll_after_seconds": None if status.is_terminal else self.hint,
            }
        )

    async def submit(self, plan, *, idempotency_key=None) -> VideoJob:  # pragma: no cover - not used
        raise NotImplementedError

    async def get_job(self, job: VideoJob) -> VideoJob:
        self.poll_times.append(self.clock())
        return self.view(job)

    @asynccontextmanager
    async def stream_video(self, job: VideoJob):  # pragma: no cover - not used
        yield None


class PreviousSchedule(PollSchedule):
    """The schedule before progress estimates: hint (capped) or 1 s growing x1.5 up to 6 s."""

    def next_delay(self, hint: float | None, **_: object) -> float:
        return super().next_delay(hint)


async def simulate(
    seconds: float, shape: Shape, hint: float | None, schedule: PollSchedule
) -> tuple[int, float, list[float]]:
    """Polls, lag (detection time - finish time) and poll times of one simulated wait."""
    clock = FakeClock()
    provider = SimulatedProvider(clock, seconds, shape, hint)
    job = provider.view(
        VideoJob(provider="simulated", job_id="job-1", model="m", status=JobStatus.QUEUED, raw_status="queued")
    )
    await wait_for_job(provider, job, timeout=seconds * 10, schedule=schedule, clock=clock, sleep=clock.sleep)
    return len(provider.poll_times), clock.now - seconds, provider.poll_times


async def run(seconds: float, hints_ms: list[float], sweep: range) -> None:
    print(f"simulated job: {seconds:g} s; targets <= 20 polls and <= 6 s lag")
    print(f"sweep: the same over job durations {sweep.start}..{sweep.stop - 1} s (worst lag, polls per minute)")
    print(
        f"{'shape':<14} {'schedule':<9} {'polls':>5} {'lag s':>6} {'target':<6} | {'worst lag s':>11} {'polls/min':>9}"
    )
    cases = [(name, shape, None) for name, (shape, hinted) in SHAPES.items() if not hinted]
    cases[2:2] = [
        (f"{name} {ms:g}ms", shape, ms / 1000) for name, (shape, hinted) in SHAPES.items() if hinted for ms in hints_ms
    ]
    schedules = {"current": PollSchedule, "previous": PreviousSchedule}
    timelines = []
    for name, shape, hint in cases:
        for label, make in schedules.items():
            polls, lag, times = await simulate(seconds, shape, hint, make())
            swept = [await simulate(float(d), shape, hint, make()) for d in sweep]
            worst_lag = max(s[1] for s in swept)
            per_minute = sum(s[0] for s in swept) / sum(sweep) * 60
            verdict = "PASS" if polls <= 20 and lag <= 6 else "FAIL"
            print(f"{name:<14} {label:<9} {polls:>5} {lag:>6.2f} {verdict:<6} | {worst_lag:>11.2f} {per_minute:>9.1f}")
            if label == "current":
                timelines.append(f"{name:<14} " + " ".join(f"{t:.1f}" for t in times))
    print(f"\npoll times of the current schedule for the {seconds:g} s job (s):")
    print("\n".join(timelines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="job duration (default 120)")
    parser.add_argument(
        "--hint-ms",
        type=float,
        nargs="+",
        default=[1000.0, 5000.0],
        help="openai poll hints in ms to try (default 1000 5000)",
    )
    parser.add_argument(
        "--sweep",
        type=int,
        nargs=2,
        default=[30, 240],
        metavar=("FROM", "TO"),
        help="job durations in s for the worst-case sweep (default 30 240)",
    )
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.hint_ms, range(args.sweep[0], args.sweep[1] + 1)))


if __name__ == "__main__":
    main()
