"""Video storage on any fsspec filesystem: a local directory by default, ``s3://`` through s3fs.

Bytes are streamed to a staging object beside the final one, verified, then moved under the final
name, so nothing partial ever sits there: a local rename is atomic, and on S3 an object appears
only once its upload (or server-side copy) is complete. On S3 the staging object is written as a
multipart upload of ``part_size`` parts, so memory stays bounded by about one part whatever the
video's size. A failed write aborts the multipart upload and removes its staging object.

A dropped download does not reach this module: the transport resumes it with HTTP ``Range`` inside
the one chunk stream it hands to :meth:`VideoStorage.write_stream` (``providers/http.py``), so the
staging file, or the open multipart upload on S3, simply receives the rest of the bytes. An S3
object cannot be appended to once closed, and staging the whole video in a local temporary file
first would double the disk traffic on local storage and need scratch space as large as the
video; keeping the one handle open across resumes needs neither, and memory stays about one part.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import mimetypes
import posixpath
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.spec import AbstractBufferedFile

from prefect_videogen.errors import StorageError, redact
from prefect_videogen.storage.keys import (
    DEFAULT_KEY_TEMPLATE,
    KEY_FIELDS,
    check_key,
    render_key,
    safe_part,
    validate_template,
)

__all__ = [
    "DEFAULT_KEY_TEMPLATE",
    "DEFAULT_PART_SIZE",
    "KEY_FIELDS",
    "StoredObject",
    "VideoStorage",
    "render_key",
    "safe_part",
    "read_object",
    "read_object_if_any",
]

# S3 parts must be at least 5 MiB (except the last); 8 MiB keeps memory low and, at up to 10,000
# parts per upload, still allows 80 GiB objects.
DEFAULT_PART_SIZE = 8 * 1024 * 1024
_OBJECT_STORE_PROTOCOLS = ("s3", "s3a", "gs", "gcs", "abfs", "az")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredObject:
    """An object written by :meth:`VideoStorage.write_stream`: where it is and what its bytes hash to."""

    uri: str
    key: str
    size: int
    sha256: str


class VideoStorage:
    """A place for videos and their sidecars.

    Args:
        base_url: a directory (``./videos``) or an fsspec URL (``s3://bucket/prefix``).
        storage_options: passed to the fsspec filesystem (for s3fs: key, secret, endpoint_url...).
        key_template: how object keys are built; see :func:`render_key`.
        part_size: bytes buffered before each upload part on object stores (at least 5 MiB on S3).

    Example:
        ```python
        storage = VideoStorage("./videos")
        stored = await storage.write_stream("clip.mp4", chunks)
        ```
    """

    def __init__(
        self,
        base_url: str = "./videos",
        *,
        storage_options: dict[str, Any] | None = None,
        key_template: str = DEFAULT_KEY_TEMPLATE,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        self.fs, root = fsspec.core.url_to_fs(base_url, **(storage_options or {}))
        self.root: str = root.rstrip("/")
        self.key_template = validate_template(key_template)  # before any paid call, not at the first key
        self.part_size = part_size
        self._protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]

    def __repr__(self) -> str:
        # Never the storage options: they hold credentials.
        return f"VideoStorage({self.uri('')!r})"

    @property
    def is_local(self) -> bool:
        return self._protocol in ("file", "local")

    def path(self, key: str) -> str:
        """The filesystem path of ``key`` (checked: it cannot leave the storage root)."""
        if key == "":
            return self.root
        check_key(key)
        return posixpath.join(self.root, key) if self.root else key

    def uri(self, key: str) -> str:
        path = self.path(key)
        return path if self.is_local else f"{self._protocol}://{path}"

    def key_of(self, uri: str) -> str:
        """The key of an object from its :meth:`uri` (the inverse of ``uri``).

        Raises:
            ValueError: ``uri`` is not inside this storage.
        """
        prefix = self.uri("").rstrip("/") + "/"
        if not uri.startswith(prefix):
            raise ValueError(f"{uri!r} is not inside {prefix!r}")
        return check_key(uri[len(prefix) :])

    def key_for(self, **fields: str) -> str:
        return render_key(self.key_template, **fields)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.fs.exists, self.path(key))

    def open_read(self, key: str) -> IO[bytes]:
        """Open ``key`` for reading (seekable; on S3, ranged reads of ``part_size`` blocks)."""
        handle: IO[bytes] = self.fs.open(self.path(key), "rb", block_size=self.part_size)
        return handle

    async def write_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        verify: Callable[[Any, str], None] | None = None,
    ) -> StoredObject:
        """Stream ``chunks`` under ``key``, hashing as they pass; publish only when complete.

        Args:
            verify: called as ``verify(fs, staging_path)`` before publishing; it raises to refuse.

        Raises:
            StorageError: writing failed; nothing is left under ``key`` or its staging name, and no
                multipart upload is left open.
        """
        final = self.path(key)
        staging = _staging_path(final)
        digest = hashlib.sha256()
        size = 0
        handle: IO[bytes] | None = None

        # One worker-thread call per chunk, the staging file opened by the first and closed by the one
        # that publishes: each hop wakes a thread and the event loop, and a short video is one chunk.
        def write(chunk: bytes) -> None:
            nonlocal handle
            if handle is None:
                handle = self._open_staging(final, staging, key)
            # Hash in the worker thread too: hashlib releases the GIL on large buffers.
            digest.update(chunk)
            handle.write(chunk)

        def finish() -> None:
            nonlocal handle
            if handle is None:  # no bytes at all: an empty object, still staged and verified
                handle = self._open_staging(final, staging, key)
            try:
                handle.close()
            except BaseException:
                _abandon(handle)
                raise
            self._publish(staging, final, verify)

        try:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    await asyncio.to_thread(write, chunk)
            except BaseException:
                if handle is not None:
                    await asyncio.shield(asyncio.to_thread(_abandon, handle))
                raise
            await asyncio.to_thread(finish)
        except BaseException as exc:
            await asyncio.shield(asyncio.to_thread(self._remove_staging, staging))
            if isinstance(exc, OSError):
                raise self._write_failed(key, exc) from exc
            raise
        return StoredObject(uri=self.uri(key), key=key, size=size, sha256=digest.hexdigest())

    async def check_writable(self) -> None:
        """Write and remove a tiny probe object, so a storage problem fails before anything is paid for.

        Raises:
            StorageError: the storage is unreachable or not writable (message names the URI).
        """
        key = f".videogen-probe-{uuid.uuid4().hex}"
        try:
            await self.write_bytes(key, b"probe")
            await asyncio.to_thread(self.fs.rm, self.path(key))
        except Exception as exc:  # s3fs/botocore raise their own types for unreachable endpoints
            cause = exc.__cause__ if isinstance(exc, StorageError) and exc.__cause__ else exc
            raise StorageError(
                f"storage {self.uri('')} is not writable ({type(cause).__name__}: {redact(str(cause))[:300]}); "
                "nothing was submitted"
            ) from exc

    async def write_bytes(self, key: str, payload: bytes) -> StoredObject:
        """Write a small object atomically (staged, then moved into place, as videos are).

        The whole write is one call in a worker thread, where a stream takes one per step: a ledger
        line or a manifest record is a few hundred bytes, and each thread hop costs the event loop
        about as much as writing them. Cancelled, the call still ends in the thread: the object is then
        either published whole or not at all, and no staging object is left.
        """
        final = self.path(key)
        try:
            await asyncio.to_thread(self._write_whole, final, _staging_path(final), key, payload)
        except OSError as exc:
            raise self._write_failed(key, exc) from exc
        return StoredObject(uri=self.uri(key), key=key, size=len(payload), sha256=hashlib.sha256(payload).hexdigest())

    async def rewrite(self, key: str, change: Callable[[bytes | None], bytes | None]) -> bool:
        """Replace a small object by what ``change`` makes of its bytes (None: absent); True if written.

        The read, ``change`` and the atomic write (as :meth:`write_bytes`) are one call in a worker
        thread, not a hop each: a ledger line is recorded this way three times per video. ``change``
        returns None to leave the object as it is. Not a lock: of two writers of one key, the last
        write wins whole.
        """
        final = self.path(key)

        def read_change_write() -> bool:
            payload = change(read_object_if_any(self.fs, final))
            if payload is None:
                return False
            try:
                self._write_whole(final, _staging_path(final), key, payload)
            except OSError as exc:
                raise self._write_failed(key, exc) from exc
            return True

        return await asyncio.to_thread(read_change_write)

    async def write_json(self, key: str, data: Any) -> StoredObject:
        """Write a small JSON document atomically (same staging-then-move path as videos)."""
        return await self.write_bytes(key, json.dumps(data, indent=2, sort_keys=True, default=str).encode())

    async def read_json(self, key: str) -> Any:
        return json.loads(await asyncio.to_thread(read_object, self.fs, self.path(key)))

    def local_uri(self, key: str) -> str | None:
        """A ``file://`` URI of ``key`` on local storage; None on remote stores."""
        return Path(self.path(key)).resolve().as_uri() if self.is_local else None

    def _write_options(self, key: str) -> dict[str, Any]:
        if self._protocol not in _OBJECT_STORE_PROTOCOLS:
            return {}
        options: dict[str, Any] = {"block_size": self.part_size}
        content_type, _ = mimetypes.guess_type(key)
        if self._protocol in ("s3", "s3a") and content_type:
            # Set on the staging upload; the server-side copy that publishes it keeps it, so
            # presigned links play in the browser instead of downloading as octet-stream.
            options["ContentType"] = content_type
        return options

    def _write_failed(self, key: str, exc: OSError) -> StorageError:
        return StorageError(f"could not write {self.uri(key)}: {redact(str(exc))}")

    def _open_staging(self, final: str, staging: str, key: str) -> IO[bytes]:
        if self._protocol not in _OBJECT_STORE_PROTOCOLS:
            # Object stores have no directories, and s3fs's makedirs would create a missing bucket.
            self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        handle: IO[bytes] = self.fs.open(staging, "wb", **self._write_options(key))
        return handle

    def _publish(self, staging: str, final: str, verify: Callable[[Any, str], None] | None) -> None:
        if verify is not None:
            verify(self.fs, staging)
        self.fs.mv(staging, final)

    def _write_whole(self, final: str, staging: str, key: str, payload: bytes) -> None:
        try:
            handle = self._open_staging(final, staging, key)
            try:
                handle.write(payload)
                handle.close()
            except BaseException:
                _abandon(handle)
                raise
            self._publish(staging, final, None)
        except BaseException:
            self._remove_staging(staging)
            raise

    def _remove_staging(self, path: str) -> None:
        try:
            if self.fs.exists(path):
                self.fs.rm(path)
        except Exception:  # cleanup must not hide the original error
            logger.warning("could not remove staging object %s", path, exc_info=True)


def _staging_path(final: str) -> str:
    """A unique name beside ``final``, hidden from listings of its folder."""
    return posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}.{uuid.uuid4().hex}.partial")


