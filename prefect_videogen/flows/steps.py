"""One item's way through a flow run: reserve budget -> submit -> wait -> download -> record cost.

Shared by ``generate_video`` and ``generate_videos`` so both spend, cache and account the same way.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from prefect import get_client, get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import INPUTS, NO_CACHE
from prefect.events import emit_event
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote as untraversed
from pydantic import Field

from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.catalog import VideoPlan
from prefect_videogen.errors import ApprovalDenied, ContentRejected, JobFailed, VideoGenError
from prefect_videogen.models import VideoJob, VideoResult
from prefect_videogen.pipeline import step_timings
from prefect_videogen.providers.base import Quotes
from prefect_videogen.spend.accounting import account_job
from prefect_videogen.spend.budget import Budget, Reservation
from prefect_videogen.spend.costs import Cost, estimate_cost, quoted_cost
from prefect_videogen.spend.ledger import Ledger, LedgerEntry
from prefect_videogen.storage.base import VideoStorage
from prefect_videogen.tasks import download_video, submit_video, wait_for_video
from prefect_videogen.tasks.caching import provider_base_url, submit_key
from prefect_videogen.tasks.slots import Bound, ProviderSlot


class CostApproval(RunInput):
    """Shown in the Prefect UI when a run's estimated cost needs a person's yes."""

    approve: bool = Field(default=False, description="Tick to allow the run to submit its jobs.")
    note: str = Field(default="", description="Why (kept in the flow run's logs).")


@dataclass
class RunSettings:
    """What every item of one flow run shares."""

    storage: VideoStorage
    budget: Budget
    ledger: Ledger
    timeout_seconds: float = 1800.0
    refresh: bool = False
    entries: list[LedgerEntry] = field(default_factory=list)
    #: A batch's items: costs are booked by the item's own code, not a "cost" task run of their own
    #: (the batch shows one cost table; BENCHMARKS.md, issue 20).
    batched: bool = False
    #: Each job's progress artifact and each video's link and thumbnail artifacts. A large batch turns
    #: them off (three API calls and a frame decode per video) and shows its own table and bar.
    item_artifacts: bool = True

    @property
    def storage_url(self) -> str:
        return self.storage.uri("")


@task(
    task_run_name="quote {plan.provider}/{plan.request.model}",
    persist_result=True,
    cache_policy=INPUTS - "provider",
    cache_expiration=timedelta(hours=24),
)
async def quote_video(plan: VideoPlan, provider: VideoProviderBlock, account_id: str) -> Cost:
    """The provider's own price for ``plan`` from a dry run (Scenario), where it offers one; no job is created."""
    async with provider.get_client() as client:
        if not isinstance(client, Quotes):
            raise TypeError(f"{provider.provider_name} does not quote prices")
        amount, unit = await client.quote(plan)
    return quoted_cost(plan, amount, unit)


def emit_video_event(
    name: str, *, provider: str, job_id: str, model: str, item_id: str = "", payload: dict[str, Any]
) -> None:
    """``videogen.video.completed`` / ``videogen.video.failed``: one resource per provider job."""
    emit_event(
        event=f"videogen.video.{name}",
        resource={
            "prefect.resource.id": f"videogen.job.{provider}.{job_id}",
            "prefect.resource.name": item_id or job_id,
            "videogen.provider": provider,
            "videogen.model": model,
        },
        payload=payload,
    )


@task(task_run_name="cost {job.provider} {job.job_id}", cache_policy=NO_CACHE)
async def record_cost(
    plan: VideoPlan,
    job: VideoJob,
    estimated: Cost,
    ledger: Ledger,
    account_id: str,
    item_id: str = "",
    video_uri: str | None = None,
    quoted: Cost | None = None,
    claim_key: str | None = None,
) -> LedgerEntry:
    """Classify what the provider charged for ``job`` and append it to the ledger (idempotent)."""
    entry = account_job(
        plan,
        job,
        estimated=estimated,
        account_id=account_id,
        quoted=quoted,
        item_id=item_id,
        flow_run_id=str(flow_run.get_id() or ""),
        video_uri=video_uri,
        claim_key=claim_key,
    )
    if not await ledger.record(entry):
        get_run_logger().info("ledger already has %s job %s as %s", job.provider, job.job_id, entry.charge_status.value)
    return entry


def _recorder(run: RunSettings) -> Any:
    """The cost booking: a task run of its own for one video, plain code inside a batch's item."""
    return record_cost.fn if run.batched else record_cost


@functools.cache
def _refreshing(task_: Any) -> Any:
    """``task_`` with ``refresh_cache=True``, made once: ``with_options`` builds a new Task, which
    reads and hashes the task's source each time (6 ms of CPU per call here, BENCHMARKS.md)."""
    return task_.with_options(refresh_cache=True)


