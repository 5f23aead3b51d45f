"""Scoring at gate time: load a registered version, and score it on the holdout.

Both the challenger and the champion are loaded back from the registry (so each is judged as
it will be served) and scored by cellops on the same rows: for a classifier f1, precision,
recall, accuracy and auc (f1/precision/recall of the positive class when there are two
classes, macro-averaged otherwise), for a regressor rmse, mae and r2. Latency is measured here
too: single-row `predict` calls on the same sampled holdout rows, the two models alternating,
reported as latency_p50_ms and latency_p95_ms.

Whether a version is a classifier or a regressor is read from the model (`task_of`), not
guessed from the labels: a regression target of whole numbers (scikit-learn's diabetes) looks
like a multiclass one to `type_of_target`.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._process import environment
from ..errors import CellopsUsageError, ModelFilesMissingError

CLASSIFIER_METRICS = ("f1", "precision", "recall", "accuracy", "auc")
REGRESSOR_METRICS = ("rmse", "mae", "r2")
LATENCY_METRICS = ("latency_p50_ms", "latency_p95_ms")
WARMUP_CALLS = 3
CLASSIFICATION = "classification"
REGRESSION = "regression"


@dataclass
class Holdout:
    features: Any  # a DataFrame without the label
    labels: Any  # a numpy array
    source: str  # a path, or "DataFrame"
    digest: str

    @property
    def rows(self) -> int:
        return len(self.labels)

    @property
    def label_kind(self) -> str:
        """What the labels look like (`type_of_target`): binary, multiclass, continuous..."""
        from sklearn.utils.multiclass import type_of_target

        try:
            return str(type_of_target(self.labels))
        except ValueError:  # e.g. a column of objects sklearn cannot classify
            return "unknown"


@dataclass(frozen=True)
class Task:
    """What a version is scored as, and why (for the messages)."""

    kind: str  # classification | regression
    reason: str  # e.g. "a scikit-learn regressor (LinearRegression)"

    @property
    def metrics(self) -> tuple[str, ...]:
        quality = CLASSIFIER_METRICS if self.kind == CLASSIFICATION else REGRESSOR_METRICS
        return (*quality, *LATENCY_METRICS)

    @property
    def noun(self) -> str:
        return _noun(self.kind)


def task_of(loaded: LoadedVersion, holdout: Holdout) -> Task:
    """Classifier or regressor, from the model: scikit-learn's own answer
    (`is_classifier`/`is_regressor`), else the type of its signature's output (floats: a
    regressor; integers, booleans, strings: a classifier), and only when neither tells, the
    holdout's labels."""
    from sklearn.base import is_classifier, is_regressor

    model = loaded.model
    name = type(model).__name__
    if loaded.flavor == "sklearn" and is_classifier(model):
        return Task(CLASSIFICATION, f"a scikit-learn classifier ({name})")
    if loaded.flavor == "sklearn" and is_regressor(model):
        return Task(REGRESSION, f"a scikit-learn regressor ({name})")
    if loaded.output_kind is not None:
        kind = REGRESSION if loaded.output_kind == "f" else CLASSIFICATION
        what = "numbers with decimals" if kind == REGRESSION else "labels"
        return Task(kind, f"scored as a {_noun(kind)}: its signature's output is {what}")
    kind = CLASSIFICATION if holdout.label_kind in ("binary", "multiclass") else REGRESSION
    return Task(kind, f"scored as a {_noun(kind)}: the holdout's labels are {holdout.label_kind}")


def _noun(kind: str) -> str:
    return "classifier" if kind == CLASSIFICATION else "regressor"


def _output_kind(signature: Any) -> str | None:
    """The kind of the signature's outputs: "f" when all are floats, "c" when all are
    integers, booleans or strings (class labels), None when there is none or it does not tell."""
    import numpy as np

    if signature is None or signature.outputs is None:
        return None
    kinds = set()
    try:
        types = signature.outputs.input_types()
    except Exception:  # an output type this MLflow cannot list (objects, arrays)
        return None
    for found in types:
        if isinstance(found, np.dtype):
            kinds.add("f" if found.kind == "f" else "c" if found.kind in "iubUSO" else "?")
        else:
            name = getattr(found, "name", "")
            floats, labels = ("double", "float"), ("long", "integer", "boolean", "string")
            kinds.add("f" if name in floats else "c" if name in labels else "?")
    return kinds.pop() if len(kinds) == 1 and kinds != {"?"} else None


