"""What the status and store commands show, shared by the magics and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Settings
from ..store.session import Session
from .notebook import StepCell, read_notebook, read_step_cells
from .state import load_step_states
from .status import StepStatus, changed_inputs, step_statuses


def notebook_cells(path: Path | None) -> list[StepCell] | None:
    if path is None or not path.is_file():
        return None
    try:
        return read_step_cells(path)
    except (OSError, ValueError):
        return None


def session_statuses(session: Session, namespace: dict[str, Any]) -> list[StepStatus]:
    """Statuses as this kernel sees them: inputs compared with the values in `namespace`."""
    session.tracker.flush()  # the run ids are written on the tracker's thread
    states = load_step_states(session.settings, session.notebook_label)
    judge = changed_inputs(states, namespace, session.settings.root)
    return step_statuses(states, notebook_cells(session.notebook.path), judge)


def file_statuses(settings: Settings, label: str, path: Path | None) -> list[StepStatus]:
    """Statuses as the notebook file at `path` shows them, without a kernel: each step's code
    compared with its cell, and the literal values of the parameters cell with the inputs the
    steps read (see `notebook.read_notebook`). Raises ValueError if the file is no notebook."""
    states = load_step_states(settings, label)
    if path is None:
        return step_statuses(states)
    cells, parameters = read_notebook(path)
    judge = changed_inputs(states, parameters, settings.root, missing_changed=False)
    return step_statuses(states, cells, judge)


def status_frame(session: Session, namespace: dict[str, Any]) -> Any:
    """A DataFrame of the statuses: a table in a notebook, text in a terminal."""
    import pandas as pd

    rows = [status.as_row() for status in session_statuses(session, namespace)]
    columns = ["step", "state", "last duration (s)", "metrics", "run id", "why"]
    return pd.DataFrame(rows, columns=columns).set_index("step")


def store_summary(settings: Settings) -> str:
    lines = [
        f"project root:   {settings.root}",
        f"tracking store: {settings.tracking_uri}",
        f"artifacts:      {settings.artifact_root}",
        f"step cache:     {settings.cache_dir}",
        *ui_advice(settings),
    ]
    return "\n".join(lines)


def ui_advice(settings: Settings, label: str | None = None) -> list[str]:
    """How to open the store (or notebook `label`'s runs) in MLflow's UI, on its run tables:
    `cellops ui`, the UI's address when one is known, and plain `mlflow ui` for the store on
    this machine (whose experiments open on MLflow's GenAI overview: the runs are a click
    away, under "Model training")."""
    from ..store.links import UiLinks, is_remote

    links = UiLinks(settings)
    remote = is_remote(settings)
    starts = "" if remote or links.base else "starts MLflow's UI on this store and "
    opens = f"cellops ui {label}   ({starts}opens this notebook's runs)" if label else (
        f"cellops ui   ({starts}opens the runs of the notebook run last)"
    )  # fmt: skip
    lines = [
        "open it in MLflow's UI, on the runs cellops recorded:",
        f"  {opens}",
        "  cellops ui NOTEBOOK | RUN_ID | models:/NAME[/V|@ALIAS]   (a notebook, a run, a model)",
    ]
    if links.base:
        lines.append(f"  MLflow's UI for this store: {links.base}")
    if not remote:
        lines += [
            'or with MLflow alone (then choose "Model training", the experiment, "Runs"):',
            f"  {ui_command(settings)}",
        ]
    return lines


def ui_command(settings: Settings) -> str:
    """The plain `mlflow ui` command on the project's store (as `cellops ui` starts it)."""
    if settings.tracking_uri.startswith(("http://", "https://")):
        return f"open {settings.tracking_uri} in a browser"
    return (
        f"mlflow ui --backend-store-uri {settings.tracking_uri} "
        f"--default-artifact-root {settings.artifact_root.as_uri()}"
    )


def status_link(session: Session) -> str:
    """Where this notebook's runs are in MLflow's UI: the link, or the command that opens it
    (`%cellops status` prints it above the table). Never waits for a session run the store
    has not opened yet."""
    from ..store.links import UiLinks

    future = session.run_future
    opened = future.done() and future.exception() is None
    experiment_id = future.result().experiment_id if opened else None
    label = session.notebook_label if session.notebook.path else ""
    if not label:  # an IPython session: its experiment, as `cellops ui` lists them
        link = UiLinks(session.settings)
        if experiment_id is not None and link.base:
            page = link.experiment_runs(experiment_id, "this session's runs")
            return f"MLflow: {page.url}"
        return "MLflow: `cellops ui` opens the runs of the notebook run last in MLflow's UI"
    page = UiLinks(session.settings).notebook_runs(label, experiment_id)
    return f"MLflow: {page.sentence()}"
