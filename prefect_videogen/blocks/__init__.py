"""Prefect blocks: provider credentials and video storage.

The provider blocks are listed by :mod:`prefect_videogen.registry`; any registered provider's block
is also an attribute here (``from prefect_videogen.blocks import APIFrameCredentials``).
"""

from typing import Annotated, Any, Union

from prefect_videogen.blocks.apiframe import APIFrameCredentials
from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.blocks.chat import ChatCompletionsCredentials
from prefect_videogen.blocks.local import LocalRenderer
from prefect_videogen.blocks.openai import OpenAICredentials
from prefect_videogen.blocks.scenario import ScenarioCredentials
from prefect_videogen.blocks.storage import LocalVideoStorage, S3VideoStorage
from prefect_videogen.registry.core import RegisteredProviderBlocks, block_classes

# Flow parameters annotated with these render as block pickers in the Prefect UI. ProviderBlocks is
# the Union of the provider blocks registered when Prefect builds the schema or validates a run,
# not when this module is imported (see prefect_videogen.registry.RegisteredProviderBlocks).
ProviderBlocks = Annotated[VideoProviderBlock, RegisteredProviderBlocks()]
StorageBlocks = Union[LocalVideoStorage, S3VideoStorage]


def __getattr__(name: str) -> Any:
    """A registered provider's block by class name (providers added without editing this module)."""
    for block in block_classes():
        if block.__name__ == name:
            return block
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *(block.__name__ for block in block_classes())})


__all__ = [
    "APIFrameCredentials",
    "ChatCompletionsCredentials",
    "LocalRenderer",
    "LocalVideoStorage",
    "OpenAICredentials",
    "ProviderBlocks",
    "S3VideoStorage",
    "ScenarioCredentials",
    "StorageBlocks",
    "VideoProviderBlock",
]
