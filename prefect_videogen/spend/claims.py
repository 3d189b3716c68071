"""Job claims: a record in the run's own storage, written before every paid submit.

A claim says "this request (provider, account, base_url, fingerprint) is being, or has been,
submitted", and later "its job is ``job_id``". It lives next to the videos and the ledger, at
``claims/{provider}/{key}.json``, where ``key`` is the submit key (the same one the submit cache
and the provider's idempotency key use). The storage is the one thing every worker of a batch
shares, so a claim guards against paying twice across processes and machines with nothing else
configured (no Redis).

Created only if absent, so exactly one claimant wins:

* local disks: the claim is written to a private temporary file, then ``os.link``-ed to its name;
  ``link`` fails when the name exists (like ``O_EXCL``) and, unlike ``open(path, "x")``, never
  shows a half-written claim to another reader;
* S3: a conditional put, ``If-None-Match: *`` (s3fs ``pipe_file(mode="create")``); S3 answers 412
  to every put but the first, which s3fs raises as ``FileExistsError``.

Only the claim's owner updates it afterwards (to add the job id), with a plain overwrite.

Who finds an existing claim:

* with a job id: adopts that job (never submits);
* without a job id, fresh (its owner may still be waiting for the provider's answer): waits,
  bounded by the claim's freshness;
* without a job id and stale (its owner died, or gave up after an ambiguous failure): an orphan.
  The caller looks the job up at the provider where its API allows, or fails with
  :class:`~prefect_videogen.errors.SubmitUncertain`.

Plain Python: no Prefect import.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import socket
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from prefect_videogen.catalog import VideoPlan
from prefect_videogen.errors import (
    AuthError,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    InvalidVideoRequest,
    ProviderUnavailable,
    RateLimited,
    StorageError,
    SubmitUncertain,
    VideoGenError,
    redact,
)
from prefect_videogen.models import JobStatus, VideoJob
from prefect_videogen.providers.base import FindsJobs
from prefect_videogen.spend.costs import ChargeStatus, Cost
from prefect_videogen.spend.ledger import Ledger, LedgerEntry
from prefect_videogen.storage.base import VideoStorage, read_object, read_object_if_any, safe_part

logger = logging.getLogger("prefect_videogen.claims")  # the name it had before the module moved (log filters)

CLAIMS_PREFIX = "claims"
# A claim without a job id counts as in flight this long: longer than one submit can take
# (the HTTP client's read timeout is 60 s, plus connecting and an image upload).
DEFAULT_FRESH_SECONDS = 180.0
FRESH_SECONDS_ENV = "PREFECT_VIDEOGEN_CLAIM_FRESH_SECONDS"
_HOST = socket.gethostname()


def fresh_seconds() -> float:
    raw = os.environ.get(FRESH_SECONDS_ENV)
    return float(raw) if raw else DEFAULT_FRESH_SECONDS


class JobClaim(BaseModel):
    """One paid submit: what was asked, by whom, when, and (once known) the provider's job id."""

    key: str = Field(description="The submit key: provider, account, base_url, request fingerprint, refresh nonce.")
    provider: str
    account_id: str
    base_url: str = ""
    fingerprint: str
    client_token: str = Field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    host: str = Field(default_factory=lambda: _HOST)
    pid: int = Field(default_factory=os.getpid)
    model: str = ""
    item_id: str | None = None
    request: dict[str, Any] = Field(
        default_factory=dict, description="The VideoRequest, so `resume` can store the video."
    )
    estimated: dict[str, Any] | None = Field(default=None, description="The catalog estimate (a Cost).")
    job_id: str | None = None
    job_at: datetime | None = None
    gave_up_at: datetime | None = Field(
        default=None, description="Its owner stopped waiting for the answer (an ambiguous failure): an orphan now."
    )
    adopted_by: list[str] = Field(default_factory=list)

    def age_seconds(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(timezone.utc)) - self.created_at).total_seconds()

    def owner_alive(self) -> bool | None:
        """Whether the process that wrote the claim still runs: known on this host only (None elsewhere)."""
        if self.host != _HOST:
            return None
        if self.pid == os.getpid():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def is_stale(self, fresh_for: float | None = None) -> bool:
        """No job id, and its owner is gone (same host) or it is older than ``fresh_for`` seconds."""
        if self.job_id:
            return False
        if self.gave_up_at is not None or self.owner_alive() is False:
            return True
        return self.age_seconds() > (fresh_seconds() if fresh_for is None else fresh_for)


