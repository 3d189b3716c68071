"""Never pay twice, never overspend: cached reruns, refresh, budget refusal, approval, cost artifact."""

from __future__ import annotations

import asyncio
import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run

from prefect_videogen.blocks import LocalRenderer, LocalVideoStorage
from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import ApprovalDenied, BudgetExceeded
from prefect_videogen.flows import generate_video
from prefect_videogen.models import VideoRequest
from prefect_videogen.spend.ledger import Ledger

from prefect_helpers import task_states


@pytest.fixture
def priced_local(tmp_path, monkeypatch):
    """The local renderer at $0.10 per second, through a user catalog override."""
    override = tmp_path / "prices.json"
    row = load_catalog().provider("local").models["title-card"].model_dump(mode="json")
    row["price"] = {
        "unit": "usd",
        "per_second": {"standard": 0.10, "high": 0.20},
        "source": "test",
        "as_of": "2026-11-22",
    }
    override.write_text(json.dumps({"providers": {"local": {"models": {"title-card": row}}}}))
    monkeypatch.setenv("PREFECT_VIDEOGEN_CATALOG", str(override))
    return override


def renderer(tmp_path):
    return LocalRenderer(queue_delay_seconds=0, jobs_dir=str(tmp_path / "jobs"))


async def test_rerun_reuses_the_paid_job_and_refresh_pays_again(prefect_server, tmp_path, priced_local):
    request = VideoRequest(prompt=f"cached fox {tmp_path.name}", duration=2)
    storage = LocalVideoStorage(base_path=str(tmp_path / "videos"))
    first = await generate_video(request, provider=renderer(tmp_path), storage=storage)
    again_state = await generate_video(request, provider=renderer(tmp_path), storage=storage, return_state=True)
    again = await again_state.aresult()
    assert again.job_id == first.job_id and again.sha256 == first.sha256
    assert len(list((tmp_path / "jobs").glob("*.json"))) == 1  # one job created for two runs
    states = await task_states(again_state.state_details.flow_run_id)
    assert states["submit local/title-card"] == "Cached"
    assert states[f"wait local/title-card {first.job_id}"] == "Cached"
    assert states[f"download local/title-card {first.job_id}"] == "Cached"

    fresh = await generate_video(request, provider=renderer(tmp_path), storage=storage, refresh=True)
    assert fresh.job_id != first.job_id
    assert len(list((tmp_path / "jobs").glob("*.json"))) == 2
    entries = await Ledger(storage.get_storage()).entries()
    assert sorted(e.job_id for e in entries) == sorted([first.job_id, fresh.job_id])  # the rerun added nothing
    assert sum(e.charged_usd for e in entries) == pytest.approx(0.40)


async def test_budget_refuses_before_anything_is_sent(prefect_server, tmp_path, priced_local):
    with pytest.raises(BudgetExceeded, match=r"estimated \$0.40 exceeds the \$0.30 left"):
        await generate_video(
            VideoRequest(prompt="too dear", duration=4),
            provider=renderer(tmp_path),
            storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
            max_cost_usd=0.30,
        )
    assert not (tmp_path / "jobs").exists()


async def _paused_run_id():
    async with get_client() as client:
        for _ in range(200):
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                )
            )
            if runs:
                return runs[0].id
            await asyncio.sleep(0.1)
    raise AssertionError("the flow never paused for approval")


@pytest.mark.parametrize("approve", [True, False])
async def test_approval_gate_pauses_for_a_person(prefect_server, tmp_path, priced_local, approve):
    run = asyncio.create_task(
        generate_video(
            VideoRequest(prompt="needs a yes", duration=4),
            provider=renderer(tmp_path),
            storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
            approval_threshold_usd=0.25,
        )
    )
    flow_run_id = await _paused_run_id()
    assert not (tmp_path / "jobs").exists()  # nothing submitted while waiting
    await resume_flow_run(flow_run_id, run_input={"approve": approve, "note": "test"})
    if approve:
        result = await asyncio.wait_for(run, 60)
        assert result.duration_seconds == 4.0
    else:
        with pytest.raises(ApprovalDenied, match=r"estimated \$0.40 was not approved: test"):
            await asyncio.wait_for(run, 60)
        assert not (tmp_path / "jobs").exists()


async def test_cost_table_artifact(prefect_server, tmp_path, priced_local):
    state = await generate_video(
        VideoRequest(prompt="artifact fox", duration=3),
        provider=renderer(tmp_path),
        storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
        return_state=True,
    )
    async with get_client() as client:  # filtered on the server: the session's harness holds hundreds of artifacts
        tables = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["videogen-costs"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
            )
        )
    assert len(tables) == 1
    rows = json.loads(tables[0].data) if isinstance(tables[0].data, str) else tables[0].data
    assert rows[-1]["item"] == "TOTAL" and rows[-1]["usd"] == pytest.approx(0.30)
    assert rows[0]["charge"] == "billed" and rows[0]["estimated"] == "0.3 usd"
