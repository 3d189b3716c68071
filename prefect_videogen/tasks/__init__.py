"""Prefect tasks over the plain async generation steps."""

from prefect_videogen.tasks.generation import download_video, retry_if_retryable, submit_video, wait_for_video

__all__ = ["download_video", "retry_if_retryable", "submit_video", "wait_for_video"]
