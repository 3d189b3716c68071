"""Benchmark: one large batch (10,000 items by default) on one worker, Prefect server on PostgreSQL.

The ``generate_videos`` flow runs in this process against a ``prefect server start`` on a fresh
PostgreSQL database (127.0.0.1:5432, user postgres, trust auth) and the APIFrame emulator (its own
process: neither's CPU is counted against the flow). A bare asyncio + httpx script (the one of
``batch_vs_bare.py``) makes the same videos first, for comparison.

Reported, against the issue-20 targets:

- wall time against the ideal (items / in flight x latency) and against the bare script: <= 1.15 x ideal;
- CPU of this process per item while the flow runs: <= 40 ms;
- peak RSS of this process while the flow runs: < 1 GiB;
- task runs the flow created, as the server recorded them (read until all of them are there, 3 per
  item and one to expand the prompts, or the count stops growing), the messages the server's broker
  dropped (its log's "Subscription queue is full" lines), and the server's CPU (its process tree);
- the CPU of PostgreSQL and of the emulator over the flow, and the four together in cores: what the
  machine's cores carried while the flow ran;
- the cost of each ledger record and manifest update, first tenth of the batch against the last
  (timed by wrapping ``Ledger.record`` and ``ManifestStore.update``): flat is the target;
- this process's CPU per item in each tenth of the finished items (read at each manifest update):
  whether an item costs more as the batch grows.

Usage:
    python bench/batch_scale.py [--items 10000] [--latency 10] [--in-flight 200] [--poll-interval 1] [--skip-bare]
                                [--messaging {memory,redis}]

``--messaging redis`` runs the server with Prefect's Redis message broker (``prefect-redis``, Redis on
127.0.0.1:6379, database 11, emptied before and after) instead of its in-memory one, which holds at
most 10,000 messages per subscriber and drops the rest when the server falls behind.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emulator_process, free_port, machine, quiet_prefect_home, rss_mib  # noqa: E402

quiet_prefect_home()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import httpx  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/postgres"
# The benchmark's own Redis database (--messaging redis): emptied before and after the run.
REDIS = "redis://127.0.0.1:6379/11"
# A batch's task runs: "expand prompts" once, then submit, wait and download per item (APIFrame
# offers no quote; a batch books costs in plain code).
TASK_RUNS_PER_ITEM = 3


def proc_stat(pid: int | str) -> tuple[str, list[str]]:
    """The command name of ``pid`` and the fields after it in ``/proc/PID/stat`` (``fields[11:15]``:
    utime, stime, cutime, cstime in clock ticks); FileNotFoundError once the process is gone."""
    with open(f"/proc/{pid}/stat") as stat:
        head, tail = stat.read().rsplit(")", 1)  # the name may hold spaces and parentheses
    return head.split("(", 1)[1], tail.split()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live descendants (Linux /proc), in seconds."""
    ticks, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = proc_stat(current)[1]
            ticks += int(fields[11]) + int(fields[12])
            with open(f"/proc/{current}/task/{current}/children") as children:
                todo += [int(child) for child in children.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU of every PostgreSQL process (Linux /proc; "postgres" processes of any user), exited
    backends included through their parent's reaped-children times: the database the server writes
    to shares the machine's cores with the server, the flow and the emulator."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            name, fields = proc_stat(entry)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if name == "postgres":
            ticks += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def postgres_server(work: Path, messaging: str = "memory"):
    """``prefect server start`` on a new PostgreSQL database (with Redis messaging when ``messaging``
    is "redis"); yields the server's pid."""
    import asyncpg

    name = f"videogen_bench_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(PG, timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    if messaging == "redis":
        flush_redis()
        env |= {
            "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
            "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
            "PREFECT_REDIS_MESSAGING_URL": REDIS,
        }
    with open(work / "server.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not start; see {work / 'server.log'}")
            time.sleep(0.5)
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: api}):
            yield server.pid
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if messaging == "redis":
            flush_redis()


def flush_redis() -> None:
    """Empty the benchmark's Redis database (streams a killed run may have left)."""
    import redis

    client = redis.Redis.from_url(REDIS)
    try:
        client.flushdb()
    finally:
        client.close()


def dropped_messages(work: Path) -> int:
    """Messages the server's in-memory broker dropped ("Subscription queue is full" in its log)."""
    with open(work / "server.log", "rb") as log:
        return sum(b"Subscription queue is full" in line for line in log)


