"""Fake time for tests: nothing here really waits."""

from __future__ import annotations

import asyncio


class SleepRecorder:
    """Stands in for ``asyncio.sleep``: records each delay, waits for nothing (yields to the loop once)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class FakeClock:
    """A monotonic clock that only moves when its ``sleep`` is awaited."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
