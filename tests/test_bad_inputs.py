"""Bad input fails with a clear error BEFORE any paid call, on every provider.

Table-driven: each case runs the user's path (the ``generate_video`` / ``generate_videos`` flows on
the session's Prefect server, or building a block), expects an error type and text that names the
field, the value and what is allowed, and then checks with the emulators' counters that nothing
was sent to a paid endpoint (no create request, no job, no upload) and that the local renderer
made no job. Wrong credentials are the one kind only the provider can detect: those cases expect
exactly one refused request (the API rejects the key, counted as ``auth_failures`` or
``create_requests``), no retry and no job.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prefect.exceptions import ParameterTypeError
from pydantic import ValidationError

from prefect_videogen.blocks import (
    APIFrameCredentials,
    LocalRenderer,
    LocalVideoStorage,
    OpenAICredentials,
    S3VideoStorage,
    ScenarioCredentials,
)
from prefect_videogen.errors import (
    AuthError,
    InvalidBatch,
    InvalidVideoRequest,
    ModelUnavailable,
    StorageError,
    VideoGenError,
)
from prefect_videogen.expansion import PromptSource
from prefect_videogen.flows import generate_video, generate_videos
from prefect_videogen.models import VideoRequest
from prefect_videogen.testing import APIFrameEmulator, EmulatorServer, OpenAIEmulator, ScenarioEmulator
from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY
from prefect_videogen.testing.server import free_port

OPENAI_KEY = "sk-emulator-key"
SCENARIO_KEY, SCENARIO_SECRET = "emu-key", "emu-secret"
# Counters that mean "something paid (or payable) reached the provider".
PAID = ("create_requests", "jobs_created", "uploads", "dry_runs")


@pytest.fixture(scope="module")
def emulators():
    servers = {"apiframe": EmulatorServer(APIFrameEmulator()), "openai": EmulatorServer(OpenAIEmulator()),
               "scenario": EmulatorServer(ScenarioEmulator())}
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


@dataclass
class Ctx:
    """What a case needs: provider blocks on the emulators, a storage, a scratch directory."""

    servers: dict[str, EmulatorServer]
    tmp: Path
    jobs_dir: Path

    def provider(self, name: str, **overrides: Any) -> Any:
        if name == "local":
            return LocalRenderer(jobs_dir=str(self.jobs_dir), queue_delay_seconds=0, fps=6)
        url = self.servers[name].base_url
        if name == "apiframe":
            return APIFrameCredentials(**{"api_key": EMULATOR_API_KEY, "base_url": url,
                                          "poll_interval_seconds": 0.02, **overrides})
        if name == "openai":
            return OpenAICredentials(**{"api_key": OPENAI_KEY, "base_url": url + "/v1", **overrides})
        return ScenarioCredentials(**{"api_key": SCENARIO_KEY, "api_secret": SCENARIO_SECRET,
                                      "base_url": url + "/v1", "poll_interval_seconds": 0.02, **overrides})

    @property
    def storage(self) -> LocalVideoStorage:
        return LocalVideoStorage(base_path=str(self.tmp / "videos"))


Run = Callable[[Ctx], Awaitable[Any]]


@dataclass
class Case:
    id: str
    run: Run
    error: type[BaseException] | tuple[type[BaseException], ...]
    says: tuple[str, ...]
    #: counters expected on each emulator after the case (all others 0): only wrong-key cases set it.
    sent: dict[str, dict[str, int]] = field(default_factory=dict)
    #: a known product bug: the case documents the behaviour we want and must fail until it is fixed.
    xfail: str | None = None


def one(provider: str, *, storage: Callable[[Ctx], Any] | None = None, **request: Any) -> Run:
    """generate_video with ``request`` (a dict: validated by the flow, as from the UI or an API call)."""
    async def run(ctx: Ctx) -> Any:
        return await generate_video({"prompt": "a lighthouse in fog", **request}, provider=ctx.provider(provider),
                                    storage=storage(ctx) if storage else ctx.storage)
    return run


def batch(provider: str, **source: Any) -> Run:
    async def run(ctx: Ctx) -> Any:
        src = source.get("build", lambda c: source)(ctx)
        return await generate_videos(PromptSource(**src), provider=ctx.provider(provider), storage=ctx.storage)
    return run


def with_provider(provider: str, **overrides: Any) -> Run:
    async def run(ctx: Ctx) -> Any:
        return await generate_video(VideoRequest(prompt="a lighthouse in fog"),
                                    provider=ctx.provider(provider, **overrides), storage=ctx.storage)
    return run


def csv_rows(text: str, suffix: str = ".csv") -> Callable[[Ctx], dict]:
    def build(ctx: Ctx) -> dict:
        path = ctx.tmp / f"rows{suffix}"
        path.write_text(text)
        return {"template": "{prompt}", "rows_file": str(path)}
    return build


def missing_image(provider: str) -> Run:
    async def run(ctx: Ctx) -> Any:
        return await one(provider, image=str(ctx.tmp / "no-such-frame.png"))(ctx)
    return run


def closed_port_s3(ctx: Ctx) -> S3VideoStorage:
    # Nothing listens on a port we just freed: connection refused at once, like a dead MinIO.
    return S3VideoStorage(bucket="videos", endpoint_url=f"http://127.0.0.1:{free_port()}",
                          aws_access_key_id="test", aws_secret_access_key="test-secret", region_name="us-east-1")


def under_a_file(ctx: Ctx) -> LocalVideoStorage:
    # Tests run as root, which may write into a chmod 0o500 directory: a path under a FILE cannot be created.
    blocker = ctx.tmp / "not-a-directory"
    blocker.write_text("x")
    blocker.chmod(stat.S_IRUSR)
    return LocalVideoStorage(base_path=str(blocker / "videos"))


CASES = [
    # --- durations, per provider and model (the catalog) ---------------------------------------
    Case("duration-apiframe", one("apiframe", model="sora-2", duration=5), InvalidVideoRequest,
         ("duration=5", "apiframe model 'sora-2'", "4, 8, 10, 12, 15")),
    Case("duration-openai", one("openai", model="sora-2-pro", duration=10), InvalidVideoRequest,
         ("duration=10", "openai model 'sora-2-pro'", "4, 8, 12")),
    Case("duration-scenario", one("scenario", model="sora-2", duration=15), InvalidVideoRequest,
         ("duration=15", "scenario model 'sora-2'", "4, 8, 12, 16, 20")),
    Case("duration-local", one("local", duration=61), InvalidVideoRequest,
         ("duration=61", "local model 'title-card'", "from 1 to 60")),
    Case("duration-zero", one("apiframe", duration=0), ParameterTypeError,
         ("duration", "greater than 0")),
    Case("duration-not-a-number", one("scenario", duration="four"), ParameterTypeError,
         ("duration", "valid integer")),
    # --- aspect ratios and resolutions --------------------------------------------------------
    Case("aspect-openai", one("openai", aspect_ratio="1:1"), ParameterTypeError,
         ("aspect_ratio", "'16:9' or '9:16'")),
    Case("aspect-batch-row", batch("apiframe", rows=[{"prompt": "a fox", "aspect_ratio": "4:3"}]), InvalidBatch,
         ("row 1", "aspect_ratio='4:3'", "'16:9' or '9:16'")),
    Case("resolution-apiframe-sora-2", one("apiframe", model="sora-2", resolution="high"), InvalidVideoRequest,
         ("resolution='high'", "apiframe model 'sora-2'", "'standard'")),
    Case("resolution-openai-sora-2", one("openai", model="sora-2", resolution="high"), InvalidVideoRequest,
         ("resolution='high'", "openai model 'sora-2'", "'standard'")),
    Case("resolution-scenario-sora-2", one("scenario", model="sora-2", resolution="high"), InvalidVideoRequest,
         ("resolution='high'", "scenario model 'sora-2'", "'standard'")),
    Case("resolution-unknown", one("local", resolution="4k"), ParameterTypeError,
         ("resolution", "'standard' or 'high'")),
    # --- prompts -------------------------------------------------------------------------------
    Case("prompt-empty", one("apiframe", prompt=""), ParameterTypeError, ("prompt", "at least 1 character")),
    Case("prompt-blank", one("openai", prompt="   "), ParameterTypeError, ("prompt", "blank")),
    Case("prompt-control-chars", one("scenario", prompt="fox\x00"), ParameterTypeError,
         ("prompt", "control characters")),
    Case("prompt-over-apiframe-limit", one("apiframe", prompt="a" * 4001), InvalidVideoRequest,
         ("prompt='<4001 characters>'", "apiframe", "at most 4000 characters")),
    Case("prompt-over-32000", one("openai", prompt="a" * 32001), ParameterTypeError,
         ("prompt", "at most 32000 characters")),
    Case("prompt-batch-over-apiframe-limit", batch("apiframe", template="{p}", rows=[{"p": "b" * 4001}]),
         InvalidBatch, ("row 1", "prompt='<4001 characters>'", "at most 4000 characters")),
    # --- images --------------------------------------------------------------------------------
    Case("image-missing-apiframe", missing_image("apiframe"), InvalidVideoRequest,
         ("image=", "no-such-frame.png", "an existing local image file or an http(s) URL")),
    Case("image-missing-scenario", missing_image("scenario"), InvalidVideoRequest,
         ("image=", "no-such-frame.png", "an existing local image file")),
    Case("image-bad-scheme", one("openai", image="ftp://example.com/frame.png"), InvalidVideoRequest,
         ("image='ftp://example.com/frame.png'", "a local file path or an http(s) URL")),
    Case("image-file-scheme", one("apiframe", image="file:///etc/passwd"), InvalidVideoRequest,
         ("image='file:///etc/passwd'", "http(s) URL")),
    Case("image-url-on-local", one("local", image="https://example.com/frame.png"), InvalidVideoRequest,
         ("image='https://example.com/frame.png'", "a local file path (the local provider has no network)")),
    # --- models --------------------------------------------------------------------------------
    Case("model-unknown-apiframe", one("apiframe", model="sora-3"), InvalidVideoRequest,
         ("model='sora-3'", "provider 'apiframe'", "'sora-2', 'sora-2-pro'")),
    Case("model-unknown-local", one("local", model="veo-3"), InvalidVideoRequest,
         ("model='veo-3'", "'title-card'")),
    Case("model-unknown-batch", batch("scenario", rows=[{"prompt": "a fox", "model": "kling"}]), InvalidBatch,
         ("row 1", "model='kling'", "'sora-2', 'sora-2-pro'")),
    Case("model-retired-on-api-openai-com", with_provider("openai", base_url="https://api.openai.com/v1"),
         ModelUnavailable, ("'sora-2'", "retired on 2026-09-24", "choose another model")),
    Case("request-unknown-field", one("apiframe", fps=30), ParameterTypeError, ("fps", "Extra inputs")),
    # --- blocks and credentials ----------------------------------------------------------------
    Case("block-unknown-field", with_provider("apiframe", api_kye="afk_x"), ValidationError,
         ("unknown field(s) api_kye", "allowed: api_key")),
    Case("block-base-url-scheme", with_provider("openai", base_url="ftp://gateway.example/v1"), ValidationError,
         ("base_url='ftp://gateway.example/v1'", "must be an http(s) URL")),
    Case("block-blank-key", with_provider("scenario", api_secret="  "), ValidationError, ("api_secret is blank",)),
    Case("wrong-key-apiframe", with_provider("apiframe", api_key="afk_wrong_0123456789"), AuthError,
         ("apiframe", "HTTP 401"), sent={"apiframe": {"auth_failures": 1}}),
    Case("wrong-key-openai", with_provider("openai", api_key="sk-wrong-0123456789"), AuthError,
         ("openai", "HTTP 401"), sent={"openai": {"create_requests": 1}}),
    Case("wrong-key-scenario", with_provider("scenario", api_key="wrong-key"), AuthError,
         ("scenario", "HTTP 401"), sent={"scenario": {"auth_failures": 1}}),
    # --- batches ---------------------------------------------------------------------------------
    Case("batch-unknown-template-variable", batch("apiframe", template="{animal} at {time}",
                                                  grid={"animal": ["a fox"]}), InvalidBatch,
         ("row 1", "template variable(s) time missing", "row has ['animal']")),
    Case("batch-csv-bad-duration", batch("apiframe", build=csv_rows("prompt,duration\na fox,4\nan owl,four\n")),
         InvalidBatch, ("row 2", "duration='four'", "valid integer")),
    Case("batch-csv-duration-not-allowed", batch("openai", build=csv_rows("prompt,duration\na fox,4\nan owl,10\n")),
         InvalidBatch, ("row 2", "duration=10", "4, 8, 12")),
    Case("batch-jsonl-not-json", batch("local", build=csv_rows('{"prompt": "a fox"}\n{prompt: owl}\n', ".jsonl")),
         InvalidBatch, ("line 2", "not JSON")),
    Case("batch-empty", batch("apiframe", template="{prompt}", grid={"prompt": []}), InvalidBatch,
         ("no items",)),
    Case("batch-duplicate-rows", batch("scenario", rows=[{"prompt": "a fox"}, {"prompt": "a fox"}]), InvalidBatch,
         ("row 2", "repeats row 1")),
    # --- money -----------------------------------------------------------------------------------
    Case("budget-negative", lambda ctx: generate_video({"prompt": "a fox"}, provider=ctx.provider("apiframe"),
                                                       storage=ctx.storage, max_cost_usd=-1),
         ParameterTypeError, ("max_cost_usd", "greater than or equal to 0")),
    Case("budget-negative-batch", lambda ctx: generate_videos(PromptSource(rows=[{"prompt": "a fox"}]),
                                                              provider=ctx.provider("apiframe"),
                                                              storage=ctx.storage, max_cost_usd=-0.5),
         ParameterTypeError, ("max_cost_usd", "greater than or equal to 0")),
    Case("budget-too-small", lambda ctx: generate_video({"prompt": "a fox", "model": "sora-2-pro"},
                                                        provider=ctx.provider("apiframe"), storage=ctx.storage,
                                                        max_cost_usd=0.05),
         VideoGenError, ("estimated $0.12", "$0.05 budget", "nothing was submitted")),
    Case("concurrency-limit-missing", lambda ctx: generate_videos(PromptSource(rows=[{"prompt": "a fox"}]),
                                                                  provider=ctx.provider("apiframe"),
                                                                  storage=ctx.storage, concurrency_limit="no-such"),
         VideoGenError, ("concurrency_limit='no-such'", "prefect gcl create no-such")),
    # --- storage -----------------------------------------------------------------------------------
    Case("storage-s3-unreachable", one("apiframe", storage=closed_port_s3), StorageError,
         ("s3://videos", "not writable", "nothing was submitted")),
    Case("storage-unwritable-dir", one("openai", model="sora-2", storage=under_a_file), StorageError,
         ("not-a-directory/videos", "not writable", "nothing was submitted")),
    Case("storage-key-template-local", one("apiframe", storage=lambda ctx: LocalVideoStorage(
        base_path=str(ctx.tmp / "v"), key_template="{nope}.mp4")), InvalidVideoRequest,
         ("'{nope}.mp4'", "placeholders {date}, {slug}, {job_id}")),
    Case("storage-key-template-s3", lambda ctx: generate_video(
        {"prompt": "a fox"}, provider=ctx.provider("apiframe"),
        storage=S3VideoStorage(bucket="videos", key_template="{nope}.mp4")), ValidationError,
         ("key_template='{nope}.mp4'", "placeholders {date}")),
]


def snapshot(servers: dict[str, EmulatorServer]) -> dict[str, dict[str, int]]:
    return {name: {k: v for k, v in s.emulator.counters.items() if v} for name, s in servers.items()}


PARAMS = [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else [])
          for c in CASES]


@pytest.mark.parametrize("case", PARAMS)
async def test_bad_input_fails_before_any_paid_call(prefect_server, emulators, tmp_path, case):
    for server in emulators.values():
        server.emulator.reset()
    ctx = Ctx(emulators, tmp_path, tmp_path / "local-jobs")
    with pytest.raises(case.error) as caught:
        await case.run(ctx)
    message = str(caught.value)
    for fragment in case.says:
        assert fragment in message, f"{fragment!r} not in: {message}"
    counters = snapshot(emulators)
    for name, expected in case.sent.items():
        # Only the provider can tell a key is wrong: one refused request, not retried, no job.
        assert counters[name] == expected, counters
    for name, seen in counters.items():
        if name not in case.sent:
            assert not {k: v for k, v in seen.items() if k in PAID}, (name, seen)
    assert not ctx.jobs_dir.exists() or not os.listdir(ctx.jobs_dir)  # the local renderer made no job


def test_table_has_at_least_thirty_kinds():
    assert len({c.id for c in CASES}) == len(CASES) >= 30


async def test_retired_model_in_a_batch_fails_every_item_without_a_request(prefect_server, tmp_path):
    """On api.openai.com a retired model fails at each submit, before any HTTP (no network here: a request
    would fail as 'cannot connect', not as retired). The batch does not fail up front: each item reports it."""
    creds = OpenAICredentials(api_key=OPENAI_KEY, base_url="https://api.openai.com/v1")
    result = await generate_videos(PromptSource(template="{animal} in snow", grid={"animal": ["a fox", "an owl"]},
                                                defaults={"model": "sora-2-pro"}),
                                   provider=creds, storage=LocalVideoStorage(base_path=str(tmp_path / "v")))
    assert result.counts == {"failed": 2}
    for item in result.items:
        assert "'sora-2-pro' was retired on 2026-09-24" in (item.error or ""), item.error
    assert result.total_cost_usd == 0
