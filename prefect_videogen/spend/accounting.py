"""What one provider job cost, as a ledger entry: the accounting of a job, outside Prefect.

The Prefect task that books it (``prefect_videogen.flows.steps.record_cost``) only adds the flow run
and writes the entry to the ledger.
"""

from __future__ import annotations

from prefect_videogen.catalog import VideoPlan
from prefect_videogen.models import VideoJob
from prefect_videogen.spend.costs import Cost, charge_status, reported_cost
from prefect_videogen.spend.ledger import LedgerEntry


def account_job(
    plan: VideoPlan,
    job: VideoJob,
    *,
    estimated: Cost,
    account_id: str,
    quoted: Cost | None = None,
    item_id: str | None = None,
    flow_run_id: str | None = None,
    video_uri: str | None = None,
    claim_key: str | None = None,
) -> LedgerEntry:
    """Classify what the provider charged for ``job`` (from what it reported) into a ledger entry."""
    reported = reported_cost(plan, job)
    return LedgerEntry.for_job(
        provider=job.provider,
        job_id=job.job_id,
        model=plan.request.model or job.model,
        charge_status=charge_status(job, reported),
        estimated=estimated,
        quoted=quoted,
        reported=reported,
        account_id=account_id,
        item_id=item_id or None,
        flow_run_id=flow_run_id or None,
        video_uri=video_uri,
        claim_key=claim_key,
    )
