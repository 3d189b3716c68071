"""Credentials for Scenario's Generation API (api.cloud.scenario.com), or a gateway in front of it."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from prefect_videogen.blocks.base import VideoProviderBlock
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.scenario import ACCOUNT_PREFIX, DEFAULT_BASE_URL, ScenarioVideoProvider
from prefect_videogen.registry.info import ProviderDocs, ProviderInfo


class ScenarioCredentials(VideoProviderBlock):
    """A Scenario API key and secret (HTTP Basic), and where to send them.

    Jobs are billed in creative units; ``get_client().quote(plan)`` prices a request with
    Scenario's dry run before anything is spent.

    Example:
        ```python
        from prefect_videogen.blocks.scenario import ScenarioCredentials

        creds = ScenarioCredentials.load("BLOCK_NAME")
        async with creds.get_client() as client:
            ...
        ```
    """

    provider_name = "scenario"
    _block_type_name = "Videogen Scenario Credentials"
    _block_type_slug = "videogen-scenario-credentials"
    _description = "Scenario API key and secret for video generation (Sora 2 and others) on api.cloud.scenario.com."

    api_key: SecretStr = Field(description="Scenario API key, sent with the secret as HTTP Basic credentials.")
    api_secret: SecretStr = Field(description="Scenario API secret that goes with the API key.")
    project_id: str | None = Field(
        default=None, description="Optional Scenario project id, sent as ?projectId= on generate and upload calls."
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="API root ending in /v1: Scenario, a gateway or proxy in front of it, or an emulator.",
    )
    account_label: str | None = Field(
        default=None,
        description="Non-secret name of the billed account for cache keys and the cost ledger; "
        "empty means a one-way sha256 prefix of the API key.",
    )
    poll_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        le=60,
        description="Seconds between job status polls (Scenario sends no hint); empty means 1 s growing to 6 s.",
    )

    @field_validator("project_id", "account_label")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    def get_client(self) -> ScenarioVideoProvider:
        """Build the Scenario client; use it as ``async with creds.get_client() as client``."""
        return ScenarioVideoProvider(
            self.api_key.get_secret_value(),
            self.api_secret.get_secret_value(),
            base_url=self.base_url,
            project_id=self.project_id,
            account_label=self.account_label,
            poll_interval=self.poll_interval_seconds,
        )

    def account_id(self) -> str:
        return account_id_for(self.api_key.get_secret_value(), prefix=ACCOUNT_PREFIX, label=self.account_label)


PROVIDER = ProviderInfo(
    name="scenario",
    block=ScenarioCredentials,
    env={
        "api_key": "SCENARIO_API_KEY",
        "api_secret": "SCENARIO_API_SECRET",
        "project_id": "SCENARIO_PROJECT_ID",
        "base_url": "SCENARIO_BASE_URL",
    },
    emulator="prefect_videogen.testing.scenario_emulator:ScenarioEmulator",
    emulator_path="/v1",
    docs=ProviderDocs(
        api="Scenario Generation API (api.cloud.scenario.com)",
        auth="HTTP Basic key:secret",
        cost="`creativeUnitsCost` (+ dry-run quote)",
    ),
)