@dataclass(frozen=True)
class VideoOutcome:
    """How one planned video ended: stored (``result``) or failed (``error``), with its job's ledger entry.

    ``entry`` is None when no job was accounted: refused by the budget, or failed before or while
    submitting, or the wait did not end (timed out: the job may still bill; ``resume`` settles it).
    """

    result: VideoResult | None = None
    entry: LedgerEntry | None = None
    error: VideoGenError | None = None

    def unwrap(self) -> VideoResult:
        """The stored video, or the error raised."""
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise RuntimeError("a VideoOutcome holds neither a result nor an error")
        return self.result


@dataclass(frozen=True)
class _Job:
    """What accounting one item's job needs, fixed before its submit."""

    plan: VideoPlan
    estimated: Cost
    quoted: Cost | None
    account_id: str
    item_id: str
    claim_key: str


async def _account_failure(
    run: RunSettings,
    booking: _Job,
    job: VideoJob,
    failure: VideoGenError,
    code: str | None,
    reservation: Reservation,
    cached: bool,
) -> LedgerEntry:
    """Book a failed job's charge, announce the failure and settle the budget reservation with it."""
    entry = await _recorder(run)(
        booking.plan,
        job,
        booking.estimated,
        run.ledger,
        booking.account_id,
        booking.item_id,
        quoted=booking.quoted,
        claim_key=booking.claim_key,
    )
    run.entries.append(entry)
    emit_video_event(
        "failed",
        provider=job.provider,
        job_id=job.job_id,
        model=job.model,
        item_id=booking.item_id,
        payload={
            "error": failure.message,
            "code": code,
            "charge": entry.charge_status.value,
            "cost_usd": entry.charged_usd,
            "rejected": isinstance(failure, ContentRejected),
            "stage": getattr(failure, "stage", None),
        },
    )
    if not cached:
        reservation.settle(entry.charged_usd or 0.0)
    return entry


async def produce_video(
    plan: VideoPlan,
    provider: VideoProviderBlock,
    run: RunSettings,
    *,
    item_id: str = "",
    estimated: Cost | None = None,
    metadata: dict[str, Any] | None = None,
    bound: Bound = None,
) -> VideoOutcome:
    """Generate one planned video within the run's budget and record what it cost.

    A slot of ``bound`` (the provider's concurrency bound) is held from submit until the wait task
    sees the job done (:mod:`prefect_videogen.tasks.slots`): the end of the wait task, the download,
    verification and bookkeeping that follow no longer keep the next job waiting.

    Returns:
        The outcome; a :class:`~prefect_videogen.errors.VideoGenError` is returned in it, not raised
        (``outcome.unwrap()`` raises it): BudgetExceeded before submitting, when the estimate does not
        fit (nothing is sent); JobFailed / ContentRejected when the job failed (its charge is in
        ``outcome.entry``).
    """
    try:
        return await _produce_video(
            plan, provider, run, item_id=item_id, estimated=estimated, metadata=metadata, bound=bound
        )
    except VideoGenError as error:  # before any job was accounted
        return VideoOutcome(error=error)


