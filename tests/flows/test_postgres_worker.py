"""Beyond one machine: a real `prefect server start` on PostgreSQL, a process work pool, `prefect deploy` of
deployments/prefect.yaml, and a worker that runs a 2-video batch on the local renderer.

Skipped when PostgreSQL is not reachable at 127.0.0.1:5432 (user postgres, trust auth) or asyncpg is
missing; deselect with ``-m "not postgres"``. One server for the module; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from prefect_videogen.batch.manifest import load_manifest
from prefect_videogen.media import probe_video

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(240)]

asyncpg = pytest.importorskip("asyncpg")

REPO_ROOT = Path(__file__).resolve().parents[2]
PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PREFECT = [sys.executable, "-m", "prefect"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def pg_admin(sql: str) -> None:
    connection = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def pg_admin_now(sql: str) -> None:
    """``pg_admin`` from sync code, on a thread of its own: ``asyncio.run`` in the main thread would
    clear the event loop the session's async tests run on."""
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, pg_admin(sql)).result()


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group (the server and worker start children), SIGKILL after 15 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


class PostgresServer:
    """``prefect server start`` on a database of its own, one for the module.

    Begun when the module's tests are collected (``begin_early``, tests/conftest.py): a start is
    13-15 s on a 2-core machine, spent beside the tests before these; the tests keep apart by their
    own work pool, deployment, block and limit names.
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="videogen-postgres-server-"))
        self.database = f"videogen_test_{uuid.uuid4().hex[:12]}"
        self.process: subprocess.Popen | None = None
        try:
            pg_admin_now(f'CREATE DATABASE "{self.database}"')
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            self.unusable = f"PostgreSQL at 127.0.0.1:5432 not usable as user postgres: {exc!r}"
            self.folder.rmdir()
            return
        self.unusable = ""
        port = free_port()
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
        self.env.update(
            {
                "PREFECT_HOME": str(self.folder / "prefect-home"),
                "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
                "PREFECT_SERVER_DATABASE_CONNECTION_URL": (
                    f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.database}"
                ),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_UI_ENABLED": "false",
                "PREFECT_VIDEOGEN_LOCAL_JOBS": str(self.folder / "jobs"),
            }
        )
        with open(self.folder / "server.log", "wb") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        atexit.register(self.stop)  # a session that ends first leaves no server or database behind

    def wait_until_up(self, timeout: float = 90) -> dict[str, str]:
        """The environment of a process that uses the server, once the server answers."""
        if self.unusable:
            pytest.skip(self.unusable)
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.env['PREFECT_API_URL']}/health", timeout=2).status_code == 200:
                    return self.env
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"prefect server did not start:\n{(self.folder / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)  # waiting for another process to come up: there is nothing to wait on but time

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None
            pg_admin_now(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        shutil.rmtree(self.folder, ignore_errors=True)


begin_early = PostgresServer  # once for the module (tests/conftest.py)


@pytest.fixture(scope="module")
def server(begun_module):
    """The environment of a process that uses the module's server."""
    postgres: PostgresServer = begun_module
    try:
        yield postgres.wait_until_up()
    finally:
        postgres.stop()


