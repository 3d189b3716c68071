"""``prefect-videogen`` command line.

    prefect-videogen generate "a red fox running through fresh snow" --provider local --duration 4 --aspect 9:16
    prefect-videogen batch prompts.csv --preview
    prefect-videogen emulator apiframe --port 8090
    prefect-videogen costs --by model --since 2026-11-01
    prefect-videogen models --provider apiframe

Provider keys come from saved blocks (``--block NAME``) or the environment, never from flags
(they would land in shell history): each provider's variables are declared in the provider registry
(:mod:`prefect_videogen.registry`; OPENAI_API_KEY, APIFRAME_API_KEY, ...), which also gives the
``--provider`` and ``emulator`` choices. ``--base-url`` points any provider at a gateway or emulator.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any

from prefect_videogen import registry


def _add_provider_flags(parser: argparse.ArgumentParser) -> None:
    """The providers' own CLI flags (``ProviderInfo.flags``): each sets a non-secret field of the block."""
    seen: dict[str, list[str]] = {}
    for info in registry.providers():
        for flag in info.flags:
            seen.setdefault(flag.flag, []).append(info.name)
    for info in registry.providers():
        for flag in info.flags:
            if flag.flag in seen:
                parser.add_argument(
                    flag.flag, dest=_flag_dest(flag.flag), help=f"{flag.help} ({', '.join(seen.pop(flag.flag))})"
                )


def _flag_dest(flag: str) -> str:
    return "provider_flag_" + flag.removeprefix("--").replace("-", "_")


