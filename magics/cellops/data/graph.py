"""A notebook's step graph: which files and parameters each step reads, and what it writes.

Read statically from the notebook file (the `%%step` lines and the cells' code), or, for a
notebook with no file (a console session), from what its steps recorded when they ran.
Paths are as the steps declare them, relative to the kernel's working directory, which is the
project root under `cellops run`.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._paths import project_label
from .._text import split_names
from ..config import Settings
from ..steps.cell_names import analyze_cell
from ..steps.notebook import read_step_cells

_LIST_FLAGS = {
    "--files-in": "files_in",
    "--files-out": "files_out",
    "--params": "params",
    "--inputs": "inputs",
    "--outputs": "outputs",
    "--metrics": "metrics",
}


@dataclass
class GraphStep:
    name: str
    files_in: list[str] = field(default_factory=list)
    files_out: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)  # notebook parameters it reads
    reads: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    upstream: dict[str, list[str]] = field(default_factory=dict)  # step -> variables from it


@dataclass
class StepGraph:
    notebook: str
    steps: list[GraphStep]
    parameters: list[str] = field(default_factory=list)

    def step(self, name: str) -> GraphStep:
        return next(s for s in self.steps if s.name == name)

    def with_upstream(self, name: str) -> list[GraphStep]:
        """The step and every step it takes variables from, directly or not, in order."""
        wanted, pending = set(), [name]
        while pending:
            current = pending.pop()
            if current not in wanted:
                wanted.add(current)
                pending.extend(self.step(current).upstream)
        return [s for s in self.steps if s.name in wanted]


def parse_step_args(args: str) -> dict[str, Any]:
    """The flags of a `%%step` line (as the magic reads them) as lists of names or paths."""
    try:
        words = shlex.split(args)
    except ValueError:
        words = args.split()
    parsed: dict[str, Any] = {key: None for key in _LIST_FLAGS.values()}
    i = 0
    while i < len(words):
        word, value = words[i], None
        if "=" in word and word.split("=", 1)[0] in _LIST_FLAGS:
            word, value = word.split("=", 1)
        if word in _LIST_FLAGS:
            if value is None and i + 1 < len(words):
                i += 1
                value = words[i]
            parts = split_names(value)
            parsed[_LIST_FLAGS[word]] = (parsed[_LIST_FLAGS[word]] or []) + parts
        i += 1
    return parsed


def _names(source: str) -> tuple[list[str], list[str]]:
    """Reads and writes of a cell; lines of IPython syntax (`%magic`, `!cmd`) are skipped."""
    lines = [
        "pass" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    ]
    try:
        names = analyze_cell("\n".join(lines))
    except SyntaxError:
        return [], []
    return list(names.reads), list(names.writes)


def file_label(raw: str, root: Path, cwd: Path | None = None) -> str:
    path = Path(raw)
    path = Path(os.path.normpath(path if path.is_absolute() else (cwd or root) / path))
    return project_label(path, root)


def parameter_names(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text()).get("cells", [])
    for cell in cells:
        if "parameters" in (cell.get("metadata") or {}).get("tags", []):
            source = cell.get("source", "")
            return _names("".join(source) if isinstance(source, list) else source)[1]
    return []


def graph_from_notebook(notebook: Path, root: Path) -> StepGraph:
    parameters = parameter_names(notebook)
    producers: dict[str, str] = {}
    steps = []
    for cell in read_step_cells(notebook):
        args = parse_step_args(cell.args)
        reads, writes = _names(cell.source)
        reads = args["inputs"] if args["inputs"] is not None else reads
        writes = args["outputs"] if args["outputs"] is not None else writes
        step = GraphStep(
            cell.name,
            files_in=[file_label(p, root) for p in args["files_in"] or []],
            files_out=[file_label(p, root) for p in args["files_out"] or []],
            params=[n for n in dict.fromkeys([*reads, *(args["params"] or [])]) if n in parameters],
            reads=reads,
            writes=writes,
        )
        for name in reads:
            if name in producers and producers[name] != step.name:
                step.upstream.setdefault(producers[name], []).append(name)
        for name in writes:
            producers[name] = step.name
        steps.append(step)
    return StepGraph(project_label(notebook.resolve(), root), steps, parameters)


def graph_from_records(settings: Settings, notebook_label: str) -> StepGraph:
    """The graph as the notebook's steps last ran (for a notebook with no file)."""
    from ..steps.state import load_step_states
    from .hooks import step_files

    states = load_step_states(settings, notebook_label)
    files = step_files(settings, notebook_label)
    producers: dict[str, str] = {}
    steps = []
    for name, state in sorted(states.items(), key=lambda item: item[1].get("finished_at", 0)):
        record = files.get(name, {})
        step = GraphStep(
            name,
            files_in=list(record.get("files_in", {})),
            files_out=list(record.get("files_out", {})),
            reads=list(state.get("inputs") or {}),
            writes=list(state.get("outputs") or []),
        )
        for upstream in state.get("upstream") or {}:
            shared = [v for v in step.reads if producers.get(v) == upstream]
            step.upstream[upstream] = shared
        for variable in step.writes:
            producers[variable] = name
        steps.append(step)
    return StepGraph(notebook_label, steps)


def notebook_graph(settings: Settings, notebook: Path | None, label: str) -> StepGraph:
    """From the notebook file when there is one, else from what its steps recorded."""
    if notebook is not None and notebook.is_file():
        return graph_from_notebook(notebook, settings.root)
    return graph_from_records(settings, label)
