"""A provider the package has never heard of, added through the registry alone.

Everything about the toy provider lives in this module: its client, its block, its emulator, its
catalog rows (an override file) and its registration. It then runs through the CLI (``generate``,
its own flag, its environment variables, ``emulator``) and through ``generate_video``, with no
package file changed: the proof that the registry is the only edit point.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.utilities.callables import parameter_schema
from pydantic import Field, SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import prefect_videogen
from prefect_videogen import registry
from prefect_videogen.blocks import LocalVideoStorage, VideoProviderBlock
from prefect_videogen.catalog import VideoPlan
from prefect_videogen.cli import main
from prefect_videogen.flows import generate_video
from prefect_videogen.media import probe_video
from prefect_videogen.models import JobStatus, VideoJob, VideoRequest
from prefect_videogen.providers.base import Quotes, VideoProvider
from prefect_videogen.registry import ProviderDocs, ProviderFlag, ProviderInfo
from prefect_videogen.spend.ledger import Ledger
from prefect_videogen.testing import EmulatorServer, EmulatorState, video_bytes

TOY_KEY = "toy_emulator_key"


class ToyEmulator(EmulatorState):
    """The toy API: POST /jobs, GET /jobs/{id}, GET /jobs/{id}/video, POST /quote; key in ``Toy-Key``."""

    provider = "toy"
    api_key = TOY_KEY

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/jobs", self._create, methods=["POST"]),
                Route("/quote", self._quote, methods=["POST"]),
                Route("/jobs/{job_id}", self._read),
                Route("/jobs/{job_id}/video", self._video),
            ]
        )

    def _refused(self, request: Request) -> Response | None:
        if request.headers.get("toy-key") != self.api_key:
            return JSONResponse({"error": "bad key"}, status_code=401)
        return None

    async def _create(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        body = await request.json()
        job = {"id": f"toy_{uuid.uuid4().hex[:12]}", "created": self.clock(), **body}
        with self.lock:
            self.jobs[job["id"]] = job
        self.count("jobs_created")
        return JSONResponse({"id": job["id"], "status": "waiting"})

    async def _quote(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        body = await request.json()
        self.count("quotes")
        return JSONResponse({"credits": 2 * body["seconds"]})

    async def _read(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        job = self.jobs[request.path_params["job_id"]]
        self.count("polls")
        done = self.elapsed_fraction(job) >= 1.0
        return JSONResponse({"id": job["id"], "status": "done" if done else "drawing", "credits": 2 * job["seconds"]})

    async def _video(self, request: Request) -> Response:
        job = self.jobs[request.path_params["job_id"]]
        width, height = (int(n) for n in job["size"].split("x"))
        return Response(video_bytes(width, height, job["seconds"]), media_type="video/mp4")


class ToyClient(VideoProvider):
    """The toy API's client. It quotes (``Quotes``), so the flows ask for a quote before submitting."""

    name = "toy"

    def __init__(self, api_key: str, *, base_url: str, style: str) -> None:
        self.style = style
        self.http = httpx.AsyncClient(base_url=base_url, headers={"Toy-Key": api_key}, timeout=30)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def quote(self, plan: VideoPlan) -> tuple[float, str]:
        answer = await self.http.post("/quote", json={"seconds": plan.request.duration})
        answer.raise_for_status()
        return float(answer.json()["credits"]), "credits"

    async def submit(self, plan: VideoPlan, *, idempotency_key: str | None = None) -> VideoJob:
        body = {"prompt": plan.request.prompt, "seconds": plan.request.duration, "size": plan.size, "style": self.style}
        answer = await self.http.post("/jobs", json=body)
        answer.raise_for_status()
        return self._job(answer.json(), plan.request.model or "")

    async def get_job(self, job: VideoJob) -> VideoJob:
        answer = await self.http.get(f"/jobs/{job.job_id}")
        answer.raise_for_status()
        return self._job(answer.json(), job.model)

    @asynccontextmanager
    async def stream_video(self, job: VideoJob) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self.http.stream("GET", f"/jobs/{job.job_id}/video") as response:
            response.raise_for_status()
            yield response.aiter_bytes()

    def _job(self, data: dict[str, Any], model: str) -> VideoJob:
        done = data["status"] == "done"
        return VideoJob(
            provider=self.name,
            job_id=data["id"],
            model=model,
            status=JobStatus.SUCCEEDED if done else JobStatus.RUNNING,
            raw_status=data["status"],
            poll_after_seconds=0.02,
            reported_cost=data.get("credits") if done else None,
            reported_cost_unit="credits" if done else None,
        )


class ToyCredentials(VideoProviderBlock):
    """A toy provider's key.

    Example:
        ```python
        creds = ToyCredentials.load("BLOCK_NAME")
        ```
    """

    provider_name = "toy"
    _block_type_name = "Videogen Toy Credentials"
    _block_type_slug = "videogen-toy-credentials"

    api_key: SecretStr = Field(description="Toy API key.")
    base_url: str = Field(default="http://127.0.0.1:9", description="Toy API root.")
    style: str = Field(default="plain", description="Drawing style the toy API applies.")

    def get_client(self) -> ToyClient:
        return ToyClient(self.api_key.get_secret_value(), base_url=self.base_url, style=self.style)

    def account_id(self) -> str:
        return "toy-account"


PROVIDER = ProviderInfo(
    name="toy",
    block=ToyCredentials,
    env={"api_key": "TOY_API_KEY", "base_url": "TOY_BASE_URL"},
    flags=(ProviderFlag("--toy-style", "style", "the toy API's drawing style"),),
    emulator=f"{__name__}:ToyEmulator",
    docs=ProviderDocs(api="a toy API (tests only)", auth="`Toy-Key`", cost="credits"),
)

