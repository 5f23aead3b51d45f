"""What a step depended on that its cache key could not name before it ran: project files.

A step's key covers its code, its inputs' values, its declared files and the steps upstream.
The files it reads, and the global random generators it draws from (see `generators`), also
decide its result, and are only known once the cell has run:

- **Project files it read.** An audit hook (PEP 578) sees every `open` made through Python
  (`open`, `io.open`, `os.open`, `np.load`, `pd.read_csv`, `json.load`, `pickle.load`, PIL,
  imports of the project's modules); readers in C that bypass Python's `open` (pyarrow's
  `read_parquet`, h5py, sqlite) are covered when the cell names the file: every string the
  cell's code holds, and every string or path input, that names an existing project file.

Each file is recorded as a *check* in the cache entry (its digest) and verified before a hit:
any mismatch re-runs the step.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache.digest_code import is_project_file
from ..cache.hashing import path_digest
from ..cache.statcache import StatCache

_WRITE_MODES = set("wax+")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


# -- files opened while a step runs --------------------------------------------------------------


@dataclass
class FileWatch:
    """Paths opened for reading and for writing while `active` (any thread)."""

    read: set[str] = field(default_factory=set)
    written: set[str] = field(default_factory=set)


_watches: list[FileWatch] = []
_lock = threading.Lock()
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Called for every audit event of the process: return at once for all but `open`.
    if event != "open" or not _watches:
        return
    path, mode, flags = args
    if isinstance(path, int) or path is None:
        return  # an already open descriptor
    try:
        path = os.fsdecode(path)
    except (TypeError, ValueError):
        return
    if isinstance(mode, str):
        writes = bool(_WRITE_MODES.intersection(mode))
    else:
        writes = bool((flags or 0) & _WRITE_FLAGS)
    for watch in _watches:
        (watch.written if writes else watch.read).add(path)


def start_file_watch() -> FileWatch:
    global _hook_installed
    with _lock:
        if not _hook_installed:
            sys.addaudithook(_audit)  # hooks cannot be removed: one per process, idle when unused
            _hook_installed = True
        watch = FileWatch()
        _watches.append(watch)
    return watch


def stop_file_watch(watch: FileWatch) -> None:
    with _lock:
        if watch in _watches:
            _watches.remove(watch)


def project_file(raw: str, root: Path, state_dir: Path, cwd: str) -> Path | None:
    """The project file (or folder) `raw` names, or None: outside the project, in cellops's own
    state, in git's, or part of the Python environment (a venv may live inside the project)."""
    if not raw or len(raw) > 4096 or "\n" in raw or "\0" in raw:
        return None
    try:
        path = Path(os.path.join(cwd, raw)).resolve()
    except (OSError, ValueError, RuntimeError):
        return None
    if path == root or not path.is_relative_to(root):
        return None
    parts = path.relative_to(root).parts
    if parts and parts[0] == ".git":
        return None
    if path.is_relative_to(state_dir) or state_dir.is_relative_to(path):
        return None
    if "__pycache__" in parts:
        try:
            path = Path(importlib.util.source_from_cache(str(path)))
        except (ValueError, NotImplementedError):
            return None
    if not is_project_file(str(path), str(root)):
        return None  # the Python environment: a venv often lives inside the project
    return path if path.exists() else None


def named_paths(source: str, values: list[Any], root: Path, state_dir: Path) -> list[str]:
    """Project files and folders that exist now and that the cell names: a string in its code,
    or a string or path value it reads. Taken before the cell runs, so a file the step itself
    creates (even through a writer in C) is not counted as read."""
    names: list[str] = []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        tree = None
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.append(node.value)
    for value in values:
        if isinstance(value, str):
            names.append(value)
        elif isinstance(value, os.PathLike):
            try:
                names.append(os.fspath(value))
            except TypeError:
                continue
    cwd = os.getcwd()
    return sorted({str(p) for raw in names if (p := project_file(raw, root, state_dir, cwd))})


@dataclass
class FileReads:
    digests: dict[str, str]  # project-relative path -> digest, at the end of the step
    unreadable: list[str]  # project files the step read that could not be hashed


def file_reads(
    watch: FileWatch,
    named: list[str],
    root: Path,
    state_dir: Path,
    exclude: set[str],
    stat_cache: StatCache | None,
) -> FileReads:
    """The project files a step read (seen opened, or named by its code) and did not write."""
    cwd = os.getcwd()
    written = {p for raw in watch.written if (p := project_file(raw, root, state_dir, cwd))}
    written |= {root / label for label in exclude}
    candidates: dict[str, Path] = {}
    for raw in [*watch.read, *named]:
        path = project_file(raw, root, state_dir, cwd)
        if path is None or any(w == path or w.is_relative_to(path) for w in written):
            continue  # written by the step, or a folder it wrote into
        if any(path.is_relative_to(root / label) for label in exclude):
            continue
        candidates[path.relative_to(root).as_posix()] = path
    digests, unreadable = {}, []
    for label, path in sorted(candidates.items()):
        try:
            digests[label] = path_digest(path, stat_cache)
        except OSError:
            unreadable.append(label)
    return FileReads(digests, unreadable)


def changed_files(checks: dict[str, str], root: Path, stat_cache: StatCache | None) -> list[str]:
    """The recorded files whose content is no longer what the step read."""
    changed = []
    for label, digest in checks.items():
        path = root / label
        try:
            if not path.exists() or path_digest(path, stat_cache) != digest:
                changed.append(label)
        except OSError:
            changed.append(label)
    return changed
