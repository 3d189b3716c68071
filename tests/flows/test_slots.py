"""ProviderSlot: a provider's concurrency slot, freed by the wait task as soon as its job is done."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from prefect_videogen.blocks import LocalRenderer
from prefect_videogen.models import JobStatus, VideoRequest
from prefect_videogen.pipeline import plan_request
from prefect_videogen.tasks import submit_video, wait_for_video
from prefect_videogen.tasks.slots import ProviderSlot, release_current_slot


async def test_a_semaphore_slot_is_freed_early_once_and_only_inside_its_block():
    gate = asyncio.Semaphore(1)
    release_current_slot()  # outside any slot: nothing to free
    async with ProviderSlot(gate) as slot:
        assert gate.locked() and slot.held
        release_current_slot()
        assert not gate.locked() and not slot.held
        release_current_slot()  # twice: still one release
    assert gate._value == 1  # noqa: SLF001  (not over-released on exit)
    async with ProviderSlot(gate):
        assert gate.locked()
    assert not gate.locked()  # released on exit when nobody freed it earlier


async def test_no_bound_holds_nothing():
    async with ProviderSlot(None) as slot:
        assert slot.held
        release_current_slot()
    assert not slot.held


async def test_the_wait_task_frees_the_slot_when_the_job_is_done(prefect_server, tmp_path):
    provider = LocalRenderer(queue_delay_seconds=0.05, jobs_dir=str(tmp_path / "jobs"))
    plan = plan_request("local", VideoRequest(prompt=f"slot test {tmp_path.name}", duration=1))
    gate = asyncio.Semaphore(1)
    async with ProviderSlot(gate):
        job = await submit_video(plan, provider, uuid.uuid4().hex)
        assert gate.locked()  # held while the job runs
        done = await wait_for_video(job, provider, 60)
        assert done.status is JobStatus.SUCCEEDED
        assert not gate.locked()  # freed by the wait task, before the block ends


async def active_slots(name: str) -> int:
    async with get_client() as client:
        return (await client.read_global_concurrency_limit_by_name(name)).active_slots


async def test_a_global_limit_slot_is_held_by_a_helper_task_and_given_back(prefect_server, tmp_path):
    name = f"videogen-slot-test-{uuid.uuid4().hex[:8]}"
    async with get_client() as client:
        await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    second_has_it, finish_second = asyncio.Event(), asyncio.Event()

    async def second() -> None:
        async with ProviderSlot(name):
            second_has_it.set()
            await finish_second.wait()

    async with ProviderSlot(name):
        assert await active_slots(name) == 1
        waiting = asyncio.create_task(second())
        assert await active_slots(name) == 1 and not second_has_it.is_set()  # queued behind the first
        release_current_slot()  # the first job is done: its slot goes to the second at once
        await asyncio.wait_for(second_has_it.wait(), timeout=60)
        assert await active_slots(name) == 1
    finish_second.set()
    await waiting
    assert await active_slots(name) == 0


async def test_cancelled_while_queued_for_a_global_slot_takes_none(prefect_server):
    name = f"videogen-slot-test-{uuid.uuid4().hex[:8]}"
    async with get_client() as client:
        await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))

    async def queued() -> None:
        async with ProviderSlot(name):
            pytest.fail("the limit is full: this slot is never granted")

    async with ProviderSlot(name):
        waiting = asyncio.create_task(queued())
        await active_slots(name)  # a server round trip: the second is now queued
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert await active_slots(name) == 0
