"""Credentials for an OpenAI-compatible chat completions API, used to rewrite prompts."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from prefect_videogen.blocks.base import StrictCredentialsBlock
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.chat import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    ChatClient,
)


class ChatCompletionsCredentials(StrictCredentialsBlock):
    """An API key for a chat completions endpoint (OpenAI or any OpenAI-compatible server), and the model.

    Used to rewrite video prompts before they are submitted. ``account_id()`` is the non-secret
    identity that goes into cache keys: ``account_label`` when set, else ``key-sha256-`` followed by
    the first 12 hex digits of the key's sha256 (one-way: the key cannot be recovered from it).

    Example:
        ```python
        from prefect_videogen.blocks.chat import ChatCompletionsCredentials

        creds = ChatCompletionsCredentials.load("BLOCK_NAME")
        async with creds.get_client() as client:
            result = await client.rewrite("a fox in snow", instruction="Make it cinematic.", model=creds.model)
        ```
    """

    _block_type_name = "Videogen Chat Completions Credentials"
    _block_type_slug = "videogen-chat-credentials"
    _description = "API key, endpoint and model of an OpenAI-compatible chat completions API, for prompt rewrites."

    api_key: SecretStr = Field(description="API key (sk-...), sent as a Bearer token.")
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="API root ending in /v1: OpenAI, an OpenAI-compatible gateway or local server, or an emulator.",
    )
    model: str = Field(default=DEFAULT_MODEL, min_length=1, description="Chat model that rewrites the prompts.")
    organization: str | None = Field(
        default=None, description="Optional OpenAI organization id (org-...), sent as the OpenAI-Organization header."
    )
    account_label: str | None = Field(
        default=None,
        description="Non-secret name of the billed account for cache keys; "
        "empty means a one-way hash prefix of the key.",
    )

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model is blank; name a chat model such as gpt-4o-mini")
        return value.strip()

    def get_client(self) -> ChatClient:
        """Build the chat client; use it as ``async with creds.get_client() as client``."""
        return ChatClient(
            self.api_key.get_secret_value(),
            base_url=self.base_url,
            organization=self.organization,
            account_label=self.account_label,
        )

    def account_id(self) -> str:
        """A non-secret identity of the billed account, used in cache keys."""
        return account_id_for(self.api_key.get_secret_value(), label=self.account_label)
