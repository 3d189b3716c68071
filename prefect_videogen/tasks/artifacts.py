"""Links and thumbnails of stored videos, shown as Prefect artifacts.

Presigned URLs expire, so they are made when an artifact is created and never stored in sidecars,
manifests or results: those record object keys, from which a fresh link can be signed at any time
with :func:`presigned_url`.

Example:
    ```python
    from prefect_videogen.tasks.artifacts import presigned_url, publish_video_artifacts

    url = presigned_url(storage, "2026-11-22/a-fox-job1.mp4", expires_seconds=600)
    await publish_video_artifacts(result, storage)  # inside a flow or task run
    ```
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import posixpath
import re
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from uuid import UUID

from prefect.artifacts import (
    acreate_image_artifact,
    acreate_link_artifact,
    acreate_markdown_artifact,
    acreate_progress_artifact,
    aupdate_progress_artifact,
)

from prefect_videogen.media import first_frame_image
from prefect_videogen.models import VideoResult
from prefect_videogen.storage.base import VideoStorage

DEFAULT_LINK_SECONDS = 3600
#: Thumbnails embedded in an artifact (local storage: no URL a browser may load) stay this small.
EMBEDDED_THUMBNAIL_PIXELS = 320

logger = logging.getLogger("prefect_videogen.artifacts")


def artifact_key(*parts: str) -> str:
    """A valid Prefect artifact key (lowercase letters, digits, dashes) from ``parts``.

    A key puts an artifact on the UI's Artifacts page, with the versions of every run that used it.

    Example:
        ```python
        artifact_key("video", "openai", "video_68d7 512f")  # "video-openai-video-68d7-512f"
        ```
    """
    text = "-".join(parts).lower()
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", text)).strip("-")[:120] or "videogen"


class ProgressArtifact:
    """A task run's progress artifact, updated off the caller's path.

    A poll loop calls :meth:`show` and goes on at once; one background task sends the latest value
    to the Prefect API (values shown meanwhile are skipped, never queued): awaiting each update would
    delay the next poll by the API's latency, and so the moment a finished job is noticed
    (BENCHMARKS.md). A failed update is logged: the UI's progress bar must not fail a wait.

    Example:
        ```python
        bar = await ProgressArtifact.create("apiframe sora-2 job 123")
        bar.show(40.0)
        await bar.aclose()  # sends the last value shown
        ```
    """

    def __init__(self, artifact_id: UUID, *, min_interval: float = 0.0) -> None:
        self.artifact_id = artifact_id
        #: At most one update per ``min_interval`` seconds (a batch's bar: thousands of items must
        #: not mean thousands of API calls); the last value shown is always sent.
        self.min_interval = min_interval
        self._shown: float | None = None
        self._sent: float | None = None
        self._sent_at = float("-inf")
        self._flush = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self.description = ""

    @classmethod
    async def create(cls, description: str, key: str | None = None, *, min_interval: float = 0.0) -> ProgressArtifact:
        bar = cls(
            await acreate_progress_artifact(progress=0.0, key=key, description=description), min_interval=min_interval
        )
        bar.description = description
        return bar

    async def fail(self, reason: str) -> None:
        """Mark the bar as failed (a progress bar alone would stay at its last value with no sign)."""
        await self.aclose()
        try:
            await aupdate_progress_artifact(
                artifact_id=self.artifact_id,
                progress=self._sent or 0.0,
                description=f"**FAILED**: {reason}\n\n{self.description}",
            )
        except Exception as exc:
            logger.warning("could not update progress artifact %s: %s", self.artifact_id, exc)

    def show(self, progress: float) -> None:
        """Show ``progress`` (0-100) soon; returns at once."""
        self._shown = progress
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())

    async def aclose(self) -> None:
        """Wait until the last value shown has been sent (at once: no ``min_interval`` wait)."""
        self._flush.set()
        if self._sender is not None:
            await self._sender

    async def _send(self) -> None:
        while self._shown is not None and self._shown != self._sent:
            pause = self._sent_at + self.min_interval - time.monotonic()
            if pause > 0 and not self._flush.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush.wait(), pause)
            value = self._shown
            try:
                await aupdate_progress_artifact(artifact_id=self.artifact_id, progress=value)
            except Exception as exc:
                logger.warning("could not update progress artifact %s: %s", self.artifact_id, exc)
            self._sent, self._sent_at = value, time.monotonic()


@dataclass(frozen=True)
class VideoArtifacts:
    """What :func:`publish_video_artifacts` created."""

    link_artifact_id: UUID
    image_artifact_id: UUID | None
    thumbnail_key: str | None
    expires_at: datetime | None


def presigned_url(storage: VideoStorage, key: str, expires_seconds: int = DEFAULT_LINK_SECONDS) -> str | None:
    """A time-limited HTTP(S) URL that reads ``key`` without credentials; None where the store cannot sign.

    Signing is local (no request is sent), so it is cheap to call whenever a link is shown.

    Example:
        ```python
        url = presigned_url(S3VideoStorage.load("BLOCK_NAME").get_storage(), key, expires_seconds=600)
        ```
    """
    try:
        return storage.fs.sign(storage.path(key), expiration=expires_seconds)
    except NotImplementedError:  # fsspec's answer for filesystems without URLs (local, memory)
        return None


def thumbnail_key(video_key: str) -> str:
    """Where the thumbnail of ``video_key`` goes: beside it, ``clip.mp4`` -> ``clip.jpg``."""
    stem, _ = posixpath.splitext(video_key)
    return f"{stem}.jpg"


async def make_thumbnail(storage: VideoStorage, video_key: str) -> str:
    """Write the first frame of ``video_key`` as a JPEG beside it and return the JPEG's key.

    On S3 only the header and the first frame's bytes are read (ranged reads), not the whole video.

    Raises:
        ValueError: the stored object is not a decodable video.
        StorageError: the thumbnail could not be written.
    """

    def read_first_frame() -> bytes:
        with storage.open_read(video_key) as handle:
            return first_frame_image(handle)

    jpeg = await asyncio.to_thread(read_first_frame)
    key = thumbnail_key(video_key)
    await storage.write_bytes(key, jpeg)
    return key


async def publish_video_artifacts(
    result: VideoResult,
    storage: VideoStorage,
    *,
    expires_seconds: int = DEFAULT_LINK_SECONDS,
    artifact_key: str | None = None,
) -> VideoArtifacts:
    """Show a stored video in the Prefect UI: a link artifact, plus a thumbnail image where a URL exists.

    The link is presigned now and expires after ``expires_seconds``; the thumbnail is written beside
    the video and linked the same way. On local storage (nothing to sign) a markdown artifact says
    which host holds the file and where, with the thumbnail embedded as a data URL.

    Args:
        result: the stored video, as returned by ``store_video`` / the download task.
        storage: the storage that holds it.
        expires_seconds: lifetime of the presigned links.
        artifact_key: lowercase letters, digits and dashes; default ``video-<provider>-<job id>``.

    Example:
        ```python
        artifacts = await publish_video_artifacts(result, storage)
        ```
    """
    video_key = storage.key_of(result.video_uri)
    artifact_key = artifact_key or video_artifact_key(result.provider, result.job_id)
    url = presigned_url(storage, video_key, expires_seconds)
    expires_at = datetime.now(timezone.utc) + timedelta(seconds=expires_seconds) if url else None
    expiry = f"; link expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
    description = (
        f"**{result.provider}/{result.model or 'default'}** job `{result.job_id}`: {result.resolution}, "
        f"{result.duration_seconds} s, {result.bytes} bytes, sha256 `{result.sha256}`\n\n"
        f"Key `{video_key}`{expiry}."
    )
    if result.warnings:
        # Kept because it is paid for, but not what was asked for: say so where the video is shown.
        description += "\n\n**Warnings** (stored and kept):\n" + "\n".join(f"- {w}" for w in result.warnings)
    if url is None:
        return await _publish_local(result, storage, video_key, description, artifact_key)
    link_id = await acreate_link_artifact(
        link=url,
        link_text=result.prompt[:80],
        key=artifact_key,
        description=description,
    )
    thumb = await make_thumbnail(storage, video_key)
    image_id = await acreate_image_artifact(
        image_url=presigned_url(storage, thumb, expires_seconds) or "",
        key=f"{artifact_key}-thumbnail",
        description=f"First frame of `{video_key}`{expiry}.",
    )
    return VideoArtifacts(link_id, image_id, thumb, expires_at)


def video_artifact_key(provider: str, job_id: str, kind: str = "video") -> str:
    """The key of a job's artifacts: ``video-<provider>-<job id>`` (``progress-...`` for its wait)."""
    return artifact_key(kind, provider, job_id)


