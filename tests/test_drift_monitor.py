"""Reference profiles stored with model versions, drift history, and the closed loop
(drift -> retraining job -> gate), on a real MLflow registry: the project's SQLite store, and
once a real `mlflow server`. Everything recorded is read back with `MlflowClient`.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

import cellops
from cellops.cli import cli
from cellops.monitoring.history import list_checks, load_check_profile, load_check_result
from cellops.monitoring.monitor import CheckRequest, check_model
from cellops.monitoring.profile import build_profile
from cellops.monitoring.reference import NoReferenceProfileError, load_reference_profile
from cellops.registry.store import open_store
from cellops.store import session as session_module

from .conftest import fixture_path, run

SQLITE = pytest.mark.parametrize("store", ["sqlite"], indirect=True)
MONITORED = ["x0", "x1", "x2", "segment"]
FEATURES = ["x0", "x1", "x2"]


@pytest.fixture(autouse=True)
def _fresh_session():
    """register_model opens a session for plain Python code: end it with the test's project."""
    yield
    session_module.end_session()


def make_frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Three numeric columns and a categorical one; `shift` moves them all (and the labels
    keep following the same rule, so a model retrained on shifted data stays good)."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(2 * shift, 1, rows)
    x1 = rng.normal(0, 1 + shift, rows)
    x2 = rng.normal(-shift, 1, rows)
    shares = np.array([0.6, 0.3, 0.1]) * (1 - shift / 2) + np.array([0, 0, 1]) * shift / 2
    segment = rng.choice(["a", "b", "c"], rows, p=shares / shares.sum())
    logit = 1.5 * x0 - x1 + 0.5 * x2 + (segment == "b")
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {"id": np.arange(rows), "x0": x0, "x1": x1, "x2": x2, "segment": segment, "label": label}
    )


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {
        "base": make_frame(3000, 0),
        "same": make_frame(2000, 1),
        "shifted": make_frame(2000, 2, shift=1.0),
    }


@pytest.fixture
def model_project(store: str, project: Path, frames: dict) -> MlflowClient:
    """A project with the three data files, and model `churn` v1 (trained on `base`, with its
    reference profile) promoted to champion."""
    data = project / "data"
    data.mkdir()
    for name, frame in frames.items():
        frame.to_parquet(data / f"{name}.parquet")
    base = frames["base"]
    model = LogisticRegression().fit(base[FEATURES], base["label"])
    cellops.register_model(model, "churn", base[FEATURES], reference=base[MONITORED])
    outcome = cellops.promote("churn", holdout=(base[FEATURES], base["label"]), gate=["auc >= 0.5"])
    assert outcome.promoted, str(outcome)
    return MlflowClient(store)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def drift_runs(client: MlflowClient, model: str = "churn") -> list:
    experiment = client.get_experiment_by_name(f"cellops-drift/{model}")
    if experiment is None:
        return []
    return client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time ASC"], max_results=100
    )


def without_created(profile) -> dict:
    payload = profile.to_dict()
    payload.pop("created", None)
    return payload


# -- the profile stored at registration ----------------------------------------------------------


@SQLITE
def test_register_stores_the_reference_profile_and_it_loads_back_equal(
    model_project, frames, project
):
    client = model_project
    version = client.get_model_version("churn", "1")
    assert version.tags["cellops.reference_profile"] == "1"
    expected = without_created(build_profile(frames["base"][MONITORED]))
    by_number = load_reference_profile(open_store(), "churn", "1")
    by_alias = load_reference_profile(client, "churn", "champion")
    by_uri = load_reference_profile(None, "models:/churn@champion")
    assert sorted(by_number.columns) == sorted(MONITORED) and by_number.rows == 3000
    for loaded in (by_number, by_alias, by_uri):
        assert without_created(loaded) == expected
    # a path is profiled too; a version without a profile says how to get one
    model = LogisticRegression().fit(frames["base"][FEATURES], frames["base"]["label"])
    path_version = cellops.register_model(model, "churn", reference="data/same.parquet")
    loaded = load_reference_profile(client, "churn", path_version.version)
    assert loaded.rows == 2000 and set(loaded.columns) == set(frames["same"].columns)
    bare = cellops.register_model(model, "churn")
    assert "cellops.reference_profile" not in client.get_model_version("churn", bare.version).tags
    with pytest.raises(NoReferenceProfileError, match="re-register it with .*reference="):
        load_reference_profile(client, "churn", bare.version)
    with pytest.raises(cellops.CellopsUsageError, match="is not a file"):
        cellops.register_model(model, "churn", reference="data/nope.parquet")
    with pytest.raises(cellops.CellopsUsageError, match="must be a DataFrame"):
        cellops.register_model(model, "churn", reference=[1, 2, 3])


