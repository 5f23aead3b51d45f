"""How a model performs on labelled rows it already predicted: the metrics of its logged
predictions against the labels that came later, judged by conditions in the gate's language.

The metrics are the gate's (registry/scoring.py) under the same names: for a classifier f1,
precision, recall, accuracy and auc (f1/precision/recall of the positive class with two
classes, macro-averaged otherwise; auc from the logged probability of the predicted class,
two classes only), for a regressor rmse, mae and r2; and latency_p50_ms/latency_p95_ms, here
the server-side latency of the requests answered. Nothing is predicted again: what is judged
is what was answered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import CellopsUsageError

NOTE = "these are the metrics of served traffic"


@dataclass
class PerformanceResult:
    """A verdict on labelled served rows (`passed` None: no verdict, too few labels)."""

    task: str  # classification | regression
    metrics: dict[str, float]
    labels: int
    conditions: list[str]
    passed: bool | None
    results: list[Any] = field(default_factory=list)  # registry.gate.ConditionResult

    @property
    def verdict(self) -> str:
        return "none" if self.passed is None else ("pass" if self.passed else "fail")

    def __str__(self) -> str:
        lines = [f"{self.labels:,} labelled rows, scored as a {self.task}"]
        lines += [f"  {name:<15} {_fmt(value)}" for name, value in self.metrics.items()]
        for result in self.results:
            lines.append(f"  {result.status:<7} {result.text}   ({result.describe()})")
        if self.passed is not None:
            shown = "PASS: every condition holds" if self.passed else "FAIL: a condition fails"
            lines.append(shown)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "metrics": self.metrics, "labels": self.labels,
            "conditions": self.conditions, "passed": self.passed,
            "results": [r.to_dict() for r in self.results],
        }  # fmt: skip


def _fmt(value: float) -> str:
    return "n/a" if value is None or value != value else f"{value:.4g}"


def parse_conditions(conditions: Iterable[str]) -> Any:
    """The conditions as a `Gate`; they judge the model itself, so `champion.` has no place."""
    from ..registry.gate import Gate

    texts = [str(c) for c in conditions]
    if not texts:
        raise CellopsUsageError(
            'give a condition to judge by, for example --performance "f1 >= 0.6"'
        )
    gate = Gate(texts, where="--performance")
    for index, text in enumerate(gate.texts):
        if gate.needs_champion(index):
            raise CellopsUsageError(
                f"--performance {text!r}: the check judges the champion's own served traffic, "
                "so there is no other champion to compare with; compare with a number, for "
                'example --performance "f1 >= 0.6"'
            )
    return gate


def task_of(predictions: Any, probability: Any = None) -> str:
    """A classifier logs the probability of its predicted class, or labels (integers,
    booleans, strings); a regressor logs numbers with decimals and no probability."""
    import numpy as np
    import pandas as pd

    if probability is not None and pd.Series(probability).notna().any():
        return "classification"
    values = np.asarray(predictions)
    return "regression" if values.dtype.kind == "f" else "classification"


def served_metrics(
    labels: Any, predictions: Any, probability: Any = None, latency_ms: Any = None
) -> tuple[str, dict[str, float]]:
    """(the task, the metrics) of `predictions` against `labels`; latency over `latency_ms`
    (one value per request) when given."""
    import numpy as np

    task = task_of(predictions, probability)
    y, predicted = _aligned(labels, predictions, task)
    if task == "regression":
        metrics = _regression(y, predicted)
    else:
        metrics = _classification(y, predicted, probability)
    if latency_ms is not None and len(latency_ms):
        values = np.asarray(latency_ms, dtype=float)
        metrics["latency_p50_ms"] = float(np.percentile(values, 50))
        metrics["latency_p95_ms"] = float(np.percentile(values, 95))
    return task, metrics


def _aligned(labels: Any, predictions: Any, task: str) -> tuple[Any, Any]:
    import pandas as pd

    y = pd.Series(labels).reset_index(drop=True)
    predicted = pd.Series(predictions).reset_index(drop=True)
    numeric = [pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)
               for s in (y.infer_objects(), predicted.infer_objects())]  # fmt: skip
    if numeric[0] != numeric[1]:
        kinds = ["numbers" if n else "text" for n in numeric]
        raise CellopsUsageError(
            f"the labels are {kinds[0]} but the model predicted {kinds[1]}: send labels of the "
            "type the model predicts (POST /feedback, cellops feedback FILE)"
        )
    if task == "regression" or numeric[0]:
        return y.astype(float).to_numpy(), predicted.astype(float).to_numpy()
    return y.astype(str).to_numpy(), predicted.astype(str).to_numpy()


def _regression(y: Any, predicted: Any) -> dict[str, float]:
    from sklearn import metrics as m

    scores = {
        "rmse": float(math.sqrt(m.mean_squared_error(y, predicted))),
        "mae": float(m.mean_absolute_error(y, predicted)),
    }
    scores["r2"] = float(m.r2_score(y, predicted)) if len(y) > 1 else float("nan")
    return scores


def _positive(values: Any) -> Any:
    """The positive class of two, as the gate's scoring picks it: 1 (or True), else the last."""
    found = set(values.tolist())
    return 1 if found <= {0, 1} or found <= {False, True} else sorted(found)[-1]


def _classification(y: Any, predicted: Any, probability: Any) -> dict[str, float]:
    import numpy as np
    from sklearn import metrics as m

    classes = np.unique(np.concatenate([y, predicted]))
    binary = len(classes) == 2
    options: dict[str, Any] = {"zero_division": 0}
    positive = _positive(classes) if binary else None
    options.update({"pos_label": positive} if binary else {"average": "macro"})
    scores = {
        "f1": float(m.f1_score(y, predicted, **options)),
        "precision": float(m.precision_score(y, predicted, **options)),
        "recall": float(m.recall_score(y, predicted, **options)),
        "accuracy": float(m.accuracy_score(y, predicted)),
    }
    if binary and probability is not None:
        p = np.asarray(probability, dtype=float)
        if not np.isnan(p).any():
            chance = np.where(predicted == positive, p, 1 - p)  # P(positive class)
            one_class = len(np.unique(y)) < 2
            scores["auc"] = float("nan") if one_class else float(m.roc_auc_score(y, chance))
    return scores


def judge(
    gate: Any,
    labels: Any,
    predictions: Any,
    probability: Any = None,
    latency_ms: Any = None,
    min_labels: int = 1,
) -> PerformanceResult:
    """Score the labelled rows and evaluate the conditions; `passed` is None (no verdict)
    when there are fewer than `min_labels` labels."""
    count = len(labels)
    if count < max(min_labels, 1):
        return PerformanceResult("", {}, count, list(gate.texts), None)
    task, metrics = served_metrics(labels, predictions, probability, latency_ms)
    gate.check_names(metrics, NOTE)
    results = gate.evaluate(metrics, None)
    passed = all(r.passed for r in results)
    return PerformanceResult(task, metrics, count, list(gate.texts), passed, results)
