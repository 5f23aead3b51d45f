"""Which notebook this kernel runs, and the `%%step` cells a notebook file holds.

Each front end tells the kernel differently: Jupyter sets `JPY_SESSION_NAME` (and IPython's
`__session__`), VS Code sets `__vsc_ipynb_file__`, and Papermill sets nothing, so for
Papermill we take `PAPERMILL_INPUT_PATH` (injected by `papermill --inject-paths`), or
`CELLOPS_NOTEBOOK` (set by `cellops run`), or read the input path off the command line of the
papermill process that started this kernel.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STEP_LINE = re.compile(r"^\s*%%step\b(?P<args>.*)$")
STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
PAPERMILL_HEADER = "# Parameters\n"

# papermill options that take values, so their values are not taken for the input path
_PAPERMILL_VALUE_OPTIONS = {
    "-p": 2, "--parameters": 2, "-r": 2, "--parameters_raw": 2,
    "-f": 1, "--parameters_file": 1, "-y": 1, "--parameters_yaml": 1,
    "-b": 1, "--parameters_base64": 1, "-k": 1, "--kernel": 1, "-l": 1, "--language": 1,
    "--cwd": 1, "--engine": 1, "--execution-timeout": 1, "--start-timeout": 1,
    "--start_timeout": 1, "--autosave-cell-every": 1, "--log-level": 1,
}  # fmt: skip


@dataclass(frozen=True)
class NotebookInfo:
    path: Path | None
    runner: str  # jupyter | vscode | papermill | ipython


def detect_notebook(user_ns: dict[str, Any], environ: dict[str, str] | None = None) -> NotebookInfo:
    env = os.environ if environ is None else environ
    if env.get("CELLOPS_NOTEBOOK"):
        return NotebookInfo(Path(env["CELLOPS_NOTEBOOK"]).resolve(), "papermill")
    if user_ns.get("__vsc_ipynb_file__"):
        return NotebookInfo(Path(user_ns["__vsc_ipynb_file__"]).resolve(), "vscode")
    if user_ns.get("PAPERMILL_INPUT_PATH"):
        return NotebookInfo(Path(user_ns["PAPERMILL_INPUT_PATH"]).resolve(), "papermill")
    launched_by = _papermill_input_of_parent()
    if launched_by is not None:
        return NotebookInfo(launched_by, "papermill")
    session = env.get("JPY_SESSION_NAME") or user_ns.get("__session__")
    if session and str(session).endswith(".ipynb"):
        return NotebookInfo(Path(session).resolve(), "jupyter")
    return NotebookInfo(None, "ipython")


def _papermill_input_of_parent() -> Path | None:
    proc = Path(f"/proc/{os.getppid()}")
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
        cwd = Path(os.readlink(proc / "cwd"))
    except OSError:
        return None
    args = [a.decode(errors="replace") for a in argv if a]
    where = next((i for i, a in enumerate(args) if Path(a).name == "papermill"), None)
    if where is None:
        return None
    rest, i = args[where + 1 :], 0
    while i < len(rest):
        arg = rest[i]
        if arg in _PAPERMILL_VALUE_OPTIONS:
            i += _PAPERMILL_VALUE_OPTIONS[arg] + 1
            continue
        if not arg.startswith("-"):
            return (cwd / arg).resolve()
        i += 1
    return None


def papermill_parameters(cell_source: str) -> dict[str, str] | None:
    """The names and values papermill injected, when `cell_source` is its injected cell."""
    if not cell_source.startswith(PAPERMILL_HEADER):
        return None
    import ast

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


def read_step_cells(path: Path) -> list[StepCell]:
    """The `%%step` cells of a notebook file, in order."""
    notebook = json.loads(Path(path).read_text())
    cells = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        first, _, body = source.partition("\n")
        parsed = parse_step_line(first)
        if parsed is not None:
            cells.append(StepCell(index, parsed[0], parsed[1], body, cell.get("id")))
    return cells
