"""The ``resume_jobs`` flow: finish jobs a storage's claims and ledger say are pending, paying nothing.

A job stays pending when its run ended before the provider said how it ended: the run timed out
(``timeout_seconds``), crashed, or lost the submit's answer. Its claim (``claims/``) holds the
request and, once known, the job id; its ledger line says ``pending``. This flow finds those
jobs for one provider account (and ``base_url``), waits for each, stores its video and books
its charge, exactly as the run would have. It never submits: a claim without a job id is looked
up at the provider (OpenAI's listing, APIFrame's idempotency key); where the provider cannot
look it up (Scenario) the claim is reported as uncertain.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from prefect_videogen.blocks import LocalRenderer, LocalVideoStorage, ProviderBlocks, StorageBlocks
from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import JobFailed, VideoGenError
from prefect_videogen.flows.steps import record_cost
from prefect_videogen.models import JobStatus, VideoJob, VideoRequest
from prefect_videogen.spend.claims import ClaimStore, JobClaim, find_orphan
from prefect_videogen.spend.costs import ChargeStatus, Cost, estimate_cost
from prefect_videogen.spend.ledger import Ledger
from prefect_videogen.storage.base import VideoStorage
from prefect_videogen.tasks import download_video, wait_for_video
from prefect_videogen.tasks.caching import provider_base_url


class ResumedJob(BaseModel):
    claim_uri: str
    item_id: str | None = None
    job_id: str | None = None
    status: str = Field(description="stored, failed, uncertain or pending (still not done).")
    charge: str | None = None
    video_uri: str | None = None
    error: str | None = None


class ResumeResult(BaseModel):
    jobs: list[ResumedJob] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    unreadable_claims: list[str] = Field(default_factory=list)
    skipped_ledger_lines: list[str] = Field(default_factory=list)


async def pending_claims(
    storage: VideoStorage, provider: VideoProviderBlock
) -> tuple[list[JobClaim], list[str], list[str]]:
    """Claims of ``provider``'s account and base_url whose ledger entry is still pending."""
    claims, unreadable = await ClaimStore(storage).all(provider.provider_name)
    ledger = Ledger(storage)
    entries = await ledger.entries()
    settled = {e.claim_key for e in entries if e.claim_key and e.charge_status is not ChargeStatus.PENDING}
    base_url = provider_base_url(provider)
    mine = [
        c for c in claims if c.account_id == provider.account_id() and c.base_url == base_url and c.key not in settled
    ]
    return mine, unreadable, ledger.skipped


async def resume_claim(
    claim: JobClaim, provider: VideoProviderBlock, storage: VideoStorage, timeout_seconds: float
) -> ResumedJob:
    store = ClaimStore(storage)
    outcome = ResumedJob(claim_uri=store.uri(claim), item_id=claim.item_id, job_id=claim.job_id, status="pending")
    plan = load_catalog().plan(claim.provider, VideoRequest.model_validate(claim.request))
    estimated = Cost.model_validate(claim.estimated) if claim.estimated else estimate_cost(plan)
    ledger = Ledger(storage)
    if not claim.job_id and not claim.is_stale():
        outcome.error = "its submit is still in flight (a fresh claim of a live process); resume it later"
        return outcome
    try:
        async with provider.shared_client() as client:
            if claim.job_id:
                job = await client.get_job(
                    VideoJob(
                        provider=claim.provider,
                        job_id=claim.job_id,
                        model=claim.model,
                        status=JobStatus.QUEUED,
                        raw_status="claimed",
                    )
                )
            else:
                job = await find_orphan(client, plan, claim, store, "resuming a claim without a job id")
                claim = await store.set_job(claim, job.job_id)
        outcome.job_id = job.job_id
        try:
            job = await wait_for_video(job, provider, timeout_seconds)
        except JobFailed as failure:
            entry = await record_cost(
                plan, failure.job or job, estimated, ledger, claim.account_id, claim.item_id or "", claim_key=claim.key
            )
            outcome.status, outcome.charge, outcome.error = "failed", entry.charge_status.value, failure.message
            return outcome
        result = await download_video(
            plan,
            job,
            provider,
            storage,
            storage.uri(""),
            key_fields={"flow_run": "resume", "item": claim.item_id or ""},
        )
        entry = await record_cost(
            plan, job, estimated, ledger, claim.account_id, claim.item_id or "", result.video_uri, claim_key=claim.key
        )
        outcome.status, outcome.charge, outcome.video_uri = "stored", entry.charge_status.value, result.video_uri
    except VideoGenError as exc:
        outcome.status = "uncertain" if type(exc).__name__ == "SubmitUncertain" else "pending"
        outcome.error = exc.message
    return outcome


@flow(name="resume-jobs", flow_run_name="resume-jobs")
async def resume_jobs(
    provider: ProviderBlocks | None = None,
    storage: StorageBlocks | None = None,
    timeout_seconds: Annotated[float, Field(gt=0)] = 1800.0,
    max_concurrency: Annotated[int, Field(ge=1, le=200)] = 8,
) -> ResumeResult:
    """Wait for, store and book every pending job of ``provider``'s account in ``storage``; submit nothing.

    Args:
        provider: the credentials block the jobs were submitted with; the local renderer when empty.
        storage: where the runs kept videos, claims and ledger; ./videos when empty.
        timeout_seconds: how long to wait for each job.
        max_concurrency: jobs resumed at once.
    """
    logger = get_run_logger()
    provider = provider or LocalRenderer()
    video_storage = (storage or LocalVideoStorage()).get_storage()
    claims, unreadable, skipped = await pending_claims(video_storage, provider)
    logger.info("%d pending %s job(s) in %s", len(claims), provider.provider_name, video_storage.uri(""))
    gate = asyncio.Semaphore(max_concurrency)

    async def one(claim: JobClaim) -> ResumedJob:
        async with gate:
            return await resume_claim(claim, provider, video_storage, timeout_seconds)

    jobs = list(await asyncio.gather(*(one(c) for c in claims)))
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    for job in jobs:
        if job.status in ("uncertain", "pending"):
            logger.warning("%s: %s", job.claim_uri, job.error)
    return ResumeResult(jobs=jobs, counts=counts, unreadable_claims=unreadable, skipped_ledger_lines=skipped)