def load_holdout(source: Any, label: str | None, where: str = "") -> Holdout:
    """A holdout from a Parquet/CSV path, a DataFrame holding `label`, or an `(X, y)` pair."""
    import numpy as np
    import pandas as pd

    from ..cache.hashing import value_digest

    if isinstance(source, tuple) and len(source) == 2:
        features, labels = source
        features = features if isinstance(features, pd.DataFrame) else pd.DataFrame(features)
        labels = np.asarray(labels)
        name = "(X, y)"
    else:
        if isinstance(source, (str, os.PathLike)):
            frame, name = _read_table(Path(source)), str(source)
        elif isinstance(source, pd.DataFrame):
            frame, name = source, "DataFrame"
        else:
            raise CellopsUsageError(
                "the holdout must be a Parquet or CSV path, a DataFrame with the label column, "
                f"or an (X, y) pair, not a {type(source).__name__}"
            )
        if not label:
            raise CellopsUsageError(
                f"which column of the holdout {name} is the label? pass --label COLUMN (or "
                f'label=...), or set label = "..." in [tool.cellops.models.{where or "NAME"}]'
            )
        if label not in frame.columns:
            raise CellopsUsageError(
                f"the holdout {name} has no label column {label!r}; its columns: "
                f"{', '.join(map(str, frame.columns))}"
            )
        features, labels = frame.drop(columns=[label]), frame[label].to_numpy()
    if len(labels) != len(features):
        raise CellopsUsageError(
            f"the holdout has {len(features)} feature rows but {len(labels)} labels"
        )
    if len(labels) == 0:
        raise CellopsUsageError(f"the holdout {name} has no rows")
    digest = value_digest((features, labels))
    return Holdout(features.reset_index(drop=True), labels, name, digest)


