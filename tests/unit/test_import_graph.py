"""No import cycle anywhere in the package, counting imports inside functions and TYPE_CHECKING blocks.

A cycle hidden behind a function-level or TYPE_CHECKING import still couples two modules both ways;
the graph is read from the source with ``ast``, so nothing has to be imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import prefect_videogen

PACKAGE_ROOT = Path(prefect_videogen.__file__).resolve().parent


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name (a package by its ``__init__``)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its source."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's own package
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # ``from pkg import sub`` imports the submodule where one exists, else names of pkg.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:  # ``import a.b.c`` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE_ROOT, "prefect_videogen")
    assert len(graph) > 40 and "prefect_videogen.providers.polling" in graph
    assert "prefect_videogen.providers.watch" in graph["prefect_videogen.providers.polling"]
    assert cycles(graph) == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles(graph))


def test_the_check_finds_a_cycle_hidden_in_a_function_or_type_checking_block(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def later():\n    from ..c import thing\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\nthing = 1\n")
    (pkg / "d.py").write_text("import pkg.a\n")  # depends on the cycle, is not part of it
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


# Where Prefect starts: these folders and root modules are plain Python, usable without a Prefect server.
PREFECT_FREE = (
    "providers",
    "storage",
    "spend",
    "batch",
    "catalog",
    "errors",
    "media",
    "models",
    "policy",
    "progress",
    "pipeline",
)


def test_the_prefect_free_layers_import_no_prefect_even_indirectly():
    graph = import_graph(PACKAGE_ROOT, "prefect_videogen")
    modules = module_names(PACKAGE_ROOT, "prefect_videogen")

    def imports_prefect(name: str) -> bool:
        tree = ast.parse(modules[name].read_text())
        return any(
            (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "prefect" for a in node.names))
            or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "prefect" and not node.level)
            for node in ast.walk(tree)
        )

    def reachable(name: str, seen: set[str]) -> set[str]:
        for target in graph[name] - seen:
            seen.add(target)
            reachable(target, seen)
        return seen

    plain = [name for name in graph if name.removeprefix("prefect_videogen.").split(".")[0] in PREFECT_FREE]
    assert "prefect_videogen.spend.ledger" in plain and "prefect_videogen.batch.manifest" in plain
    offenders = {name: sorted(m for m in reachable(name, {name}) if imports_prefect(m)) for name in plain}
    assert {name: found for name, found in offenders.items() if found} == {}
    # The check sees Prefect where it is imported.
    assert imports_prefect("prefect_videogen.tasks.slots") and imports_prefect("prefect_videogen.flows.batch")
