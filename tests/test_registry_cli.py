"""The registry seen from outside: the audit trail and job summaries, the CLI, the panel without a
kernel, and the whole cycle against a real `mlflow server`. Read back with `MlflowClient`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

import cellops
from cellops.cli import cli
from cellops.registry.audit import history
from cellops.registry.job_decisions import job_promotions
from cellops.registry.promote import rollback
from cellops.registry.store import open_store
from cellops.store import session as session_module

from .conftest import run
from .registry_helpers import GATE, SQLITE, _fresh_session, champion, data, events, registry  # noqa: F401 - fixtures are used by name

# -- the audit trail, jobs, CLI --------------------------------------------------------------


@SQLITE
def test_job_summary_says_promoted_or_not_and_why(registry, data, monkeypatch):
    cellops.register_model(data["fair"], "fraud", data["X"])
    monkeypatch.setenv("CELLOPS_JOB_ID", "retrain-1")
    cellops.promote("fraud")
    cellops.register_model(data["stump"], "fraud", data["X"])
    monkeypatch.setenv("CELLOPS_JOB_ID", "retrain-2")
    cellops.promote("fraud")
    ok = job_promotions("retrain-1")
    assert ok.promoted and ok.lines() == [
        "promotion: fraud v1 PROMOTED to champion: first model: the absolute conditions passed"
    ]
    refused = job_promotions("retrain-2")
    assert not refused.promoted and refused.attempted
    assert "fraud v2 NOT promoted (refused): the gate failed: auc >= champion.auc - 0.01" in (
        refused.describe()
    )
    assert not job_promotions("retrain-3").attempted
    assert "none attempted" in job_promotions("retrain-3").describe()
    run_tags = [r.data.tags for r in events(registry)]
    assert [t["cellops.job"] for t in run_tags] == ["retrain-1", "retrain-2"]


@SQLITE
def test_cli_promote_rollback_history_models(registry, data, project):
    cellops.register_model(data["fair"], "fraud", data["X"])
    runner = CliRunner()
    result = runner.invoke(cli, ["promote", "fraud"])
    assert result.exit_code == 0, result.output
    assert "v1 PROMOTED to champion (was none)" in result.output
    assert "skipped auc >= champion.auc - 0.01" in result.output
    cellops.register_model(data["stump"], "fraud", data["X"])
    result = runner.invoke(cli, ["promote", "fraud"])
    assert result.exit_code == 1, result.output
    assert "NOT promoted (champion stays v1)" in result.output
    assert "FAIL    auc >= champion.auc - 0.01" in result.output
    result = runner.invoke(cli, ["promote", "fraud", "--gate", "f1 >= (0.5"])
    assert result.exit_code == 2 and "to close the '(' of column 7" in result.output
    result = runner.invoke(cli, ["promote", "fraud", "--force"])
    assert result.exit_code == 2 and "needs a reason" in result.output
    result = runner.invoke(cli, ["promote", "fraud", "--force", "--reason", "demo"])
    assert result.exit_code == 0 and "FORCED" in result.output
    result = runner.invoke(cli, ["models"])
    assert result.exit_code == 0
    assert result.output.splitlines()[2].split() == ["fraud", "v2", "v2", "v1", "v2"]
    result = runner.invoke(cli, ["models", "fraud"])
    assert "challenger,champion" in result.output and "previous_champion" in result.output
    session_module.end_session()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cellops_bin = Path(sys.executable).parent / "cellops"
    done = subprocess.run(
        [str(cellops_bin), "rollback", "fraud"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "rolled back, champion v2 -> v1" in done.stdout
    assert champion(registry) == "1"
    result = runner.invoke(cli, ["history", "fraud"])
    lines = result.output.splitlines()
    kinds = [line.split()[1] + " " + line.split()[2] for line in lines if line[:1].isdigit()]
    assert kinds == [
        "register v1", "promote v1", "register v2", "promote v2", "promote v2", "rollback v1"
    ]  # fmt: skip
    assert any("reason: demo" in line for line in lines)
    assert any(line.strip().startswith("FAIL") and ">=" in line for line in lines)
    result = runner.invoke(cli, ["history", "nothing"])
    assert result.exit_code == 2 and "no registered model named 'nothing'" in result.output


# -- the panel, without a kernel -------------------------------------------------------------


class DummyComm:
    """ipywidgets' own test double for the front end (widgets/tests/utils.py): it records
    every message a widget sends instead of talking to a kernel."""

    comm_id = "a-b-c-d"
    kernel = "Truthy"
    sent: list = []

    def __init__(self, *args, **kwargs):
        pass

    def open(self, *args, **kwargs):
        pass

    def on_msg(self, *args, **kwargs):
        pass

    def send(self, *args, **kwargs):
        DummyComm.sent.append(kwargs.get("data", args[0] if args else None))

    def close(self, *args, **kwargs):
        pass


@pytest.fixture
def dummy_comm(monkeypatch):
    import comm

    DummyComm.sent = []
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: DummyComm())  # noqa: ARG005 - the replaced function's signature
    return DummyComm


@SQLITE
def test_panel_shows_versions_and_promotes_or_rolls_back_after_confirmation(
    registry, data, dummy_comm
):
    from cellops.widgets.registry import RegistryPanel

    cellops.register_model(data["fair"], "fraud", data["X"], metrics={"f1": 0.72})
    cellops.promote("fraud")
    cellops.register_model(data["better"], "fraud", data["X"])
    panel = RegistryPanel("fraud")
    assert panel.state()["versions"] == ["2", "1"] and panel.state()["champion"] == "1"
    labels = [getattr(c, "value", "") for c in panel.table.children]
    assert "champion, previous_champion" not in labels and "champion" in labels
    assert "f1=0.72" in labels
    assert panel.version.value == "2"  # the challenger is preselected
    assert "promoted at" not in panel.gate.value
    panel.version.value = "1"
    assert "promoted at" in panel.gate.value and "first model" in panel.gate.value

    panel.version.value = "2"
    panel.promote_button.click()
    assert panel.state()["confirming"] and "promote fraud v2" in panel.state()["question"]
    panel.cancel_button.click()
    assert not panel.state()["confirming"] and champion(registry) == "1"
    panel.promote_button.click()
    panel.confirm_button.click()
    assert champion(registry) == "2"
    assert "v2 PROMOTED to champion (was v1)" in panel.state()["status"]
    assert any("PROMOTED" in str(msg) for msg in dummy_comm.sent)  # the front end was told

    panel.rollback_button.click()
    assert "Roll back fraud" in panel.state()["question"]
    panel.confirm_button.click()
    assert champion(registry) == "1"
    assert panel.state()["champion"] == "1"
    panel.rollback_button.click()
    panel.confirm_button.click()  # v1 was the first champion: said, not raised
    assert "no previous champion" in panel.state()["status"]


@SQLITE
def test_models_magic_returns_the_panel(registry, data, ip):
    ip.user_ns.update(model=data["fair"], X=data["X"])
    run(ip, "%cellops register model --name fraud --sample X")
    panel = ip.run_line_magic("cellops", "models fraud")
    from cellops.widgets.registry import RegistryPanel

    assert isinstance(panel, RegistryPanel) and panel.state()["versions"] == ["1"]


# -- against a real mlflow server ------------------------------------------------------------


@pytest.mark.parametrize("store", ["server"], indirect=True)
def test_register_promote_rollback_on_a_real_mlflow_server(store, project, data):
    name = f"fraud_{uuid.uuid4().hex[:8]}"
    holdout = data["holdout"]
    options = {"gate": GATE, "holdout": holdout, "label": "label", "latency_samples": 10}
    cellops.register_model(data["fair"], name, data["X"])
    assert cellops.promote(name, **options).promoted
    cellops.register_model(data["stump"], name, data["X"])
    assert cellops.promote(name, **options).decision == "refused"
    cellops.register_model(data["better"], name, data["X"])
    assert cellops.promote(name, **options).decision == "promoted"
    rollback(name)
    client = MlflowClient(store)
    assert champion(client, name) == "1"
    source = client.get_model_version_download_uri(name, "3")
    assert source.startswith("mlflow-artifacts:")  # uploaded through the server
    decisions = [r.data.tags["cellops.decision"] for r in events(client, name)]
    assert decisions == ["promoted", "refused", "promoted", "rolled back"]
    entries = history(open_store(), name)
    assert [e.kind for e in entries].count("register") == 3
