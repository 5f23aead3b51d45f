"""The prediction log: one row per predicted row, as Parquet (the contract of issue 14).

    <root>/model=<NAME>/date=<YYYY-MM-DD>/<file>.parquet     (UTC dates, hive partitions)

    request_id string, row int32, timestamp timestamp[us, UTC], version string, variant string,
    latency_ms float64, status int16, <features> (typed as the signature says; a feature named
    like one of these columns, or `model`/`date`, is logged as "input.<name>"), prediction
    (float64, int64 or string), probability float64 (the predicted class's; null otherwise)

`pandas.read_parquet(<root>/model=NAME)` reads a model's log; files whose names start with "."
or "_" are being written and are skipped. How rows reach the files without blocking an answer,
and why a killed server loses at most its last unflushed batch: `segments`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Settings
from .layout import feature_column, model_folder, predictions_root
from .segments import PartitionedLog, utc_day

REMEMBERED_REQUESTS = 200_000  # request ids kept in memory for POST /feedback


ARROW_TYPES = {
    "double": "float64", "float": "float32", "long": "int64", "integer": "int32",
    "boolean": "bool_", "string": "string", "binary": "binary",
}  # fmt: skip


@dataclass(frozen=True)
class Served:
    """What a log row says about the model that answered (one per served version)."""

    version: str
    variant: str
    columns: tuple[tuple[str, str | None], ...]  # (feature, signature type or None)
    classes: tuple | None


@dataclass
class Prediction:
    """One answered request, as the handler hands it over (nothing is converted here)."""

    request_id: str
    ms: int  # arrival, milliseconds since the epoch (UTC)
    latency_ms: float
    batch: Any  # schema.Batch
    predictions: np.ndarray
    proba: np.ndarray | None


class PredictionLog:
    """The prediction log of one model, written by this process (worker)."""

    def __init__(self, settings: Settings, model: str, written: Any = None):
        self.root = predictions_root(settings)
        self.model = model
        self.writer = PartitionedLog(
            model_folder(self.root, model), settings.serve, build_table, written
        )
        self.recent: OrderedDict[str, tuple[int, str]] = OrderedDict()

    def start(self) -> None:
        self.writer.start()

    def close(self) -> None:
        self.writer.close()

    def append(self, served: Served, record: Prediction) -> None:
        self.writer.append(utc_day(record.ms), served, record.batch.rows, (served, record))
        recent = self.recent
        recent[record.request_id] = (record.batch.rows, record.predictions.dtype.kind)
        if len(recent) > REMEMBERED_REQUESTS:
            recent.popitem(last=False)


def build_table(group: list[tuple[Served, Prediction]]) -> Any:
    """The Arrow table of a group of requests answered by the same served version."""
    import pyarrow as pa

    served = group[0][0]
    records = [record for _, record in group]
    counts = np.fromiter((r.batch.rows for r in records), dtype=np.int64, count=len(records))
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    columns: dict[str, Any] = {
        "request_id": pa.array(np.repeat(np.array([r.request_id for r in records]), counts)),
        "row": pa.array((np.arange(total) - starts).astype(np.int32)),
        "timestamp": pa.array(
            np.repeat(np.array([r.ms * 1000 for r in records], dtype="datetime64[us]"), counts),
            pa.timestamp("us", tz="UTC"),
        ),
        "version": pa.array([served.version] * total, pa.string()),
        "variant": pa.array([served.variant] * total, pa.string()),
        "latency_ms": pa.array(np.repeat([r.latency_ms for r in records], counts), pa.float64()),
        "status": pa.array(np.full(total, 200, dtype=np.int16)),
    }
    features = _features(served, [r.batch for r in records])
    columns.update(features)
    predictions = np.concatenate([r.predictions for r in records])
    columns["prediction"] = _prediction_array(predictions)
    columns["probability"] = _probability(served, records, predictions, total)
    return pa.table(columns)


def _features(served: Served, batches: list[Any]) -> dict[str, Any]:
    import pyarrow as pa

    out: dict[str, Any] = {}
    if all(b.matrix is not None for b in batches) and served.columns:
        matrix = np.concatenate([b.matrix for b in batches]) if len(batches) > 1 else None
        matrix = batches[0].matrix if matrix is None else matrix
        for i, (name, kind) in enumerate(served.columns):
            out[feature_column(name)] = _typed(matrix[:, i], kind, pa)
        return out
    names = [name for name, _ in served.columns] or list(batches[0].names)
    kinds = dict(served.columns)
    for name in names:
        values = np.concatenate([np.asarray(b.column(name)) for b in batches])
        out[feature_column(name)] = _typed(values, kinds.get(name), pa)
    return out


def _typed(values: np.ndarray, kind: str | None, pa: Any) -> Any:
    if kind == "datetime":
        return pa.array(values.astype("datetime64[us]"))
    arrow = ARROW_TYPES.get(kind or "")
    if arrow is None:
        return pa.array(values.tolist() if values.dtype.kind == "O" else values)
    target = getattr(pa, arrow)()
    if values.dtype.kind == "O":
        return pa.array(values.tolist(), target)
    if values.dtype.kind == "f" and not arrow.startswith("float"):  # whole numbers of the matrix
        values = values.astype(np.int64)
    return pa.array(values, target)


def _prediction_array(predictions: np.ndarray) -> Any:
    import pyarrow as pa

    if predictions.ndim > 1:  # several outputs per row: their JSON
        import json

        return pa.array([json.dumps(row) for row in predictions.tolist()], pa.string())
    kind = predictions.dtype.kind
    if kind == "f":
        return pa.array(predictions.astype(np.float64))
    if kind in "iu":
        return pa.array(predictions.astype(np.int64))
    if kind == "b":
        return pa.array(predictions.astype(np.int64))
    return pa.array([str(v) for v in predictions.tolist()], pa.string())


def _probability(served: Served, records: list[Prediction], predictions: Any, total: int) -> Any:
    import pyarrow as pa

    if served.classes is None or any(r.proba is None for r in records):
        return pa.nulls(total, pa.float64())
    proba = np.concatenate([r.proba for r in records])
    classes = np.asarray(served.classes, dtype=object)
    index = {value: i for i, value in enumerate(classes.tolist())}
    columns = np.fromiter(
        (index.get(v, -1) for v in predictions.tolist()), dtype=np.int64, count=total
    )
    picked = proba[np.arange(total), np.maximum(columns, 0)]
    return pa.array(np.where(columns >= 0, picked, np.nan), pa.float64(), from_pandas=True)