def prefect_cli(env: dict[str, str], *args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        [*PREFECT, "--no-prompt", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


async def create_process_pool(api: str, name: str) -> None:
    """``prefect work-pool create NAME --type process`` through the API: the same pool, without a
    process that imports Prefect for one call."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    async with PrefectClient(api=api) as client:
        await client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))


async def test_deploy_and_run_on_postgres_with_a_process_worker(server, tmp_path):
    from prefect.client.orchestration import PrefectClient

    env = server
    await create_process_pool(env["PREFECT_API_URL"], "videogen-local")
    prefect_cli(env, "deploy", "--all", "--prefect-file", "deployments/prefect.yaml", timeout=120)

    videos = tmp_path / "videos"
    parameters = {
        "prompts": {
            "template": "{subject} ({run})",
            "grid": {"run": [tmp_path.name]},
            "rows": [{"subject": "a fox at dawn"}, {"subject": "an owl at dusk", "aspect_ratio": "9:16"}],
            "defaults": {"duration": 1},
        },
        "approval_threshold_usd": None,
    }
    async with PrefectClient(api=env["PREFECT_API_URL"]) as client:
        # Deployment runs take saved blocks, referenced as the UI's block picker does.
        from prefect_videogen.blocks import LocalRenderer, LocalVideoStorage

        for name, block in (
            ("provider", LocalRenderer(queue_delay_seconds=0)),
            ("storage", LocalVideoStorage(base_path=str(videos))),
        ):
            block_id = await block.asave(f"worker-test-{name}", client=client)
            parameters[name] = {"$ref": {"block_document_id": str(block_id)}}
        deployments = {d.name: d for d in await client.read_deployments() if d.work_pool_name == "videogen-local"}
        assert set(deployments) == {"daily", "adhoc"}
        daily = deployments["daily"]
        assert daily.work_pool_name == "videogen-local" and daily.global_concurrency_limit.limit == 1
        assert [s.schedule.cron for s in daily.schedules] == ["0 6 * * *"]
        assert daily.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PREFECT_VIDEOGEN_CHECKOUT }}"}}
        ]
        run = await client.create_flow_run_from_deployment(daily.id, parameters=parameters)

        log = open(tmp_path / "worker.log", "wb")
        # Only the worker knows where its checkout is: the pull step resolves the variable there.
        # The worker's policy allows the storage folder the run names (a worker allows its working directory only).
        worker_env = {
            **env,
            "PREFECT_VIDEOGEN_CHECKOUT": str(REPO_ROOT),
            "PREFECT_VIDEOGEN_ALLOWED_ROOTS": str(tmp_path),
        }
        worker = subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", "videogen-local", "--run-once"],
            env=worker_env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                run = await client.read_flow_run(run.id)
                if run.state is not None and run.state.is_final() or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)  # a separate worker process: poll its flow run's state
        finally:
            stop(worker)
            log.close()
        assert run.state is not None and run.state.is_completed(), (
            f"flow run {run.state}:\n{(tmp_path / 'worker.log').read_text()[-4000:]}"
        )

    stored = sorted(videos.rglob("*.mp4"))
    assert len(stored) == 2
    assert sorted((probe_video(p).width, probe_video(p).height, probe_video(p).duration_seconds) for p in stored) == [
        (720, 1280, 1.0),
        (1280, 720, 1.0),
    ]
    [manifest_file] = (videos / "manifests").glob("batch-*.json")
    manifest = load_manifest(str(manifest_file)).model_dump(mode="json")
    assert {item["status"] for item in manifest["items"].values()} == {"stored"}


async def test_two_workers_run_the_same_batch_at_once_against_s3(server, tmp_path):
    """Two flow runs of one 10-item batch, each on its own worker, storage on S3 (moto server), no Redis:
    the claims in the bucket make it 10 provider jobs and 10 ledger entries."""
    import boto3
    from moto.server import ThreadedMotoServer
    from prefect.client.orchestration import PrefectClient

    from prefect_videogen.spend.ledger import Ledger
    from prefect_videogen.storage import VideoStorage
    from prefect_videogen.testing import EmulatorServer, Fault, OpenAIEmulator

    env = server
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bucket = f"twins-{uuid.uuid4().hex[:10]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    emulator = OpenAIEmulator(latency_seconds=0.3)
    emulator.faults.rate("create", 1.0, Fault(answer_delay_seconds=0.3))  # both runs want each item at once
    workers, logs = [], []
    try:
        with EmulatorServer(emulator) as api:
            await create_process_pool(env["PREFECT_API_URL"], "videogen-twins")
            prefect_cli(
                env,
                "deploy",
                "prefect_videogen/flows/batch.py:generate_videos",
                "--name",
                "twins",
                "--pool",
                "videogen-twins",
                timeout=120,
            )
            parameters = {
                "prompts": {
                    "template": "a heron, take {n} ({run})",
                    "grid": {"n": [str(i) for i in range(10)], "run": [tmp_path.name]},
                    "defaults": {"model": "sora-2", "duration": 4},
                },
                "batch_name": "twins",
                "max_concurrency": 5,
            }
            async with PrefectClient(api=env["PREFECT_API_URL"]) as client:
                # Deployment runs take saved blocks, referenced as the UI's block picker does.
                from prefect_videogen.blocks import OpenAICredentials, S3VideoStorage

                for name, block in (
                    ("provider", OpenAICredentials(api_key="sk-emulator-key", base_url=api.base_url + "/v1")),
                    (
                        "storage",
                        S3VideoStorage(
                            bucket=bucket,
                            prefix="videos",
                            endpoint_url=endpoint,
                            region_name="us-east-1",
                            aws_access_key_id="testing",
                            aws_secret_access_key="testing",
                        ),
                    ),
                ):
                    block_id = await block.asave(f"twins-{name}", client=client, overwrite=True)
                    parameters[name] = {"$ref": {"block_document_id": str(block_id)}}
                [deployment] = [d for d in await client.read_deployments() if d.name == "twins"]
                runs = [
                    await client.create_flow_run_from_deployment(deployment.id, parameters=parameters) for _ in range(2)
                ]
                for i in range(2):
                    logs.append(open(tmp_path / f"worker{i}.log", "wb"))
                    workers.append(
                        subprocess.Popen(
                            [*PREFECT, "worker", "start", "--pool", "videogen-twins", "--limit", "1"],
                            env={**env, **aws},
                            cwd=tmp_path,
                            stdout=logs[i],
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
                deadline = time.monotonic() + 180
                while True:
                    runs = [await client.read_flow_run(r.id) for r in runs]
                    if all(r.state is not None and r.state.is_final() for r in runs) or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(1)  # separate worker processes: poll their flow runs' states
            worker_logs = "\n".join((tmp_path / f"worker{i}.log").read_text()[-3000:] for i in range(2))
            assert all(r.state is not None and r.state.is_completed() for r in runs), (
                [r.state for r in runs],
                worker_logs,
            )
            assert emulator.counters["jobs_created"] == 10, worker_logs
        storage = VideoStorage(
            f"s3://{bucket}/videos",
            storage_options={"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint}},
        )
        entries = await Ledger(storage).entries()
        assert len(entries) == 10 and {e.charge_status.value for e in entries} == {"billed"}
        assert {e.job_id for e in entries} == set(emulator.jobs)
    finally:
        for worker in workers:
            stop(worker)
        for log in logs:
            log.close()
        moto.stop()


# -- one batch over three task workers (issue 20) ----------------------------------------------------

ITEMS, LIMIT = 30, 4


def s3_env() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def start(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


@pytest.mark.timeout(480)
async def test_one_batch_on_three_task_workers_survives_a_killed_worker(server, tmp_path):
    """A 30-item batch handed to three task workers (three machines' worth) under one global limit
    of 4, storage on S3 (moto server). One worker is SIGKILLed while it holds a submitted job; the
    batch run then hangs on that worker's items and is killed too; one rerun completes the batch:
    every item stored exactly once, 30 provider jobs in all, never more than 4 in flight."""
    import boto3
    from moto.server import ThreadedMotoServer
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from prefect_videogen.blocks import APIFrameCredentials, S3VideoStorage
    from prefect_videogen.spend.ledger import Ledger
    from prefect_videogen.storage import VideoStorage
    from prefect_videogen.testing import EmulatorServer
    from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY, APIFrameEmulator

    env = {**server, **s3_env(), "PYTHONPATH": str(REPO_ROOT)}
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint, bucket = f"http://{host}:{port}", f"scale-{uuid.uuid4().hex[:10]}"
    s3_options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint}}
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    storage = VideoStorage(f"s3://{bucket}/videos", storage_options=s3_options)
    emulator = APIFrameEmulator(latency_seconds=1.0)
    processes: list[subprocess.Popen] = []
    try:
        with EmulatorServer(emulator) as api:
            async with PrefectClient(api=env["PREFECT_API_URL"]) as client:
                # ``prefect gcl create videogen-apiframe --limit 4``, without a CLI process.
                await client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name="videogen-apiframe", limit=LIMIT)
                )
                await APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=api.base_url).asave(
                    "scale-provider", client=client
                )
                await S3VideoStorage(
                    bucket=bucket,
                    prefix="videos",
                    endpoint_url=endpoint,
                    region_name="us-east-1",
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                ).asave("scale-storage", client=client)
            workers = [
                start(
                    [sys.executable, "-m", "prefect_videogen.flows.distributed", "--limit", "2"],
                    env,
                    tmp_path / f"worker{i}.log",
                )
                for i in range(3)
            ]
            processes += workers
            args = {
                "tag": tmp_path.name,
                "items": ITEMS,
                "provider": "scale-provider",
                "storage": "scale-storage",
                "batch_name": "scale-out",
            }
            runner = [sys.executable, str(REPO_ROOT / "tests" / "scale_runner.py"), json.dumps(args)]
            first = start(runner, env, tmp_path / "run1.log")
            processes.append(first)

            # Kill worker 0 once it holds a submitted job (its claim, in the bucket, names its pid).
            victim, deadline = workers[0], time.monotonic() + 120
            while not any(c.pid == victim.pid and c.job_id for c in await claims(storage)):
                assert time.monotonic() < deadline and first.poll() is None, logs(tmp_path)
                await asyncio.sleep(0.2)  # other processes at work: poll the bucket
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(timeout=10)

            # The batch run waits for the dead worker's items for ever. Once every item the other
            # workers received is finished (task run ids from the run's and the worker's logs), kill
            # it and run the batch again.
            others = await wait_for_all_but(tmp_path, victim_log=tmp_path / "worker0.log", api=env["PREFECT_API_URL"])
            assert others >= ITEMS - 3  # the victim held at most its limit (2) plus one item received ahead
            stop(first)

            rerun = start(runner, env, tmp_path / "run2.log")
            processes.append(rerun)
            rerun.wait(timeout=240)
            output = (tmp_path / "run2.log").read_text()
            assert f'result {{"stored": {ITEMS}}}' in output, logs(tmp_path)

        claimed = await claims(storage)
        # Every item stored once, each by exactly one job, and no job made twice for one item.
        assert emulator.counters["jobs_created"] == ITEMS == len(claimed)
        assert len({c.job_id for c in claimed}) == ITEMS and {c.job_id for c in claimed} == set(emulator.jobs)
        videos = [p for p in storage.fs.find(f"{bucket}/videos") if p.endswith(".mp4")]
        assert len(videos) == ITEMS
        entries = await Ledger(storage).entries()
        assert len(entries) == ITEMS and {e.charge_status.value for e in entries} == {"billed"}
        assert emulator.in_flight()[1] <= LIMIT  # the global limit, across all three workers
        assert emulator.in_flight()[1] >= 2  # and the items really ran side by side
    finally:
        for process in processes:
            stop(process)
        moto.stop()


TASK_RUN_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


async def wait_for_all_but(tmp_path: Path, *, victim_log: Path, api: str, timeout: float = 240) -> int:
    """Wait until every item task run of the first batch run is final, except those the killed worker
    had received; returns how many that was."""
    import re

    from prefect.client.orchestration import PrefectClient

    victim = set(re.findall(rf"Received task run: ({TASK_RUN_ID})", victim_log.read_text()))
    deadline = time.monotonic() + timeout
    async with PrefectClient(api=api) as client:
        while True:
            created = set(re.findall(rf"/task-run/({TASK_RUN_ID})", (tmp_path / "run1.log").read_text()))
            runs = [await client.read_task_run(run_id) for run_id in sorted(created - victim)]
            if len(created) == ITEMS and all(r.state is not None and r.state.is_final() for r in runs):
                return len(runs)
            assert time.monotonic() < deadline, logs(tmp_path)
            await asyncio.sleep(1)  # other processes at work: poll their task runs


async def claims(storage):
    from prefect_videogen.spend.claims import ClaimStore

    storage.fs.invalidate_cache()  # s3fs caches listings: the claims change under it
    found, _problems = await ClaimStore(storage).all("apiframe")
    return found


def logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(tmp_path.glob("*.log")))
