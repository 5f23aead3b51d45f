"""`cellops serve` as a user runs it: a real uvicorn server on 127.0.0.1 started with the
command, real HTTP clients, the project's real registry (SQLite store, models registered with
cellops and promoted through the gate). One server is shared by the module; the tests that
kill, break or multiply servers start their own. Helpers: tests/serve_helpers.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .serve_helpers import (
    BIN,
    FEATURES,
    Server,
    clean_env,
    free_port,
    make_project,
    register_models,
    split,
    wait_until,
)

ROW = [0.3, -1.2, 0.8, 0.1, 2.0, -0.4]
ROWS = [ROW, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [-2.0, 0.5, 0.0, 1.5, -0.5, 0.25]]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path) -> Path:
    root = make_project(tmp_path_factory.mktemp("serve") / "proj", empty_mlflow_db)
    register_models(root)
    return root


@pytest.fixture(scope="module")
def mlflow_serve(project: Path):
    """`mlflow models serve` of the same champion (started first: it takes seconds)."""
    port = free_port()
    env = clean_env(MLFLOW_TRACKING_URI=f"sqlite:///{project / '.cellops' / 'mlflow.db'}")
    with open(project / "mlflow-serve.log", "w") as log:
        process = subprocess.Popen(
            [str(BIN / "mlflow"), "models", "serve", "-m", "models:/fraud@champion",
             "--env-manager", "local", "-p", str(port)],
            cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    yield url, process
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(30)


@pytest.fixture(scope="module")
def server(project: Path, mlflow_serve):
    del mlflow_serve  # requested so that mlflow's server starts first
    running = Server(project, "fraud").start()
    yield running
    running.stop()


def post(url: str, document=None, **kwargs) -> httpx.Response:
    if document is not None:
        kwargs["json"] = document
    return httpx.post(url, timeout=10, **kwargs)


def metric_samples(url: str) -> dict:
    text = httpx.get(url + "/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(
        value for (sample, keys), value in samples.items()
        if sample == name and all(dict(keys).get(k) == v for k, v in labels.items())
    )  # fmt: skip


# -- answers ------------------------------------------------------------------------------------


def test_formats_answer_as_mlflow_models_serve_does(server, mlflow_serve):
    mlflow_url, process = mlflow_serve
    assert wait_until(lambda: _ping(mlflow_url), timeout=90), process.poll()
    records = [dict(zip(FEATURES, row, strict=True)) for row in ROWS]
    csv = pd.DataFrame(ROWS, columns=FEATURES).to_csv(index=False)
    bodies = {
        "dataframe_split": {"json": split(ROWS)},
        "dataframe_records": {"json": {"dataframe_records": records}},
        "instances": {"json": {"instances": records}},
        "inputs": {"json": {"inputs": {f: [r[i] for r in ROWS] for i, f in enumerate(FEATURES)}}},
        "csv": {"content": csv, "headers": {"content-type": "text/csv"}},
        "split, columns reordered": {
            "json": {
                "dataframe_split": {"columns": FEATURES[::-1], "data": [r[::-1] for r in ROWS]}
            }
        },
    }
    for what, body in bodies.items():
        ours = httpx.post(server.url + "/invocations", timeout=10, **body)
        theirs = httpx.post(mlflow_url + "/invocations", timeout=30, **body)
        assert ours.status_code == theirs.status_code == 200, (what, ours.text, theirs.text)
        assert ours.json()["predictions"] == theirs.json()["predictions"], what
        assert ours.json()["version"] == "1" and ours.json()["model"] == "fraud"
    # both refuse a wrong type, a body that is not JSON, rows as bare lists for named columns
    refused = [
        {"json": {"dataframe_records": [{**records[0], "x2": "high"}]}},
        {"content": b"not json", "headers": {"content-type": "application/json"}},
        {"json": {"instances": ROWS}},
    ]
    for body in refused:
        ours = httpx.post(server.url + "/invocations", timeout=10, **body)
        theirs = httpx.post(mlflow_url + "/invocations", timeout=30, **body)
        assert ours.status_code == theirs.status_code == 400, (body, ours.text, theirs.text)
        assert {"error_code", "message"} <= ours.json().keys()


def _ping(url: str) -> bool:
    try:
        return httpx.get(url + "/ping", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_answer_carries_model_version_variant_id_and_probabilities(server):
    answer = post(server.url + "/predict?probabilities=true", split(ROWS)).json()
    assert answer["model"] == "fraud" and answer["variant"] == "champion"
    assert len(answer["predictions"]) == 3 and answer["classes"] == [0, 1]
    assert len(answer["request_id"]) == 24
    for label, proba in zip(answer["predictions"], answer["probabilities"], strict=True):
        assert abs(sum(proba) - 1) < 1e-9 and proba[label] == max(proba)
    asked = post(server.url + "/predict", {**split(ROWS[:1]), "params": {"probabilities": True}})
    assert len(asked.json()["probabilities"]) == 1
    assert "probabilities" not in post(server.url + "/predict", split(ROWS[:1])).json()
    assert httpx.get(server.url + "/health").json() == {"status": "alive"}
    ready = httpx.get(server.url + "/ready").json()
    assert ready["ready"] and ready["store"]["reachable"] and ready["alias"] == "champion"
    version = httpx.get(server.url + "/version").json()
    assert version["columns"] == FEATURES and version["flavor"] == "sklearn"


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"dataframe_records": [dict(zip(FEATURES[:5], ROW, strict=False))]}, 400, "x5"),
        ({"dataframe_split": {"columns": [*FEATURES, "x9"], "data": [[*ROW, 1.0]]}}, 400, "x9"),
        ({"dataframe_split": {"columns": FEATURES, "data": [[*ROW[:5], "a"]]}}, 400, "x5"),
        ({"dataframe_split": {"columns": FEATURES, "data": [ROW, ROW[:4]]}}, 400, "row 1"),
        ({"rows": [ROW]}, 400, "dataframe_split"),
        ({"dataframe_split": split([ROW] * 800)["dataframe_split"]}, 413, "20000 bytes"),
    ],
    ids=["missing", "extra", "wrong-type", "ragged", "no-format", "too-large"],
)
def test_bad_input_is_a_4xx_naming_it_and_the_server_goes_on(server, body, status, named):
    answer = post(server.url + "/invocations", body)
    assert answer.status_code == status, answer.text
    assert named in answer.json()["message"]
    if status == 413:
        assert answer.json()["limit"] == 20000
    elif named.startswith("x"):
        assert answer.json()["column"] == named
    assert post(server.url + "/invocations", split([ROW])).status_code == 200


def test_not_json_and_unknown_content_type(server):
    answer = post(
        server.url + "/invocations", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400 and "not JSON" in answer.json()["message"]
    answer = post(server.url + "/invocations", content=b"x", headers={"content-type": "text/xml"})
    assert answer.status_code == 415 and "text/csv" in answer.json()["message"]


# -- metrics, log, feedback ---------------------------------------------------------------------


def test_metrics_count_requests_by_status_and_predictions(server):
    before = metric_samples(server.url)
    for _ in range(5):
        post(server.url + "/invocations", split(ROWS))
    post(server.url + "/invocations", {"dataframe_split": {"columns": ["x0"], "data": [[1]]}})
    after = metric_samples(server.url)
    labels = {"model": "fraud", "version": "1", "variant": "champion"}
    delta = {
        status: total(after, "cellops_requests_total", status=status, **labels)
        - total(before, "cellops_requests_total", status=status, **labels)
        for status in ("200", "400")
    }
    assert delta == {"200": 5, "400": 1}
    rows = total(after, "cellops_predictions_total", **labels) - total(
        before, "cellops_predictions_total", **labels
    )
    assert rows == 15
    count = "cellops_request_duration_seconds_count"
    assert total(after, count, **labels) - total(before, count, **labels) == 6
    assert total(after, "cellops_model_info", version="1", alias="champion") == 1


def test_prediction_log_reads_back_with_pandas(server, project):
    answers = [post(server.url + "/predict", split(ROWS)).json() for _ in range(3)]
    ids = {a["request_id"] for a in answers}
    folder = project / ".cellops" / "predictions" / "model=fraud"

    def logged():
        frame = pd.read_parquet(folder) if folder.is_dir() else pd.DataFrame()
        return frame if ids <= set(frame.get("request_id", ())) else None

    frame = wait_until(logged, timeout=30)
    assert frame is not None, sorted(p.name for p in folder.rglob("*"))
    ours = frame[frame["request_id"].isin(ids)].sort_values(["request_id", "row"])
    assert len(ours) == 9 and ours["row"].tolist() == [0, 1, 2] * 3
    dtypes = {name: str(dtype) for name, dtype in ours.dtypes.items()}
    assert dtypes["timestamp"] == "datetime64[us, UTC]" and dtypes["status"] == "int16"
    assert (
        dtypes["row"] == "int32" and dtypes["x0"] == "float64" and dtypes["prediction"] == "int64"
    )
    assert ours[FEATURES].to_numpy().tolist() == ROWS * 3
    assert ours["prediction"].tolist() == answers[0]["predictions"] * 3
    assert ours["probability"].between(0.5, 1).all() and (ours["status"] == 200).all()
    assert set(ours["version"]) == {"1"} and set(ours["variant"]) == {"champion"}
    every = pd.read_parquet(project / ".cellops" / "predictions" / "model=fraud")
    assert "date" in every.columns


def test_feedback_endpoint_and_its_bad_input(server, project):
    answer = post(server.url + "/predict", split(ROWS)).json()
    rid = answer["request_id"]
    ok = post(server.url + "/feedback", {"labels": [
        {"request_id": rid, "row": i, "label": label} for i, label in enumerate([1, 0, 1])
    ]})  # fmt: skip
    assert ok.status_code == 200 and ok.json()["accepted"] == 3
    never = post(server.url + "/feedback", {"request_id": "0" * 24, "label": 1})
    assert never.status_code == 404 and "never served" in never.json()["message"]
    wrong = post(server.url + "/feedback", {"request_id": rid, "row": 0, "label": "fraud"})
    assert wrong.status_code == 400 and "whole numbers" in wrong.json()["message"]
    no_row = post(server.url + "/feedback", {"request_id": rid, "label": 1})
    assert no_row.status_code == 400 and "had 3 rows" in no_row.json()["message"]
    past = post(server.url + "/feedback", {"request_id": rid, "row": 3, "label": 1})
    assert past.status_code == 400 and "no row 3" in past.json()["message"]
    folder = project / ".cellops" / "predictions" / "_feedback" / "model=fraud"

    def labelled():
        frame = pd.read_parquet(folder) if folder.is_dir() else pd.DataFrame()
        return frame if rid in set(frame.get("request_id", ())) else None

    frame = wait_until(labelled, timeout=30)
    assert frame is not None
    ours = frame[frame["request_id"] == rid].sort_values("row")
    assert ours["label"].tolist() == [1, 0, 1] and str(ours["label"].dtype) == "int64"
    assert str(ours["timestamp"].dtype) == "datetime64[us, UTC]"


def test_feedback_command_checks_every_label_first(server, project):
    rids = [post(server.url + "/predict", split([ROW])).json()["request_id"] for _ in range(2)]
    folder = project / ".cellops" / "predictions" / "model=fraud"
    wait_until(lambda: set(rids) <= set(pd.read_parquet(folder).get("request_id", ())), timeout=30)
    env = clean_env()

    def feedback(text: str) -> subprocess.CompletedProcess:
        (project / "labels.csv").write_text(text)
        return subprocess.run(
            [str(BIN / "cellops"), "feedback", "labels.csv", "--model", "fraud"],
            cwd=project, env=env, capture_output=True, text=True,
        )  # fmt: skip

    unknown = feedback(f"request_id,label\n{rids[0]},1\nnope,0\n")
    assert unknown.returncode == 2 and "never served by fraud: nope" in unknown.stderr
    wrong = feedback(f"request_id,label\n{rids[0]},yes\n")
    assert wrong.returncode == 2 and "whole numbers" in wrong.stderr
    done = feedback(f"request_id,label\n{rids[0]},1\n{rids[1]},0\n")
    assert done.returncode == 0, done.stderr
    assert "recorded 2 label(s) of fraud" in done.stdout
    labels = pd.read_parquet(project / ".cellops" / "predictions" / "_feedback" / "model=fraud")
    got = dict(zip(labels.request_id, labels.label, strict=True))
    assert got[rids[0]] == 1 and got[rids[1]] == 0


# -- start-up refusals -----------------------------------------------------------------------


def test_refuses_to_start_on_a_missing_alias_a_port_in_use_or_no_store(server, project):
    env = clean_env()

    def serve(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "cellops"), "serve", *args], cwd=project, env={**env, **extra},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    missing = serve("fraud", "--alias", "canary", "--port", str(free_port()))
    assert missing.returncode == 2
    assert "no alias @canary" in missing.stderr and "@champion (v1)" in missing.stderr
    assert "@challenger (v2)" in missing.stderr
    busy = serve("fraud", "--port", str(server.port))
    assert busy.returncode == 2 and f"port {server.port}" in busy.stderr and "--port" in busy.stderr
    dead = f"http://127.0.0.1:{free_port()}"
    gone = serve("fraud", "--port", str(free_port()), MLFLOW_TRACKING_URI=dead)
    assert gone.returncode == 3 and f"cannot reach the tracking store at {dead}" in gone.stderr
    assert "Traceback" not in missing.stderr + busy.stderr + gone.stderr


# -- servers of their own -------------------------------------------------------------------


def test_no_signature_any_frame_and_a_store_that_goes_away(project, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("predictions", "*.log"))
    running = Server(copy, "plain").start()
    try:
        assert "no signature: any columns are accepted" in running.output()
        frame = {"dataframe_split": {"columns": list("abcdef"), "data": [ROW]}}
        assert post(running.url + "/predict", frame).status_code == 200
        db = copy / ".cellops" / "mlflow.db"
        db.rename(db.with_suffix(".moved"))
        ready = wait_until(
            lambda: not httpx.get(running.url + "/ready").json()["store"]["reachable"], timeout=10
        )
        assert ready
        answer = httpx.get(running.url + "/ready")
        assert answer.status_code == 200 and "does not exist" in answer.json()["store"]["error"]
        assert post(running.url + "/predict", frame).status_code == 200  # still serving
        db.with_suffix(".moved").rename(db)
        assert wait_until(lambda: httpx.get(running.url + "/ready").json()["store"]["reachable"])
    finally:
        running.stop()


def test_sigkill_leaves_every_log_file_readable_and_loses_at_most_a_batch(project, tmp_path):
    """Rotation is an hour away here, so what was flushed waits in the hidden stream when the
    server is killed; the next server makes it visible."""
    copy = tmp_path / "killed"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("predictions", "*.log"))
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("log_rotate_seconds = 1.0", "log_rotate_seconds = 3600.0")
    )
    running = Server(copy, "fraud").start()
    sent = {post(running.url + "/predict", split(ROWS)).json()["request_id"] for _ in range(20)}
    root = copy / ".cellops" / "predictions"
    assert wait_until(lambda: sent <= _streamed(root), timeout=30), "flushed to the stream"
    running.stop(signal.SIGKILL)
    for path in root.rglob("*.parquet"):
        pq.read_table(path)  # every visible file is whole
    again = Server(copy, "fraud").start()  # recovers the dead server's streams
    try:

        def recovered() -> bool:
            files = [p for p in root.rglob("*.parquet") if not p.name.startswith(".")]
            ids = {rid for f in files for rid in pq.read_table(f)["request_id"].to_pylist()}
            return sent <= ids

        assert wait_until(recovered, timeout=30)
    finally:
        again.stop()
    for path in root.rglob("*.parquet"):
        assert pq.read_table(path).num_rows > 0


def _streamed(root: Path) -> set[str]:
    """The request ids in the hidden streams (up to each one's last complete batch)."""
    import pyarrow as pa

    ids: set[str] = set()
    for stream in root.rglob(".part-*.arrows"):
        try:
            reader = pa.ipc.open_stream(pa.memory_map(str(stream)))
            while True:
                ids.update(reader.read_next_batch()["request_id"].to_pylist())
        except (StopIteration, OSError, pa.ArrowInvalid):
            continue
    return ids


def test_two_workers_metrics_are_summed(project, tmp_path):
    copy = tmp_path / "workers"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("predictions", "*.log"))
    running = Server(copy, "fraud", "--workers", "2").start(timeout=120)
    try:
        pids, sent = set(), 0
        while len(pids) < 2 and sent < 400:
            with httpx.Client() as client:  # a new connection: either worker may take it
                answer = client.post(running.url + "/predict", json=split([ROW]))
                pids.add(client.get(running.url + "/version").json()["pid"])
            assert answer.status_code == 200
            sent += 1
        assert len(pids) == 2, "both workers should have answered"
        samples = metric_samples(running.url)
        assert total(samples, "cellops_requests_total", status="200") == sent
        assert total(samples, "cellops_model_info", version="1") == 1
    finally:
        assert running.stop() == 0


