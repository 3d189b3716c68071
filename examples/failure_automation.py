"""An automation that reacts to ``videogen.video.failed``: a notification, and optionally a deployment run.

Every provider job that ends failed (including content-policy rejections) emits
``videogen.video.failed`` on the resource ``videogen.job.<provider>.<job_id>``, with a payload of
``error``, ``code``, ``rejected``, ``charge`` and ``cost_usd``. This builds an automation that fires
on each one:

    python examples/failure_automation.py BLOCK_TYPE/BLOCK_NAME [DEPLOYMENT_NAME]

where BLOCK_TYPE/BLOCK_NAME is a saved notification block (``slack-webhook/videogen-alerts``,
``custom-webhook/...``) and
DEPLOYMENT_NAME (``flow-name/deployment-name``) a deployment to run with the failed job's resource id.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from uuid import UUID

from prefect.automations import (
    Automation,
    EventTrigger,
    Posture,
    RunDeployment,
    SendNotification,
)
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client

FAILED_EVENT = "videogen.video.failed"

NOTIFICATION_BODY = (
    "Video job {{ event.resource.id }} ({{ event.resource['videogen.provider'] }}/"
    "{{ event.resource['videogen.model'] }}) failed: {{ event.payload.error }}\n"
    "rejected by content policy: {{ event.payload.rejected }}; charge: {{ event.payload.charge }} "
    "(${{ event.payload.cost_usd }})"
)


def failed_video_automation(
    notification_block_id: UUID,
    *,
    deployment_id: UUID | None = None,
    provider: str = "*",
    name: str = "videogen: a video failed",
) -> Automation:
    """An automation (not yet created) that notifies on every failed video job.

    Args:
        notification_block_id: id of a saved notification block.
        deployment_id: a deployment to run as well; it gets ``{"job": <resource id>}`` as parameters.
        provider: only this provider's jobs (``apiframe``...); ``*`` for all.
        name: the automation's name in the UI.

    Example:
        ```python
        block = await SlackWebhook.aload("videogen-alerts")
        automation = await failed_video_automation(block._block_document_id).acreate()
        ```
    """
    actions: list = [
        SendNotification(block_document_id=notification_block_id, subject="Video failed", body=NOTIFICATION_BODY)
    ]
    if deployment_id is not None:
        actions.append(
            RunDeployment(source="selected", deployment_id=deployment_id, parameters={"job": "{{ event.resource.id }}"})
        )
    return Automation(
        name=name,
        description=f"Fires on each {FAILED_EVENT} event of {provider} jobs.",
        trigger=EventTrigger(
            expect={FAILED_EVENT},
            match={"prefect.resource.id": "videogen.job.*" if provider == "*" else f"videogen.job.{provider}.*"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=actions,
    )


async def main(block_name: str, deployment_name: str | None = None) -> Automation:
    """Create the automation on the current Prefect API."""
    block = await Block.aload(block_name)
    deployment_id = None
    if deployment_name:
        async with get_client() as client:
            deployment_id = (await client.read_deployment_by_name(deployment_name)).id
    automation = failed_video_automation(block._block_document_id, deployment_id=deployment_id)
    created = await automation.acreate()
    print(f"created automation {created.name!r} ({created.id})")
    return created


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    asyncio.run(main(*sys.argv[1:]))
