"""A job's ledger entry from the plan, the job as the provider last described it, the estimate and any quote."""

from __future__ import annotations

import pytest

from prefect_videogen.catalog import load_catalog
from prefect_videogen.models import JobStatus, Rejection, VideoJob, VideoRequest
from prefect_videogen.spend.accounting import account_job
from prefect_videogen.spend.costs import ChargeStatus, estimate_cost, quoted_cost


def scenario_job(status: JobStatus, **fields) -> VideoJob:
    return VideoJob(
        provider="scenario",
        job_id="job_1",
        model="sora-2",
        status=status,
        raw_status=status.value,
        reported_cost=40,
        reported_cost_unit="creative_units",
        **fields,
    )


PLAN = load_catalog().plan("scenario", VideoRequest(prompt="a fox", model="sora-2"))


def test_a_succeeded_job_is_booked_at_its_reported_charge():
    estimated, quoted = estimate_cost(PLAN), quoted_cost(PLAN, 40, "creative_units")
    entry = account_job(
        PLAN,
        scenario_job(JobStatus.SUCCEEDED),
        estimated=estimated,
        quoted=quoted,
        account_id="scenario-abc",
        item_id="fox",
        flow_run_id="",
        claim_key="k1",
        video_uri="file:///v/fox.mp4",
    )
    assert (entry.provider, entry.job_id, entry.model, entry.account_id) == (
        "scenario",
        "job_1",
        "sora-2",
        "scenario-abc",
    )
    assert entry.charge_status is ChargeStatus.BILLED
    assert (entry.charged_amount, entry.charged_unit) == (40, "creative_units")
    assert entry.charged_usd == pytest.approx(0.4)
    assert entry.estimated == estimated and entry.quoted == quoted and entry.reported is not None
    assert (entry.item_id, entry.flow_run_id, entry.claim_key, entry.video_uri) == (
        "fox",
        None,
        "k1",
        "file:///v/fox.mp4",
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"charged": False}, ChargeStatus.REFUNDED),  # Scenario reimburses a failed job it announced a price for
        ({"rejection": Rejection(stage="output", charged=True)}, ChargeStatus.FAILED_BUT_BILLED),
        ({"rejection": Rejection()}, ChargeStatus.UNKNOWN),  # moderation naming no input: billing not known
    ],
)
def test_a_failed_job_is_classified_from_its_typed_fields(fields, expected):
    entry = account_job(
        PLAN, scenario_job(JobStatus.FAILED, **fields), estimated=estimate_cost(PLAN), account_id="scenario-abc"
    )
    assert entry.charge_status is expected
    assert entry.item_id is None
