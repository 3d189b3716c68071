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


class SteppingClock(FakeClock):
    """Like FakeClock, and every read also moves ``now`` on by ``step`` after returning it: time passes
    between any two reads, as a real clock's does on a busy machine."""

    def __init__(self, start: float = 0.0, step: float = 0.0) -> None:
        super().__init__(start)
        self.step = step

    def __call__(self) -> float:
        now, self.now = self.now, self.now + self.step
        return now


class VirtualClock(FakeClock):
    """Like FakeClock, but waits sleeping at the same time pass that time together.

    FakeClock adds every sleep to the time, so ten waits sleeping 1 s each move it 10 s and each
    wait's reads look 9 s staler than they are. Here each sleeper wakes at its own ``now + seconds``:
    once the loop has had a real millisecond for what is not sleeping, time jumps to the earliest
    wake-up and wakes everyone due by then.

    A request to a server named in ``servers`` (``host, port``) holds time still until its answer
    has arrived: on a slow machine a loopback request takes longer than a millisecond, time moved
    while it was in flight, and the requests a test counted changed from run to run.
    """

    def __init__(self, start: float = 0.0) -> None:
        super().__init__(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._driver: asyncio.Task[None] | None = None
        self.servers: set[tuple[str, int]] = set()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), woken))
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive())
        await woken

    async def _drive(self) -> None:
        quiet = 0
        while self._sleepers:
            await asyncio.sleep(0.001)
            # Two quiet checks in a row: a request queued behind another starts a loop turn later.
            quiet = 0 if _awaiting_answer(self.servers) else quiet + 1
            if quiet < 2:
                continue
            quiet = 0
            while self._sleepers and self._sleepers[0][2].done():  # a cancelled sleep moves no time
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                break
            self.now = max(self.now, self._sleepers[0][0])
            while self._sleepers and self._sleepers[0][0] <= self.now:
                _, _, woken = heapq.heappop(self._sleepers)
                if not woken.done():
                    woken.set_result(None)


def _awaiting_answer(servers: set[tuple[str, int]]) -> bool:
    """A connection to one of ``servers`` is watched for I/O by this loop: a request is in flight.

    Reads asyncio's selector loop internals on purpose (the loop shares a session with other tests'
    sockets, so only connections to the named servers count). anyio, httpx's backend, watches a
    connection for reading only while it awaits an answer, so an idle pooled connection does not count.
    """
    loop = asyncio.get_running_loop()
    selector, transports = getattr(loop, "_selector", None), getattr(loop, "_transports", None)
    if not servers or selector is None or transports is None:
        return False
    for fd in selector.get_map():
        transport = transports.get(fd)
        peer = transport.get_extra_info("peername") if transport is not None else None
        if peer is not None and tuple(peer[:2]) in servers:
            return True
    return False
