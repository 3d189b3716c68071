"""A batch's manifest: every item's status, cost, job id and object keys, kept in the storage.

It is rewritten atomically after every change (one JSON document, small), so a crash leaves the
last good version, and a rerun of the same batch knows which items are done. It records object keys,
never expiring URLs.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field

from prefect_videogen.storage.base import VideoStorage, safe_part

ItemStatus = Literal["pending", "submitted", "stored", "failed", "rejected", "refused"]
MANIFEST_PREFIX = "manifests"


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

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.items.values():
            counts[item.status] = counts.get(item.status, 0) + 1
        return counts


class ManifestStore:
    """Load, update and save one batch's manifest; updates from concurrent items are serialised."""

    def __init__(self, storage: VideoStorage, batch_id: str) -> None:
        self.storage = storage
        self.key = f"{MANIFEST_PREFIX}/{safe_part(batch_id, max_length=120)}.json"
        self._lock = asyncio.Lock()
        self.manifest: Manifest | None = None

    @property
    def uri(self) -> str:
        return self.storage.uri(self.key)

    async def load(self, *, batch_id: str, provider: str) -> Manifest:
        if await self.storage.exists(self.key):
            self.manifest = Manifest.model_validate(await self.storage.read_json(self.key))
        else:
            self.manifest = Manifest(batch_id=batch_id, provider=provider)
        return self.manifest

    async def update(self, item_id: str, **changes: object) -> ManifestItem:
        """Apply ``changes`` to one item and save the whole manifest atomically."""
        assert self.manifest is not None, "load() first"
        async with self._lock:
            item = self.manifest.items[item_id]
            updated = item.model_copy(update={**changes, "updated_at": datetime.now(timezone.utc)})
            self.manifest.items[item_id] = updated
            await self.save()
            return updated

    async def save(self) -> None:
        assert self.manifest is not None
        await self.storage.write_bytes(self.key, self.manifest.model_dump_json(indent=2).encode())
