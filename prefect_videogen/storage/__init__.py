"""Where videos go: fsspec-based storage (local directory or s3://)."""

from prefect_videogen.storage.base import DEFAULT_KEY_TEMPLATE, StoredObject, VideoStorage, render_key

__all__ = ["DEFAULT_KEY_TEMPLATE", "StoredObject", "VideoStorage", "render_key"]
