"""Whole notebooks in real kernels: the quickstart and fixtures under Papermill and nbclient.

Each test copies its notebook into the temporary `project` and reads what was recorded back
with `MlflowClient` from the project's default store. A kernel's last writes (the end of its
session run) happen as it exits, so every check runs after the kernel is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from mlflow.tracking import MlflowClient

from .conftest import REPO, fixture_path

QUICKSTART = REPO / "notebooks" / "quickstart.ipynb"
STEPS = ["load", "validate", "features", "train", "evaluate"]
SMALL = {"n_rows": "4000", "n_cards": "300", "max_iter": "10", "seed": "7"}


def store(project: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{project / '.cellops' / 'mlflow.db'}")


def git(project: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, cwd=project, check=True, capture_output=True, text=True).stdout


def add_notebook(project: Path, source: Path, relative: str) -> Path:
    """Copy `source` into the project and commit it, as a user's notebook would be."""
    target = project / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source.read_text())
    git(project, "add", "-A")
    git(project, "commit", "-qm", f"add {relative}")
    return target


def papermill(project: Path, notebook: Path, output: str, *args: str):
    """The `papermill` command, as a user types it in the project folder."""
    command = [str(Path(sys.executable).with_name("papermill")), str(notebook.relative_to(project))]
    command += [output, "--no-progress-bar", "--log-level", "ERROR", *args]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=600)


def session_runs(client: MlflowClient, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    return client.search_runs(
        [found.experiment_id],
        "tags.`cellops.kind` = 'session'",
        order_by=["attributes.start_time ASC"],
    )


def step_runs(client: MlflowClient, session) -> list:
    return client.search_runs(
        [session.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{session.info.run_id}'",
        order_by=["attributes.start_time ASC"],
    )


def test_quickstart_under_papermill_is_tracked_then_restored_from_the_cache(project: Path):
    notebook = add_notebook(project, QUICKSTART, "notebooks/quickstart.ipynb")
    head = git(project, "rev-parse", "HEAD").strip()
    parameters = [arg for name, value in SMALL.items() for arg in ("-p", name, value)]

    first = papermill(project, notebook, "out-1.ipynb", *parameters)
    assert first.returncode == 0, first.stderr

    client = store(project)
    (session,) = session_runs(client, "notebooks/quickstart")
    tags = session.data.tags
    assert session.info.status == "FINISHED"
    assert tags["cellops.notebook"] == "notebooks/quickstart.ipynb"
    assert tags["cellops.runner"] == "papermill"
    assert tags["mlflow.source.git.commit"] == head
    assert json.loads(tags["cellops.papermill.parameters"]) == SMALL
    assert {k: session.data.params[k] for k in SMALL} == SMALL
    steps = step_runs(client, session)
    assert [run.info.run_name for run in steps] == STEPS
    assert all(run.info.status == "FINISHED" for run in steps)
    assert all(run.data.tags["cellops.state"] == "executed" for run in steps)
    assert all(run.data.tags["cellops.notebook"] == tags["cellops.notebook"] for run in steps)
    evaluate = steps[-1].data.metrics
    assert {"f1", "auc", "precision", "recall", "flagged_share"} <= set(evaluate)
    assert 0.5 < evaluate["auc"] <= 1
    assert "train_auc" in steps[3].data.metrics
    assert steps[3].data.params["max_iter"] == "10"

    second = papermill(project, notebook, "out-2.ipynb", *parameters)
    assert second.returncode == 0, second.stderr
    sessions = session_runs(client, "notebooks/quickstart")
    assert [run.info.status for run in sessions] == ["FINISHED", "FINISHED"]
    again = step_runs(client, sessions[1])
    assert [run.info.run_name for run in again] == STEPS
    assert [run.data.tags["cellops.state"] for run in again] == ["cached"] * 5
    assert [run.data.tags["cellops.cached_from"] for run in again] == [
        run.info.run_id for run in steps
    ]
    assert again[-1].data.metrics["auc"] == evaluate["auc"]
    executed = nbformat.read(project / "out-2.ipynb", as_version=4)
    printed = "".join(
        out.get("text", "") for cell in executed.cells for out in cell.get("outputs", [])
    )
    assert printed.count("cached: restored") == 5


def test_failed_papermill_job_fails_its_runs_and_the_fixed_job_resumes(project: Path):
    notebook = add_notebook(project, fixture_path("failing_step.ipynb"), "failing_step.ipynb")

    failed = papermill(project, notebook, "out-1.ipynb")
    assert failed.returncode != 0
    assert "PapermillExecutionError" in failed.stderr
    assert "total is 45, expected 46" in failed.stderr

    client = store(project)
    (session,) = session_runs(client, "failing_step")
    assert session.info.status == "FAILED"
    steps = {run.info.run_name: run for run in step_runs(client, session)}
    assert set(steps) == {"prepare", "check"}  # the job stopped at `check`
    assert steps["prepare"].info.status == "FINISHED"
    check = steps["check"]
    assert check.info.status == "FAILED"
    assert check.data.tags["cellops.state"] == "failed"
    assert "ValueError: total is 45, expected 46" in check.data.tags["cellops.error"]
    traceback = client.download_artifacts(check.info.run_id, "cellops/traceback.txt")
    assert "expected 46" in Path(traceback).read_text()

    fixed = nbformat.read(notebook, as_version=4)
    fixed.cells[2].source = fixed.cells[2].source.replace("46", "45")
    nbformat.write(fixed, notebook)
    resumed = papermill(project, notebook, "out-2.ipynb")
    assert resumed.returncode == 0, resumed.stderr

    sessions = session_runs(client, "failing_step")
    assert [run.info.status for run in sessions] == ["FAILED", "FINISHED"]
    states = {
        run.info.run_name: run.data.tags["cellops.state"] for run in step_runs(client, sessions[1])
    }
    assert states == {"prepare": "cached", "check": "executed", "report": "executed"}


def _execute_in_kernel(project: Path, notebook: Path, env: dict[str, str]) -> None:
    """Run `notebook` with nbclient, as a front end would: a kernel started in its folder."""
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(project)}}
    )
    client.execute(env={**os.environ, **env})


