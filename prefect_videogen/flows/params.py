"""Block parameters of a deployment run: saved block documents or empty, never fields given inline.

Anyone who may start a deployment run chooses its parameters, and the run executes on a worker that
holds keys, a file system and a network position. The UI's block picker sends a reference,
``{"$ref": {"block_document_id": ...}}``, which Prefect's ``Flow.validate_parameters`` resolves
with ``Block.load_from_ref`` before the flow body runs; a block loaded that way carries its
``_block_document_id`` (a private attribute: input data cannot set it). Fields given inline are
turned by pydantic into a block with no document id, and Prefect keeps them in the run's parameters
as given, keys included. So in a deployment run such a block is refused before anything runs.
Direct calls and subflow calls (no deployment) keep taking blocks built in code.
"""

from __future__ import annotations

import typing
from typing import Any

from prefect.context import FlowRunContext

from prefect_videogen.errors import InlineBlockRefused


def in_deployment_run() -> bool:
    """Tell whether the current flow run was created from a deployment (UI, API, schedule)."""
    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.deployment_id)


def _block_names(annotation: Any) -> list[str]:
    for meta in getattr(annotation, "__metadata__", ()):  # blocks.ProviderBlocks: the registered blocks
        if hasattr(meta, "block_classes"):
            return [block.__name__ for block in meta.block_classes()]
    names = [arg.__name__ for arg in typing.get_args(annotation) if isinstance(arg, type)]
    return names or [getattr(annotation, "__name__", str(annotation))]


def require_saved_blocks(**blocks: tuple[Any, Any]) -> None:
    """Refuse, in a deployment run, any block parameter that is not a saved block document.

    Args:
        **blocks: parameter name -> (value, its annotation: a block class or a Union of them).

    Raises:
        InlineBlockRefused: naming the first parameter given inline.

    Example:
        ```python
        require_saved_blocks(provider=(provider, ProviderBlocks), storage=(storage, StorageBlocks))
        ```
    """
    if not in_deployment_run():
        return
    for name, (value, annotation) in blocks.items():
        if value is not None and getattr(value, "_block_document_id", None) is None:
            raise InlineBlockRefused(name, _block_names(annotation))
