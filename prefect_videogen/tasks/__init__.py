"""Prefect tasks over the plain async generation steps."""

from prefect_videogen.tasks.generation import download_video, retry_if_retryable, submit_video, wait_for_video
from prefect_videogen.tasks.rewrite import cache_key_for, rewrite_prompt

__all__ = ["cache_key_for", "download_video", "retry_if_retryable", "rewrite_prompt", "submit_video", "wait_for_video"]
