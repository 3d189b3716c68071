"""Labels a person finds runs by: the provider tag even on a run refused at once; local job records."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client

from prefect_videogen.blocks import LocalRenderer
from prefect_videogen.errors import InvalidRequest, InvalidVideoRequest
from prefect_videogen.flows import generate_video
from prefect_videogen.models import VideoRequest
from prefect_videogen.providers.local import LocalProvider, default_jobs_dir


async def test_a_run_refused_before_any_call_is_still_tagged(prefect_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = await generate_video(VideoRequest(prompt="a fox", duration=61), provider=LocalRenderer(), return_state=True)
    assert state.is_failed()
    with pytest.raises(InvalidVideoRequest, match="duration"):
        await state.aresult()
    async with get_client() as client:
        run = await client.read_flow_run(state.state_details.flow_run_id)
    assert "videogen:local" in run.tags


def test_local_jobs_live_under_prefect_home(monkeypatch, tmp_path):
    monkeypatch.delenv("PREFECT_VIDEOGEN_LOCAL_JOBS", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    assert default_jobs_dir() == tmp_path / "home" / "videogen-local-jobs"
    monkeypatch.setenv("PREFECT_VIDEOGEN_LOCAL_JOBS", str(tmp_path / "jobs"))
    assert default_jobs_dir() == tmp_path / "jobs"


async def test_a_missing_job_record_says_where_and_what_to_do(tmp_path):
    from prefect_videogen.models import JobStatus, VideoJob

    provider = LocalProvider(jobs_dir=tmp_path / "jobs")
    job = VideoJob(
        provider="local", job_id="local_gone", model="title-card", status=JobStatus.QUEUED, raw_status="queued"
    )
    with pytest.raises(InvalidRequest) as caught:
        await provider.get_job(job)
    assert str(tmp_path / "jobs") in str(caught.value) and "--refresh" in str(caught.value)
