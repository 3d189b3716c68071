"""Run one ``generate_videos`` batch in its own process, for the crash-resume tests.

Usage: ``python tests/crash_runner.py '<json>'`` with keys

* ``provider``: ``"apiframe"``, ``"openai"``, ``"scenario"`` or ``"gemini"`` (need ``base_url``, an emulator's root), or
  ``"local"`` (needs ``jobs_dir``);
* ``storage``: directory of the LocalVideoStorage; ``tag``: makes the prompts unique to one test;
* ``items`` (default 8), ``concurrency`` (default 4), ``queue_delay_seconds`` (local, default 1.5);
* ``batch_name`` (default ``crash-resume``).

It prints one line per progress event (``event submitted <job id>``, ``event stored <job id>``),
flushed at once so the test can SIGKILL it at a known point, and ``result <json counts>`` at the end.
The Prefect API and PREFECT_HOME come from the environment the test passes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from prefect_videogen import progress
from prefect_videogen.batch.expansion import PromptSource
from prefect_videogen.blocks import (
    APIFrameCredentials,
    LocalRenderer,
    LocalVideoStorage,
    OpenAICredentials,
    ScenarioCredentials,
)
from prefect_videogen.blocks.gemini import GeminiCredentials
from prefect_videogen.flows import generate_videos
from prefect_videogen.testing import gemini_emulator
from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY

BATCH_NAME = "crash-resume"


def batch_source(tag: str, items: int) -> PromptSource:
    return PromptSource(
        template="a lighthouse in a storm, shot {n}, {tag}",
        grid={"n": [str(i) for i in range(items)], "tag": [tag]},
        defaults={
            "model": None if tag.startswith(("local", "gemini")) else "sora-2",
            "duration": 4,
            **({"resolution": "720p"} if tag.startswith("gemini") else {}),  # Veo tiers are 720p/1080p
        },
    )


def provider_block(args: dict[str, Any]) -> Any:
    if args["provider"] == "apiframe":
        return APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=args["base_url"], poll_interval_seconds=0.05)
    if args["provider"] == "openai":
        return OpenAICredentials(api_key="sk-emulator-key", base_url=args["base_url"] + "/v1")
    if args["provider"] == "scenario":
        return ScenarioCredentials(
            api_key="emu-key", api_secret="emu-secret", base_url=args["base_url"] + "/v1", poll_interval_seconds=0.05
        )
    if args["provider"] == "gemini":
        return GeminiCredentials(
            api_key=gemini_emulator.EMULATOR_API_KEY, base_url=args["base_url"] + "/v1beta", poll_interval_seconds=0.05
        )
    # 6 fps keeps the local renderer's 720p encode quick on a shared 2-core machine.
    return LocalRenderer(jobs_dir=args["jobs_dir"], queue_delay_seconds=args.get("queue_delay_seconds", 1.5), fps=6)


def show(event: progress.ProgressEvent) -> None:
    if event.kind in ("submitted", "stored"):
        print(f"event {event.kind} {event.job_id}", flush=True)


async def main(args: dict[str, Any]) -> None:
    progress.subscribe(show)
    result = await generate_videos(
        batch_source(args["tag"], args.get("items", 8)),
        provider=provider_block(args),
        storage=LocalVideoStorage(base_path=args["storage"]),
        batch_name=args.get("batch_name", BATCH_NAME),
        max_concurrency=args.get("concurrency", 4),
    )
    print("result " + json.dumps(result.counts), flush=True)
    print("items " + json.dumps([item.model_dump(mode="json") for item in result.items]), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
