"""The manifest as per-item records: constant-cost updates, damage survived, the old single-JSON format still read."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from prefect_videogen.batch.expansion import PromptSource
from prefect_videogen.batch.manifest import ManifestItem, ManifestStore, load_manifest
from prefect_videogen.blocks import LocalRenderer, LocalVideoStorage
from prefect_videogen.flows import generate_videos
from prefect_videogen.storage.base import VideoStorage


def item(n: int) -> ManifestItem:
    return ManifestItem(item_id=f"item-{n:05d}", row=n, original_prompt=f"p{n}", prompt=f"p{n}")


async def new_store(root: Path, n: int = 3) -> ManifestStore:
    store = ManifestStore(VideoStorage(str(root)), "batch-a")
    manifest = await store.load(batch_id="batch-a", provider="local")
    for i in range(n):
        manifest.items[f"item-{i:05d}"] = item(i)
    await store.save()
    return store


def records(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "manifests" / "batch-a" / "items").glob("*.json"))}


async def test_an_update_writes_only_that_items_record(tmp_path):
    store = await new_store(tmp_path, n=3)
    header = (tmp_path / "manifests" / "batch-a.json").read_bytes()
    before = records(tmp_path)
    assert sorted(before) == ["item-00000.json", "item-00001.json", "item-00002.json"]
    assert json.loads(header)["format"] == 2 and len(header) < 400  # a small header, not the batch

    await store.update("item-00001", status="stored", job_id="job-1", cost_usd=0.4)
    after = records(tmp_path)
    assert (
        after["item-00000.json"] == before["item-00000.json"] and after["item-00002.json"] == before["item-00002.json"]
    )
    assert json.loads(after["item-00001.json"])["status"] == "stored"
    assert (tmp_path / "manifests" / "batch-a.json").read_bytes() == header

    again = await ManifestStore(VideoStorage(str(tmp_path)), "batch-a").load(batch_id="batch-a", provider="local")
    assert again.items["item-00001"].job_id == "job-1" and len(again.items) == 3 and again.skipped == []
    assert load_manifest(store.uri).items["item-00001"].cost_usd == 0.4  # the same view outside a flow


async def test_a_second_save_writes_nothing_unchanged(tmp_path):
    store = await new_store(tmp_path, n=3)
    reloaded = ManifestStore(VideoStorage(str(tmp_path)), "batch-a")
    await reloaded.load(batch_id="batch-a", provider="local")
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "manifests").rglob("*.json")}
    await reloaded.save()
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "manifests").rglob("*.json")} == stamps
    assert store.uri == reloaded.uri


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (b'{"item_id": "item-00001", "row": 1, "orig', "line 1 column"),  # truncated mid-write
        (b'{"item_id": "item-00001",\n "row": 1,\n garbage}', "line 3 column"),
        (b'\xff\xfe{"item_id": "\xe9"}', "not UTF-8"),
        (b'{"item_id": "item-00001", "row": "not a number"}', "not a manifest record"),
        (b"", "line 1 column 1"),
    ],
)
async def test_a_damaged_record_is_skipped_counted_and_named(tmp_path, caplog, damage, said):
    await new_store(tmp_path, n=3)
    broken = tmp_path / "manifests" / "batch-a" / "items" / "item-00001.json"
    broken.write_bytes(damage)
    with caplog.at_level(logging.WARNING, logger="prefect_videogen.manifest"):
        manifest = await ManifestStore(VideoStorage(str(tmp_path)), "batch-a").load(
            batch_id="batch-a", provider="local"
        )
    assert sorted(manifest.items) == ["item-00000", "item-00002"]
    assert len(manifest.skipped) == 1 and str(broken) in manifest.skipped[0] and said in manifest.skipped[0]
    assert any(str(broken) in r.getMessage() and said in r.getMessage() for r in caplog.records)


async def test_the_old_single_json_format_still_loads_and_is_migrated(tmp_path):
    old = {
        "batch_id": "batch-a",
        "provider": "local",
        "created_at": "2026-11-01T00:00:00Z",
        "items": {i.item_id: i.model_dump(mode="json") for i in (item(0), item(1))},
    }
    old["items"]["item-00001"].update(status="stored", job_id="job-old")
    old["items"]["broken"] = {"item_id": "broken"}  # one bad item does not sink the others
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "batch-a.json").write_text(json.dumps(old))

    store = ManifestStore(VideoStorage(str(tmp_path)), "batch-a")
    manifest = await store.load(batch_id="batch-a", provider="local")
    assert sorted(manifest.items) == ["item-00000", "item-00001"] and manifest.items["item-00001"].job_id == "job-old"
    assert len(manifest.skipped) == 1 and "'broken'" in manifest.skipped[0]
    await store.save()  # written as per-item records, then the header
    assert sorted(records(tmp_path)) == ["item-00000.json", "item-00001.json"]
    assert json.loads((tmp_path / "manifests" / "batch-a.json").read_text())["format"] == 2
    assert load_manifest(store.uri).items["item-00001"].job_id == "job-old"


def renderer(tmp_path):
    return LocalRenderer(queue_delay_seconds=0, jobs_dir=str(tmp_path / "jobs"))


async def test_a_batch_rerun_survives_an_old_manifest_and_damaged_records(prefect_server, tmp_path):
    source = PromptSource(
        template="{subject} ({tag})",
        grid={"subject": ["a fox", "an owl", "a hare"], "tag": [tmp_path.name]},
        defaults={"duration": 1},
    )
    storage = LocalVideoStorage(
        base_path=str(tmp_path / "videos"),
    )
    first = await generate_videos(source, provider=renderer(tmp_path), storage=storage, batch_name="kept")
    assert first.counts == {"stored": 3}
    jobs = sorted((tmp_path / "jobs").glob("*.json"))

    # Rewrite it in the old single-JSON format, as an earlier version left it.
    manifests = tmp_path / "videos" / "manifests"
    view = load_manifest(first.manifest_uri)
    (manifests / "kept.json").write_text(view.model_dump_json())
    shutil.rmtree(manifests / "kept")
    again = await generate_videos(source, provider=renderer(tmp_path), storage=storage, batch_name="kept")
    assert again.counts == {"stored": 3} and sorted((tmp_path / "jobs").glob("*.json")) == jobs  # nothing paid

    # Now damage one per-item record: the rerun skips it, re-plans that item, pays nothing new.
    [victim, *_] = sorted((manifests / "kept" / "items").glob("*.json"))
    victim.write_bytes(victim.read_bytes()[:40])
    third = await generate_videos(source, provider=renderer(tmp_path), storage=storage, batch_name="kept")
    assert third.counts == {"stored": 3} and sorted((tmp_path / "jobs").glob("*.json")) == jobs
    assert load_manifest(third.manifest_uri).skipped == []  # the rerun wrote the record again
