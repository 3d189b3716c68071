"""Credentials for OpenAI's Videos API or an OpenAI-compatible gateway."""

from __future__ import annotations

from pydantic import Field, SecretStr

from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.openai import DEFAULT_BASE_URL, OpenAIVideoProvider
from prefect_videogen.registry.info import ProviderDocs, ProviderInfo


class OpenAICredentials(VideoProviderBlock):
    """An OpenAI API key, and where to send it: OpenAI itself, a gateway, a proxy or the emulator.

    OpenAI retired Sora 2 on 2026-09-24: against api.openai.com those models fail fast with
    ``ModelUnavailable`` before any request; a gateway in ``base_url`` is asked instead.

    Example:
        ```python
        from prefect_videogen.blocks.openai import OpenAICredentials

        creds = OpenAICredentials.load("BLOCK_NAME")
        async with creds.get_client() as client:
            ...
        ```
    """

    provider_name = "openai"
    _block_type_name = "Videogen OpenAI Credentials"
    _block_type_slug = "videogen-openai-credentials"
    _description = "OpenAI API key for the Videos API (Sora), or for an OpenAI-compatible gateway."

    api_key: SecretStr = Field(description="OpenAI API key (sk-...), sent as a Bearer token.")
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="API root ending in /v1: OpenAI, an OpenAI-compatible gateway or proxy, or an emulator.",
    )
    organization: str | None = Field(
        default=None, description="Optional OpenAI organization id (org-...), sent as the OpenAI-Organization header."
    )
    project: str | None = Field(
        default=None, description="Optional OpenAI project id (proj_...), sent as the OpenAI-Project header."
    )
    account_label: str | None = Field(
        default=None,
        description="Non-secret name of the billed account for cache keys and the cost ledger; "
        "empty means organization/project, else a one-way hash prefix of the key.",
    )

    def get_client(self) -> OpenAIVideoProvider:
        """Build the Videos API client; use it as ``async with creds.get_client() as client``."""
        return OpenAIVideoProvider(
            self.api_key.get_secret_value(),
            base_url=self.base_url,
            organization=self.organization,
            project=self.project,
            account_label=self.account_label,
        )

    def account_id(self) -> str:
        return account_id_for(
            self.api_key.get_secret_value(),
            organization=self.organization,
            project=self.project,
            label=self.account_label,
        )


PROVIDER = ProviderInfo(
    name="openai",
    block=OpenAICredentials,
    env={"api_key": "OPENAI_API_KEY", "base_url": "OPENAI_BASE_URL"},
    emulator="prefect_videogen.testing.openai_emulator:OpenAIEmulator",
    emulator_path="/v1",
    docs=ProviderDocs(
        api="OpenAI Videos API shape (OpenAI, or a gateway)",
        auth="Bearer key",
        cost="none: USD per second from the catalog",
    ),
)