# -- cellops drift, and what a check records -----------------------------------------------------


@SQLITE
def test_cli_drift_model_prints_the_table_and_records_the_check(model_project, frames, project):
    client = model_project
    result = invoke("drift", "--model", "churn", "--current", "data/shifted.parquet")
    assert result.exit_code == 1, result.output  # 1: dataset drift
    lines = result.output.splitlines()
    assert lines[0] == "churn v1 vs data/shifted.parquet"
    header = lines[1].split()
    assert header[:4] == ["column", "type", "test", "score"]
    rows = {line.split()[0]: line.split() for line in lines[3:7]}
    assert set(rows) == set(MONITORED)  # the profiled columns: not id or label
    assert all("DRIFT" in row for row in rows.values())
    assert "DRIFT: 4 of 4 columns drifted" in result.output
    assert "(drift streak 1)" in result.output

    (run,) = drift_runs(client)
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    assert run.info.run_name.startswith("drift 20") and run.info.status == "FINISHED"
    assert tags["cellops.kind"] == "drift-check" and tags["cellops.model"] == "churn"
    assert tags["cellops.model_version"] == "1"
    assert tags["cellops.monitoring.dataset_drift"] == "true"
    assert tags["cellops.monitoring.streak"] == "1"
    assert tags["cellops.monitoring.current"] == "data/shifted.parquet"
    from cellops.cache.hashing import file_digest

    assert tags["cellops.monitoring.data_hash"] == file_digest(project / "data/shifted.parquet")
    assert params["engine"].startswith("native") and float(params["share_threshold"]) == 0.5
    assert metrics["drift_share"] == 1.0 and metrics["n_drifted"] == 4
    assert metrics["n_columns"] == 4 and metrics["rows_current"] == 2000
    assert {f"drifted.{c}" for c in MONITORED} <= set(metrics)
    assert all(metrics[f"drifted.{c}"] == 1.0 for c in MONITORED)
    assert {f"score.{c}" for c in MONITORED} <= set(metrics)

    stored = load_check_result(client, run.info.run_id)
    assert stored.dataset_drift and sorted(stored.drifted_columns()) == sorted(MONITORED)
    profile = load_check_profile(client, run.info.run_id)
    assert profile.rows == 2000 and sorted(profile.columns) == sorted(MONITORED)
    (record,) = list_checks(client, "churn")
    assert (record.run_id, record.streak, record.version) == (run.info.run_id, 1, "1")
    assert record.dataset_drift and record.share == 1.0 and not record.retrain_run

    # the same data as the reference: no drift, exit 0; --no-record leaves no run
    result = invoke("drift", "--model", "churn", "--current", "data/same.parquet", "--no-record")
    assert result.exit_code == 0, result.output
    assert "no dataset drift: 0 of 4 columns drifted" in result.output
    assert len(drift_runs(client)) == 1
    # two files: nothing recorded; --columns and --share-threshold are honoured
    result = invoke(
        "drift", "data/base.parquet", "data/shifted.parquet",
        "--columns", "x0,segment", "--share-threshold", "0.3",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "2 of 2 columns drifted" in result.output and "threshold 0.30" in result.output
    assert len(drift_runs(client)) == 1


@SQLITE
def test_the_streak_counts_consecutive_drifted_checks_of_one_version(model_project, project):
    streaks = []
    for data in ("same", "shifted", "shifted", "same", "shifted"):
        request = CheckRequest("churn", project / f"data/{data}.parquet", share_threshold=0.3)
        check = check_model(request)
        streaks.append(check.record.streak)
    assert streaks == [0, 1, 2, 0, 1]
    checks = list_checks(MlflowClient(model_project._tracking_client.tracking_uri), "churn")
    assert [c.streak for c in reversed(checks)] == streaks  # newest first
    assert [c.dataset_drift for c in reversed(checks)] == [False, True, True, False, True]
    # a check of another version starts its own streak
    check = check_model(
        CheckRequest("churn", "data/shifted.parquet", version="1", share_threshold=0.3)
    )
    assert check.record.streak == 2


# -- the closed loop -----------------------------------------------------------------------------


@SQLITE
def test_monitor_retrains_on_the_second_drifted_check_and_links_check_job_and_gate(
    model_project, project
):
    client = model_project
    shutil.copy(fixture_path("drift", "retrain.ipynb"), project / "retrain.ipynb")
    session_module.end_session()  # the job's kernel and this process share the store
    command = ["monitor", "--model", "churn", "--current", "data/shifted.parquet",
               "--share-threshold", "0.3", "--consecutive", "2",
               "--retrain", "retrain.ipynb"]  # fmt: skip

    first = invoke(*command)
    assert first.exit_code == 0, first.output
    assert "streak 1/2: drift has not persisted; no retraining" in first.output
    assert "retraining:" not in first.output
    assert client.get_registered_model("churn").aliases["champion"] == 1

    second = invoke(*command)
    assert second.exit_code == 0, second.output  # retrained and promoted
    assert "streak 2/2: drift persisted; retraining" in second.output
    assert (
        "retraining: cellops run retrain.ipynb -p data_path data/shifted.parquet "
        "-p model_name churn" in second.output
    )
    assert "gate: promoted v2 (champion was v1)" in second.output
    assert client.get_registered_model("churn").aliases["champion"] == 2

    runs = drift_runs(client)
    assert [r.data.tags["cellops.monitoring.streak"] for r in runs] == ["1", "2"]
    assert [r.data.params["consecutive"] for r in runs] == ["2", "2"]
    assert "cellops.monitoring.retrain_run" not in runs[0].data.tags
    linked = runs[1].data.tags
    job_run = client.get_run(linked["cellops.monitoring.retrain_run"])
    assert job_run.data.tags["cellops.kind"] == "job"
    assert job_run.data.tags["cellops.monitoring.triggered_by"] == runs[1].info.run_id
    assert job_run.data.params["data_path"] == "data/shifted.parquet"
    assert linked["cellops.monitoring.promotion"].startswith("promoted v2 (champion was v1)")
    # the new champion was registered by the job with its own profile: of the shifted data
    version = client.get_model_version("churn", "2")
    assert version.tags["cellops.job"] == job_run.data.tags["cellops.job"]
    assert load_reference_profile(client, "churn", "champion").rows == 1400

    # the streak starts again: a third check is of v2, whose reference is the shifted data
    third = invoke(*command)
    assert third.exit_code == 0, third.output
    assert "check of churn v2" in third.output and "streak 0/2: no dataset drift" in third.output
    (record, *_) = list_checks(client, "churn")
    assert (record.version, record.streak, record.retrain_run) == ("2", 0, "")


@SQLITE
def test_monitor_exits_1_when_the_gate_refuses_the_retrained_model(model_project, project):
    client = model_project
    shutil.copy(fixture_path("drift", "retrain.ipynb"), project / "retrain.ipynb")
    session_module.end_session()
    result = invoke(
        "monitor", "--model", "churn", "--current", "data/shifted.parquet",
        "--consecutive", "1", "--retrain", "retrain.ipynb", "-p", "min_auc", "1.01",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "streak 1/1: drift persisted; retraining" in result.output
    assert "gate: refused v2 (champion was v1): the gate failed: auc >= 1.01" in result.output
    (run,) = drift_runs(client)
    assert run.data.tags["cellops.monitoring.promotion"].startswith("refused v2")
    assert client.get_registered_model("churn").aliases["champion"] == 1


# -- bad input -----------------------------------------------------------------------------------


@SQLITE
def test_bad_input_is_a_usage_error_without_traceback(model_project, frames, project):
    model = LogisticRegression().fit(frames["base"][FEATURES], frames["base"]["label"])
    cellops.register_model(model, "bare")
    frames["shifted"].drop(columns=["segment"]).to_parquet(project / "data/narrow.parquet")
    cases = {
        "there is no registered model named 'nope'": (
            "drift", "--model", "nope", "--current", "data/same.parquet"),
        "has no reference profile": ("drift", "--model", "bare", "--version", "1",
                                     "--current", "data/same.parquet"),
        "has no @champion": ("drift", "--model", "bare", "--current", "data/same.parquet"),
        "model 'churn' has no version 9": (
            "drift", "--model", "churn", "--version", "9", "--current", "data/same.parquet"),
        "'data/missing.parquet' is not a file": (
            "drift", "--model", "churn", "--current", "data/missing.parquet"),
        "segment": ("drift", "--model", "churn", "--current", "data/narrow.parquet"),
        "--model needs the data to check": ("drift", "--model", "churn"),
        "give two data files": ("drift", "data/same.parquet"),
        "--engine evidently needs the raw reference data": (
            "drift", "--model", "churn", "--current", "data/same.parquet", "--engine",
            "evidently"),
        "has no parameter data_path": (
            "monitor", "--model", "churn", "--current", "data/same.parquet",
            "--retrain", "nb.ipynb"),
        "'missing.ipynb' is not a file": (
            "monitor", "--model", "churn", "--current", "data/same.parquet",
            "--retrain", "missing.ipynb"),
    }  # fmt: skip
    import nbformat

    nbformat.write(nbformat.v4.new_notebook(), project / "nb.ipynb")
    for expected, args in cases.items():
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert drift_runs(MlflowClient(model_project._tracking_client.tracking_uri)) == []


# -- the magic, and a real server ----------------------------------------------------------------


@SQLITE
def test_drift_magic_takes_variables_files_and_models(model_project, frames, ip, project):
    ip.user_ns.update(base=frames["base"], shifted=frames["shifted"])
    result = run(ip, "%cellops drift base shifted --columns x0,x1 --share-threshold 0.5").result
    assert result.dataset_drift and [c.column for c in result.columns] == ["x0", "x1"]
    assert "<table>" in result._repr_html_()
    result = run(ip, "%cellops drift models:/churn@champion data/same.parquet").result
    assert not result.dataset_drift and result.rows_reference == 3000
    outcome = ip.run_cell("%cellops drift nothing shifted")
    assert "no variable 'nothing' is defined" in str(outcome.error_in_exec)
    # the public function; the engines live in cellops.monitoring
    result = cellops.drift(frames["base"], frames["shifted"], columns=["x0"], stattest="psi")
    assert result.dataset_drift and result.columns[0].test == "psi"
    assert cellops.monitoring.history.drift_experiment_name("churn") == "cellops-drift/churn"


@pytest.mark.parametrize("store", ["server"], indirect=True)
def test_a_check_on_a_real_mlflow_server(store, project, frames):
    name = f"churn_{uuid.uuid4().hex[:8]}"  # the server outlives the test
    base = frames["base"]
    model = LogisticRegression().fit(base[FEATURES], base["label"])
    cellops.register_model(model, name, reference=base[MONITORED])
    check = check_model(CheckRequest(name, _write(project, frames["shifted"]), alias="challenger"))
    assert check.result.dataset_drift and check.record.streak == 1
    client = MlflowClient(store)
    assert load_reference_profile(client, name, "1").rows == 3000
    run = client.get_run(check.record.run_id)
    assert run.data.tags["cellops.monitoring.dataset_drift"] == "true"
    stored = json.loads(
        Path(client.download_artifacts(run.info.run_id, "drift/result.json")).read_text()
    )
    assert stored["dataset_drift"] is True
    assert load_check_profile(client, run.info.run_id).rows == 2000


def _write(project: Path, frame: pd.DataFrame) -> Path:
    path = project / "current.parquet"
    frame.to_parquet(path)
    return path
