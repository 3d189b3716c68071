"""Fake time for tests: nothing here really waits."""

from __future__ import annotations

import asyncio
import heapq
import itertools


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


class VirtualClock(FakeClock):
    """Like FakeClock, but waits sleeping at the same time pass that time together.

    FakeClock adds every sleep to the time, so ten waits sleeping 1 s each move it 10 s and each
    wait's reads look 9 s staler than they are. Here each sleeper wakes at its own ``now + seconds``:
    once the loop is idle (nothing runnable, no loopback request awaiting its answer) for two checks a
    real millisecond apart, time jumps to the earliest wake-up and wakes everyone due by then. A fixed
    real millisecond alone was not enough: on a slow machine a loopback request takes longer, time
    moved while it was in flight, and the requests a test counted changed from run to run.
    """

    def __init__(self, start: float = 0.0) -> None:
        super().__init__(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._driver: asyncio.Task[None] | None = None

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), woken))
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive())
        await woken

    async def _drive(self) -> None:
        idle = 0
        while self._sleepers:
            await asyncio.sleep(0.001)
            idle = idle + 1 if _loop_idle() else 0
            if idle < 2:
                continue
            idle = 0
            while self._sleepers and self._sleepers[0][2].done():  # a cancelled sleep moves no time
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                break
            self.now = max(self.now, self._sleepers[0][0])
            while self._sleepers and self._sleepers[0][0] <= self.now:
                _, _, woken = heapq.heappop(self._sleepers)
                if not woken.done():
                    woken.set_result(None)


def _loop_idle() -> bool:
    """Nothing is runnable and no socket awaits I/O but the loop's own wake-up pipe.

    Reads private attributes of asyncio's selector loop on purpose: what is in flight on a loopback
    socket is exactly what a test's virtual time must not run past. anyio (httpx's backend) watches
    a connection for reading only while it awaits an answer, so an idle pooled connection does not count.
    """
    loop = asyncio.get_running_loop()
    selector, wakeup = getattr(loop, "_selector", None), getattr(loop, "_ssock", None)
    if selector is None or wakeup is None:  # not a selector loop: fall back to the real milliseconds
        return True
    return not loop._ready and all(key.fd == wakeup.fileno() for key in selector.get_map().values())  # type: ignore[attr-defined]
