"""``prefect-videogen batch PROMPTS.csv|.jsonl``: a file of prompts through the ``generate_videos`` flow.

    prefect-videogen batch prompts.csv --preview
    prefect-videogen batch prompts.jsonl --template "{subject} at {time_of_day}" --max-cost-usd 5

Each row is an item; its columns are the template's variables (default template ``{prompt}``: a
``prompt`` column). A progress line per job while it runs, then the same summary as the batch
artifact in the Prefect UI: one line per item and the counts.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any, providers: tuple[str, ...]) -> None:
    batch = commands.add_parser("batch", help="generate a video per row of a CSV or JSONL file of prompts")
    batch.add_argument("prompts", help="a .csv (with a header row) or .jsonl file; one item per row")
    batch.add_argument(
        "--template", default="{prompt}", help="Python format template over the row's columns (default: {prompt})"
    )
    batch.add_argument("--preview", action="store_true", help="expand, validate and estimate only; submit nothing")
    batch.add_argument("--max-cost-usd", type=float, help="the batch's budget; submits beyond it are refused")
    batch.add_argument("--provider", default="local", choices=providers, help="provider (default: local renderer)")
    batch.add_argument(
        "--block", help="name of a saved credentials block of that provider (instead of environment keys)"
    )
    batch.add_argument("--base-url", help="API root of a gateway, proxy or emulator")
    batch.add_argument("--model", help="model of every item (default: the provider's default, or a 'model' column)")
    batch.add_argument("--duration", type=int, help="seconds of every item (default: 4, or a 'duration' column)")
    batch.add_argument("--out", default="./videos", help="directory or s3://bucket/prefix (default: ./videos)")
    batch.add_argument("--name", help="batch name (names the manifest; default: derived from provider and items)")
    batch.add_argument("--max-concurrency", type=int, default=4, help="jobs in flight at once (default: 4)")
    batch.add_argument("--refresh", action="store_true", help="generate again even items done before")
    batch.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for each job (default: 1800)")
    batch.add_argument("--verbose", action="store_true", help="show Prefect's flow and task logs, and tracebacks")


async def run_batch(args: argparse.Namespace, submitted: list[Any]) -> int:
    """Run ``generate_videos`` over the file; 0 when every item is stored (or previewed), else 1."""
    from pydantic import ValidationError

    from prefect_videogen import progress
    from prefect_videogen.batch.expansion import PromptSource, expand
    from prefect_videogen.cli import (
        _describe,
        _quiet_prefect_console,
        _unexpected,
        job_line,
        one_line,
        print_error,
        progress_display,
        provider_block,
        storage_block,
    )
    from prefect_videogen.errors import VideoGenError
    from prefect_videogen.flows import generate_videos
    from prefect_videogen.flows.batch import summary_text

    try:
        defaults = {k: v for k, v in {"model": args.model, "duration": args.duration}.items() if v is not None}
        prompts = PromptSource(template=args.template, rows_file=args.prompts, defaults=defaults)
        provider = await provider_block(args.provider, block=args.block, base_url=args.base_url)
        storage = storage_block(args.out)
        expand(prompts, provider.provider_name)  # bad rows fail here, before a server starts
    except (ValidationError, VideoGenError, ValueError) as exc:
        print_error(_describe(exc))
        return 2
    except Exception as exc:
        return _unexpected(exc, args.verbose)

    failure: BaseException | None = None
    with (
        progress_display(transient=False) as bars,
        _quiet_prefect_console(args.verbose),
    ):
        rows: dict[str, Any] = {}

        def show(event: progress.ProgressEvent) -> None:
            if event.kind == "submitted":
                submitted.append(event)
            if event.job_id not in rows:
                rows[event.job_id] = bars.add_task("", total=1.0)
            bars.update(rows[event.job_id], description=job_line(event, id_width=24), completed=event.progress or 0.0)

        unsubscribe = progress.subscribe(show)
        try:
            result = await generate_videos(
                prompts,
                provider=provider,
                storage=storage,
                batch_name=args.name,
                max_concurrency=args.max_concurrency,
                max_cost_usd=args.max_cost_usd,
                preview=args.preview,
                refresh=args.refresh,
                timeout_seconds=args.timeout,
            )
        except Exception as exc:
            failure = exc
        finally:
            unsubscribe()
    if isinstance(failure, VideoGenError):
        print_error(str(failure))
        return 1
    if failure is not None:
        return _unexpected(failure, args.verbose)

    new_jobs = {event.job_id for event in submitted}
    for item in result.items:
        cost = (
            f"${item.cost_usd:.2f}"
            if item.cost_usd is not None
            else (f"~${item.estimated_usd:.2f}" if item.estimated_usd is not None else "")
        )
        detail = item.video_uri or item.error or ""
        print(one_line(f"{item.status:8} row {item.row:<3} {cost:>8}  {item.prompt[:60]}  {detail}"))
        if item.status == "stored" and item.job_id and item.job_id not in new_jobs:
            print(one_line(f"         reused job {item.job_id} from an earlier run (no new charge)"))
    title = "preview" if result.preview else "batch"
    print(
        f"{title} {result.batch_id}: {summary_text(result.counts)}; estimated ${result.total_estimated_usd:.2f}, "
        f"charged ${result.total_cost_usd:.2f}"
    )
    if result.manifest_uri:
        print(f"manifest: {result.manifest_uri}")
    return 0 if set(result.counts) <= {"stored", "preview"} else 1
