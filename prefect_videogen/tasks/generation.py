"""Submit, wait and download as Prefect tasks, one provider call site each.

Submit is its own task and is never retried by Prefect: it is paid, and a retry after an
ambiguous failure could pay twice. Waiting and downloading are idempotent given the job id, so
they retry on errors whose type says they are worth it.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import Task

from prefect_videogen import progress
from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.catalog import VideoPlan
from prefect_videogen.errors import is_retryable
from prefect_videogen.generation import store_video
from prefect_videogen.models import VideoJob, VideoResult
from prefect_videogen.providers.base import wait_for_job
from prefect_videogen.storage.base import VideoStorage


def retry_if_retryable(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry only errors whose type says another try can help."""
    try:
        state.result()
    except Exception as exc:
        return is_retryable(exc)
    return False


@task(task_run_name="submit {plan.provider}/{plan.request.model}", retries=0)
async def submit_video(plan: VideoPlan, provider: VideoProviderBlock) -> VideoJob:
    """Create the provider job for ``plan`` (paid; never retried blindly)."""
    async with provider.get_client() as client:
        job = await client.submit(plan)
    progress.publish(progress.ProgressEvent("submitted", job.provider, job.job_id, job.progress, job.raw_status))
    return job


@task(
    task_run_name="wait {job.provider}/{job.model} {job.job_id}",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_if_retryable,
)
async def wait_for_video(job: VideoJob, provider: VideoProviderBlock, timeout_seconds: float = 1800.0) -> VideoJob:
    """Poll ``job`` until it succeeds; raises the typed error when it fails or times out."""

    def on_update(current: VideoJob) -> None:
        progress.publish(
            progress.ProgressEvent("status", current.provider, current.job_id, current.progress, current.raw_status)
        )

    async with provider.get_client() as client:
        return await wait_for_job(client, job, timeout=timeout_seconds, on_update=on_update)


@task(
    task_run_name="download {job.provider}/{job.model} {job.job_id}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_if_retryable,
)
async def download_video(
    plan: VideoPlan,
    job: VideoJob,
    provider: VideoProviderBlock,
    storage: VideoStorage,
    key_fields: dict[str, str] | None = None,
    timings: dict[str, float] | None = None,
) -> VideoResult:
    """Stream the finished video into ``storage``, verify it and write its sidecar."""
    started = time.monotonic()
    async with provider.get_client() as client:
        result = await store_video(client, plan, job, storage, key_fields=key_fields, timings=timings)
    progress.publish(
        progress.ProgressEvent(
            "stored", job.provider, job.job_id, 1.0, "stored",
            {"uri": result.video_uri, "seconds": time.monotonic() - started},
        )
    )
    return result