def _provider_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The selected provider's flags given on the command line, as block fields; another provider's flag is refused."""
    from prefect_videogen.errors import InvalidVideoRequest

    mine = {flag.flag: flag.field for flag in registry.get(args.provider).flags}
    fields = {}
    for info in registry.providers():
        for flag in info.flags:
            value = getattr(args, _flag_dest(flag.flag), None)
            if value is None:
                continue
            if flag.flag not in mine:
                raise InvalidVideoRequest(
                    flag.flag, value, f"a flag of {info.name} (this is --provider {args.provider})"
                )
            fields[mine[flag.flag]] = value
    return fields


def _parser() -> argparse.ArgumentParser:
    providers = registry.names()
    parser = argparse.ArgumentParser(
        prog="prefect-videogen", description="Turn prompts into stored videos with Prefect."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="generate one video and store it with a JSON sidecar")
    gen.add_argument("prompt", help="what the video shows")
    gen.add_argument("--provider", default="local", choices=providers, help="provider (default: local renderer)")
    gen.add_argument("--block", help="name of a saved credentials block of that provider (instead of environment keys)")
    gen.add_argument("--base-url", help="API root of a gateway, proxy or emulator")
    gen.add_argument("--model", help="model from the provider's catalog (default: the provider's default)")
    gen.add_argument("--duration", type=int, default=4, help="seconds (default: 4)")
    _add_shape_flags(gen, aspect_default="16:9")
    gen.add_argument("--image", help="first frame for image-to-video: a local path or an http(s) URL")
    gen.add_argument("--end-image", help="last frame (models with an end frame): a local path or an http(s) URL")
    _add_feature_flags(gen)
    gen.add_argument("--out", default="./videos", help="directory or s3://bucket/prefix (default: ./videos)")
    gen.add_argument("--max-cost-usd", type=float, help="refuse to submit if the estimate exceeds this")
    gen.add_argument("--refresh", action="store_true", help="generate again even if this request was done before")
    gen.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the job (default: 1800)")
    gen.add_argument("--verbose", action="store_true", help="show Prefect's flow and task logs, and tracebacks")
    _add_provider_flags(gen)

    _add_batch_parser(commands, providers)

    emu = commands.add_parser("emulator", help="run a provider emulator on 127.0.0.1 for credit-free dry runs")
    emu.add_argument("provider", choices=registry.emulator_names(), help="which provider's API to emulate")
    emu.add_argument("--port", type=int, default=8090, help="port on 127.0.0.1 to listen on (default: 8090)")
    emu.add_argument("--latency", type=float, default=2.0, help="seconds a job takes (default: 2)")
    emu.add_argument(
        "--models",
        help="JSON file of extra model tables to serve (scenario, apiframe; format: testing/model_tables.py)",
    )

    costs = commands.add_parser("costs", help="summarise the cost ledger kept next to the videos")
    costs.add_argument("--out", default="./videos", help="the storage that holds the ledger (default: ./videos)")
    costs.add_argument("--since", type=date.fromisoformat, help="only jobs recorded on or after this date (YYYY-MM-DD)")
    costs.add_argument("--by", default="provider", choices=("provider", "model", "day"))

    models = commands.add_parser("models", help="list the catalog's models: status, durations, sizes, features, price")
    models.add_argument("--provider", help="only this provider's models (default: every provider in the catalog)")
    models.add_argument("--json", action="store_true", help="one JSON object for programs (keys: see the README)")

    resume = commands.add_parser("resume", help="wait for, store and book pending jobs of a storage (no new submit)")
    resume.add_argument("--provider", default="local", choices=providers, help="provider the jobs were submitted to")
    resume.add_argument(
        "--block", help="name of a saved credentials block of that provider (instead of environment keys)"
    )
    resume.add_argument("--base-url", help="API root of a gateway, proxy or emulator")
    resume.add_argument("--out", default="./videos", help="the storage of the runs (default: ./videos)")
    resume.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for each job (default: 1800)")
    resume.add_argument("--verbose", action="store_true", help="show Prefect's flow and task logs")
    _add_provider_flags(resume)
    return parser


def _add_shape_flags(parser: argparse.ArgumentParser, *, aspect_default: str | None) -> None:
    """--aspect and --resolution: any value the catalog lists; the catalog check names what a model takes."""
    default = f"default: {aspect_default}" if aspect_default else "default: 16:9, or an 'aspect_ratio' column"
    parser.add_argument(
        "--aspect",
        default=aspect_default,
        help=f"aspect ratio such as 16:9, 9:16, 1:1, 4:3, 21:9 or adaptive, as the model lists them in "
        f"`prefect-videogen models` ({default})",
    )
    parser.add_argument(
        "--resolution",
        help="resolution tier such as standard, high, 720p, 1080p or 4k, as the model lists them in "
        "`prefect-videogen models` (default: the model's default tier)",
    )


def _add_feature_flags(parser: argparse.ArgumentParser) -> None:
    """The optional request fields of the models beyond Sora; a model without one refuses it by name."""
    parser.add_argument(
        "--reference-image",
        action="append",
        metavar="PATH_OR_URL",
        help="a reference image (models that take them; repeat for several): a local path or an http(s) URL",
    )
    parser.add_argument("--negative-prompt", metavar="TEXT", help="what the video should not show")
    parser.add_argument("--seed", type=int, help="random seed for repeatable output (models with a seed)")
    parser.add_argument(
        "--audio",
        dest="generate_audio",
        action=argparse.BooleanOptionalAction,
        help="have the model generate sound, or not (models with generated audio; default: the model's own)",
    )
    parser.add_argument(
        "--option",
        action="append",
        metavar="NAME=VALUE",
        help="a model-specific extra (provider_options; repeatable); VALUE is read as JSON when it parses "
        '(0.5, true, "text"), else as text. The names a model declares: `prefect-videogen models`',
    )


def request_extras(args: argparse.Namespace) -> dict[str, Any]:
    """The optional request fields given as flags (unset flags left out), ``--option`` pairs parsed.

    Raises:
        InvalidVideoRequest: an ``--option`` is not NAME=VALUE, or names the same option twice.
    """
    from prefect_videogen.batch.expansion import parse_option_value
    from prefect_videogen.errors import InvalidVideoRequest

    options: dict[str, Any] = {}
    for pair in getattr(args, "option", None) or []:
        name, equals, text = pair.partition("=")
        name = name.strip()
        if not equals or not name:
            raise InvalidVideoRequest("--option", pair, "NAME=VALUE, for example cfg_scale=0.5")
        if name in options:
            raise InvalidVideoRequest("--option", pair, f"each name once ({name!r} is given twice)")
        options[name] = parse_option_value(text)
    extras = {
        "end_image": getattr(args, "end_image", None),
        "reference_images": args.reference_image,
        "negative_prompt": args.negative_prompt,
        "seed": args.seed,
        "generate_audio": args.generate_audio,
        "provider_options": options or None,
    }
    return {name: value for name, value in extras.items() if value is not None}


@contextmanager
def _prefect_settings(verbose: bool) -> Iterator[None]:
    """The CLI's Prefect settings for its own runs; a variable the user has set wins.

    Importing this package has already imported Prefect, which reads its settings on import, so
    setting environment variables here would change nothing: they are applied as Prefect's
    temporary settings (also passed to a temporary server it starts).
    """
    from prefect.settings import (
        PREFECT_LOGGING_LEVEL,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    wanted = {
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
        # Without a configured API, Prefect starts a temporary server; on a fresh PREFECT_HOME it
        # first creates its database, which took longer than Prefect's 20 s limit on a 2-core machine.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 180,
    }
    # Prefect's log level stays as configured: the run logs reach the Prefect API (the UI's Logs tab);
    # without --verbose, _quiet_prefect_console keeps all but warnings off the terminal.
    del verbose, PREFECT_LOGGING_LEVEL
    with temporary_settings(updates={s: v for s, v in wanted.items() if s.name not in os.environ}):
        yield


async def provider_block(
    provider: str, *, block: str | None = None, base_url: str | None = None, fields: dict[str, Any] | None = None
) -> Any:
    """The credentials block for ``provider``: saved (``block``), or built from the environment and ``fields``."""
    from prefect_videogen.errors import InvalidVideoRequest

    info = registry.get(provider)
    cls = info.block
    if block:
        try:
            return await cls.aload(block)
        except ValueError as exc:  # Prefect: no block document of that name (its text names type and name)
            raise InvalidVideoRequest("block", block, f"a saved {cls.__name__} block ({exc})") from exc
    return info.block_from_env(os.environ, **(fields or {}), base_url=base_url)


def storage_block(out: str) -> Any:
    from prefect_videogen.blocks import LocalVideoStorage, S3VideoStorage

    if out.startswith("s3://"):
        bucket, _, prefix = out[len("s3://") :].partition("/")
        return S3VideoStorage(bucket=bucket, prefix=prefix.strip("/"), endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    return LocalVideoStorage(base_path=out)


def progress_display(*, transient: bool) -> Any:
    """The rich progress display of ``generate`` and ``batch``: on stderr, off when it is no terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        disable=not console.is_terminal,
    )


