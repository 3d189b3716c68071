"""Benchmark: the ``generate_videos`` flow against a bare asyncio + httpx script, same jobs, same emulator.

Both make ``--videos`` 4 s sora-2 videos on the APIFrame emulator (``--latency`` s per job, run in a
separate process), at most ``--concurrency`` jobs in flight, polling every ``--poll-interval`` s,
and store the same MP4 bytes in a local directory. The bare script does only submit / poll /
download; the flow also verifies every MP4 with PyAV, hashes it, writes a sidecar, the manifest,
the cost ledger, artifacts and events, and runs 3 task runs per item (submit, wait, download) on a real Prefect server.

The Prefect server (``prefect_test_harness``: a real API server on SQLite in a subprocess) is started
and sent one warm-up request before anything is timed; its start-up is printed but not counted.
Target: flow / bare <= 1.10. ``--latency 15`` shows the ratio for longer jobs.

Usage:
    python bench/batch_vs_bare.py [--videos 100] [--latency 3] [--concurrency 10] [--poll-interval 0.5]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emulator_process, machine, quiet_prefect_home, recorded_task_runs  # noqa: E402

quiet_prefect_home()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import httpx  # noqa: E402

from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY  # noqa: E402

DURATION, WIDTH, HEIGHT = 4, 1280, 720  # sora-2 standard 16:9: the smallest clip APIFrame makes


def prompts(count: int) -> list[str]:
    return [f"benchmark clip number {n}" for n in range(count)]


async def bare(base_url: str, out: Path, count: int, concurrency: int, poll_interval: float) -> None:
    """Submit, poll and download with nothing but asyncio and httpx."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with (
        httpx.AsyncClient(base_url=base_url, headers={"X-API-Key": EMULATOR_API_KEY}, timeout=60, limits=limits) as api,
        httpx.AsyncClient(timeout=60, limits=limits) as cdn,
    ):

        async def one(n: int, prompt: str) -> None:
            async with gate:
                body = {
                    "model": "sora-2",
                    "prompt": prompt,
                    "soraParams": {"duration": DURATION, "aspect_ratio": "16:9", "resolution": "standard"},
                }
                created = await api.post(
                    "/v2/videos/generate", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
                )
                created.raise_for_status()
                job_id = created.json()["jobId"]
                while True:
                    await asyncio.sleep(poll_interval)
                    job = (await api.get(f"/v2/jobs/{job_id}")).raise_for_status().json()
                    if job["status"] == "COMPLETED":
                        break
                    if job["status"] in ("FAILED", "CANCELLED"):
                        raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
                async with cdn.stream("GET", job["result"]["videoUrl"]) as response:
                    response.raise_for_status()
                    with open(out / f"{n:04d}-{job_id}.mp4", "wb") as file:
                        async for chunk in response.aiter_bytes():
                            file.write(chunk)

        await asyncio.gather(*(one(n, p) for n, p in enumerate(prompts(count))))


async def with_flow(base_url: str, out: Path, count: int, concurrency: int, poll_interval: float) -> dict:
    from prefect_videogen.batch.expansion import PromptSource
    from prefect_videogen.blocks import APIFrameCredentials, LocalVideoStorage
    from prefect_videogen.flows import generate_videos

    source = PromptSource(
        rows=[{"prompt": p} for p in prompts(count)],
        defaults={"model": "sora-2", "duration": DURATION, "aspect_ratio": "16:9"},
    )
    provider = APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=base_url, poll_interval_seconds=poll_interval)
    state = await generate_videos(
        source,
        provider=provider,
        storage=LocalVideoStorage(base_path=str(out)),
        max_concurrency=concurrency,
        return_state=True,
    )
    return {"counts": (await state.aresult()).counts, "flow_run_id": state.state_details.flow_run_id}


async def task_breakdown(flow_run_id) -> dict[str, tuple[int, float]]:
    """Task runs of the flow run by kind (first word of the name): count and mean seconds each."""
    runs = await recorded_task_runs(flow_run_id)
    kinds: dict[str, list[float]] = {}
    for run in runs.values():
        if run.start_time and run.end_time:
            kinds.setdefault(run.name.split()[0], []).append((run.end_time - run.start_time).total_seconds())
    return {kind: (len(times), sum(times) / len(times)) for kind, times in sorted(kinds.items())}


