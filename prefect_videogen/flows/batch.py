"""The ``generate_videos`` flow: expand prompts, validate all, then generate each within bounds.

Every item is validated before the first paid call (one bad row fails the batch up front, naming
the row). A manifest in the storage records each item's status, cost, job id and keys; a rerun of
the same batch skips what is done (its "stored" step shows as Cached: no provider call). Items run
concurrently under a per-provider bound: a Prefect global concurrency limit when one named
``videogen-PROVIDER`` (or ``concurrency_limit``) exists, else ``max_concurrency`` in process.
One item failing does not stop the others.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.states import Completed, State
from pydantic import BaseModel, Field

from prefect_videogen.batch.collector import collector_for_batch
from prefect_videogen.batch.expansion import BatchItem, PromptSource, expand
from prefect_videogen.batch.manifest import ManifestItem, ManifestStore
from prefect_videogen.blocks import (
    LocalRenderer,
    LocalVideoStorage,
    ProviderBlocks,
    StorageBlocks,
)
from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.blocks.chat import ChatCompletionsCredentials
from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import (
    BudgetExceeded,
    InvalidBatch,
    VideoGenError,
)
from prefect_videogen.flows.distributed import ItemReport, block_ref, dispatch, produce_item
from prefect_videogen.flows.params import require_saved_blocks
from prefect_videogen.flows.steps import (
    RunSettings,
    approve_if_needed,
    publish_cost_table,
    tag_flow_run,
)
from prefect_videogen.spend.budget import Budget
from prefect_videogen.spend.costs import Cost, estimate_cost
from prefect_videogen.spend.ledger import Ledger
from prefect_videogen.storage.base import VideoStorage
from prefect_videogen.tasks.artifacts import ProgressArtifact
from prefect_videogen.tasks.rewrite import rewrite_prompt
from prefect_videogen.tasks.slots import Bound

#: Seconds between updates of a batch's progress artifact, however many items end meanwhile.
PROGRESS_INTERVAL = 2.0
#: Largest batch whose items get artifacts of their own by default (each job's progress bar, each
#: video's link and thumbnail): beyond it they would bury the batch's own table in the Artifacts page
#: and cost the server three calls per video (BENCHMARKS.md, "Scale").
ITEM_ARTIFACTS_UP_TO = 100

DEFAULT_REWRITE_INSTRUCTION = (
    "Rewrite the user's video prompt into one vivid, concrete paragraph for a text-to-video model: "
    "subject, action, setting, camera, light. Keep every fact of the original. Answer with the prompt only."
)


class BatchItemResult(BaseModel):
    item_id: str
    row: int
    original_prompt: str
    prompt: str
    status: str
    job_id: str | None = None
    video_uri: str | None = None
    sidecar_uri: str | None = None
    estimated_usd: float | None = None
    cost_usd: float | None = None
    error: str | None = None


class BatchResult(BaseModel):
    """What a batch run did, item by item."""

    batch_id: str
    preview: bool
    manifest_uri: str | None = None
    items: list[BatchItemResult]
    total_estimated_usd: float
    total_cost_usd: float
    counts: dict[str, int] = Field(default_factory=dict)


@task(task_run_name="expand prompts", cache_policy=NO_CACHE)
def expand_prompts(prompts: PromptSource, provider: str) -> list[BatchItem]:
    """Fill the template over the grid and rows and check every item (a task, so it shows in the UI)."""
    return expand(prompts, provider)


@task(task_run_name="stored {item_id}", cache_policy=NO_CACHE)
async def answer_stored(item_id: str, entry: ManifestItem) -> State[ManifestItem]:
    """The step that answers an item stored by an earlier run: no provider call, shown as Cached
    in the UI because its answer is that run's record (the manifest), not new work."""
    return Completed(name="Cached", data=entry)


def default_batch_id(provider: str, account_id: str, items: list[BatchItem]) -> str:
    digest = hashlib.sha256("\n".join([provider, account_id, *sorted(i.item_id for i in items)]).encode())
    return f"batch-{digest.hexdigest()[:12]}"


