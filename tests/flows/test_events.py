"""videogen.video.completed / videogen.video.failed events, read back from the Prefect server, and the automation."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from pathlib import Path

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.schemas.events import Event

from prefect_videogen.blocks import (
    APIFrameCredentials,
    LocalRenderer,
    LocalVideoStorage,
)
from prefect_videogen.errors import ContentRejected
from prefect_videogen.flows import generate_video
from prefect_videogen.models import VideoRequest
from prefect_videogen.testing.apiframe_emulator import (
    EMULATOR_API_KEY,
    APIFrameEmulator,
)
from prefect_videogen.testing.server import EmulatorServer, Fault

REPO_ROOT = Path(__file__).resolve().parents[2]


async def read_event(name: str, resource_id: str, *, timeout: float = 20.0) -> Event:
    """The one ``name`` event of ``resource_id``, once the server has persisted it.

    Events travel over a websocket and are written by the server's persister in batches, so poll.
    The client's default page size (100) is above the server's maximum (50) in Prefect 3.8: pass one.
    """
    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while True:
            # A fresh filter each time: its default window ends at its creation.
            event_filter = EventFilter(
                event=EventNameFilter(name=[name]), resource=EventResourceFilter(id=[resource_id])
            )
            page = await client.read_events(filter=event_filter, limit=10)
            if page.events or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert len(page.events) == 1, f"{name} for {resource_id}: {len(page.events)} events"
    return page.events[0]


def related_roles(event: Event) -> dict[str, str]:
    return {r.role: r.id for r in event.related}


async def test_completed_event_on_the_local_renderer(prefect_server, tmp_path):
    request = VideoRequest(prompt=f"a fox at dawn ({tmp_path.name})", duration=1, aspect_ratio="9:16")
    state = await generate_video(
        request,
        provider=LocalRenderer(queue_delay_seconds=0, jobs_dir=str(tmp_path / "jobs")),
        storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
        return_state=True,
    )
    result = await state.aresult()
    event = await read_event("videogen.video.completed", f"videogen.job.local.{result.job_id}")
    assert event.resource["videogen.provider"] == "local"
    assert event.resource["videogen.model"] == result.model
    assert event.payload["uri"] == result.video_uri and Path(event.payload["uri"]).is_file()
    assert event.payload["sidecar_uri"] == result.sidecar_uri
    assert event.payload["duration_seconds"] == result.duration_seconds == 1.0
    assert event.payload["resolution"] == "720x1280" and event.payload["sha256"] == result.sha256
    assert event.payload["cost_usd"] == 0.0
    # Prefect links the event to the flow run that emitted it: automations can act on that run.
    assert related_roles(event)["flow-run"] == f"prefect.flow-run.{state.state_details.flow_run_id}"


@pytest.fixture(scope="module")
def apiframe():
    with EmulatorServer(APIFrameEmulator(latency_seconds=0.05)) as running:
        yield running


async def test_failed_event_on_a_content_policy_rejection(prefect_server, apiframe, tmp_path):
    apiframe.emulator.reset()
    apiframe.emulator.faults.add("create", Fault(reject="output"))
    block = APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=apiframe.base_url, poll_interval_seconds=0.01)
    with pytest.raises(ContentRejected) as caught:
        await generate_video(
            VideoRequest(prompt=f"a fox ({tmp_path.name})", duration=4),
            provider=block,
            storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
        )
    job_id = caught.value.job_id
    event = await read_event("videogen.video.failed", f"videogen.job.apiframe.{job_id}")
    assert event.resource["videogen.provider"] == "apiframe" and event.resource["videogen.model"] == "sora-2"
    assert event.payload["rejected"] is True
    assert "content policy" in event.payload["error"]
    # Rejected at the output stage: APIFrame still bills it (4 credits), and the event says so.
    assert event.payload["charge"] == "failed_but_billed" and event.payload["cost_usd"] > 0
    assert list(apiframe.emulator.charges.values()) == [4]
    assert "uri" not in event.payload
    assert not list((tmp_path / "videos").rglob("*.mp4"))


def load_example():
    spec = importlib.util.spec_from_file_location(
        "failure_automation", REPO_ROOT / "examples" / "failure_automation.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_readme_automation_is_accepted_by_the_server(prefect_server, tmp_path):
    example = load_example()
    block = CustomWebhookNotificationBlock(name="videogen-alerts", url="http://127.0.0.1:9/hook")
    block_id = await block.save(f"videogen-alerts-{tmp_path.name.lower().replace('_', '-')}")
    automation = await example.failed_video_automation(block_id, provider="apiframe").acreate()
    try:
        async with get_client() as client:
            stored = await client.read_automation(automation.id)
        assert stored.trigger.expect == {"videogen.video.failed"}
        assert stored.trigger.match.model_dump() == {"prefect.resource.id": "videogen.job.apiframe.*"}
        assert stored.trigger.posture == "Reactive" and stored.trigger.threshold == 1
        [action] = stored.actions
        assert action.type == "send-notification" and action.block_document_id == block_id
        assert "{{ event.payload.error }}" in action.body
    finally:
        await automation.adelete()
