"""Notebooks run as jobs (issue 4): real Papermill executions through `cellops run`.

Every job here starts a real kernel, so the fixture notebooks (tests/fixtures/jobs/) are tiny
and one finished job is shared by the tests that only read it. What was recorded is read back
with `MlflowClient`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner, Result
from mlflow.tracking import MlflowClient

from cellops.cli import cli
from cellops.config import default_tracking_uri
from cellops.store.reaper import process_start_time, reap_dead_runs

from .conftest import REPO, fixture_path

BIN = Path(sys.executable).parent
JOB_LINE = re.compile(
    r"^job (?P<job>\S+) (?P<state>succeeded|FAILED) \(run (?P<run>[0-9a-f]+)\)$", re.M
)
ISOLATED_ENV = ("MLFLOW_TRACKING_URI", "CELLOPS_NOTEBOOK", "JPY_SESSION_NAME", "CELLOPS_USER")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip


# -- helpers -------------------------------------------------------------------------------------


def prepare(root: Path, template_db: Path, *notebooks: str) -> MlflowClient:
    """Copy fixture notebooks into the project, commit them; a migrated, empty store."""
    (root / ".gitignore").write_text(".cellops/\nreports/\n")
    for name in notebooks:
        shutil.copy(fixture_path("jobs", name), root / name)
    commit(root)
    uri = default_tracking_uri(root)
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template_db, db)  # the schema's migrations take seconds: done once
    return MlflowClient(uri)


def commit(root: Path) -> None:
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "notebooks", "--allow-empty"], cwd=root, check=True,
                   env=env)  # fmt: skip


def cellops(*args: str) -> Result:
    """The `cellops` command in this process, as a user types it (in the current directory)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def cellops_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ISOLATED_ENV}


def job_line(output: str) -> dict[str, str]:
    match = JOB_LINE.search(output)  # (stdout: MLflow may draw a progress bar on stderr)
    assert match, output
    return match.groupdict()


