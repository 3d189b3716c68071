"""Credentials of APIFrame v2 (api.apiframe.ai)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.apiframe import ACCOUNT_PREFIX, DEFAULT_BASE_URL, APIFrameVideoProvider
from prefect_videogen.registry.info import ProviderDocs, ProviderInfo


class APIFrameCredentials(VideoProviderBlock):
    """An APIFrame API key, and where to send it: Sora 2 and Sora 2 Pro through APIFrame v2.

    Submits carry an Idempotency-Key, so APIFrame bills a retried submit once. Videos are
    downloaded from APIFrame's CDN without the key.

    Example:
        ```python
        from prefect_videogen.blocks.apiframe import APIFrameCredentials

        creds = APIFrameCredentials.load("BLOCK_NAME")
        ```
    """

    provider_name = "apiframe"
    _block_type_name = "Videogen APIFrame Credentials"
    _block_type_slug = "videogen-apiframe-credentials"

    api_key: SecretStr = Field(description="APIFrame API key (afk_...), sent as the X-API-Key header.")
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="API root; change it for a gateway, a proxy, a regional endpoint or the local emulator.",
    )
    account_label: str | None = Field(
        default=None,
        description=(
            "Non-secret name of the billed account, used in cache keys and the cost ledger; "
            "empty means a short one-way hash prefix of the key."
        ),
    )
    poll_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Fixed wait between status polls (APIFrame sends no poll hint); empty means a growing 1 to 6 s wait."
        ),
    )

    def get_client(self) -> APIFrameVideoProvider:
        return APIFrameVideoProvider(
            self.api_key.get_secret_value(),
            base_url=self.base_url,
            account_label=self.account_label,
            poll_interval_seconds=self.poll_interval_seconds,
        )

    def account_id(self) -> str:
        """``account_label``, else ``apiframe-`` and 12 hex digits of sha256(key): not reversible."""
        return account_id_for(self.api_key.get_secret_value(), prefix=ACCOUNT_PREFIX, label=self.account_label)


PROVIDER = ProviderInfo(
    name="apiframe",
    block=APIFrameCredentials,
    env={"api_key": "APIFRAME_API_KEY", "base_url": "APIFRAME_BASE_URL"},
    emulator="prefect_videogen.testing.apiframe_emulator:APIFrameEmulator",
    docs=ProviderDocs(api="APIFrame v2 (api.apiframe.ai)", auth="`X-API-Key`", cost="`creditCost`"),
)
