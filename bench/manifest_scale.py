"""Benchmark: the cost of one manifest item update as a batch grows (local storage).

Side by side, at batches of 1, 1,000 and 10,000 items:

* old: the manifest as one JSON document, rewritten atomically after every item update (the
  format-1 ``ManifestStore.update``: dump the whole batch, staging file, rename);
* new: per-item records (``prefect_videogen.batch.manifest.ManifestStore``): an update writes one item's
  record, whatever the batch size.

Each figure is the median of ``--updates`` updates of items spread over the batch. It also prints
how long the new store takes to write a batch's records the first time and to load the whole view.

Usage:
    python bench/manifest_scale.py [--sizes 1,1000,10000] [--updates 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect_videogen.batch.manifest import Manifest, ManifestItem, ManifestStore  # noqa: E402
from prefect_videogen.storage.base import VideoStorage  # noqa: E402


def make_item(n: int) -> ManifestItem:
    return ManifestItem(
        item_id=f"item-{n:06d}",
        row=n,
        original_prompt=f"a red fox in fresh snow, shot {n}",
        prompt=f"a red fox in fresh snow, shot {n}, golden hour, 35 mm",
        provider="apiframe",
        model="sora-2",
        status="stored",
        job_id=f"0b9c2f4e-1d2a-4c3b-9e8f-{n:012d}",
        video_key=f"2026-11-30/fox-{n}.mp4",
        sidecar_key=f"2026-11-30/fox-{n}.json",
        sha256="ab" * 32,
        cost_usd=0.4,
        charge_status="billed",
    )


class WholeJsonStore:
    """The format-1 manifest store: every update rewrites the whole batch as one JSON document."""

    def __init__(self, storage: VideoStorage, manifest: Manifest) -> None:
        self.storage, self.manifest = storage, manifest

    async def update(self, item_id: str, **changes: object) -> None:
        self.manifest.items[item_id] = self.manifest.items[item_id].model_copy(update=changes)
        await self.storage.write_bytes("manifests/old.json", self.manifest.model_dump_json(indent=2).encode())


async def median_update_ms(store, item_ids: list[str], updates: int) -> float:
    step = max(len(item_ids) // updates, 1)
    picked = [item_ids[(i * step) % len(item_ids)] for i in range(updates)]
    timings = []
    for n, item_id in enumerate(picked):
        started = time.perf_counter()
        await store.update(item_id, error=f"update {n}")
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


async def measure(size: int, updates: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="videogen-manifest-bench-") as tmp:
        storage = VideoStorage(tmp)
        items = {i.item_id: i for i in map(make_item, range(size))}
        ids = list(items)

        old = WholeJsonStore(storage, Manifest(batch_id="old", provider="apiframe", items=dict(items)))
        await old.update(ids[0])  # first write
        old_ms = await median_update_ms(old, ids, updates)

        store = ManifestStore(storage, "new")
        manifest = await store.load(batch_id="new", provider="apiframe")
        manifest.items.update(items)
        started = time.perf_counter()
        await store.save()
        first_save = time.perf_counter() - started
        new_ms = await median_update_ms(store, ids, updates)
        started = time.perf_counter()
        loaded = await ManifestStore(storage, "new").load(batch_id="new", provider="apiframe")
        load_s = time.perf_counter() - started
        assert len(loaded.items) == size and not loaded.skipped
    return {"old_ms": old_ms, "new_ms": new_ms, "first_save_s": first_save, "load_s": load_s}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,1000,10000")
    parser.add_argument("--updates", type=int, default=30)
    args = parser.parse_args()
    print(
        f"{'items':>7} | {'old: whole JSON per update':>27} | {'new: per-item record':>21} | "
        f"{'new: first save':>15} | {'new: load':>9}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        row = await measure(size, args.updates)
        print(
            f"{size:>7,} | {row['old_ms']:>24.2f} ms | {row['new_ms']:>18.2f} ms | "
            f"{row['first_save_s']:>13.2f} s | {row['load_s']:>7.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
