"""A step's plan: what it reads and writes, and the cache key made of their content hashes.

The key covers the cell's normalized code, its inputs' values (structural digests: see
`hashing`), the files it declares, the project modules it imports and the keys of the steps
upstream. What can only be known once the cell ran (files it opened, the random generators it
drew from) is checked separately before a hit (see `observed`).
"""

from __future__ import annotations

import ast
import importlib.machinery
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache.hashing import code_digest, hash_strings, is_library, path_digest, value_digest
from ..cache.index import FORMAT_VERSION
from ..cache.statcache import stat_cache_for
from ..errors import CellopsUsageError, UndigestableError
from ..store.session import Session
from . import observed, recording
from .cell_names import analyze_cell
from .notebook import STEP_NAME, read_step_cells

IGNORED_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "display"}


@dataclass
class StepSpec:
    """A step as the user declared it."""

    name: str
    source: str  # Python code to run (IPython syntax already transformed)
    raw_source: str | None = None  # the cell body as typed, when it differs
    inputs: list[str] | None = None
    outputs: list[str] | None = None
    params: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    files_in: list[str] = field(default_factory=list)
    files_out: list[str] = field(default_factory=list)
    use_cache: bool = True
    force: bool = False
    cell_id: str | None = None


@dataclass
class StepPlan:
    """What a step reads and writes, with the content hashes that make up its cache key."""

    inputs: dict[str, str]  # name -> value digest
    outputs: list[str]
    params: dict[str, str]  # name -> value as logged
    files_in: dict[str, str]  # project-relative path -> digest
    files_out: list[str]
    upstream: dict[str, str]  # step -> its key
    code_digest: str
    key: str
    modules: dict[str, str] = field(default_factory=dict)  # project module imported -> digest
    undigestable: list[str] = field(default_factory=list)  # "name: why" of unreadable inputs


def plan_step(session: Session, spec: StepSpec, namespace: dict[str, Any]) -> StepPlan:
    try:
        names = analyze_cell(spec.source)
    except SyntaxError:
        names = None  # let the cell run and raise Python's own SyntaxError
    reads = list(spec.inputs) if spec.inputs is not None else list(names.reads if names else [])
    if spec.inputs is not None:
        missing = [n for n in spec.inputs if n not in namespace]
        if missing:
            raise CellopsUsageError(
                f"step '{spec.name}': declared input {', '.join(map(repr, missing))} "
                "is not defined; run the cell that defines it first, or remove it from --inputs"
            )
    for name in spec.params:
        if name not in namespace:
            raise CellopsUsageError(
                f"step '{spec.name}': --params names {name!r}, which is not defined; "
                "define it in an earlier cell (for example the parameters cell)"
            )
        if name not in reads:
            reads.append(name)
    root = session.settings.root
    inputs, undigestable = {}, []
    for name in reads:
        if name in IGNORED_NAMES or name.startswith("_") or name not in namespace:
            continue
        if is_library(namespace[name], root):
            continue
        try:
            inputs[name] = value_digest(namespace[name], root, name=name)
        except UndigestableError as exc:
            undigestable.append(str(exc))
    outputs = (
        list(spec.outputs) if spec.outputs is not None else list(names.writes if names else [])
    )
    outputs = [n for n in outputs if not n.startswith("_")]
    params = {
        name: recording.as_param(namespace[name])
        for name in reads
        if name in namespace and (name in spec.params or _is_scalar(namespace[name]))
    }
    files_in = {}
    stat_cache = stat_cache_for(session.settings.state_dir) if spec.files_in else None
    for raw in spec.files_in:
        path = _project_path(raw)
        _check_not_the_project(session, spec, "--files-in", raw, path)
        if not path.exists():
            raise CellopsUsageError(
                f"step '{spec.name}': --files-in {raw!r} does not exist "
                f"(looked for {path}); check the path or create the file first"
            )
        files_in[_label(session, path)] = path_digest(path, stat_cache)
    if stat_cache is not None:
        stat_cache.save()
    files_out = [_label(session, _output_path(session, spec, raw)) for raw in spec.files_out]
    upstream = {
        session.producers[name]: session.last_keys[session.producers[name]]
        for name in inputs
        if name in session.producers and session.producers[name] != spec.name
    }
    modules = _imported_project_modules(spec.source, root, session.settings.state_dir, undigestable)
    digest = code_digest(spec.source)
    key = hash_strings(
        f"cellops-step-v{FORMAT_VERSION}",
        digest,
        json.dumps(sorted(inputs.items())),
        json.dumps(sorted(files_in.items())),
        json.dumps(sorted(upstream.items())),
        json.dumps(sorted(outputs)),
        json.dumps(sorted(files_out)),
        json.dumps(sorted(modules.items())),
    )
    return StepPlan(
        inputs, outputs, params, files_in, files_out, upstream, digest, key, modules, undigestable
    )


