"""The collector while a batch's items run: frozen heap and a larger young generation, put back after."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from prefect_videogen.batch.collector import YOUNG_THRESHOLD, collector_for_batch


@pytest.fixture
def collector_defaults():
    """Python's default collector settings around each test, whatever the suite did before."""
    saved, frozen = gc.get_threshold(), gc.get_freeze_count()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)
    if frozen:
        gc.freeze()


def test_a_batch_freezes_the_heap_and_grows_the_young_generation_then_puts_both_back(collector_defaults):
    with collector_for_batch():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_garbage_cycles_frozen_during_a_batch_are_collected_after_it(collector_defaults):
    class Node:
        pass

    node = Node()
    node.self = node  # a cycle: only the collector frees it
    alive = weakref.ref(node)
    with collector_for_batch():
        del node
        gc.collect()
        assert alive() is not None  # frozen with the heap: the cycle waits
    gc.collect()
    assert alive() is None  # unfrozen: collected


async def test_overlapping_batches_share_one_change_and_the_last_to_end_restores(collector_defaults):
    first_in, second_in, first_out = asyncio.Event(), asyncio.Event(), asyncio.Event()
    seen = {}

    async def batch(name: str, entered: asyncio.Event, wait_for: asyncio.Event) -> None:
        with collector_for_batch():
            entered.set()
            await wait_for.wait()
            seen[name] = gc.get_threshold()
        if name == "first":
            first_out.set()
            seen["after first"] = gc.get_threshold()

    async def second() -> None:
        await first_in.wait()
        with collector_for_batch():
            second_in.set()
            await first_out.wait()
            seen["second after first ended"] = gc.get_threshold()

    await asyncio.gather(batch("first", first_in, second_in), second())
    assert seen["first"] == seen["after first"] == seen["second after first ended"] == (YOUNG_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


def test_a_process_that_froze_its_own_heap_or_turned_collection_off_keeps_that(collector_defaults):
    gc.freeze()
    own = gc.get_freeze_count()
    with collector_for_batch():
        assert 0 < gc.get_freeze_count() <= own  # nothing frozen by the batch (freed objects leave it)
    assert 0 < gc.get_freeze_count() <= own  # and not unfrozen by it
    gc.unfreeze()
    gc.set_threshold(0)
    with collector_for_batch():
        assert gc.get_threshold()[0] == 0
    assert gc.get_threshold()[0] == 0
