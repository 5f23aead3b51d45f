"""Sweeps on a real Dask LocalCluster, and the retraining template run as a job."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from mlflow.tracking import MlflowClient

from .conftest import REPO
from .jobs_helpers import (
    BIN,
    cellops,
    cellops_env,
    job_line,
    manifest_of,
    prepare,
    runs_where,
    step_runs,
)

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
