"""Notebooks run as jobs (issue 4): real Papermill executions through `cellops run`.

Every job here starts a real kernel, so the fixture notebooks (tests/fixtures/jobs/) are tiny
and one finished job is shared by the tests that only read it. What was recorded is read back
with `MlflowClient`. Failures and kills: test_jobs_failures.py; sweeps and the retraining
template: test_jobs_templates.py.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from click.testing import Result
from mlflow.tracking import MlflowClient

from .conftest import fixture_path
from .jobs_helpers import (
    ISOLATED_ENV,
    artifact_paths,
    cellops,
    head_commit,
    job_line,
    manifest_of,
    prepare,
    runs_where,
    step_runs,
)

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
