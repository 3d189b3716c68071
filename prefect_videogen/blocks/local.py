"""Settings of the embedded local renderer (no credentials needed)."""

from __future__ import annotations

import hashlib
import os

from pydantic import Field

from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.policy import check_directory
from prefect_videogen.providers.local import LocalProvider
from prefect_videogen.registry.info import ProviderDocs, ProviderInfo


class LocalRenderer(VideoProviderBlock):
    """The embedded renderer: real H.264 MP4 title cards made on this machine, with no key and no cost.

    Example:
        ```python
        from prefect_videogen.blocks import LocalRenderer

        renderer = LocalRenderer.load("BLOCK_NAME")
        ```
    """

    provider_name = "local"
    _block_type_name = "Videogen Local Renderer"
    _block_type_slug = "videogen-local-renderer"

    queue_delay_seconds: float = Field(
        default=0.5, ge=0, description="How long a job waits in the simulated queue before it succeeds."
    )
    fps: int = Field(default=24, ge=1, le=60, description="Frames per second of rendered videos.")
    jobs_dir: str | None = Field(
        default=None,
        description="Where job records are kept; empty means PREFECT_HOME/videogen-local-jobs "
        "(or PREFECT_VIDEOGEN_LOCAL_JOBS) on the worker.",
    )

    def get_client(self) -> LocalProvider:
        if self.jobs_dir:  # a folder a run may name: the worker's policy decides (the default is the worker's own)
            check_directory("provider.jobs_dir", self.jobs_dir)
        return LocalProvider(queue_delay_seconds=self.queue_delay_seconds, fps=self.fps, jobs_dir=self.jobs_dir)

    def account_id(self) -> str:
        # Job records in another folder are another job store: a cached submit made with one folder
        # must not answer a request made with another (its job id would be "no such job" there).
        if self.jobs_dir:
            return "local-" + hashlib.sha256(os.path.abspath(self.jobs_dir).encode()).hexdigest()[:12]
        return "local"


PROVIDER = ProviderInfo(
    name="local",
    block=LocalRenderer,
    docs=ProviderDocs(
        api="embedded renderer: real H.264 title cards, no network (the default)", auth="none", cost="free"
    ),
)