async def _publish_local(
    result: VideoResult, storage: VideoStorage, video_key: str, description: str, key: str
) -> VideoArtifacts:
    """Local storage: no URL a browser may open (browsers refuse ``file://`` links from a web page,
    and on a remote worker the file is on another machine). The artifact says which machine holds
    the file and where, and embeds a small first-frame thumbnail (a data URL, which the UI renders)."""
    host = socket.gethostname()
    path = storage.path(video_key)
    text = f"### {_md(result.prompt[:80])}\n\nStored on host `{host}` at `{path}`."
    image_id = None
    try:

        def read_first_frame() -> bytes:
            with storage.open_read(video_key) as handle:
                return first_frame_image(handle, max_size=EMBEDDED_THUMBNAIL_PIXELS)

        data_url = "data:image/jpeg;base64," + base64.b64encode(await asyncio.to_thread(read_first_frame)).decode()
        text += f"\n\n![first frame]({data_url})"
        image_id = await acreate_image_artifact(
            image_url=data_url, key=f"{key}-thumbnail", description=f"First frame of `{video_key}` (on host `{host}`)."
        )
    except ValueError as exc:  # not a decodable video: say so instead of a thumbnail
        text += f"\n\n(no thumbnail: {exc})"
    markdown_id = await acreate_markdown_artifact(
        markdown=text, key=key, description=f"Video on host `{host}`\n\n{description}"
    )
    return VideoArtifacts(markdown_id, image_id, None, None)


def _md(text: str) -> str:
    """``text`` shown literally in markdown: ``<...>`` would be read as an HTML tag and vanish."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
