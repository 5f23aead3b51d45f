"""What the registry tests share: a classifier dataset, a registry fixture, readers of events."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from cellops.store import session as session_module

GATE = ["f1 >= 0.5", "auc >= champion.auc - 0.01", "latency_p95_ms < 60000"]
FEATURES = [f"x{i}" for i in range(6)]


@pytest.fixture(autouse=True)
def _fresh_session():
    """register_model opens a session for plain Python code: end it with the test's project."""
    yield
    session_module.end_session()


@pytest.fixture(scope="module")
def data() -> dict:
    X, y = make_classification(1500, 6, n_informative=4, random_state=0)
    frame = pd.DataFrame(X, columns=FEATURES)
    train, test = frame.iloc[:1000], frame.iloc[1000:]
    return {
        "X": train,
        "holdout": test.assign(label=y[1000:]),
        # v1: fair; the stump: clearly worse (auc ~0.71); better: more data (auc ~0.78 > 0.77)
        "fair": LogisticRegression().fit(train.iloc[:300], y[:300]),
        "stump": DecisionTreeClassifier(max_depth=1, random_state=0).fit(train, y[:1000]),
        "better": LogisticRegression().fit(train, y[:1000]),
    }


@pytest.fixture
def registry(store: str, project: Path, data: dict) -> MlflowClient:
    """A project whose pyproject declares the gate of model `fraud`, with its holdout file."""
    (project / "data").mkdir()
    data["holdout"].to_parquet(project / "data" / "holdout.parquet")
    conditions = ", ".join(json.dumps(c) for c in GATE)
    with open(project / "pyproject.toml", "a") as fh:
        fh.write(
            f"\n[tool.cellops.models.fraud]\ngate = [{conditions}]\n"
            'holdout = "data/holdout.parquet"\nlabel = "label"\nlatency_samples = 20\n'
        )
    return MlflowClient(store)


def champion(client: MlflowClient, name: str = "fraud") -> str | None:
    aliases = client.get_registered_model(name).aliases
    return str(aliases["champion"]) if "champion" in aliases else None


def events(client: MlflowClient, name: str = "fraud") -> list:
    experiment = client.get_experiment_by_name("cellops-registry-events")
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.`cellops.model` = '{name}'",
        order_by=["attributes.start_time ASC"],
    )
    return runs


SQLITE = pytest.mark.parametrize("store", ["sqlite"], indirect=True)
