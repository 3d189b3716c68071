"""The ``generate_video`` flow: one request in, one stored, verified video out."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import Field

from prefect_videogen.blocks import LocalRenderer, LocalVideoStorage
from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.generation import plan_request
from prefect_videogen.models import VideoRequest, VideoResult
from prefect_videogen.tasks import download_video, submit_video, wait_for_video


@flow(name="generate-video", flow_run_name="generate-video {request.duration}s {request.aspect_ratio}")
async def generate_video(
    request: VideoRequest,
    provider: VideoProviderBlock | None = None,
    storage: LocalVideoStorage | None = None,
    timeout_seconds: float = Field(default=1800.0, gt=0, description="How long to wait for the provider's job."),
) -> VideoResult:
    """Generate one video and store it with a JSON sidecar.

    The request is checked against the model catalog before anything is sent, so a bad duration,
    aspect ratio or resolution fails here, at no cost.

    Args:
        request: what to generate.
        provider: a provider credentials block; the embedded local renderer when empty.
        storage: where to store the video; ``./videos`` when empty.
        timeout_seconds: how long to wait for the provider's job.

    Example:
        ```python
        from prefect_videogen.flows import generate_video
        from prefect_videogen.models import VideoRequest

        result = await generate_video(VideoRequest(prompt="a fox in snow", duration=4, aspect_ratio="9:16"))
        print(result.video_uri)
        ```
    """
    logger = get_run_logger()
    provider = provider or LocalRenderer()
    video_storage = (storage or LocalVideoStorage()).get_storage()
    plan = plan_request(provider.provider_name, request)
    logger.info("generating %s s %s %s on %s/%s", plan.request.duration, plan.size, plan.request.aspect_ratio,
                plan.provider, plan.request.model)
    started = time.monotonic()
    job = await submit_video(plan, provider)
    submitted = time.monotonic()
    job = await wait_for_video(job, provider, timeout_seconds)
    timings = {"submit_seconds": round(submitted - started, 3), "wait_seconds": round(time.monotonic() - submitted, 3)}
    result = await download_video(
        plan, job, provider, video_storage, key_fields={"flow_run": flow_run.get_name() or ""}, timings=timings
    )
    logger.info("stored %s (%s bytes, sha256 %s)", result.video_uri, result.bytes, result.sha256[:12])
    return result
