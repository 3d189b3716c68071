"""Credentials of Replicate (api.replicate.com/v1)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.replicate import ACCOUNT_PREFIX, DEFAULT_BASE_URL, ReplicateVideoProvider
from prefect_videogen.registry.info import ProviderDocs, ProviderInfo


class ReplicateCredentials(VideoProviderBlock):
    """A Replicate API token, and where to send it: video models (Veo, Seedance...) as predictions.

    Replicate deletes outputs one hour after a prediction: videos are copied at once, from its
    delivery CDN, without the token.

    Example:
        ```python
        from prefect_videogen.blocks.replicate import ReplicateCredentials

        creds = ReplicateCredentials.load("BLOCK_NAME")
        ```
    """

    provider_name = "replicate"
    _block_type_name = "Videogen Replicate Credentials"
    _block_type_slug = "videogen-replicate-credentials"

    api_token: SecretStr = Field(description="Replicate API token (r8_...), sent as the Authorization: Bearer header.")
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="API root ending in /v1; change it for a proxy, a gateway or the local emulator.",
    )
    account_label: str | None = Field(
        default=None,
        description=(
            "Non-secret name of the billed account, used in cache keys and the cost ledger; "
            "empty means a short one-way hash prefix of the token."
        ),
    )
    poll_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Fixed wait between prediction polls (Replicate sends no poll hint); empty means a growing 1 to 6 s wait."
        ),
    )

    def get_client(self) -> ReplicateVideoProvider:
        return ReplicateVideoProvider(
            self.api_token.get_secret_value(),
            base_url=self.base_url,
            account_label=self.account_label,
            poll_interval_seconds=self.poll_interval_seconds,
        )

    def account_id(self) -> str:
        """``account_label``, else ``replicate-`` and 12 hex digits of sha256(token): not reversible."""
        return account_id_for(self.api_token.get_secret_value(), prefix=ACCOUNT_PREFIX, label=self.account_label)


PROVIDER = ProviderInfo(
    name="replicate",
    block=ReplicateCredentials,
    env={"api_token": "REPLICATE_API_TOKEN", "base_url": "REPLICATE_BASE_URL"},
    emulator="prefect_videogen.testing.replicate_emulator:ReplicateEmulator",
    emulator_path="/v1",
    docs=ProviderDocs(
        api="Replicate predictions (api.replicate.com/v1): Veo, Seedance...",
        auth="Bearer token",
        cost="none (run time only): USD per second from the catalog",
    ),
)
