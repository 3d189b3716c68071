"""Submit, wait and download as Prefect tasks, one provider call site each.

Submit is its own task, retried by Prefect only when the provider refused it (429, never
connected: no job exists), and cached on the request's
fingerprint plus a non-secret account id, so it commits the job id as soon as the provider gives
one and a rerun reuses that job instead of paying again. Wait and download are idempotent given the
job id: they retry on errors whose type says another try can help, and are cached by job id.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prefect import get_run_logger, task
from prefect.client.schemas.objects import TaskRun
from prefect.runtime import task_run
from prefect.states import State
from prefect.tasks import Task
from prefect.utilities.annotations import quote as untraversed

from prefect_videogen import progress
from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.catalog import VideoPlan
from prefect_videogen.errors import JobTimedOut
from prefect_videogen.models import VideoJob, VideoResult
from prefect_videogen.pipeline import store_video
from prefect_videogen.providers.polling import wait_for_job
from prefect_videogen.providers.retry import should_retry
from prefect_videogen.spend.claims import JobClaim, claimed_submit
from prefect_videogen.spend.costs import Cost, estimate_cost
from prefect_videogen.storage.base import VideoStorage
from prefect_videogen.tasks.artifacts import ProgressArtifact, publish_video_artifacts, video_artifact_key
from prefect_videogen.tasks.caching import JobCachePolicy, provider_base_url, submit_policy
from prefect_videogen.tasks.slots import release_current_slot


async def _failure(state: State[Any]) -> BaseException | None:
    """The exception a failed task run raised, None when it did not fail.

    Async on purpose: inside an async task run ``state.result()`` returns a coroutine instead of
    raising, which would make every failure look final. Prefect awaits an async condition.
    """
    try:
        await state.aresult()
    except Exception as exc:
        return exc
    return None


async def retry_if_retryable(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn`` of the free steps (wait, download): :func:`should_retry` decides."""
    return should_retry(await _failure(state), paid=False)


