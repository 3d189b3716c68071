"""prefect-videogen: Prefect 3 tasks, flows and blocks that turn prompts into stored videos.

Blocks are re-exported here so that ``prefect block register -m prefect_videogen`` finds them, and
every registered provider is loaded on import (:mod:`prefect_videogen.registry`): a Prefect server
started where the package is installed registers every provider's block type, plugins' included.
"""

from typing import Any

from prefect_videogen import _moved, registry
from prefect_videogen.blocks import (
    APIFrameCredentials,
    ChatCompletionsCredentials,
    LocalRenderer,
    LocalVideoStorage,
    OpenAICredentials,
    S3VideoStorage,
    ScenarioCredentials,
    VideoProviderBlock,
)
from prefect_videogen.errors import VideoGenError
from prefect_videogen.models import JobStatus, VideoJob, VideoRequest, VideoResult

__version__ = "0.1.0"

_moved.install()  # old import paths of moved modules (prefect_videogen.costs, ...) keep working
registry.load()


def __getattr__(name: str) -> Any:
    """A registered provider's block by class name, as for the blocks listed below."""
    for block in registry.block_classes():
        if block.__name__ == name:
            return block
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *(block.__name__ for block in registry.block_classes())})


__all__ = [
    "APIFrameCredentials",
    "ChatCompletionsCredentials",
    "JobStatus",
    "LocalRenderer",
    "LocalVideoStorage",
    "OpenAICredentials",
    "S3VideoStorage",
    "ScenarioCredentials",
    "VideoGenError",
    "VideoJob",
    "VideoProviderBlock",
    "VideoRequest",
    "VideoResult",
]
