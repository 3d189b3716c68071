"""The cost ledger: one record per provider job, append-only JSONL, next to the videos.

Each job has its own small JSONL file, ``ledger/{provider}/{job_id}.jsonl``, to which a line is
appended when its charge status is recorded. Keying files by provider and job id makes recording
idempotent (a rerun that records the same status adds nothing) and keeps concurrent writers of
different jobs apart on any fsspec store, S3 included, where objects cannot be appended in place:
an append rewrites the job's file through the storage's atomic staging-then-move path.

A job is in the books from the moment it may exist: a ``pending`` line with the estimate is
written when its submit is claimed (:mod:`prefect_videogen.spend.claims`), in
``ledger/{provider}/claim-{claim key}.jsonl`` while the job id is unknown, then under the job id
once the provider answers. Lines carry their ``claim_key``; the reader keeps one entry per claim
(the one with a job id, latest first) and one per job id, so nothing is counted twice.

Readers skip a corrupt, truncated or non-UTF-8 line, log a warning naming the file and line, and
count it in :attr:`Ledger.skipped`: a damaged record must not hide every other charge.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from prefect_videogen.spend.costs import BILLED_STATUSES, ChargeStatus, Cost
from prefect_videogen.storage.base import VideoStorage, read_object, safe_part

LEDGER_PREFIX = "ledger"
logger = logging.getLogger("prefect_videogen.ledger")  # the name it had before the module moved (log filters)


class LedgerEntry(BaseModel):
    """What one provider job cost."""

    provider: str
    job_id: str = Field(description="The provider's job id; empty while only the claim is known.")
    model: str
    account_id: str = ""
    charge_status: ChargeStatus
    charged_amount: float = Field(description="What counts against the account, in charged_unit.")
    charged_unit: str
    charged_usd: float | None = None
    estimated: Cost | None = None
    quoted: Cost | None = None
    reported: Cost | None = None
    item_id: str | None = None
    flow_run_id: str | None = None
    video_uri: str | None = None
    claim_key: str | None = Field(default=None, description="The submit claim this job was created under.")
    recorded_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @classmethod
    def for_job(
        cls,
        *,
        provider: str,
        job_id: str,
        model: str,
        charge_status: ChargeStatus,
        estimated: Cost,
        quoted: Cost | None = None,
        reported: Cost | None = None,
        **extra: Any,
    ) -> LedgerEntry:
        """Build an entry; the charged figure is the reported one, else the estimate (OpenAI reports none)."""
        basis = reported or estimated
        billed = charge_status in BILLED_STATUSES
        return cls(
            provider=provider,
            job_id=job_id,
            model=model,
            charge_status=charge_status,
            charged_amount=basis.amount if billed else 0.0,
            charged_unit=basis.unit,
            charged_usd=(basis.usd if billed else 0.0),
            estimated=estimated,
            quoted=quoted,
            reported=reported,
            **extra,
        )

    def same_charge(self, other: LedgerEntry) -> bool:
        return (self.charge_status, self.charged_amount, self.charged_unit, self.job_id) == (
            other.charge_status,
            other.charged_amount,
            other.charged_unit,
            other.job_id,
        )

    @property
    def open_usd(self) -> float:
        """The estimate of a pending or unknown job (money that may be spent), else 0."""
        if self.charge_status not in (ChargeStatus.PENDING, ChargeStatus.UNKNOWN):
            return 0.0
        basis = self.quoted or self.estimated
        return (basis.usd or 0.0) if basis else 0.0


class Ledger:
    """Record and read job charges in ``storage`` under ``ledger/``.

    ``skipped`` lists the damaged lines the last reads passed over (``"<file>:<line>: <why>"``).
    """

    def __init__(self, storage: VideoStorage) -> None:
        self.storage = storage
        self.skipped: list[str] = []

    def key(self, provider: str, job_id: str, claim_key: str | None = None) -> str:
        name = job_id if job_id else f"claim-{claim_key}"
        return f"{LEDGER_PREFIX}/{safe_part(provider)}/{safe_part(name, max_length=200)}.jsonl"

    async def record(self, entry: LedgerEntry) -> bool:
        """Append ``entry`` unless the job's latest line already says the same; True if written.

        Damaged lines of the job's file are dropped from the rewrite (and reported in ``skipped``).
        """
        if not entry.job_id and not entry.claim_key:
            raise ValueError("a ledger entry needs a job id or a claim key")
        key = self.key(entry.provider, entry.job_id, entry.claim_key)
        path = self.storage.path(key)

        def append(current: bytes | None) -> bytes | None:
            lines = _lines(current or b"")
            good = [
                (line, parsed)
                for line, parsed in ((line, self._parse(path, number, line)) for number, line in enumerate(lines, 1))
                if parsed is not None
            ]
            if good and good[-1][1].same_charge(entry):
                return None
            return "".join(line + "\n" for line in [*(line for line, _ in good), entry.model_dump_json()]).encode()

        return await self.storage.rewrite(key, append)

    async def forget_claim(self, provider: str, claim_key: str) -> None:
        """Drop a claim's pending line: its submit was refused, so no job exists to book."""
        path = self.storage.path(self.key(provider, "", claim_key))
        try:
            await asyncio.to_thread(self.storage.fs.rm, path)
        except FileNotFoundError:
            pass

    async def entries(self, *, since: date | None = None) -> list[LedgerEntry]:
        """The latest entry of every job (and of every claim not yet known by a job id), oldest first."""
        self.skipped = []
        pattern = posixpath.join(self.storage.path(LEDGER_PREFIX), "*", "*.jsonl")
        paths = await asyncio.to_thread(self.storage.fs.glob, pattern)
        latest = []
        for path in paths:
            lines = await asyncio.to_thread(self._read_path, path)
            parsed = [
                entry for number, line in enumerate(lines, 1) if (entry := self._parse(path, number, line)) is not None
            ]
            if parsed:
                latest.append(parsed[-1])
        kept = _one_per_job(latest)
        return sorted((e for e in kept if since is None or e.recorded_at.date() >= since), key=lambda e: e.recorded_at)

    def _parse(self, path: str, number: int, line: str) -> LedgerEntry | None:
        try:
            return LedgerEntry.model_validate_json(line)
        except (ValidationError, ValueError) as exc:
            where = f"{path}:{number}"
            reason = "not UTF-8" if "\ufffd" in line else f"not a ledger record ({type(exc).__name__})"
            logger.warning("ledger: skipped %s: %s", where, reason)
            self.skipped.append(f"{where}: {reason}")
            return None

    def _read_path(self, path: str) -> list[str]:
        return _lines(read_object(self.storage.fs, path))