def _imported_project_modules(
    source: str, root: Path, state_dir: Path, problems: list[str]
) -> dict[str, str]:
    """Project modules the cell imports: a loaded one by the code in memory (what the import
    will give), one not loaded yet by its source on disk (what the import will load)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    digests = {}
    for name in sorted(names):
        module = sys.modules.get(name)
        if module is not None:
            if is_library(module, root):
                continue
            try:
                digests[name] = value_digest(module, root)
            except UndigestableError as exc:
                problems.append(f"module {name}: {exc}")
            continue
        if "." in name and name.split(".")[0] not in sys.modules:
            name = name.split(".")[0]  # finding a submodule would import its package
        if "." in name:
            continue  # a submodule of a loaded package: its package's digest covers it
        spec = importlib.machinery.PathFinder.find_spec(name)
        origin = getattr(spec, "origin", None) if spec is not None else None
        if not origin or not os.path.isfile(origin):
            continue
        path = Path(origin).resolve()
        if observed.project_file(str(path), root, state_dir, str(root)) is None:
            continue
        where = path.parent if path.name == "__init__.py" else path
        digests[name] = path_digest(where)
    return digests


def _is_scalar(value: Any) -> bool:
    return value is None or type(value) in (bool, int, float, str)


def _project_path(raw: str) -> Path:
    path = Path(raw)
    return (path if path.is_absolute() else Path(os.getcwd()) / path).resolve()


def _output_path(session: Session, spec: StepSpec, raw: str) -> Path:
    path = _project_path(raw)
    root = session.settings.root
    _check_not_the_project(session, spec, "--files-out", raw, path)
    flag = f"step '{spec.name}': --files-out {shlex.quote(raw)}"
    if not path.is_relative_to(root):
        raise CellopsUsageError(
            f"{flag} is outside the project ({path} is not under {root}), so it cannot be "
            "cached or versioned; write it inside the project"
        )
    top = path.relative_to(root).parts[0]
    if top == ".git" or path.is_relative_to(session.settings.state_dir):
        owner = "git's" if top == ".git" else "cellops's"
        raise CellopsUsageError(
            f"{flag} is inside {owner} own folder {top}/, which a step must not write; write "
            "it elsewhere in the project, for example --files-out out/"
        )
    return path


def _check_not_the_project(
    session: Session, spec: StepSpec, flag: str, raw: str, path: Path
) -> None:
    """A step's file cannot be the project root or a folder holding it: that would take in
    the step cache and git's files, which change at every step."""
    root = session.settings.root
    if not root.is_relative_to(path):
        return
    role, example = ("output", "out/") if flag == "--files-out" else ("input", "data/")
    what = "the project root itself" if path == root else f"{path}, which holds the project,"
    raise CellopsUsageError(
        f"step '{spec.name}': {flag} {shlex.quote(raw)}: {what} cannot be a step {role}; "
        f"name files or folders inside it, for example {flag} {example}"
    )


def _label(session: Session, path: Path) -> str:
    try:
        return path.relative_to(session.settings.root).as_posix()
    except ValueError:
        return path.as_posix()


def check_step_name(session: Session, spec: StepSpec) -> None:
    if not STEP_NAME.match(spec.name or ""):
        raise CellopsUsageError(
            f"invalid step name {spec.name!r}: use up to 64 letters, digits, '_', '-' or '.', "
            "starting with a letter or '_'; for example: %%step load_data"
        )
    known = session.step_cells.get(spec.name, spec.cell_id)
    if spec.cell_id and known and known != spec.cell_id:
        raise CellopsUsageError(
            f"another cell already defines step '{spec.name}'; give this step its own name, "
            f"for example: %%step {spec.name}_2"
        )
    if spec.cell_id:
        session.step_cells[spec.name] = spec.cell_id
    if session.notebook.runner == "papermill" and session.notebook.path:
        _check_notebook_names(session, spec.name)


def _check_notebook_names(session: Session, name: str) -> None:
    try:
        cells = read_step_cells(session.notebook.path)
    except (OSError, ValueError):
        return
    same = [cell.index for cell in cells if cell.name == name]
    if len(same) > 1:
        raise CellopsUsageError(
            f"step '{name}' is defined by {len(same)} cells (cells {same}) of "
            f"{session.notebook_label}; give each step its own name"
        )