def job_line(event: Any, *, id_width: int) -> str:
    """One job's progress line; markup-escaped (provider text such as ``[moderation_blocked]`` stays)."""
    from rich.markup import escape

    label = {"submitted": "submitted", "status": event.status or "", "stored": "stored"}.get(event.kind, "")
    return escape(one_line(f"{event.provider} {event.job_id[:id_width]} {label}"))


async def _generate(args: argparse.Namespace, submitted: list[Any]) -> int:
    """Run ``generate_video``; ``submitted`` collects the jobs it submits (for a Ctrl-C message)."""
    from pydantic import ValidationError

    from prefect_videogen import progress
    from prefect_videogen.errors import VideoGenError
    from prefect_videogen.flows import generate_video
    from prefect_videogen.models import VideoRequest
    from prefect_videogen.pipeline import plan_request

    try:
        request = VideoRequest(
            prompt=args.prompt,
            model=args.model,
            duration=args.duration,
            aspect_ratio=args.aspect,
            resolution=args.resolution,
            image=args.image,
            **request_extras(args),
        )
        provider = await provider_block(
            args.provider, block=args.block, base_url=args.base_url, fields=_provider_fields(args)
        )
        storage = storage_block(args.out)
        plan_request(provider.provider_name, request)  # fail fast, before a server starts
    except (ValidationError, VideoGenError, ValueError) as exc:
        print_error(_describe(exc))
        return 2
    except Exception as exc:  # for example, the Prefect API cannot be reached to load --block
        return _unexpected(exc, args.verbose)

    failure: BaseException | None = None
    with (
        progress_display(transient=True) as bar,
        _quiet_prefect_console(args.verbose),
    ):
        task_id = bar.add_task("starting Prefect", total=1.0)

        def show(event: progress.ProgressEvent) -> None:
            if event.kind == "submitted":
                submitted.append(event)
            bar.update(task_id, description=job_line(event, id_width=20), completed=event.progress or 0.0)

        unsubscribe = progress.subscribe(show)
        try:
            result = await generate_video(
                request,
                provider=provider,
                storage=storage,
                timeout_seconds=args.timeout,
                max_cost_usd=args.max_cost_usd,
                refresh=args.refresh,
            )
        except Exception as exc:  # printed below, once the progress bar is gone
            failure = exc
        finally:
            unsubscribe()
    if isinstance(failure, VideoGenError):
        print_error(str(failure))
        return 1
    if failure is not None:
        return _unexpected(failure, args.verbose)
    if result.job_id not in {event.job_id for event in submitted}:  # the submit step was Cached
        print(one_line(f"reused {result.provider} job {result.job_id} from an earlier run (no new charge)"))
    print(f"video:   {result.video_uri}")
    print(f"sidecar: {result.sidecar_uri}")
    print(f"{result.resolution}, {result.duration_seconds:g} s, {result.bytes} bytes, sha256 {result.sha256}")
    return 0


