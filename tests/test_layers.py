"""The house rule, checked: imports between archkd's packages point down the layers (or sideways), never up, and the
package graph has no cycle. Function-level imports count too."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "archkd"
LAYERS = [("cli",), ("api",), ("workflows",), ("search", "process", "teacher"), ("spaces", "distill", "proxies", "report"),
          ("models", "data", "measure", "config", "export", "tracking"), ("errors", "registry", "device", "progress", "rundir")]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _package(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py")


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        pkg = _package(path)
        if pkg in ("__init__", "__main__"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "archkd" and len(parts) > 1 and parts[1] != pkg:
                    graph.setdefault(pkg, set()).add(parts[1])
    return graph


def test_every_package_has_a_layer():
    packages = {_package(p) for p in SRC.rglob("*.py")} - {"__init__", "__main__"}
    assert packages <= set(LAYER), f"give {sorted(packages - set(LAYER))} a layer in LAYERS"


def test_imports_point_down():
    up = [(a, b) for a, deps in _imports().items() for b in deps if LAYER[b] < LAYER[a]]
    assert not up, f"imports pointing up the layers: {up}"


def test_no_cycle_between_packages():
    graph = _imports()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, f"import cycle: {' → '.join(path + [nxt])}"
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in list(graph):
        if node not in state:
            visit(node, [node])


def test_no_private_name_is_imported_across_packages():
    """A package's private modules and names (leading underscore) are its own: another package imports what the
    package's ``__init__`` or a public module exports."""
    crossing = []
    for path in SRC.rglob("*.py"):
        pkg = _package(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
                continue
            parts = node.module.split(".")
            if parts[0] != "archkd" or len(parts) < 2 or parts[1] == pkg:
                continue
            private = [p for p in parts[2:] if p.startswith("_")] + \
                [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
            if private:
                crossing.append(f"{path.relative_to(SRC)}: from {node.module} import {private}")
    assert not crossing, crossing
