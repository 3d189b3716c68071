"""The block every provider's credentials derive from."""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

from prefect.blocks.abstract import CredentialsBlock

from prefect_videogen.providers.base import VideoProvider

LOGO_URL = "https://raw.githubusercontent.com/PrefectHQ/prefect/main/docs/images/logos/prefect-logo-mark.png"
DOCS_URL = "https://github.com/prefect-videogen/prefect-videogen#readme"


class VideoProviderBlock(CredentialsBlock):
    """Base of the provider credentials blocks: builds a provider client with ``get_client()``."""

    provider_name: ClassVar[str]
    _logo_url = LOGO_URL
    _documentation_url = DOCS_URL

    @abstractmethod
    def get_client(self) -> VideoProvider:
        """Build a client for this provider; use it as ``async with block.get_client() as client``."""

    def account_id(self) -> str:
        """A non-secret identity of the billed account, used in cache keys and the ledger."""
        return self.get_client().account_id
