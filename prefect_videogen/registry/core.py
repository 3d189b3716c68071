"""The registry itself: register, look up and list providers (see :mod:`prefect_videogen.registry`)."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import re
import sys
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import GetCoreSchemaHandler, SecretBytes, SecretStr
from pydantic_core import CoreSchema

from prefect_videogen.errors import InvalidVideoRequest
from prefect_videogen.registry.info import ProviderInfo

if TYPE_CHECKING:
    from prefect_videogen.blocks.base import VideoProviderBlock

logger = logging.getLogger("prefect_videogen.registry")

#: The package's own providers: modules that define a ``PROVIDER``, in the order the CLI and docs list them.
BUILTIN_PROVIDERS = (
    "prefect_videogen.blocks.local",
    "prefect_videogen.blocks.openai",
    "prefect_videogen.blocks.scenario",
    "prefect_videogen.blocks.apiframe",
    "prefect_videogen.blocks.fal",
    "prefect_videogen.blocks.replicate",
    "prefect_videogen.blocks.gemini",
)
#: Other packages' providers: each entry point names a ``ProviderInfo`` or a module with a ``PROVIDER``.
ENTRY_POINT_GROUP = "prefect_videogen.providers"

_NAME = re.compile(r"[a-z][a-z0-9-]*")
_ENV_VAR = re.compile(r"[A-Z][A-Z0-9_]*")
_FLAG = re.compile(r"--[a-z][a-z0-9-]*")
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


_REGISTRY: dict[str, ProviderInfo] = {}
_loaded: set[str] = set()  # what load() has done: "builtins", "entry points"


def _secret(block: type[VideoProviderBlock], name: str) -> bool:
    annotation = block.model_fields[name].annotation
    return any(arg in (SecretStr, SecretBytes) for arg in (annotation, *typing.get_args(annotation)))


def _check(info: ProviderInfo) -> None:
    """Refuse a declaration the CLI, the flows or the docs could not use, naming what is wrong."""
    if not isinstance(info, ProviderInfo):
        raise TypeError(f"register() takes a ProviderInfo, not {type(info).__name__}")
    if not _NAME.fullmatch(info.name):
        raise ValueError(f"provider name {info.name!r} must be lowercase letters, digits and dashes")
    from prefect_videogen.blocks.base import VideoProviderBlock  # here: the blocks import this package

    if not (isinstance(info.block, type) and issubclass(info.block, VideoProviderBlock)):
        raise TypeError(f"provider {info.name!r}: block must be a VideoProviderBlock subclass, not {info.block!r}")
    if getattr(info.block, "provider_name", None) != info.name:
        raise ValueError(
            f"provider {info.name!r}: {info.block.__name__}.provider_name is "
            f"{getattr(info.block, 'provider_name', None)!r}; they must match"
        )
    info.block.client_class()  # raises TypeError naming the block when get_client is not annotated
    fields = info.block.model_fields
    for name, var in info.env.items():
        if name not in fields:
            raise ValueError(f"provider {info.name!r}: env names field {name!r}, which {info.block.__name__} lacks")
        if not _ENV_VAR.fullmatch(var):
            raise ValueError(f"provider {info.name!r}: {var!r} is not an environment variable name")
    for flag in info.flags:
        if not _FLAG.fullmatch(flag.flag):
            raise ValueError(f"provider {info.name!r}: CLI flag {flag.flag!r} must look like --lower-case")
        if flag.field not in fields:
            raise ValueError(f"provider {info.name!r}: flag {flag.flag} sets {flag.field!r}, which is no block field")
        if _secret(info.block, flag.field):
            # A flag lands in shell history and process listings: secrets come from the environment only.
            raise ValueError(f"provider {info.name!r}: flag {flag.flag} would set the secret {flag.field!r}")
    if info.emulator is not None and not _IMPORT_PATH.fullmatch(info.emulator):
        raise ValueError(f"provider {info.name!r}: emulator {info.emulator!r} must be 'module:Class'")
    for other in _REGISTRY.values():
        for mine in info.flags:
            for theirs in other.flags:
                if mine.flag == theirs.flag and mine.field != theirs.field and other.name != info.name:
                    raise ValueError(
                        f"provider {info.name!r}: flag {mine.flag} sets {mine.field!r}, "
                        f"but {other.name!r} uses it for {theirs.field!r}"
                    )


def register(info: ProviderInfo) -> ProviderInfo:
    """Add a provider; the CLI, the flows' block pickers and the docs list it from now on.

    Registering the same declaration again does nothing; another one under a taken name is refused.

    Raises:
        ValueError / TypeError: the declaration is unusable, or its name is taken; the message says why.
    """
    _check(info)
    current = _REGISTRY.get(info.name)
    if current is not None and current != info:
        raise ValueError(f"provider {info.name!r} is already registered (by {current.block.__module__})")
    _REGISTRY[info.name] = info
    return info


def unregister(name: str) -> None:
    """Remove a provider (tests register toy providers and remove them again)."""
    _REGISTRY.pop(name, None)


def _declared(target: Any, origin: str) -> ProviderInfo:
    info = getattr(target, "PROVIDER", target)
    if not isinstance(info, ProviderInfo):
        raise TypeError(f"{origin} is neither a ProviderInfo nor a module with PROVIDER = ProviderInfo(...)")
    return info


def load_entry_points() -> None:
    """Register the providers other installed packages declare in the ``prefect_videogen.providers`` group.

    A plugin that fails to load is skipped with a warning naming it: one broken package must not
    take the CLI and the flows down with it.
    """
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            register(_declared(entry.load(), f"entry point {entry.name} = {entry.value}"))
        except Exception as exc:
            logger.warning("provider plugin %s (%s) not loaded: %s", entry.name, entry.value, exc)
    _loaded.add("entry points")


def load() -> None:
    """Register the built-in providers, then the installed plugins' (once; later calls do nothing)."""
    if "builtins" not in _loaded:
        for path in BUILTIN_PROVIDERS:
            register(_declared(importlib.import_module(path), path))
        _loaded.add("builtins")
    if "entry points" not in _loaded:
        load_entry_points()


