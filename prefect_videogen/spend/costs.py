"""What a video costs: estimated (catalog), quoted (provider dry run), reported (provider's charge).

The three are kept apart, each normalised as amount + unit + USD estimate + source. Prices are dated
catalog data; users override them (or the USD value of a credit / creative unit) with catalog rows.

Example:
    ```python
    from prefect_videogen.catalog import load_catalog
    from prefect_videogen.spend.costs import estimate_cost
    from prefect_videogen.models import VideoRequest

    plan = load_catalog().plan("apiframe", VideoRequest(prompt="a fox", model="sora-2-pro", duration=8))
    estimate_cost(plan)  # Cost(kind='estimated', amount=24.0, unit='credits', usd=0.24, ...)
    ```
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field

from prefect_videogen.catalog import VideoPlan
from prefect_videogen.models import JobStatus, VideoJob


class Cost(BaseModel):
    """One normalised cost figure."""

    kind: Literal["estimated", "quoted", "reported"]
    amount: float = Field(description="In the provider's own unit.")
    unit: str = Field(description="usd, credits or creative_units.")
    usd: float | None = Field(default=None, description="USD value, where a rate is known.")
    source: str = ""


class ChargeStatus(str, Enum):
    """Whether the provider billed a job."""

    BILLED = "billed"
    FAILED_BUT_BILLED = "failed_but_billed"
    REFUNDED = "refunded"
    NOT_CHARGED = "not_charged"
    #: The job may exist (claimed, submitted, or still running); its charge is not known yet.
    PENDING = "pending"
    #: The job ended, but neither the provider's report nor its documented rule says whether it was billed.
    UNKNOWN = "unknown"


#: Statuses whose charged amount counts as spent.
BILLED_STATUSES = frozenset({ChargeStatus.BILLED, ChargeStatus.FAILED_BUT_BILLED})
#: Statuses whose estimate is money that may be spent: shown apart from what is billed.
OPEN_STATUSES = frozenset({ChargeStatus.PENDING, ChargeStatus.UNKNOWN})


def _usd(plan: VideoPlan, amount: float, unit: str) -> float | None:
    if unit == "usd":
        return amount
    rate = plan.spec.price.usd_per_unit if plan.spec.price else None
    return None if rate is None else round(amount * rate, 6)


def estimate_cost(plan: VideoPlan) -> Cost:
    """The catalog's price for ``plan``; zero with a clear source where the catalog has no price."""
    price = plan.spec.price
    request = plan.request
    if price is None:
        return Cost(kind="estimated", amount=0.0, unit="usd", usd=None, source="no price in the catalog")
    # The price's own form decides: a credit table by tier and duration (APIFrame), a price per clip
    # by tier, or a rate per second by tier (tiers as the model names them: standard, 720p, 4k...).
    amount = price.amount(request.resolution or plan.spec.tier, request.duration)
    if amount is None:
        form = "table" if price.table is not None else "per-clip price" if price.per_clip is not None else "price"
        raise ValueError(
            f"catalog {form} of {plan.provider} {request.model!r} has no "
            f"{request.resolution!r} figure for {request.duration} s"
        )
    amount = round(amount, 6)
    as_of = f" as of {price.as_of.isoformat()}" if price.as_of else ""
    return Cost(
        kind="estimated",
        amount=amount,
        unit=price.unit,
        usd=_usd(plan, amount, price.unit),
        source=f"catalog{as_of}: {price.source}",
    )


def quoted_cost(plan: VideoPlan, amount: float, unit: str) -> Cost:
    return Cost(
        kind="quoted", amount=amount, unit=unit, usd=_usd(plan, amount, unit), source=f"{plan.provider} dry run"
    )


def reported_cost(plan: VideoPlan, job: VideoJob) -> Cost | None:
    """What the provider says it charged for ``job``; None where it reports nothing (OpenAI)."""
    if job.reported_cost is None or job.reported_cost_unit is None:
        return None
    return Cost(
        kind="reported",
        amount=job.reported_cost,
        unit=job.reported_cost_unit,
        usd=_usd(plan, job.reported_cost, job.reported_cost_unit),
        source=f"{plan.provider} job {job.job_id}",
    )


def charge_status(job: VideoJob, reported: Cost | None) -> ChargeStatus:
    """Classify a finished job's charge from what the provider told us.

    Succeeded: billed. Failed, by the provider's own flag where it gives one (``charged``, e.g.
    moderation after rendering is billed): billed, or refunded when a charge had been announced
    (Scenario reports creativeUnitsCost at submit and reimburses failed jobs). Failed with no flag:
    billed when the provider reports a positive charge (APIFrame creditCost), else not charged.
    A moderation failure whose billing the provider leaves open (no stage, no ``charged``: a
    Scenario moderation message naming no input) is ``unknown``: a price announced at submit is
    not a report that the failed job was billed.
    """
    if job.status is JobStatus.SUCCEEDED:
        return ChargeStatus.BILLED
    rejection = job.rejection
    charged = rejection.charged if rejection is not None else job.charged
    announced = reported is not None and reported.amount > 0
    if charged is None and rejection is not None and announced:
        return ChargeStatus.UNKNOWN
    if charged is True or (charged is None and announced):
        return ChargeStatus.FAILED_BUT_BILLED
    if charged is False and announced:
        return ChargeStatus.REFUNDED
    return ChargeStatus.NOT_CHARGED
