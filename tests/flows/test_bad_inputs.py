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
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from prefect.exceptions import ParameterTypeError
from pydantic import ValidationError

from prefect_videogen.batch.expansion import PromptSource
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
    PolicyViolation,
    StorageError,
    VideoGenError,
)
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
    servers = {
        "apiframe": EmulatorServer(APIFrameEmulator()),
        "openai": EmulatorServer(OpenAIEmulator()),
        "scenario": EmulatorServer(ScenarioEmulator()),
    }
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
            return APIFrameCredentials(
                **{"api_key": EMULATOR_API_KEY, "base_url": url, "poll_interval_seconds": 0.02, **overrides}
            )
        if name == "openai":
            return OpenAICredentials(**{"api_key": OPENAI_KEY, "base_url": url + "/v1", **overrides})
        return ScenarioCredentials(
            **{
                "api_key": SCENARIO_KEY,
                "api_secret": SCENARIO_SECRET,
                "base_url": url + "/v1",
                "poll_interval_seconds": 0.02,
                **overrides,
            }
        )

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
    #: text the error must NOT contain (file contents, answer bodies).
    hides: tuple[str, ...] = ()


def one(provider: str, *, storage: Callable[[Ctx], Any] | None = None, **request: Any) -> Run:
    """generate_video with ``request`` (a dict: validated by the flow, as from the UI or an API call)."""

    async def run(ctx: Ctx) -> Any:
        return await generate_video(
            {"prompt": "a lighthouse in fog", **request},
            provider=ctx.provider(provider),
            storage=storage(ctx) if storage else ctx.storage,
        )

    return run


def batch(provider: str, **source: Any) -> Run:
    async def run(ctx: Ctx) -> Any:
        src = source.get("build", lambda c: source)(ctx)
        return await generate_videos(PromptSource(**src), provider=ctx.provider(provider), storage=ctx.storage)

    return run


def with_provider(provider: str, **overrides: Any) -> Run:
    async def run(ctx: Ctx) -> Any:
        return await generate_video(
            VideoRequest(prompt="a lighthouse in fog"),
            provider=ctx.provider(provider, **overrides),
            storage=ctx.storage,
        )

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
    return S3VideoStorage(
        bucket="videos",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        aws_access_key_id="test",
        aws_secret_access_key="test-secret",
        region_name="us-east-1",
    )


def under_a_file(ctx: Ctx) -> LocalVideoStorage:
    # Tests run as root, which may write into a chmod 0o500 directory: a path under a FILE cannot be created.
    blocker = ctx.tmp / "not-a-directory"
    blocker.write_text("x")
    blocker.chmod(stat.S_IRUSR)
    return LocalVideoStorage(base_path=str(blocker / "videos"))


# --- worker policy helpers (issue 14): files and settings a run must not reach -------------------

SECRET_LINE = "OPENAI_API_KEY=sk-proj-topsecret0123456789"


@contextmanager
def roots(*paths: Path) -> Iterator[None]:
    """Narrow the worker's allowed roots for one case (the flow runs in this process)."""
    previous = os.environ.get("PREFECT_VIDEOGEN_ALLOWED_ROOTS")
    os.environ["PREFECT_VIDEOGEN_ALLOWED_ROOTS"] = os.pathsep.join(str(p) for p in paths)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["PREFECT_VIDEOGEN_ALLOWED_ROOTS"]
        else:
            os.environ["PREFECT_VIDEOGEN_ALLOWED_ROOTS"] = previous


def write_png(path: Path, width: int = 1280, height: int = 720, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (30, 90, 160)).save(path, format=fmt)
    return path


def dotenv_link(ctx: Ctx) -> str:
    env = ctx.tmp / ".env"
    env.write_text(SECRET_LINE + "\n")
    (ctx.tmp / "innocent.png").symlink_to(env)
    return str(ctx.tmp / "innocent.png")


def text_file(ctx: Ctx) -> str:
    path = ctx.tmp / "notes.png"
    path.write_text("meeting notes, not an image\n")
    return str(path)


def sparse_2gb(ctx: Ctx) -> str:
    path = ctx.tmp / "huge.png"
    with open(path, "wb") as handle:
        handle.truncate(2 * 1024**3)  # sparse: costs no disk; a whole read would take 2 GB of memory
    return str(path)


def fifo(ctx: Ctx, name: str = "frame.png") -> str:
    path = ctx.tmp / name
    os.mkfifo(path)  # nobody writes: opening it for reading would block forever
    return str(path)


