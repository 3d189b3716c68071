"""Benchmark: rerun a finished batch: provider calls (emulator counters) and wall time.

Runs the ``generate_videos`` flow over ``--videos`` prompts on the APIFrame emulator (separate process)
until every item is stored, then runs the same batch again and reports what the rerun cost: new
jobs, polls, downloads (from the emulator's own counters) and wall time. The Prefect server
(``prefect_test_harness``) and the first run are not timed.

Two reruns are timed: one straight after the first run, while the server (SQLite, on the same two
cores) is still recording the first run's task runs from their events, and one once it has
recorded them all (how long that took is printed). The target is for the second: a finished batch.

Targets: 0 new jobs, polls and downloads; rerun <= 15 s for 100 videos.

Usage:
    python bench/cached_rerun.py [--videos 100] [--latency 1]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emulator_process, machine, quiet_prefect_home, recorded_task_runs  # noqa: E402

quiet_prefect_home()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY  # noqa: E402

CALLS = ("jobs_created", "create_requests", "polls", "downloads", "uploads")


async def run_batch(base_url: str, out: Path, count: int, concurrency: int):
    from prefect_videogen.batch.expansion import PromptSource
    from prefect_videogen.blocks import APIFrameCredentials, LocalVideoStorage
    from prefect_videogen.flows import generate_videos

    source = PromptSource(
        rows=[{"prompt": f"rerun clip number {n}"} for n in range(count)],
        defaults={"model": "sora-2", "duration": 4, "aspect_ratio": "16:9"},
    )
    provider = APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=base_url, poll_interval_seconds=0.5)
    return await generate_videos(
        source,
        provider=provider,
        storage=LocalVideoStorage(base_path=str(out)),
        max_concurrency=concurrency,
        return_state=True,
    )


def run_and_time(base_url: str, out: Path, count: int, concurrency: int):
    started = time.monotonic()
    state = asyncio.run(run_batch(base_url, out, count, concurrency))
    return time.monotonic() - started, asyncio.run(state.aresult()), state.state_details.flow_run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--latency", type=float, default=1.0, help="emulated seconds per job in the first run")
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness

    print(f"machine        {machine()}")
    out = Path(tempfile.mkdtemp(prefix="videogen-bench-rerun-"))
    # The worker policy keeps storage under its allowed roots: this run's scratch directory is one.
    os.environ.setdefault("PREFECT_VIDEOGEN_ALLOWED_ROOTS", str(out))
    with (
        emulator_process("apiframe", latency=args.latency, warm="1280x720x4") as emulator,
        prefect_test_harness(server_startup_timeout=120),
    ):
        first_seconds, first, first_id = run_and_time(emulator.base_url, out, args.videos, args.concurrency)
        before = emulator.counters()
        at_once_seconds, _, at_once_id = run_and_time(emulator.base_url, out, args.videos, args.concurrency)
        started = time.monotonic()
        for flow_run_id in (first_id, at_once_id):
            asyncio.run(recorded_task_runs(flow_run_id, timeout=300))
        settle_seconds = time.monotonic() - started
        rerun_seconds, again, _ = run_and_time(emulator.base_url, out, args.videos, args.concurrency)
        after = emulator.counters()
    new = {name: after.get(name, 0) - before.get(name, 0) for name in CALLS}
    print(
        f"first run      {first_seconds:.1f} s, {first.counts}; provider calls "
        + ", ".join(f"{name} {before.get(name, 0)}" for name in CALLS)
    )
    print(f"rerun at once  {at_once_seconds:.1f} s (the server still recording the first run's task runs)")
    print(f"server settled {settle_seconds:.1f} s later")
    print(f"rerun          {rerun_seconds:.1f} s, {again.counts}")
    print("new calls      " + ", ".join(f"{name} {value}" for name, value in new.items()) + " (both reruns)")
    zero = not any(new.values())
    print(
        f"target         0 new provider calls: {'PASS' if zero else 'FAIL'}; "
        f"rerun <= 15 s: {'PASS' if rerun_seconds <= 15 else 'FAIL'} ({rerun_seconds / args.videos * 1000:.0f} ms per item)"
    )


if __name__ == "__main__":
    main()
