"""Issue 11 on the registry, through the real components (a real SQLite MLflow store, real
scikit-learn models, the real CLI through click's CliRunner, a real IPython shell):

- a gate nested 120 deep is a named syntax error, in Python and in pyproject.toml, and moves
  nothing;
- a version whose files were deleted (`.cellops/artifacts`) is named, with its path and what to
  do, by `cellops promote` and `cellops drift --model`;
- a regressor on a target of whole numbers (scikit-learn's diabetes) is scored as a regressor;
- `cellops lineage models:/NAME/VERSION` answers an audit in one place, and names each data
  file by the hash `cellops lineage FILE` shows.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_diabetes, make_classification
from sklearn.linear_model import LinearRegression, LogisticRegression

import cellops
from cellops.cli import cli
from cellops.errors import CellopsUsageError, ModelFilesMissingError
from cellops.registry.gate import MAX_NESTING, GateSyntaxError, UnknownMetricError
from cellops.store import session as session_module

from .conftest import run
from .data_helpers import md5

SQLITE = pytest.mark.parametrize("store", ["sqlite"], indirect=True)
FEATURES = ["x0", "x1", "x2", "x3"]
DEEP = "(" * 120 + "f1 >= 0.5" + ")" * 120


@pytest.fixture(autouse=True)
def _fresh_session():
    """register_model opens a session for plain Python code: end it with the test's project."""
    yield
    session_module.end_session()


