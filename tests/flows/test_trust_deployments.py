"""Deployment runs take saved blocks: block fields given inline are refused before anything runs.

Each run is created with ``run_deployment`` on the session's real Prefect server (deployments with
``enforce_parameter_schema``) and executed the way a process worker executes it:
``python -m prefect.engine`` in a subprocess. The runs of one module start together to share the
subprocess start-up time.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.deployments.runner import EntrypointType
from prefect.settings import PREFECT_API_URL

from prefect_videogen.blocks import APIFrameCredentials, LocalRenderer, LocalVideoStorage, OpenAICredentials
from prefect_videogen.errors import InlineBlockRefused, InvalidVideoRequest
from prefect_videogen.flows import generate_video, generate_videos
from prefect_videogen.flows.params import in_deployment_run, require_saved_blocks
from prefect_videogen.media import probe_video
from prefect_videogen.testing import ChatEmulator, EmulatorServer, OpenAIEmulator

AFK = "afk_trust_deploy_attacker_key_0001"
SK = "sk-trust-deploy-attacker-key-0002"


def request(duration: int = 2) -> dict[str, Any]:
    """A request no other run has made: a cached submit of another run must not answer it."""
    return {"prompt": f"a red fox running through fresh snow {uuid.uuid4().hex[:8]}", "duration": duration}


BATCH_PROMPTS = {"template": "{subject} in snow", "grid": {"subject": ["a fox"]}}


def ref(block_document_id: uuid.UUID) -> dict[str, Any]:
    """What the UI's block picker sends for a block parameter."""
    return {"$ref": {"block_document_id": str(block_document_id)}}


async def deploy(flow: Any, name: str) -> str:
    # to_deployment is sync code that dispatches to a coroutine inside an event loop: run it in a thread.
    deployment = await asyncio.to_thread(
        flow.to_deployment, name=name, enforce_parameter_schema=True, entrypoint_type=EntrypointType.MODULE_PATH
    )
    await deployment.apply()
    return f"{flow.name}/{name}"