async def retry_if_refused(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """``retry_condition_fn`` of the paid submit: :func:`should_retry` with ``paid=True`` decides.

    A 429 created no job; an ambiguous failure after the body was sent (``maybe_created``) could pay
    twice, and an unreachable endpoint was already retried quickly by the transport.
    """
    return should_retry(await _failure(state), paid=True)


def _retry_delays(default: list[float]) -> list[float]:
    """Prefect retry delays of wait/download; ``PREFECT_VIDEOGEN_RETRY_DELAYS="0,0"`` overrides (tests)."""
    raw = os.environ.get("PREFECT_VIDEOGEN_RETRY_DELAYS")
    return [float(part) for part in raw.split(",")] if raw else default


def _submit_run_name() -> str:
    params = task_run.parameters
    plan = params["plan"]
    if isinstance(plan, untraversed):  # the run context holds the parameters as passed (produce_video's)
        plan = plan.unquote()
    item = params.get("item_id")
    return f"submit {plan.provider}/{plan.request.model}" + (f" {item}" if item else "")


@task(
    task_run_name=_submit_run_name,
    retries=2,
    retry_delay_seconds=_retry_delays([30, 120]),
    retry_condition_fn=retry_if_refused,
    cache_policy=submit_policy(),
    persist_result=True,
)
async def submit_video(
    plan: VideoPlan,
    provider: VideoProviderBlock,
    idempotency_key: str,
    item_id: str = "",
    storage: VideoStorage | None = None,
    estimated: Cost | None = None,
) -> VideoJob:
    """Create the provider job for ``plan`` (paid: retried only when refused; cached across runs).

    ``idempotency_key`` is sent where the provider honours one (APIFrame, local): derived from the
    same fingerprint as the cache key, it dedupes even a crash between the provider accepting the job
    and this task committing. A refresh sends a fresh key and overwrites the cache record.

    With ``storage`` (what the flows pass), the submit is claimed there first under the same key
    (:func:`prefect_videogen.spend.claims.claimed_submit`): another process or machine running the same
    item adopts the claimed job instead of paying again, and the ledger books the job as pending
    from the moment it may exist. The task's cache still answers first when it hits.
    """
    async with provider.shared_client() as client:
        if storage is None:
            job = await client.submit(plan, idempotency_key=idempotency_key)
        else:
            estimated = estimated or estimate_cost(plan)
            claim = JobClaim(
                key=idempotency_key,
                provider=provider.provider_name,
                account_id=provider.account_id(),
                base_url=provider_base_url(provider),
                fingerprint=plan.request.fingerprint(),
                model=plan.request.model or plan.spec.provider_model_id,
                item_id=item_id or None,
                request=plan.request.model_dump(mode="json"),
                estimated=estimated.model_dump(mode="json"),
            )
            job, adopted = await claimed_submit(client, plan, claim, storage, estimated=estimated)
            if adopted:
                get_run_logger().info("adopted claimed %s job %s instead of submitting again", job.provider, job.job_id)
    progress.publish(progress.ProgressEvent("submitted", job.provider, job.job_id, job.progress, job.raw_status))
    return job


# Wall-clock start of each wait task run, by task run id: Prefect retries a task run in the same
# process under the same id, so a retry waits only for what is left of ``timeout_seconds``.
_wait_started: dict[Any, float] = {}


@task(
    task_run_name="wait {job.provider}/{job.model} {job.job_id}",
    retries=2,
    retry_delay_seconds=_retry_delays([5, 30]),
    retry_condition_fn=retry_if_retryable,
    cache_policy=JobCachePolicy(step="wait"),
    persist_result=True,
)
async def wait_for_video(
    job: VideoJob, provider: VideoProviderBlock, timeout_seconds: float = 1800.0, progress_artifact: bool = True
) -> VideoJob:
    """Poll ``job`` until it succeeds, updating a progress artifact; raises the typed error otherwise.

    ``progress_artifact=False`` (a batch, which shows one progress artifact for all its items) makes
    no artifact of its own: a job's bar costs the API a create and up to 20 updates.

    ``timeout_seconds`` bounds the whole wait, Prefect retries included (they happen after a poll
    failed for another reason: the deadline is computed once, from the first attempt's start), and
    ``JobTimedOut`` itself is never retried. Frees the caller's provider slot
    (:mod:`prefect_videogen.tasks.slots`) as soon as the job ends.
    """
    run_id = task_run.id
    started = _wait_started.setdefault(run_id, time.time()) if run_id else time.time()
    left = timeout_seconds - (time.time() - started)
    if left <= 0:
        _wait_started.pop(run_id, None)
        raise JobTimedOut(
            provider=job.provider, job_id=job.job_id, waited_seconds=time.time() - started, last_status=job.raw_status
        )
    bar = (
        await ProgressArtifact.create(
            f"{job.provider} {job.model} job {job.job_id}", key=video_artifact_key(job.provider, job.job_id, "progress")
        )
        if progress_artifact
        else None
    )
    shown = {"progress": -1.0}

    def on_update(current: VideoJob) -> None:
        if current.status.is_terminal:
            release_current_slot()  # the next job may start while this task winds up
        value = current.progress or 0.0
        progress.publish(progress.ProgressEvent("status", current.provider, current.job_id, value, current.raw_status))
        if value - shown["progress"] >= 0.05 or (current.status.is_terminal and shown["progress"] < 1.0):
            shown["progress"] = value
            if bar is not None:
                bar.show(round(value * 100, 1))

    try:
        async with provider.shared_client() as client:
            done = await wait_for_job(client, job, timeout=left, on_update=on_update)
    except Exception as exc:
        if not should_retry(exc):
            _wait_started.pop(run_id, None)  # final: no retry will look the start up
            if bar is not None:
                await bar.fail(str(exc))
        raise
    else:
        _wait_started.pop(run_id, None)
        return done
    finally:
        if bar is not None:
            await bar.aclose()


@task(
    task_run_name="download {job.provider}/{job.model} {job.job_id}",
    retries=2,
    retry_delay_seconds=_retry_delays([2, 10]),
    retry_condition_fn=retry_if_retryable,
    cache_policy=JobCachePolicy(step="download"),
    persist_result=True,
)
async def download_video(
    plan: VideoPlan,
    job: VideoJob,
    provider: VideoProviderBlock,
    storage: VideoStorage,
    storage_url: str,
    key_fields: dict[str, str] | None = None,
    timings: dict[str, float] | None = None,
    metadata: dict[str, Any] | None = None,
    artifacts: bool = True,
) -> VideoResult:
    """Stream the finished video into ``storage``, verify it and write its sidecar.

    ``storage_url`` names the target for the cache key (the storage object itself is not hashable).
    ``artifacts=False`` (a batch, whose table artifact links every video) skips the video's link and
    thumbnail artifacts: two API calls and a first-frame decode per video.
    """
    started = time.monotonic()
    async with provider.shared_client() as client:
        result = await store_video(
            client, plan, job, storage, key_fields=key_fields, timings=timings, metadata=metadata
        )
    try:
        if artifacts:
            await publish_video_artifacts(result, storage)
    except Exception as exc:  # the video is stored; a missing link or thumbnail must not re-run the download
        get_run_logger().warning("could not publish artifacts for %s: %s", result.video_uri, exc)
    progress.publish(
        progress.ProgressEvent(
            "stored",
            job.provider,
            job.job_id,
            1.0,
            "stored",
            {"uri": result.video_uri, "seconds": time.monotonic() - started},
        )
    )
    return result
