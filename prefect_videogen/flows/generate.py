"""The ``generate_video`` flow: one request in, one stored, verified, accounted video out."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import Field

from prefect_videogen.blocks import (
    LocalRenderer,
    LocalVideoStorage,
    ProviderBlocks,
    StorageBlocks,
)
from prefect_videogen.flows.params import require_saved_blocks
from prefect_videogen.flows.steps import (
    RunSettings,
    approve_if_needed,
    produce_video,
    publish_cost_table,
    tag_flow_run,
)
from prefect_videogen.models import VideoRequest, VideoResult
from prefect_videogen.pipeline import plan_request
from prefect_videogen.spend.budget import Budget
from prefect_videogen.spend.costs import estimate_cost
from prefect_videogen.spend.ledger import Ledger


@flow(name="generate-video", flow_run_name="generate-video {request.duration}s {request.aspect_ratio}")
async def generate_video(
    request: VideoRequest,
    provider: ProviderBlocks | None = None,
    storage: StorageBlocks | None = None,
    timeout_seconds: Annotated[float, Field(gt=0)] = 1800.0,
    max_cost_usd: Annotated[float, Field(ge=0)] | None = None,
    approval_threshold_usd: Annotated[float, Field(ge=0)] | None = None,
    refresh: bool = False,
) -> VideoResult:
    """Generate one video and store it with a JSON sidecar and a ledger record.

    The request is checked against the model catalog before anything is sent, so a bad duration,
    aspect ratio or resolution, or a field the model does not have, fails here, at no cost. A rerun of the same request reuses the
    provider job of the earlier run (cached submit) unless ``refresh`` is set.

    Args:
        request: what to generate: prompt, model, duration, aspect ratio, resolution tier, and where the model
            has them a first and last frame, reference images, a negative prompt, a seed, generated audio and
            its provider_options (`prefect-videogen models` lists what each model takes).
        provider: a provider credentials block; the embedded local renderer when empty.
        storage: where to store the video; ``./videos`` when empty.
        timeout_seconds: how long to wait for the provider's job.
        max_cost_usd: the run's budget; the submit is refused (BudgetExceeded) when the estimate exceeds it.
        approval_threshold_usd: above this estimate the run pauses for approval in the Prefect UI.
        refresh: submit a new job even when this request has been generated before.

    Example:
        ```python
        from prefect_videogen.flows import generate_video
        from prefect_videogen.models import VideoRequest

        result = await generate_video(VideoRequest(prompt="a fox in snow", duration=4, aspect_ratio="9:16"))
        print(result.video_uri)
        ```
    """
    require_saved_blocks(provider=(provider, ProviderBlocks), storage=(storage, StorageBlocks))
    logger = get_run_logger()
    provider = provider or LocalRenderer()
    await tag_flow_run(f"videogen:{provider.provider_name}")  # first: a run refused below is tagged too
    video_storage = (storage or LocalVideoStorage()).get_storage()
    plan = plan_request(provider.provider_name, request)
    estimated = estimate_cost(plan)
    logger.info(
        "generating %s s %s on %s/%s; estimated %g %s",
        plan.request.duration,
        plan.size,
        plan.provider,
        plan.request.model,
        estimated.amount,
        estimated.unit,
    )
    await video_storage.check_writable()
    await approve_if_needed(estimated, approval_threshold_usd)
    run = RunSettings(
        storage=video_storage,
        budget=Budget(max_cost_usd),
        ledger=Ledger(video_storage),
        timeout_seconds=timeout_seconds,
        refresh=refresh,
    )
    try:
        result = (await produce_video(plan, provider, run, estimated=estimated)).unwrap()
    finally:
        if run.entries:
            await publish_cost_table(run.entries)
    logger.info("stored %s (%s bytes, sha256 %s)", result.video_uri, result.bytes, result.sha256[:12])
    return result
