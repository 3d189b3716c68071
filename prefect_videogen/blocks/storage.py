"""Storage blocks: where videos and their sidecars are written."""

from __future__ import annotations

from pydantic import Field
from prefect.blocks.core import Block

from prefect_videogen.blocks.base import DOCS_URL, LOGO_URL
from prefect_videogen.storage.base import DEFAULT_KEY_TEMPLATE, VideoStorage


class LocalVideoStorage(Block):
    """Videos in a directory on this machine (``./videos`` by default).

    Example:
        ```python
        from prefect_videogen.blocks import LocalVideoStorage

        storage = LocalVideoStorage.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "Videogen Local Storage"
    _block_type_slug = "videogen-local-storage"
    _logo_url = LOGO_URL
    _documentation_url = DOCS_URL

    base_path: str = Field(default="./videos", description="Directory that holds the videos and sidecars.")
    key_template: str = Field(
        default=DEFAULT_KEY_TEMPLATE,
        description="Object key template; placeholders: date, slug, job_id, provider, model, flow_run, item.",
    )

    def get_storage(self) -> VideoStorage:
        return VideoStorage(self.base_path, key_template=self.key_template)
