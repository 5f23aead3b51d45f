"""Monitoring what was served: the prediction and feedback logs (written here in the layout of
the contract, with pyarrow, as `cellops serve` writes them) read back for a window, drift of
the served inputs against the champion's stored profile, performance verdicts on the labelled
rows, and the closed loop (check -> retraining job -> gate -> promote) on served traffic, on a
real MLflow registry; once against a real `cellops serve` and its HTTP clients.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from sklearn import metrics as skm
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import cellops
from cellops.cli import cli
from cellops.config import load_settings
from cellops.dashboards.serving import serving_view
from cellops.errors import NoServedTrafficError
from cellops.monitoring.history import list_checks, list_performance_checks
from cellops.serving.traffic import log_root, read_served, traffic_over_time
from cellops.store import session as session_module

from .test_drift_monitor import make_frame

SQLITE = pytest.mark.parametrize("store", ["sqlite"], indirect=True)
FEATURES = ["x0", "x1", "x2", "segment"]
UTC = datetime.timezone.utc


@pytest.fixture(autouse=True)
def _fresh_session():
    yield
    session_module.end_session()


def make_model(frame: pd.DataFrame):
    """A pipeline on the raw columns (the segment one-hot encoded): what it serves are the
    columns its reference profile describes."""
    encode = ColumnTransformer(
        [("segment", OneHotEncoder(handle_unknown="ignore"), ["segment"])],
        remainder="passthrough",
    )
    return make_pipeline(encode, LogisticRegression()).fit(frame[FEATURES], frame["label"])


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {
        "base": make_frame(3000, 0),
        "same": make_frame(600, 1),
        "shifted": make_frame(600, 2, shift=1.0),
    }


@pytest.fixture
def served_project(store: str, project: Path, frames: dict) -> MlflowClient:
    """Model `churn` v1 (trained on `base`, its profile stored) promoted to champion."""
    base = frames["base"]
    model = make_model(base)
    cellops.register_model(model, "churn", base[FEATURES], reference=base[FEATURES])
    outcome = cellops.promote("churn", holdout=(base[FEATURES], base["label"]), gate=["auc >= 0.5"])
    assert outcome.promoted, str(outcome)
    client = MlflowClient(store)
    client.model = model  # the champion, to predict what the server would have answered
    return client


# -- the logs, as the server writes them ---------------------------------------------------------


def write_predictions(
    frame: pd.DataFrame,
    model=None,
    *,
    when: datetime.datetime | None = None,
    version: str = "1",
    variant: str = "champion",
    rows_per_request: int = 10,
    name: str = "churn",
    features: list[str] = FEATURES,
) -> pd.DataFrame:
    """Log `frame`'s rows as served predictions (the model's answers, else its labels), in
    requests of `rows_per_request`; returns the log's rows (request_id, row, ...)."""
    when = when or datetime.datetime.now(UTC) - datetime.timedelta(minutes=5)
    n = len(frame)
    requests = [uuid.uuid4().hex for _ in range(0, n, rows_per_request)]
    inputs = frame[features].reset_index(drop=True)
    if model is not None:
        proba = model.predict_proba(inputs)
        prediction = model.predict(inputs).astype("int64")
        probability = proba.max(axis=1)
    else:
        prediction = frame["label"].to_numpy().astype("int64")
        probability = np.full(n, np.nan)
    columns = {
        "request_id": pa.array([requests[i // rows_per_request] for i in range(n)], pa.string()),
        "row": pa.array([i % rows_per_request for i in range(n)], pa.int32()),
        "timestamp": pa.array([when + datetime.timedelta(milliseconds=i) for i in range(n)],
                              pa.timestamp("us", tz="UTC")),
        "version": pa.array([version] * n, pa.string()),
        "variant": pa.array([variant] * n, pa.string()),
        "latency_ms": pa.array(np.full(n, 2.5) + (np.arange(n) % 7), pa.float64()),
        "status": pa.array([200] * n, pa.int16()),
    }  # fmt: skip
    for column in features:
        logged = f"input.{column}" if column in columns else column
        columns[logged] = pa.array(inputs[column].to_numpy())
    columns["prediction"] = pa.array(prediction, pa.int64())
    columns["probability"] = pa.array(probability, pa.float64())
    table = pa.table(columns)
    folder = log_root(load_settings()) / f"model={name}" / f"date={when:%Y-%m-%d}"
    _write(table, folder)
    return table.to_pandas()


def write_feedback(log: pd.DataFrame, labels, *, name: str = "churn", when=None) -> None:
    when = when or datetime.datetime.now(UTC)
    n = len(log)
    table = pa.table({
        "request_id": pa.array(log["request_id"], pa.string()),
        "row": pa.array(log["row"], pa.int32()),
        "label": pa.array(np.asarray(labels).astype("int64"), pa.int64()),
        "timestamp": pa.array([when] * n, pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    folder = log_root(load_settings()) / "_feedback" / f"model={name}" / f"date={when:%Y-%m-%d}"
    _write(table, folder)


def _write(table: pa.Table, folder: Path) -> None:
    """Complete or not at all: a dot-prefixed temp name, then the rename."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.parquet"
    pq.write_table(table, folder / f".{name}")
    os.replace(folder / f".{name}", folder / name)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def retrain_notebook(path: Path) -> Path:
    """A retraining notebook that trains the same pipeline on `data_path` (features, label)."""
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell
    parameters = code('data_path = "data/train.parquet"\nmodel_name = "churn"')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [
        code("%load_ext cellops\nimport pandas as pd\nimport cellops\n"
             "from sklearn.compose import ColumnTransformer\n"
             "from sklearn.linear_model import LogisticRegression\n"
             "from sklearn.pipeline import make_pipeline\n"
             "from sklearn.preprocessing import OneHotEncoder"),
        parameters,
        code("%%step train\n"
             "frame = pd.read_parquet(data_path)\n"
             f"features = {FEATURES!r}\n"
             "cutoff = int(len(frame) * 0.7)\n"
             "train, test = frame.iloc[:cutoff], frame.iloc[cutoff:]\n"
             "encode = ColumnTransformer([('segment', OneHotEncoder(handle_unknown='ignore'),"
             " ['segment'])], remainder='passthrough')\n"
             "model = make_pipeline(encode, LogisticRegression())"
             ".fit(train[features], train['label'])"),
        code("cellops.register_model(model, model_name, X_sample=test[features],"
             " reference=train[features])\n"
             "outcome = cellops.promote(model_name, holdout=(test[features], test['label']),"
             " gate=['auc >= 0.5'], latency_samples=5)\nprint(outcome)"),
    ]  # fmt: skip
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, path)
    return path


# -- reading the served traffic back -------------------------------------------------------------


@SQLITE
def test_read_served_filters_the_window_version_and_variant_and_joins_labels(
    served_project, frames
):
    now = datetime.datetime.now(UTC)
    recent = write_predictions(frames["same"].iloc[:100], when=now - datetime.timedelta(hours=1))
    old = write_predictions(frames["same"].iloc[100:150], when=now - datetime.timedelta(days=3))
    write_predictions(frames["same"].iloc[150:170], version="2")
    write_predictions(frames["same"].iloc[170:180], variant="canary")
    # a file still being written, and one the writer left aside, are not read
    folder = log_root(load_settings()) / "model=churn" / f"date={now:%Y-%m-%d}"
    for hidden in (".partial.parquet", "_scratch.parquet"):
        (folder / hidden).write_bytes(b"not parquet yet")
    # labels for some rows; the second label sent for a row replaces the first
    write_feedback(recent.iloc[:30], np.zeros(30), when=now - datetime.timedelta(minutes=30))
    write_feedback(recent.iloc[:20], np.ones(20))

    traffic = read_served("churn", "24h")  # the champion's version (1), variant champion
    assert (traffic.version, traffic.variant, traffic.rows) == ("1", "champion", 100)
    assert list(traffic.features.columns) == FEATURES
    expected = frames["same"].iloc[:100][FEATURES].reset_index(drop=True)
    pd.testing.assert_frame_equal(traffic.features, expected, check_dtype=False)
    assert traffic.requests == 10 and traffic.labels == 30
    assert traffic.log["label"].iloc[:20].tolist() == [1] * 20
    assert traffic.log["label"].iloc[20:30].tolist() == [0] * 10
    assert traffic.log["label"].iloc[30:].isna().all()
    labelled = traffic.labelled()
    assert len(labelled) == 30 and list(labelled.columns) == [
        *FEATURES, "prediction", "probability", "label"]  # fmt: skip
    assert "100 rows in 10 requests, 30 labelled" in traffic.describe()

    week = read_served("churn", "7d")
    assert week.rows == 150 and set(week.log["request_id"]) == set(recent.request_id) | set(
        old.request_id
    )
    assert week.log["timestamp"].is_monotonic_increasing
    assert read_served("churn", "24h", version=2).rows == 20
    assert read_served("churn", "24h", variant="canary").rows == 10
    assert read_served("churn", "24h", variant=None).rows == 110
    # the dashboard's view: per interval, every version and variant
    summary = traffic_over_time("churn", since="7d", every="1d")
    assert summary["requests"].sum() == 10 + 5 + 2 + 1 and summary["rows"].sum() == 180
    assert (summary["errors"] == 0).all() and (summary["latency_p95_ms"] >= 2.5).all()


@SQLITE
def test_a_feature_named_like_a_log_column_is_read_back_under_its_own_name(served_project):
    frame = pd.DataFrame({"status": [1.0, 2.0, 3.0], "x0": [0.1, 0.2, 0.3], "label": [0, 1, 0]})
    log = write_predictions(frame, name="churn", features=["status", "x0"])
    assert "input.status" in log.columns and (log["status"] == 200).all()
    traffic = read_served("churn", "1h")
    assert list(traffic.features.columns) == ["status", "x0"]
    assert traffic.features["status"].tolist() == [1.0, 2.0, 3.0]


@SQLITE
def test_an_empty_window_or_no_log_is_a_named_error(served_project, frames):
    with pytest.raises(NoServedTrafficError, match="no prediction log for model 'churn'"):
        read_served("churn", "24h")
    result = invoke("monitor", "--model", "churn", "--served")
    assert result.exit_code == 2 and "cellops serve churn" in result.output, result.output
    now = datetime.datetime.now(UTC)
    write_predictions(frames["same"].iloc[:40], when=now - datetime.timedelta(days=2))
    with pytest.raises(NoServedTrafficError) as error:
        read_served("churn", "24h")
    message = str(error.value)
    assert "in the last 24h (since" in message and "holds 40 rows in all" in message
    assert f"the latest at {now - datetime.timedelta(days=2):%Y-%m-%d}" in message
    assert "--since 7d" in message
    result = invoke("monitor", "--model", "churn", "--served", "--since", "30m")
    assert result.exit_code == 2 and "in the last 30m" in result.output
    assert "Traceback" not in result.output
    cases = {
        "--since 'soon' is not a window": ("--served", "--since", "soon"),
        "give --current PATH or --served, not both": ("--served", "--current", "x.parquet"),
        "what should be checked?": (),
        "--min-labels goes with --performance": ("--served", "--min-labels", "5"),
        "--since goes with --served": ("--current", "x.parquet", "--since", "1h",
                                       "--retrain", "r.ipynb"),
        "--current needs the retraining notebook": ("--current", "x.parquet"),
        "there is no other champion to compare with": ("--performance", "f1 >= champion.f1"),
        "unexpected character '='": ("--performance", "f1 = 0.6"),
    }  # fmt: skip
    for expected, args in cases.items():
        result = invoke("monitor", "--model", "churn", *args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output, (args, result.output)


# -- drift of the served inputs ------------------------------------------------------------------


@SQLITE
def test_monitor_served_finds_drift_in_shifted_traffic_and_none_in_the_same(served_project, frames):
    client = served_project
    write_predictions(frames["same"], client.model)
    result = invoke("monitor", "--model", "churn", "--served", "--since", "1h")
    assert result.exit_code == 0, result.output
    assert "served traffic: churn v1 (champion), the last 1h" in result.output
    assert "600 rows in 60 requests, 0 labelled" in result.output
    assert "no dataset drift: 0 of 4 columns drifted" in result.output

    write_predictions(frames["shifted"], client.model)
    result = invoke("monitor", "--model", "churn", "--served", "--since", "1h")
    assert result.exit_code == 1, result.output  # dataset drift, nothing to retrain with
    assert "1,200 rows in 120 requests" in result.output
    assert "DRIFT:" in result.output and "drift streak 1" in result.output

    checks = list_checks(client, "churn")  # newest first
    assert [c.dataset_drift for c in checks] == [True, False]
    assert checks[0].current.startswith("served: churn v1 (champion), the last 1h")
    run = client.get_run(checks[0].run_id)
    assert run.data.tags["cellops.monitoring.source"] == "served"
    assert run.data.tags["cellops.monitoring.window"].startswith("1h: ")
    assert run.data.metrics["rows_current"] == 1200
    assert list_performance_checks(client, "churn") == []


# -- performance on labelled served traffic ------------------------------------------------------


@SQLITE
def test_performance_verdicts_on_labelled_served_rows(served_project, frames):
    client = served_project
    shifted = frames["shifted"]
    log = write_predictions(shifted, client.model)
    truth = shifted["label"].to_numpy()
    base = ("monitor", "--model", "churn", "--since", "1h")

    # 250 of the 600 rows labelled: too few for --min-labels 300 -> no verdict, exit 3
    write_feedback(log.iloc[:250], truth[:250])
    result = invoke(*base, "--performance", "f1 >= 0.6", "--min-labels", "300")
    assert result.exit_code == 3, result.output
    assert "no verdict on churn v1: 250 of the 600 rows served" in result.output
    assert "fewer than --min-labels 300" in result.output

    # every row labelled with the truth: the metrics are sklearn's on the logged answers
    write_feedback(log.iloc[250:], truth[250:])
    result = invoke(*base, "--performance", "accuracy >= 0.6", "--performance",
                    "latency_p95_ms < 1000", "--min-labels", "300")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "PASS: every condition holds" in result.output
    predicted = log["prediction"].to_numpy()
    expected = {
        "f1": skm.f1_score(truth, predicted),
        "accuracy": skm.accuracy_score(truth, predicted),
        "auc": skm.roc_auc_score(truth, client.model.predict_proba(shifted[FEATURES])[:, 1]),
    }
    (record, none) = list_performance_checks(client, "churn")
    assert (record.verdict, record.labels, record.rows, record.streak) == ("pass", 600, 600, 0)
    for name, value in expected.items():
        assert record.metrics[name] == pytest.approx(value), name
    assert record.metrics["latency_p95_ms"] >= 2.5
    assert (none.verdict, none.labels) == ("none", 250)

    # labels that the model gets wrong (concept drift): the verdict fails, exit 1
    write_feedback(log, 1 - predicted)
    result = invoke(*base, "--performance", "f1 >= 0.6", "--min-labels", "300")
    assert result.exit_code == 1, result.output
    assert "FAIL: a condition fails" in result.output and "failed verdicts in a row: 1" in (
        result.output
    )
    result = invoke(*base, "--performance", "f1 >= 0.6", "--min-labels", "300")
    checks = list_performance_checks(client, "churn")
    assert [c.verdict for c in checks] == ["fail", "fail", "pass", "none"]
    assert [c.streak for c in checks] == [2, 1, 0, 0]
    assert checks[0].metrics["f1"] == pytest.approx(0.0)
    assert checks[0].conditions == "f1 >= 0.6"
    assert len(list_checks(client, "churn")) == 0  # the drift history is apart
    run = client.get_run(checks[0].run_id)
    assert run.data.tags["cellops.kind"] == "performance-check"

    # the dashboard's serving section: 60 requests of 10 rows this hour, and the four verdicts
    from cellops.dashboards.render import model_page
    from cellops.registry.store import open_store

    view = serving_view(open_store(), "churn")
    assert [row[1:4] for row in view.traffic] == [("60", "600", "0")]
    assert [row[2] for row in view.performance] == ["fail", "fail", "pass", "none"]
    section = model_page(open_store(), "churn")["serving"]
    assert "cellops-traffic" in section and "cellops-performance" in section

    # a metric served traffic does not have: the names it has
    result = invoke(*base, "--performance", "rmse < 3")
    assert result.exit_code == 2 and "unknown metric 'rmse'" in result.output
    assert "available metrics: accuracy, auc, f1, latency_p50_ms" in result.output


# -- the closed loop on served traffic -----------------------------------------------------------


@SQLITE
def test_the_loop_on_served_traffic_retrains_on_the_served_rows_and_promotes(
    served_project, frames, project
):
    client = served_project
    notebook = retrain_notebook(project / "retrain.ipynb")
    session_module.end_session()  # the job's kernel and this process share the store
    shifted = frames["shifted"]
    log = write_predictions(shifted, client.model)
    command = ["monitor", "--model", "churn", "--served", "--since", "1h", "--consecutive", "2",
               "--share-threshold", "0.3", "--retrain", notebook.name]  # fmt: skip

    # no labels yet: nothing to retrain on, said before anything is recorded
    result = invoke(*command)
    assert result.exit_code == 2 and "nothing to retrain on: none of the 600 rows" in (
        result.output
    )
    assert list_checks(client, "churn") == []
    write_feedback(log, shifted["label"])

    first = invoke(*command)
    assert first.exit_code == 0, first.output
    assert "streak 1/2: drift has not persisted; no retraining" in first.output
    second = invoke(*command)
    assert second.exit_code == 0, second.output
    assert "streak 2/2: drift persisted; retraining" in second.output
    assert "the 600 labelled served rows to retrain on: " in second.output
    assert "gate: promoted v2 (champion was v1)" in second.output
    assert client.get_registered_model("churn").aliases["champion"] == 2

    checks = list_checks(client, "churn")
    job_run = client.get_run(checks[0].retrain_run)
    data_path = job_run.data.params["data_path"]
    assert data_path.startswith(".cellops/served/churn/churn-v1-") and data_path.endswith(
        ".parquet"
    )
    exported = pd.read_parquet(project / data_path)
    assert list(exported.columns) == [*FEATURES, "label"] and len(exported) == 600
    assert exported["label"].tolist() == shifted["label"].tolist()
    # the new champion was trained on the served rows: its profile is theirs
    assert job_run.data.tags["cellops.monitoring.triggered_by"] == checks[0].run_id

    # the performance loop: the new champion serves, its labels say it is wrong -> retrain
    log2 = write_predictions(shifted.iloc[:400], client.model, version="2")
    write_feedback(log2, 1 - log2["prediction"].to_numpy())
    result = invoke(
        "monitor", "--model", "churn", "--performance", "f1 >= 0.9", "--min-labels", "100",
        "--since", "1h", "--retrain", notebook.name,
        "-p", "data_path", str(project / data_path),
    )  # fmt: skip
    assert "streak 1/1: the champion falls short; retraining" in result.output, result.output
    assert "gate: promoted v3 (champion was v2)" in result.output
    assert result.exit_code == 0, result.output
    (record,) = list_performance_checks(client, "churn")
    assert record.verdict == "fail" and record.retrain_run
    assert record.promotion.startswith("promoted v3")


# -- against a real server -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@SQLITE
def test_served_by_cellops_serve_and_read_back(served_project, frames, project):
    """`cellops serve` answers real HTTP clients; what it logged is read back and checked."""
    import httpx

    session_module.end_session()
    port = _free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "CELLOPS_SERVE_LOG_BATCH_SECONDS": "0.2", "CELLOPS_SERVE_POLL_SECONDS": "0.5",
           "CELLOPS_SERVE_LOG_ROTATE_SECONDS": "1"}  # fmt: skip
    log = project / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("cellops")), "serve", "churn",
             "--port", str(port)],
            cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server, log)
        shifted = frames["shifted"].iloc[:200]
        ids = []
        with httpx.Client(base_url=base, timeout=30) as http:
            for start in range(0, len(shifted), 20):
                chunk = shifted.iloc[start : start + 20][FEATURES]
                answer = http.post("/invocations", json={"dataframe_split": chunk.to_dict(
                    orient="split", index=False)})  # fmt: skip
                assert answer.status_code == 200, answer.text
                ids.append(answer.json()["request_id"])
            truth = shifted["label"].to_numpy().reshape(len(ids), 20)
            labels = [{"request_id": rid, "row": r, "label": int(label)}
                      for rid, values in zip(ids, truth, strict=True)
                      for r, label in enumerate(values)]  # fmt: skip
            answer = http.post("/feedback", json={"labels": labels})
            assert answer.status_code < 300, answer.text
        traffic = _wait_for_rows("churn", 200)
        assert set(traffic.log["request_id"]) == set(ids) and traffic.version == "1"
        pd.testing.assert_frame_equal(
            traffic.features.reset_index(drop=True),
            shifted[FEATURES].reset_index(drop=True),
            check_dtype=False,
        )
        expected = served_project.model.predict(shifted[FEATURES])
        assert traffic.log["prediction"].astype(int).tolist() == expected.tolist()
        result = invoke("monitor", "--model", "churn", "--served", "--since", "1h")
        assert result.exit_code == 1 and "DRIFT:" in result.output, result.output
        deadline = time.monotonic() + 30
        while read_served("churn", "1h").labels < 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        result = invoke("monitor", "--model", "churn", "--performance", "accuracy >= 0.5",
                        "--min-labels", "200", "--since", "1h")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "200 labelled rows" in result.output

        # the loop on what was served: drift -> retrain on the served rows -> gate -> promote,
        # and the running server answers with the new version
        notebook = retrain_notebook(project / "retrain.ipynb")
        result = invoke("monitor", "--model", "churn", "--served", "--since", "1h",
                        "--consecutive", "1", "--share-threshold", "0.3",
                        "--retrain", notebook.name)  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "the 200 labelled served rows to retrain on" in result.output
        assert "gate: promoted v2 (champion was v1)" in result.output
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=base, timeout=30) as http:
            while http.get("/version").json()["version"] != "2":
                assert time.monotonic() < deadline, "the server did not reload v2 in 60 s"
                time.sleep(0.3)
            split = shifted.iloc[:3][FEATURES].to_dict(orient="split", index=False)
            answer = http.post("/invocations", json={"dataframe_split": split})
            assert answer.status_code == 200 and answer.json()["version"] == "2"
        assert server.poll() is None  # the same process all along
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_ready(base: str, server: subprocess.Popen, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"cellops serve exited {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"cellops serve was not ready in 120 s:\n{log.read_text()}")


def _wait_for_rows(model: str, rows: int):
    """The log is flushed in batches: wait until the server made every row visible."""
    deadline = time.monotonic() + 60
    while True:
        try:
            traffic = read_served(model, "1h")
            if traffic.rows >= rows:
                return traffic
        except NoServedTrafficError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the prediction log holds fewer than {rows} rows after 60 s")
        time.sleep(0.3)