class Timings:
    """Seconds per call of the ledger's record and the manifest's update, in call order."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = {"ledger record": [], "manifest update": []}
        # This process's CPU seconds at the end of each manifest update (one per finished item): the
        # CPU per item of each tenth of the batch, to see whether an item costs more as the batch grows.
        self.cpu_marks: list[float] = []

    def install(self) -> None:
        from prefect_videogen.batch.manifest import ManifestStore
        from prefect_videogen.spend.ledger import Ledger

        for name, owner, method in (
            ("ledger record", Ledger, "record"),
            ("manifest update", ManifestStore, "update"),
        ):
            original = getattr(owner, method)

            async def timed(*args, _original=original, _name=name, **kwargs):
                started = time.perf_counter()
                try:
                    return await _original(*args, **kwargs)
                finally:
                    self.calls[_name].append(time.perf_counter() - started)
                    if _name == "manifest update":
                        self.cpu_marks.append(time.process_time())

            setattr(owner, method, timed)

    def lines(self) -> list[str]:
        out = []
        for name, times in self.calls.items():
            if len(times) < 20:
                continue
            tenth = max(len(times) // 10, 1)
            first, last = statistics.median(times[:tenth]), statistics.median(times[-tenth:])
            out.append(
                f"{name:<15} {len(times)} calls; median first tenth {first * 1000:.1f} ms, last tenth "
                f"{last * 1000:.1f} ms (last / first {last / first:.2f})"
            )
        marks = self.cpu_marks
        if len(marks) >= 20:
            tenth = len(marks) // 10
            per_item = [(marks[i + tenth - 1] - marks[i]) / (tenth - 1) * 1000 for i in range(0, 10 * tenth, tenth)]
            out.append(
                "flow CPU/tenth ms per item, by tenth of the items finished: "
                + " ".join(f"{ms:.1f}" for ms in per_item)
                + f" (last / first {per_item[-1] / per_item[0]:.2f})"
            )
        return out


class PeakRss:
    """Samples this process's RSS every 0.5 s in a thread (VmHWM would include the bare run)."""

    def __init__(self) -> None:
        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, rss_mib())

    def __enter__(self) -> PeakRss:
        self.peak = rss_mib()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class GcTime:
    """Collections of the cyclic garbage collector while the flow runs, and the seconds they took,
    per generation (``gc.callbacks``): a large batch keeps many objects alive, and a full collection
    walks them all."""

    def __init__(self) -> None:
        self.seconds, self.count, self._started = [0.0, 0.0, 0.0], [0, 0, 0], 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.count[info["generation"]] += 1

    def __enter__(self) -> GcTime:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


