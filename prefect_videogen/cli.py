"""``prefect-videogen`` command line.

    prefect-videogen generate "a red fox running through fresh snow" --provider local --duration 4 --aspect 9:16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

PROVIDERS = ("local",)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefect-videogen", description="Turn prompts into stored videos with Prefect.")
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="generate one video and store it with a JSON sidecar")
    gen.add_argument("prompt", help="what the video shows")
    gen.add_argument("--provider", default="local", choices=PROVIDERS, help="provider (default: local renderer)")
    gen.add_argument("--block", help="name of a saved provider credentials block to use instead of --provider")
    gen.add_argument("--model", help="model from the provider's catalog (default: the provider's default)")
    gen.add_argument("--duration", type=int, default=4, help="seconds (default: 4)")
    gen.add_argument("--aspect", default="16:9", help="16:9 or 9:16 (default: 16:9)")
    gen.add_argument("--resolution", default="standard", help="standard or high (default: standard)")
    gen.add_argument("--image", help="first frame for image-to-video: a local path or an http(s) URL")
    gen.add_argument("--out", default="./videos", help="directory or s3:// URL for the video (default: ./videos)")
    gen.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the job (default: 1800)")
    gen.add_argument("--verbose", action="store_true", help="show Prefect's flow and task logs")
    return parser


def _quiet_prefect(verbose: bool) -> None:
    # Set before Prefect is imported: its settings are read at import time.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_LEVEL", "WARNING")


def _provider_block(args: argparse.Namespace):  # noqa: ANN202 - the block type depends on the choice
    from prefect_videogen.blocks import LocalRenderer, VideoProviderBlock

    if args.block:
        return VideoProviderBlock.load(args.block)
    return {"local": LocalRenderer}[args.provider]()


async def _generate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from prefect_videogen import progress
    from prefect_videogen.blocks import LocalVideoStorage
    from prefect_videogen.errors import VideoGenError
    from prefect_videogen.flows import generate_video
    from prefect_videogen.generation import plan_request
    from prefect_videogen.models import VideoRequest

    console = Console(stderr=True)
    try:
        request = VideoRequest(
            prompt=args.prompt,
            model=args.model,
            duration=args.duration,
            aspect_ratio=args.aspect,
            resolution=args.resolution,
            image=args.image,
        )
        provider = _provider_block(args)
        plan_request(provider.provider_name, request)  # fail fast, before a server starts
    except (ValidationError, VideoGenError, ValueError) as exc:
        console.print(f"[red]error:[/red] {_describe(exc)}")
        return 2

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(), console=console, transient=True,
    ) as bar:
        task_id = bar.add_task("starting Prefect", total=1.0)

        def show(event: progress.ProgressEvent) -> None:
            label = {"submitted": "submitted", "status": event.status or "", "stored": "stored"}.get(event.kind, "")
            bar.update(task_id, description=f"{event.provider} {event.job_id[:20]} {label}",
                       completed=event.progress or 0.0)

        unsubscribe = progress.subscribe(show)
        try:
            result = await generate_video(
                request, provider=provider, storage=LocalVideoStorage(base_path=args.out), timeout_seconds=args.timeout
            )
        except VideoGenError as exc:
            console.print(f"[red]error:[/red] {exc}")
            return 1
        finally:
            unsubscribe()
    print(f"video:   {result.video_uri}")
    print(f"sidecar: {result.sidecar_uri}")
    print(f"{result.resolution}, {result.duration_seconds:g} s, {result.bytes} bytes, sha256 {result.sha256}")
    return 0


def _describe(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}" for err in exc.errors()
        )
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _quiet_prefect(getattr(args, "verbose", False))
    if args.command == "generate":
        return asyncio.run(_generate(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
