"""Cache policies that make "never pay twice" hold across flow runs.

* Submit is keyed on the normalised request's fingerprint, the provider and a NON-secret account id
  (never the secret, never the task's source code: a refactor must not pay again), and runs under
  SERIALIZABLE isolation so concurrent submits with the same key run once.
* Wait and download are keyed on the provider job id (and, for download, the storage target).

Locks: ``FileSystemLockManager`` serialises processes on one host; set ``PREFECT_VIDEOGEN_REDIS_URL``
(with ``prefect-redis`` installed) to serialise across machines with ``RedisLockManager``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.locking.filesystem import FileSystemLockManager
from prefect.transactions import IsolationLevel
from prefect.utilities.hashing import hash_objects

REDIS_URL_ENV = "PREFECT_VIDEOGEN_REDIS_URL"


def submit_key(provider_name: str, account_id: str, fingerprint: str, nonce: str = "") -> str:
    """The cache key of a paid submit; with a ``nonce`` (a refresh), a fresh idempotency key."""
    return hash_objects("videogen-submit-v1", provider_name, account_id, fingerprint, nonce) or ""


@dataclass
class SubmitCachePolicy(CachePolicy):
    """Key = provider + non-secret account id + request fingerprint."""

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        provider, plan = inputs["provider"], inputs["plan"]
        return submit_key(provider.provider_name, provider.account_id(), plan.request.fingerprint())


@dataclass
class JobCachePolicy(CachePolicy):
    """Key = provider + job id (+ the download's storage target), for wait and download."""

    step: str = "wait"

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        job = inputs["job"]
        target = inputs.get("storage_url")
        return hash_objects(f"videogen-{self.step}-v1", job.provider, job.job_id, target)


def lock_manager() -> Any:
    url = os.environ.get(REDIS_URL_ENV)
    if url:
        from prefect_redis.locking import RedisLockManager  # optional dependency

        from urllib.parse import urlparse

        parsed = urlparse(url)
        return RedisLockManager(host=parsed.hostname or "127.0.0.1", port=parsed.port or 6379,
                                db=int((parsed.path or "/0").lstrip("/") or 0), password=parsed.password)
    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect"))
    return FileSystemLockManager(lock_files_directory=home / "videogen-locks")


def submit_policy() -> CachePolicy:
    return SubmitCachePolicy().configure(isolation_level=IsolationLevel.SERIALIZABLE, lock_manager=lock_manager())
