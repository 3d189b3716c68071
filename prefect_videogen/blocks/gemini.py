"""Credentials of Google's Gemini API (Veo video models)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.gemini import ACCOUNT_PREFIX, DEFAULT_BASE_URL, GeminiVideoProvider
from prefect_videogen.registry.info import ProviderDocs, ProviderInfo


class GeminiCredentials(VideoProviderBlock):
    """A Gemini API key, and where to send it: Veo video models through ``predictLongRunning``.

    The key travels in the ``x-goog-api-key`` header, to the API's own origin only (never in a URL,
    never to a storage redirect). Gemini has no idempotency key and no listing of operations: a
    submit whose answer was lost is not sent again, its claim names it instead.

    Example:
        ```python
        from prefect_videogen.blocks.gemini import GeminiCredentials

        creds = GeminiCredentials.load("BLOCK_NAME")
        ```
    """

    provider_name = "gemini"
    _block_type_name = "Videogen Gemini Credentials"
    _block_type_slug = "videogen-gemini-credentials"
    _description = "Gemini API key for Veo video generation on generativelanguage.googleapis.com."

    api_key: SecretStr = Field(description="Gemini API key (Google AI Studio), sent as the x-goog-api-key header.")
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="API root with its version; change it for a proxy, a gateway or the local emulator.",
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
        description="Fixed wait between operation polls (Gemini sends no poll hint); empty means a growing 1 to 6 s wait.",
    )

    def get_client(self) -> GeminiVideoProvider:
        return GeminiVideoProvider(
            self.api_key.get_secret_value(),
            base_url=self.base_url,
            account_label=self.account_label,
            poll_interval_seconds=self.poll_interval_seconds,
        )

    def account_id(self) -> str:
        """``account_label``, else ``gemini-`` and 12 hex digits of sha256(key): not reversible."""
        return account_id_for(self.api_key.get_secret_value(), prefix=ACCOUNT_PREFIX, label=self.account_label)


PROVIDER = ProviderInfo(
    name="gemini",
    block=GeminiCredentials,
    env={"api_key": "GEMINI_API_KEY", "base_url": "GEMINI_BASE_URL"},
    emulator="prefect_videogen.testing.gemini_emulator:GeminiEmulator",
    emulator_path="/v1beta",
    docs=ProviderDocs(
        api="Gemini API, Veo (generativelanguage.googleapis.com)",
        auth="`x-goog-api-key`",
        cost="none: USD per second from the catalog",
    ),
)