def providers() -> tuple[ProviderInfo, ...]:
    """Every registered provider: the built-in ones first, in :data:`BUILTIN_PROVIDERS` order."""
    load()
    return tuple(_REGISTRY.values())


def names() -> tuple[str, ...]:
    """The registered providers' names (the CLI's ``--provider`` choices)."""
    return tuple(info.name for info in providers())


def emulator_names() -> tuple[str, ...]:
    """The providers that have an emulator (the CLI's ``emulator`` choices)."""
    return tuple(info.name for info in providers() if info.emulator)


def get(name: str) -> ProviderInfo:
    """The provider called ``name``.

    Raises:
        InvalidVideoRequest: no such provider; the message lists the registered ones.
    """
    load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidVideoRequest("provider", name, list(names())) from None


def block_classes() -> tuple[type[VideoProviderBlock], ...]:
    """The registered providers' block classes (the flows' ``provider`` parameter takes any of them)."""
    return tuple(info.block for info in providers())


class RegisteredProviderBlocks:
    """Pydantic metadata: the Union of the registered providers' blocks, read when a schema is built.

    A plain ``Union[...]`` written here would be frozen at import: a provider registered later (a
    plugin, a test's toy provider) would be refused by the flows' parameter validation, and missing
    from the UI's block picker. Prefect builds a flow's parameter schema for a deployment, and
    validates a run's parameters, through pydantic at that moment (``parameter_schema``,
    ``Flow.validate_parameters``), so this metadata (``blocks.ProviderBlocks``) gives both the registry as it is then: the same
    ``anyOf`` of block references the UI renders as a picker, and the same validation a Union does.
    (``Flow.parameters``, computed once when the flow is decorated, is not what deployments use.)
    """

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        # typing.Union over a tuple known only now; "X | Y" cannot be spelled for it.
        return handler.generate_schema(typing.Union[block_classes()])  # noqa: UP007

    def block_classes(self) -> tuple[type[VideoProviderBlock], ...]:
        return block_classes()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """The README's provider table, one row per registered provider."""
    lines = [
        "| provider | block | API | auth | cost reported | client can | environment | emulator |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for info in providers():
        env = ", ".join(f"`{var}`" for var in info.env.values()) or "none"
        lines.append(
            "| "
            + " | ".join(
                _cell(cell)
                for cell in (
                    f"`{info.name}`",
                    f"`{info.block.__name__}`",
                    info.docs.api,
                    info.docs.auth,
                    info.docs.cost,
                    ", ".join(info.capabilities()) or "-",
                    env,
                    f"`prefect-videogen emulator {info.name}`" if info.emulator else "-",
                )
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m prefect_videogen.registry [--markdown]``: list the providers, or print the README's table."""
    parser = argparse.ArgumentParser(prog="python -m prefect_videogen.registry", description="The video providers.")
    parser.add_argument("--markdown", action="store_true", help="print the README's provider table")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown())
    else:
        for info in providers():
            print(f"{info.name:12} {info.block.__name__:28} {', '.join(info.capabilities())}")
    return 0
