"""The session: one MLflow run per notebook kernel (or job) that every step run nests under.

The session run is opened on the tracker's thread, so `%load_ext cellops` does not wait for
MLflow's imports or a new store's migrations; the first step waits for it before its cell
runs, which is also when an unreachable store is reported.

The run ends at interpreter exit (`atexit`) and, in a kernel, as soon as the kernel is asked
to shut down (`load_ipython_extension` hooks IPython's `exit_now`; see there why). Only the
process that opened the session ends it: a forked child inherits the session and the
`atexit` handler, and must not end its parent's run.
"""

from __future__ import annotations

import atexit
import getpass
import json
import os
import platform
import re
import sys
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._limits import param_text, tag_text
from .._paths import project_label
from .._version import __version__
from ..config import Settings, load_settings
from ..errors import CellopsError, StoreWriteError
from ..gitinfo import git_state
from .client import log_batch, store_error
from .embedded import check_store, interactive_experiment_name
from .notebook_info import NotebookInfo
from .reaper import owner_tags, reap_dead_runs
from .tracker import Tracker


@dataclass
class SessionRun:
    experiment_id: str
    run_id: str


@dataclass
class ActiveStep:
    """A step while its cell runs: what the fluent API logs into it."""

    name: str
    run_future: Future[str]
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int]] = field(default_factory=list)
    artifacts: list[tuple[str, str | None]] = field(default_factory=list)


JOB_ENV = ("CELLOPS_JOB_ID", "CELLOPS_JOB_ATTEMPT", "CELLOPS_PARENT_RUN_ID")
"""Set by `cellops run` for the kernel it starts: the session run becomes the job run."""


def job_tags() -> dict[str, str]:
    job_id, attempt, parent = (os.environ.get(name) for name in JOB_ENV)
    if not job_id:
        return {"cellops.kind": "session"}
    tags = {"cellops.kind": "job", "cellops.job": job_id, "cellops.attempt": attempt or "1"}
    if parent:
        tags["mlflow.parentRunId"] = parent
    return tags


def user_name() -> str:
    return os.environ.get("CELLOPS_USER") or getpass.getuser()


def experiment_name_for(settings: Settings, notebook: NotebookInfo) -> str:
    if notebook.path is None:
        return interactive_experiment_name(settings.root)
    return project_label(notebook.path, settings.root).removesuffix(".ipynb")