async def run_on_worker(deployment: str, parameters: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """Create a run as the UI does, execute it as a process worker does, read what the API holds."""
    flow_run = await run_deployment(deployment, parameters=parameters, timeout=0)
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT__FLOW_RUN_ID": str(flow_run.id)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "prefect.engine",
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    async with get_client() as client:
        stored = await client.read_flow_run(flow_run.id)
    return {
        "id": flow_run.id,
        "state": stored.state,
        "parameters": stored.parameters,
        "output": output.decode(errors="replace"),
    }


async def task_run_names(flow_run_id: uuid.UUID) -> list[str]:
    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return sorted(run.name for run in runs)


def listing(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
async def runs(prefect_server, tmp_path_factory):
    """Every run of this module, started together; the emulators' counters as they were afterwards."""
    root = tmp_path_factory.mktemp("trust")
    work = root / "work"  # the worker's working directory: the default ./videos lands here
    target = root / "target"  # a directory an attacker would like the worker to write into
    jobs = root / "jobs"
    for path in (work, target):
        path.mkdir()
    (target / "important_config").write_text("keep me\n")

    saved = root / "saved"
    storage_id = await LocalVideoStorage(base_path=str(saved / "videos")).save(f"trust-storage-{uuid.uuid4().hex[:8]}")
    renderer_id = await LocalRenderer(jobs_dir=str(saved / "jobs"), queue_delay_seconds=0).save(
        f"trust-renderer-{uuid.uuid4().hex[:8]}"
    )

    single = await deploy(generate_video, "trust-adhoc")
    batch = await deploy(generate_videos, "trust-batch")
    inline_storage = {"base_path": str(target), "key_template": "{item}"}
    with (
        EmulatorServer(OpenAIEmulator(api_key=AFK, latency_seconds=0.05)) as openai,
        EmulatorServer(ChatEmulator(api_key=SK)) as chat,
    ):
        cases = {
            "storage": (single, {"request": request(), "storage": inline_storage}),
            # The private attribute cannot be forged from input data.
            "jobs_dir": (
                single,
                {"request": request(), "provider": {"jobs_dir": str(jobs), "_block_document_id": str(renderer_id)}},
            ),
            # APIFrame-shaped: pydantic would take it for OpenAICredentials and send the key as Bearer
            # (4 s: a duration sora-2 takes, so only the refusal stops the request).
            "apiframe_dict": (
                single,
                {"request": request(4), "provider": {"api_key": AFK, "base_url": f"{openai.base_url}/v1"}},
            ),
            "batch_storage": (batch, {"prompts": BATCH_PROMPTS, "storage": {"base_path": str(target)}}),
            "batch_rewrite": (
                batch,
                {
                    "prompts": BATCH_PROMPTS,
                    "storage": ref(storage_id),
                    "rewrite": {"api_key": SK, "base_url": f"{chat.base_url}/v1"},
                },
            ),
            "saved": (single, {"request": request(), "provider": ref(renderer_id), "storage": ref(storage_id)}),
            "batch_saved": (batch, {"prompts": BATCH_PROMPTS, "storage": ref(storage_id), "preview": True}),
        }
        results = await asyncio.gather(*(run_on_worker(d, p, work) for d, p in cases.values()))
        counters = {"openai": dict(openai.emulator.counters), "chat": dict(chat.emulator.counters)}
    yield {
        "runs": dict(zip(cases, results, strict=True)),
        "counters": counters,
        "work": work,
        "target": target,
        "jobs": jobs,
        "saved": saved,
    }


def assert_refused(run: dict[str, Any], parameter: str) -> None:
    state = run["state"]
    assert state.type == StateType.FAILED, (state, run["output"][-3000:])
    assert "InlineBlockRefused" in state.message
    assert f"{parameter}: a deployment run takes a saved block" in state.message
    assert "pick it" in state.message


async def test_inline_storage_fails_before_its_first_task(runs):
    run = runs["runs"]["storage"]
    assert_refused(run, "storage")
    assert listing(runs["target"]) == {"important_config": b"keep me\n"}
    assert await task_run_names(run["id"]) == []


async def test_inline_renderer_writes_no_job_files(runs):
    run = runs["runs"]["jobs_dir"]
    assert_refused(run, "provider")
    assert not runs["jobs"].exists()
    assert await task_run_names(run["id"]) == []


async def test_inline_apiframe_shaped_key_is_never_sent(runs):
    run = runs["runs"]["apiframe_dict"]
    assert_refused(run, "provider")
    assert runs["counters"]["openai"] == {}  # not one request of any kind
    assert AFK not in run["state"].message and AFK not in run["output"]
    # Why the README says to save blocks: Prefect keeps the run's parameters as given, key included.
    assert run["parameters"]["provider"]["api_key"] == AFK


async def test_batch_refuses_inline_storage_and_rewrite_before_expansion(runs):
    assert_refused(runs["runs"]["batch_storage"], "storage")
    assert_refused(runs["runs"]["batch_rewrite"], "rewrite")
    assert runs["counters"]["chat"] == {}
    assert listing(runs["target"]) == {"important_config": b"keep me\n"}
    for name in ("batch_storage", "batch_rewrite"):
        assert await task_run_names(runs["runs"][name]["id"]) == []  # not even "expand prompts"
    assert list(runs["work"].iterdir()) == []  # nor the default ./videos of the worker


async def test_saved_blocks_picked_as_the_ui_does_work(runs):
    run = runs["runs"]["saved"]
    assert run["state"].type == StateType.COMPLETED, (run["state"], run["output"][-3000:])
    [video] = (runs["saved"] / "videos").rglob("*.mp4")
    assert probe_video(str(video)).duration_seconds == 2.0
    assert any((runs["saved"] / "jobs").iterdir())  # the saved renderer's own jobs folder
    for _ in range(100):  # task runs reach the API through events: the refused runs' zero counts mean something
        if await task_run_names(run["id"]):
            break
        await asyncio.sleep(0.1)
    assert await task_run_names(run["id"])
    batch = runs["runs"]["batch_saved"]
    assert batch["state"].type == StateType.COMPLETED, (batch["state"], batch["output"][-3000:])


async def test_direct_calls_still_take_blocks_built_in_code(prefect_server, tmp_path):
    """No deployment: an object built in code is the caller's own choice."""
    result = await generate_videos(BATCH_PROMPTS, storage=LocalVideoStorage(base_path=str(tmp_path)), preview=True)
    assert result.counts == {"preview": 1}


def test_a_reference_resolves_to_the_saved_class_within_the_union(prefect_server):
    """What the engine does before the flow body: Flow.validate_parameters loads each $ref (Block.load_from_ref)."""
    block_id = APIFrameCredentials(api_key=AFK).save(f"trust-apiframe-{uuid.uuid4().hex[:8]}")
    resolved = generate_video.validate_parameters({"request": request(), "provider": ref(block_id)})["provider"]
    assert type(resolved) is APIFrameCredentials and resolved._block_document_id == block_id
    inline = generate_video.validate_parameters({"request": request(), "provider": {"api_key": AFK}})["provider"]
    assert type(inline) is OpenAICredentials and inline._block_document_id is None  # why inline is refused


def test_outside_a_run_nothing_is_refused():
    assert not in_deployment_run()
    require_saved_blocks(storage=(LocalVideoStorage(base_path="/anywhere"), LocalVideoStorage))


def test_the_error_is_typed_names_the_parameter_and_pickles():
    error = InlineBlockRefused("provider", ["LocalRenderer", "OpenAICredentials"])
    assert isinstance(error, InvalidVideoRequest) and isinstance(error, ValueError) and not error.retryable
    assert str(error).startswith("provider: a deployment run takes a saved block")
    assert "LocalRenderer or OpenAICredentials block" in str(error)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
