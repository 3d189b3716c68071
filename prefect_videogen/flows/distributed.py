"""One batch spread over many machines: its items run as Prefect background tasks on task workers.

A batch run with ``distribute=True`` hands each item to :func:`run_batch_item`, a task that task
workers serve (``prefect task serve`` / :func:`serve_items`, one per machine, as many as you like)
against the same Prefect server. Why background tasks and not child flow runs of a deployment on a
work pool: an item is seconds of bookkeeping around minutes of waiting, so it wants to be a cheap
unit of work that a long-lived process picks up from the server's task queue (no process, pull step
or infrastructure started per item); workers scale by starting more of them, and each keeps its
provider clients and their shared status sweeps (``providers/watch.py``) across items.

What holds across workers:

- **One per-provider concurrency limit**: every worker takes its item's slot from the same Prefect
  global concurrency limit (``videogen-PROVIDER``), held from submit until the job is seen done.
  Its slots are leased: a worker that dies gives its slots back when their lease runs out.
- **Never paying twice**: the submit is claimed in the batch's storage, which every worker shares
  (``spend/claims.py``), so two workers, or a rerun after a worker died, adopt the claimed job.
- **Money and records in one place**: a worker books each job's charge in the ledger as soon as it
  is known (so no charge is lost with a dying parent); the batch run writes every item's manifest
  record, its progress and its tables from the reports the workers return.
- **Resumable**: an item whose worker died stays unfinished in the manifest; the batch's rerun hands
  it out again and its new worker finds the claim (and the job id) of the first.

Blocks travel by name (workers load them; nothing secret is written into task parameters), so a
distributed batch needs saved provider and storage blocks.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from prefect import task
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectDistributedFuture
from pydantic import BaseModel

from prefect_videogen.batch.expansion import BatchItem
from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.errors import BudgetExceeded, ContentRejected, VideoGenError
from prefect_videogen.flows.steps import RunSettings, produce_video
from prefect_videogen.spend.budget import Budget
from prefect_videogen.spend.costs import Cost
from prefect_videogen.spend.ledger import Ledger, LedgerEntry
from prefect_videogen.tasks.slots import Bound

#: Task runs created at once when a batch hands out its items (each is one API call).
DISPATCH_CONCURRENCY = 16


class ItemReport(BaseModel):
    """How one item ended, as its worker (or the batch's own process) reports it to the batch run."""

    item_id: str
    status: str
    job_id: str | None = None
    error: str | None = None
    provider: str | None = None
    model: str | None = None
    video_uri: str | None = None
    sidecar_uri: str | None = None
    video_key: str | None = None
    sidecar_key: str | None = None
    sha256: str | None = None
    cost_usd: float | None = None
    charge_status: str | None = None
    entry: LedgerEntry | None = None

    def manifest_changes(self) -> dict[str, Any]:
        """What this report changes in the item's manifest record."""
        changes: dict[str, Any] = {
            "status": self.status,
            "job_id": self.job_id,
            "cost_usd": self.cost_usd,
            "charge_status": self.charge_status,
            "error": self.error,
        }
        if self.status == "stored":
            changes |= {
                "provider": self.provider,
                "model": self.model,
                "video_key": self.video_key,
                "sidecar_key": self.sidecar_key,
                "sha256": self.sha256,
            }
        return changes


def status_for(error: BaseException) -> str:
    if isinstance(error, BudgetExceeded):
        return "refused"
    if isinstance(error, ContentRejected):
        return "rejected"
    return "failed"


async def produce_item(
    item: BatchItem,
    estimated: Cost,
    provider: VideoProviderBlock,
    run: RunSettings,
    *,
    batch_id: str,
    bound: Bound,
) -> ItemReport:
    """Generate one batch item (submit, wait and download as task runs) and report how it ended."""
    assert item.plan is not None  # expansion planned every item
    outcome = await produce_video(
        item.plan,
        provider,
        run,
        item_id=item.item_id,
        estimated=estimated,
        bound=bound,
        metadata={
            "batch_id": batch_id,
            "item_id": item.item_id,
            "row": item.row,
            "original_prompt": item.original_prompt,
            "expanded_prompt": item.request.prompt,
            "variables": item.variables,
        },
    )
    booked = outcome.entry
    if outcome.error is not None:
        exc = outcome.error
        # The item's own ledger entry, whatever failed after the job was billed (download, verification):
        # an error type without a job id (StorageError) must not lose the job or its charge.
        job_id = getattr(exc, "job_id", None) or (booked.job_id if booked else None)
        if booked is not None and booked.job_id == job_id:
            cost, charge = booked.charged_usd, booked.charge_status.value
        else:
            cost, charge = None, ("pending" if job_id else None)  # e.g. timed out: the job may still bill
        return ItemReport(
            item_id=item.item_id,
            status=status_for(exc),
            job_id=job_id,
            error=str(exc),
            cost_usd=cost,
            charge_status=charge,
            entry=booked,
        )
    result = outcome.result
    assert result is not None and booked is not None  # a stored video always has its entry
    return ItemReport(
        item_id=item.item_id,
        status="stored",
        job_id=result.job_id,
        provider=result.provider,
        model=result.model,
        video_uri=result.video_uri,
        sidecar_uri=result.sidecar_uri,
        video_key=run.storage.key_of(result.video_uri),
        sidecar_key=run.storage.key_of(result.sidecar_uri),
        sha256=result.sha256,
        cost_usd=booked.charged_usd,
        charge_status=booked.charge_status.value,
        entry=booked,
    )


def block_ref(block: Block) -> str:
    """``block-type-slug/name`` of a saved block: what a worker on another machine loads it by."""
    name = getattr(block, "_block_document_name", None)
    if not name or getattr(block, "_is_anonymous", False):
        raise VideoGenError(
            f"distribute=True needs saved blocks (workers load them by name); {type(block).__name__} is not saved: "
            f"save it first, e.g. {type(block).__name__}(...).save('NAME')"
        )
    return f"{block.get_block_type_slug()}/{name}"


@task(task_run_name="item {item.item_id}", cache_policy=NO_CACHE, persist_result=True)
async def run_batch_item(
    item: BatchItem,
    estimated: Cost,
    provider_ref: str,
    storage_ref: str,
    batch_id: str,
    limit_name: str,
    timeout_seconds: float = 1800.0,
    refresh: bool = False,
    item_artifacts: bool = False,
) -> ItemReport:
    """One item of a distributed batch, run by a task worker: submit, wait and download under the
    provider's global concurrency limit, its charge booked in the batch's ledger.

    The batch run reserved the item's estimate in its budget before handing it out; the worker's
    own budget is unbounded. An error is reported, not raised (the batch isolates items).
    """
    provider = await Block.aload(provider_ref)
    storage = (await Block.aload(storage_ref)).get_storage()  # type: ignore[attr-defined]
    run = RunSettings(
        storage=storage,
        budget=Budget(None),
        ledger=Ledger(storage),
        timeout_seconds=timeout_seconds,
        refresh=refresh,
        batched=True,
        item_artifacts=item_artifacts,
    )
    return await produce_item(item, estimated, provider, run, batch_id=batch_id, bound=limit_name)  # type: ignore[arg-type]


async def dispatch(
    items: Sequence[BatchItem],
    estimates: dict[str, Cost],
    *,
    provider_ref: str,
    storage_ref: str,
    batch_id: str,
    limit_name: str,
    timeout_seconds: float,
    refresh: bool,
    item_artifacts: bool,
) -> AsyncIterator[ItemReport]:
    """Hand ``items`` to task workers and yield their reports as they finish (in any order)."""
    gate = asyncio.Semaphore(DISPATCH_CONCURRENCY)

    async def hand_out(item: BatchItem) -> PrefectDistributedFuture[ItemReport]:
        kwargs = dict(
            item=item,
            estimated=estimates[item.item_id],
            provider_ref=provider_ref,
            storage_ref=storage_ref,
            batch_id=batch_id,
            limit_name=limit_name,
            timeout_seconds=timeout_seconds,
            refresh=refresh,
            item_artifacts=item_artifacts,
        )
        async with gate:  # apply_async is synchronous (an API call): off the event loop
            return await asyncio.to_thread(run_batch_item.apply_async, kwargs=kwargs)

    async def finished(item: BatchItem, future: PrefectDistributedFuture[ItemReport]) -> ItemReport:
        try:
            return await future.result_async()
        except Exception as exc:  # the worker crashed the task run: report it, do not stop the batch
            return ItemReport(item_id=item.item_id, status="failed", error=f"worker failed: {exc}")

    futures = await asyncio.gather(*(hand_out(item) for item in items))
    for done in asyncio.as_completed([finished(i, f) for i, f in zip(items, futures, strict=True)]):
        yield await done


def serve_items(limit: int = 100) -> None:
    """Run a task worker for distributed batches (blocks; one per machine, or several).

    ``limit`` bounds the items this worker runs at once (each waits on the provider's global limit
    for its job's slot, so set it at least to the limit divided by the number of workers).
    """
    from prefect.task_worker import serve

    serve(run_batch_item, limit=limit)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="serve the items of distributed generate-videos batches")
    parser.add_argument("--limit", type=int, default=100, help="items this worker runs at once (default 100)")
    # The package's task, not this __main__ module's copy: results must unpickle in the batch run.
    from prefect_videogen.flows.distributed import serve_items as serve_package_items

    serve_package_items(parser.parse_args().limit)
