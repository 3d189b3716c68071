"""The wait's progress artifact is updated in the background, against the session's real Prefect server."""

from __future__ import annotations

import logging
import uuid

from prefect import flow, get_client, task
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

from prefect_videogen.tasks.artifacts import ProgressArtifact


async def test_the_last_value_shown_is_sent_and_show_never_waits(prefect_server):
    @task
    async def show_progress() -> uuid.UUID:
        bar = await ProgressArtifact.create("apiframe sora-2 job test-1")
        for value in (10.0, 35.5, 80.0, 100.0):
            bar.show(value)  # synchronous: a poll loop goes on at once
        await bar.aclose()
        return bar.artifact_id

    @flow
    async def run() -> uuid.UUID:
        return await show_progress()

    artifact_id = await run()
    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[artifact_id])))
    assert [(a.type, a.data, a.description) for a in found] == [("progress", 100.0, "apiframe sora-2 job test-1")]


async def test_a_failed_update_is_logged_not_raised(prefect_server, caplog):
    missing = uuid.uuid4()
    bar = ProgressArtifact(missing)
    with caplog.at_level(logging.WARNING, logger="prefect_videogen.artifacts"):
        bar.show(50.0)
        await bar.aclose()
    assert f"could not update progress artifact {missing}" in caplog.text
