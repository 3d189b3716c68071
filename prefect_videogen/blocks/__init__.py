"""Prefect blocks: provider credentials and video storage."""

from typing import Union

from prefect_videogen.blocks.apiframe import APIFrameCredentials
from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.blocks.chat import ChatCompletionsCredentials
from prefect_videogen.blocks.local import LocalRenderer
from prefect_videogen.blocks.openai import OpenAICredentials
from prefect_videogen.blocks.scenario import ScenarioCredentials
from prefect_videogen.blocks.storage import LocalVideoStorage, S3VideoStorage

# Flow parameters annotated with these render as block pickers in the Prefect UI.
ProviderBlocks = Union[LocalRenderer, OpenAICredentials, ScenarioCredentials, APIFrameCredentials]
StorageBlocks = Union[LocalVideoStorage, S3VideoStorage]

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
