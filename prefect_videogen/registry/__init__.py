"""The provider registry: the one place that lists the video providers by name.

Each provider declares itself once, next to its block, as a :class:`ProviderInfo`: its name, its
credentials block, the environment variables the CLI builds that block from, any extra CLI flags,
its emulator (an import path, so that importing the registry never imports the test emulators) and
a line for the README's provider table. What the provider can do beyond submit / read / stream
(quotes, job listing, finding a lost job, idempotent submits) is not declared here: it is read from
the protocols its client class implements (:mod:`prefect_videogen.providers.base`).

The CLI's provider choices and environment names, the ``emulator`` command, the flows' block
pickers (``blocks.ProviderBlocks``) and the README's provider table all read this registry.

Adding a provider to this package: a client in ``providers/X.py``, a block in ``blocks/X.py``
ending with ``PROVIDER = ProviderInfo(...)``, that module's path in :data:`BUILTIN_PROVIDERS`, its
catalog rows and its emulator. Another package adds one without touching this one, through the
``prefect_videogen.providers`` entry-point group (a ``ProviderInfo`` object, or a module with a
``PROVIDER`` attribute), or by calling :func:`register` at run time.

Example:
    ```python
    from prefect_videogen import registry

    info = registry.get("apiframe")
    print(info.block.__name__, info.env["api_key"], info.capabilities())
    ```

``python -m prefect_videogen.registry --markdown`` prints the README's provider table.
"""

from prefect_videogen.registry.core import (
    BUILTIN_PROVIDERS,
    ENTRY_POINT_GROUP,
    RegisteredProviderBlocks,
    block_classes,
    emulator_names,
    get,
    load,
    load_entry_points,
    main,
    markdown,
    names,
    providers,
    register,
    unregister,
)
from prefect_videogen.registry.info import ProviderDocs, ProviderFlag, ProviderInfo

__all__ = [
    "BUILTIN_PROVIDERS",
    "ENTRY_POINT_GROUP",
    "ProviderDocs",
    "ProviderFlag",
    "ProviderInfo",
    "RegisteredProviderBlocks",
    "block_classes",
    "emulator_names",
    "get",
    "load",
    "load_entry_points",
    "main",
    "markdown",
    "names",
    "providers",
    "register",
    "unregister",
]
