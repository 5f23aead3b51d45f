"""What a model was served: the prediction log of a window read back as a frame of features,
with the labels that arrived later (the feedback log) joined by request id and row.

The log's layout is the contract of `serving/log.py` (hive partitions
`<root>/model=NAME/date=YYYY-MM-DD/*.parquet`, the feedback under `<root>/_feedback/`; files
whose names start with "." or "_" are still being written and are skipped). Only the date
partitions the window reaches are opened.

`read_served` is what `cellops monitor --served` and `--performance` check;
`traffic_over_time` is the dashboard's view (requests, errors and latency per interval).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CellopsUsageError, NoServedTrafficError
from .layout import FEEDBACK_FOLDER, INPUT_PREFIX, META_COLUMNS, RESERVED

if TYPE_CHECKING:
    import pandas as pd

    from ..config import Settings
    from ..registry.store import RegistryStore

LABEL = "label"  # the joined feedback, in `ServedTraffic.log`
DEFAULT_VARIANT = "champion"

_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Window:
    """The served traffic from `since` to `until` (UTC), as the user wrote it (`text`)."""

    text: str
    since: datetime.datetime
    until: datetime.datetime

    def describe(self) -> str:
        return f"the last {self.text} (since {_stamp(self.since)})"


def parse_window(text: str, now: datetime.datetime | None = None) -> Window:
    """`"24h"`, `"30m"`, `"7d"`, `"90s"`, `"2w"`: the window ending `now` (default: now, UTC)."""
    match = _WINDOW.match(str(text))
    if not match or float(match[1]) <= 0:
        raise CellopsUsageError(
            f"--since {text!r} is not a window: give a number and a unit, s, m, h, d or w, "
            "for example --since 24h, --since 30m or --since 7d"
        )
    now = now or datetime.datetime.now(datetime.timezone.utc)
    span = datetime.timedelta(**{_UNITS[match[2]]: float(match[1])})
    return Window(str(text).strip(), now - span, now)


@dataclass
class ServedTraffic:
    """The window's served rows of one version and variant of a model.

    `features`: the inputs as the model received them (named as in its signature), one row
    per predicted row. `log`: the same rows' request_id, row, timestamp, version, variant,
    latency_ms, status, prediction, probability and `label` (null until feedback arrives).
    """

    model: str
    version: str | None
    variant: str | None
    window: Window
    features: pd.DataFrame
    log: pd.DataFrame

    @property
    def rows(self) -> int:
        return len(self.log)

    @property
    def requests(self) -> int:
        return int(self.log["request_id"].nunique())

    @property
    def labels(self) -> int:
        return int(self.log[LABEL].notna().sum())

    def labelled(self) -> pd.DataFrame:
        """The labelled rows: their features, then prediction, probability and label."""
        known = self.log[LABEL].notna().to_numpy()
        joined = self.features.loc[known].copy()
        for column in ("prediction", "probability", LABEL):
            joined[column] = self.log.loc[known, column].to_numpy()
        return joined.reset_index(drop=True)

    def describe(self) -> str:
        what = f"{self.model} v{self.version}" if self.version else self.model
        variant = f" ({self.variant})" if self.variant else ""
        return (
            f"{what}{variant}, {self.window.describe()}: {self.rows:,} rows in "
            f"{self.requests:,} requests, {self.labels:,} labelled"
        )


def log_root(settings: Settings | None = None) -> Path:
    """Where the prediction log of the project is (the writer's `predictions_root`)."""
    from ..config import load_settings
    from .layout import predictions_root

    return Path(predictions_root(settings or load_settings()))


def read_served(
    model: str,
    since: str | Window = "24h",
    *,
    version: str | int | None = None,
    alias: str = "champion",
    variant: str | None = DEFAULT_VARIANT,
    settings: Settings | None = None,
    store: RegistryStore | None = None,
) -> ServedTraffic:
    """The served traffic of `model` in the window `since`: of `version`, else of the version
    `alias` points at now (read from the registry); of `variant` (None: every variant).

    Raises NoServedTrafficError when the model has no prediction log, or none in the window.
    """
    from ..registry.store import check_model_name

    check_model_name(model)
    window = since if isinstance(since, Window) else parse_window(since)
    if version is None:
        version = _alias_version(model, alias, settings, store)
    root = log_root(settings)
    frame = _read_log(root, model, window, str(version), variant)
    if frame is None:
        raise _empty_window(root, model, window, str(version), variant)
    features, log = split_features(frame)
    log = _join_labels(log, _read_feedback(root, model, window))
    return ServedTraffic(model, str(version), variant, window, features, log)


def _alias_version(
    model: str, alias: str, settings: Settings | None, store: RegistryStore | None
) -> str:
    from ..monitoring.reference import ModelRef, resolve
    from ..registry.store import open_store

    store = store or open_store(settings)
    return str(resolve(store, ModelRef(model, alias=alias)).version)


def split_features(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The log's rows as (the features, named as the model knows them; the meta columns)."""
    features = [c for c in frame.columns if c not in RESERVED]
    names = {
        c: c[len(INPUT_PREFIX) :]
        for c in features
        if c.startswith(INPUT_PREFIX) and c[len(INPUT_PREFIX) :] in RESERVED
    }
    meta = [c for c in META_COLUMNS if c in frame.columns]
    return frame[features].rename(columns=names), frame[meta].copy()


# -- reading the files ----------------------------------------------------------------------


def _model_folder(root: Path, model: str) -> Path:
    return root / f"model={model}"


def _files(folder: Path, since: datetime.date | None = None) -> list[Path]:
    """The complete Parquet files of a model's partitions from the date `since` on."""
    found = []
    if not folder.is_dir():
        return found
    for partition in sorted(folder.iterdir()):
        name = partition.name
        if not (partition.is_dir() and name.startswith("date=")):
            continue
        try:
            day = datetime.date.fromisoformat(name[len("date=") :])
        except ValueError:
            continue
        if since is not None and day < since:
            continue
        found += [
            f
            for f in sorted(partition.iterdir())
            if f.is_file() and f.suffix == ".parquet" and not f.name.startswith((".", "_"))
        ]
    return found


def _read_log(
    root: Path, model: str, window: Window, version: str | None, variant: str | None
) -> pd.DataFrame | None:
    """The window's rows of `version` and `variant` (None: all), in time order, or None."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    since = pa.scalar(window.since, type=pa.timestamp("us", tz="UTC"))
    until = pa.scalar(window.until, type=pa.timestamp("us", tz="UTC"))
    tables = []
    for path in _files(_model_folder(root, model), window.since.date()):
        table = pq.read_table(path, partitioning=None)
        keep = pc.and_(
            pc.greater_equal(table["timestamp"], since), pc.less_equal(table["timestamp"], until)
        )
        if version is not None:
            keep = pc.and_(keep, pc.equal(table["version"], version))
        if variant is not None:
            keep = pc.and_(keep, pc.equal(table["variant"], variant))
        table = table.filter(keep)
        if table.num_rows:
            tables.append(table)
    if not tables:
        return None
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    order = [c for c in ("timestamp", "request_id", "row") if c in frame.columns]
    return frame.sort_values(order, kind="stable", ignore_index=True)


def _read_feedback(root: Path, model: str, window: Window) -> pd.DataFrame | None:
    """The labels sent for the model since the window began (a label comes after its
    prediction), the latest one per (request_id, row)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / FEEDBACK_FOLDER / f"model={model}"
    wanted = ["request_id", "row", "label", "timestamp"]
    tables = [
        pq.read_table(path, columns=wanted, partitioning=None)
        for path in _files(folder, window.since.date())
    ]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    frame = frame.sort_values("timestamp", kind="stable")
    return frame.drop_duplicates(["request_id", "row"], keep="last")[["request_id", "row", LABEL]]


def _join_labels(log: pd.DataFrame, feedback: pd.DataFrame | None) -> pd.DataFrame:
    import pandas as pd

    if feedback is None:
        log[LABEL] = pd.Series([None] * len(log), index=log.index, dtype=object)
        return log
    feedback = feedback.astype({"row": log["row"].dtype})
    joined = log.merge(feedback, on=["request_id", "row"], how="left", validate="many_to_one")
    joined.index = log.index
    return joined


# -- what the log holds, for the messages -----------------------------------------------------


def _empty_window(
    root: Path, model: str, window: Window, version: str | None, variant: str | None
) -> NoServedTrafficError:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = _files(_model_folder(root, model))
    if not files:
        others = sorted(
            p.name[len("model=") :] for p in root.glob("model=*") if _files(p)
        ) if root.is_dir() else []  # fmt: skip
        logged = f"; the log holds {', '.join(others)}" if others else ""
        return NoServedTrafficError(
            f"no prediction log for model {model!r}: nothing under "
            f"{_model_folder(root, model)}{logged}. Serve it with `cellops serve {model}` and "
            "send it requests; every prediction is logged there"
        )
    columns = pa.concat_tables(
        [pq.read_table(f, columns=["timestamp", "version", "variant"], partitioning=None)
         for f in files], promote_options="permissive",
    )  # fmt: skip
    latest = pc.max(columns["timestamp"]).as_py()
    versions = sorted(set(columns["version"].to_pylist()), key=_version_key)
    variants = sorted(set(columns["variant"].to_pylist()))
    what = f"{model} v{version}" if version else model
    if variant:
        what += f" ({variant})"
    return NoServedTrafficError(
        f"no served predictions of {what} in {window.describe()}: the log of {model} holds "
        f"{columns.num_rows:,} rows in all, the latest at {_stamp(latest)}, of versions "
        f"{', '.join(versions)} and variants {', '.join(variants)}. Widen the window "
        "(--since 7d), or name the version served then (--version V)"
    )


def _version_key(text: str) -> tuple[int, str]:
    return (int(text), "") if str(text).isdigit() else (1 << 30, str(text))


def _stamp(moment: datetime.datetime | None) -> str:
    if moment is None:
        return "never"
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- the dashboard's view ---------------------------------------------------------------------


def traffic_over_time(
    model: str,
    since: str = "7d",
    every: str = "1h",
    settings: Settings | None = None,
    version: str | None = None,
) -> pd.DataFrame:
    """Per interval `every` of the window (every version and variant unless `version`):
    requests, rows, errors (requests answered with a status >= 400), and the requests'
    server-side latency p50 and p95 in ms. Empty when nothing was logged in the window."""
    import pandas as pd

    from ..registry.store import check_model_name

    check_model_name(model)
    window = parse_window(since)
    step = parse_window(every).until - parse_window(every).since
    columns = ["requests", "rows", "errors", "latency_p50_ms", "latency_p95_ms"]
    frame = _read_log(log_root(settings), model, window, version, None)
    if frame is None:
        return pd.DataFrame(columns=columns, index=pd.DatetimeIndex([], tz="UTC", name="time"))
    per_request = frame.groupby("request_id").agg(
        timestamp=("timestamp", "min"),
        rows=("row", "size"),
        status=("status", "max"),
        latency_ms=("latency_ms", "max"),
    )
    grouped = per_request.groupby(pd.Grouper(key="timestamp", freq=step))
    summary = pd.DataFrame(
        {
            "requests": grouped.size(),
            "rows": grouped["rows"].sum(),
            "errors": grouped["status"].apply(lambda s: int((s >= 400).sum())),
            "latency_p50_ms": grouped["latency_ms"].quantile(0.5),
            "latency_p95_ms": grouped["latency_ms"].quantile(0.95),
        }
    )
    summary.index.name = "time"
    return summary[summary["requests"] > 0]