def experiment(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    assert found is not None, f"no experiment {name!r}"
    return found.experiment_id


def runs_where(client: MlflowClient, name: str, query: str) -> list:
    return client.search_runs([experiment(client, name)], query, max_results=1000)


def job_runs(client: MlflowClient, name: str, job_id: str) -> list:
    runs = runs_where(client, name, f"tags.`cellops.job` = '{job_id}'")
    return sorted(runs, key=lambda r: int(r.data.tags["cellops.attempt"]))


def step_runs(client: MlflowClient, run) -> dict[str, object]:
    children = client.search_runs(
        [run.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{run.info.run_id}' and tags.`cellops.kind` = 'step'",
    )
    return {child.data.tags["cellops.step"]: child for child in children}


def artifact_paths(client: MlflowClient, run_id: str, path: str) -> set[str]:
    return {item.path for item in client.list_artifacts(run_id, path)}


def manifest_of(client: MlflowClient, run_id: str) -> dict:
    return json.loads(Path(client.download_artifacts(run_id, "cellops/manifest.json")).read_text())


def head_commit(root: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return done.stdout.strip()


# -- one finished job, shared by the tests that read it ------------------------------------------


@dataclass
class Finished:
    root: Path
    client: MlflowClient
    result: Result
    job_id: str
    run_id: str


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path) -> Finished:
    """job.ipynb run once with a parameters file, a -p value and an unknown (allowed) name."""
    root = tmp_path_factory.mktemp("finished") / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "demo"\n\n[tool.cellops]\n')
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / "data.csv").write_text("r1\nr2\nr3\n")
    (root / "params.yaml").write_text("a: 3\nlabel: from-yaml\nfast: false\n")
    client = prepare(root, empty_mlflow_db, "job.ipynb")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for name in ISOLATED_ENV:
            mp.delenv(name, raising=False)
        result = cellops("run", "job.ipynb", "-f", "params.yaml", "-p", "b", "2.5",
                         "-p", "extra", "5", "--allow-unknown", "--no-progress")  # fmt: skip
    line = job_line(result.stdout)
    return Finished(root, client, result, line["job"], line["run"])


def test_a_job_run_records_notebook_html_manifest_and_nested_steps(finished: Finished) -> None:
    assert finished.result.exit_code == 0, finished.result.output
    out_dir = finished.root / "reports" / "runs" / finished.job_id
    assert (out_dir / "job.ipynb").is_file() and (out_dir / "job.html").is_file()
    assert "<html" in (out_dir / "job.html").read_text()[:1000].lower()
    # the values: a and label from the YAML file, b from -p (coerced to the default's float),
    # extra injected only because --allow-unknown; all in the cell papermill adds after ours
    executed = nbformat.read(out_dir / "job.ipynb", as_version=4)
    tags = [cell.metadata.get("tags", []) for cell in executed.cells]
    assert "parameters" in tags[1] and "injected-parameters" in tags[2]
    assert "extra = 5" in executed.cells[2].source and "b = 2.5" in executed.cells[2].source
    printed = "".join(o.get("text", "") for o in executed.cells[-2].outputs)
    assert "total=10.5 label=from-yaml fast=False" in printed  # 3 * 2.5 + 3 lines of data.csv
    # the kernel wrote every record through the job process (store_proxy): no mlflow import
    checked = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    assert "kernel imported mlflow: False" in checked

    client = finished.client
    run = client.get_run(finished.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["cellops.kind"] == "job"
    assert run.data.tags["cellops.job"] == finished.job_id
    assert run.data.tags["cellops.attempt"] == "1"
    assert run.data.tags["cellops.job.status"] == "succeeded"
    assert run.data.tags["mlflow.source.git.commit"] == head_commit(finished.root)
    assert run.data.params["a"] == "3" and run.data.params["b"] == "2.5"
    assert run.data.params["label"] == "from-yaml" and run.data.params["extra"] == "5"
    assert run.data.metrics["score"] == 7.5 and run.data.metrics["total"] == 10.5
    assert {"notebook/job.ipynb", "notebook/job.html"} <= artifact_paths(
        client, finished.run_id, "notebook"
    )

    manifest = manifest_of(client, finished.run_id)
    assert manifest["notebook"] == "job.ipynb"
    assert manifest["git"]["commit"] == head_commit(finished.root)
    assert manifest["parameters"]["a"] == 3 and manifest["parameters"]["fast"] is False
    assert manifest["seed"] == 0  # the notebook's default, as nothing overrode it
    assert manifest["defaults"]["data_path"] == "data.csv"
    assert manifest["packages"]["mlflow"] and manifest["packages"]["papermill"]
    assert manifest["python"] and manifest["platform"]
    assert set(manifest["input_files"]) == {"data_path"}  # the one value naming a file

    steps = step_runs(client, run)
    assert set(steps) == {"first", "second"}
    for step in steps.values():
        assert step.info.status == "FINISHED"
        assert step.data.tags["cellops.state"] == "executed"
    assert steps["first"].data.metrics["score"] == 7.5
    assert "Traceback" not in finished.result.output  # a summary, not papermill's log:
    assert "ran: first, second" in finished.result.output
    assert f"notebook: {out_dir / 'job.ipynb'}" in finished.result.output


def test_reproduce_refuses_changed_code_or_data_then_runs_with_allow_changes(
    finished: Finished, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(finished.root)
    (finished.root / "data.csv").write_text("r1\nr2\nr3\nr4\n")
    refused = cellops("reproduce", finished.run_id, "--no-progress")
    assert refused.exit_code == 2, refused.output
    assert "input file data.csv (parameter data_path) changed" in refused.output
    assert "notebook job.ipynb changed" not in refused.output

    notebook = nbformat.read(finished.root / "job.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("print('an edit')"))
    nbformat.write(notebook, finished.root / "job.ipynb")
    refused = cellops("reproduce", finished.run_id, "--no-progress")
    assert refused.exit_code == 2
    assert "input file data.csv (parameter data_path) changed" in refused.output
    assert "notebook job.ipynb changed" in refused.output
    assert "--allow-changes" in refused.output
    jobs = runs_where(finished.client, "job", "tags.`cellops.kind` = 'job'")
    assert [r.info.run_id for r in jobs] == [finished.run_id]  # nothing ran

    again = cellops("reproduce", finished.run_id, "--allow-changes", "--no-progress")
    assert again.exit_code == 0, again.output
    assert "changed: input file data.csv (parameter data_path) changed" in again.output
    assert "ran: first, second" in again.output  # the cache is off: every step runs
    rows = {line.split()[0]: line.split()[1:] for line in again.output.splitlines() if line}
    assert rows["total"] == ["10.5", "11.5"]  # original and reproduced, side by side
    assert rows["score"] == ["7.5", "7.5"]
    new_run = finished.client.get_run(job_line(again.stdout)["run"])
    assert new_run.data.params["a"] == "3" and new_run.data.params["extra"] == "5"


# -- parameters and bad input, refused before a kernel starts ------------------------------------


def test_inspect_lists_parameters_with_types_and_defaults(project: Path) -> None:
    shutil.copy(fixture_path("jobs", "job.ipynb"), project)
    shutil.copy(fixture_path("jobs", "no_params.ipynb"), project)
    result = cellops("inspect", "job.ipynb")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:3] for line in result.output.splitlines()[2:]}
    assert rows["a"] == ["int", "1"]
    assert rows["b"] == ["float", "2.0"]
    assert rows["label"] == ["str", '"x"']
    assert rows["fast"] == ["bool", "True"]
    assert "a factor of the score" in result.output  # the comment is the help

    result = cellops("inspect", "no_params.ipynb")
    assert result.exit_code == 0
    assert "has no cell tagged 'parameters'" in result.output
    assert "new cell at the top" in result.output


BAD_INPUT = {
    "unknown parameter": (
        ["run", "job.ipynb", "-p", "lable", "y"],
        ["has no parameter 'lable'", "Did you mean 'label'?", "--allow-unknown"],
    ),
    "uncoercible int": (
        ["run", "job.ipynb", "-p", "a", "three"],
        ["parameter 'a' takes an int", "cannot use 'three'"],
    ),
    "uncoercible bool": (
        ["run", "job.ipynb", "-p", "fast", "maybe"],
        ["parameter 'fast' takes a bool", "cannot use 'maybe'"],
    ),
    "unknown parameter in a file": (
        ["run", "job.ipynb", "-f", "params.yaml"],
        ["has no parameter 'sead'", "Did you mean 'seed'?"],
    ),
    "missing parameters file": (
        ["run", "job.ipynb", "-f", "nope.yaml"],
        ["parameters file nope.yaml does not exist"],
    ),
    "not a notebook": (["run", "notes.txt"], ["notes.txt is not a notebook"]),
    "corrupted JSON": (["run", "broken.ipynb"], ["broken.ipynb is not a valid notebook"]),
    "missing notebook": (["run", "gone.ipynb"], ["gone.ipynb does not exist"]),
    "inspect corrupted JSON": (["inspect", "broken.ipynb"], ["broken.ipynb is not a valid"]),
    "inspect not a notebook": (["inspect", "notes.txt"], ["notes.txt is not a notebook"]),
    "unknown kernel": (
        ["run", "job.ipynb", "-k", "no-such-kernel"],
        ["no kernel named 'no-such-kernel' is installed", "installed kernels:", "python3"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_a_usage_error_before_any_kernel_starts(project: Path, case: str) -> None:
    shutil.copy(fixture_path("jobs", "job.ipynb"), project)
    (project / "notes.txt").write_text("just text\n")
    (project / "broken.ipynb").write_text('{"cells": [ {"cell_type": "code", ')
    (project / "params.yaml").write_text("a: 2\nsead: 3\n")
    args, expected = BAD_INPUT[case]
    result = cellops(*args, "--no-progress") if args[0] == "run" else cellops(*args)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())  # click wraps nothing, but be safe
    for fragment in expected:
        assert fragment in message
    assert "Traceback" not in result.output
    assert not (project / "reports").exists()  # no job started


# -- runs that fail, resume, retry ---------------------------------------------------------------


def test_a_failed_job_names_cell_step_and_error_and_resumes_at_the_failed_step(
    project: Path, empty_mlflow_db: Path
) -> None:
    client = prepare(project, empty_mlflow_db, "job.ipynb")
    marker = project / "fail.marker"
    marker.write_text("")
    failed = cellops("run", "job.ipynb", "-p", "a", "3", "--retries", "1", "--retry-delay", "0",
                     "--no-progress")  # fmt: skip
    assert failed.exit_code == 3, failed.output
    first = job_line(failed.stdout)
    assert first["state"] == "FAILED"
    executed = nbformat.read(
        project / "reports" / "runs" / first["job"] / "job.ipynb", as_version=4
    )
    cells = [
        c for c in executed.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])
    ]
    index = next(i for i, c in enumerate(cells) if c.source.startswith("%%step second"))
    assert re.search(
        rf"error in cell {index} \(In \[\d+\]\), step 'second': "
        r"RuntimeError: marker fail\.marker is present",
        failed.output,
    ), failed.output
    assert "ran: first" in failed.output

    # a failure in the notebook's code is not retried without --retry-on-error: one attempt
    (attempt,) = job_runs(client, "job", first["job"])
    assert attempt.info.run_id == first["run"]
    assert attempt.info.status == "FAILED"
    assert attempt.data.tags["cellops.job.status"] == "failed"
    assert attempt.data.tags["cellops.job.transient"] == "false"
    assert "step 'second'" in attempt.data.tags["cellops.job.error"]
    steps = step_runs(client, attempt)
    assert steps["first"].data.tags["cellops.state"] == "executed"
    assert steps["second"].info.status == "FAILED"
    assert steps["second"].data.tags["cellops.state"] == "failed"
    assert "cellops/traceback.txt" in artifact_paths(client, steps["second"].info.run_id, "cellops")

    marker.unlink()
    resumed = cellops("run", "--resume", first["run"], "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert "skipped (cached): first" in resumed.output
    assert "ran: second" in resumed.output
    run = client.get_run(job_line(resumed.stdout)["run"])
    assert run.data.params["a"] == "3"  # the failed job's parameters, replayed
    steps = step_runs(client, run)
    assert steps["first"].data.tags["cellops.state"] == "cached"
    assert steps["second"].data.tags["cellops.state"] == "executed"
    assert run.data.metrics["total"] == 6.0  # 3 * 2.0, and no data file

    rerun = cellops("run", "job.ipynb", "-p", "a", "3", "--no-progress")
    assert rerun.exit_code == 0, rerun.output
    assert "skipped (cached): first, second" in rerun.output
    run = client.get_run(job_line(rerun.stdout)["run"])
    assert {s.data.tags["cellops.state"] for s in step_runs(client, run).values()} == {"cached"}


def test_a_kernel_that_dies_is_retried_and_each_attempt_recorded(
    project: Path, empty_mlflow_db: Path
) -> None:
    client = prepare(project, empty_mlflow_db, "kill_once.ipynb")
    marker = project / "kill.marker"
    marker.write_text("")  # the first attempt's kernel removes it and SIGKILLs itself
    result = cellops("run", "kill_once.ipynb", "--retries", "1", "--retry-delay", "0",
                     "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert "attempts: #1 failed, #2 finished" in result.output
    line = job_line(result.stdout)
    attempts = job_runs(client, "kill_once", line["job"])
    assert [r.data.tags["cellops.attempt"] for r in attempts] == ["1", "2"]
    assert [r.info.status for r in attempts] == ["FAILED", "FINISHED"]
    assert attempts[0].data.tags["cellops.job.transient"] == "true"
    assert attempts[1].info.run_id == line["run"]
    assert attempts[1].data.metrics["y"] == 42
    assert "finish" in step_runs(client, attempts[1])
    out_dir = project / "reports" / "runs" / line["job"]
    assert (out_dir / "kill_once.attempt2.ipynb").is_file()
    assert not runs_where(client, "kill_once", "attributes.status = 'RUNNING'")


def test_a_notebook_without_parameters_cell_gets_them_in_a_new_first_cell(
    project: Path, empty_mlflow_db: Path
) -> None:
    client = prepare(project, empty_mlflow_db, "no_params.ipynb")
    # nothing is declared, so nothing is unknown: every -p is taken, as papermill does
    result = cellops("run", "no_params.ipynb", "-p", "x", "7", "--no-progress")
    assert result.exit_code == 0, result.output
    line = job_line(result.stdout)
    executed = nbformat.read(
        project / "reports" / "runs" / line["job"] / "no_params.ipynb", as_version=4
    )
    assert "injected-parameters" in executed.cells[0].metadata.get("tags", [])
    assert "x = 7" in executed.cells[0].source
    assert executed.cells[1].source == "x = 10"  # the notebook's own value wins, as in papermill
    run = client.get_run(line["run"])  # the kernel never loaded cellops: the job made the run
    assert run.data.tags["cellops.kind"] == "job" and run.info.status == "FINISHED"
    assert run.data.params["x"] == "7"


# -- a job killed from outside -------------------------------------------------------------------


def test_a_job_killed_with_sigkill_is_not_left_running(
    project: Path, empty_mlflow_db: Path
) -> None:
    client = prepare(project, empty_mlflow_db, "job.ipynb")
    log = (project / "cellops-run.log").open("w")
    job = subprocess.Popen(
        [str(BIN / "cellops"), "run", "job.ipynb", "-p", "sleep_s", "600", "--no-progress"],
        cwd=project, env=cellops_env(), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    kernel_pid = None
    try:
        step = _wait_for_running_step(client, "job", "first", job)
        kernel_pid = int(step.data.tags["cellops.pid"])
        assert kernel_pid != job.pid
        os.kill(job.pid, signal.SIGKILL)
        os.kill(kernel_pid, signal.SIGKILL)
        job.wait(timeout=60)
        _wait_until_gone(kernel_pid)
    finally:  # when an assertion failed early, end what this test started
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=60)
        if kernel_pid is not None and process_start_time(kernel_pid) is not None:
            os.kill(kernel_pid, signal.SIGKILL)
        log.close()
    session = client.get_run(step.data.tags["mlflow.parentRunId"])
    assert session.data.tags["cellops.kind"] == "job"
    assert session.info.status == "RUNNING"  # nobody has touched the store since the kill

    reaped = reap_dead_runs(client)  # what every cellops session and job start does
    assert step.info.run_id in reaped and session.info.run_id in reaped
    for run_id in (step.info.run_id, session.info.run_id):
        assert client.get_run(run_id).info.status in ("KILLED", "FAILED")
    assert not runs_where(client, "job", "attributes.status = 'RUNNING'")


def _wait_for_running_step(client: MlflowClient, name: str, step: str, job: subprocess.Popen):
    deadline = time.monotonic() + 300  # a safety net for a stuck job, not a timing assertion
    while time.monotonic() < deadline:
        assert job.poll() is None, "cellops run ended before its step started"
        if client.get_experiment_by_name(name) is not None:
            runs = runs_where(
                client,
                name,
                f"tags.`cellops.step` = '{step}' and attributes.status = 'RUNNING'",
            )
            if runs and "cellops.pid" in runs[0].data.tags:
                return runs[0]
        time.sleep(0.5)
    raise AssertionError(f"step {step} never showed as RUNNING")


def _wait_until_gone(pid: int) -> None:
    deadline = time.monotonic() + 60
    while process_start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process_start_time(pid) is None, f"process {pid} still alive after SIGKILL"


# -- sweeps on a real Dask LocalCluster ----------------------------------------------------------


def test_a_sweep_runs_the_grid_on_dask_ranked_under_one_parent_run(
    project: Path, empty_mlflow_db: Path
) -> None:
    client = prepare(project, empty_mlflow_db, "job.ipynb")
    result = cellops("sweep", "job.ipynb", "-p", "a", "1", "2", "-p", "b", "3", "4",
                     "-p", "fail_on", "8", "--workers", "2", "--rank-by", "score",
                     "--no-progress")  # fmt: skip
    assert result.exit_code == 3, result.output  # one point failed; the others still ran
    lines = result.output.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("rank")))
    columns = lines[header].split()
    rows = [dict(zip(columns, line.split(), strict=False)) for line in lines[header + 2 :][:4]]
    assert [(r["a"], r["b"], r["status"]) for r in rows] == [
        ("2", "3", "ok"), ("1", "4", "ok"), ("1", "3", "ok"), ("2", "4", "failed"),
    ]  # fmt: skip
    assert [r["score"] for r in rows[:3]] == ["6", "4", "3"]
    assert "bad point: score 8.0" in result.output

    parent_id = re.search(r"^sweep run: (\w+)$", result.output, re.M).group(1)
    parent = client.get_run(parent_id)
    assert parent.data.tags["cellops.kind"] == "sweep"
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["points"] == 4 and parent.data.metrics["succeeded"] == 3
    assert parent.data.metrics["best_score"] == 6
    assert parent.data.params["best.a"] == "2"
    jobs = runs_where(client, "job", f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert len(jobs) == 4
    assert {r.data.tags["cellops.kind"] for r in jobs} == {"job"}
    assert sorted(r.info.status for r in jobs) == ["FAILED", "FINISHED", "FINISHED", "FINISHED"]
    by_point = {(r.data.params["a"], r.data.params["b"]): r for r in jobs}
    assert by_point[("2", "3.0")].data.metrics["score"] == 6
    for run in jobs:
        assert set(step_runs(client, run)) == {"first", "second"}
    assert len({r.data.tags["cellops.pid"] for r in jobs}) == 4  # one kernel per point


# -- the retraining template ---------------------------------------------------------------------


def _template_project(project: Path, template_db: Path) -> MlflowClient:
    (project / "notebooks").mkdir()
    for name in ("retrain.ipynb", "make_data.py"):
        shutil.copy(REPO / "notebooks" / name, project / "notebooks" / name)
    with (project / "pyproject.toml").open("a") as fh:
        fh.write('\n[tool.cellops.models.fraud]\ngate = ["f1 >= 0", "auc >= champion.auc - 1"]\n')
    return prepare(project, template_db)


def test_retrain_runs_as_a_job_on_generated_data_and_under_plain_papermill(
    project: Path, empty_mlflow_db: Path
) -> None:
    client = _template_project(project, empty_mlflow_db)
    made = subprocess.run(
        [sys.executable, "notebooks/make_data.py", "--rows", "4000", "--seed", "3"],
        cwd=project, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "wrote 4,000 transactions" in made.stdout
    assert (project / "data" / "transactions.parquet").is_file()

    result = cellops("run", "notebooks/retrain.ipynb", "-p", "n_estimators", "30",
                     "--require-promotion", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "ran: load, validate, train, evaluate" in result.output
    assert "fraud v1 PROMOTED to champion" in result.output  # the first model: absolute gate
    assert str(client.get_model_version_by_alias("fraud", "champion").version) == "1"
    run = client.get_run(job_line(result.stdout)["run"])
    metrics = run.data.metrics
    for name in ("f1", "auc", "precision", "recall"):
        assert 0 <= metrics[name] <= 1
    assert metrics["auc"] > 0.6  # the fraud signals are learnable
    assert run.data.params["n_estimators"] == "30"
    manifest = manifest_of(client, run.info.run_id)
    assert manifest["seed"] == 42
    assert set(manifest["input_files"]) == {"data_path"}
    steps = step_runs(client, run)
    assert sorted(steps) == ["evaluate", "load", "train", "validate"]
    assert steps["train"].data.params["model_kind"] == "hist_gb"

    # unchanged under plain papermill, on a shifted CSV, with another model
    subprocess.run(
        [sys.executable, "notebooks/make_data.py", "--rows", "3000", "--seed", "4",
         "--shift", "0.5", "--out", "data/shifted.csv"],
        cwd=project, capture_output=True, check=True,
    )  # fmt: skip
    done = subprocess.run(
        [str(BIN / "papermill"), "notebooks/retrain.ipynb", "reports/plain.ipynb",
         "-p", "data_path", "data/shifted.csv", "-p", "model_kind", "logreg", "--no-progress-bar"],
        cwd=project, env=cellops_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    executed = nbformat.read(project / "reports" / "plain.ipynb", as_version=4)
    scores = next(c for c in executed.cells if c.source.startswith("scores.round"))
    shown = scores.outputs[0]["data"]["text/plain"]
    assert "auc" in shown and "recall" in shown
    plain = runs_where(client, "notebooks/retrain", "tags.`cellops.kind` = 'session'")
    assert len(plain) == 1 and plain[0].info.status == "FINISHED"
    assert plain[0].data.tags["cellops.runner"] == "papermill"
    evaluate = step_runs(client, plain[0])["evaluate"]
    assert evaluate.data.tags["cellops.state"] == "executed"
    assert 0 <= evaluate.data.metrics["f1"] <= 1


def test_retrain_stops_on_invalid_or_missing_data_with_a_readable_report(
    project: Path, empty_mlflow_db: Path
) -> None:
    import pandas as pd

    client = _template_project(project, empty_mlflow_db)
    (project / "data").mkdir()
    bad = pd.DataFrame(
        {
            "transaction_id": range(6),
            "card_id": [1, 2, 3, 4, 5, 6],
            "timestamp": [
                "2024-01-01 10:00",
                "2024-01-02 11:00",
                "not a date",
                "2024-01-03 09:30",
                "2024-01-04 08:00",
                "2024-01-05 23:59",
            ],  # fmt: skip
            "amount": [10.0, -4.5, 3.0, 8.0, 1.0, 2.0],
            "country": ["US"] * 6,
            "home_country": ["US"] * 6,
            "category": ["fuel"] * 6,
            "is_fraud": [0, 0, 2, 0, 0, 0],
        }
    )
    bad.to_csv(project / "data" / "bad.csv", index=False)
    result = cellops("run", "notebooks/retrain.ipynb", "-p", "data_path", "data/bad.csv",
                     "--no-progress")  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "step 'validate': ValueError: data/bad.csv failed validation (5 problems)" in (
        result.output
    )
    for problem in (
        "column 'channel' is missing",
        "column 'timestamp' has 1 missing values",
        "column 'amount' has 1 negative values",
        "column 'is_fraud' must be 0 or 1, found 2",
        "6 rows; at least 1000 are needed (min_rows)",
    ):
        assert f"  - {problem}" in result.output
    run = client.get_run(job_line(result.stdout)["run"])
    steps = step_runs(client, run)
    assert steps["validate"].info.status == "FAILED"
    assert "train" not in steps  # nothing was trained on bad data

    missing = cellops("run", "notebooks/retrain.ipynb", "-p", "data_path", "data/none.parquet",
                      "--no-progress")  # fmt: skip
    assert missing.exit_code == 3
    assert "FileNotFoundError: data_path 'data/none.parquet' is not a file" in missing.output
    assert "python notebooks/make_data.py" in missing.output