def directory(ctx: Ctx, name: str = "frame.png") -> str:
    (ctx.tmp / name).mkdir()
    return str(ctx.tmp / name)


def image_case(provider: str, make: Callable[[Ctx], str], **request: Any) -> Run:
    async def run(ctx: Ctx) -> Any:
        return await one(provider, image=make(ctx), **request)(ctx)

    return run


def outside_roots(provider: str, make: Callable[[Ctx], str]) -> Run:
    """The storage is allowed; the image lives (or resolves) outside the allowed roots."""

    async def run(ctx: Ctx) -> Any:
        image = make(ctx)
        with roots(ctx.tmp / "videos", ctx.tmp / "inputs", ctx.jobs_dir):
            return await one(provider, image=image)(ctx)

    return run


def private_png(ctx: Ctx) -> str:
    return str(write_png(ctx.tmp / "private" / "frame.png"))


def symlink_escape(ctx: Ctx) -> str:
    target = write_png(ctx.tmp / "private" / "frame.png")
    (ctx.tmp / "inputs").mkdir()
    (ctx.tmp / "inputs" / "frame.png").symlink_to(target)
    return str(ctx.tmp / "inputs" / "frame.png")


def rows_from(make: Callable[[Ctx], str], template: str = "{prompt}", narrow: bool = False) -> Callable[[Ctx], dict]:
    def build(ctx: Ctx) -> dict:
        return {"template": template, "rows_file": make(ctx)}

    return build


def batch_in(provider: str, build: Callable[[Ctx], dict], *, narrow: bool = False) -> Run:
    async def run(ctx: Ctx) -> Any:
        src = build(ctx)
        if not narrow:
            return await generate_videos(PromptSource(**src), provider=ctx.provider(provider), storage=ctx.storage)
        with roots(ctx.tmp / "videos", ctx.jobs_dir):
            return await generate_videos(PromptSource(**src), provider=ctx.provider(provider), storage=ctx.storage)

    return run


def secret_rows(ctx: Ctx) -> str:
    path = ctx.tmp / "config.csv"
    path.write_text(SECRET_LINE + "\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI\n")
    return str(path)


def outside_rows(ctx: Ctx) -> str:
    path = ctx.tmp / "private" / "payroll.csv"
    path.parent.mkdir()
    path.write_text("prompt,salary\nalice,100000\n")
    return str(path)


def many_rows(ctx: Ctx) -> str:
    path = ctx.tmp / "rows.csv"
    path.write_text("prompt\n" + "".join(f"a fox number {i}\n" for i in range(10_001)))
    return str(path)


def latin1_rows(ctx: Ctx) -> str:
    path = ctx.tmp / "rows.csv"
    path.write_bytes("prompt\nun caf\xe9\n".encode("latin-1"))
    return str(path)


def storage_at(base: Callable[[Ctx], str]) -> Callable[[Ctx], Any]:
    return lambda ctx: LocalVideoStorage(base_path=base(ctx))


def narrowed_one(provider: str, storage: Callable[[Ctx], Any] | None = None, **request: Any) -> Run:
    async def run(ctx: Ctx) -> Any:
        with roots(ctx.tmp / "allowed"):
            return await one(provider, storage=storage, **request)(ctx)

    return run


def jobs_dir_outside(ctx: Ctx) -> Any:
    async def run() -> Any:
        with roots(ctx.tmp / "videos"):
            return await generate_video(
                {"prompt": "a fox"}, provider=LocalRenderer(jobs_dir=str(ctx.tmp / "elsewhere")), storage=ctx.storage
            )

    return run()


def big_grid(n_vars: int, n_values: int) -> dict:
    return {
        "template": " ".join(f"{{v{i}}}" for i in range(n_vars)),
        "grid": {f"v{i}": [f"value {j}" for j in range(n_values)] for i in range(n_vars)},
    }


