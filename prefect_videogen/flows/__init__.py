"""Prefect flows."""

from prefect_videogen.flows.batch import BatchResult, generate_videos
from prefect_videogen.flows.generate import generate_video

__all__ = ["BatchResult", "generate_video", "generate_videos"]
