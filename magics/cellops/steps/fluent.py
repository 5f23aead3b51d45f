"""`log_metric`, `log_param`, `log_artifact`, `current_run`: MLflow-fluent style.

Inside a `%%step` cell they go to that step's run (sent with the step's own batch when the
cell ends); outside a step, to the session run.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CellopsUsageError
from ..store.session import ensure_session
from .recording import as_metric, as_param


@dataclass(frozen=True)
class RunRef:
    run_id: str
    name: str
    kind: str  # "step" or "session"
    experiment_id: str


def log_metric(key: str, value: float, step: int = 0) -> None:
    """Log a metric to the running step (or the session run outside a step)."""
    number = as_metric(value)
    if number is None:
        raise CellopsUsageError(f"metric {key!r} must be a number, got {value!r}")
    session = ensure_session()
    if session.active_steps:
        session.active_steps[-1].metrics.append((key, number, step))
        return
    _to_session_run(lambda client, run_id: client.log_metric(run_id, key, number, step=step))


def log_param(key: str, value: Any) -> None:
    """Log a parameter to the running step (or the session run outside a step)."""
    text = as_param(value)
    session = ensure_session()
    if session.active_steps:
        session.active_steps[-1].params[key] = text
        return
    _to_session_run(lambda client, run_id: client.log_param(run_id, key, text))


def log_artifact(local_path: str, artifact_path: str | None = None) -> None:
    """Log a file or folder; it is copied now, so later changes to it are not logged."""
    source = Path(local_path)
    if not source.exists():
        raise CellopsUsageError(f"log_artifact: {local_path!r} does not exist")
    session = ensure_session()
    staging = Path(tempfile.mkdtemp(prefix="stage-", dir=_staging_root(session)))
    copy = staging / source.name
    if source.is_dir():
        shutil.copytree(source, copy)
    else:
        shutil.copy2(source, copy)
    if session.active_steps:
        session.active_steps[-1].artifacts.append((str(copy), artifact_path))
        return

    def upload(client: Any, run_id: str) -> None:
        try:
            client.log_artifact(run_id, str(copy), artifact_path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    _to_session_run(upload)


def current_run() -> RunRef:
    """The run that logging goes to now: the running step's, or the session's."""
    session = ensure_session()
    parent = session.run
    if session.active_steps:
        step = session.active_steps[-1]
        return RunRef(step.run_future.result(), step.name, "step", parent.experiment_id)
    return RunRef(parent.run_id, session.experiment_name, "session", parent.experiment_id)


def _staging_root(session: Any) -> Path:
    folder = session.settings.state_dir / "staging"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _to_session_run(write: Any) -> None:
    session = ensure_session()
    session.tracker.submit(lambda client: write(client, session.run_future.result().run_id))