def _unexpected(exc: BaseException, verbose: bool) -> int:
    """An error the package did not raise on purpose: one line, the traceback only with --verbose."""
    if verbose:
        traceback.print_exception(exc)
    print_error(
        f"unexpected {type(exc).__name__}: {exc}",
        hint=None if verbose else "run again with --verbose to see the traceback",
    )
    return 1


def one_line(text: str) -> str:
    """User or provider text as one line without control characters (no terminal escapes, no line breaks)."""
    return "".join(ch if ch.isprintable() else " " for ch in " ".join(str(text).splitlines()))


def print_error(message: str, *, hint: str | None = None) -> None:
    """One ``error:`` line on stderr (and a ``hint:`` line): plain text, never rich markup.

    Messages carry user and provider text (``[moderation_blocked]``, an ``--aspect`` of ``[/x]``)
    that markup would swallow or choke on. Key-shaped text is redacted, as in the package's errors.
    """
    from prefect_videogen.errors import redact

    print(f"error: {one_line(redact(message))}", file=sys.stderr, flush=True)
    if hint:
        print(f"hint: {hint}", file=sys.stderr, flush=True)


@contextmanager
def _quiet_prefect_console(verbose: bool) -> Iterator[None]:
    """Without --verbose, show only warnings of Prefect's logs on the terminal: no info lines, no errors
    or tracebacks (the CLI prints the failure itself, as one line). The logs still reach the Prefect API.
    """
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    def keep(record: logging.LogRecord) -> bool:
        return logging.WARNING <= record.levelno < logging.ERROR and not record.exc_info

    handlers = (
        []
        if verbose
        else [
            handler
            for logger in (logging.getLogger(), *logging.Logger.manager.loggerDict.values())
            if isinstance(logger, logging.Logger)
            for handler in logger.handlers
            if isinstance(handler, PrefectConsoleHandler)
        ]
    )
    for handler in handlers:
        handler.addFilter(keep)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(keep)


def _emulator(args: argparse.Namespace) -> int:
    from prefect_videogen.testing import EmulatorServer

    info = registry.get(args.provider)
    emulator_class = info.emulator_class()
    extra = {"extra_models": args.models} if args.models else {}
    if extra and "extra_models" not in inspect.signature(emulator_class).parameters:
        print(f"--models: the {args.provider} emulator serves a fixed model list", file=sys.stderr)
        return 2
    try:
        emulator = emulator_class(latency_seconds=args.latency, **extra)
    except (OSError, ValueError) as exc:  # an unreadable file or a table off the format (pydantic's errors)
        print(f"--models {args.models}: {exc}", file=sys.stderr)
        return 2
    server = EmulatorServer(emulator, port=args.port)
    root = server.base_url + info.emulator_path
    # The emulator's keys are attributes named like the block fields they fill (api_key, api_secret).
    keys = {
        name: getattr(emulator, name)
        for name in info.env
        if name != "base_url" and isinstance(getattr(emulator, name, None), str)
    }
    env = info.env
    print(f"{args.provider} emulator on {root} (counters: {server.base_url}/_emulator/state); Ctrl-C stops it")
    print("use it with:")
    for field, value in {**keys, "base_url": root}.items():
        if field in env:
            print(f"  export {env[field]}={value}")
    print(f'  prefect-videogen generate "a fox" --provider {args.provider}')
    server.serve_forever()
    return 0


