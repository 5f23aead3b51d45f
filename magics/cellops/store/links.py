"""Links into MLflow's UI that land on what cellops recorded: the runs, not the GenAI pages.

Why: MLflow 3's UI opens an experiment on its GenAI "Overview" (traces, judges), where the runs
cellops writes do not show; they are on the experiment's "runs" tab in the "Model training"
workflow. The UI is a hash router (`http://HOST/#/experiments/1/runs`) whose workflow comes from
the hash route's query, `?workflowType=machine_learning` (else from the browser's local
storage, `genai` at first). Checked in MLflow 3.17's bundle (`server/js/build`): the routes
`/experiments/:experimentId/:tabName`, `/experiments/:experimentId/runs/:runUuid`,
`/runs/:runUuid` (which redirects to the latter), `/models/:modelName` and
`/models/:modelName/versions/:version`, and the `WorkflowTypeProvider` that reads the query.

Where a link points (`ui_base_url`), first that applies:
1. `mlflow_ui_url` in `[tool.cellops]` or `CELLOPS_MLFLOW_UI_URL`: a UI the team runs;
2. a tracking server (`http(s)://` tracking URI): the server serves its own UI;
3. the `cellops ui` of this project, while it runs (it notes its address in `.cellops/ui.json`);
4. none: the link is then the `cellops ui TARGET` command that opens the same page.

Nothing here imports MLflow: the builders are string work, cheap in `%cellops status`.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from .._fs import atomic_write_json, read_json
from ..config import Settings

WORKFLOW_PARAM = "workflowType"
ML_WORKFLOW = "machine_learning"  # MLflow's UI: WorkflowType.MACHINE_LEARNING ("Model training")

# The experiment tag MLflow's UI reads to classify an experiment (ExperimentKind in its bundle:
# genai_development, custom_model_development, finetuning, ...). 3.17 still opens the GenAI
# pages first whatever it says; a later MLflow may honour it.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
ML_EXPERIMENT_KIND = "custom_model_development"
EXPERIMENT_TAGS = {EXPERIMENT_KIND_TAG: ML_EXPERIMENT_KIND}

UI_URL_ENV = "CELLOPS_MLFLOW_UI_URL"
UI_STATE_NAME = "ui.json"  # in .cellops/: the address of the project's running `cellops ui`


# -- routes (the part after the base URL) ---------------------------------------------------------


def _route(path: str, **query: str | None) -> str:
    params = {WORKFLOW_PARAM: ML_WORKFLOW, **{k: v for k, v in query.items() if v}}
    return f"#{path}?{urlencode(params, quote_via=quote)}"


def _part(text: str) -> str:
    return quote(str(text), safe="")


def experiments_route() -> str:
    return _route("/experiments")


def experiment_runs_route(experiment_id: str, search: str | None = None) -> str:
    """The experiment's run table; `search` is a filter as MLflow's search box takes it."""
    return _route(f"/experiments/{_part(experiment_id)}/runs", searchFilter=search)


def run_route(run_id: str, experiment_id: str | None = None) -> str:
    """A run's page; without the experiment, MLflow's `/runs/ID`, which finds it."""
    if experiment_id is None:
        return _route(f"/runs/{_part(run_id)}")
    return _route(f"/experiments/{_part(experiment_id)}/runs/{_part(run_id)}")


def model_route(name: str) -> str:
    return _route(f"/models/{_part(name)}")


def model_version_route(name: str, version: str | int) -> str:
    return _route(f"/models/{_part(name)}/versions/{_part(str(version))}")


def page_url(base: str, route: str) -> str:
    return f"{base.rstrip('/')}/{route}"


# -- where the UI is ------------------------------------------------------------------------------


def is_remote(settings: Settings) -> bool:
    """Whether the tracking store is a server (which serves MLflow's UI itself)."""
    return settings.tracking_uri.startswith(("http://", "https://"))


def ui_base_url(settings: Settings) -> str | None:
    """Where MLflow's UI for the project's store is (see the module's docstring), or None."""
    return configured_ui_url(settings) or running_ui(settings)


def configured_ui_url(settings: Settings) -> str | None:
    """The UI the settings name (`mlflow_ui_url`), or the tracking server's own: a UI that
    is there without `cellops ui`."""
    if settings.mlflow_ui_url:
        return settings.mlflow_ui_url.rstrip("/")
    if is_remote(settings):
        return settings.tracking_uri.rstrip("/")
    return None


def ui_state_file(settings: Settings) -> Path:
    return settings.state_dir / UI_STATE_NAME


def running_ui(settings: Settings) -> str | None:
    """The address of this project's `cellops ui` while its process lives, else None."""
    from .reaper import process_start_time

    noted = read_json(ui_state_file(settings))
    if not isinstance(noted, dict) or not isinstance(noted.get("url"), str):
        return None
    try:
        pid = int(noted.get("pid", ""))
    except (TypeError, ValueError):
        return None
    started = process_start_time(pid)
    if started is None or started != noted.get("pid_start"):
        return None  # it died without removing the note (SIGKILL), or the pid was reused
    if noted.get("uri") != settings.tracking_uri:
        return None  # it serves another store than the one these settings name
    return noted["url"].rstrip("/")


def note_running_ui(settings: Settings, url: str, pid: int | None = None) -> None:
    """Note that `cellops ui` (process `pid`, this one by default) serves the store at `url`."""
    from .reaper import process_start_time

    pid = pid or os.getpid()
    payload = {
        "url": url,
        "pid": pid,
        "pid_start": process_start_time(pid),
        "uri": settings.tracking_uri,
    }
    atomic_write_json(ui_state_file(settings), payload)


def forget_running_ui(settings: Settings, pid: int | None = None) -> None:
    """Remove the note, if it is the one process `pid` (this one by default) wrote."""
    noted = read_json(ui_state_file(settings))
    if isinstance(noted, dict) and noted.get("pid") == (pid or os.getpid()):
        ui_state_file(settings).unlink(missing_ok=True)


# -- links ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UiLink:
    """A page of MLflow's UI: its URL when a UI is known, else the command that opens it."""

    route: str
    target: str  # what `cellops ui` takes to open the page ("" for the experiments)
    what: str  # the page, for a sentence: "the runs of notebooks/a.ipynb"
    base: str | None = None

    @property
    def url(self) -> str | None:
        return page_url(self.base, self.route) if self.base else None

    @property
    def command(self) -> str:
        return shlex.join(["cellops", "ui", *([self.target] if self.target else [])])

    def __str__(self) -> str:
        return self.url or self.command

    def sentence(self) -> str:
        """One line for a person: the URL, or which command opens the page."""
        if self.url:
            return self.url
        return f"`{self.command}` opens {self.what} in MLflow's UI"


class UiLinks:
    """Builds the links of one project, with its UI's address looked up once."""

    def __init__(self, settings: Settings, base: str | None = None):
        self.settings = settings
        self.base = base if base is not None else ui_base_url(settings)

    def _link(self, route: str, target: str, what: str) -> UiLink:
        return UiLink(route, target, what, self.base)

    def experiments(self) -> UiLink:
        return self._link(experiments_route(), "", "the experiments")

    def notebook_runs(self, label: str, experiment_id: str | None) -> UiLink:
        """The run table of notebook `label` (a project-relative path)'s experiment."""
        what = f"the runs of {label}"
        if experiment_id is None:  # not recorded yet: `cellops ui` says so when asked
            return UiLink(experiments_route(), label, what, None)
        return self._link(experiment_runs_route(experiment_id), label, what)

    def experiment_runs(self, experiment_id: str, what: str, search: str | None = None) -> UiLink:
        return self._link(experiment_runs_route(experiment_id, search), "", what)

    def run(self, run_id: str, experiment_id: str | None = None, what: str = "") -> UiLink:
        return self._link(run_route(run_id, experiment_id), run_id, what or f"run {run_id}")

    def run_in_store(self, run_id: str, client: Any = None) -> UiLink:
        """The run's page, its experiment looked up in the store when there is a UI to link
        to (MLflow's `/runs/ID` finds it too, but drops `workflowType` on the way: the run
        then shows in the GenAI pages). Without a UI, the command needs no lookup."""
        experiment_id = None
        if self.base:
            try:
                if client is None:
                    from .client import connect_checked

                    client = connect_checked(self.settings)
                experiment_id = client.get_run(run_id).info.experiment_id
            except Exception:  # a link is a convenience: never the reason a command fails
                experiment_id = None
        return self.run(run_id, experiment_id)

    def model(self, name: str) -> UiLink:
        return self._link(model_route(name), f"models:/{name}", f"model {name}")

    def model_version(self, name: str, version: str | int) -> UiLink:
        return self._link(
            model_version_route(name, version), f"models:/{name}/{version}", f"{name} v{version}"
        )


def run_sentence(settings: Settings, run_id: str) -> str:
    """The run's link, or the `cellops ui RUN_ID` command that opens it (for summaries)."""
    return UiLinks(settings).run_in_store(run_id).sentence()
