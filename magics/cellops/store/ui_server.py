"""`cellops ui`: MLflow's UI on the project's store, opened on the page a person asked for.

A target names the page: a notebook (its experiment's run table), a run id (the run), or
`models:/NAME`, `models:/NAME/VERSION`, `models:/NAME@ALIAS` (the model or the version); none
opens the run table of the experiment with the latest run (the others' are listed). It is
looked up in the store first, so a mistake is said before a server starts.

For the project's own store, `mlflow ui` runs as a child process on 127.0.0.1 (this
interpreter's MLflow: the venv need not be activated), in a process group of its own so
stopping it stops its uvicorn worker too; for a tracking server nothing starts: the server
serves its UI, and only the link is given.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._paths import project_label
from ..config import Settings, load_settings
from ..errors import CellopsUsageError, UiServerError, UiTargetError
from .links import UiLink, UiLinks, forget_running_ui, note_running_ui

READY_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
LOG_NAME = "ui.log"  # in .cellops/: what `mlflow ui` printed, shown if it fails to start
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
MODEL_TARGET = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w.-]+))?/?$")
TARGET_HELP = (
    "give a notebook (cellops ui notebooks/quickstart.ipynb), a run id as `cellops steps` "
    "prints it, or a model: models:/NAME, models:/NAME/VERSION or models:/NAME@champion"
)


# -- the target ---------------------------------------------------------------------------------


def target_settings(target: str | None) -> Settings:
    """The settings of the project the target belongs to: a notebook's own, else the cwd's."""
    if target and _is_notebook(target):
        return load_settings(Path(target).resolve().parent)
    return load_settings()


def _is_notebook(target: str) -> bool:
    return target.endswith(".ipynb") or Path(target).is_file()


def resolve_target(settings: Settings, target: str | None, client: Any = None) -> UiLink:
    """The page `target` names, checked against the store (UiTargetError if it names nothing
    there); the link has no base yet: the caller knows where the UI is."""
    return resolve_pages(settings, target, client)[0]


def resolve_pages(settings: Settings, target: str | None, client: Any = None) -> list[UiLink]:
    """The page `target` names first; without a target, the run table of every experiment
    with runs (the latest first), or MLflow's experiment list for an empty store."""
    links = UiLinks(settings, base="")
    if client is None:
        from .client import connect_checked

        client = connect_checked(settings)
    if not target:
        return experiment_pages(links, client) or [links.experiments()]
    return [_target_link(links, client, settings, target)]


def _target_link(links: UiLinks, client: Any, settings: Settings, target: str) -> UiLink:
    model = MODEL_TARGET.match(target)
    if model:
        return _model_link(links, client, **model.groupdict())
    if target.startswith("models:"):
        raise UiTargetError(f"{target!r} is not a model URI: {TARGET_HELP}")
    if _is_notebook(target):
        return _notebook_link(links, client, settings, Path(target))
    if RUN_ID.match(target):
        return _run_link(links, client, settings, target)
    raise UiTargetError(f"{target!r} is no notebook, run id or model: {TARGET_HELP}")


def experiment_pages(links: UiLinks, client: Any, limit: int = 100) -> list[UiLink]:
    """The run tables of the store's experiments that hold runs, the one with the latest run
    first (the notebook a person ran last), then by name.

    Not MLflow's experiment list: from there an experiment opens on its GenAI overview."""
    experiments = client.search_experiments(max_results=limit)
    if not experiments:
        return []
    ids = [e.experiment_id for e in experiments]
    latest = client.search_runs(ids, order_by=["attributes.start_time DESC"], max_results=1)
    if not latest:
        return []
    first = latest[0].info.experiment_id
    with_runs = [
        e for e in experiments
        if e.experiment_id == first or client.search_runs([e.experiment_id], max_results=1)
    ]  # fmt: skip
    with_runs.sort(key=lambda e: (e.experiment_id != first, e.name))
    return [links.experiment_runs(e.experiment_id, f"the runs of {e.name}") for e in with_runs]


def _notebook_link(links: UiLinks, client: Any, settings: Settings, path: Path) -> UiLink:
    from .notebook_info import NotebookInfo
    from .session import experiment_name_for

    path = path.resolve()
    label = project_label(path, settings.root)
    name = experiment_name_for(settings, NotebookInfo(path, ""))
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1) if experiment else []
    if not runs:
        missing = "" if path.is_file() else f" (and there is no file {label})"
        raise UiTargetError(
            f"no runs are recorded for {label} in {settings.tracking_uri}{missing}: run its "
            f"%%step cells in Jupyter, or `cellops run {label}`, then `cellops ui {label}`"
        )
    return links.notebook_runs(label, experiment.experiment_id)