class ClaimStore:
    """Create, read, update and list claims under ``claims/`` in ``storage``."""

    def __init__(self, storage: VideoStorage) -> None:
        self.storage = storage

    def key(self, provider: str, claim_key: str) -> str:
        return f"{CLAIMS_PREFIX}/{safe_part(provider)}/{safe_part(claim_key, max_length=200)}.json"

    def uri(self, claim: JobClaim) -> str:
        return self.storage.uri(self.key(claim.provider, claim.key))

    async def create(self, claim: JobClaim) -> bool:
        """Write ``claim`` only if no claim of its key exists; True when this call created it."""
        path = self.storage.path(self.key(claim.provider, claim.key))
        payload = claim.model_dump_json(indent=1).encode()
        try:
            return await asyncio.to_thread(self._create_exclusive, path, payload)
        except OSError as exc:
            raise StorageError(
                f"could not write the job claim {self.storage.uri(self.key(claim.provider, claim.key))}: "
                f"{redact(str(exc))}; nothing was submitted"
            ) from exc

    def _create_exclusive(self, path: str, payload: bytes) -> bool:
        if self.storage.is_local:
            directory = posixpath.dirname(path)
            os.makedirs(directory, exist_ok=True)
            fd, staging = tempfile.mkstemp(dir=directory, prefix=".claim-", suffix=".partial")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(payload)
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    os.link(staging, path)  # fails if the name exists: exactly one claimant wins
                except FileExistsError:
                    return False
                return True
            finally:
                os.unlink(staging)
        try:
            # s3fs: PutObject with If-None-Match: * (AWS S3 and moto honour it); 412 -> FileExistsError.
            self.storage.fs.pipe_file(path, payload, mode="create")
        except FileExistsError:
            return False
        return True

    async def read(self, provider: str, claim_key: str) -> JobClaim | None:
        """The claim of ``claim_key``; None when there is none. An unreadable claim is reported, not hidden."""
        key = self.key(provider, claim_key)
        raw = await asyncio.to_thread(read_object_if_any, self.storage.fs, self.storage.path(key))
        if raw is None:
            return None
        try:
            return JobClaim.model_validate_json(raw)
        except ValidationError as exc:
            raise StorageError(
                f"job claim {self.storage.uri(key)} is unreadable ({exc.error_count()} error(s)); "
                "check the provider's dashboard for its job, then remove the claim or rerun with "
                "refresh"
            ) from None

    async def write(self, claim: JobClaim) -> None:
        """Overwrite ``claim`` (its owner adding the job id; an adopter taking over an orphan)."""
        key = self.key(claim.provider, claim.key)
        path = self.storage.path(key)
        payload = claim.model_dump_json(indent=1).encode()
        if self.storage.is_local:

            def replace() -> None:
                fd, staging = tempfile.mkstemp(dir=posixpath.dirname(path), prefix=".claim-", suffix=".partial")
                with os.fdopen(fd, "wb") as handle:
                    handle.write(payload)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(staging, path)

            await asyncio.to_thread(replace)
        else:
            await asyncio.to_thread(self.storage.fs.pipe_file, path, payload)

    async def set_job(self, claim: JobClaim, job_id: str) -> JobClaim:
        claim = claim.model_copy(update={"job_id": job_id, "job_at": datetime.now(timezone.utc)})
        await self.write(claim)
        return claim

    async def release(self, claim: JobClaim) -> None:
        """Remove a claim whose submit provably created nothing (refused before any job existed)."""
        path = self.storage.path(self.key(claim.provider, claim.key))
        try:
            await asyncio.to_thread(self.storage.fs.rm, path)
        except FileNotFoundError:
            pass

    async def all(self, provider: str | None = None) -> tuple[list[JobClaim], list[str]]:
        """Every readable claim (of ``provider``), and the URIs of claims that could not be read."""
        pattern = posixpath.join(self.storage.path(CLAIMS_PREFIX), safe_part(provider) if provider else "*", "*.json")
        paths = sorted(await asyncio.to_thread(self.storage.fs.glob, pattern))
        claims, unreadable = [], []
        for path in paths:
            try:
                claims.append(JobClaim.model_validate_json(read_object(self.storage.fs, path)))
            except (ValidationError, OSError):
                unreadable.append(path if self.storage.is_local else f"{self.storage.uri('').split('://')[0]}://{path}")
        return claims, unreadable

    async def wait_for_job(
        self,
        claim: JobClaim,
        *,
        poll_seconds: float = 0.25,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> JobClaim | None:
        """Re-read a fresh claim until it has a job id or goes stale (its owner died or took too long).

        Returns None when the claim was released meanwhile (its submit provably created nothing).
        """
        started = clock()
        while not claim.job_id and not claim.is_stale():
            await sleep(poll_seconds)
            current = await self.read(claim.provider, claim.key)
            if current is None:  # released: its submit created nothing
                return None
            claim = current
            if clock() - started > fresh_seconds() + poll_seconds:
                break
        return claim


# -- the claimed submit ------------------------------------------------------------------------

# Errors that prove the provider created nothing: refused before a job existed, or never connected.
# Anything else after the body may have arrived keeps the claim (and its pending ledger line).
_REFUSALS = (InvalidVideoRequest, AuthError, InvalidRequest, InsufficientCredits, RateLimited)


def _created_nothing(exc: BaseException) -> bool:
    if isinstance(exc, IdempotencyConflict):
        return False  # the key already names a job
    if isinstance(exc, _REFUSALS):
        return True
    return isinstance(exc, ProviderUnavailable) and not exc.maybe_created


async def find_orphan(client: Any, plan: VideoPlan, claim: JobClaim, store: ClaimStore, why: str) -> VideoJob:
    """The job an unanswered submit may have created, looked up at the provider; never a new payment.

    Raises:
        SubmitUncertain: the provider has no lookup (Scenario), or it found no matching job.
    """
    if not isinstance(client, FindsJobs):
        raise SubmitUncertain(
            f"{why}; {claim.provider} documents no way to list or dedupe jobs",
            provider=claim.provider,
            claim_uri=store.uri(claim),
            item_id=claim.item_id,
        )
    job = await client.find_job(plan, claim)
    if job is None:
        raise SubmitUncertain(
            f"{why}; no job matching the claim was found in the provider's listing",
            provider=claim.provider,
            claim_uri=store.uri(claim),
            item_id=claim.item_id,
        )
    logger.warning(
        "%s: adopted job %s of the unanswered submit claimed at %s", claim.provider, job.job_id, store.uri(claim)
    )
    return job


async def claimed_submit(
    client: Any,
    plan: VideoPlan,
    claim: JobClaim,
    storage: VideoStorage,
    *,
    estimated: Cost,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[VideoJob, bool]:
    """Submit ``plan`` at most once across processes and machines sharing ``storage``.

    Claims the submit first (created only if absent), books a ``pending`` ledger line with the
    estimate, submits, and records the job id on the claim and in the ledger the moment the
    provider answers. Finding the claim taken, it adopts the claimed job (waiting, bounded, while
    a fresh claim has no job id yet), or looks up an orphan at the provider.

    Returns:
        The job, and whether it was adopted (created by an earlier or another claimant).

    Raises:
        SubmitUncertain: a job may exist and the provider cannot find it; nothing is re-sent.
        ProviderError etc.: the submit was refused; the claim is released (nothing was created).
    """
    store, ledger = ClaimStore(storage), Ledger(storage)

    async def book(current: JobClaim, job_id: str, status: ChargeStatus = ChargeStatus.PENDING) -> None:
        await ledger.record(
            LedgerEntry.for_job(
                provider=current.provider,
                job_id=job_id,
                model=current.model,
                charge_status=status,
                estimated=estimated,
                account_id=current.account_id,
                item_id=current.item_id,
                claim_key=current.key,
            )
        )

    async def adopt(current: JobClaim, job: VideoJob) -> tuple[VideoJob, bool]:
        current = current.model_copy(update={"adopted_by": [*current.adopted_by, f"{_HOST}:{os.getpid()}"]})
        await store.set_job(current, job.job_id)
        await book(current, job.job_id)
        return job, True

    while True:
        if await store.create(claim):
            await book(claim, "")
            try:
                job = await client.submit(plan, idempotency_key=claim.key)
            except VideoGenError as exc:
                if _created_nothing(exc):
                    await ledger.forget_claim(claim.provider, claim.key)
                    await store.release(claim)
                    raise
                # Kept: the claim (no job id) and its pending line say a job may exist. Marked as
                # given up, so the next claimant looks it up at once instead of waiting for it.
                try:
                    if not isinstance(exc, ProviderUnavailable):
                        raise
                    job = await find_orphan(
                        client, plan, claim, store, f"the submit failed ambiguously ({exc.message})"
                    )
                except VideoGenError:
                    await store.write(claim.model_copy(update={"gave_up_at": datetime.now(timezone.utc)}))
                    raise
                return await adopt(claim, job)
            await store.set_job(claim, job.job_id)
            await book(claim, job.job_id)
            return job, False
        existing = await store.read(claim.provider, claim.key)
        if existing is None:
            continue  # released meanwhile: its submit created nothing; claim it again
        if not existing.job_id and not existing.is_stale():
            waited = await store.wait_for_job(existing, sleep=sleep)
            if waited is None:
                continue
            existing = waited
        if existing.job_id:
            placeholder = VideoJob(
                provider=existing.provider,
                job_id=existing.job_id,
                model=existing.model or claim.model,
                status=JobStatus.QUEUED,
                raw_status="claimed",
            )
            job = await client.get_job(placeholder)
            await book(existing, job.job_id)  # idempotent: the owner booked it already
            logger.info(
                "%s: job %s is claimed at %s; adopted instead of submitting again",
                existing.provider,
                job.job_id,
                store.uri(existing),
            )
            return job, True
        job = await find_orphan(
            client,
            plan,
            existing,
            store,
            f"the submit claimed at {existing.created_at.isoformat()} by "
            f"{existing.host}:{existing.pid} never recorded a job id",
        )
        return await adopt(existing, job)
