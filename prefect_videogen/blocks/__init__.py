"""Prefect blocks: provider credentials and video storage."""

from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.blocks.local import LocalRenderer
from prefect_videogen.blocks.storage import LocalVideoStorage, S3VideoStorage

__all__ = ["LocalRenderer", "LocalVideoStorage", "S3VideoStorage", "VideoProviderBlock"]
