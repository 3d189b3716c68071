"""Provider clients: plain async code that imports no Prefect."""

from prefect_videogen.providers.base import VideoProvider
from prefect_videogen.providers.local import LocalProvider
from prefect_videogen.providers.polling import PollSchedule, wait_for_job

__all__ = ["LocalProvider", "PollSchedule", "VideoProvider", "wait_for_job"]
