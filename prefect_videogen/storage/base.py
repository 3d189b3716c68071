"""Video storage on any fsspec filesystem: a local directory by default, ``s3://`` through s3fs.

Bytes are streamed to a staging object beside the final one, verified, then moved under the final
name, so nothing partial ever sits there: a local rename is atomic, and on S3 an object appears
only once its upload (or server-side copy) is complete. A failed write removes its staging object.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import posixpath
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import fsspec
from slugify import slugify

from prefect_videogen.errors import InvalidVideoRequest, StorageError

DEFAULT_KEY_TEMPLATE = "{date}/{slug}-{job_id}.mp4"
KEY_FIELDS = ("date", "slug", "job_id", "provider", "model", "flow_run", "item")
MAX_SLUG_CHARS = 60
_UNSAFE_KEY_PART = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StoredObject:
    uri: str
    key: str
    size: int
    sha256: str


def safe_part(value: str, *, max_length: int = 100) -> str:
    """Reduce ``value`` to letters, digits, dot, dash and underscore; never ``.`` or ``..``."""
    cleaned = _UNSAFE_KEY_PART.sub("-", value).strip(".-")[:max_length]
    return cleaned or "x"


def render_key(template: str, **fields: str) -> str:
    """Fill a key template; every field is sanitised, so no value can add path segments.

    ``slug`` is made from the prompt (ASCII, lowercase, at most 60 characters).
    """
    values = {name: "" for name in KEY_FIELDS}
    values["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    for name, value in fields.items():
        if name == "slug":
            values[name] = slugify(value, max_length=MAX_SLUG_CHARS, word_boundary=True) or "video"
        else:
            values[name] = safe_part(str(value))
    try:
        key = template.format(**values)
    except (KeyError, IndexError) as exc:
        raise InvalidVideoRequest("key_template", template, f"placeholders {', '.join(KEY_FIELDS)}") from exc
    parts = [part for part in key.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidVideoRequest("key_template", template, "a relative key without '..' segments")
    return "/".join(parts)


class VideoStorage:
    """A place for videos and their sidecars.

    Args:
        base_url: a directory (``./videos``) or an fsspec URL (``s3://bucket/prefix``).
        storage_options: passed to the fsspec filesystem (for s3fs: key, secret, endpoint_url...).
        key_template: how object keys are built; see :func:`render_key`.

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
    ) -> None:
        self.fs, root = fsspec.core.url_to_fs(base_url, **(storage_options or {}))
        self.root = root.rstrip("/")
        self.key_template = key_template
        self._protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]

    def path(self, key: str) -> str:
        return posixpath.join(self.root, key) if self.root else key

    def uri(self, key: str) -> str:
        path = self.path(key)
        return path if self._protocol in ("file", "local") else f"{self._protocol}://{path}"

    def key_for(self, **fields: str) -> str:
        return render_key(self.key_template, **fields)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.fs.exists, self.path(key))

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
            StorageError: writing failed; nothing is left under ``key`` or its staging name.
        """
        final = self.path(key)
        staging = posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}.{uuid.uuid4().hex}.partial")
        digest = hashlib.sha256()
        size = 0
        try:
            await asyncio.to_thread(self.fs.makedirs, posixpath.dirname(final), exist_ok=True)
            handle = await asyncio.to_thread(self.fs.open, staging, "wb")
            try:
                async for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    await asyncio.to_thread(handle.write, chunk)
            except BaseException:
                # s3fs: abort the multipart upload instead of completing a partial object.
                discard = getattr(handle, "discard", None)
                await asyncio.to_thread(discard if discard else handle.close)
                raise
            await asyncio.to_thread(handle.close)
            if verify is not None:
                await asyncio.to_thread(verify, self.fs, staging)
            await asyncio.to_thread(self.fs.mv, staging, final)
        except BaseException as exc:
            await asyncio.shield(self._remove_quietly(staging))
            if isinstance(exc, OSError):
                raise StorageError(f"could not write {self.uri(key)}: {exc}") from exc
            raise
        return StoredObject(uri=self.uri(key), key=key, size=size, sha256=digest.hexdigest())

    async def write_json(self, key: str, data: Any) -> StoredObject:
        """Write a small JSON document atomically (same staging-then-move path as videos)."""
        payload = json.dumps(data, indent=2, sort_keys=True, default=str).encode()

        async def one_chunk() -> AsyncIterator[bytes]:
            yield payload

        return await self.write_stream(key, one_chunk())

    async def read_json(self, key: str) -> Any:
        def read() -> Any:
            with self.fs.open(self.path(key), "rb") as handle:
                return json.load(handle)

        return await asyncio.to_thread(read)

    async def _remove_quietly(self, path: str) -> None:
        try:
            if await asyncio.to_thread(self.fs.exists, path):
                await asyncio.to_thread(self.fs.rm, path)
        except Exception:  # cleanup must not hide the original error
            pass
