"""Credentials of fal (queue.fal.run)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.fal import ACCOUNT_PREFIX, DEFAULT_BASE_URL, FalVideoProvider
from prefect_videogen.registry.info import ProviderDocs, ProviderFlag, ProviderInfo


class FalCredentials(VideoProviderBlock):
    """A fal key, and where to send it: many video models (Veo, Kling, Seedance...) through fal's queue.

    Every request id fal answers is recorded before the wait starts, so a crash never loses a paid
    request. Videos are copied at once from fal's CDN, without the key.

    Example:
        ```python
        from prefect_videogen.blocks.fal import FalCredentials

        creds = FalCredentials.load("BLOCK_NAME")
        ```
    """

    provider_name = "fal"
    _block_type_name = "Videogen fal Credentials"
    _block_type_slug = "videogen-fal-credentials"

    api_key: SecretStr = Field(description="fal key (key_id:key_secret), sent as the Authorization: Key header.")
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="Queue root; change it for a proxy, a gateway or the local emulator.",
    )
    account_label: str | None = Field(
        default=None,
        description=(
            "Non-secret name of the billed account, used in cache keys and the cost ledger; "
            "empty means a short one-way hash prefix of the key."
        ),
    )
    media_retention_seconds: int | None = Field(
        default=None,
        ge=60,
        description=(
            "How long fal keeps the generated media, sent as X-Fal-Object-Lifecycle-Preference; "
            "empty keeps fal's default."
        ),
    )
    poll_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Fixed wait between status polls (fal sends no poll hint); empty means a growing 1 to 6 s wait.",
    )

    def get_client(self) -> FalVideoProvider:
        return FalVideoProvider(
            self.api_key.get_secret_value(),
            base_url=self.base_url,
            account_label=self.account_label,
            media_retention_seconds=self.media_retention_seconds,
            poll_interval_seconds=self.poll_interval_seconds,
        )

    def account_id(self) -> str:
        """``account_label``, else ``fal-`` and 12 hex digits of sha256(key): not reversible."""
        return account_id_for(self.api_key.get_secret_value(), prefix=ACCOUNT_PREFIX, label=self.account_label)


PROVIDER = ProviderInfo(
    name="fal",
    block=FalCredentials,
    env={"api_key": "FAL_KEY", "base_url": "FAL_BASE_URL"},
    flags=(
        ProviderFlag(
            "--media-retention-seconds",
            "media_retention_seconds",
            "how long fal keeps the generated media (X-Fal-Object-Lifecycle-Preference)",
        ),
    ),
    emulator="prefect_videogen.testing.fal_emulator:FalEmulator",
    docs=ProviderDocs(
        api="fal queue (queue.fal.run): Veo, Kling, Seedance...",
        auth="`Authorization: Key`",
        cost="none: USD per second from the catalog",
    ),
)
