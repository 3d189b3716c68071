"""``generate_videos(distribute=True)`` refuses, before any paid call, what task workers could not use.

The distributed run itself (three task workers, PostgreSQL, S3, a worker killed mid-batch) is in
tests/flows/test_postgres_worker.py.
"""

from __future__ import annotations

import pytest

from prefect_videogen.batch.expansion import PromptSource
from prefect_videogen.blocks import LocalRenderer, LocalVideoStorage
from prefect_videogen.errors import VideoGenError
from prefect_videogen.flows import generate_videos


def source(tmp_path) -> PromptSource:
    return PromptSource(template="a gull {n}", grid={"n": [tmp_path.name]}, defaults={"duration": 1})


async def test_unsaved_blocks_are_refused_before_anything_is_sent(prefect_server, tmp_path):
    jobs = tmp_path / "jobs"
    with pytest.raises(VideoGenError, match="distribute=True needs saved blocks.*LocalRenderer is not saved"):
        await generate_videos(
            source(tmp_path),
            provider=LocalRenderer(jobs_dir=str(jobs), queue_delay_seconds=0),
            storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
            distribute=True,
        )
    assert not jobs.exists() or not list(jobs.iterdir())
    assert not (tmp_path / "videos").exists() or not list((tmp_path / "videos").rglob("*.json"))


async def test_a_missing_global_limit_is_refused_before_anything_is_sent(prefect_server, tmp_path):
    jobs = tmp_path / "jobs"
    provider = LocalRenderer(jobs_dir=str(jobs), queue_delay_seconds=0)
    videos = LocalVideoStorage(base_path=str(tmp_path / "videos"))
    await provider.asave(f"dist-{tmp_path.name[-20:]}".lower().replace("_", "-"), overwrite=True)
    await videos.asave(f"dist-videos-{tmp_path.name[-20:]}".lower().replace("_", "-"), overwrite=True)
    with pytest.raises(VideoGenError, match="needs a global concurrency limit.*prefect gcl create videogen-local"):
        await generate_videos(source(tmp_path), provider=provider, storage=videos, distribute=True)
    assert not jobs.exists() or not list(jobs.iterdir())