@pytest.mark.parametrize("front_end", ["jupyter", "vscode"])
def test_notebook_path_comes_from_the_front_end(project: Path, front_end: str):
    notebook = add_notebook(
        project, fixture_path("detect_notebook.ipynb"), "analysis/detect_notebook.ipynb"
    )
    env = {}
    if front_end == "jupyter":  # Jupyter Server names the session after the notebook's path
        env["JPY_SESSION_NAME"] = str(notebook)
    else:  # VS Code sets this global before any user code runs
        nb = nbformat.read(notebook, as_version=4)
        nb.cells.insert(0, nbformat.v4.new_code_cell(f"__vsc_ipynb_file__ = {str(notebook)!r}"))
        nbformat.write(nb, notebook)
    _execute_in_kernel(project, notebook, env)

    client = store(project)
    (session,) = session_runs(client, "analysis/detect_notebook")
    assert session.info.status == "FINISHED"
    assert session.data.tags["cellops.notebook"] == "analysis/detect_notebook.ipynb"
    assert session.data.tags["cellops.runner"] == front_end
    (step,) = step_runs(client, session)
    assert step.data.tags["cellops.step"] == "answer"
    assert step.data.tags["cellops.runner"] == front_end


def test_papermill_injected_paths_name_the_notebook(project: Path):
    """`papermill --inject-paths`: the notebook's path arrives as a parameter.

    Papermill's Python API is used so that nothing else (its command line) names the notebook;
    it injects the paths the way `--inject-paths` does, as parameters.
    """
    import papermill as pm

    notebook = add_notebook(project, fixture_path("detect_notebook.ipynb"), "jobs/detect.ipynb")
    output = project / "out.ipynb"
    paths = {"PAPERMILL_INPUT_PATH": str(notebook), "PAPERMILL_OUTPUT_PATH": str(output)}
    pm.execute_notebook(
        str(notebook), str(output), parameters=paths, kernel_name="python3", progress_bar=False
    )

    client = store(project)
    (session,) = session_runs(client, "jobs/detect")
    assert session.info.status == "FINISHED"
    assert session.data.tags["cellops.notebook"] == "jobs/detect.ipynb"
    assert session.data.tags["cellops.runner"] == "papermill"
    # the injected cell ran before `%load_ext cellops`: its parameters are recorded all the same
    recorded = json.loads(session.data.tags["cellops.papermill.parameters"])
    assert str(notebook) in recorded["PAPERMILL_INPUT_PATH"]
    assert str(notebook) in session.data.params["PAPERMILL_INPUT_PATH"]