async def provider_bound(provider: str, limit_name: str | None, max_concurrency: int) -> tuple[str, Bound]:
    """A Prefect global concurrency limit when one exists, else an in-process semaphore."""
    name = limit_name or f"videogen-{provider}"
    async with get_client() as client:
        try:
            await client.read_global_concurrency_limit_by_name(name)
            return f"global concurrency limit {name!r}", name
        except ObjectNotFound:
            if limit_name:
                raise VideoGenError(
                    f"concurrency_limit={limit_name!r} does not exist; create it with "
                    f"`prefect gcl create {limit_name} --limit N` or leave it empty"
                ) from None
    return f"{max_concurrency} at once (in process)", asyncio.Semaphore(max_concurrency)


async def rewrite_items(
    items: list[BatchItem], provider: str, credentials: ChatCompletionsCredentials, instruction: str, bound: int
) -> list[BatchItem]:
    """Rewrite every item's prompt (cached: the same input is never paid twice) and re-check it."""
    gate = asyncio.Semaphore(bound)

    async def one(item: BatchItem) -> BatchItem:
        async with gate:
            rewritten = await rewrite_prompt(item.request.prompt, instruction, credentials)
        request = item.request.model_copy(update={"prompt": rewritten.rewritten})
        return item.model_copy(update={"request": request})

    rewritten = await asyncio.gather(*(one(item) for item in items))
    catalog, problems = load_catalog(), []
    for index, item in enumerate(rewritten):
        try:
            rewritten[index] = item.model_copy(update={"plan": catalog.plan(provider, item.request)})
        except VideoGenError as exc:
            problems.append(f"row {item.row} ({item.item_id}) after rewrite: {exc}")
    if problems:
        raise InvalidBatch(problems)
    return list(rewritten)


def _stored_earlier(item: BatchItem, entry: ManifestItem, estimated: Cost, storage: VideoStorage) -> BatchItemResult:
    return BatchItemResult(
        **_base(item, estimated),
        status="stored",
        job_id=entry.job_id,
        video_uri=storage.uri(entry.video_key or ""),
        sidecar_uri=storage.uri(entry.sidecar_key or ""),
        cost_usd=entry.cost_usd,
    )


def _base(item: BatchItem, estimated: Cost) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "row": item.row,
        "original_prompt": item.original_prompt,
        "prompt": item.request.prompt,
        "estimated_usd": estimated.usd,
    }


