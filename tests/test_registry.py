"""The model registry and promotion gate on a real MLflow registry (the project's SQLite store):
register, gate, promote, force, roll back, the compare-and-set between two racing processes.
The audit trail, the CLI, the panel and a real `mlflow server`: test_registry_cli.py.

Every check of what was recorded reads it back with `MlflowClient`.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

import cellops
from cellops.errors import CellopsError, CellopsUsageError
from cellops.registry.gate import GateSyntaxError, UnknownMetricError
from cellops.registry.promote import commit_promotion, prepare_promotion, rollback
from cellops.store import session as session_module

from .conftest import run
from .registry_helpers import FEATURES, SQLITE, _fresh_session, champion, data, events, registry  # noqa: F401 - fixtures are used by name

# -- register -------------------------------------------------------------------------------


@SQLITE
def test_register_logs_flavour_signature_pinned_requirements_and_links(registry, data, project):
    (project / "data" / "train.csv").write_text("a,b\n1,2\n")
    registered = cellops.register_model(
        data["fair"], "fraud", X_sample=data["X"], metrics={"f1": 0.74, "auc": np.float64(0.77)},
        data=["data/train.csv"],
    )  # fmt: skip
    client = registry
    version = client.get_model_version_by_alias("fraud", "challenger")
    assert str(version.version) == registered.version == "1"
    session_run = session_module.current_session().run.run_id
    assert version.run_id == session_run == registered.run_id
    assert json.loads(version.tags["cellops.metrics"]) == {"f1": 0.74, "auc": 0.77}
    from cellops.data.dvchash import dvc_md5

    digest = dvc_md5(project / "data" / "train.csv")  # DVC's hash, as `cellops lineage` shows
    assert json.loads(version.tags["cellops.data"]) == {"data/train.csv": digest}
    assert version.tags["cellops.flavor"] == "sklearn"
    assert version.tags["cellops.session_run"] == session_run
    logged = client.get_logged_model(registered.model_id)
    assert logged.source_run_id == session_run
    from mlflow.entities import LoggedModelStatus

    assert logged.status == LoggedModelStatus.READY

    import mlflow.artifacts
    from mlflow.models import Model

    local = mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri("fraud", "1"),
        dst_path=str(project / "dl"), tracking_uri=registry.tracking_uri,
    )  # fmt: skip
    model = Model.load(local)
    assert {"sklearn", "python_function"} <= set(model.flavors)
    assert model.flavors["sklearn"]["serialization_format"] == "cloudpickle"
    assert model.signature.inputs.input_names() == FEATURES
    assert (Path(local) / "input_example.json").exists()
    pins = (Path(local) / "requirements.txt").read_text().split()
    from importlib.metadata import version as installed

    for package in ("scikit-learn", "numpy", "scipy", "cloudpickle", "pandas", "mlflow"):
        assert f"{package}=={installed(package)}" in pins
    assert all("==" in pin for pin in pins)
    assert pins == [p for p in pins if not p.startswith(("psutil", "rich"))]  # nothing guessed


class Doubler:
    """Not scikit-learn: registered with the pyfunc flavour."""

    def predict(self, X):
        return np.asarray(X)[:, 0] * 2


@SQLITE
def test_a_model_that_is_not_sklearn_is_registered_as_pyfunc_and_serves(registry, project):
    sample = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 0.0, 0.0]})
    registered = cellops.register_model(Doubler(), "doubler", sample)
    assert registered.flavor == "pyfunc"
    from cellops.registry.scoring import load_version

    loaded = load_version(registry, registry.tracking_uri, "doubler", registered.version)
    assert loaded.flavor == "pyfunc"
    assert list(loaded.model.predict(sample)) == [2.0, 4.0, 6.0]
    with pytest.raises(CellopsUsageError, match="has no predict method"):
        cellops.register_model(object(), "doubler")
    with pytest.raises(CellopsUsageError, match="invalid model name"):
        cellops.register_model(Doubler(), "no spaces please")


@SQLITE
def test_register_in_a_step_links_the_step_run_and_the_data_it_read(registry, ip, project):
    (project / "data" / "train.csv").write_text("x0,label\n1,0\n2,1\n3,0\n4,1\n")
    run(
        ip,
        "import cellops\nimport pandas as pd\nfrom sklearn.linear_model import LogisticRegression",
    )
    run(ip, '%%step load --files-in data/train.csv\nframe = pd.read_csv("data/train.csv")')
    run(
        ip,
        "%%step train\nmodel = LogisticRegression().fit(frame[['x0']], frame['label'])\n"
        "f1 = 0.5\nversion = cellops.register_model(model, 'fraud', frame[['x0']])",
    )
    run(ip, "features = frame[['x0']]")
    registered = ip.user_ns["version"]
    run(
        ip,
        "%cellops register model --name fraud --sample features --metrics f1,score=f1 "
        "--reference features",
    )
    ip.run_line_magic("cellops", "flush")
    client = registry
    step_runs = client.search_runs(
        [client.get_run(registered.run_id).info.experiment_id],
        "tags.`cellops.step` = 'train'",
    )
    assert registered.run_id == step_runs[0].info.run_id  # the step's run, not the session's
    inside = client.get_model_version("fraud", registered.version)
    assert inside.tags["cellops.step"] == "train"
    outside = client.get_model_version_by_alias("fraud", "challenger")
    assert str(outside.version) == "2"
    assert outside.run_id == session_module.current_session().run.run_id
    assert json.loads(outside.tags["cellops.metrics"]) == {"f1": 0.5, "score": 0.5}
    assert outside.tags.get("cellops.reference_profile") == "1"  # --reference features
    assert "cellops.reference_profile" not in inside.tags  # registered without reference=
    from cellops.data.dvchash import dvc_md5

    expected = dvc_md5(project / "data" / "train.csv")  # what the load step's run recorded
    assert json.loads(outside.tags["cellops.data"]) == {"data/train.csv": expected}

    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="'missing' is not defined"):
        ip.run_line_magic("cellops", "register missing --name fraud")
    with pytest.raises(UsageError, match="--name"):
        ip.run_line_magic("cellops", "register model")


# -- gate, promote, roll back --------------------------------------------------------------


@SQLITE
def test_full_cycle_first_model_refused_promoted_rolled_back(registry, data):
    client = registry
    cellops.register_model(data["fair"], "fraud", data["X"])
    first = cellops.promote("fraud")
    assert first.decision == "promoted" and first.gate.first_model
    assert "first model of fraud" in str(first) and "absolute conditions only" in str(first)
    assert [c.status for c in first.gate.conditions] == ["pass", "skipped", "pass"]
    assert champion(client) == "1"

    cellops.register_model(data["stump"], "fraud", data["X"])
    refused = cellops.promote("fraud")
    assert refused.decision == "refused" and not refused.promoted
    assert champion(client) == "1"
    failing = refused.gate.conditions[1]
    assert failing.passed is False
    comparison = failing.comparisons[0]
    assert comparison.left_value == refused.gate.metrics["challenger"]["auc"]
    assert comparison.right_value == pytest.approx(refused.gate.metrics["champion"]["auc"] - 0.01)
    for side in ("challenger", "champion"):  # both scored by cellops on the same holdout
        assert set(refused.gate.metrics[side]) == {
            "f1", "precision", "recall", "accuracy", "auc", "latency_p50_ms", "latency_p95_ms"
        }  # fmt: skip
    assert refused.gate.holdout["rows"] == 500

    cellops.register_model(data["better"], "fraud", data["X"])
    promoted = cellops.promote("fraud")
    assert promoted.decision == "promoted"
    assert champion(client) == "3"
    model = client.get_registered_model("fraud")
    assert str(model.aliases["previous_champion"]) == "1"
    v3 = client.get_model_version("fraud", "3")
    assert v3.tags["cellops.replaced"] == "1"
    last_gate = json.loads(v3.tags["cellops.gate.last"])
    assert last_gate["decision"] == "promoted" and last_gate["champion_before"] == "1"
    assert [c["status"] for c in last_gate["conditions"]] == ["pass", "pass", "pass"]

    back = rollback("fraud", reason="bad reports from the call centre")
    assert back.decision == "rolled back" and back.version == "1"
    assert champion(client) == "1"
    assert "previous_champion" not in client.get_registered_model("fraud").aliases
    assert (
        json.loads(client.get_model_version("fraud", "3").tags["cellops.rolled_back"])["to"] == "1"
    )
    with pytest.raises(CellopsUsageError, match="first champion of fraud"):
        rollback("fraud")

    recorded = events(client)
    assert [(r.data.tags["cellops.event"], r.data.tags["cellops.decision"]) for r in recorded] == [
        ("promote", "promoted"), ("promote", "refused"), ("promote", "promoted"),
        ("rollback", "rolled back"),
    ]  # fmt: skip
    refused_run = recorded[1]
    assert refused_run.data.tags["cellops.champion.before"] == "1"
    assert refused_run.data.tags["cellops.champion.after"] == "1"
    assert refused_run.data.tags["cellops.user"] == getpass.getuser()
    assert refused_run.data.metrics["challenger.auc"] == refused.gate.metrics["challenger"]["auc"]
    assert refused_run.data.metrics["champion.auc"] == refused.gate.metrics["champion"]["auc"]
    conditions = json.loads(refused_run.data.tags["cellops.gate"])
    assert conditions[1]["status"] == "FAIL" and ">=" in conditions[1]["sides"]
    gate_json = client.download_artifacts(refused_run.info.run_id, "gate.json")
    assert json.loads(Path(gate_json).read_text())["passed"] is False
    assert recorded[3].data.tags["cellops.reason"] == "bad reports from the call centre"


@SQLITE
def test_forced_promotion_needs_a_reason_and_is_recorded(registry, data, monkeypatch):
    monkeypatch.setenv("CELLOPS_USER", "alice")
    client = registry
    cellops.register_model(data["better"], "fraud", data["X"])
    cellops.promote("fraud")
    cellops.register_model(data["stump"], "fraud", data["X"])
    with pytest.raises(CellopsUsageError, match="needs a reason"):
        cellops.promote("fraud", force=True)
    dry = cellops.promote("fraud", dry_run=True)
    assert dry.decision == "would be refused" and champion(client) == "1"
    forced = cellops.promote("fraud", force=True, reason="hotfix for card type X")
    assert forced.decision == "forced" and forced.promoted
    assert champion(client) == "2"
    promotion = json.loads(client.get_model_version("fraud", "2").tags["cellops.promotion"])
    assert promotion == promotion | {
        "decision": "forced", "by": "alice", "replaced": "1", "reason": "hotfix for card type X"
    }  # fmt: skip
    last = events(client)[-1]
    assert last.data.tags["cellops.decision"] == "forced"
    assert last.data.tags["cellops.gate.passed"] == "false"
    assert last.data.tags["mlflow.user"] == "alice"
    assert [r.data.tags["cellops.event"] for r in events(client)] == ["promote", "gate", "promote"]
    again = cellops.promote("fraud")
    assert again.decision == "unchanged" and champion(client) == "2"


@SQLITE
def test_bad_input_is_named(registry, data, project):
    with pytest.raises(CellopsUsageError, match="no model is registered yet"):
        cellops.promote("fraud")
    cellops.register_model(data["fair"], "fraud", data["X"])
    with pytest.raises(
        CellopsUsageError, match=r"no registered model named 'frod' \(registered models: fraud\)"
    ):
        cellops.promote("frod")
    with pytest.raises(CellopsUsageError, match="has no version 7; its versions: 1"):
        cellops.promote("fraud", version=7)
    with pytest.raises(GateSyntaxError, match="at column 7"):
        cellops.promote("fraud", gate=["f1 >= >0.9"])
    with pytest.raises(UnknownMetricError, match="available metrics: accuracy, auc, f1"):
        cellops.promote("fraud", gate=["f2 >= 0.9"])
    holdout = data["holdout"]
    with pytest.raises(CellopsUsageError, match="missing columns x1, x4"):
        cellops.promote("fraud", holdout=holdout.drop(columns=["x1", "x4"]), label="label")
    with pytest.raises(CellopsUsageError, match="no label column 'y'; its columns: x0, x1"):
        cellops.promote("fraud", label="y")
    with pytest.raises(CellopsUsageError, match="holdout file .*nothing.parquet does not exist"):
        cellops.promote("fraud", holdout=str(project / "nothing.parquet"))
    with pytest.raises(CellopsUsageError, match="no champion, so there is nothing to roll back"):
        rollback("fraud")
    cellops.register_model(data["fair"], "other", data["X"])
    with pytest.raises(
        CellopsUsageError, match=r"(?s)no gate for other.*\[tool.cellops.models.other\]"
    ):
        cellops.promote("other")
    with pytest.raises(CellopsUsageError, match="no holdout to score other on"):
        cellops.promote("other", gate=["f1 > 0"])
    assert champion(registry) is None  # nothing moved
    assert cellops.promote(
        "other", gate=["f1 > 0"], holdout=(holdout[FEATURES], holdout["label"])
    ).promoted


@SQLITE
def test_regressors_and_multiclass_models_get_their_own_metrics(registry):
    from sklearn.datasets import make_regression
    from sklearn.linear_model import LinearRegression

    X, y = make_regression(400, 4, noise=5.0, random_state=0)
    reg = LinearRegression().fit(X[:300], y[:300])
    cellops.register_model(reg, "prices", X[:300])
    outcome = cellops.promote("prices", gate=["r2 > 0.9", "rmse < 50"], holdout=(X[300:], y[300:]))
    assert outcome.promoted
    assert set(outcome.gate.metrics["challenger"]) == {
        "rmse", "mae", "r2", "latency_p50_ms", "latency_p95_ms"
    }  # fmt: skip
    cellops.register_model(reg, "prices", X[:300])
    with pytest.raises(UnknownMetricError, match="available metrics: latency_p50_ms"):
        cellops.promote("prices", gate=["f1 > 0.5"], holdout=(X[300:], y[300:]))

    X, y = make_classification(600, 6, n_informative=4, n_classes=3, random_state=0)
    three = LogisticRegression(max_iter=500).fit(X[:400], y[:400])
    cellops.register_model(three, "species", X[:400])
    result = cellops.promote("species", gate=["auc > 0.6", "f1 > 0.4"], holdout=(X[400:], y[400:]))
    assert result.promoted and 0.6 < result.gate.metrics["challenger"]["auc"] <= 1


@SQLITE
def test_model_settings_in_pyproject_are_checked(registry, data, project):
    cellops.register_model(data["fair"], "checked", data["X"])
    pyproject = project / "pyproject.toml"
    base = pyproject.read_text()
    for table, message in [
        ('gate = "f1 > 0.5"\nholdout = 3', "holdout must be a string"),
        ("gate = [1, 2]", "gate must be a list of conditions"),
        ("gates = []", "unknown setting 'gates'; known settings: gate, holdout"),
        ('gate = ["f1 > 0"]\nlatency_samples = 0', "latency_samples must be a positive"),
    ]:
        pyproject.write_text(base + f"\n[tool.cellops.models.checked]\n{table}\n")
        with pytest.raises(CellopsUsageError, match=message):
            cellops.promote("checked", holdout=data["holdout"], label="label")
    pyproject.write_text(base + '\n[tool.cellops.models.checked]\ngate = "f1 > 0.5"\n')
    assert cellops.promote("checked", holdout=data["holdout"], label="label").promoted


@SQLITE
def test_compare_and_set_the_loser_reports_the_champion_changed(registry, data):
    client = registry
    for model in ("fair", "better", "better"):
        cellops.register_model(data[model], "fraud", data["X"])
    cellops.promote("fraud", version=1)
    first = prepare_promotion("fraud", 2)
    second = prepare_promotion("fraud", 3)
    assert first.observed_champion == second.observed_champion == "1"
    assert commit_promotion(first).decision == "promoted"
    lost = commit_promotion(second)
    assert lost.decision == "conflict" and not lost.promoted
    assert "changed from v1 to v2 while the gate ran" in lost.reason
    assert champion(client) == "2"
    assert client.get_model_version("fraud", "3").tags.get("cellops.replaced") is None
    assert events(client)[-1].data.tags["cellops.decision"] == "conflict"


@SQLITE
def test_a_failure_half_way_leaves_the_old_champion(registry, data):
    client = registry
    cellops.register_model(data["fair"], "fraud", data["X"])
    cellops.promote("fraud")
    cellops.register_model(data["better"], "fraud", data["X"])
    plan = prepare_promotion("fraud")
    client.delete_model_version("fraud", "2")  # gone before the alias could move
    with pytest.raises(
        CellopsError, match="failed before @champion moved; the champion is still v1"
    ):
        commit_promotion(plan)
    assert champion(client) == "1"


RACER = textwrap.dedent(
    """
    import json, sys, time, pathlib
    from cellops.registry.promote import commit_promotion, prepare_promotion
    version, barrier = sys.argv[1], pathlib.Path(sys.argv[2])
    plan = prepare_promotion("fraud", version)
    (barrier / f"ready-{version}").touch()
    deadline = time.monotonic() + 120
    while len(list(barrier.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    outcome = commit_promotion(plan)
    print(json.dumps({"version": version, "decision": outcome.decision, "reason": outcome.reason}))
    """
)


@SQLITE
def test_two_processes_racing_move_the_champion_once(registry, data, project, tmp_path):
    client = registry
    for model in ("fair", "better", "better"):
        cellops.register_model(data[model], "fraud", data["X"])
    cellops.promote("fraud", version=1)
    session_module.end_session()
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    racers = [
        subprocess.Popen(
            [sys.executable, str(script), version, str(tmp_path)],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for version in ("2", "3")
    ]
    results = []
    for racer in racers:
        out, err = racer.communicate(timeout=240)
        assert racer.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    decisions = sorted(r["decision"] for r in results)
    assert decisions == ["conflict", "promoted"]
    winner = next(r["version"] for r in results if r["decision"] == "promoted")
    loser = next(r for r in results if r["decision"] == "conflict")
    assert f"changed from v1 to v{winner}" in loser["reason"]
    assert champion(client) == winner
    recorded = [r.data.tags["cellops.decision"] for r in events(client)]
    assert recorded.count("promoted") == 2 and recorded.count("conflict") == 1  # v1, then one