def cellops_cli(*args: str):
    """`cellops ARGS` in this process; an exception that escapes is a traceback: the test fails."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def classifier_data() -> tuple[pd.DataFrame, np.ndarray]:
    X, y = make_classification(400, len(FEATURES), n_informative=3, n_redundant=1, random_state=0)
    return pd.DataFrame(X, columns=FEATURES), y


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def event_count(client: MlflowClient) -> int:
    experiment = client.get_experiment_by_name("cellops-registry-events")
    return 0 if experiment is None else len(client.search_runs([experiment.experiment_id]))


def declare(project: Path, name: str, **settings: object) -> None:
    lines = [f"\n[tool.cellops.models.{name}]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    with open(project / "pyproject.toml", "a") as fh:
        fh.write("\n".join(lines) + "\n")


# -- a gate nested too deep -------------------------------------------------------------------


@SQLITE
def test_a_gate_nested_120_deep_is_a_named_error_and_moves_nothing(store, project):
    X, y = classifier_data()
    (project / "data").mkdir()
    X.assign(label=y).to_parquet(project / "data" / "holdout.parquet")
    model = LogisticRegression().fit(X, y)
    cellops.register_model(model, "fraud", X)
    assert cellops.promote("fraud", gate=["f1 >= 0.5"], holdout=(X, y)).promoted
    cellops.register_model(model, "fraud", X)
    client = MlflowClient(store)
    before = (aliases(client, "fraud"), event_count(client))
    assert before[0] == {"champion": "1", "challenger": "2"}

    with pytest.raises(GateSyntaxError) as caught:
        cellops.promote("fraud", gate=["f1 >= 0.5", DEEP], holdout=(X, y))
    assert f"nested more than {MAX_NESTING} deep (the limit)" in str(caught.value)
    assert isinstance(caught.value, CellopsUsageError)
    session_module.end_session()

    declare(project, "fraud", gate=["f1 >= 0.5", DEEP], holdout="data/holdout.parquet",
            label="label")  # fmt: skip
    result = cellops_cli("promote", "fraud")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "RecursionError" not in result.output
    assert "[tool.cellops.models.fraud] in pyproject.toml: gate condition '((((" in result.output
    assert f"nested more than {MAX_NESTING} deep (the limit)" in result.output
    assert (aliases(client, "fraud"), event_count(client)) == before  # nothing moved or recorded
    # a retraining job's `cellops.promote(name)` reads the same gate: the same error
    with pytest.raises(GateSyntaxError, match=r"^\[tool.cellops.models.fraud\]"):
        cellops.promote("fraud")


# -- a version whose files are gone -----------------------------------------------------------


@SQLITE
def test_deleted_artifacts_are_named_by_promote_and_drift_with_what_to_do(store, project):
    X, y = classifier_data()
    X.assign(label=y).to_parquet(project / "holdout.parquet")
    X.to_parquet(project / "current.parquet")
    model = LogisticRegression().fit(X, y)
    cellops.register_model(model, "fraud", X, reference=X)
    session_module.end_session()
    client = MlflowClient(store)
    folder = client.get_model_version("fraud", "1").source
    artifacts = project / ".cellops" / "artifacts"
    assert artifacts.is_dir() and str(artifacts) in folder
    shutil.rmtree(artifacts)

    result = cellops_cli(
        "promote", "fraud", "--version", "1", "--gate", "f1 >= 0.5",
        "--holdout", "holdout.parquet", "--label", "label",
    )  # fmt: skip
    assert result.exit_code == 3, result.output  # could not run: files are gone
    assert "Traceback" not in result.output and "MlflowException" not in result.output
    assert "the files of model fraud version 1 are missing" in result.output
    assert str(artifacts) in result.output  # the path
    assert "Restore the project's .cellops/artifacts folder" in result.output
    assert "register the model again" in result.output
    assert aliases(client, "fraud") == {"challenger": "1"}  # nothing moved
    assert event_count(client) == 0

    checked = cellops_cli("drift", "--model", "fraud", "--version", "1", "--current",
                          "current.parquet")  # fmt: skip
    assert checked.exit_code == 3, checked.output
    assert "Traceback" not in checked.output and "MlflowException" not in checked.output
    assert "the files of model fraud version 1 are missing" in checked.output
    assert "cellops_reference_profile.json" in checked.output
    assert "reference=training_frame" in checked.output

    with pytest.raises(ModelFilesMissingError, match="fraud version 1"):
        cellops.promote("fraud", version=1, gate=["f1 >= 0.5"], holdout=(X, y))


@SQLITE
def test_a_missing_model_file_inside_the_folder_is_named_too(store, project):
    X, y = classifier_data()
    cellops.register_model(LogisticRegression().fit(X, y), "fraud", X)
    client = MlflowClient(store)
    source = Path(client.get_model_version("fraud", "1").source.removeprefix("file://"))
    pickle = source / "model.pkl"
    assert pickle.is_file()
    pickle.unlink()
    with pytest.raises(ModelFilesMissingError) as caught:
        cellops.promote("fraud", gate=["f1 >= 0.5"], holdout=(X, y))
    assert "model.pkl" in str(caught.value)
    assert aliases(client, "fraud") == {"challenger": "1"}


# -- regressor or classifier: from the model, not from the labels ------------------------------


class Predictor:
    """Not scikit-learn: registered as pyfunc, so its task comes from its signature."""

    def __init__(self, model):
        self.model = model

    def predict(self, X):
        return np.asarray(self.model.predict(X))


@SQLITE
def test_a_regressor_on_a_target_of_whole_numbers_is_scored_as_a_regressor(store, project):
    X, y = load_diabetes(return_X_y=True, as_frame=True)  # bundled with scikit-learn
    assert (y == y.round()).all()  # whole numbers: type_of_target says "multiclass"
    train, test = slice(0, 300), slice(300, None)
    regression = LinearRegression().fit(X[train], y[train])
    cellops.register_model(regression, "diabetes", X[train])
    with pytest.raises(UnknownMetricError) as caught:  # a classifier's metric, named as such
        cellops.promote("diabetes", gate=["f1 >= 0.5"], holdout=(X[test], y[test]))
    message = str(caught.value)
    assert "unknown metric 'f1'" in message and "available metrics: latency_p50_ms" in message
    assert "diabetes v1 is a scikit-learn regressor (LinearRegression)" in message

    outcome = cellops.promote("diabetes", gate=["r2 >= 0.1"], holdout=(X[test], y[test]))
    assert outcome.promoted, str(outcome)
    scores = outcome.gate.metrics["challenger"]
    assert set(scores) == {"rmse", "mae", "r2", "latency_p50_ms", "latency_p95_ms"}
    assert 0.1 <= scores["r2"] < 1 and scores["rmse"] > 0
    assert aliases(MlflowClient(store), "diabetes")["champion"] == "1"

    cellops.register_model(Predictor(regression), "diabetes_pyfunc", X[train])
    outcome = cellops.promote("diabetes_pyfunc", gate=["r2 >= 0.1"], holdout=(X[test], y[test]))
    assert outcome.promoted, str(outcome)
    assert outcome.gate.metrics["challenger"]["r2"] == pytest.approx(scores["r2"])


@SQLITE
def test_a_classifier_is_still_scored_as_one_and_odd_labels_are_named(store, project):
    X, y = classifier_data()
    classifier = LogisticRegression().fit(X, y)
    cellops.register_model(Predictor(classifier), "labels", X)  # pyfunc returning integers
    outcome = cellops.promote("labels", gate=["f1 >= 0.5"], holdout=(X, y))
    assert outcome.promoted and "auc" not in outcome.gate.metrics["challenger"]  # no proba
    assert outcome.gate.metrics["challenger"]["f1"] > 0.5

    cellops.register_model(classifier, "fraud", X)
    with pytest.raises(CellopsUsageError, match="are continuous, not classes"):
        cellops.promote("fraud", gate=["f1 >= 0.5"], holdout=(X, y + 0.25))


# -- the lineage of a model version -----------------------------------------------------------


@SQLITE
def test_model_lineage_names_its_data_steps_params_people_and_decisions(store, ip, project,
                                                                          monkeypatch):  # fmt: skip
    monkeypatch.setenv("CELLOPS_USER", "alice")
    (project / "data").mkdir()
    X, y = classifier_data()
    X.assign(label=y).to_csv(project / "data" / "train.csv", index=False)
    run(
        ip,
        "import cellops\nimport pandas as pd\nfrom sklearn.linear_model import LogisticRegression",
    )
    run(ip, "C = 0.5")
    load = '%%step load --files-in data/train.csv\nframe = pd.read_csv("data/train.csv")'
    train = (
        "%%step train\nfeatures = frame.drop(columns=['label'])\n"
        "model = LogisticRegression(C=C).fit(features, frame['label'])"
    )
    run(ip, load)
    run(ip, train)
    run(ip, "registered = cellops.register_model(model, 'fraud', features)")
    run(ip, "outcome = cellops.promote('fraud', gate=['accuracy >= 0.5'], "
            "holdout=(features, frame['label']))")  # fmt: skip
    assert ip.user_ns["outcome"].promoted
    ip.run_line_magic("cellops", "flush")
    digest = md5(project / "data" / "train.csv")

    client = MlflowClient(store)
    version = client.get_model_version("fraud", "1")
    assert json.loads(version.tags["cellops.data"]) == {"data/train.csv": digest}  # DVC's md5

    by_file = cellops_cli("lineage", "data/train.csv")
    assert by_file.exit_code == 0, by_file.output
    assert f"data/train.csv  {digest}" in by_file.output  # the same hash in both views
    as_json = json.loads(cellops_cli("lineage", "data/train.csv", "--json").output)
    assert as_json["md5"] == digest and as_json["target"] == "file"
    assert [r["name"] for r in as_json["used_by"]] == ["load"]

    result = cellops_cli("lineage", "models:/fraud/1")
    assert result.exit_code == 0, result.output
    text = result.output
    assert "model fraud version 1 (models:/fraud/1), aliases: @challenger, @champion" in text
    assert "registered by alice at " in text
    assert f"data/train.csv  {digest}" in text
    assert "not tracked by DVC; the file on disk is this version" in text
    assert "step 'load' of interactive" in text and "step 'train' of interactive" in text
    assert '      | frame = pd.read_csv("data/train.csv")' in text  # the cells' sources
    assert "      | model = LogisticRegression(C=C).fit(features, frame['label'])" in text
    assert "params: C=0.5" in text  # the train step's parameter
    assert re.search(r"promote +v1 +promoted +\(champion none -> v1\) +by alice", text)
    assert "pass    accuracy >= 0.5" in text  # the gate decision, with its condition
    assert text.index("step 'load'") < text.index("step 'train'")

    same = cellops_cli("lineage", "models:/fraud@champion", "--json")
    assert same.exit_code == 0, same.output
    data = json.loads(same.output)
    assert data["model"] == "fraud" and data["version"] == "1"
    assert data["registered_by"] == "alice" and data["registered_at"]
    assert data["data"] == [
        {
            "path": "data/train.csv", "md5": digest, "on_disk": digest, "dvc": None,
            "status": "the file on disk is this version",
            "dvc_status": "not tracked by DVC", "produced_by": [],
        }
    ]  # fmt: skip
    steps = {step["name"]: step for step in data["steps"]}
    assert list(steps) == ["load", "train"]
    assert steps["load"]["files_in"] == {"data/train.csv": digest}
    assert steps["train"]["params"] == {"C": "0.5"}
    assert "LogisticRegression(C=C)" in steps["train"]["cell"]
    [promotion] = [e for e in data["events"] if e["event"] == "promote"]
    assert promotion["decision"] == "promoted" and promotion["by"] == "alice"
    assert promotion["champion_after"] == "1" and promotion["conditions"][0]["status"] == "pass"

    # a version an older cellops registered holds the step cache's xxh3 digest: translated
    from cellops.cache.hashing import path_digest

    (project / "data" / "extra.csv").write_text("a\n1\n")
    legacy = {"data/extra.csv": path_digest(project / "data" / "extra.csv")}
    client.set_model_version_tag("fraud", "1", "cellops.data", json.dumps(legacy))
    text = cellops_cli("lineage", "models:/fraud/1").output
    assert f"data/extra.csv  {md5(project / 'data' / 'extra.csv')}" in text
    assert f"(registered as {legacy['data/extra.csv']}, the step cache's digest)" in text
    assert f"data/train.csv  {digest}" in text  # still: its step's run recorded it

    missing = cellops_cli("lineage", "models:/fraud/7")
    assert missing.exit_code == 2 and "fraud has no version 7; its versions: 1" in missing.output
    assert cellops_cli("lineage", "models:/fraud@nobody").exit_code == 2


JOB = {
    "cells": [
        {"cell_type": "code", "metadata": {}, "source": "%load_ext cellops\nimport cellops"},
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "source": 'data_path = "data/train.csv"\nC = 1.0\nmodel_name = "fraud"',
        },
        {
            "cell_type": "code",
            "metadata": {},
            "source": "%%step load --files-in {data_path}\n"
            "import pandas as pd\nframe = pd.read_csv(data_path)",
        },
        {
            "cell_type": "code",
            "metadata": {},
            "source": "%%step train\nfrom sklearn.linear_model import LogisticRegression\n"
            "features = frame.drop(columns=['label'])\n"
            "model = LogisticRegression(C=C).fit(features, frame['label'])",
        },
        {
            "cell_type": "code",
            "metadata": {},
            "source": "cellops.register_model(model, model_name, features)\n"
            "print(cellops.promote(model_name, gate=['accuracy >= 0.5'], "
            "holdout=(features, frame['label'])))",
        },
    ],
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.mark.slow
@SQLITE
def test_the_lineage_of_a_model_a_job_trained_lists_every_job_parameter(store, project):
    import subprocess

    (project / "data").mkdir()
    X, y = classifier_data()
    X.assign(label=y).to_csv(project / "data" / "train.csv", index=False)
    (project / "train.ipynb").write_text(json.dumps(JOB))
    executable = str(Path(sys.executable).parent / "cellops")
    job = subprocess.run(
        [executable, "run", "train.ipynb", "-p", "C", "0.25", "--no-progress"],
        cwd=project, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert job.returncode == 0, job.stdout + job.stderr

    result = cellops_cli("lineage", "models:/fraud/1")
    assert result.exit_code == 0, result.output
    text = result.output
    assert (
        textwrap.dedent(
            """\
        params:
          C = 0.25  (given)
          data_path = data/train.csv  (default)
          model_name = fraud  (default)
        """
        )
        in text
    )
    assert ", job " in text.splitlines()[1]  # registered by ... at ..., job ID
    assert f"data/train.csv  {md5(project / 'data' / 'train.csv')}" in text
    assert "step 'load' of train.ipynb" in text and "      | frame = pd.read_csv(data_path)" in text
    assert re.search(r"promote +v1 +promoted", text)
    data = json.loads(cellops_cli("lineage", "models:/fraud/1", "--json").output)
    assert data["parameters"]["C"] == {"value": "0.25", "given": True}
    assert data["parameters"]["data_path"] == {"value": "data/train.csv", "given": False}
    assert data["session"]["kind"] == "job" and data["job"]
