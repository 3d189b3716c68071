"""Benchmark: 1,000 jobs waited on at once by one worker process: peak memory and CPU while waiting.

Three ways to wait, each in a fresh child process, against the same APIFrame emulator (its own
process, so its cost is not counted), jobs taking ``--wait`` seconds:

- async:      ``wait_for_job`` over one HttpTransport-based APIFrame provider, 1,000 coroutines in
              one event loop; their reads are shared by the provider's ``JobWatcher`` (one
              ``GET /v2/jobs`` listing sweep answers every due job).
- async-each: the same with the watcher off: every job polls ``GET /v2/jobs/{id}`` on its own.
- threads:    one thread per job, each polling with a shared ``httpx.Client`` (sync) on the same
              ``PollSchedule``.

All jobs are submitted first; the window measured is from the last submit until every job is seen
done. CPU is ``time.process_time()`` over the window divided by its wall time (1.0 = one core);
peak RSS is the process's VmHWM (the submit phase included); "RSS at start" is the resident size when
the window opens (imports, including Prefect through the package, are ~120 MiB of it). Lag (async
variants) is how long after its end (its submit's answer + ``--wait``) each wait returned.

Targets: peak RSS under 300 MB and under 10 % of one core while waiting.

Usage:
    python bench/jobs_in_flight.py [--jobs 1000] [--wait 120] [--variants async threads]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emulator_process, machine, rss_mib  # noqa: E402

SUBMIT_CONCURRENCY = 50
VARIANTS = ("async", "async-each", "threads")


def peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def report(
    variant: str,
    jobs: int,
    window: float,
    cpu: float,
    done: int,
    rss_at_start: float,
    threads: int,
    lags: list[float] | None = None,
) -> None:
    lags = sorted(lags or [float("nan")])
    print(
        json.dumps(
            {
                "variant": variant,
                "lag_p50_s": lags[len(lags) // 2],
                "lag_p95_s": lags[int(len(lags) * 0.95)],
                "lag_max_s": lags[-1],
                "jobs": jobs,
                "window_s": window,
                "cpu_s": cpu,
                "done": done,
                "peak_rss_mib": peak_rss_mib(),
                "rss_window_start_mib": rss_at_start,
                "threads": threads,
            }
        )
    )


async def run_async(base_url: str, jobs: int, key: str, *, listing: bool, wait: float) -> None:
    from prefect_videogen.catalog import load_catalog
    from prefect_videogen.models import VideoRequest
    from prefect_videogen.providers.apiframe import APIFrameVideoProvider
    from prefect_videogen.providers.polling import wait_for_job
    from prefect_videogen.providers.watch import JobWatcher

    gate = asyncio.Semaphore(SUBMIT_CONCURRENCY)
    catalog = load_catalog()
    async with APIFrameVideoProvider(key, base_url=base_url) as provider:
        JobWatcher.of(provider).listing = listing  # async-each: the watcher reads each job alone

        async def submit(n: int):
            async with gate:
                job = await provider.submit(catalog.plan("apiframe", VideoRequest(prompt=f"in flight {n}", duration=4)))
                return job, time.monotonic()

        async def seen_done(job, submitted_at: float) -> float:
            """Seconds from the job's end (its submit + ``wait``: a little late, by the submit's answer)
            until its wait returned."""
            await wait_for_job(provider, job, timeout=3600)
            return time.monotonic() - (submitted_at + wait)

        submitted = await asyncio.gather(*(submit(n) for n in range(jobs)))
        cpu, started, rss = time.process_time(), time.monotonic(), rss_mib()
        lags = await asyncio.gather(*(seen_done(job, at) for job, at in submitted))
        report(
            "async" if listing else "async-each",
            jobs,
            time.monotonic() - started,
            time.process_time() - cpu,
            len(lags),
            rss,
            threading.active_count(),
            lags,
        )


def run_threads(base_url: str, jobs: int, key: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from prefect_videogen.providers.polling import PollSchedule

    client = httpx.Client(
        base_url=base_url,
        headers={"X-API-Key": key},
        timeout=60,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
    )
    finished: list[str] = []
    errors: list[str] = []

    def submit(n: int) -> str:
        body = {
            "model": "sora-2",
            "prompt": f"in flight {n}",
            "soraParams": {"duration": 4, "aspect_ratio": "16:9", "resolution": "standard"},
        }
        return client.post("/v2/videos/generate", json=body).raise_for_status().json()["jobId"]

    def wait(job_id: str) -> None:
        schedule, begun, progress = PollSchedule(), time.monotonic(), None
        while True:
            time.sleep(schedule.next_delay(None, progress=progress, elapsed=time.monotonic() - begun))
            try:
                job = client.get(f"/v2/jobs/{job_id}").raise_for_status().json()
            except httpx.HTTPError as exc:  # a bare loop has no retries: count the loss and stop
                errors.append(type(exc).__name__)
                return
            if job["status"] == "COMPLETED":
                finished.append(job_id)
                return
            progress = job["progress"] / 100 if isinstance(job["progress"], int) else None

    with ThreadPoolExecutor(SUBMIT_CONCURRENCY) as pool:
        job_ids = list(pool.map(submit, range(jobs)))
    threads = [threading.Thread(target=wait, args=(job_id,), daemon=True) for job_id in job_ids]
    cpu, started, rss = time.process_time(), time.monotonic(), rss_mib()
    for thread in threads:
        thread.start()
    running = threading.active_count()
    for thread in threads:
        thread.join()
    report("threads", jobs, time.monotonic() - started, time.process_time() - cpu, len(finished), rss, running)
    if errors:
        print(f"threads: {len(errors)} polls failed: {sorted(set(errors))}", file=sys.stderr)
    client.close()


def child(args: argparse.Namespace) -> None:
    from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY

    if args.child in ("async", "async-each"):
        asyncio.run(
            run_async(args.base_url, args.jobs, EMULATOR_API_KEY, listing=args.child == "async", wait=args.wait)
        )
    else:
        run_threads(args.base_url, args.jobs, EMULATOR_API_KEY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--wait", type=float, default=120.0, help="emulated seconds per job (default 120)")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS),
        help="which to run (default: all; the ratios need async and another)",
    )
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"machine        {machine()}")
    print(f"workload       {args.jobs} APIFrame jobs of {args.wait:g} s each, waited on by one process")
    results = []
    with emulator_process("apiframe", latency=args.wait) as emulator:
        for variant in args.variants:
            emulator.reset()
            child_run = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    variant,
                    "--base-url",
                    emulator.base_url,
                    "--jobs",
                    str(args.jobs),
                    "--wait",
                    str(args.wait),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            output = child_run.stdout
            if child_run.stderr.strip():
                print(child_run.stderr.strip().splitlines()[-1])
            result = json.loads(output.strip().splitlines()[-1])
            counters = emulator.counters()
            result["polls"], result["listings"] = counters.get("polls", 0), counters.get("listings", 0)
            results.append(result)
    print(
        f"{'variant':<8} {'window s':>8} {'cpu s':>6} {'cpu share':>9} {'peak RSS MiB':>12} {'RSS at start':>12} "
        f"{'polls':>6} {'listings':>8} {'requests/job':>12} {'lag p50/p95/max s':>17}  target (<300 MB, <10% core)"
    )

    def lag(r: dict) -> str:
        return f"{r['lag_p50_s']:.1f}/{r['lag_p95_s']:.1f}/{r['lag_max_s']:.1f}"

    for r in results:
        share = r["cpu_s"] / r["window_s"]
        verdict = "PASS" if r["peak_rss_mib"] * 1.048576 < 300 and share < 0.10 else "FAIL"
        print(
            f"{r['variant']:<8} {r['window_s']:>8.1f} {r['cpu_s']:>6.2f} {share:>9.1%} {r['peak_rss_mib']:>12.0f} "
            f"{r['rss_window_start_mib']:>12.0f} {r['polls']:>6} {r['listings']:>8} "
            f"{(r['polls'] + r['listings']) / r['jobs']:>12.1f} {lag(r):>17}  {verdict} "
            f"({r['done']} done, {r['threads']} threads)"
        )
    by_name = {r["variant"]: r for r in results}
    a = by_name.get("async")
    for other in (by_name[name] for name in VARIANTS[1:] if a and name in by_name):
        print(
            f"ratio          {other['variant']} / async: CPU {other['cpu_s'] / max(a['cpu_s'], 1e-9):.2f}x, "
            f"peak RSS {other['peak_rss_mib'] / a['peak_rss_mib']:.2f}x, window {other['window_s'] / a['window_s']:.2f}x"
        )


if __name__ == "__main__":
    main()
