"""The `%%step` cells and parameter values of a notebook file, and papermill's injected cell."""

from __future__ import annotations

import ast
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STEP_LINE = re.compile(r"^\s*%%step\b(?P<args>.*)$")
STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
PAPERMILL_HEADER = "# Parameters\n"


def papermill_parameters(cell_source: str) -> dict[str, str] | None:
    """The names and values papermill injected, when `cell_source` is its injected cell."""
    if not cell_source.startswith(PAPERMILL_HEADER):
        return None
    found: dict[str, str] = {}
    try:
        tree = ast.parse(cell_source)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                found[target.id] = ast.get_source_segment(cell_source, node.value) or ""
    return found


@dataclass(frozen=True)
class StepCell:
    index: int
    name: str
    args: str
    source: str
    cell_id: str | None


def parse_step_line(line: str) -> tuple[str, str] | None:
    """(name, rest of the arguments) of a `%%step NAME ...` line, or None."""
    match = STEP_LINE.match(line)
    if not match:
        return None
    try:
        words = shlex.split(match.group("args"))
    except ValueError:
        words = match.group("args").split()
    names = [w for w in words if not w.startswith("-")]
    return (names[0] if names else "", match.group("args").strip())


@dataclass(frozen=True)
class _CodeCell:
    index: int
    source: str
    cell_id: str | None
    tags: tuple[str, ...]
    step: tuple[str, str] | None  # (name, arguments) of a `%%step` cell


def _code_cells(path: Path) -> list[_CodeCell]:
    return _cells_of(json.loads(Path(path).read_text()).get("cells", []))


def _cells_of(raw_cells: list[dict[str, Any]]) -> list[_CodeCell]:
    """The code cells of a notebook's `cells` list (as nbformat writes them)."""
    cells = []
    for index, cell in enumerate(raw_cells):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        tags = tuple(str(t) for t in (cell.get("metadata") or {}).get("tags") or ())
        step = parse_step_line(source.partition("\n")[0])
        cells.append(_CodeCell(index, source, cell.get("id"), tags, step))
    return cells


def read_step_cells(path: Path) -> list[StepCell]:
    """The `%%step` cells of a notebook file, in order."""
    return _step_cells(_code_cells(path))


def read_notebook(path: Path) -> tuple[list[StepCell], dict[str, Any]]:
    """The `%%step` cells of a notebook file and the values of its parameters (read once)."""
    cells = _code_cells(path)
    return _step_cells(cells), _parameter_values(cells)


def read_cells(raw_cells: list[dict[str, Any]]) -> tuple[list[StepCell], dict[str, Any]]:
    """`read_notebook` on a notebook's `cells` list (a front end's live cells, say)."""
    cells = _cells_of(raw_cells)
    return _step_cells(cells), _parameter_values(cells)


def _step_cells(cells: list[_CodeCell]) -> list[StepCell]:
    return [
        StepCell(
            cell.index, cell.step[0], cell.step[1], cell.source.partition("\n")[2], cell.cell_id
        )
        for cell in cells
        if cell.step is not None
    ]


# -- the parameters, read without a kernel ----------------------------------------------------

PARAMETER_TAGS = frozenset({"parameters", "injected-parameters"})
_MAGIC_ASSIGNMENT = re.compile(r"^(\s*)([A-Za-z_][\w\s,]*?)\s*=\s*[%!]")
_MUTABLE = (list, dict, set)


def _parameter_values(cells: list[_CodeCell]) -> dict[str, Any]:
    """The values the notebook's parameters have when its steps run, as far as the file says.

    The parameters are the cells tagged `parameters` (Papermill's convention) and
    `injected-parameters` (Papermill's values, in a notebook it wrote); in a notebook without
    such tags, the code cells before the first `%%step` (`%load_ext cellops` / `n_rows = 100`).
    Only `NAME = literal` at the top level counts (`ast.literal_eval`); a name bound in any
    other way, bound again in a later cell, or (a list, dict or set) given to a method call in
    a later cell is left out, since only running the notebook would tell its value.
    """
    block = [i for i, cell in enumerate(cells) if PARAMETER_TAGS & set(cell.tags)]
    if not block:
        first_step = next((i for i, c in enumerate(cells) if c.step is not None), len(cells))
        block = list(range(first_step))
    values: dict[str, Any] = {}
    for i in block:
        _assign_literals(cells[i].source, values)
    later = range(block[0] + 1, len(cells)) if block else range(0)
    for i in later:
        if i not in block:
            _forget_rebound(cells[i], values)
    return values


def _assign_literals(source: str, values: dict[str, Any]) -> None:
    tree = _parse(source)
    if tree is None:
        _forget_mentioned(source, values)
        return
    from .cell_names import analyze_cell

    for node in tree.body:
        targets = _literal_targets(node)
        if targets is not None:
            try:
                value = ast.literal_eval(node.value)  # type: ignore[attr-defined]
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                pass
            else:
                values.update(dict.fromkeys(targets, value))
                continue
        for name in analyze_cell(ast.unparse(node)).writes:
            values.pop(name, None)


def _literal_targets(node: ast.stmt) -> list[str] | None:
    """The names `NAME = ...` / `a = b = ...` / `NAME: type = ...` assigns, else None."""
    if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
        return [t.id for t in node.targets]  # type: ignore[attr-defined]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
        return [node.target.id]
    return None


def _forget_rebound(cell: _CodeCell, values: dict[str, Any]) -> None:
    """Leave out the names a later cell binds (or may mutate): their value is not the literal."""
    source = cell.source.partition("\n")[2] if cell.step is not None else cell.source
    tree = _parse(source)
    if tree is None:
        _forget_mentioned(source, values)
        return
    from .cell_names import analyze_cell

    for name in analyze_cell(ast.unparse(tree)).writes:
        values.pop(name, None)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and isinstance(values.get(node.func.value.id), _MUTABLE)
        ):
            values.pop(node.func.value.id)


def _forget_mentioned(source: str, values: dict[str, Any]) -> None:
    """A cell that is not Python after all: leave out every name it mentions."""
    for name in [n for n in values if re.search(rf"\b{re.escape(n)}\b", source)]:
        values.pop(name)


def _parse(source: str) -> ast.Module | None:
    """The cell as Python, IPython's syntax set aside: a `%magic` or `!command` line becomes
    `pass`, and `x = %magic ...` binds `x` to a value that is not a literal."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith(("%", "!")):
            lines.append(indent + "pass")
        elif match := _MAGIC_ASSIGNMENT.match(line):
            lines.append(f"{match[1]}{match[2]} = _magic_()")
        else:
            lines.append(line)
    try:
        return ast.parse("\n".join(lines))
    except (SyntaxError, ValueError):
        return None
