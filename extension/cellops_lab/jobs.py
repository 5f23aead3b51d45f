"""Jobs the panel starts: each a `cellops run` in its own process, followed from its files.

A job runs in a child process (`python -m cellops_lab.runner`, the core's `run_job` with the
id chosen here), in its own session, so neither a slow store nor a server restart stops it,
and the server's environment is never changed for it. Its progress is read from the executed
notebook Papermill saves after every cell (`reports/runs/<job>/`), its outcome from the
`lab-job.json` the child writes last. Jobs that other processes ran (the CLI, the monitor)
come from their MLflow runs (`job_from_run`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import views

RESULT_FILE = "lab-job.json"
LOG_FILE = "lab-job.log"
MAX_KEPT = 200


@dataclass
class LabJob:
    id: str
    notebook: str  # project-relative, as the job's runs name it
    notebook_path: Path
    parameters: dict[str, Any]
    folder: Path  # reports/runs/<id>/
    started: float = field(default_factory=time.time)
    process: subprocess.Popen | None = None
    finished: float | None = None
    outcome: dict[str, Any] | None = None  # the child's lab-job.json
    progress: dict[str, int] | None = None

    def poll(self) -> None:
        """Refresh the state from the process and the files it writes."""
        if self.outcome is not None:
            return
        self.progress = notebook_progress(self.folder) or self.progress
        code = self.process.poll() if self.process is not None else None
        if code is None:
            return
        self.finished = self.finished or time.time()
        result = _read_json(self.folder / RESULT_FILE)
        if result is None:  # the child died before it could say: its last words
            result = {"ok": False, "run_id": None, "message": _tail(self.folder / LOG_FILE)}
        self.outcome = result

    @property
    def status(self) -> str:
        if self.outcome is not None:
            return "succeeded" if self.outcome.get("ok") else "failed"
        return "running" if self.progress is not None else "queued"

    def as_json(self, links: Any) -> dict[str, Any]:
        outcome = self.outcome or {}
        run_id = outcome.get("run_id")
        message = outcome.get("message")
        if message is None and self.progress is None:
            message = "starting the kernel"
        return {
            "id": self.id,
            "notebook": self.notebook,
            "status": self.status,
            "parameters": self.parameters,
            "progress": self.progress,
            "message": message,
            "run_id": run_id,
            "url": links.run(run_id).url if run_id else None,
            "started": views.iso(self.started),
            "finished": views.iso(self.finished),
        }


class JobBook:
    """The jobs this server started, newest last; safe to use from several threads."""

    def __init__(self) -> None:
        self._jobs: dict[str, LabJob] = {}
        self._lock = threading.Lock()

    def start(self, job: LabJob, root: Path) -> LabJob:
        job.folder.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "cellops_lab.runner",
            job.id, str(job.notebook_path), json.dumps(job.parameters),
        ]  # fmt: skip
        with open(job.folder / LOG_FILE, "wb") as log:
            job.process = subprocess.Popen(
                command, cwd=root, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=_child_env(), start_new_session=True,
            )  # fmt: skip
        with self._lock:
            self._jobs[job.id] = job
            for old in list(self._jobs)[:-MAX_KEPT]:
                if self._jobs[old].outcome is not None:
                    del self._jobs[old]
        return job

    def get(self, job_id: str) -> LabJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            job.poll()
        return job

    def recent(self, notebook: str | None = None) -> list[LabJob]:
        with self._lock:
            jobs = [j for j in self._jobs.values() if notebook is None or j.notebook == notebook]
        for job in jobs:
            job.poll()
        return sorted(jobs, key=lambda j: j.started, reverse=True)


def notebook_progress(folder: Path) -> dict[str, int] | None:
    """Cells done out of the code cells of the attempt's executed notebook, as Papermill marks
    them (`metadata.papermill.status`); None before Papermill wrote it."""
    written = sorted(folder.glob("*.ipynb"), key=lambda p: p.stat().st_mtime)
    if not written:
        return None
    notebook = _read_json(written[-1])
    if notebook is None:  # being written: the next look sees it
        return None
    cells = [c for c in notebook.get("cells", []) if c.get("cell_type") == "code"]
    done = sum(
        1
        for c in cells
        if (c.get("metadata") or {}).get("papermill", {}).get("status") == "completed"
    )
    return {"done": done, "total": len(cells)}


def job_from_run(found: Any, links: Any) -> dict[str, Any]:
    """A job another process ran, from its (latest attempt's) MLflow run."""
    info, tags = found.info, found.data.tags
    outcome = tags.get("cellops.job.status")
    if outcome not in ("succeeded", "failed"):
        outcome = {"FINISHED": "succeeded", "FAILED": "failed", "KILLED": "failed"}.get(
            info.status, "running"
        )
    return {
        "id": tags.get("cellops.job", info.run_id),
        "notebook": tags.get("cellops.notebook"),
        "status": outcome,
        "parameters": dict(found.data.params),
        "progress": None,
        "message": tags.get("cellops.job.error") or None,
        "run_id": info.run_id,
        "url": links.run(info.run_id, info.experiment_id).url,
        "started": views.iso_ms(info.start_time),
        "finished": views.iso_ms(info.end_time),
    }


def _child_env() -> dict[str, str]:
    """The server's environment without what names a notebook or a job of its own."""
    drop = {"JPY_SESSION_NAME", "CELLOPS_NOTEBOOK", "CELLOPS_JOB_ID", "CELLOPS_JOB_ATTEMPT"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "the job's process ended without a word"
    return "\n".join(text.strip().splitlines()[-lines:]) or "the job's process ended silently"
