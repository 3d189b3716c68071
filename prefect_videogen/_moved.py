"""Old import paths of moved modules, kept without files at the old paths.

Prefect persists task results with cloudpickle, which names a class by its module path: a result
stored before a module moved names ``prefect_videogen.costs.Cost``. Importing an old path gives the
module at its new path (the same module object), so such results still load and old imports still
work. Files are not left at the old paths so that version control sees the moves as moves.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

#: Old module path -> where the module lives now.
MOVED = {
    "prefect_videogen.costs": "prefect_videogen.spend.costs",
    "prefect_videogen.budget": "prefect_videogen.spend.budget",
    "prefect_videogen.ledger": "prefect_videogen.spend.ledger",
    "prefect_videogen.claims": "prefect_videogen.spend.claims",
    "prefect_videogen.expansion": "prefect_videogen.batch.expansion",
    "prefect_videogen.manifest": "prefect_videogen.batch.manifest",
    "prefect_videogen.generation": "prefect_videogen.pipeline",
    "prefect_videogen.artifacts": "prefect_videogen.tasks.artifacts",
    "prefect_videogen.slots": "prefect_videogen.tasks.slots",
}


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of an old path (and only those) with the module at its new path."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system has just set the alias's spec on the real module: give it its own back.
        alias = module.__spec__.name if module.__spec__ else ""
        if alias in self._specs:
            module.__spec__ = self._specs.pop(alias)


def install() -> None:
    """Add the finder once, first: it answers only the old paths above, which no file may take again."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
