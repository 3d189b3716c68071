"""Prefect blocks: provider credentials and video storage."""

from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.blocks.local import LocalRenderer
from prefect_videogen.blocks.storage import LocalVideoStorage

__all__ = ["LocalRenderer", "LocalVideoStorage", "VideoProviderBlock"]
