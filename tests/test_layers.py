"""The layering docs/architecture.md claims: packages and top-level modules of ``infuser`` import one
another without circles, so each sits on a layer above everything it imports."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "src" / "infuser"


def _unit(module: str) -> str:
    """The unit of layering a module belongs to: its sub-package (``rl``, ``eval``...) or itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(path: Path) -> set[str]:
    """Every ``infuser.*`` module ``path`` imports, wherever the import stands (lazy ones included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("infuser.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("infuser."):
            found.add(node.module)
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SOURCE.rglob("*.py"):
        unit = _unit(".".join(("infuser", *path.relative_to(SOURCE).with_suffix("").parts)))
        targets = {_unit(module) for module in _imports(path)} - {unit, "__init__"}
        graph.setdefault(unit, set()).update(targets)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one unit (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(unit: str) -> None:
        index[unit] = low[unit] = len(index)
        stack.append(unit)
        for target in graph.get(unit, ()):
            if target not in index:
                visit(target)
                low[unit] = min(low[unit], low[target])
            elif target in stack:
                low[unit] = min(low[unit], index[target])
        if low[unit] == index[unit]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == unit:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for unit in sorted(graph):
        if unit not in index:
            visit(unit)
    return circles


def test_units_import_each_other_without_circles():
    graph = _graph()
    assert {"loop", "rl", "rollout", "config", "advantages"} <= set(graph)
    circles = _circles(graph)
    detail = {tuple(group): {unit: sorted(graph[unit] & set(group)) for unit in group} for group in circles}
    assert not circles, f"import circles between units (each unit: what it imports of its circle): {detail}"


def test_the_bottom_layer_imports_nothing_above_it():
    """config.py is parsed by the command line without the training stack: it may name only
    modules of the bottom layer (the advantage estimators, the model configuration, the lazy-import
    helper)."""
    assert _graph()["config"] <= {"advantages", "model_config", "lazy"}
    assert _graph()["model_config"] <= {"lazy"}
