"""The cost ledger: one record per provider job, append-only JSONL, next to the videos.

Each job has its own small JSONL file, ``ledger/{provider}/{job_id}.jsonl``, to which a line is
appended when its charge status is recorded. Keying files by provider and job id makes recording
idempotent (a rerun that records the same status adds nothing) and keeps concurrent writers of
different jobs apart on any fsspec store, S3 included, where objects cannot be appended in place:
an append rewrites the job's file through the storage's atomic staging-then-move path.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

from prefect_videogen.costs import ChargeStatus, Cost
from prefect_videogen.storage.base import VideoStorage, safe_part

LEDGER_PREFIX = "ledger"


class LedgerEntry(BaseModel):
    """What one provider job cost."""

    provider: str
    job_id: str
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
        billed = charge_status in (ChargeStatus.BILLED, ChargeStatus.FAILED_BUT_BILLED)
        return cls(
            provider=provider, job_id=job_id, model=model, charge_status=charge_status,
            charged_amount=basis.amount if billed else 0.0, charged_unit=basis.unit,
            charged_usd=(basis.usd if billed else 0.0), estimated=estimated, quoted=quoted, reported=reported,
            **extra,
        )

    def same_charge(self, other: LedgerEntry) -> bool:
        return (self.charge_status, self.charged_amount, self.charged_unit) == (
            other.charge_status, other.charged_amount, other.charged_unit,
        )


class Ledger:
    """Record and read job charges in ``storage`` under ``ledger/``."""

    def __init__(self, storage: VideoStorage) -> None:
        self.storage = storage

    def key(self, provider: str, job_id: str) -> str:
        return f"{LEDGER_PREFIX}/{safe_part(provider)}/{safe_part(job_id, max_length=200)}.jsonl"

    async def record(self, entry: LedgerEntry) -> bool:
        """Append ``entry`` unless the job's latest line already says the same; True if written."""
        key = self.key(entry.provider, entry.job_id)
        lines = await self._read_lines(key)
        if lines and LedgerEntry.model_validate_json(lines[-1]).same_charge(entry):
            return False
        payload = "".join(line + "\n" for line in [*lines, entry.model_dump_json()]).encode()
        await self.storage.write_bytes(key, payload)
        return True

    async def entries(self, *, since: date | None = None) -> list[LedgerEntry]:
        """The latest entry of every job, oldest first."""
        pattern = posixpath.join(self.storage.path(LEDGER_PREFIX), "*", "*.jsonl")
        paths = await asyncio.to_thread(self.storage.fs.glob, pattern)
        latest = []
        for path in paths:
            lines = await asyncio.to_thread(self._read_path, path)
            if lines:
                entry = LedgerEntry.model_validate_json(lines[-1])
                if since is None or entry.recorded_at.date() >= since:
                    latest.append(entry)
        return sorted(latest, key=lambda e: e.recorded_at)

    async def _read_lines(self, key: str) -> list[str]:
        path = self.storage.path(key)
        if not await asyncio.to_thread(self.storage.fs.exists, path):
            return []
        return await asyncio.to_thread(self._read_path, path)

    def _read_path(self, path: str) -> list[str]:
        with self.storage.fs.open(path, "rb") as handle:
            return [line for line in handle.read().decode().splitlines() if line.strip()]


def summarize(entries: Iterable[LedgerEntry], by: Literal["provider", "model", "day"] = "provider") -> list[dict[str, Any]]:
    """Totals per group: jobs, billed jobs, USD, and amounts per unit."""
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"jobs": 0, "billed_jobs": 0, "usd": 0.0, "units": defaultdict(float)})
    for entry in entries:
        name = {"provider": entry.provider, "model": f"{entry.provider}/{entry.model}",
                "day": entry.recorded_at.date().isoformat()}[by]
        group = groups[name]
        group["jobs"] += 1
        if entry.charge_status in (ChargeStatus.BILLED, ChargeStatus.FAILED_BUT_BILLED):
            group["billed_jobs"] += 1
        group["usd"] += entry.charged_usd or 0.0
        group["units"][entry.charged_unit] += entry.charged_amount
    return [
        {by: name, "jobs": g["jobs"], "billed_jobs": g["billed_jobs"], "usd": round(g["usd"], 6),
         "units": {unit: round(amount, 6) for unit, amount in g["units"].items()}}
        for name, g in sorted(groups.items())
    ]