TOY_CATALOG = {
    "providers": {
        "toy": {
            "default_model": "toy-1",
            "max_prompt_chars": 500,
            "models": {
                "toy-1": {
                    "provider_model_id": "toy-1",
                    "durations": [1, 2],
                    "aspect_ratios": ["16:9", "9:16"],
                    "sizes": {"standard": {"16:9": "320x180", "9:16": "180x320"}},
                    "price": {"unit": "credits", "per_second": {"standard": 2}, "usd_per_unit": 0.01},
                }
            },
        }
    }
}


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """The toy provider registered, with its catalog rows, its emulator running and its key in the environment."""
    catalog = tmp_path / "toy-catalog.json"
    catalog.write_text(json.dumps(TOY_CATALOG))
    monkeypatch.setenv("PREFECT_VIDEOGEN_CATALOG", str(catalog))
    registry.register(PROVIDER)
    try:
        with EmulatorServer(ToyEmulator(latency_seconds=0.1)) as server:
            monkeypatch.setenv("TOY_API_KEY", TOY_KEY)
            monkeypatch.setenv("TOY_BASE_URL", server.base_url)
            yield server
    finally:
        registry.unregister("toy")


def test_the_package_does_not_know_the_toy():
    package = Path(prefect_videogen.__file__).parent
    mentions = [p for p in package.rglob("*.py") if "ToyCredentials" in p.read_text() or '"toy"' in p.read_text()]
    assert mentions == []
    assert "toy" not in registry.names()


def test_cli_generates_with_the_toy_provider(prefect_server, toy, tmp_path, capsys):
    code = main(
        ["generate", "a paper boat", "--provider", "toy", "--duration", "2", "--toy-style", "ink"]
        + ["--out", str(tmp_path / "videos")]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    video = next(line.split(None, 1)[1] for line in out.out.splitlines() if line.startswith("video:"))
    probe = probe_video(video)
    assert (probe.width, probe.height, probe.duration_seconds) == (320, 180, 2.0)
    emulator = toy.emulator
    assert emulator.counters["jobs_created"] == 1 and emulator.counters["quotes"] == 1  # Quotes: asked first
    [job] = emulator.jobs.values()
    assert job["style"] == "ink" and job["size"] == "320x180"  # the provider's own flag reached its client
    [entry] = asyncio.run(Ledger(LocalVideoStorage(base_path=str(tmp_path / "videos")).get_storage()).entries())
    assert (entry.provider, entry.charged_amount, entry.charged_unit) == ("toy", 4.0, "credits")
    assert entry.quoted is not None and entry.quoted.amount == 4.0


def test_cli_names_the_toy_environment_and_refuses_a_foreign_flag(toy, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("TOY_API_KEY")
    assert main(["generate", "a paper boat", "--provider", "toy", "--out", str(tmp_path)]) == 2
    assert "set TOY_API_KEY or pass --block NAME" in capsys.readouterr().err
    assert main(["generate", "a paper boat", "--provider", "local", "--toy-style", "ink", "--out", str(tmp_path)]) == 2
    assert "--toy-style='ink'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "toy-catalog.json"]  # nothing written, nothing sent
    assert toy.emulator.counters["jobs_created"] == 0


async def test_generate_video_takes_the_toy_block(prefect_server, toy, tmp_path):
    # The flow's provider parameter is the registry's Union: the toy block is a choice of the UI's picker...
    schema = parameter_schema(generate_video.fn).model_dump(exclude_none=True)
    slugs = {
        schema["definitions"][o["$ref"].rsplit("/", 1)[1]]["block_type_slug"]
        for o in schema["properties"]["provider"]["anyOf"]
        if "$ref" in o
    }
    assert {"videogen-toy-credentials", "videogen-local-renderer", "videogen-apiframe-credentials"} <= slugs
    # ...and Prefect's parameter validation accepts it.
    result = await generate_video(
        VideoRequest(prompt="a paper lantern", duration=1, aspect_ratio="9:16"),
        provider=ToyCredentials(api_key=TOY_KEY, base_url=toy.base_url, style="chalk"),
        storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
    )
    assert (result.provider, result.resolution, result.duration_seconds) == ("toy", "180x320", 1.0)
    assert probe_video(result.video_uri).width == 180
    assert toy.emulator.counters["jobs_created"] == 1 and toy.emulator.counters["quotes"] == 1


def test_the_emulator_command_serves_the_toy_emulator(tmp_path):
    """``prefect-videogen emulator toy`` in a process where a plugin registered the toy provider."""
    here = Path(__file__).parent
    port = _free_port()
    script = (
        "import sys; from prefect_videogen import registry; import test_registry as toy; "
        "registry.register(toy.PROVIDER); from prefect_videogen.cli import main; "
        f"sys.exit(main(['emulator', 'toy', '--port', '{port}', '--latency', '0.1']))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        lines = [process.stdout.readline() for _ in range(4)]  # type: ignore[union-attr]
        assert lines[0].startswith(f"toy emulator on http://127.0.0.1:{port} "), (lines, process.stderr)
        assert f"  export TOY_API_KEY={TOY_KEY}\n" in lines
        assert f"  export TOY_BASE_URL=http://127.0.0.1:{port}\n" in lines
        answer = httpx.post(f"http://127.0.0.1:{port}/quote", json={"seconds": 2}, headers={"Toy-Key": TOY_KEY})
        assert answer.json() == {"credits": 4}
    finally:
        process.terminate()
        process.wait(timeout=30)


def _free_port() -> int:
    from prefect_videogen.testing.server import free_port

    return free_port()


def test_the_toy_client_is_a_quoting_client():
    assert ToyCredentials.supports(Quotes) and PROVIDER.capabilities() == ["quotes"]
