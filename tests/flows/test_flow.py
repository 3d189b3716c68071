"""generate_video on a real Prefect API server (the session harness)."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client

from prefect_videogen.blocks import LocalRenderer, LocalVideoStorage
from prefect_videogen.errors import InvalidVideoRequest
from prefect_videogen.flows import generate_video
from prefect_videogen.media import probe_video
from prefect_videogen.models import VideoRequest

from prefect_helpers import task_states


async def test_generate_video_flow_stores_a_verified_video(prefect_server, tmp_path):
    request = VideoRequest(prompt="a red fox running through fresh snow", duration=4, aspect_ratio="9:16")
    state = await generate_video(
        request,
        provider=LocalRenderer(queue_delay_seconds=0.05, jobs_dir=str(tmp_path / "jobs")),
        storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
        refresh=True,
        return_state=True,
    )
    result = await state.aresult()
    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height, probe.duration_seconds) == (720, 1280, 4.0)
    assert result.resolution == "720x1280" and result.duration_seconds == 4.0
    assert result.provider == "local" and result.model == "title-card"

    names = set(await task_states(state.state_details.flow_run_id))
    async with get_client() as client:
        runs = await client.read_task_runs()
        flow_run = await client.read_flow_run(state.state_details.flow_run_id)
    assert "videogen:local" in flow_run.tags
    # Untagged task runs on purpose: each tagged one waits its turn in Prefect's client-side slot queue.
    assert not any(run.tags for run in runs if run.flow_run_id == state.state_details.flow_run_id)
    assert "submit local/title-card" in names
    assert f"wait local/title-card {result.job_id}" in names
    assert f"download local/title-card {result.job_id}" in names


async def test_bad_request_fails_before_any_submit(prefect_server, tmp_path):
    jobs = tmp_path / "jobs"
    with pytest.raises(InvalidVideoRequest, match="duration=61"):
        await generate_video(
            VideoRequest(prompt="a fox", duration=61),
            provider=LocalRenderer(jobs_dir=str(jobs)),
            storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
        )
    assert not jobs.exists()
