"""The package's shape, checked: one package per lifecycle stage, imports pointing one way.

Each import in `cellops` (at module level or inside a function, both count) may reach only
its own stage or a lower one, and no module of the core imports a front end's library, so
jobs and servers run without a kernel, a widget or a web framework.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "magics" / "cellops"

# lowest first: a stage may import the ones before it, never one after it
STAGES = ["base", "store", "cache", "steps", "data", "jobs", "registry", "monitoring",
          "serving", "dashboards", "adapters"]  # fmt: skip
ADAPTERS = {"magics", "widgets", "cli"}
FRONT_END_LIBRARIES = {"IPython", "ipywidgets", "tornado", "click", "cellops_lab"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(module: str) -> str:
    """The stage a `cellops` module belongs to; `cellops` itself (the public API and
    `%load_ext`) and `__main__` sit above every stage."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "top"
    if parts[1] in ADAPTERS:
        return "adapters"
    return parts[1] if parts[1] in STAGES else "base"


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module `path` imports, as absolute names, with the line."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _is_cellops_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    return name.startswith("cellops") and (
        (PACKAGE / relative).with_suffix(".py").is_file()
        or (PACKAGE / relative / "__init__.py").is_file()
    )


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_stage_has_its_package() -> None:
    for stage in STAGES[1:-1]:
        assert (PACKAGE / stage / "__init__.py").is_file(), stage
    for adapter in ADAPTERS:
        assert (PACKAGE / adapter / "__init__.py").is_file(), adapter
    assert (PACKAGE / "__main__.py").is_file()


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: _module_name(p))
def test_imports_point_down_the_stages(path: Path) -> None:
    module = _module_name(path)
    stage = _stage(module)
    if stage == "top":
        return
    upward = [
        f"line {line}: {name} ({_stage(name)})"
        for name, line in _imports(path)
        if _is_cellops_module(name)
        and _stage(name) == "top"
        and name != "cellops"
        or _is_cellops_module(name)
        and _stage(name) != "top"
        and STAGES.index(_stage(name)) > STAGES.index(stage)
    ]
    assert not upward, f"{module} ({stage}) imports a higher stage: {upward}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: _module_name(p))
def test_the_core_imports_no_front_end(path: Path) -> None:
    module = _module_name(path)
    if _stage(module) in ("adapters", "top"):
        return
    front = [
        f"line {line}: {name}"
        for name, line in _imports(path)
        if name.split(".")[0] in FRONT_END_LIBRARIES
    ]
    assert not front, f"{module} is core code but imports a front end: {front}"


def test_no_import_cycles_at_module_level() -> None:
    """Imports run when a module loads (not those inside functions) form no cycle."""
    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        top_level = {
            node.lineno for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)
        }
        graph[_module_name(path)] = {
            name for name, line in _imports(path) if line in top_level and _is_cellops_module(name)
        }
    for module in graph:  # a package imports its parent's __init__ first: not a cycle
        graph[module] = {m for m in graph[module] if not module.startswith(m + ".") and m != module}
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            cycle = trail[trail.index(module) :] + [module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, [*trail, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