class Session:
    def __init__(self, settings: Settings, notebook: NotebookInfo):
        self.settings = settings
        self.notebook = notebook
        self.tracker = Tracker(settings)
        self.experiment_name = experiment_name_for(settings, notebook)
        self.notebook_label = (
            project_label(notebook.path, settings.root) if notebook.path else "interactive"
        )
        self.git = git_state(notebook.path.parent if notebook.path else settings.root)
        self.user = user_name()
        self.failed = False
        self.closed = False
        self.active_steps: list[ActiveStep] = []
        self.step_cells: dict[str, str | None] = {}  # step name -> cell id that defined it
        self.producers: dict[str, str] = {}  # variable -> step that last wrote it
        self.last_keys: dict[str, str] = {}  # step -> its last cache key this session
        self.parameters: dict[str, str] = {}
        self.pending_entries: dict[str, tuple[Any, Future[str]]] = {}  # key -> (entry, run)
        self.pid = os.getpid()  # the owner: a forked child inherits this object, not the run
        _warn_if_damaged(settings)
        self.run_future: Future[SessionRun] = self.tracker.submit(self._open_run)

    # -- the session run ----------------------------------------------------------------------

    def base_tags(self) -> dict[str, str]:
        tags = {
            "mlflow.user": self.user,
            "mlflow.source.type": "NOTEBOOK" if self.notebook.path else "LOCAL",
            "mlflow.source.name": self.notebook_label,
            "cellops.notebook": self.notebook_label,
            "cellops.runner": self.notebook.runner,
            "cellops.version": __version__,
            "cellops.python": platform.python_version(),
        }
        if self.git:
            tags["mlflow.source.git.commit"] = self.git["commit"]
            tags["cellops.git.dirty"] = self.git["dirty"]
            if "branch" in self.git:
                tags["mlflow.source.git.branch"] = self.git["branch"]
        return tags

    def _open_run(self, client: Any) -> SessionRun:
        experiment_id = ensure_experiment(client, self.settings, self.experiment_name)
        stem = Path(self.notebook_label).stem
        tags = {**self.base_tags(), **owner_tags(), **job_tags()}
        name = f"{stem} job {tags['cellops.job']}" if "cellops.job" in tags else f"{stem} session"
        run = client.create_run(experiment_id, tags=tags, run_name=name)
        self.tracker.submit(reap_dead_runs)  # after the run is open: not on the user's path
        return SessionRun(experiment_id, run.info.run_id)

    @property
    def run(self) -> SessionRun:
        return self.run_future.result()

    def ensure_store(self) -> None:
        """Raise a named error unless the store answers and the session run is open; called
        before a step's cell runs. A session run the store refused (it was down, damaged or
        its disk full) is opened again first, so the step after the cause is fixed goes on."""
        self.tracker.ensure_reachable()
        if self.run_future.done() and self.run_future.exception() is not None:
            self.run_future = self.tracker.submit(self._open_run)
        try:
            self.run_future.result()
        except Exception as exc:
            raise store_error(self.tracker.uri, exc) from None

    def flush_records(self, timeout: float | None = None) -> None:
        """Wait until every queued write is done; raise StoreWriteError naming each write that
        failed since the last flush, and why."""
        self.tracker.flush(timeout)
        failures = self.tracker.take_failures()
        if failures:
            lines = "\n".join(f"  {failure.what}: {failure.reason}" for failure in failures)
            count = f"{len(failures)} write{'s' if len(failures) > 1 else ''}"
            raise StoreWriteError(
                f"not all step records were written: {count} did not reach the tracking "
                f"store {self.tracker.uri}:\n{lines}\n"
                "Fix the cause, then run those steps again to record them."
            )

    def run_exists(self, run_id: str) -> bool:
        """Whether the store still holds run `run_id`, not deleted: a cache hit must name a run
        that exists. A read from the caller's thread: the writer's queue need not drain."""
        client = self.tracker.client
        try:
            run = client.get_run(run_id)
        except Exception as exc:
            if _is_missing(exc):
                return False
            raise store_error(self.tracker.uri, exc) from None
        return getattr(run.info, "lifecycle_stage", "active") != "deleted"

    def record_parameters(self, parameters: dict[str, str]) -> None:
        """Papermill's injected parameters: params and a tag on the session run."""
        self.parameters.update(parameters)

        def write(client: Any) -> None:
            run_id = self.run_future.result().run_id
            params = [(k, param_text(_param_text(v))) for k, v in parameters.items()]
            tag = ("cellops.papermill.parameters", tag_text(json.dumps(self.parameters)))
            log_batch(client, run_id, params=params, tags=[tag])

        self.tracker.submit(write)

    def close(self) -> None:
        """End the session run (FAILED if a cell failed) and wait for every pending write."""
        if self.closed:
            return
        self.closed = True
        if os.getpid() != self.pid:
            return  # a forked child: the run and the tracker's thread are the parent's
        if self.run_future.done() and self.run_future.exception() is not None:
            self.tracker.close()  # the run never opened: nothing to end (the steps said why)
            return
        status = "FAILED" if self.failed else "FINISHED"

        def end(client: Any) -> None:
            client.set_terminated(self.run_future.result().run_id, status=status)

        try:
            self.tracker.submit(end)
            self.tracker.flush(timeout=120)
        finally:
            self.tracker.close()


def _is_missing(exc: BaseException) -> bool:
    """MLflow's "no such run" (its error code is lost when the job's proxy relays it)."""
    code = getattr(exc, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or " not found" in str(exc)


def _warn_if_damaged(settings: Settings) -> None:
    """Say at `%load_ext cellops` that the project's store is damaged (the first step then
    refuses to run with the same message). The cheap check: no sqlite3 import here."""
    try:
        check_store(settings.tracking_uri, deep=False)
    except CellopsError as exc:
        print(f"cellops: {exc}", file=sys.stderr)


def _param_text(source: str) -> str:
    """A parameter's source as MLflow shows it: a string literal without its quotes, as the
    job process and the step runs log it, so `params.label = 'x'` finds every run."""
    import ast

    try:
        value = ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return str(source)
    return value if isinstance(value, str) else str(source)


def ensure_experiment(client: Any, settings: Settings, name: str) -> str:
    """The experiment `name`, made if missing, tagged with the kind MLflow's UI reads (one
    made before cellops tagged them gets the tag now, unless it has a kind of its own)."""
    from .links import EXPERIMENT_KIND_TAG, EXPERIMENT_TAGS

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG not in (getattr(experiment, "tags", None) or {}):
            for key, value in EXPERIMENT_TAGS.items():
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    location = None
    if settings.tracking_uri.startswith(("sqlite:", "file:", "/")):
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "default"
        location = (settings.artifact_root / safe).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
    except Exception:  # another process created it first
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


_current: Session | None = None


def current_session() -> Session | None:
    return _current


def start_session(notebook: NotebookInfo, settings: Settings | None = None) -> Session:
    """Open the process's session (closing any previous one)."""
    global _current
    if _current is not None:
        _current.close()
    settings = settings or load_settings(notebook.path.parent if notebook.path else None)
    _current = Session(settings, notebook)
    return _current


def ensure_session() -> Session:
    """The open session, or a new one for plain Python code (a script, a test)."""
    if _current is None or _current.closed:
        return start_session(NotebookInfo(None, "python"))
    return _current


def end_session() -> None:
    global _current
    if _current is not None:
        _current.close()
        _current = None


atexit.register(end_session)
