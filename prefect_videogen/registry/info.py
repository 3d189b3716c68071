"""What a provider declares about itself: :class:`ProviderInfo` (see :mod:`prefect_videogen.registry`)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from prefect_videogen.errors import InvalidVideoRequest
from prefect_videogen.providers.base import capabilities_of

if TYPE_CHECKING:
    from prefect_videogen.blocks.base import VideoProviderBlock


@dataclass(frozen=True)
class ProviderFlag:
    """A CLI flag of ``generate``, ``batch`` and ``resume`` that sets a non-secret field of the block."""

    flag: str  #: e.g. ``--project-id``
    field: str  #: the block field it sets
    help: str


@dataclass(frozen=True)
class ProviderDocs:
    """The provider's line in the README's provider table."""

    api: str  #: what the provider is, e.g. "APIFrame v2 (api.apiframe.ai)"
    auth: str  #: how requests are authenticated, e.g. "`X-API-Key`"
    cost: str  #: what the provider reports as the cost of a job, e.g. "`creditCost`"


@dataclass(frozen=True)
class ProviderInfo:
    """Everything the package needs to know about a provider, besides its client and catalog rows.

    Example:
        ```python
        PROVIDER = ProviderInfo(
            name="apiframe",
            block=APIFrameCredentials,
            env={"api_key": "APIFRAME_API_KEY", "base_url": "APIFRAME_BASE_URL"},
            emulator="prefect_videogen.testing.apiframe_emulator:APIFrameEmulator",
            docs=ProviderDocs(api="APIFrame v2", auth="`X-API-Key`", cost="`creditCost`"),
        )
        ```
    """

    name: str  #: the CLI's ``--provider`` value, the catalog's provider key and ``block.provider_name``
    block: type[VideoProviderBlock]
    docs: ProviderDocs
    #: block field -> environment variable the CLI reads it from (keys never come from flags).
    env: Mapping[str, str] = field(default_factory=dict)
    flags: tuple[ProviderFlag, ...] = ()
    #: ``"module:Class"`` of its emulator (an ``EmulatorState`` taking ``latency_seconds``); None: none.
    emulator: str | None = None
    #: The API root under the emulator's address (``/v1`` where the real API root ends in ``/v1``).
    emulator_path: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))

    def capabilities(self) -> list[str]:
        """What the client can do beyond submit / read / stream: ``quotes``, ``lists jobs``, ..."""
        return capabilities_of(self.block.client_class())

    def emulator_class(self) -> Any:
        """The emulator's class, imported now. Raises InvalidVideoRequest when there is none."""
        if self.emulator is None:
            raise InvalidVideoRequest("provider", self.name, "a provider with an emulator")
        module, _, attribute = self.emulator.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def block_from_env(self, environ: Mapping[str, str], **fields: Any) -> VideoProviderBlock:
        """The block built from ``environ`` (through :attr:`env`) and ``fields`` (they win).

        Raises:
            InvalidVideoRequest: a required field is neither given nor in the environment; names the variables.
        """
        values = {name: environ[var] for name, var in self.env.items() if environ.get(var)}
        values.update({name: value for name, value in fields.items() if value is not None})
        missing = [
            self.env.get(name, name)
            for name, info in self.block.model_fields.items()
            if info.is_required() and name not in values
        ]
        if missing:
            raise InvalidVideoRequest(
                "provider", self.name, f"credentials: set {' and '.join(missing)} or pass --block NAME"
            )
        return self.block(**values)
