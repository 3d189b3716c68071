"""Where videos go: fsspec-based storage (local directory or s3://)."""

from prefect_videogen.storage.base import DEFAULT_KEY_TEMPLATE, DEFAULT_PART_SIZE, StoredObject, VideoStorage
from prefect_videogen.storage.keys import check_key, render_key

__all__ = ["DEFAULT_KEY_TEMPLATE", "DEFAULT_PART_SIZE", "StoredObject", "VideoStorage", "check_key", "render_key"]