def read_object(fs: Any, path: str) -> bytes:
    """The whole of a small object (a claim, a ledger file, a sidecar) in one read.

    One ``cat_file`` is one GET of the object's current version. Opening a file and then reading it
    is two steps on s3fs, and when another worker replaced the object between them (two workers
    recording the same job), s3fs raises ``FileExpired``. Objects here are replaced whole (staging,
    then move), so one GET sees either the old or the new version, never a mix.
    """
    data: bytes = fs.cat_file(path)
    return data


def read_object_if_any(fs: Any, path: str) -> bytes | None:
    """:func:`read_object`, or None when there is no such object: one read, no existence check first
    (on S3 that would be one request more, and the object may go between the two)."""
    try:
        return read_object(fs, path)
    except FileNotFoundError:
        return None


def _abandon(handle: IO[bytes]) -> None:
    """Drop a half-written file without publishing what was written so far.

    On fsspec's buffered files (s3fs, gcsfs...) ``close()`` would *complete* the upload with the
    partial bytes, so ``discard()`` aborts it instead (s3fs: AbortMultipartUpload), and the file
    is marked closed so that its ``__del__`` does not flush it later. Plain local files are
    closed; the caller removes the staging file.
    """
    try:
        if isinstance(handle, AbstractBufferedFile):
            handle.discard()
            handle.closed = True
        else:
            handle.close()
    except Exception:  # cleanup must not hide the original error
        logger.warning("could not abort the upload of %s", getattr(handle, "path", "?"), exc_info=True)
