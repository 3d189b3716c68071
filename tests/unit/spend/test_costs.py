"""Estimates from dated catalog prices, charge classification, the ledger and the budget guard."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import BudgetExceeded
from prefect_videogen.models import JobStatus, Rejection, VideoJob, VideoRequest
from prefect_videogen.spend.budget import Budget
from prefect_videogen.spend.costs import ChargeStatus, charge_status, estimate_cost, reported_cost
from prefect_videogen.spend.ledger import Ledger, LedgerEntry, summarize
from prefect_videogen.storage import VideoStorage


def plan(provider, **fields):
    return load_catalog().plan(provider, VideoRequest(prompt="a fox", **fields))


@pytest.mark.parametrize(
    ("provider", "fields", "amount", "unit", "usd"),
    [
        ("openai", {"model": "sora-2", "duration": 8}, 0.8, "usd", 0.8),
        ("openai", {"model": "sora-2-pro", "duration": 12, "resolution": "high"}, 6.0, "usd", 6.0),
        ("apiframe", {"model": "sora-2-pro", "duration": 15, "resolution": "high"}, 75, "credits", 0.75),
        ("apiframe", {"model": "sora-2", "duration": 10}, 10, "credits", 0.10),
        ("scenario", {"model": "sora-2-pro", "duration": 4, "resolution": "high"}, 200, "creative_units", 2.0),
        ("local", {"duration": 30}, 0.0, "usd", 0.0),
    ],
)
def test_estimates_come_from_the_catalog(provider, fields, amount, unit, usd):
    cost = estimate_cost(plan(provider, **fields))
    assert (cost.kind, cost.amount, cost.unit, cost.usd) == ("estimated", amount, unit, usd)
    assert cost.source.startswith("catalog as of ")


def job(status, *, cost=None, unit="credits", rejection=None, charged=None):
    return VideoJob(
        provider="apiframe",
        job_id="j1",
        model="sora-2",
        status=status,
        raw_status=status.value,
        reported_cost=cost,
        reported_cost_unit=unit if cost is not None else None,
        rejection=Rejection(**rejection) if rejection else None,
        charged=charged,
    )


@pytest.mark.parametrize(
    ("the_job", "expected"),
    [
        (job(JobStatus.SUCCEEDED, cost=4), ChargeStatus.BILLED),
        (job(JobStatus.SUCCEEDED), ChargeStatus.BILLED),  # OpenAI: no report, still billed
        (job(JobStatus.FAILED, cost=4), ChargeStatus.FAILED_BUT_BILLED),  # APIFrame creditCost on a failed job
        (job(JobStatus.FAILED, cost=0), ChargeStatus.NOT_CHARGED),
        (job(JobStatus.FAILED), ChargeStatus.NOT_CHARGED),
        (
            job(JobStatus.FAILED, cost=30, rejection={"stage": "output", "charged": True}),
            ChargeStatus.FAILED_BUT_BILLED,
        ),
        (job(JobStatus.FAILED, cost=30, charged=False), ChargeStatus.REFUNDED),  # Scenario reimburses
        (job(JobStatus.FAILED, rejection={"stage": "prompt", "charged": False}), ChargeStatus.NOT_CHARGED),
    ],
)
def test_charge_status(the_job, expected):
    the_plan = plan("apiframe", duration=4)
    assert charge_status(the_job, reported_cost(the_plan, the_job)) is expected


async def test_ledger_is_idempotent_by_provider_and_job(tmp_path):
    ledger = Ledger(VideoStorage(str(tmp_path)))
    the_plan = plan("apiframe", model="sora-2-pro", duration=8)
    estimated = estimate_cost(the_plan)
    reported = reported_cost(the_plan, job(JobStatus.SUCCEEDED, cost=24))
    entry = LedgerEntry.for_job(
        provider="apiframe",
        job_id="j1",
        model="sora-2-pro",
        charge_status=ChargeStatus.BILLED,
        estimated=estimated,
        reported=reported,
    )
    assert await ledger.record(entry) is True
    assert await ledger.record(entry.model_copy(update={"recorded_at": entry.recorded_at})) is False  # a rerun
    other = LedgerEntry.for_job(
        provider="apiframe",
        job_id="j2",
        model="sora-2-pro",
        charge_status=ChargeStatus.NOT_CHARGED,
        estimated=estimated,
    )
    await ledger.record(other)
    entries = await ledger.entries()
    assert [(e.job_id, e.charged_amount, e.charged_usd) for e in entries] == [("j1", 24, 0.24), ("j2", 0.0, 0.0)]
    lines = (tmp_path / "ledger" / "apiframe" / "j1.jsonl").read_text().splitlines()
    assert len(lines) == 1
    # A later status change is appended, and the latest line is what counts.
    refunded = LedgerEntry.for_job(
        provider="apiframe",
        job_id="j1",
        model="sora-2-pro",
        charge_status=ChargeStatus.REFUNDED,
        estimated=estimated,
        reported=reported,
    )
    await ledger.record(refunded)
    assert len((tmp_path / "ledger" / "apiframe" / "j1.jsonl").read_text().splitlines()) == 2
    assert [e.charge_status for e in await ledger.entries() if e.job_id == "j1"] == [ChargeStatus.REFUNDED]
    assert await ledger.entries(since=date(2999, 1, 1)) == []
    summary = summarize(await ledger.entries(), by="provider")
    assert summary == [
        {
            "provider": "apiframe",
            "jobs": 2,
            "billed_jobs": 0,
            "usd": 0.0,
            "units": {"credits": 0.0},
            "pending_jobs": 0,
            "pending_usd": 0.0,
            "unknown_jobs": 0,
            "unknown_usd": 0.0,
        }
    ]


async def test_budget_holds_under_twenty_concurrent_submits():
    budget = Budget(max_cost_usd=0.70)
    sent = []

    async def submit(i):
        with budget.reserve(0.10):
            await asyncio.sleep(0)  # let every other submit reach its reservation first
            sent.append(i)

    results = await asyncio.gather(*(submit(i) for i in range(20)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(sent) == 7 and len(refused) == 13
    assert "nothing was submitted" in str(refused[0]) and "max_cost_usd" in str(refused[0])
    assert budget.committed_usd == pytest.approx(0.70)


def test_budget_releases_on_failure_but_keeps_a_maybe_created_job():
    from prefect_videogen.errors import ProviderUnavailable

    budget = Budget(max_cost_usd=1.0)
    with pytest.raises(ProviderUnavailable):
        with budget.reserve(0.5):
            raise ProviderUnavailable("refused", provider="x")
    assert budget.committed_usd == 0.0
    with pytest.raises(ProviderUnavailable):
        with budget.reserve(0.5):
            raise ProviderUnavailable("timeout", provider="x", maybe_created=True)
    assert budget.committed_usd == 0.5  # the provider may bill it: keep counting it
    reservation = budget.reserve(0.5)
    reservation.settle(0.2)
    assert budget.committed_usd == pytest.approx(0.7)
    with pytest.raises(ValueError, match="max_cost_usd=-1"):
        Budget(-1)
