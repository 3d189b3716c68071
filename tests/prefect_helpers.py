"""Helpers for tests that read what a flow run left on the Prefect API."""

from __future__ import annotations

import asyncio

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

_FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


async def task_states(flow_run_id, expected: int = 4) -> dict[str, str]:
    """Task run name -> state name of one flow run.

    Task runs reach the API asynchronously, so wait (briefly) until ``expected`` of them are there.
    """
    states: dict[str, str] = {}
    async with get_client() as client:
        for _ in range(100):
            runs = await client.read_task_runs()
            mine = [run for run in runs if run.flow_run_id == flow_run_id]
            states = {run.name: run.state_name for run in mine}
            if len(states) >= expected and all(run.state_type in _FINAL for run in mine):
                return states
            await asyncio.sleep(0.1)
    return states