class _Books:
    """Where a batch records how its items ended: the manifest, the run's ledger entries and one
    progress artifact updated at most every :data:`PROGRESS_INTERVAL` seconds. One place for all
    items, local or distributed: no task run per item for bookkeeping (BENCHMARKS.md, issue 20)."""

    def __init__(self, manifest: ManifestStore, run: RunSettings, bar: ProgressArtifact | None, total: int) -> None:
        self.manifest, self.run, self.bar, self.total, self.done = manifest, run, bar, total, 0

    async def record(self, item: BatchItem, estimated: Cost, report: ItemReport) -> BatchItemResult:
        if report.entry is not None:
            self.run.entries.append(report.entry)
        await self.manifest.update(item.item_id, **report.manifest_changes())
        if report.status != "stored":
            get_run_logger().warning("item %s (row %s) %s: %s", item.item_id, item.row, report.status, report.error)
        self.tick()
        return BatchItemResult(
            **_base(item, estimated),
            status=report.status,
            job_id=report.job_id,
            video_uri=report.video_uri,
            sidecar_uri=report.sidecar_uri,
            cost_usd=report.cost_usd,
            error=report.error,
        )

    def tick(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.show(round(100 * self.done / max(self.total, 1), 1))


async def _answer_stored(
    item: BatchItem, estimated: Cost, manifest: ManifestStore, run: RunSettings
) -> BatchItemResult | None:
    """An item stored by an earlier run (its video still there): answered by its "stored" step (shown
    as Cached), never through the paid submit task, which would pay again if its cache had been
    cleared. None when the item still has to be made."""
    entry = manifest.manifest.items[item.item_id]  # type: ignore[union-attr]
    if entry.status == "stored" and not run.refresh and entry.video_key and await run.storage.exists(entry.video_key):
        await answer_stored(item.item_id, entry)
        return _stored_earlier(item, entry, estimated, run.storage)
    return None


async def _run_item(
    item: BatchItem,
    estimated: Cost,
    provider: VideoProviderBlock,
    run: RunSettings,
    books: _Books,
    bound: Bound,
) -> BatchItemResult:
    if (earlier := await _answer_stored(item, estimated, books.manifest, run)) is not None:
        books.tick()
        return earlier
    report = await produce_item(
        item,
        estimated,
        provider,
        run,
        batch_id=books.manifest.manifest.batch_id,
        bound=bound,  # type: ignore[union-attr]
    )
    return await books.record(item, estimated, report)


async def _run_distributed(
    items: list[BatchItem],
    estimates: dict[str, Cost],
    provider: VideoProviderBlock,
    storage: Any,
    run: RunSettings,
    books: _Books,
    limit_name: str,
) -> list[BatchItemResult]:
    """Hand the items not yet stored to task workers (``flows/distributed.py``), each reserved in the
    run's budget first (a worker's own budget is unbounded), and record their reports here."""
    provider_ref, storage_ref = block_ref(provider), block_ref(storage)
    results: dict[str, BatchItemResult] = {}
    todo, reservations = [], {}
    for item in items:
        if (earlier := await _answer_stored(item, estimates[item.item_id], books.manifest, run)) is not None:
            results[item.item_id] = earlier
            books.tick()
            continue
        try:
            reservations[item.item_id] = run.budget.reserve(estimates[item.item_id].usd or 0.0)
        except BudgetExceeded as exc:
            report = ItemReport(item_id=item.item_id, status="refused", error=str(exc))
            results[item.item_id] = await books.record(item, estimates[item.item_id], report)
            continue
        todo.append(item)
    by_id = {item.item_id: item for item in todo}
    async for report in dispatch(
        todo,
        estimates,
        provider_ref=provider_ref,
        storage_ref=storage_ref,
        batch_id=books.manifest.manifest.batch_id,  # type: ignore[union-attr]
        limit_name=limit_name,
        timeout_seconds=run.timeout_seconds,
        refresh=run.refresh,
        item_artifacts=run.item_artifacts,
    ):
        if report.cost_usd is not None:
            reservations[report.item_id].settle(report.cost_usd)
        elif not report.job_id:  # no job, no charge; a job of unknown charge keeps its estimate reserved
            reservations[report.item_id].release()
        item = by_id[report.item_id]
        results[item.item_id] = await books.record(item, estimates[item.item_id], report)
    return [results[item.item_id] for item in items]


def summary_text(counts: dict[str, int]) -> str:
    """``{"stored": 2, "rejected": 1}`` as a person reads it: "2 stored, 1 rejected"."""
    order = ["stored", "preview", "rejected", "refused", "failed"]
    keys = sorted(counts, key=lambda k: (order.index(k) if k in order else len(order), k))
    return ", ".join(f"{counts[k]} {k}" for k in keys) or "no items"


def batch_final_state(result: BatchResult) -> State:
    """The batch run's final state: Completed, named "Partially failed" when any item was not stored.

    Not Failed: the stored items are paid for and their results (and the manifest) must reach the
    caller and downstream runs; a Failed run would raise in the caller and read as "nothing done".
    The name and the message (the counts) show in the runs list; a rerun redoes only what failed.
    """
    message = f"{summary_text(result.counts)}; charged ${result.total_cost_usd:.2f}"
    if result.preview or set(result.counts) <= {"stored"}:
        return Completed(data=result, message=message)
    name = "Partially failed" if result.counts.get("stored") else "All items failed"
    return Completed(data=result, name=name, message=message)


def batch_run_name() -> str:
    """``generate-videos <batch name>``, else the first prompt and the item count: runs look different."""
    from prefect.runtime import flow_run as current

    return run_name_for(current.parameters or {})


def run_name_for(params: dict[str, Any]) -> str:
    """The run name of a batch with these parameters (see :func:`batch_run_name`)."""
    if params.get("batch_name"):
        return f"generate-videos {params['batch_name']}"
    prompts = params.get("prompts")
    if isinstance(prompts, BaseModel):
        prompts = prompts.model_dump()
    if not isinstance(prompts, dict):
        return "generate-videos"
    grid, rows = prompts.get("grid") or {}, prompts.get("rows") or []
    first = {k: v[0] for k, v in grid.items() if v} | (rows[0] if rows else {})
    try:
        prompt = str(prompts.get("template", "")).format(**first)
    except (KeyError, IndexError, ValueError):
        prompt = str(prompts.get("template", ""))
    count = 1
    for values in grid.values():
        count *= len(values)
    count *= max(len(rows), 1)
    if prompts.get("rows_file"):
        return f"generate-videos {prompt[:60]} (rows of {prompts['rows_file']})"
    return f"generate-videos {prompt[:60]} ({count} item{'s' if count != 1 else ''})"


async def _summary_artifact(result: BatchResult) -> None:
    rows = [
        {
            "item": i.item_id,
            "row": i.row,
            "status": i.status,
            "prompt": i.prompt[:80],
            "estimated_usd": i.estimated_usd,
            "cost_usd": i.cost_usd,
            "video or error": i.video_uri or i.error or "",
        }
        for i in result.items
    ]
    title = "Preview" if result.preview else "Batch"
    await acreate_table_artifact(
        table=rows,
        key="videogen-batch",
        description=f"{title} {result.batch_id}: {summary_text(result.counts)}; "
        f"estimated ${result.total_estimated_usd:.2f}, charged ${result.total_cost_usd:.2f}",
    )


@flow(name="generate-videos", flow_run_name=batch_run_name)
async def generate_videos(
    prompts: PromptSource,
    provider: ProviderBlocks | None = None,
    storage: StorageBlocks | None = None,
    batch_name: str | None = None,
    max_concurrency: Annotated[int, Field(ge=1, le=200)] = 4,
    concurrency_limit: str | None = None,
    max_cost_usd: Annotated[float, Field(ge=0)] | None = None,
    approval_threshold_usd: Annotated[float, Field(ge=0)] | None = None,
    rewrite: ChatCompletionsCredentials | None = None,
    rewrite_instruction: str = DEFAULT_REWRITE_INSTRUCTION,
    preview: bool = False,
    refresh: bool = False,
    timeout_seconds: Annotated[float, Field(gt=0)] = 1800.0,
    distribute: bool = False,
    item_artifacts: bool | None = None,
) -> BatchResult:
    """Generate a batch of videos from a prompt template.

    Bounds are ``Annotated`` (not ``x: int = Field(ge=...)``): Prefect 3.8 drops constraints given as a
    parameter default, and ``max_concurrency=0`` would then wait forever.

    Args:
        prompts: the template and its variables: a grid, rows, or a CSV/JSONL file of rows.
        provider: a provider credentials block; the embedded local renderer when empty.
        storage: where videos, sidecars, the manifest and the ledger go; ./videos when empty.
        batch_name: names the manifest; empty: derived from the provider, account and items.
        max_concurrency: jobs in flight at once when no global concurrency limit exists.
        concurrency_limit: a Prefect global concurrency limit to use; default videogen-PROVIDER (e.g. videogen-openai) if it exists.
        max_cost_usd: the batch's budget in USD; submits beyond it are refused and nothing is sent.
        approval_threshold_usd: pause for approval in the UI when the estimate exceeds this.
        rewrite: rewrite every prompt with this chat model first (cached); empty: no rewrite.
        rewrite_instruction: the rewrite's system prompt.
        preview: expand, validate and estimate only; submit (and rewrite) nothing.
        refresh: generate again even items done before.
        timeout_seconds: how long to wait for each job.
        distribute: hand the items to task workers (``python -m prefect_videogen.flows.distributed``
            on each machine) instead of running them in this process; needs saved blocks and the
            provider's global concurrency limit (README, "Scaling out").
        item_artifacts: give each job a progress artifact and each video its link and thumbnail
            artifacts; empty: only for batches of up to 100 items (a larger one shows its table and bar).

    Example:
        ```python
        from prefect_videogen.batch.expansion import PromptSource
        from prefect_videogen.flows import generate_videos

        result = await generate_videos(PromptSource(
            template="{subject} at {time_of_day}",
            grid={"subject": ["a fox", "an owl"], "time_of_day": ["dawn", "dusk"]},
        ))
        ```
    """
    require_saved_blocks(
        provider=(provider, ProviderBlocks),
        storage=(storage, StorageBlocks),
        rewrite=(rewrite, ChatCompletionsCredentials),
    )
    logger = get_run_logger()
    provider = provider or LocalRenderer()
    if distribute and not preview:  # workers load the blocks by name: refuse unsaved ones before anything
        block_ref(provider)
        block_ref(storage or LocalVideoStorage())
    await tag_flow_run(f"videogen:{provider.provider_name}")  # first: a batch refused below is tagged too
    video_storage = (storage or LocalVideoStorage()).get_storage()
    items = expand_prompts(prompts, provider.provider_name)
    await video_storage.check_writable()
    if rewrite is not None and not preview:
        items = await rewrite_items(items, provider.provider_name, rewrite, rewrite_instruction, max_concurrency)
    plans = {item.item_id: item.plan for item in items if item.plan is not None}
    estimates = {item.item_id: estimate_cost(plans[item.item_id]) for item in items}
    total_estimated = round(sum(c.usd or 0.0 for c in estimates.values()), 6)
    batch_id = batch_name or default_batch_id(provider.provider_name, provider.account_id(), items)
    logger.info("%s: %d items on %s, estimated $%.2f", batch_id, len(items), provider.provider_name, total_estimated)

    if preview:
        result = BatchResult(
            batch_id=batch_id,
            preview=True,
            total_estimated_usd=total_estimated,
            total_cost_usd=0.0,
            items=[
                BatchItemResult(
                    item_id=i.item_id,
                    row=i.row,
                    original_prompt=i.original_prompt,
                    prompt=i.request.prompt,
                    status="preview",
                    estimated_usd=estimates[i.item_id].usd,
                )
                for i in items
            ],
            counts={"preview": len(items)},
        )
        await _summary_artifact(result)
        return batch_final_state(result)  # type: ignore[return-value]  # the caller gets the BatchResult

    await approve_if_needed(
        Cost(kind="estimated", amount=total_estimated, unit="usd", usd=total_estimated), approval_threshold_usd
    )
    manifest = ManifestStore(video_storage, batch_id)
    loaded = await manifest.load(batch_id=batch_id, provider=provider.provider_name)
    for item in items:
        if item.item_id not in loaded.items:
            loaded.items[item.item_id] = ManifestItem(
                item_id=item.item_id, row=item.row, original_prompt=item.original_prompt, prompt=item.request.prompt
            )
    await manifest.save()
    bound_text, bound = await provider_bound(provider.provider_name, concurrency_limit, max_concurrency)
    if distribute and not isinstance(bound, str):
        raise VideoGenError(
            f"distribute=True needs a global concurrency limit shared by every worker; create it with "
            f"`prefect gcl create videogen-{provider.provider_name} --limit N` (or name one in concurrency_limit)"
        )
    logger.info("concurrency: %s%s", bound_text, "; items run on task workers" if distribute else "")

    run = RunSettings(
        storage=video_storage,
        budget=Budget(max_cost_usd),
        ledger=Ledger(video_storage),
        timeout_seconds=timeout_seconds,
        refresh=refresh,
        batched=True,
        item_artifacts=len(items) <= ITEM_ARTIFACTS_UP_TO if item_artifacts is None else item_artifacts,
    )
    bar = await ProgressArtifact.create(
        f"Batch {batch_id}: {len(items)} items", key="videogen-batch-progress", min_interval=PROGRESS_INTERVAL
    )
    books = _Books(manifest, run, bar, len(items))
    try:
        with collector_for_batch():
            if distribute:
                outcomes = await _run_distributed(
                    items,
                    estimates,
                    provider,
                    storage,
                    run,
                    books,
                    bound,  # type: ignore[arg-type]
                )
            else:
                outcomes = await asyncio.gather(
                    *(_run_item(item, estimates[item.item_id], provider, run, books, bound) for item in items)
                )
    finally:
        await bar.aclose()
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    result = BatchResult(
        batch_id=batch_id,
        preview=False,
        manifest_uri=manifest.uri,
        items=list(outcomes),
        total_estimated_usd=total_estimated,
        total_cost_usd=round(sum(o.cost_usd or 0.0 for o in outcomes), 6),
        counts=counts,
    )
    await _summary_artifact(result)
    if run.entries:
        await publish_cost_table(run.entries)
    logger.info("%s done: %s; charged $%.2f", batch_id, summary_text(counts), result.total_cost_usd)
    return batch_final_state(result)  # type: ignore[return-value]  # the caller gets the BatchResult
