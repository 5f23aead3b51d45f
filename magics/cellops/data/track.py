"""`cellops.track_file(path)`: what `--files-out` does for a step, from plain code."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CellopsUsageError

ROLES = ("output", "input")


@dataclass(frozen=True)
class TrackedFile:
    path: str  # relative to the project root
    md5: str  # DVC's hash of it
    dvc_file: str | None  # the `.dvc` file (or "dvc.yaml") that records it


def track_file(path: str | os.PathLike[str], role: str = "output") -> TrackedFile:
    """Put a file or folder under DVC and record it on the current run.

    The current run is the step whose cell is running, else the notebook's session run. The
    run gets the file's path and DVC hash (tag `cellops.files_out`, or `cellops.files_in` with
    role="input") and an MLflow dataset input whose digest is that hash.

    Example::

        df.to_parquet("data/clean.parquet")
        cellops.track_file("data/clean.parquet")
    """
    from ..store.session import ensure_session
    from . import hooks
    from .project import require_versioning

    if role not in ROLES:
        raise CellopsUsageError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    session = ensure_session()
    settings = session.settings
    root = settings.root
    require_versioning(root)
    full = Path(path)
    full = (full if full.is_absolute() else Path.cwd() / full).resolve()
    if not full.is_relative_to(root) or full == root:
        raise CellopsUsageError(
            f"track_file: {path} is outside the project ({root}); DVC versions files inside it"
        )
    if not full.exists():
        raise CellopsUsageError(f"track_file: {path} does not exist (looked for {full})")
    label = full.relative_to(root).as_posix()
    files_in, files_out = hooks.file_hashes(
        settings, [label] if role == "input" else [], [label] if role == "output" else []
    )
    pointers = hooks.put_under_dvc(root, {}, {label: (files_in | files_out)[label]})
    active = session.active_steps[-1] if session.active_steps else None
    run_id_of = active.run_future.result if active else session.run_future.result
    session.tracker.submit(hooks.log_files, run_id_of, root, files_in, files_out, pointers)
    return TrackedFile(label, (files_in | files_out)[label], pointers.get(label))
