"""No import circles in ``skinedge/`` or ``tools/skinedge_tools/``: the path of data stays one-way.

The graph is read from the source with ``ast`` (nothing is imported, so TensorFlow is never loaded): every
``import``/``from ... import`` of a module of the same package, wherever it sits (top level, inside a function,
under ``if TYPE_CHECKING``), is an edge. ``from pkg import name`` counts as an edge to ``pkg.name`` when that is a
module, else to ``pkg``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"skinedge": ROOT / "skinedge", "skinedge_tools": ROOT / "tools" / "skinedge_tools"}


def module_files(package: str, folder: Path) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` under ``folder`` (``pkg/__init__.py`` is ``pkg``)."""
    out = {}
    for path in sorted(folder.rglob("*.py")):
        parts = [package, *path.relative_to(folder).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that module ``name`` (file ``path``) imports."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in modules else stem for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` also imports a and a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph(package: str, folder: Path) -> dict[str, set[str]]:
    files = module_files(package, folder)
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle (``[a, b, ..., a]``), or None if the graph is acyclic (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_circles_and_passes_chains() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"y2"}, "y2": {"y"}}) == ["y", "y2", "y"]


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Function-level, TYPE_CHECKING, relative and ``from pkg import module`` imports are all edges."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import X\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import c\n")
    (pkg / "c.py").write_text("from .sub import d\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "d.py").write_text("from .. import a\nimport numpy\n")
    edges = graph("pkg", pkg)
    assert edges["pkg.a"] == {"pkg.b"} and edges["pkg.b"] == {"pkg.c"}
    assert edges["pkg.c"] == {"pkg.sub.d"} and edges["pkg.sub.d"] == {"pkg.a"}
    assert find_cycle(edges) == ["pkg.a", "pkg.b", "pkg.c", "pkg.sub.d", "pkg.a"]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_circles(package: str) -> None:
    folder = PACKAGES[package]
    if not folder.exists():
        pytest.skip(f"{folder} is not in this checkout")
    edges = graph(package, folder)
    assert len(edges) > 5, sorted(edges)  # the package was found
    cycle = find_cycle(edges)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_core_imports_none_of_its_surfaces() -> None:
    """The core (DESIGN.md) never imports a surface: cli, video, serve, evaluation."""
    edges = graph("skinedge", PACKAGES["skinedge"])
    core = ("skinedge.preprocess", "skinedge.postprocess", "skinedge.options", "skinedge.classifier",
            "skinedge.errors", "skinedge.metadata", "skinedge.model_io", "skinedge.backend")
    surfaces = ("skinedge.cli", "skinedge.video", "skinedge.serve", "skinedge.evaluation")
    for module in core:
        bad = [m for m in edges[module] if m.startswith(surfaces)]
        assert not bad, (module, bad)
