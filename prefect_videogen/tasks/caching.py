"""Cache policies that make "never pay twice" hold across flow runs.

* Submit is keyed on the normalised request's fingerprint, the provider, a NON-secret account id
  and the provider's ``base_url`` (a gateway's job is not the direct API's; never the secret, never
  the task's source code: a refactor must not pay again), and runs under SERIALIZABLE isolation so
  concurrent submits with the same key run once.
* Wait and download are keyed on the provider job id (and, for download, the storage target).

Locks: ``MemoryLockManager`` serialises same-key submits within one flow process (a batch's
concurrent items); set ``PREFECT_VIDEOGEN_REDIS_URL`` (``pip install prefect-videogen[redis]``) to
serialise across processes and machines with ``RedisLockManager``. Prefect 3.8's
``FileSystemLockManager`` is not used: concurrent same-key acquisitions in one event loop read its
half-written lock file and fail. Across processes and machines the job claim in the run's storage
(:mod:`prefect_videogen.spend.claims`) is what guarantees one submit; the locks only save waiting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.locking.memory import MemoryLockManager
from prefect.transactions import IsolationLevel
from prefect.utilities.hashing import hash_objects

REDIS_URL_ENV = "PREFECT_VIDEOGEN_REDIS_URL"
_MEMORY_LOCKS = MemoryLockManager()


def submit_key(provider_name: str, account_id: str, fingerprint: str, nonce: str = "", base_url: str = "") -> str:
    """The cache key of a paid submit (also its claim's and idempotency key); a ``nonce`` (a refresh) makes a new one."""
    return hash_objects("videogen-submit-v2", provider_name, account_id, base_url.rstrip("/"), fingerprint, nonce) or ""


def provider_base_url(provider: Any) -> str:
    """The block's API root ("" for the local renderer): part of every submit key."""
    return str(getattr(provider, "base_url", "") or "")


@dataclass
class SubmitCachePolicy(CachePolicy):
    """Key = provider + non-secret account id + base_url + request fingerprint."""

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        provider, plan = inputs["provider"], inputs["plan"]
        return submit_key(
            provider.provider_name,
            provider.account_id(),
            plan.request.fingerprint(),
            base_url=provider_base_url(provider),
        )


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


def _redis_lock_manager(url: str) -> Any:
    from urllib.parse import urlparse

    from prefect_redis.locking import RedisLockManager  # optional dependency: the [redis] extra
    from redis.asyncio.lock import Lock as AsyncLock
    from redis.lock import Lock

    class RedisLocks(RedisLockManager):
        """prefect-redis 0.3.0 releases an async-acquired lock by calling the async lock's release()
        without awaiting it, so the lock stays held until its hold timeout. Release it through a
        synchronous lock carrying the same token instead."""

        def release_lock(self, key: str, holder: str) -> None:
            name = self._lock_name_for_key(key)
            held = self._locks.get(name)
            if isinstance(held, AsyncLock) and held.local.token is not None:
                twin = Lock(self.client, name, thread_local=False)
                twin.local.token = held.local.token
                twin.release()
                del self._locks[name]
                return
            super().release_lock(key, holder)

    parsed = urlparse(url)
    return RedisLocks(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 6379,
        db=int((parsed.path or "/0").lstrip("/") or 0),
        password=parsed.password,
    )


def lock_manager() -> Any:
    url = os.environ.get(REDIS_URL_ENV)
    if url:
        return _redis_lock_manager(url)
    return _MEMORY_LOCKS


def submit_policy() -> CachePolicy:
    return SubmitCachePolicy().configure(isolation_level=IsolationLevel.SERIALIZABLE, lock_manager=lock_manager())