async def _produce_video(
    plan: VideoPlan,
    provider: VideoProviderBlock,
    run: RunSettings,
    *,
    item_id: str,
    estimated: Cost | None,
    metadata: dict[str, Any] | None,
    bound: Bound,
) -> VideoOutcome:
    estimated = estimated or estimate_cost(plan)
    account_id = provider.account_id()
    quoted = await quote_video(plan, provider, account_id) if provider.supports(Quotes) else None
    nonce = uuid.uuid4().hex if run.refresh else ""
    idempotency_key = submit_key(
        provider.provider_name, account_id, plan.request.fingerprint(), nonce, base_url=provider_base_url(provider)
    )
    booking = _Job(plan, estimated, quoted, account_id, item_id, idempotency_key)
    submit, wait, download = (
        (_refreshing(t) for t in (submit_video, wait_for_video, download_video))
        if run.refresh
        else (submit_video, wait_for_video, download_video)
    )
    started = time.monotonic()
    # The plan goes to the tasks untraversed: Prefect otherwise walks every field of it (the model's
    # catalog entry included) twice per task run, looking for upstream futures a plan never holds.
    task_plan = untraversed(plan)

    # Reserve the larger of catalog estimate and provider quote: quotes and charges have disagreed.
    reserve_usd = max(estimated.usd or 0.0, (quoted.usd or 0.0) if quoted else 0.0)
    async with ProviderSlot(bound):
        with run.budget.reserve(reserve_usd) as reservation:
            state = await submit(
                task_plan, provider, idempotency_key, item_id, run.storage, estimated, return_state=True
            )
            job = await state.aresult()
        cached = state.name == "Cached"
        if cached:
            reservation.release()  # an earlier run paid for this job; nothing is spent now
        submitted = time.monotonic()
        try:
            job = await wait(job, provider, run.timeout_seconds, progress_artifact=run.item_artifacts)
        except JobFailed as failure:
            entry = await _account_failure(run, booking, failure.job or job, failure, failure.code, reservation, cached)
            return VideoOutcome(entry=entry, error=failure)
    timings = step_timings(started, submitted)
    try:
        result = await download(
            task_plan,
            job,
            provider,
            run.storage,
            run.storage_url,
            key_fields={"flow_run": flow_run.get_name() or "", "item": item_id},
            timings=timings,
            metadata=metadata,
            artifacts=run.item_artifacts,
        )
    except VideoGenError as failure:
        # The job succeeded, so the provider billed it, even though no good video could be stored
        # (the download kept failing, or the bytes failed verification): the ledger must still show it.
        entry = await _account_failure(run, booking, job, failure, "not_stored", reservation, cached)
        return VideoOutcome(entry=entry, error=failure)
    entry = await _recorder(run)(
        plan, job, estimated, run.ledger, account_id, item_id, result.video_uri, quoted, idempotency_key
    )
    run.entries.append(entry)
    emit_video_event(
        "completed",
        provider=job.provider,
        job_id=job.job_id,
        model=job.model,
        item_id=item_id,
        payload={
            "uri": result.video_uri,
            "sidecar_uri": result.sidecar_uri,
            "duration_seconds": result.duration_seconds,
            "resolution": result.resolution,
            "sha256": result.sha256,
            "cost_usd": entry.charged_usd,
            "warnings": result.warnings,
            "cost": {"amount": entry.charged_amount, "unit": entry.charged_unit},
        },
    )
    if not cached:
        reservation.settle(entry.charged_usd or estimated.usd or 0.0)
    return VideoOutcome(result=result, entry=entry)


async def tag_flow_run(tag: str) -> None:
    """Add ``tag`` (``videogen:PROVIDER``) to the running flow run, for filtering in the UI.

    The flow run, not its task runs: Prefect 3.8 acquires tag concurrency slots for every tagged
    task run through one client-side queue per tag set, a server round trip each, one at a time:
    tagged task runs start one after another (BENCHMARKS.md).
    """
    run_id, current = flow_run.get_id(), set(flow_run.get_tags())
    if not run_id or tag in current:
        return
    try:
        async with get_client() as client:
            await client.update_flow_run(run_id, tags=sorted(current | {tag}))
    except Exception as exc:  # a label for the UI must not stop a run
        get_run_logger().warning("could not tag the flow run %s: %s", tag, exc)


async def approve_if_needed(total: Cost, threshold_usd: float | None, *, timeout_seconds: int = 3600) -> None:
    """Pause for approval in the Prefect UI when ``total`` exceeds ``threshold_usd``."""
    if threshold_usd is None or (total.usd or 0.0) <= threshold_usd:
        return
    logger = get_run_logger()
    logger.warning(
        "estimated $%.2f exceeds the approval threshold $%.2f: waiting for approval in the UI",
        total.usd or 0.0,
        threshold_usd,
    )
    answer = await apause_flow_run(wait_for_input=CostApproval, timeout=timeout_seconds, poll_interval=2)
    if not answer.approve:
        raise ApprovalDenied(f"estimated ${total.usd:.2f} was not approved{': ' + answer.note if answer.note else ''}")
    logger.info("approved: %s", answer.note or "(no note)")


async def publish_cost_table(entries: list[LedgerEntry], *, key: str = "videogen-costs") -> None:
    """A table artifact with each job's cost and the run's total."""
    rows = [
        {
            "item": e.item_id or "",
            "provider": e.provider,
            "model": e.model,
            "job": e.job_id,
            # "billed" next to $0 reads as a bug: the local renderer costs nothing.
            "charge": "free" if e.charge_status.value == "billed" and e.charged_usd == 0 else e.charge_status.value,
            "estimated": f"{e.estimated.amount:g} {e.estimated.unit}" if e.estimated else "",
            "reported": f"{e.reported.amount:g} {e.reported.unit}" if e.reported else "",
            "usd": round(e.charged_usd or 0.0, 4),
        }
        for e in entries
    ]
    total = round(sum(e.charged_usd or 0.0 for e in entries), 4)
    rows.append(
        {
            "item": "TOTAL",
            "provider": "",
            "model": "",
            "job": "",
            "charge": "",
            "estimated": "",
            "reported": "",
            "usd": total,
        }
    )
    await acreate_table_artifact(table=rows, key=key, description=f"Video costs of this run: ${total:.4f}")
