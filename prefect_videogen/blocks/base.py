"""The block every provider's credentials derive from."""

from __future__ import annotations

import asyncio
import hashlib
import typing
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar
from urllib.parse import urlsplit

from prefect.blocks.abstract import CredentialsBlock
from pydantic import ConfigDict, SecretBytes, SecretStr, field_validator, model_validator

from prefect_videogen.providers.base import VideoProvider

LOGO_URL = "https://raw.githubusercontent.com/PrefectHQ/prefect/main/docs/images/logos/prefect-logo-mark.png"
DOCS_URL = "https://github.com/prefect-videogen/prefect-videogen#readme"


# ABC as a direct base: Prefect registers every Block subclass it imports in its block catalog,
# except those that list ABC among their bases (prefect.utilities.dispatch); these two are bases
# of the real blocks, and a form for them would make a useless block.
class StrictCredentialsBlock(CredentialsBlock, ABC):
    """Credentials that refuse what a plain block would silently accept.

    Unknown keyword arguments are refused by name, ``base_url`` (where a block has one) must be
    http(s), secrets must not be blank, and validation errors never echo the input (secrets).
    """

    model_config = ConfigDict(hide_input_in_errors=True)
    _logo_url = LOGO_URL
    _documentation_url = DOCS_URL

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_fields(cls, values: Any) -> Any:
        # Blocks allow extra keys, so a misspelled field (api_kye=...) would be dropped silently.
        # block_type_slug and _-prefixed keys are Prefect's own, added when a block is serialized.
        if isinstance(values, dict):
            unknown = sorted(
                key
                for key in values
                if key not in cls.model_fields and not key.startswith("_") and key != "block_type_slug"
            )
            if unknown:
                raise ValueError(
                    f"unknown field(s) {', '.join(unknown)} for {cls.__name__}; allowed: {', '.join(cls.model_fields)}"
                )
        return values

    @field_validator("base_url", check_fields=False)
    @classmethod
    def _http_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url={value!r} must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _secrets_not_blank(self) -> StrictCredentialsBlock:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and not value.get_secret_value().strip():
                raise ValueError(f"{name} is blank")
        return self


# Open provider clients per event loop and configuration: (client, number of users).
_SHARED_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, list[Any]]] = (
    weakref.WeakKeyDictionary()
)


# Block class -> the client class its get_client returns (VideoProviderBlock.client_class).
_CLIENT_CLASSES: weakref.WeakKeyDictionary[type, type[VideoProvider]] = weakref.WeakKeyDictionary()


class VideoProviderBlock(StrictCredentialsBlock, ABC):
    """Base of the provider credentials blocks: builds a provider client with ``get_client()``.

    The tasks use ``shared_client()``: the task runs of one flow run share one client (one
    connection pool, one ``JobWatcher``) while any of them uses it.
    """

    provider_name: ClassVar[str]

    @abstractmethod
    def get_client(self) -> VideoProvider:
        """Build a client for this provider; use it as ``async with block.get_client() as client``.

        Annotate the return type with the client class: what the client can do (quotes, job
        listing, ...: the protocols of :mod:`prefect_videogen.providers.base`) is read from it.
        """

    @classmethod
    def client_class(cls) -> type[VideoProvider]:
        """The class ``get_client`` returns, read from its return annotation (no client is built).

        Read once per block class (the registry reads it when the provider is registered), so a
        ``get_client`` wrapped later (a test's monkeypatch) does not change what the block declares.

        Raises:
            TypeError: ``get_client`` is not annotated with a ``VideoProvider`` subclass.
        """
        known = _CLIENT_CLASSES.get(cls)
        if known is not None:
            return known
        try:
            hint = typing.get_type_hints(cls.get_client).get("return")
        except NameError as exc:
            raise TypeError(f"{cls.__name__}.get_client's return annotation cannot be resolved: {exc}") from exc
        if not (isinstance(hint, type) and issubclass(hint, VideoProvider)) or hint is VideoProvider:
            raise TypeError(
                f"{cls.__name__}.get_client must be annotated with the VideoProvider subclass it returns, not {hint!r}"
            )
        _CLIENT_CLASSES[cls] = hint
        return hint

    @classmethod
    def supports(cls, capability: type) -> bool:
        """Whether this block's client implements ``capability`` (e.g. ``Quotes``), before any client exists."""
        return issubclass(cls.client_class(), capability)

    @asynccontextmanager
    async def shared_client(self) -> AsyncIterator[VideoProvider]:
        """A client shared by everything in this event loop that uses the same configuration at once.

        Closed when its last user is done. Hundreds of concurrent task runs (a batch's waits) then
        keep one pool of connections, and their status reads are shared by one watcher, instead
        of each opening its own connections and polling on its own.
        """
        clients = _SHARED_CLIENTS.setdefault(asyncio.get_running_loop(), {})
        key = self._configuration_key()
        entry = clients.get(key)
        if entry is None:
            entry = clients[key] = [self.get_client(), 0]
        entry[1] += 1
        try:
            yield entry[0]
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                if clients.get(key) is entry:
                    del clients[key]
                await entry[0].aclose()

    def _configuration_key(self) -> str:
        """Tells configurations apart, secrets included, without keeping any secret in the key."""
        values = []
        for name in sorted(type(self).model_fields):
            value = getattr(self, name)
            values.append((name, value.get_secret_value() if isinstance(value, (SecretStr, SecretBytes)) else value))
        return f"{type(self).__name__}:{hashlib.sha256(repr(values).encode()).hexdigest()}"

    @abstractmethod
    def account_id(self) -> str:
        """A non-secret identity of the billed account, used in cache keys and the ledger.

        Computed from the block's fields: building a client here would open (and leak) a connection pool.
        """
