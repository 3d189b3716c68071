"""prefect-videogen: Prefect 3 tasks, flows and blocks that turn prompts into stored videos.

Blocks are re-exported here so that ``prefect block register -m prefect_videogen`` finds them.
"""

from prefect_videogen import _moved
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
