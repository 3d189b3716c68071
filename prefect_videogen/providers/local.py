"""The embedded ``local`` provider: real H.264 MP4 title cards, no key, no network, no cost.

It behaves like a remote queue: a submitted job is queued, then running, then succeeded after
``queue_delay_seconds`` (small by default). Jobs are JSON files in ``jobs_dir`` so that another
process, for example a rerun after a crash, can resume waiting on the same job id.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prefect_videogen.catalog import VideoPlan
from prefect_videogen.errors import InvalidRequest, InvalidVideoRequest
from prefect_videogen.media import render_title_card
from prefect_videogen.models import JobStatus, VideoJob
from prefect_videogen.policy import check_local_image
from prefect_videogen.providers.base import DOWNLOAD_CHUNK_BYTES, Clock, VideoProvider


def default_jobs_dir() -> Path:
    """``$PREFECT_VIDEOGEN_LOCAL_JOBS``, else ``videogen-local-jobs`` in PREFECT_HOME (``~/.prefect``).

    Beside Prefect's result storage (PREFECT_HOME/storage by default), which holds the cached
    submits that name these jobs: clearing PREFECT_HOME clears both, so a rerun never finds a
    cached job id whose record is gone.
    """
    if os.environ.get("PREFECT_VIDEOGEN_LOCAL_JOBS"):
        return Path(os.environ["PREFECT_VIDEOGEN_LOCAL_JOBS"])
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser() / "videogen-local-jobs"


class LocalProvider(VideoProvider):
    """Render videos on this machine with PyAV.

    Args:
        queue_delay_seconds: how long a job stays queued/running before it succeeds.
        fps: frames per second of the rendered video (frames = duration x fps).
        jobs_dir: where job records live; defaults to :func:`default_jobs_dir`.
        clock: wall clock (seconds); injectable so tests never really wait.
    """

    name = "local"

    def __init__(
        self,
        *,
        queue_delay_seconds: float = 0.5,
        fps: int = 24,
        jobs_dir: str | os.PathLike[str] | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.queue_delay_seconds = queue_delay_seconds
        self.fps = fps
        self.jobs_dir = Path(jobs_dir) if jobs_dir else default_jobs_dir()
        self.clock = clock

    async def submit(self, plan: VideoPlan, *, idempotency_key: str | None = None) -> VideoJob:
        image = plan.request.image
        if image is not None and "://" in image:
            raise InvalidVideoRequest("image", image, "a local file path (the local provider has no network)")
        if image is not None:
            check_local_image("image", image)  # the worker's policy and a header check before rendering reads it
        job_id = f"local_{idempotency_key or uuid.uuid4().hex}"
        record = {
            "job_id": job_id,
            "model": plan.request.model,
            "prompt": plan.request.prompt,
            "duration": plan.request.duration,
            "width": plan.width,
            "height": plan.height,
            "image": str(Path(image).resolve()) if image else None,
            "fps": self.fps,
            "created_at": self.clock(),
            "delay": self.queue_delay_seconds,
        }
        path = self._record_path(job_id)
        if not path.exists():  # an idempotency key replays the original job, as APIFrame does
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
            tmp.write_text(json.dumps(record))
            os.replace(tmp, path)
        return self._job(self._read(job_id))

    def idempotency_window(self) -> None:
        """A key replays its job for as long as the job's record is kept."""
        return None

    async def find_job(self, plan: VideoPlan, claim: Any) -> VideoJob | None:
        """The job of an unanswered submit: the same key replays the original job, as APIFrame's does."""
        return await self.submit(plan, idempotency_key=claim.key)

    async def get_job(self, job: VideoJob) -> VideoJob:
        return self._job(self._read(job.job_id))

    @asynccontextmanager
    async def stream_video(self, job: VideoJob) -> AsyncIterator[AsyncIterator[bytes]]:
        record = self._read(job.job_id)
        with tempfile.TemporaryDirectory(prefix="videogen-local-") as tmp:
            target = Path(tmp) / "video.mp4"
            # Rendering is CPU-bound: keep the event loop free for other jobs' polls.
            await asyncio.to_thread(
                render_title_card,
                target,
                prompt=record["prompt"],
                width=record["width"],
                height=record["height"],
                duration=record["duration"],
                fps=record["fps"],
                image=record["image"],
            )

            async def chunks() -> AsyncIterator[bytes]:
                with target.open("rb") as handle:
                    while chunk := handle.read(DOWNLOAD_CHUNK_BYTES):
                        yield chunk

            yield chunks()

    def _record_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.json"

    def _read(self, job_id: str) -> dict[str, Any]:
        try:
            record: dict[str, Any] = json.loads(self._record_path(job_id).read_text())
            return record
        except FileNotFoundError:
            raise InvalidRequest(
                f"no such job {job_id!r}: its record is not in {self.jobs_dir} (the local renderer's job records; "
                "PREFECT_VIDEOGEN_LOCAL_JOBS, default PREFECT_HOME/videogen-local-jobs). If that folder was cleared "
                "while Prefect's cached results were kept, run again with --refresh (refresh=True) to render anew",
                provider=self.name,
                status_code=404,
            ) from None

    def _job(self, record: dict[str, Any]) -> VideoJob:
        elapsed = self.clock() - record["created_at"]
        delay = record["delay"]
        if elapsed >= delay:
            status, progress = JobStatus.SUCCEEDED, 1.0
        elif elapsed < delay / 2:
            status, progress = JobStatus.QUEUED, 0.0
        else:
            status, progress = JobStatus.RUNNING, elapsed / delay
        return VideoJob(
            provider=self.name,
            job_id=record["job_id"],
            model=record["model"],
            status=status,
            raw_status=status.value,
            progress=progress,
            poll_after_seconds=max(delay - elapsed, 0.05) if not status.is_terminal else None,
            # No reported charge: like OpenAI, the catalog price (free unless overridden) is the cost.
        )