def _run_link(links: UiLinks, client: Any, settings: Settings, run_id: str) -> UiLink:
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        if not _is_missing(exc):
            raise
        run = None
    if run is None or getattr(run.info, "lifecycle_stage", "active") == "deleted":
        raise UiTargetError(
            f"no run {run_id} in {settings.tracking_uri}: `cellops steps NOTEBOOK` lists the "
            "run ids of a notebook's steps, or open the notebook's runs with `cellops ui "
            "NOTEBOOK`"
        )
    name = run.info.run_name or run_id
    return links.run(run_id, run.info.experiment_id, f"run {name!r}")


def _model_link(
    links: UiLinks, client: Any, name: str, version: str | None, alias: str | None
) -> UiLink:
    listing = f"`cellops models {name}` lists its versions and aliases"
    try:
        if alias:
            version = str(client.get_model_version_by_alias(name, alias).version)
        elif version:
            client.get_model_version(name, version)
        else:
            client.get_registered_model(name)
    except Exception as exc:
        if not _is_missing(exc):
            raise
        if not _model_exists(client, name):
            raise UiTargetError(
                f"there is no registered model {name!r}: `cellops models` lists the models"
            ) from None
        what = f"alias @{alias}" if alias else f"version {version}"
        raise UiTargetError(f"model {name!r} has no {what}: {listing}") from None
    return links.model_version(name, version) if version else links.model(name)


def _model_exists(client: Any, name: str) -> bool:
    try:
        client.get_registered_model(name)
    except Exception as exc:
        if _is_missing(exc):
            return False
        raise
    return True


def _is_missing(exc: BaseException) -> bool:
    """MLflow's "does not exist" (a run, a model, a version, an alias)."""
    code = getattr(exc, "error_code", "")
    text = str(exc).lower()
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in text


# -- the server ---------------------------------------------------------------------------------


def free_port(port: int | None = None) -> int:
    """`port` if nothing listens on it on 127.0.0.1 (usage error if something does), else a
    free port the system picks."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port or 0))
        except OSError:
            raise CellopsUsageError(
                f"port {port} is in use on 127.0.0.1: choose another with --port, or leave "
                "--port out for a free one"
            ) from None
        return probe.getsockname()[1]


def mlflow_ui_command(settings: Settings, port: int) -> list[str]:
    """`python -m mlflow ui` on the project's store and artifact root, on 127.0.0.1:`port`.

    `--default-artifact-root` is where experiments made in the UI keep their artifacts (the
    ones cellops makes carry their own location under the same root); `--artifacts-destination`
    is where the server's artifact proxy (on by default in MLflow 3) reads and writes. One
    worker: a person browsing needs no more."""
    artifacts = settings.artifact_root.as_uri()
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", settings.tracking_uri,
        "--default-artifact-root", artifacts,
        "--artifacts-destination", artifacts,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip


@dataclass
class UiServer:
    """A running `mlflow ui`: its process (leader of its own group), address and log."""

    process: subprocess.Popen
    url: str
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_ui(settings: Settings, port: int) -> UiServer:
    """Start `mlflow ui` on the project's store (not waiting for it).

    The store is opened once first, under cellops' lock: its schema is then in place and, if
    the project was moved, its locations repaired, before MLflow's server reads it."""
    from .client import connect_checked

    connect_checked(settings)
    settings.artifact_root.mkdir(parents=True, exist_ok=True)
    log = settings.state_dir / LOG_NAME
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # GenAI jobs: not needed here
    with open(log, "wb") as output:
        process = subprocess.Popen(  # our own interpreter and arguments
            mlflow_ui_command(settings, port),
            cwd=str(settings.state_dir),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return UiServer(process, f"http://127.0.0.1:{port}", log)


def wait_ready(server: UiServer, timeout: float = READY_TIMEOUT) -> None:
    """Until the server answers `/health`, or UiServerError (with its log) when it exits or
    the time is up (it is stopped then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise UiServerError(
                f"mlflow ui exited with code {server.process.returncode} before it answered; "
                f"its log ({server.log}) ends with:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    stop_ui(server)
    raise UiServerError(
        f"mlflow ui did not answer on {server.url} within {timeout:.0f} s; its log "
        f"({server.log}) ends with:\n{server.log_tail()}"
    )


def stop_ui(server: UiServer, timeout: float = STOP_TIMEOUT) -> None:
    """Stop the server's whole process group: SIGTERM, then SIGKILL if it lingers."""
    group = server.process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    if not _group_gone(server.process, group, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        _group_gone(server.process, group, 10.0)


def _group_gone(process: subprocess.Popen, group: int, timeout: float) -> bool:
    """Wait until no process of `group` is left (the leader reaped), up to `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, or killpg(group, 0) keeps finding its zombie
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def running_ui_server(settings: Settings, port: int) -> Iterator[UiServer]:
    """`mlflow ui` started and answering for the block, noted in `.cellops/ui.json` so links
    printed meanwhile (`%cellops status`, `cellops store`, ...) point at it; stopped after."""
    server = start_ui(settings, port)
    try:
        wait_ready(server)
        note_running_ui(settings, server.url, server.process.pid)
        yield server
    finally:
        forget_running_ui(settings, server.process.pid)
        stop_ui(server)
