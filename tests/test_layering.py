"""The floor plan of refetch/: every import, module level or inside a function, runs one way.

    vocabulary (the top-level ``_*.py``)  <-  backends/  <-  _fanout/  <-  _hub/  <-  _asgi/
    _polling/ and leases/: on the vocabulary and backends/ only
    the public faces (refetch, metrics, cli, client): anything

Imports inside one part are free, but no two modules may import each other in a loop,
directly or through others (a loop is how "one concept per module" quietly erodes).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "refetch"

#: Each part and the parts it may import (besides itself). A module's part is its first
#: path component under refetch/; the top-level private modules are the vocabulary.
ALLOWED: dict[str, frozenset[str]] = {
    "vocabulary": frozenset(),
    "backends": frozenset({"vocabulary"}),
    "_fanout": frozenset({"vocabulary"}),
    "_hub": frozenset({"vocabulary", "backends", "_fanout"}),
    "_asgi": frozenset({"vocabulary", "_fanout", "_hub"}),
    "_polling": frozenset({"vocabulary", "backends"}),
    "leases": frozenset({"vocabulary", "backends", "_polling"}),
    # The public faces hand names on; nothing below them may import them.
    "face": frozenset({"vocabulary", "backends", "_fanout", "_hub", "_asgi", "_polling", "leases"}),
}

#: Top-level modules that are not vocabulary: the package's faces.
FACES = frozenset(
    {
        "refetch",
        "refetch.metrics",
        "refetch.cli",
        "refetch.client",
        "refetch.fastapi",
        "refetch.routes",
        "refetch.testing",
    }
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def part_of(module: str) -> str:
    if module in FACES:
        return "face"
    parts = module.split(".")
    if len(parts) == 2 and parts[1].startswith("_"):
        return "vocabulary"
    return parts[1]


def imports_of(module: str) -> set[str]:
    """The refetch modules ``module`` imports, anywhere in it (functions and
    ``TYPE_CHECKING`` blocks too: a lazy import is still a dependency)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            # ``from . import client`` imports the module refetch.client.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: imports_of(module) for module in MODULES}


def test_the_plan_names_every_part() -> None:
    assert {part_of(m) for m in MODULES} <= set(ALLOWED), sorted(
        {part_of(m) for m in MODULES} - set(ALLOWED)
    )


def test_imports_run_one_way() -> None:
    wrong = [
        f"{module} ({part_of(module)}) imports {target} ({part_of(target)})"
        for module, targets in GRAPH.items()
        for target in sorted(targets)
        if part_of(target) != part_of(module) and part_of(target) not in ALLOWED[part_of(module)]
    ]
    assert not wrong, "imports against the floor plan:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    # Depth-first search; a grey node met again closes a loop.
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(GRAPH, white)
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        color[node] = grey
        path.append(node)
        for target in sorted(GRAPH[node]):
            if color[target] == grey:
                cycles.append([*path[path.index(target) :], target])
            elif color[target] == white:
                visit(target, path)
        path.pop()
        color[node] = black

    for node in sorted(GRAPH):
        if color[node] == white:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_function_level_and_relative_imports() -> None:
    # The lazy driver imports of the backend factory are edges too.
    assert "refetch.backends.redis" in GRAPH["refetch.backends._factory"]
    assert "refetch._fanout.sink" in GRAPH["refetch._hub.sequencer"]