# -- hot reload (last: it moves the champion of the shared project) ----------------------------


def test_promote_under_load_swaps_once_and_no_request_fails(server, project):
    """One client's requests one after another give the version sequence (it must switch
    once); two more clients load the server meanwhile (none of their requests may fail)."""
    versions, others, failures, stop = [], [], [], threading.Event()

    def load(seen: list) -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    answer = client.post(server.url + "/invocations", json=split([ROW]))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if answer.status_code != 200:
                    failures.append(answer.text)
                else:
                    seen.append(answer.json()["version"])
                time.sleep(0.005)  # load, not saturation: the gate runs on the same 2 cores

    clients = [threading.Thread(target=load, args=(seen,)) for seen in (versions, others, others)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(0.5)
        promoted = subprocess.run(
            [str(BIN / "cellops"), "promote", "fraud"], cwd=project, env=clean_env(),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        assert wait_until(lambda: versions and versions[-1] == "2", timeout=20)
        seen = len(versions)
        wait_until(lambda: len(versions) > seen + 50, timeout=20)
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    assert not failures
    changes = [i for i in range(1, len(versions)) if versions[i] != versions[i - 1]]
    assert versions[0] == "1" and versions[-1] == "2"
    assert len(changes) == 1, f"the version switched {len(changes)} times"
    ready = httpx.get(server.url + "/ready").json()
    assert ready["version"] == "2"
    info = metric_samples(server.url)
    assert total(info, "cellops_model_info", version="2") == 1
    assert total(info, "cellops_model_info", version="1") == 0
    assert "2" in others
