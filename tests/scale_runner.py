"""Run one distributed ``generate_videos`` batch (``distribute=True``) in its own process, for
tests/flows/test_postgres_worker.py. Its items run on task workers the test starts.

Usage: ``python tests/scale_runner.py '<json>'`` with keys ``tag`` (makes the prompts unique to one
test), ``items``, ``provider`` and ``storage`` (names of saved APIFrameCredentials and
S3VideoStorage blocks) and ``batch_name``. Prints ``result <json counts>`` at the end. The Prefect
API and PREFECT_HOME come from the environment the test passes.
"""

from __future__ import annotations

import asyncio
import json
import sys

from prefect_videogen.batch.expansion import PromptSource
from prefect_videogen.blocks import APIFrameCredentials, S3VideoStorage
from prefect_videogen.flows import generate_videos


async def main(args: dict) -> None:
    result = await generate_videos(
        PromptSource(
            template="a kite over the dunes, shot {n}, {tag}",
            grid={"n": [str(n) for n in range(args["items"])], "tag": [args["tag"]]},
            defaults={"model": "sora-2", "duration": 4},
        ),
        provider=await APIFrameCredentials.aload(args["provider"]),
        storage=await S3VideoStorage.aload(args["storage"]),
        batch_name=args["batch_name"],
        distribute=True,
        timeout_seconds=120,
    )
    print("result " + json.dumps(result.counts), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