class _ImageHost(BaseHTTPRequestHandler):
    """A loopback web server a Scenario image URL points at (the worker allows it explicitly per case)."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        routes = {
            "/to-metadata.png": (302, {"Location": "http://169.254.169.254/latest/meta-data/iam"}, b""),
            "/error.png": (500, {}, b"internal stack trace: DB_PASSWORD=hunter2"),
            "/page.png": (200, {"Content-Type": "image/png"}, b"<html>internal admin console</html>"),
        }
        status, headers, body = routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


_image_host: list[ThreadingHTTPServer] = []


def image_host_url(path: str) -> str:
    if not _image_host:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHost)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        _image_host.append(server)
    return f"http://127.0.0.1:{_image_host[0].server_address[1]}{path}"


def scenario_url_image(path: str) -> Run:
    async def run(ctx: Ctx) -> Any:
        previous = os.environ.get("PREFECT_VIDEOGEN_ALLOWED_URL_HOSTS")
        os.environ["PREFECT_VIDEOGEN_ALLOWED_URL_HOSTS"] = "127.0.0.1"  # this worker trusts its loopback host
        try:
            return await one("scenario", image=image_host_url(path))(ctx)
        finally:
            if previous is None:
                del os.environ["PREFECT_VIDEOGEN_ALLOWED_URL_HOSTS"]
            else:
                os.environ["PREFECT_VIDEOGEN_ALLOWED_URL_HOSTS"] = previous

    return run


CASES = [
    # --- durations, per provider and model (the catalog) ---------------------------------------
    Case(
        "duration-apiframe",
        one("apiframe", model="sora-2", duration=5),
        InvalidVideoRequest,
        ("duration=5", "apiframe model 'sora-2'", "4, 8, 10, 12, 15"),
    ),
    Case(
        "duration-openai",
        one("openai", model="sora-2-pro", duration=10),
        InvalidVideoRequest,
        ("duration=10", "openai model 'sora-2-pro'", "4, 8, 12"),
    ),
    Case(
        "duration-scenario",
        one("scenario", model="sora-2", duration=15),
        InvalidVideoRequest,
        ("duration=15", "scenario model 'sora-2'", "4, 8, 12, 16, 20"),
    ),
    Case(
        "duration-local",
        one("local", duration=61),
        InvalidVideoRequest,
        ("duration=61", "local model 'title-card'", "from 1 to 60"),
    ),
    Case("duration-zero", one("apiframe", duration=0), ParameterTypeError, ("duration", "greater than 0")),
    Case("duration-not-a-number", one("scenario", duration="four"), ParameterTypeError, ("duration", "valid integer")),
    # --- aspect ratios and resolutions --------------------------------------------------------
    # Aspect ratios and tiers are catalog data (issue 17): the catalog names what the model takes.
    Case(
        "aspect-openai",
        one("openai", aspect_ratio="1:1"),
        InvalidVideoRequest,
        ("aspect_ratio='1:1'", "openai model 'sora-2'", "'16:9', '9:16'"),
    ),
    Case(
        "aspect-batch-row",
        batch("apiframe", rows=[{"prompt": "a fox", "aspect_ratio": "4:3"}]),
        InvalidBatch,
        ("row 1", "aspect_ratio='4:3'", "apiframe model 'sora-2'", "'16:9', '9:16'"),
    ),
    Case(
        "resolution-apiframe-sora-2",
        one("apiframe", model="sora-2", resolution="high"),
        InvalidVideoRequest,
        ("resolution='high'", "apiframe model 'sora-2'", "'standard'"),
    ),
    Case(
        "resolution-openai-sora-2",
        one("openai", model="sora-2", resolution="high"),
        InvalidVideoRequest,
        ("resolution='high'", "openai model 'sora-2'", "'standard'"),
    ),
    Case(
        "resolution-scenario-sora-2",
        one("scenario", model="sora-2", resolution="high"),
        InvalidVideoRequest,
        ("resolution='high'", "scenario model 'sora-2'", "'standard'"),
    ),
    Case(
        "resolution-unknown",
        one("local", resolution="4k"),
        InvalidVideoRequest,
        ("resolution='4k'", "local model 'title-card'", "'standard', 'high'"),
    ),
    # --- prompts -------------------------------------------------------------------------------
    Case("prompt-empty", one("apiframe", prompt=""), ParameterTypeError, ("prompt", "at least 1 character")),
    Case("prompt-blank", one("openai", prompt="   "), ParameterTypeError, ("prompt", "blank")),
    Case(
        "prompt-control-chars", one("scenario", prompt="fox\x00"), ParameterTypeError, ("prompt", "control characters")
    ),
    Case(
        "prompt-over-apiframe-limit",
        one("apiframe", prompt="a" * 4001),
        InvalidVideoRequest,
        ("prompt='<4001 characters>'", "apiframe", "at most 4000 characters"),
    ),
    Case(
        "prompt-over-32000",
        one("openai", prompt="a" * 32001),
        ParameterTypeError,
        ("prompt", "at most 32000 characters"),
    ),
    Case(
        "prompt-batch-over-apiframe-limit",
        batch("apiframe", template="{p}", rows=[{"p": "b" * 4001}]),
        InvalidBatch,
        ("row 1", "prompt='<4001 characters>'", "at most 4000 characters"),
    ),
    # --- images --------------------------------------------------------------------------------
    Case(
        "image-missing-apiframe",
        missing_image("apiframe"),
        InvalidVideoRequest,
        ("image=", "no-such-frame.png", "an existing local image file or an http(s) URL"),
    ),
    Case(
        "image-missing-scenario",
        missing_image("scenario"),
        InvalidVideoRequest,
        ("image=", "no-such-frame.png", "an existing local image file"),
    ),
    Case(
        "image-bad-scheme",
        one("openai", image="ftp://example.com/frame.png"),
        InvalidVideoRequest,
        ("image='ftp://example.com/frame.png'", "a local file path or an http(s) URL"),
    ),
    Case(
        "image-file-scheme",
        one("apiframe", image="file:///etc/passwd"),
        InvalidVideoRequest,
        ("image='file:///etc/passwd'", "http(s) URL"),
    ),
    Case(
        "image-url-on-local",
        one("local", image="https://example.com/frame.png"),
        InvalidVideoRequest,
        ("image='https://example.com/frame.png'", "a local file path (the local provider has no network)"),
    ),
    # --- models --------------------------------------------------------------------------------
    Case(
        "model-unknown-apiframe",
        one("apiframe", model="sora-3"),
        InvalidVideoRequest,
        ("model='sora-3'", "provider 'apiframe'", "'sora-2', 'sora-2-pro'"),
    ),
    Case("model-unknown-local", one("local", model="veo-3"), InvalidVideoRequest, ("model='veo-3'", "'title-card'")),
    Case(
        "model-unknown-batch",
        batch("scenario", rows=[{"prompt": "a fox", "model": "kling"}]),
        InvalidBatch,
        ("row 1", "model='kling'", "'sora-2', 'sora-2-pro'"),
    ),
    Case(
        "model-retired-on-api-openai-com",
        with_provider("openai", base_url="https://api.openai.com/v1"),
        ModelUnavailable,
        ("'sora-2'", "retired on 2026-09-24", "choose another model"),
    ),
    Case("request-unknown-field", one("apiframe", fps=30), ParameterTypeError, ("fps", "Extra inputs")),
    # --- blocks and credentials ----------------------------------------------------------------
    Case(
        "block-unknown-field",
        with_provider("apiframe", api_kye="afk_x"),
        ValidationError,
        ("unknown field(s) api_kye", "allowed: api_key"),
    ),
    Case(
        "block-base-url-scheme",
        with_provider("openai", base_url="ftp://gateway.example/v1"),
        ValidationError,
        ("base_url='ftp://gateway.example/v1'", "must be an http(s) URL"),
    ),
    Case("block-blank-key", with_provider("scenario", api_secret="  "), ValidationError, ("api_secret is blank",)),
    Case(
        "wrong-key-apiframe",
        with_provider("apiframe", api_key="afk_wrong_0123456789"),
        AuthError,
        ("apiframe", "HTTP 401"),
        sent={"apiframe": {"auth_failures": 1}},
    ),
    Case(
        "wrong-key-openai",
        with_provider("openai", api_key="sk-wrong-0123456789"),
        AuthError,
        ("openai", "HTTP 401"),
        sent={"openai": {"create_requests": 1}},
    ),
    Case(
        "wrong-key-scenario",
        with_provider("scenario", api_key="wrong-key"),
        AuthError,
        ("scenario", "HTTP 401"),
        sent={"scenario": {"auth_failures": 1}},
    ),
    # --- batches ---------------------------------------------------------------------------------
    Case(
        "batch-unknown-template-variable",
        batch("apiframe", template="{animal} at {time}", grid={"animal": ["a fox"]}),
        InvalidBatch,
        ("row 1", "template variable(s) time missing", "row has ['animal']"),
    ),
    Case(
        "batch-csv-bad-duration",
        batch("apiframe", build=csv_rows("prompt,duration\na fox,4\nan owl,four\n")),
        InvalidBatch,
        ("row 2", "duration='four'", "valid integer"),
    ),
    Case(
        "batch-csv-duration-not-allowed",
        batch("openai", build=csv_rows("prompt,duration\na fox,4\nan owl,10\n")),
        InvalidBatch,
        ("row 2", "duration=10", "4, 8, 12"),
    ),
    Case(
        "batch-jsonl-not-json",
        batch("local", build=csv_rows('{"prompt": "a fox"}\n{prompt: owl}\n', ".jsonl")),
        InvalidBatch,
        ("line 2", "not JSON"),
    ),
    Case("batch-empty", batch("apiframe", template="{prompt}", grid={"prompt": []}), InvalidBatch, ("no items",)),
    Case(
        "batch-duplicate-rows",
        batch("scenario", rows=[{"prompt": "a fox"}, {"prompt": "a fox"}]),
        InvalidBatch,
        ("row 2", "repeats row 1"),
    ),
    # --- money -----------------------------------------------------------------------------------
    Case(
        "budget-negative",
        lambda ctx: generate_video(
            {"prompt": "a fox"}, provider=ctx.provider("apiframe"), storage=ctx.storage, max_cost_usd=-1
        ),
        ParameterTypeError,
        ("max_cost_usd", "greater than or equal to 0"),
    ),
    Case(
        "budget-negative-batch",
        lambda ctx: generate_videos(
            PromptSource(rows=[{"prompt": "a fox"}]),
            provider=ctx.provider("apiframe"),
            storage=ctx.storage,
            max_cost_usd=-0.5,
        ),
        ParameterTypeError,
        ("max_cost_usd", "greater than or equal to 0"),
    ),
    Case(
        "budget-too-small",
        lambda ctx: generate_video(
            {"prompt": "a fox", "model": "sora-2-pro"},
            provider=ctx.provider("apiframe"),
            storage=ctx.storage,
            max_cost_usd=0.05,
        ),
        VideoGenError,
        ("estimated $0.12", "$0.05 budget", "nothing was submitted"),
    ),
    Case(
        "concurrency-limit-missing",
        lambda ctx: generate_videos(
            PromptSource(rows=[{"prompt": "a fox"}]),
            provider=ctx.provider("apiframe"),
            storage=ctx.storage,
            concurrency_limit="no-such",
        ),
        VideoGenError,
        ("concurrency_limit='no-such'", "prefect gcl create no-such"),
    ),
    # --- storage -----------------------------------------------------------------------------------
    Case(
        "storage-s3-unreachable",
        one("apiframe", storage=closed_port_s3),
        StorageError,
        ("s3://videos", "not writable", "nothing was submitted"),
    ),
    Case(
        "storage-unwritable-dir",
        one("openai", model="sora-2", storage=under_a_file),
        StorageError,
        ("not-a-directory/videos", "not writable", "nothing was submitted"),
    ),
    Case(
        "storage-key-template-local",
        one("apiframe", storage=lambda ctx: LocalVideoStorage(base_path=str(ctx.tmp / "v"), key_template="{nope}.mp4")),
        InvalidVideoRequest,
        ("'{nope}.mp4'", "placeholders {date}, {slug}, {job_id}"),
    ),
    Case(
        "storage-key-template-s3",
        lambda ctx: generate_video(
            {"prompt": "a fox"},
            provider=ctx.provider("apiframe"),
            storage=S3VideoStorage(bucket="videos", key_template="{nope}.mp4"),
        ),
        ValidationError,
        ("key_template='{nope}.mp4'", "placeholders {date}"),
    ),
    # --- worker policy (issue 14): prompts and numbers ----------------------------------------------
    Case("prompt-zero-width-only", one("apiframe", prompt="\u200b\u200b"), ParameterTypeError, ("prompt", "blank")),
    Case(
        "prompt-invisible-format-chars",
        one("openai", prompt="\u2060\ufeff \u200d"),
        ParameterTypeError,
        ("prompt", "no visible character"),
    ),
    Case(
        "prompt-del",
        one("scenario", prompt="a fox\x7f"),
        ParameterTypeError,
        ("prompt", "control characters", "U+007F"),
    ),
    Case(
        "prompt-c1-nel",
        one("apiframe", prompt="a fox\x85in snow"),
        ParameterTypeError,
        ("prompt", "control characters", "U+0085"),
    ),
    Case("prompt-c1-csi", one("local", prompt="\x9b31m a fox"), ParameterTypeError, ("prompt", "control characters")),
    Case(
        "prompt-escape-sequence",
        one("openai", prompt="a fox \x1b[2J"),
        ParameterTypeError,
        ("prompt", "control characters", "U+001B"),
    ),
    Case(
        "prompt-batch-invisible",
        batch("scenario", rows=[{"prompt": "\u200c"}]),
        InvalidBatch,
        ("row 1", "prompt", "blank"),
    ),
    Case("duration-true", one("apiframe", duration=True), ParameterTypeError, ("duration", "boolean")),
    Case("duration-false-local", one("local", duration=False), ParameterTypeError, ("duration", "boolean")),
    Case(
        "duration-bool-batch-defaults",
        batch("openai", rows=[{"prompt": "a fox"}], defaults={"duration": True}),
        ValidationError,
        ("duration", "boolean"),
    ),
    Case(
        "duration-bool-jsonl-row",
        batch("apiframe", build=csv_rows('{"prompt": "a fox", "duration": true}\n', ".jsonl")),
        InvalidBatch,
        ("row 1", "duration=True", "boolean"),
    ),
    # --- worker policy: local images, checked by content before any read, upload or quote ----------
    Case(
        "image-symlink-to-dotenv-scenario",
        image_case("scenario", dotenv_link),
        InvalidVideoRequest,
        ("image=", "innocent.png", "an image file (JPEG, PNG or WebP)"),
        hides=("OPENAI_API_KEY", "topsecret"),
    ),
    Case(
        "image-symlink-to-dotenv-openai",
        image_case("openai", dotenv_link),
        InvalidVideoRequest,
        ("image=", "an image file (JPEG, PNG or WebP)"),
        hides=("OPENAI_API_KEY", "topsecret"),
    ),
    Case(
        "image-symlink-to-dotenv-apiframe",
        image_case("apiframe", dotenv_link),
        InvalidVideoRequest,
        ("image=", "an image file (JPEG, PNG or WebP)"),
        hides=("OPENAI_API_KEY", "topsecret"),
    ),
    Case(
        "image-not-an-image-scenario-no-quote",
        image_case("scenario", text_file),
        InvalidVideoRequest,
        ("image=", "notes.png", "judged by its content"),
        hides=("meeting notes",),
    ),
    Case(
        "image-not-an-image-local",
        image_case("local", text_file),
        InvalidVideoRequest,
        ("image=", "an image file (JPEG, PNG or WebP)"),
    ),
    Case(
        "image-2gb-openai",
        image_case("openai", sparse_2gb),
        PolicyViolation,
        ("image=", "huge.png", f"{2 * 1024**3} bytes", "PREFECT_VIDEOGEN_MAX_IMAGE_BYTES"),
    ),
    Case("image-2gb-scenario", image_case("scenario", sparse_2gb), PolicyViolation, ("image=", "at most 25 MB")),
    Case("image-fifo-apiframe", image_case("apiframe", fifo), PolicyViolation, ("image=", "not a regular file")),
    Case("image-directory-openai", image_case("openai", directory), PolicyViolation, ("image=", "not a regular file")),
    Case(
        "image-outside-roots-scenario",
        outside_roots("scenario", private_png),
        PolicyViolation,
        ("image=", "outside the allowed roots", "PREFECT_VIDEOGEN_ALLOWED_ROOTS"),
    ),
    Case(
        "image-symlink-escapes-roots-openai",
        outside_roots("openai", symlink_escape),
        PolicyViolation,
        ("image=", "inputs/frame.png", "outside the allowed roots (symlinks followed)"),
    ),
    Case(
        "image-too-wide-apiframe",
        image_case("apiframe", lambda ctx: str(write_png(ctx.tmp / "wide.png", 9000, 8))),
        PolicyViolation,
        ("image=", "9000x8", "8192x8192", "PREFECT_VIDEOGEN_MAX_IMAGE_SIDE"),
    ),
    Case(
        "image-gif-scenario",
        image_case("scenario", lambda ctx: str(write_png(ctx.tmp / "frame.png", 64, 64, "GIF"))),
        InvalidVideoRequest,
        ("image=", "JPEG, PNG or WebP"),
    ),
    # --- worker policy: image URLs the worker would fetch itself (Scenario) ------------------------
    Case(
        "image-url-private-scenario",
        one("scenario", image="http://10.0.0.1/frame.png"),
        PolicyViolation,
        ("image='http://10.0.0.1/frame.png'", "private address", "PREFECT_VIDEOGEN_ALLOWED_URL_HOSTS"),
    ),
    Case(
        "image-url-metadata-scenario",
        one("scenario", image="http://169.254.169.254/latest/meta-data/"),
        PolicyViolation,
        ("image=", "link-local address"),
    ),
    Case(
        "image-url-loopback-scenario",
        lambda ctx: one("scenario", image=ctx.servers["openai"].base_url + "/x.png")(ctx),
        PolicyViolation,
        ("image=", "loopback address"),
    ),
    Case(
        "image-url-redirect-to-metadata-scenario",
        scenario_url_image("/to-metadata.png"),
        PolicyViolation,
        ("image=", "169.254.169.254 resolves to a link-local address"),
    ),
    Case(
        "image-url-error-body-not-echoed-scenario",
        scenario_url_image("/error.png"),
        InvalidVideoRequest,
        ("image=", "HTTP 500", "the answer is not shown"),
        hides=("hunter2", "stack trace"),
    ),
    Case(
        "image-url-not-an-image-scenario-no-quote",
        scenario_url_image("/page.png"),
        InvalidVideoRequest,
        ("image=", "JPEG, PNG or WebP"),
        hides=("admin console",),
    ),
    Case(
        "image-data-url-apiframe",
        one("apiframe", image="data:image/png;base64,iVBORw0KGgo="),
        InvalidVideoRequest,
        ("image='data:image/png", "a local file path or an http(s) URL"),
    ),
    # --- worker policy: rows files ------------------------------------------------------------------
    Case(
        "rows-file-outside-roots",
        batch_in("apiframe", rows_from(outside_rows), narrow=True),
        PolicyViolation,
        ("rows_file=", "payroll.csv", "outside the allowed roots", "PREFECT_VIDEOGEN_ALLOWED_ROOTS"),
        hides=("salary", "alice"),
    ),
    Case(
        "rows-file-dev-zero",
        batch("openai", rows_file="/dev/zero"),
        PolicyViolation,
        ("rows_file='/dev/zero'", "outside the allowed roots"),
    ),
    Case(
        "rows-file-fifo",
        batch_in("scenario", rows_from(lambda ctx: fifo(ctx, "rows.csv"))),
        PolicyViolation,
        ("rows_file=", "not a regular file"),
    ),
    Case(
        "rows-file-directory",
        batch_in("local", rows_from(lambda ctx: directory(ctx, "rows.csv"))),
        PolicyViolation,
        ("rows_file=", "not a regular file"),
    ),
    Case(
        "rows-file-url-off",
        lambda ctx: batch("apiframe", rows_file=ctx.servers["apiframe"].base_url + "/internal.csv")(ctx),
        PolicyViolation,
        ("rows_file=", "rows files from URLs are off", "PREFECT_VIDEOGEN_ALLOW_URL_ROWS_FILES"),
    ),
    Case(
        "rows-file-s3",
        batch("openai", rows_file="s3://private-bucket/payroll.csv"),
        PolicyViolation,
        ("rows_file='s3://private-bucket/payroll.csv'", "'s3' protocol is not read"),
    ),
    Case(
        "rows-file-memory",
        batch("scenario", rows_file="memory://rows.csv"),
        PolicyViolation,
        ("rows_file='memory://rows.csv'", "'memory' protocol"),
    ),
    Case(
        "rows-file-2gb",
        batch_in("apiframe", rows_from(sparse_2gb)),
        PolicyViolation,
        ("rows_file=", "PREFECT_VIDEOGEN_MAX_ROWS_FILE_BYTES"),
    ),
    Case(
        "rows-file-too-many-rows",
        batch_in("local", rows_from(many_rows)),
        InvalidBatch,
        ("rows_file has more than 10000 rows",),
    ),
    Case(
        "rows-file-first-line-not-echoed",
        batch_in("openai", rows_from(secret_rows, template="{zzz}")),
        InvalidBatch,
        ("row 1", "zzz missing", "columns are not shown"),
        hides=("OPENAI_API_KEY", "topsecret", "wJalr"),
    ),
    Case("rows-file-not-utf8", batch_in("apiframe", rows_from(latin1_rows)), InvalidBatch, ("rows_file", "not UTF-8")),
    Case(
        "rows-file-jsonl-not-object",
        batch("scenario", build=csv_rows('["a fox"]\n', ".jsonl")),
        InvalidBatch,
        ("line 1", "not a JSON object"),
    ),
    # --- worker policy: grids and templates ----------------------------------------------------------
    Case(
        "grid-8x10",
        batch("apiframe", **big_grid(8, 10)),
        InvalidBatch,
        ("more than 10000 items", "grid 10 x 10 x 10 x 10 x 10 x 10 x 10 x 10"),
    ),
    Case(
        "rows-times-grid",
        batch(
            "openai",
            template="{p} {q}",
            rows=[{"p": f"fox {i}"} for i in range(200)],
            grid={"q": [f"at {h}h" for h in range(60)]},
        ),
        InvalidBatch,
        ("more than 10000 items", "200 row(s) x grid 60"),
    ),
    Case(
        "template-format-spec",
        batch("scenario", template="{p:>3000000000}", rows=[{"p": "a fox"}]),
        InvalidBatch,
        ("template field {p:>3000000000}", "a format spec", "plain {name} placeholders"),
    ),
    Case(
        "template-conversion",
        batch("apiframe", template="{p!r}", rows=[{"p": "a fox"}]),
        InvalidBatch,
        ("template field {p!r}", "a conversion"),
    ),
    Case(
        "template-attribute",
        batch("local", template="{p.__class__}", rows=[{"p": "a fox"}]),
        InvalidBatch,
        ("template field {p.__class__}", "attribute or index access"),
    ),
    Case(
        "template-index",
        batch("openai", template="{p[0]}", rows=[{"p": "a fox"}]),
        InvalidBatch,
        ("template field {p[0]}", "attribute or index access"),
    ),
    Case(
        "template-positional",
        batch("apiframe", template="a fox {}", rows=[{"p": "x"}]),
        InvalidBatch,
        ("template field {}", "a positional placeholder"),
    ),
    # --- worker policy: storage and renderer folders ---------------------------------------------------
    Case(
        "storage-s3-string",
        one("apiframe", storage=storage_at(lambda ctx: "s3://another-bucket/x")),
        ValidationError,
        ("base_path='s3://another-bucket/x'", "not a local directory", "S3VideoStorage"),
    ),
    Case(
        "storage-memory-string",
        one("openai", storage=storage_at(lambda ctx: "memory://videos")),
        ValidationError,
        ("base_path='memory://videos'", "not a local directory"),
    ),
    Case(
        "storage-outside-roots",
        narrowed_one("scenario", storage=storage_at(lambda ctx: str(ctx.tmp / "etc"))),
        PolicyViolation,
        ("storage.base_path=", "outside the allowed roots", "PREFECT_VIDEOGEN_ALLOWED_ROOTS"),
    ),
    Case(
        "jobs-dir-outside-roots",
        jobs_dir_outside,
        PolicyViolation,
        ("provider.jobs_dir=", "elsewhere", "outside the allowed roots"),
    ),
]


def snapshot(servers: dict[str, EmulatorServer]) -> dict[str, dict[str, int]]:
    return {name: {k: v for k, v in s.emulator.counters.items() if v} for name, s in servers.items()}


PARAMS = [
    pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []) for c in CASES
]


@pytest.mark.timeout(120)
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
    for fragment in case.hides:
        assert fragment not in message, f"{fragment!r} leaked into: {message}"
    counters = snapshot(emulators)
    for name, expected in case.sent.items():
        # Only the provider can tell a key is wrong: one refused request, not retried, no job.
        assert counters[name] == expected, counters
    for name, seen in counters.items():
        if name not in case.sent:
            assert not {k: v for k, v in seen.items() if k in PAID}, (name, seen)
    if not case.sent:
        assert counters == {name: {} for name in emulators}, counters  # no request of any kind
    assert not ctx.jobs_dir.exists() or not os.listdir(ctx.jobs_dir)  # the local renderer made no job


def test_table_has_at_least_eighty_kinds():
    assert len({c.id for c in CASES}) == len(CASES) >= 80


async def test_retired_model_in_a_batch_fails_every_item_without_a_request(prefect_server, tmp_path):
    """On api.openai.com a retired model fails at each submit, before any HTTP (no network here: a request
    would fail as 'cannot connect', not as retired). The batch does not fail up front: each item reports it."""
    creds = OpenAICredentials(api_key=OPENAI_KEY, base_url="https://api.openai.com/v1")
    result = await generate_videos(
        PromptSource(
            template="{animal} in snow", grid={"animal": ["a fox", "an owl"]}, defaults={"model": "sora-2-pro"}
        ),
        provider=creds,
        storage=LocalVideoStorage(base_path=str(tmp_path / "v")),
    )
    assert result.counts == {"failed": 2}
    for item in result.items:
        assert "'sora-2-pro' was retired on 2026-09-24" in (item.error or ""), item.error
    assert result.total_cost_usd == 0