def _lines(data: bytes) -> list[str]:
    """The non-blank lines of a ledger file; undecodable bytes become U+FFFD, so the line is reported
    and skipped, not the file."""
    return [line for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]


def _one_per_job(entries: list[LedgerEntry]) -> list[LedgerEntry]:
    """One entry per job id and per claim: a claim's pending line gives way to its job's entries."""
    best: dict[tuple[str, str], LedgerEntry] = {}
    loose = []
    for entry in entries:
        if entry.claim_key:
            group = (entry.provider, "claim:" + entry.claim_key)
        elif entry.job_id:
            group = (entry.provider, "job:" + entry.job_id)
        else:
            loose.append(entry)
            continue
        current = best.get(group)
        if current is None or (bool(entry.job_id), entry.recorded_at) > (bool(current.job_id), current.recorded_at):
            best[group] = entry
    by_job: dict[tuple[str, str], LedgerEntry] = {}
    for entry in best.values():
        if not entry.job_id:
            loose.append(entry)
            continue
        current = by_job.get((entry.provider, entry.job_id))
        if current is None or entry.recorded_at > current.recorded_at:
            by_job[(entry.provider, entry.job_id)] = entry
    return [*by_job.values(), *loose]


def summarize(
    entries: Iterable[LedgerEntry], by: Literal["provider", "model", "day"] = "provider"
) -> list[dict[str, Any]]:
    """Totals per group: jobs, billed jobs, USD and amounts per unit; pending and unknown apart.

    ``pending_usd`` / ``unknown_usd`` are estimates of jobs whose charge is not known yet (still
    running, or ended without the provider saying): money that may be spent, never added to ``usd``.
    """
    groups: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "jobs": 0,
            "billed_jobs": 0,
            "usd": 0.0,
            "units": defaultdict(float),
            "pending_jobs": 0,
            "pending_usd": 0.0,
            "unknown_jobs": 0,
            "unknown_usd": 0.0,
        }
    )
    for entry in entries:
        name = {
            "provider": entry.provider,
            "model": f"{entry.provider}/{entry.model}",
            "day": entry.recorded_at.date().isoformat(),
        }[by]
        group = groups[name]
        group["jobs"] += 1
        if entry.charge_status in BILLED_STATUSES:
            group["billed_jobs"] += 1
        elif entry.charge_status in (ChargeStatus.PENDING, ChargeStatus.UNKNOWN):
            group[f"{entry.charge_status.value}_jobs"] += 1
            group[f"{entry.charge_status.value}_usd"] += entry.open_usd
        group["usd"] += entry.charged_usd or 0.0
        group["units"][entry.charged_unit] += entry.charged_amount
    return [
        {
            by: name,
            "jobs": g["jobs"],
            "billed_jobs": g["billed_jobs"],
            "usd": round(g["usd"], 6),
            "units": {unit: round(amount, 6) for unit, amount in g["units"].items()},
            "pending_jobs": g["pending_jobs"],
            "pending_usd": round(g["pending_usd"], 6),
            "unknown_jobs": g["unknown_jobs"],
            "unknown_usd": round(g["unknown_usd"], 6),
        }
        for name, g in sorted(groups.items())
    ]