def _read_table(path: Path) -> Any:
    import pandas as pd

    if not path.is_file():
        raise CellopsUsageError(f"holdout file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".gz"):
        return pd.read_csv(path)
    raise CellopsUsageError(f"holdout {path}: give a .parquet or .csv file")


@dataclass
class LoadedVersion:
    name: str
    version: str
    model: Any  # scikit-learn estimator, or a pyfunc model
    flavor: str
    columns: list[str] | None  # the signature's input columns
    output_kind: str | None = None  # the signature's output: "f" floats, "c" labels

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def load_version(client: Any, tracking_uri: str, name: str, version: str) -> LoadedVersion:
    """Load a registered version as it will be served.

    MLflow 3.17 refuses to unpickle any model unless MLFLOW_ALLOW_PICKLE_DESERIALIZATION is
    set; the gate sets it while it loads versions of the project's own registry.
    """
    import urllib.parse
    import urllib.request

    source = client.get_model_version_download_uri(name, version)
    with contextlib.ExitStack() as stack:
        if source.startswith("file:"):
            local = urllib.request.url2pathname(urllib.parse.urlparse(source).path)
            if not (Path(local) / "MLmodel").is_file():
                raise missing_files_error(name, version, local)
        else:
            import mlflow.artifacts

            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="cellops-gate-"))
            try:
                with environment(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
                    local = mlflow.artifacts.download_artifacts(
                        artifact_uri=source, dst_path=folder, tracking_uri=tracking_uri
                    )
            except Exception as exc:
                if not is_missing_files(exc):
                    raise
                raise missing_files_error(name, version, source) from None
            if not (Path(local) / "MLmodel").is_file():
                raise missing_files_error(name, version, source)
        try:
            return _load_local(name, version, local)
        except FileNotFoundError as exc:  # MLmodel is there, the pickle (or more) is not
            gone = exc.filename or local
            raise missing_files_error(name, version, str(gone)) from None


def _load_local(name: str, version: str, local: str) -> LoadedVersion:
    from mlflow.models import Model

    info = Model.load(local)
    columns = None
    if info.signature is not None and info.signature.inputs.has_input_names():
        columns = list(info.signature.inputs.input_names())
    output_kind = _output_kind(info.signature)
    with environment(MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true"):
        if "sklearn" in info.flavors:
            import mlflow.sklearn

            model, flavor = mlflow.sklearn.load_model(local), "sklearn"
        else:
            import mlflow.pyfunc

            model, flavor = mlflow.pyfunc.load_model(local), "pyfunc"
    return LoadedVersion(name, version, model, flavor, columns, output_kind)


def is_missing_files(exc: BaseException) -> bool:
    """True for the errors MLflow raises when a version's artifact files are not there."""
    text = str(exc).lower()
    words = ("not found", "no such file", "does not exist", "could not find")
    return isinstance(exc, FileNotFoundError) or any(word in text for word in words)


def missing_files_error(
    name: str, version: str, location: str, reference: bool = False
) -> ModelFilesMissingError:
    """The named error for a version whose files are gone, with the two ways back
    (`reference`: the drift check needs the version's reference profile too)."""
    again = f"cellops.register_model(model, {name!r}, X_sample"
    again += ", reference=training_frame)" if reference else ")"
    return ModelFilesMissingError(
        f"the files of model {name} version {version} are missing: {location} does not exist "
        "in the artifact store (was .cellops/artifacts deleted or moved?). Restore the "
        "project's .cellops/artifacts folder (or the artifact store) from a backup, or "
        f"register the model again with {again} and promote the new version"
    )


def features_for(loaded: LoadedVersion, holdout: Holdout) -> Any:
    """The holdout's columns this version's signature names, in its order."""
    if loaded.columns is None:
        return holdout.features
    have = [str(c) for c in holdout.features.columns]
    missing = [c for c in loaded.columns if c not in have]
    if missing:
        raise CellopsUsageError(
            f"the holdout {holdout.source} does not match the signature of {loaded.label}: "
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(the holdout has {', '.join(have)})"
        )
    return holdout.features[loaded.columns]


def check_labels(task: Task, holdout: Holdout, who: str) -> None:
    """Labels the task's metrics can read, or a usage error naming the mismatch (`who`: the
    version the task was read from)."""
    import numpy as np

    kind = holdout.label_kind
    if task.kind == REGRESSION and not np.issubdtype(np.asarray(holdout.labels).dtype, np.number):
        raise CellopsUsageError(
            f"{who} is {task.reason}, but the labels of the holdout {holdout.source} are not "
            "numbers: pass the column it predicts with --label COLUMN"
        )
    if task.kind == CLASSIFICATION and kind not in ("binary", "multiclass"):
        raise CellopsUsageError(
            f"{who} is {task.reason}, but the labels of the holdout {holdout.source} are "
            f"{kind}, not classes: pass the column it predicts with --label COLUMN"
        )


def quality(loaded: LoadedVersion, X: Any, holdout: Holdout, task: Task) -> dict[str, float]:
    import numpy as np
    from sklearn import metrics as m

    y = holdout.labels
    predicted = np.asarray(loaded.model.predict(X))
    if predicted.ndim > 1 and predicted.shape[1] == 1:
        predicted = predicted[:, 0]
    if task.kind == REGRESSION:
        return {
            "rmse": float(math.sqrt(m.mean_squared_error(y, predicted))),
            "mae": float(m.mean_absolute_error(y, predicted)),
            "r2": float(m.r2_score(y, predicted)),
        }
    labels = np.unique(y)
    binary = len(labels) == 2
    options: dict[str, Any] = {"zero_division": 0}
    if binary:
        options["pos_label"] = _positive(labels)
    else:
        options["average"] = "macro"
    scores = {
        "f1": float(m.f1_score(y, predicted, **options)),
        "precision": float(m.precision_score(y, predicted, **options)),
        "recall": float(m.recall_score(y, predicted, **options)),
        "accuracy": float(m.accuracy_score(y, predicted)),
    }
    auc = _auc(loaded, X, y, labels)
    if auc is not None:
        scores["auc"] = auc
    return scores


def _positive(labels: Any) -> Any:
    values = set(labels.tolist())
    return 1 if values <= {0, 1} or values <= {False, True} else sorted(values)[-1]


def _auc(loaded: LoadedVersion, X: Any, y: Any, labels: Any) -> float | None:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    model = loaded.model
    try:
        if hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(X))
            classes = list(getattr(model, "classes_", range(proba.shape[1])))
            if len(labels) == 2:
                return float(roc_auc_score(y, proba[:, classes.index(_positive(labels))]))
            return float(roc_auc_score(y, proba, multi_class="ovr", labels=classes))
        if hasattr(model, "decision_function") and len(labels) == 2:
            return float(roc_auc_score(y, np.asarray(model.decision_function(X))))
    except ValueError:  # one class only in y, or classes the model never saw
        return float("nan")
    return None


def latency(models: list[tuple[LoadedVersion, Any]], samples: int, seed: int = 0) -> list[dict]:
    """p50/p95 of single-row predictions, per model, on the same rows, calls alternating.

    On one thread each (BLAS/OpenMP pools limited to 1): a serving process answers one row
    per thread, and the pools' threads spinning on a busy machine made a 3 ms prediction of
    HistGradientBoosting measure as over 500 ms.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _latency(models, samples, seed)


def _latency(models: list[tuple[LoadedVersion, Any]], samples: int, seed: int) -> list[dict]:
    import numpy as np

    rows = len(models[0][1])
    count = min(samples, rows)
    picks = np.random.default_rng(seed).choice(rows, size=count, replace=False)
    inputs = [[X.iloc[[int(i)]] for i in picks] for _, X in models]
    timings: list[list[float]] = [[] for _ in models]
    for index, (loaded, _) in enumerate(models):
        for row in inputs[index][:WARMUP_CALLS]:
            loaded.model.predict(row)
    order = list(range(len(models)))
    for position in range(count):
        for index in order if position % 2 == 0 else order[::-1]:
            predict = models[index][0].model.predict
            row = inputs[index][position]
            started = time.perf_counter()
            predict(row)
            timings[index].append((time.perf_counter() - started) * 1000)
    return [
        {
            "latency_p50_ms": float(np.percentile(t, 50)),
            "latency_p95_ms": float(np.percentile(t, 95)),
        }
        for t in timings
    ]


def score_versions(
    versions: list[LoadedVersion], holdout: Holdout, latency_samples: int, task: Task | None = None
) -> list[dict[str, float]]:
    """Each version's metrics on `holdout` as a `task` (default: the first version's),
    latency included."""
    task = task or task_of(versions[0], holdout)
    inputs = [features_for(v, holdout) for v in versions]  # every mismatch before any work
    check_labels(task, holdout, versions[0].label)
    results = [quality(v, X, holdout, task) for v, X in zip(versions, inputs, strict=True)]
    timed = latency(list(zip(versions, inputs, strict=True)), latency_samples)
    return [{**r, **t} for r, t in zip(results, timed, strict=True)]
