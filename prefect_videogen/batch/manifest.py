"""A batch's manifest: every item's status, cost, job id and object keys, kept in the storage.

Layout (format 2): one small record per item, ``manifests/{batch}/items/{item}.json``, plus a small
batch header at ``manifests/{batch}.json``. An item update rewrites only that item's record (atomic:
staging then move), so its cost does not grow with the batch; the whole-batch view is assembled on
read. It records object keys, never expiring URLs.

Reading survives damage: a record that is truncated, not UTF-8, not JSON or not a valid item is
skipped, counted in :attr:`Manifest.skipped` and logged with a warning naming the file (and the
line for JSON errors); the batch rerun then treats that item as new, and the submit cache and job
claims keep it from being paid twice. A manifest written in the old single-JSON format (format 1:
the header file holds every item) still loads; the next save writes it as per-item records.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import posixpath
from datetime import datetime, timezone
from typing import Any, Literal

import fsspec
from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from prefect_videogen.storage.base import VideoStorage, safe_part

ItemStatus = Literal["pending", "submitted", "stored", "failed", "rejected", "refused"]
MANIFEST_PREFIX = "manifests"
FORMAT = 2
# Records written at once by save() (a new batch writes one per item): object stores answer each
# write in tens of milliseconds, so one at a time would make a 10,000-item batch start slowly.
SAVE_CONCURRENCY = 16

logger = logging.getLogger("prefect_videogen.manifest")  # the name it had before the module moved (log filters)


class ManifestItem(BaseModel):
    item_id: str
    row: int
    original_prompt: str
    prompt: str
    status: ItemStatus = "pending"
    provider: str = ""
    model: str = ""
    job_id: str | None = None
    video_key: str | None = None
    sidecar_key: str | None = None
    sha256: str | None = None
    cost_usd: float | None = None
    charge_status: str | None = None
    error: str | None = None
    updated_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


class Manifest(BaseModel):
    batch_id: str
    provider: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    items: dict[str, ManifestItem] = Field(default_factory=dict)
    # Damaged records passed over while reading (file, reason); not written back.
    _skipped: list[str] = PrivateAttr(default_factory=list)

    @property
    def skipped(self) -> list[str]:
        return self._skipped


def item_file_name(item_id: str) -> str:
    """The record name of ``item_id``: the id itself when it is a safe name, else a safe form plus a hash."""
    safe = safe_part(item_id, max_length=100)
    if safe == item_id:
        return f"{item_id}.json"
    return f"{safe}-{hashlib.sha256(item_id.encode()).hexdigest()[:12]}.json"


def _damage(path: str, exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{path}: line {exc.lineno} column {exc.colno}: {exc.msg}"
    if isinstance(exc, UnicodeDecodeError):
        return f"{path}: not UTF-8 at byte {exc.start}"
    if isinstance(exc, ValidationError):
        return f"{path}: not a manifest record ({exc.error_count()} invalid field(s))"
    return f"{path}: {type(exc).__name__}: {exc}"


def _parse(path: str, payload: bytes | Exception) -> Any:
    if isinstance(payload, Exception):
        raise payload
    return json.loads(payload.decode("utf-8"))


def read_manifest(fs: Any, header_path: str, *, batch_id: str = "", provider: str = "") -> Manifest | None:
    """Assemble a batch's manifest from its header and item records on ``fs``; None when there is none.

    Damaged records are skipped, counted in ``Manifest.skipped`` and logged with their file (and line).
    """
    items_dir = posixpath.join(posixpath.splitext(header_path)[0], "items")
    skipped: list[str] = []
    manifest: Manifest | None = None
    old_items: dict[str, Any] = {}
    if fs.exists(header_path):
        try:
            header = _parse(header_path, fs.cat_file(header_path))
            if not isinstance(header, dict):
                raise ValueError("the header is not a JSON object")
            old_items = header.get("items") or {} if header.get("format", 1) == 1 else {}
            manifest = Manifest.model_validate(
                {k: v for k, v in header.items() if k in ("batch_id", "provider", "created_at")}
            )
        except (ValueError, ValidationError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            skipped.append(_damage(header_path, exc))
    try:
        paths = sorted(p for p in fs.find(items_dir) if p.endswith(".json"))
    except FileNotFoundError:
        paths = []
    if manifest is None and not paths and not skipped:
        return None
    manifest = manifest or Manifest(batch_id=batch_id, provider=provider)
    if not isinstance(old_items, dict):
        skipped.append(f"{header_path}: 'items' is not an object")
        old_items = {}
    for item_id, data in old_items.items():  # format 1: every item in the header; each checked on its own
        try:
            manifest.items[item_id] = ManifestItem.model_validate(data)
        except ValidationError as exc:
            skipped.append(_damage(f"{header_path} item {item_id!r}", exc))
    # One batched read of every record (s3fs fetches them concurrently).
    contents = fs.cat(paths, on_error="return") if paths else {}
    for path in paths:
        try:
            item = ManifestItem.model_validate(_parse(path, contents.get(path, FileNotFoundError(path))))
        except (ValueError, ValidationError, OSError) as exc:
            skipped.append(_damage(path, exc))
            continue
        manifest.items[item.item_id] = item  # a record is newer than a format-1 header's copy
    for problem in skipped:
        logger.warning("manifest: skipped a damaged record: %s", problem)
    manifest._skipped = skipped
    return manifest


def load_manifest(uri: str, **storage_options: Any) -> Manifest | None:
    """Read a batch's manifest from its URI (``BatchResult.manifest_uri``), outside a flow.

    Example:
        ```python
        manifest = load_manifest(result.manifest_uri)
        stored = [i for i in manifest.items.values() if i.status == "stored"]
        ```
    """
    fs, path = fsspec.core.url_to_fs(uri, **storage_options)
    return read_manifest(fs, path)


class ManifestStore:
    """Load, update and save one batch's manifest. An update writes that item's record only."""

    def __init__(self, storage: VideoStorage, batch_id: str) -> None:
        self.storage = storage
        name = safe_part(batch_id, max_length=120)
        self.key = f"{MANIFEST_PREFIX}/{name}.json"
        self.items_prefix = f"{MANIFEST_PREFIX}/{name}/items"
        self._locks: dict[str, asyncio.Lock] = {}
        self._written: dict[str, ManifestItem] = {}  # what each record in the storage holds now
        self._header_written = False
        self.manifest: Manifest | None = None

    @property
    def uri(self) -> str:
        return self.storage.uri(self.key)

    def item_key(self, item_id: str) -> str:
        return f"{self.items_prefix}/{item_file_name(item_id)}"

    async def load(self, *, batch_id: str, provider: str) -> Manifest:
        fs = self.storage.fs
        found = await asyncio.to_thread(
            read_manifest, fs, self.storage.path(self.key), batch_id=batch_id, provider=provider
        )
        if found is None:
            self.manifest = Manifest(batch_id=batch_id, provider=provider)
        else:
            self.manifest = found
            # Records read from per-item files are up to date; a format-1 header's items are not yet records.
            items_dir = self.storage.path(self.items_prefix)
            listed = set(await asyncio.to_thread(_listing, fs, items_dir))
            self._written = {
                item_id: item
                for item_id, item in found.items.items()
                if self.storage.path(self.item_key(item_id)) in listed
            }
            self._header_written = not _is_format_1(fs, self.storage.path(self.key)) and not any(
                problem.startswith(self.storage.path(self.key)) for problem in found.skipped
            )
        return self.manifest

    async def update(self, item_id: str, **changes: object) -> ManifestItem:
        """Apply ``changes`` to one item and write that item's record atomically (constant cost)."""
        assert self.manifest is not None, "load() first"
        lock = self._locks.setdefault(item_id, asyncio.Lock())
        async with lock:
            item = self.manifest.items[item_id]
            updated = item.model_copy(update={**changes, "updated_at": datetime.now(timezone.utc)})
            self.manifest.items[item_id] = updated
            await self._write_item(updated)
            return updated

    async def save(self) -> None:
        """Write the header and every record that differs from the storage (all of them the first time)."""
        assert self.manifest is not None
        changed = [item for item in list(self.manifest.items.values()) if self._written.get(item.item_id) != item]
        gate = asyncio.Semaphore(SAVE_CONCURRENCY)

        async def write(item: ManifestItem) -> None:
            async with gate:
                await self._write_item(item)

        await asyncio.gather(*(write(item) for item in changed))
        if not self._header_written:
            # After the records: a crash between the two leaves a format-1 header, which still loads.
            header = {
                "format": FORMAT,
                "batch_id": self.manifest.batch_id,
                "provider": self.manifest.provider,
                "created_at": self.manifest.created_at.isoformat(),
                "items": None,
                "records": self.items_prefix + "/",
            }
            await self.storage.write_json(self.key, header)
            self._header_written = True

    async def _write_item(self, item: ManifestItem) -> None:
        await self.storage.write_bytes(self.item_key(item.item_id), item.model_dump_json().encode())
        self._written[item.item_id] = item


def _listing(fs: Any, path: str) -> list[str]:
    try:
        return list(fs.find(path))
    except FileNotFoundError:
        return []


def _is_format_1(fs: Any, header_path: str) -> bool:
    try:
        header = json.loads(fs.cat_file(header_path))
    except (OSError, ValueError):
        return True
    return not isinstance(header, dict) or header.get("format", 1) == 1
