"""Local storage: streamed, hashed, published atomically, never partial under the final name."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading

import pytest

from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import ProviderUnavailable, StorageError, VerificationFailed
from prefect_videogen.models import JobStatus, VideoJob, VideoRequest
from prefect_videogen.pipeline import store_video
from prefect_videogen.providers import LocalProvider
from prefect_videogen.storage import VideoStorage


async def test_interrupted_write_leaves_nothing(tmp_path):
    storage = VideoStorage(str(tmp_path))
    seen_final_during_write = []

    async def chunks():
        yield b"a" * 1000
        seen_final_during_write.append((tmp_path / "clip.mp4").exists())
        raise ProviderUnavailable("download interrupted: RemoteProtocolError", provider="openai")

    with pytest.raises(ProviderUnavailable):
        await storage.write_stream("clip.mp4", chunks())
    assert seen_final_during_write == [False]
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_stream_is_hashed_and_published(tmp_path):
    storage = VideoStorage(str(tmp_path))
    parts = [b"x" * 100_000, b"y" * 5, b"z" * 77]

    async def chunks():
        for part in parts:
            assert not (tmp_path / "a" / "b.bin").exists()
            yield part

    stored = await storage.write_stream("a/b.bin", chunks())
    body = b"".join(parts)
    assert (tmp_path / "a" / "b.bin").read_bytes() == body
    assert (stored.size, stored.sha256) == (len(body), hashlib.sha256(body).hexdigest())
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.bin"]


async def test_a_small_object_that_cannot_be_published_leaves_nothing(tmp_path, monkeypatch):
    storage = VideoStorage(str(tmp_path))

    def refuse(source, target, **kwargs):
        raise PermissionError(13, "Permission denied", target)

    monkeypatch.setattr(storage.fs, "mv", refuse)
    with pytest.raises(StorageError, match=r"could not write .*ledger/local/j1\.jsonl: .*Permission denied"):
        await storage.write_bytes("ledger/local/j1.jsonl", b'{"job_id": "j1"}\n')
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_a_cancelled_small_write_still_ends_whole_in_its_thread(tmp_path, monkeypatch):
    storage = VideoStorage(str(tmp_path))
    moving, release, moved = threading.Event(), threading.Event(), threading.Event()
    real_mv = storage.fs.mv

    def slow_mv(source, target, **kwargs):
        moving.set()
        release.wait(10)
        try:
            real_mv(source, target, **kwargs)
        finally:
            moved.set()

    monkeypatch.setattr(storage.fs, "mv", slow_mv)
    payload = b'{"item": "a"}\n' * 100
    write = asyncio.ensure_future(storage.write_bytes("manifests/b/items/a.json", payload))
    assert await asyncio.to_thread(moving.wait, 10)
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    release.set()
    assert await asyncio.to_thread(moved.wait, 10)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["a.json"]
    assert (tmp_path / "manifests" / "b" / "items" / "a.json").read_bytes() == payload


def count_thread_calls(monkeypatch) -> list[str]:
    """Names of the functions handed to a worker thread (``asyncio.to_thread``) from now on."""
    calls: list[str] = []
    real = asyncio.to_thread

    async def counted(function, /, *args, **kwargs):
        calls.append(getattr(function, "__name__", repr(function)))
        return await real(function, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    return calls


@pytest.mark.parametrize("parts", [[], [b"one chunk"], [b"x" * 100_000, b"y" * 5, b"z" * 77]])
async def test_a_stream_takes_one_thread_call_per_chunk_and_one_to_publish(tmp_path, monkeypatch, parts):
    storage = VideoStorage(str(tmp_path))
    calls = count_thread_calls(monkeypatch)

    async def chunks():
        for part in parts:
            yield part

    stored = await storage.write_stream("v/clip.mp4", chunks())
    assert len(calls) == len(parts) + 1, calls  # open rides on the first chunk, close on the publish
    assert (tmp_path / "v" / "clip.mp4").read_bytes() == b"".join(parts)
    assert stored.sha256 == hashlib.sha256(b"".join(parts)).hexdigest()
    assert [p.name for p in (tmp_path / "v").iterdir()] == ["clip.mp4"]


async def test_a_stream_whose_close_fails_leaves_nothing(tmp_path, monkeypatch):
    storage = VideoStorage(str(tmp_path))
    real_open = storage._open_staging

    def open_failing_close(final, staging, key):
        handle = real_open(final, staging, key)
        real_close = handle.close

        def close():
            real_close()
            raise OSError(28, "No space left on device")

        handle.close = close
        return handle

    monkeypatch.setattr(storage, "_open_staging", open_failing_close)

    async def chunks():
        yield b"a" * 10

    with pytest.raises(StorageError, match=r"could not write .*clip\.mp4: .*No space left"):
        await storage.write_stream("clip.mp4", chunks())
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_rewrite_reads_changes_and_writes_in_one_thread_call(tmp_path, monkeypatch):
    storage = VideoStorage(str(tmp_path))
    seen: list[bytes | None] = []

    def append(current: bytes | None) -> bytes | None:
        seen.append(current)
        return None if current and current.endswith(b"b\n") else (current or b"") + (b"b\n" if current else b"a\n")

    calls = count_thread_calls(monkeypatch)
    assert await storage.rewrite("ledger/p/j.jsonl", append) is True  # absent: change sees None
    assert await storage.rewrite("ledger/p/j.jsonl", append) is True
    assert await storage.rewrite("ledger/p/j.jsonl", append) is False  # change said "leave it"
    assert seen == [None, b"a\n", b"a\nb\n"]
    assert len(calls) == 3
    assert (tmp_path / "ledger" / "p" / "j.jsonl").read_bytes() == b"a\nb\n"
    assert [p.name for p in (tmp_path / "ledger" / "p").iterdir()] == ["j.jsonl"]


async def test_a_rewrite_that_cannot_be_published_names_the_object_and_leaves_it_as_it_was(tmp_path, monkeypatch):
    storage = VideoStorage(str(tmp_path))
    await storage.write_bytes("ledger/p/j.jsonl", b"old\n")

    def refuse(source, target, **kwargs):
        raise PermissionError(13, "Permission denied", target)

    monkeypatch.setattr(storage.fs, "mv", refuse)
    with pytest.raises(StorageError, match=r"could not write .*ledger/p/j\.jsonl: .*Permission denied"):
        await storage.rewrite("ledger/p/j.jsonl", lambda current: b"new\n")
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["j.jsonl"]
    assert (tmp_path / "ledger" / "p" / "j.jsonl").read_bytes() == b"old\n"


class JsonErrorProvider(LocalProvider):
    """A provider that answers the download with a JSON error body: the classic bad .mp4."""

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def stream_video(self, job):
        async def chunks():
            yield json.dumps({"error": {"message": "expired"}}).encode()

        yield chunks()


async def test_json_body_is_never_stored_as_a_video(tmp_path):
    plan = load_catalog().plan("local", VideoRequest(prompt="a fox", duration=1))
    job = VideoJob(
        provider="local", job_id="local_x", model="title-card", status=JobStatus.SUCCEEDED, raw_status="succeeded"
    )
    with pytest.raises(VerificationFailed, match="not a decodable video"):
        await store_video(JsonErrorProvider(jobs_dir=tmp_path / "jobs"), plan, job, VideoStorage(str(tmp_path / "v")))
    assert [p for p in (tmp_path / "v").rglob("*") if p.is_file()] == []


async def test_wrong_video_is_refused(tmp_path):
    provider = LocalProvider(queue_delay_seconds=0, jobs_dir=tmp_path / "jobs")
    rendered = await provider.submit(load_catalog().plan("local", VideoRequest(prompt="a fox", duration=2)))
    # Ask for 4 s 9:16 but the provider hands back its 2 s 16:9 job.
    plan = load_catalog().plan("local", VideoRequest(prompt="a fox", duration=4, aspect_ratio="9:16"))
    with pytest.raises(VerificationFailed, match="duration 2.00 s, expected 4 s"):  # the size alone would be kept
        await store_video(provider, plan, rendered, VideoStorage(str(tmp_path / "v")))
    assert [p for p in (tmp_path / "v").rglob("*") if p.is_file()] == []


async def test_sidecar_describes_the_video(tmp_path):
    provider = LocalProvider(queue_delay_seconds=0, jobs_dir=tmp_path / "jobs")
    plan = load_catalog().plan("local", VideoRequest(prompt="a red fox", duration=1))
    job = await provider.submit(plan)
    storage = VideoStorage(str(tmp_path / "v"))
    result = await store_video(provider, plan, job, storage, timings={"wait_seconds": 0.5})
    sidecar = json.loads(open(result.sidecar_uri).read())
    assert sidecar["request"]["prompt"] == "a red fox"
    assert sidecar["request"]["model"] == "title-card"
    assert (sidecar["provider"], sidecar["job_id"]) == ("local", job.job_id)
    assert sidecar["sha256"] == hashlib.sha256(open(result.video_uri, "rb").read()).hexdigest()
    assert sidecar["size"] == result.bytes
    assert sidecar["video"]["duration_seconds"] == 1.0
    assert sidecar["timings"]["wait_seconds"] == 0.5 and "download_seconds" in sidecar["timings"]
    assert result.sidecar_uri.endswith(".json") and result.video_uri.endswith(".mp4")