async def _costs(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from prefect_videogen.spend.ledger import Ledger, summarize

    if "://" not in args.out and not os.path.isdir(args.out):
        # An empty table would read as "nothing spent" when the ledger is simply somewhere else.
        print_error(
            f"--out {args.out!r}: no such directory", hint="pass the storage the videos went to (default ./videos)"
        )
        return 2
    ledger = Ledger(storage_block(args.out).get_storage())
    rows = summarize(await ledger.entries(since=args.since), by=args.by)
    table = Table(title=f"video costs by {args.by}" + (f" since {args.since}" if args.since else ""))
    # pending: jobs still running or unanswered; unknown: ended without the provider saying whether
    # it billed. Their estimates are money that may be spent, shown apart from what is billed.
    for column in (args.by, "jobs", "billed", "usd", "units", "pending", "pending usd", "unknown", "unknown usd"):
        table.add_column(column, justify="left" if column in (args.by, "units") else "right")
    for row in rows:
        units = ", ".join(f"{amount:g} {unit}" for unit, amount in row["units"].items())
        table.add_row(
            row[args.by],
            str(row["jobs"]),
            str(row["billed_jobs"]),
            f"{row['usd']:.4f}",
            units,
            str(row["pending_jobs"]),
            f"{row['pending_usd']:.4f}",
            str(row["unknown_jobs"]),
            f"{row['unknown_usd']:.4f}",
        )
    table.add_row(
        "TOTAL",
        str(sum(r["jobs"] for r in rows)),
        str(sum(r["billed_jobs"] for r in rows)),
        f"{sum(r['usd'] for r in rows):.4f}",
        "",
        str(sum(r["pending_jobs"] for r in rows)),
        f"{sum(r['pending_usd'] for r in rows):.4f}",
        str(sum(r["unknown_jobs"] for r in rows)),
        f"{sum(r['unknown_usd'] for r in rows):.4f}",
    )
    console = Console()
    console.print(table)
    if ledger.skipped:
        console.print(f"skipped {len(ledger.skipped)} damaged ledger line(s):", style="yellow")
        for line in ledger.skipped:
            console.print(f"  {line}", style="yellow", soft_wrap=True)
    return 0


def _models(args: argparse.Namespace) -> int:
    """``models``: the catalog (with the user's PREFECT_VIDEOGEN_CATALOG overrides) as a table or JSON."""
    import json

    from pydantic import ValidationError
    from rich.console import Console

    from prefect_videogen.catalog import CATALOG_ENV, load_catalog
    from prefect_videogen.cli_models import model_records, render_tables
    from prefect_videogen.errors import VideoGenError

    try:
        catalog = load_catalog()
    except (OSError, ValueError) as exc:  # a missing or malformed override file (ValidationError is a ValueError)
        detail = _describe(exc) if isinstance(exc, ValidationError) else str(exc)
        print_error(f"the catalog with {CATALOG_ENV}={os.environ.get(CATALOG_ENV, '')!r} does not load: {detail}")
        return 2
    try:
        document = model_records(catalog, args.provider)
    except VideoGenError as exc:
        print_error(str(exc))
        return 2
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        terminal = Console()
        # At most 100 columns; a pipe or file gets 100 (rich would assume 80).
        render_tables(document, Console(width=min(terminal.width, 100) if terminal.is_terminal else 100))
    return 0


def _interrupted(submitted: list[Any]) -> int:
    """Ctrl-C: say which job was submitted, so that nobody pays for it twice by accident."""
    if not submitted:
        print_error("interrupted before any job was reported submitted")
        return 130
    for event in submitted:
        print_error(
            f"interrupted; {event.provider} job {event.job_id} was submitted and may still run (and bill)",
            hint="run the same command again to wait for that job: the submit is cached, "
            "no new job is created (unless --refresh)",
        )
    return 130


async def _resume(args: argparse.Namespace) -> int:
    from prefect_videogen.errors import VideoGenError
    from prefect_videogen.flows import resume_jobs

    try:
        result = await resume_jobs(
            provider=await provider_block(
                args.provider, block=args.block, base_url=args.base_url, fields=_provider_fields(args)
            ),
            storage=storage_block(args.out),
            timeout_seconds=args.timeout,
        )
    except VideoGenError as exc:
        print_error(str(exc))
        return 1
    for job in result.jobs:
        detail = job.video_uri or job.error or ""
        print(f"{job.status:9} {job.job_id or '-'} {job.item_id or ''} {job.charge or ''} {detail}".rstrip())
    print(f"resumed: {result.counts or 'nothing pending'}")
    for uri in result.unreadable_claims:
        print(f"unreadable claim: {uri}", file=sys.stderr)
    return 0 if not ({"uncertain", "pending"} & set(result.counts)) else 1


def _describe(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}" for err in exc.errors()
        )
    return str(exc)


