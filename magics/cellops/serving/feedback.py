"""Labels that arrive after the predictions: checked against the prediction log, then written to
the feedback log (the contract of issue 14):

    <root>/_feedback/model=<NAME>/date=<YYYY-MM-DD>/<file>.parquet
    request_id string, row int32, label (typed as the prediction), timestamp timestamp[us, UTC]

From `POST /feedback` ({"request_id": ..., "label": ...[, "row": ...]} or {"labels": [...]}),
written in the background as the prediction log is; or from `cellops feedback FILE` (CSV or
Parquet with request_id[, row], label), written at once. A request id never served, a row the
request did not have, or a label whose type is not the prediction's refuses the whole lot.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import FeedbackError
from .layout import FEEDBACK_FOLDER, model_folder, predictions_root
from .segments import STREAM_SUFFIX, PartitionedLog, utc_day

KIND_WORDS = {"i": "whole numbers", "f": "numbers", "U": "strings"}
SHOWN = 5  # unknown ids named in a message


@dataclass(frozen=True)
class Label:
    request_id: str
    row: int | None
    label: Any


def _error(message: str, unknown: bool = False, **details: Any) -> FeedbackError:
    error = FeedbackError(message)
    error.unknown, error.details = unknown, details
    return error


def parse_document(document: Any) -> list[Label]:
    """The labels of a POST /feedback body."""
    example = '{"request_id": "...", "label": 1} or {"labels": [{"request_id": ..., "label": ...}]}'
    if isinstance(document, dict) and "labels" in document:
        items = document["labels"]
        if not isinstance(items, list) or not items:
            raise _error(f'"labels" must be a non-empty list; send {example}')
    elif isinstance(document, dict):
        items = [document]
    else:
        raise _error(f"send a JSON object: {example}")
    labels = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
            raise _error(f"label {i} needs request_id and label; send {example}")
        row = item.get("row")
        if row is not None and (not isinstance(row, int) or isinstance(row, bool) or row < 0):
            raise _error(f"label {i}: row must be a whole number >= 0, not {row!r}")
        labels.append(Label(str(item["request_id"]), row, item["label"]))
    return labels


# -- which requests were served ---------------------------------------------------------------


def id_day(request_id: str) -> str | None:
    """The UTC date a cellops request id was served on (its first 11 hex digits: ms)."""
    if not re.fullmatch(r"[0-9a-f]{24}", request_id):
        return None
    return utc_day(int(request_id[:11], 16))


def served_requests(
    root: Path, model: str, ids: set[str], recent: Any = None
) -> dict[str, tuple[int, str]]:
    """{request id: (rows, prediction kind "i" | "f" | "U")} of the ids found in memory
    (`recent`, this worker's), then in the log files and the streams still being written."""
    found: dict[str, tuple[int, str]] = {}
    if recent is not None:
        for rid in ids:
            hit = recent.get(rid)
            if hit is not None:
                found[rid] = (hit[0], _kind(hit[1]))
    missing = ids - found.keys()
    if not missing:
        return found
    folder = model_folder(root, model)
    days = {id_day(rid) for rid in missing}
    folders = (
        [folder / f"date={d}" for d in days if d]
        if None not in days
        else sorted(folder.glob("date=*"))
    )
    for day in folders:
        if not missing:
            break
        for path in sorted(day.glob("*")):
            if not missing:
                break
            name = path.name
            hidden_stream = name.startswith(".") and name.endswith(STREAM_SUFFIX)
            if hidden_stream or (name.endswith(".parquet") and not name.startswith((".", "_"))):
                _scan(path, missing, found)
    return found


def _kind(numpy_kind: str) -> str:
    return {"i": "i", "u": "i", "b": "i", "f": "f"}.get(numpy_kind, "U")


def _scan(path: Path, wanted: set[str], found: dict[str, tuple[int, str]]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        table = _read(path)
    except (OSError, pa.ArrowException):
        return  # a stream its writer has just rotated away, or a damaged file
    if "request_id" not in table.column_names or "prediction" not in table.column_names:
        return
    kind = _arrow_kind(table.schema.field("prediction").type)
    table = table.filter(pc.is_in(table["request_id"], pa.array(sorted(wanted))))
    for rid, count in zip(*_counts(table), strict=True):
        found[rid] = (count, kind)
        wanted.discard(rid)


def _read(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.name.endswith(".parquet"):
        return pq.read_table(path, columns=["request_id", "prediction"])
    batches = []
    reader = pa.ipc.open_stream(pa.memory_map(str(path)))
    while True:
        try:
            batches.append(reader.read_next_batch())
        except StopIteration:
            break
        except pa.ArrowInvalid:  # the batch being written now
            break
    return pa.Table.from_batches(batches, reader.schema).select(["request_id", "prediction"])


def _counts(table: Any) -> tuple[list[str], list[int]]:
    if table.num_rows == 0:
        return [], []
    grouped = table.group_by("request_id").aggregate([("request_id", "count")])
    return grouped["request_id"].to_pylist(), grouped["request_id_count"].to_pylist()


def _arrow_kind(kind: Any) -> str:
    import pyarrow as pa

    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return "i"
    return "f" if pa.types.is_floating(kind) else "U"


# -- checking the labels ------------------------------------------------------------------------


def check(labels: list[Label], served: dict[str, tuple[int, str]], model: str) -> list[Label]:
    """The labels, typed as their predictions, or a FeedbackError naming what is wrong."""
    unknown = [label.request_id for label in labels if label.request_id not in served]
    if unknown:
        more = len(unknown) - SHOWN
        shown = ", ".join(unknown[:SHOWN]) + (f" and {more} more" if more > 0 else "")
        raise _error(
            f"{len(unknown)} request id(s) were never served by {model}: {shown}; use the "
            "request_id of an answer of POST /predict (or /invocations)",
            unknown=True,
            request_id=unknown[0],
        )
    typed = []
    for label in labels:
        rows, kind = served[label.request_id]
        row = label.row
        if row is None:
            if rows != 1:
                raise _error(
                    f'request {label.request_id} had {rows} rows: say which with "row" '
                    f"(0 to {rows - 1})",
                    request_id=label.request_id,
                )
            row = 0
        if row >= rows:
            raise _error(
                f"request {label.request_id} had {rows} row(s); there is no row {row}",
                request_id=label.request_id,
            )
        value = coerce(label.label, kind)
        if value is None:
            raise _error(
                f"the label of request {label.request_id} is {label.label!r}: {model}'s "
                f"predictions are {KIND_WORDS[kind]}, so its labels must be too",
                request_id=label.request_id,
                expected=KIND_WORDS[kind],
            )
        typed.append(Label(label.request_id, row, value))
    return typed


def coerce(value: Any, kind: str) -> Any:
    """`value` as a label of predictions of `kind`, or None when it is not one."""
    import numpy as np

    if isinstance(value, np.generic):
        value = value.item()
    if kind == "U":
        return value if isinstance(value, str) else None
    if isinstance(value, bool) or value is None:
        return None
    if kind == "i":
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return None
    return float(value) if isinstance(value, (int, float)) and value == value else None


def feedback_table(labels: list[Label], kind: str, ms: int) -> Any:
    import pyarrow as pa

    label_type = {"i": pa.int64(), "f": pa.float64(), "U": pa.string()}[kind]
    return pa.table({
        "request_id": pa.array([label.request_id for label in labels], pa.string()),
        "row": pa.array([label.row for label in labels], pa.int32()),
        "label": pa.array([label.label for label in labels], label_type),
        "timestamp": pa.array([ms * 1000] * len(labels), pa.timestamp("us", tz="UTC")),
    })  # fmt: skip


# -- writing --------------------------------------------------------------------------------------


def feedback_folder(settings: Settings, model: str) -> Path:
    return model_folder(predictions_root(settings) / FEEDBACK_FOLDER, model)


class FeedbackLog:
    """The server's writer of the feedback log (buffered, as the prediction log is)."""

    def __init__(self, settings: Settings, model: str):
        self.settings, self.model = settings, model
        self.writer = PartitionedLog(feedback_folder(settings, model), settings.serve, _concat)

    def start(self) -> None:
        self.writer.start()

    def close(self) -> None:
        self.writer.close()

    def write(self, labels: list[Label], kinds: dict[str, str]) -> None:
        ms = time.time_ns() // 1_000_000
        by_kind: dict[str, list[Label]] = {}
        for label in labels:
            by_kind.setdefault(kinds[label.request_id], []).append(label)
        for kind, group in by_kind.items():
            self.writer.append(utc_day(ms), kind, len(group), feedback_table(group, kind, ms))


def _concat(tables: list[Any]) -> Any:
    import pyarrow as pa

    return pa.concat_tables(tables)


async def accept(document: Any, context: Any) -> int:
    """POST /feedback: check the labels against what was served, queue them; how many."""
    labels = parse_document(document)
    model = context.serving.current.model.name
    root = context.log.root
    ids = {label.request_id for label in labels}
    served = await asyncio.to_thread(served_requests, root, model, ids, context.log.recent)
    if ids - served.keys() and _recent(ids - served.keys(), context.settings):
        # served a moment ago by another worker whose rows are still in its memory
        await asyncio.sleep(context.settings.serve.log_batch_seconds + 0.5)
        served = await asyncio.to_thread(served_requests, root, model, ids, context.log.recent)
    typed = check(labels, served, model)
    context.feedback.write(typed, {rid: kind for rid, (_, kind) in served.items()})
    return len(typed)


def _recent(ids: set[str], settings: Settings) -> bool:
    now = time.time() * 1000
    window = (settings.serve.log_batch_seconds + 2) * 1000
    return any(id_day(rid) is not None and now - int(rid[:11], 16) < window for rid in ids)


# -- cellops feedback FILE --------------------------------------------------------------------


def read_labels(path: Path) -> list[Label]:
    """The labels of a CSV or Parquet file with columns request_id[, row], label."""
    import pandas as pd

    if not path.is_file():
        raise FeedbackError(f"{path} is not a file; give a CSV or Parquet file of labels")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:  # as text: the prediction's type decides what a label is (see coerce_text)
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise FeedbackError(f"cannot read {path}: {exc}") from None
    needed = {"request_id", "label"}
    if not needed <= set(frame.columns):
        raise FeedbackError(
            f"{path} has columns {list(frame.columns)}; it needs request_id and label "
            "(and row, for requests of several rows)"
        )
    rows = frame["row"].tolist() if "row" in frame.columns else [None] * len(frame)
    labels = []
    for i, (rid, row, label) in enumerate(
        zip(frame["request_id"].tolist(), rows, frame["label"].tolist(), strict=True)
    ):
        if row is not None and row != "":
            try:
                row = int(row)
            except ValueError:
                raise FeedbackError(f"{path} line {i + 2}: row {row!r} is not a number") from None
        labels.append(Label(str(rid), None if row == "" else row, label))
    if not labels:
        raise FeedbackError(f"{path} holds no labels")
    return labels


def coerce_text(labels: list[Label], served: dict[str, tuple[int, str]]) -> list[Label]:
    """CSV labels are text: read each as its prediction's type (an unknown id stays as it is,
    for `check` to name)."""
    out = []
    for label in labels:
        value, kind = label.label, served.get(label.request_id, (0, "U"))[1]
        if isinstance(value, str) and kind != "U":  # a fraction for "i": check() refuses it
            with contextlib.suppress(ValueError):
                number = float(value)
                value = int(number) if kind == "i" and number.is_integer() else number
        out.append(Label(label.request_id, label.row, value))
    return out


def record_file(settings: Settings, model: str, path: Path) -> tuple[int, list[Path]]:
    """`cellops feedback FILE --model NAME`: check every label, then write them (one complete
    Parquet file per kind of label). Returns (labels written, files)."""
    import pyarrow.parquet as pq

    labels = read_labels(path)
    root = predictions_root(settings)
    if not model_folder(root, model).is_dir():
        raise FeedbackError(
            f"model {model} has no prediction log in {root}: serve it with `cellops serve "
            f"{model}` first, or check --model"
        )
    served = served_requests(root, model, {label.request_id for label in labels})
    typed = check(coerce_text(labels, served), served, model)
    ms = time.time_ns() // 1_000_000
    folder = feedback_folder(settings, model) / f"date={utc_day(ms)}"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    by_kind: dict[str, list[Label]] = {}
    for label in typed:
        by_kind.setdefault(served[label.request_id][1], []).append(label)
    written = []
    for kind, group in by_kind.items():
        final = folder / f"file-{stamp}-{os.getpid()}-{kind}.parquet"
        temp = folder / f".{final.name}.tmp"
        pq.write_table(feedback_table(group, kind, ms), temp)
        os.replace(temp, final)
        written.append(final)
    return len(typed), written
