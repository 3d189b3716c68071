"""Makes the runs the browser suite looks at, against the Prefect server in PREFECT_API_URL.

Run in its own process by tests/ui/conftest.py (its own Prefect settings, its working directory
holds ./videos), and prints one JSON line of ids.
"""

from __future__ import annotations

import asyncio
import json

from prefect.deployments.runner import RunnerDeployment

from prefect_videogen.batch.expansion import PromptSource
from prefect_videogen.blocks import APIFrameCredentials, LocalRenderer
from prefect_videogen.flows import generate_video, generate_videos
from prefect_videogen.models import VideoRequest
from prefect_videogen.testing import APIFrameEmulator, EmulatorServer, Fault


async def main() -> None:
    renderer = LocalRenderer(queue_delay_seconds=0.2)
    single = await generate_video(
        VideoRequest(prompt="a red fox <running> through snow", duration=1), provider=renderer, return_state=True
    )
    prompts = PromptSource(
        template="{subject} at {time_of_day}", grid={"subject": ["an owl", "a heron"], "time_of_day": ["dusk"]}
    )
    batch = await generate_videos(prompts, provider=renderer, batch_name="ui-batch", return_state=True)
    rerun = await generate_videos(prompts, provider=renderer, batch_name="ui-batch", return_state=True)
    with EmulatorServer(APIFrameEmulator(latency_seconds=0.2)) as server:
        server.emulator.faults.add("create", Fault(reject="output"))  # the first job: rejected when done
        apiframe = APIFrameCredentials(api_key=server.emulator.api_key, base_url=server.base_url)
        partial = await generate_videos(
            PromptSource(
                template="{subject} in rain", grid={"subject": ["a crow", "a gull"]}, defaults={"duration": 4}
            ),
            provider=apiframe,
            batch_name="ui-partial",
            max_concurrency=1,
            return_state=True,
        )
    deployment_id = await RunnerDeployment.from_flow(generate_videos, name="ui-form").apply()
    print(
        json.dumps(
            {
                "single": str(single.state_details.flow_run_id),
                "batch": str(batch.state_details.flow_run_id),
                "rerun": str(rerun.state_details.flow_run_id),
                "partial": str(partial.state_details.flow_run_id),
                "deployment": str(deployment_id),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