def _add_batch_parser(commands: Any, providers: tuple[str, ...]) -> None:
    """``prefect-videogen batch PROMPTS.csv|.jsonl``: a file of prompts through the ``generate_videos`` flow.

    Each row is an item; its columns are the template's variables (default template ``{prompt}``: a
    ``prompt`` column). A progress line per job while it runs, then the same summary as the batch
    artifact in the Prefect UI: one line per item and the counts.
    """
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
    # Defaults of every item (a row's own column wins). First and last frames are per item: the
    # 'image' and 'end_image' columns.
    _add_shape_flags(batch, aspect_default=None)
    _add_feature_flags(batch)
    batch.add_argument("--out", default="./videos", help="directory or s3://bucket/prefix (default: ./videos)")
    batch.add_argument("--name", help="batch name (names the manifest; default: derived from provider and items)")
    batch.add_argument("--max-concurrency", type=int, default=4, help="jobs in flight at once (default: 4)")
    batch.add_argument("--refresh", action="store_true", help="generate again even items done before")
    batch.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for each job (default: 1800)")
    batch.add_argument("--verbose", action="store_true", help="show Prefect's flow and task logs, and tracebacks")
    _add_provider_flags(batch)


async def _run_batch(args: argparse.Namespace, submitted: list[Any]) -> int:
    """Run ``generate_videos`` over the file; 0 when every item is stored (or previewed), else 1."""
    from pydantic import ValidationError

    from prefect_videogen import progress
    from prefect_videogen.batch.expansion import PromptSource, expand
    from prefect_videogen.errors import VideoGenError
    from prefect_videogen.flows import generate_videos
    from prefect_videogen.flows.batch import summary_text

    try:
        given = {
            "model": args.model,
            "duration": args.duration,
            "aspect_ratio": args.aspect,
            "resolution": args.resolution,
            **request_extras(args),
        }
        defaults = {k: v for k, v in given.items() if v is not None}
        prompts = PromptSource(template=args.template, rows_file=args.prompts, defaults=defaults)
        provider = await provider_block(
            args.provider, block=args.block, base_url=args.base_url, fields=_provider_fields(args)
        )
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


def _allow_command_line_paths(args: argparse.Namespace) -> None:
    """Add the local paths typed on this command line to the worker policy's allowed roots.

    The policy (:mod:`prefect_videogen.policy`) guards a worker against what a run's parameters name;
    whoever types ``--out`` or ``--image`` here is the machine's user, who may read and write those
    paths anyway. Runs of deployments never pass through here, so their parameters stay confined.
    """
    from prefect_videogen.policy import WorkerPolicy

    paths = [
        getattr(args, "out", None),
        getattr(args, "image", None),
        getattr(args, "end_image", None),
        *(getattr(args, "reference_image", None) or []),
        os.path.dirname(os.path.abspath(args.prompts)) if getattr(args, "prompts", None) else None,
    ]
    local = [os.path.abspath(path) for path in paths if path and "://" not in path]
    if local:
        roots = [*WorkerPolicy().allowed_roots, *local]
        os.environ["PREFECT_VIDEOGEN_ALLOWED_ROOTS"] = os.pathsep.join(dict.fromkeys(roots))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _allow_command_line_paths(args)
    with _prefect_settings(getattr(args, "verbose", False)):
        if args.command == "generate":
            submitted: list[Any] = []
            try:
                return asyncio.run(_generate(args, submitted))
            except KeyboardInterrupt:
                return _interrupted(submitted)
        if args.command == "batch":
            submitted = []
            try:
                return asyncio.run(_run_batch(args, submitted))
            except KeyboardInterrupt:
                return _interrupted(submitted)
        if args.command == "models":
            return _models(args)
        if args.command == "costs":
            return asyncio.run(_costs(args))
        if args.command == "resume":
            return asyncio.run(_resume(args))
        if args.command == "emulator":
            return _emulator(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
