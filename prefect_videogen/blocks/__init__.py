"""Prefect blocks: provider credentials and video storage."""

from typing import Union

from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.blocks.local import LocalRenderer
from prefect_videogen.blocks.storage import LocalVideoStorage, S3VideoStorage

# Flow parameters annotated with these render as block pickers in the Prefect UI.
ProviderBlocks = VideoProviderBlock
StorageBlocks = Union[LocalVideoStorage, S3VideoStorage]

__all__ = [
    "LocalRenderer",
    "LocalVideoStorage",
    "ProviderBlocks",
    "S3VideoStorage",
    "StorageBlocks",
    "VideoProviderBlock",
]
