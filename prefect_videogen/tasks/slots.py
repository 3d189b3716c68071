"""One item's hold on a provider's concurrency bound, given back the moment its job is seen done.

A batch bounds the jobs in flight at a provider: a Prefect global concurrency limit or an
in-process semaphore (``prefect_videogen.flows.batch.provider_bound``). An item takes a slot before
its paid submit and must free it as soon as the job is done at the provider, not when the wait
task has finished its own ending (the progress artifact's last update, result persistence, the
state change) takes a fraction of a second per job (BENCHMARKS.md), during which the next job would
wait for nothing. So the flow holds a
:class:`ProviderSlot` around submit and wait, and the wait task calls :func:`release_current_slot`
when its poll loop sees a terminal status.

A Prefect global concurrency limit is held through ``prefect.concurrency.asyncio.concurrency``,
a context manager built on anyio cancel scopes and task groups: it must be entered and exited in
one asyncio task, in nesting order, which a release from inside the wait task's run would break.
So a small holder task enters it and waits for the release.
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar, Token
from types import TracebackType

from prefect.concurrency.asyncio import concurrency

logger = logging.getLogger("prefect_videogen.slots")

Bound = str | asyncio.Semaphore | None  # a global concurrency limit's name, a semaphore, or no bound

_current: ContextVar[ProviderSlot | None] = ContextVar("videogen_provider_slot", default=None)


class ProviderSlot:
    """``async with ProviderSlot(bound):`` holds one slot of ``bound`` until released or exited.

    Inside the block, :func:`release_current_slot` (called by the wait task) gives it back early;
    leaving the block gives it back if that has not happened. Releasing twice is harmless.

    Example:
        ```python
        gate = asyncio.Semaphore(10)
        async with ProviderSlot(gate):
            job = await submit_video(plan, provider, key)
            job = await wait_for_video(job, provider)  # frees the slot when the job is done
            await download_video(...)                  # no longer holds up the next job
        ```
    """

    def __init__(self, bound: Bound) -> None:
        self.bound = bound
        self.held = False
        self._released = asyncio.Event()
        self._holder: asyncio.Task[None] | None = None
        self._token: Token[ProviderSlot | None] | None = None

    async def __aenter__(self) -> ProviderSlot:
        await self.acquire()
        self._token = _current.set(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
        await self.aclose()

    async def acquire(self) -> None:
        if isinstance(self.bound, asyncio.Semaphore):
            await self.bound.acquire()
        elif isinstance(self.bound, str):
            await self._acquire_global(self.bound)
        self.held = True

    def release(self) -> None:
        """Give the slot back now (idempotent)."""
        if not self.held:
            return
        self.held = False
        if isinstance(self.bound, asyncio.Semaphore):
            self.bound.release()
        self._released.set()

    async def aclose(self) -> None:
        """Release, and wait until a global limit's slot is given back to the server."""
        self.release()
        if self._holder is not None:
            try:
                await self._holder
            except Exception as exc:  # the job is done; the limit's lease expires on its own
                logger.warning("could not release a slot of concurrency limit %r: %s", self.bound, exc)

    async def _acquire_global(self, name: str) -> None:
        acquired = asyncio.Event()

        async def hold() -> None:
            async with concurrency(name, occupy=1):
                acquired.set()
                await self._released.wait()

        self._holder = asyncio.create_task(hold(), name=f"videogen slot {name}")
        waiting = asyncio.ensure_future(acquired.wait())
        try:
            await asyncio.wait({waiting, self._holder}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled while queued for a slot: stop queueing
            self._holder.cancel()
            raise
        finally:
            waiting.cancel()
        if not acquired.is_set():
            holder, self._holder = self._holder, None
            holder.result()  # raises why the slot could not be taken
            raise RuntimeError(f"concurrency limit {name!r}: the slot holder ended without a slot")


def release_current_slot() -> None:
    """Free the slot of the :class:`ProviderSlot` this code runs under, if any (the wait task, at a terminal status)."""
    slot = _current.get()
    if slot is not None:
        slot.release()