async def count_task_runs(flow_run_id, *, expected: int, quiet: float = 30, timeout: float = 1800) -> tuple[int, float]:
    """The flow run's task runs as the server has recorded them (it records them from events, behind
    the flow), and the seconds after the flow at which they were read: read every 5 s until all
    ``expected`` are there, or the count has not grown for ``quiet`` seconds (events were lost)."""
    from prefect.client.orchestration import get_client

    started = time.monotonic()
    previous, grew = -1, started
    async with get_client() as client:
        while True:
            response = await client._client.post(
                "/task_runs/count", json={"flow_runs": {"id": {"any_": [str(flow_run_id)]}}}
            )
            count, now = int(response.json()), time.monotonic()
            if count != previous:
                previous, grew = count, now
            if count >= expected or now - grew >= quiet or now - started > timeout:
                return count, now - started
            await asyncio.sleep(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=10.0, help="emulated seconds per job (default 10)")
    parser.add_argument("--in-flight", type=int, default=200, help="jobs in flight at once (default 200)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="bare script's seconds between polls")
    parser.add_argument("--skip-bare", action="store_true", help="run the flow only")
    parser.add_argument(
        "--messaging", choices=("memory", "redis"), default="memory", help="the Prefect server's message broker"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="videogen-scale-"))
    os.environ.setdefault("PREFECT_VIDEOGEN_ALLOWED_ROOTS", str(work))
    (work / "bare").mkdir()

    import batch_vs_bare as common  # the bare script and the flow call are the same as there

    import prefect_videogen.flows  # noqa: F401  (imported before timing)

    print(f"machine        {machine()}; load average {os.getloadavg()[0]:.1f} at start")
    print(
        f"workload       {args.items} videos of {common.DURATION} s {common.WIDTH}x{common.HEIGHT}, APIFrame "
        f"emulator latency {args.latency:g} s, {args.in_flight} in flight; server messaging {args.messaging}"
    )
    ideal = -(-args.items // args.in_flight) * args.latency
    timings = Timings()
    timings.install()
    warm = f"{common.WIDTH}x{common.HEIGHT}x{common.DURATION}"
    with (
        emulator_process("apiframe", latency=args.latency, warm=warm) as emulator,
        postgres_server(work, args.messaging) as server,
    ):
        asyncio.run(common.warm_up_server())
        bare_seconds = bare_cpu = None
        if not args.skip_bare:
            started, cpu = time.monotonic(), time.process_time()
            asyncio.run(common.bare(emulator.base_url, work / "bare", args.items, args.in_flight, args.poll_interval))
            bare_seconds, bare_cpu = time.monotonic() - started, time.process_time() - cpu
            bare_counters = emulator.counters()
            emulator.reset()
            print(
                f"bare           {bare_seconds:.1f} s, CPU {bare_cpu:.1f} s ({bare_cpu / args.items * 1000:.1f} ms "
                f"per item); jobs {bare_counters.get('jobs_created', 0)}, polls {bare_counters.get('polls', 0)}"
            )
        server_cpu, database_cpu = tree_cpu_seconds(server), postgres_cpu_seconds()
        emulator_cpu = tree_cpu_seconds(emulator.process.pid)
        with PeakRss() as rss, GcTime() as collections:
            started, cpu = time.monotonic(), time.process_time()
            outcome = asyncio.run(
                common.with_flow(emulator.base_url, work / "flow", args.items, args.in_flight, args.poll_interval)
            )
            flow_seconds, flow_cpu = time.monotonic() - started, time.process_time() - cpu
        server_cpu = tree_cpu_seconds(server) - server_cpu
        database_cpu = postgres_cpu_seconds() - database_cpu
        emulator_cpu = tree_cpu_seconds(emulator.process.pid) - emulator_cpu
        state = emulator.state()
        counters, in_flight = state["counters"], state.get("in_flight", {})
        expected_runs = 1 + TASK_RUNS_PER_ITEM * args.items
        task_runs, counted_after = asyncio.run(count_task_runs(outcome["flow_run_id"], expected=expected_runs))
        dropped = dropped_messages(work)

    per_item = flow_cpu / args.items * 1000
    print(f"ideal          {ideal:.1f} s ({-(-args.items // args.in_flight)} waves x {args.latency:g} s)")
    print(
        f"flow           {flow_seconds:.1f} s = {flow_seconds / ideal:.3f} x ideal (target <= 1.15: "
        f"{'PASS' if flow_seconds <= 1.15 * ideal else 'FAIL'})"
        + (f", {flow_seconds / bare_seconds:.3f} x bare" if bare_seconds else "")
    )
    print(f"flow items     {outcome['counts']}")
    print(
        f"flow CPU       {flow_cpu:.1f} s = {per_item:.1f} ms per item (target <= 40: "
        f"{'PASS' if per_item <= 40 else 'FAIL'})"
        + (f"; bare {bare_cpu / args.items * 1000:.1f} ms" if bare_cpu is not None else "")
    )
    print(f"peak RSS       {rss.peak:.0f} MiB (target < 1024: {'PASS' if rss.peak < 1024 else 'FAIL'})")
    print(
        f"GC             {sum(collections.seconds):.1f} s of the flow's CPU ({sum(collections.seconds) / args.items * 1000:.1f} "
        f"ms per item); collections by generation {collections.count}, seconds "
        f"{[round(t, 1) for t in collections.seconds]}"
    )
    print(
        f"task runs      {task_runs} of {expected_runs} recorded by the server {counted_after:.0f} s after the flow "
        f"({task_runs / args.items:.2f} per item); messages its broker dropped: {dropped}"
    )
    print(f"server CPU     {server_cpu:.1f} s ({server_cpu / flow_seconds:.0%} of a core over the flow)")
    print(f"PostgreSQL CPU {database_cpu:.1f} s ({database_cpu / flow_seconds:.0%} of a core over the flow)")
    print(f"emulator CPU   {emulator_cpu:.1f} s ({emulator_cpu / flow_seconds:.0%} of a core over the flow)")
    machine_cpu = flow_cpu + server_cpu + database_cpu + emulator_cpu
    print(
        f"all four       {machine_cpu / flow_seconds:.2f} of the machine's {os.cpu_count()} cores over the flow "
        f"(flow, server, PostgreSQL, emulator)"
    )
    print(
        f"provider calls jobs {counters.get('jobs_created', 0)}, polls {counters.get('polls', 0)}, listings "
        f"{counters.get('listings', 0)}, downloads {counters.get('downloads', 0)}; peak in flight "
        f"{in_flight.get('peak')}"
    )
    for line in timings.lines():
        print(line)


if __name__ == "__main__":
    main()
