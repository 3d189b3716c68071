"""Concurrent submits with the same fingerprint run once; the lock manager can span machines (Redis)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from prefect_videogen.batch.expansion import PromptSource
from prefect_videogen.blocks import LocalRenderer, LocalVideoStorage
from prefect_videogen.flows import generate_videos
from prefect_videogen.tasks import caching


def redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


async def test_same_request_in_two_rows_is_paid_once(prefect_server, tmp_path):
    source = PromptSource(
        rows=[{"id": "a", "prompt": f"twin {tmp_path.name}"}, {"id": "b", "prompt": f"twin {tmp_path.name}"}],
        defaults={"duration": 1},
    )
    result = await generate_videos(
        source,
        provider=LocalRenderer(queue_delay_seconds=0.2, jobs_dir=str(tmp_path / "jobs")),
        storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
        max_concurrency=2,
    )
    assert result.counts == {"stored": 2}
    assert len({item.job_id for item in result.items}) == 1
    assert len(list((tmp_path / "jobs").glob("*.json"))) == 1


def test_cache_key_has_no_secret_and_ignores_it():
    from prefect_videogen.blocks import APIFrameCredentials
    from prefect_videogen.catalog import load_catalog
    from prefect_videogen.models import VideoRequest

    plan = load_catalog().plan("apiframe", VideoRequest(prompt="a fox"))
    policy = caching.SubmitCachePolicy()
    one = APIFrameCredentials(api_key="afk_first_secret_value", account_label="acme")
    two = APIFrameCredentials(api_key="afk_rotated_secret_value", account_label="acme")
    other = APIFrameCredentials(api_key="afk_first_secret_value", account_label="other-account")
    key = policy.compute_key(None, {"plan": plan, "provider": one}, {})
    assert key == policy.compute_key(None, {"plan": plan, "provider": two}, {})  # a rotated key keeps the cache
    assert key != policy.compute_key(None, {"plan": plan, "provider": other}, {})  # another account does not
    assert "afk_" not in key and "secret" not in key


@pytest.mark.skipif(not redis_available(), reason="needs Redis on 127.0.0.1:6379")
async def test_redis_lock_manager_serialises_same_key_submits(prefect_server, tmp_path, monkeypatch):
    monkeypatch.setenv(caching.REDIS_URL_ENV, "redis://127.0.0.1:6379/0")
    manager = caching.lock_manager()
    from prefect_redis.locking import RedisLockManager

    assert isinstance(manager, RedisLockManager)
    key = f"videogen-test-{tmp_path.name}"
    holders = []

    async def hold(holder):
        assert await manager.aacquire_lock(key, holder, acquire_timeout=10, hold_timeout=10)
        holders.append(("in", holder))
        await asyncio.sleep(0.05)
        holders.append(("out", holder))
        manager.release_lock(key, holder)

    await asyncio.gather(hold("one"), hold("two"))
    # Never both inside: each "in" is followed by its own "out".
    assert [h for _, h in holders][0::2] == [h for _, h in holders][1::2]