async def warm_up_server() -> None:
    """Part of the server's start-up: its first ``/admin/version`` answer takes 1.2 s (lazy set-up).

    A long-running server has paid that long ago; counted, it was 4 % of the flow's time here.
    """
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        await client.api_version()


def digests(folder: Path) -> list[str]:
    return sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.mp4"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--latency", type=float, default=3.0, help="emulated seconds per job (default 3)")
    parser.add_argument("--concurrency", type=int, default=10, help="jobs in flight at once (default 10)")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="seconds between polls, both sides")
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness

    import prefect_videogen.flows  # noqa: F401  (imported before timing, like the bare side's httpx)

    print(f"machine        {machine()}")
    print(
        f"workload       {args.videos} videos of {DURATION} s {WIDTH}x{HEIGHT}, APIFrame emulator latency "
        f"{args.latency:g} s, {args.concurrency} in flight, poll every {args.poll_interval:g} s"
    )
    work = Path(tempfile.mkdtemp(prefix="videogen-bench-"))
    # The worker policy keeps storage under its allowed roots: this run's scratch directory is one.
    os.environ.setdefault("PREFECT_VIDEOGEN_ALLOWED_ROOTS", str(work))
    (work / "bare").mkdir()
    with emulator_process("apiframe", latency=args.latency, warm=f"{WIDTH}x{HEIGHT}x{DURATION}") as emulator:
        started = time.monotonic()
        with prefect_test_harness(server_startup_timeout=120):
            asyncio.run(warm_up_server())
            print(f"prefect server start-up {time.monotonic() - started:.1f} s (not counted)")

            started, cpu = time.monotonic(), time.process_time()
            asyncio.run(bare(emulator.base_url, work / "bare", args.videos, args.concurrency, args.poll_interval))
            bare_seconds, bare_cpu = time.monotonic() - started, time.process_time() - cpu
            bare_counters = emulator.counters()
            emulator.reset()

            started, cpu = time.monotonic(), time.process_time()
            outcome = asyncio.run(
                with_flow(emulator.base_url, work / "flow", args.videos, args.concurrency, args.poll_interval)
            )
            flow_seconds, flow_cpu = time.monotonic() - started, time.process_time() - cpu
            flow_counters = emulator.counters()
            counts, breakdown = outcome["counts"], asyncio.run(task_breakdown(outcome["flow_run_id"]))

    ideal = -(-args.videos // args.concurrency) * args.latency
    same = digests(work / "bare") == digests(work / "flow")
    print(f"ideal          {ideal:.1f} s ({-(-args.videos // args.concurrency)} waves x {args.latency:g} s latency)")
    for name, seconds, cpu, counters in (
        ("bare", bare_seconds, bare_cpu, bare_counters),
        ("flow", flow_seconds, flow_cpu, flow_counters),
    ):
        print(
            f"{name:<14} {seconds:.1f} s, this process's CPU {cpu:.1f} s ({cpu / seconds:.0%} of a core); "
            f"jobs {counters.get('jobs_created', 0)}, polls {counters.get('polls', 0)}, "
            f"listings {counters.get('listings', 0)}, downloads {counters.get('downloads', 0)}"
        )
    print(f"flow items     {counts}")
    print(
        "flow tasks     "
        + ", ".join(f"{kind} {n} x {mean:.2f} s" for kind, (n, mean) in breakdown.items())
        + f"  (waits include the {args.latency:g} s job)"
    )
    print(f"same bytes     {same} ({len(digests(work / 'flow'))} MP4s in each)")
    ratio = flow_seconds / bare_seconds
    print(f"ratio          flow / bare = {ratio:.3f}  (target <= 1.10: {'PASS' if ratio <= 1.10 else 'FAIL'})")
    print(
        f"overhead       {(flow_seconds - bare_seconds) / args.videos * 1000:.0f} ms per video of wall time, "
        f"{(flow_seconds - bare_seconds) * args.concurrency / args.videos * 1000:.0f} ms per item in its slot"
    )


if __name__ == "__main__":
    main()
