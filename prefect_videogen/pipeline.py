"""Plan -> submit -> wait -> store, as plain async functions (no Prefect).

The Prefect tasks in ``prefect_videogen.tasks`` are thin wrappers over these.

Example:
    ```python
    from prefect_videogen.pipeline import generate
    from prefect_videogen.models import VideoRequest
    from prefect_videogen.providers.local import LocalProvider
    from prefect_videogen.storage import VideoStorage

    result = await generate(LocalProvider(), VideoRequest(prompt="a fox"), VideoStorage("./videos"))
    ```
"""

from __future__ import annotations

import time
from typing import Any

from prefect_videogen.catalog import VideoPlan, load_catalog
from prefect_videogen.errors import DownloadFailed, ProviderUnavailable, VerificationFailed
from prefect_videogen.media import Verdict, VideoProbe, judge, probe_video
from prefect_videogen.models import VideoJob, VideoRequest, VideoResult
from prefect_videogen.policy import WorkerPolicy, check_request_inputs
from prefect_videogen.providers.base import VideoProvider
from prefect_videogen.providers.http import DownloadRestart
from prefect_videogen.providers.polling import wait_for_job
from prefect_videogen.storage.base import VideoStorage


def plan_request(provider: str, request: VideoRequest, *, policy: WorkerPolicy | None = None) -> VideoPlan:
    """Check ``request`` against the worker's policy, by content, then against the catalog for ``provider``.

    Runs before any quote, approval, upload or paid call (raises InvalidVideoRequest / PolicyViolation).
    """
    check_request_inputs(request, policy, provider=provider)
    return load_catalog().plan(provider, request)


def step_timings(started: float, submitted: float) -> dict[str, float]:
    """Seconds the submit and the wait took, from ``time.monotonic()`` readings (the wait ends now)."""
    return {"submit_seconds": round(submitted - started, 3), "wait_seconds": round(time.monotonic() - submitted, 3)}


def sidecar_key(video_key: str) -> str:
    stem, _, _ = video_key.rpartition(".")
    return f"{stem or video_key}.json"


# Whole re-downloads after the video changed under a resumed one (a resume itself is not a restart).
MAX_DOWNLOAD_RESTARTS = 2


async def store_video(
    provider: VideoProvider,
    plan: VideoPlan,
    job: VideoJob,
    storage: VideoStorage,
    *,
    key_fields: dict[str, str] | None = None,
    timings: dict[str, float] | None = None,
    metadata: dict[str, Any] | None = None,
) -> VideoResult:
    """Stream the finished ``job``'s video into ``storage``, verify it, publish it and its sidecar.

    A paid video is never thrown away for being other than the catalog expected: a different frame
    size (or a slightly different duration) is stored and listed in ``VideoResult.warnings`` and the
    sidecar's ``warnings``, with the real size recorded (:func:`prefect_videogen.media.judge`).
    A dropped download resumes where it broke off (``HttpTransport.stream``).

    Raises:
        VerificationFailed: the bytes are not a decodable video, or its duration is far off; the
            message names the job, which stays billed at the provider. Nothing is published.
        DownloadFailed: the video could not be fetched within the download budget; the message
            names the job and the command that fetches it later without a new submit.
    """
    started = time.monotonic()
    key = storage.key_for(
        slug=plan.request.prompt,
        job_id=job.job_id,
        provider=plan.provider,
        model=plan.request.model or "",
        **(key_fields or {}),
    )
    probes: list[tuple[VideoProbe, Verdict]] = []
    kept = f"{plan.provider} job {job.job_id} (billed by the provider; the job is kept)"

    def verify(fs: Any, path: str) -> None:
        try:
            with fs.open(path, "rb") as handle:
                probe = probe_video(handle)
        except ValueError as exc:
            raise VerificationFailed(f"{kept} returned a body that is not a video: {exc}; nothing was stored") from exc
        verdict = judge(probe, duration=plan.request.duration, width=plan.width, height=plan.height)
        if verdict.refusal:
            raise VerificationFailed(f"{kept} returned the wrong video: {verdict.refusal}; nothing was stored")
        probes.append((probe, verdict))

    for attempt in range(1, MAX_DOWNLOAD_RESTARTS + 2):
        try:
            async with provider.stream_video(job) as chunks:
                stored = await storage.write_stream(key, chunks, verify=verify)
            break
        except DownloadRestart as exc:
            if attempt <= MAX_DOWNLOAD_RESTARTS:
                continue  # the object changed under a resumed download: fetch it whole again
            raise _download_failed(plan, job, storage, exc) from exc
        except DownloadFailed:
            raise
        except ProviderUnavailable as exc:
            raise _download_failed(plan, job, storage, exc) from exc
    probe, verdict = probes[0]
    timings = {**(timings or {}), "download_seconds": round(time.monotonic() - started, 3)}
    result_sidecar_key = sidecar_key(key)
    result = VideoResult(
        video_uri=stored.uri,
        sidecar_uri=storage.uri(result_sidecar_key),
        provider=plan.provider,
        model=plan.request.model or "",
        job_id=job.job_id,
        bytes=stored.size,
        sha256=stored.sha256,
        duration_seconds=round(probe.duration_seconds, 3),
        width=probe.width,
        height=probe.height,
        resolution=f"{probe.width}x{probe.height}",
        prompt=plan.request.prompt,
        timings=timings,
        warnings=verdict.warnings,
    )
    sidecar = {
        "video_key": key,
        "request": plan.request.model_dump(mode="json"),
        "provider": plan.provider,
        "model": plan.request.model,
        "provider_model_id": plan.spec.provider_model_id,
        "job_id": job.job_id,
        "size": stored.size,
        "sha256": stored.sha256,
        "video": {
            "duration_seconds": result.duration_seconds,
            "width": probe.width,
            "height": probe.height,
            "codec": probe.codec,
        },
        "expected": {"duration_seconds": plan.request.duration, "width": plan.width, "height": plan.height},
        "warnings": verdict.warnings,
        "reported_cost": {"amount": job.reported_cost, "unit": job.reported_cost_unit},
        "timings": timings,
        "created_at": result.created_at.isoformat(),
        "metadata": metadata or {},
    }
    await storage.write_json(result_sidecar_key, sidecar)
    return result


def _download_failed(plan: VideoPlan, job: VideoJob, storage: VideoStorage, exc: ProviderUnavailable) -> DownloadFailed:
    return DownloadFailed(
        exc.detail,
        provider=plan.provider,
        job_id=job.job_id,
        status_code=exc.status_code,
        resume_command=f"prefect-videogen resume --out {storage.uri('')}",
    )


async def generate(
    provider: VideoProvider,
    request: VideoRequest,
    storage: VideoStorage,
    *,
    timeout: float = 1800.0,
) -> VideoResult:
    """Generate one video end to end without Prefect."""
    plan = plan_request(provider.name, request)
    started = time.monotonic()
    job = await provider.submit(plan)
    submitted = time.monotonic()
    job = await wait_for_job(provider, job, timeout=timeout)
    return await store_video(provider, plan, job, storage, timings=step_timings(started, submitted))
