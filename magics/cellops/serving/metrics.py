"""The server's Prometheus metrics, correct with several workers.

prometheus_client's multiprocess mode: each worker writes its values to memory-mapped files in
one folder per server (PROMETHEUS_MULTIPROC_DIR, made by `serving.server` before the workers
start, removed when it stops), and `/metrics`, whichever worker answers, sums them all.

Names follow Prometheus' conventions (base units, `_total` counters, `_seconds` histograms):

    cellops_requests_total{model,version,variant,status}          counter
    cellops_request_duration_seconds{model,version,variant}       histogram
    cellops_predictions_total{model,version,variant,prediction}   counter (classifiers: per class)
    cellops_prediction_value{model,version,variant}               summary (regressors: count, sum)
    cellops_model_info{model,version,variant,alias,flavor}        gauge, 1 for the served version
    cellops_prediction_log_rows_total{model,outcome}              counter (written | dropped)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_CLASSES = 50  # beyond that the predictions are not counted per class (label cardinality)


def use_folder(folder: Path) -> None:
    """Point prometheus_client at `folder` (before any metric is made)."""
    os.environ[MULTIPROC_ENV] = str(folder)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported before the variable was set: switch it to the files
        values.ValueClass = values.MultiProcessValue()


class Metrics:
    """One worker's metrics; children are cached per (version, status) to keep requests cheap."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram, Summary

        labels = ("model", "version", "variant")
        self.requests = Counter("cellops_requests", "Requests answered", (*labels, "status"))
        self.latency = Histogram(
            "cellops_request_duration_seconds",
            "Time from a request's arrival to its answer",
            labels,
            buckets=BUCKETS,
        )
        self.classes = Counter(
            "cellops_predictions", "Predicted rows, per predicted class", (*labels, "prediction")
        )
        self.values = Summary("cellops_prediction_value", "Predicted values (regressors)", labels)
        self.info = Gauge(
            "cellops_model_info",
            "The version served (1) and those served before (0)",
            (*labels, "alias", "flavor"),
            multiprocess_mode="livemax",
        )
        self.log_rows = Counter(
            "cellops_prediction_log_rows", "Rows of the prediction log", ("model", "outcome")
        )
        self._children: dict[tuple, Any] = {}

    def served(self, served: Any, variant: str, on: bool = True) -> None:
        labels = (served.name, served.version, variant, served.ref.alias, served.flavor)
        self.info.labels(*labels).set(1 if on else 0)

    def observe(
        self, key: tuple[str, str, str], status: int, seconds: float, predictions: Any = None
    ) -> None:
        """Count one answered request of (model, version, variant)."""
        child = self._children.get((key, status))
        if child is None:
            child = self._children[(key, status)] = self.requests.labels(*key, str(status))
        child.inc()
        timer = self._children.get(key)
        if timer is None:
            timer = self._children[key] = self.latency.labels(*key)
        timer.observe(seconds)
        if predictions is not None:
            self._distribution(key, predictions)

    def _distribution(self, key: tuple[str, str, str], predictions: np.ndarray) -> None:
        if predictions.dtype.kind == "f":
            summary = self.values.labels(*key)
            for value in predictions.tolist():
                summary.observe(value)
            return
        if len(predictions) == 1:
            self.classes.labels(*key, str(predictions[0])).inc()
            return
        found, counts = np.unique(predictions, return_counts=True)
        if len(found) <= MAX_CLASSES:
            for value, count in zip(found.tolist(), counts.tolist(), strict=True):
                self.classes.labels(*key, str(value)).inc(count)

    def logged(self, model: str, written: int, dropped: int = 0) -> None:
        if written:
            self.log_rows.labels(model, "written").inc(written)
        if dropped:
            self.log_rows.labels(model, "dropped").inc(dropped)


def render() -> bytes:
    """Every worker's metrics, summed, in the Prometheus text format."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


def worker_exited(pid: int | None = None) -> None:
    """Drop a stopped worker's live gauges (its model info)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid or os.getpid())
