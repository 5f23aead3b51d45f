"""Reference profiles: what the native engine keeps of the reference data, as JSON.

Per column (`ColumnProfile`): Evidently's type of the column, its storage dtype, non-missing
count, missing and non-finite counts (+/-inf are treated as missing, as Evidently does), and
- numbers: mean, std (ddof 0), min, max, distinct count (exact up to 1 000 000 tracked values
  in chunks), a 2001-point quantile sketch, a 1000-bin histogram between min and max, and the
  exact distinct values with their counts when there are at most 2048 of them (which covers
  every reference of at most 2048 rows);
- strings, bools and categories: counts of the 10 000 most frequent values, `other_count`
  for the rest, distinct count;
- nested values (structs, lists): the counts of present and missing values only, since no
  engine tests them.

Precision. A column with its exact distinct values (<= 2048) gives exactly the raw-data scores.
Otherwise the reference CDF is exact over the 1000 smallest and the 1000 largest values (kept
as they are: sparse tails are where interpolation would cost most), and interpolated linearly
in the quantile sketch in between: built from a
DataFrame the sketch holds exact quantiles (linear interpolation, as `np.quantile`), so the CDF
is off by at most ~1/2000 plus the slope within one quantile step; built from a file read in
chunks, a first pass merges per-chunk sketches (weighted CDF average) to place the points, and
a second pass counts exactly how many values fall at or below each of them and each histogram
edge, so the stored CDF is exact at ~3000 points and interpolated between. See `native.py` for
what that costs each test, and tests/test_drift_profile.py for the measured tolerances.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import atomic_write_json
from ..errors import CellopsUsageError
from . import columns as cols
from .result import CATEGORICAL, NUMERIC

PROFILE_FILE = "cellops_reference_profile.json"
PROFILE_FORMAT = "cellops-reference-profile"
QUANTILES = 2001
HIST_BINS = 1000
EXACT_VALUES = 2048
TAIL_VALUES = 1000
TOP_VALUES = 10_000
TRACKED_VALUES = 1_000_000
CHUNK_ROWS = 262_144
P_GRID = np.linspace(0.0, 1.0, QUANTILES)


@dataclass
class ColumnProfile:
    kind: str  # Evidently's type of the reference column: numeric|categorical|text|datetime|unknown
    dtype: str  # storage: float|int|bool|string|datetime|other|empty
    count: int = 0
    missing: int = 0
    nonfinite: int = 0
    n_unique: int = 0
    n_unique_exact: bool = True
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    quantiles: list[float] | None = None
    quantiles_exact: bool = True
    hist_edges: list[float] | None = None
    hist_counts: list[int] | None = None
    values: list[float] | None = None
    value_counts: list[int] | None = None
    tail_low: list[float] | None = None  # the TAIL_VALUES smallest values, exactly
    tail_high: list[float] | None = None  # and the largest
    counts: dict[str, int] | None = None
    other_count: int = 0

    @property
    def is_numeric(self) -> bool:
        return self.dtype in ("float", "int")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ColumnProfile:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in payload.items() if k in known})


@dataclass
class ReferenceProfile:
    columns: dict[str, ColumnProfile]
    rows: int
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat())
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "version": self.version,
            "rows": self.rows,
            "created": self.created,
            "columns": {name: c.to_dict() for name, c in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, payload: Any, source: str = "the data") -> ReferenceProfile:
        if not isinstance(payload, dict) or payload.get("format") != PROFILE_FORMAT:
            raise CellopsUsageError(
                f'{source} is not a cellops reference profile (no "format": '
                f'"{PROFILE_FORMAT}"); make one with cellops.monitoring.profile.build_profile(data)'
                ".save(path), or pass the reference data itself"
            )
        if int(payload.get("version", 0)) > 1:
            raise CellopsUsageError(
                f"{source} is a version {payload['version']} profile; this cellops reads "
                "version 1: upgrade cellops"
            )
        return cls(
            columns={n: ColumnProfile.from_dict(c) for n, c in payload["columns"].items()},
            rows=int(payload["rows"]),
            created=str(payload.get("created", "")),
            version=int(payload.get("version", 1)),
        )

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        atomic_write_json(target, self.to_dict())
        return target

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        source = Path(path)
        try:
            payload = json.loads(source.read_text())
        except FileNotFoundError:
            raise CellopsUsageError(f"no reference profile at {source}") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        return cls.from_dict(payload, source=str(source))


def build_profile(data: Any, columns: list[str] | None = None) -> ReferenceProfile:
    """Profile a DataFrame (one exact pass) or a Parquet/CSV path (chunks, two passes)."""
    import pandas as pd

    if isinstance(data, (str, Path)):
        return _profile_file(Path(data), columns)
    if not isinstance(data, pd.DataFrame):
        raise CellopsUsageError(
            f"cannot profile a {type(data).__name__}: pass a pandas DataFrame or a path to a "
            ".parquet or .csv file"
        )
    names = [str(c) for c in (columns if columns is not None else data.columns)]
    missing = [c for c in names if c not in data.columns]
    if missing:
        raise CellopsUsageError(f"columns not in the data: {', '.join(missing)}")
    if len(data) == 0:
        raise CellopsUsageError("the reference data has no rows: nothing to profile")
    return ReferenceProfile(
        columns={name: profile_series(data[name]) for name in names}, rows=int(len(data))
    )


def profile_series(series: Any) -> ColumnProfile:
    """One column's exact profile, in one pass over the values."""
    store = cols.storage(series)
    if store in ("float", "int"):
        values, missing, nonfinite = cols.finite_values(series)
        acc = _NumericAcc(store)
        acc.add(values, missing, nonfinite, exact=True)
        return acc.finish()
    acc = _NestedAcc(store) if store == cols.NESTED else _CountAcc(store)
    acc.add(series)
    return acc.finish()


def _sorted_distinct(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if sorted_values.size == 0:
        return sorted_values, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    return sorted_values[starts], np.diff(np.r_[starts, sorted_values.size])


def sorted_quantiles(sorted_values: np.ndarray, probs: np.ndarray = P_GRID) -> np.ndarray:
    """`np.quantile(values, probs)` (linear) of a sorted array, without re-partitioning."""
    pos = probs * (sorted_values.size - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, sorted_values.size - 1)
    frac = pos - lo
    a, b = sorted_values[lo], sorted_values[hi]
    return a + (b - a) * frac


def _edges(low: float, high: float) -> np.ndarray:
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, HIST_BINS + 1)


class _NumericAcc:
    def __init__(self, store: str):
        self.store = store
        self.n = self.missing = self.nonfinite = 0
        self.mean = self.m2 = 0.0
        self.low, self.high = np.inf, -np.inf
        self.distinct: tuple[np.ndarray, np.ndarray] | None = (np.zeros(0), np.zeros(0))
        self.sketches: list[tuple[np.ndarray, int]] = []
        self.exact_sorted: np.ndarray | None = None
        self.tail_low = self.tail_high = np.zeros(0)

    def add(self, values: np.ndarray, missing: int, nonfinite: int, exact: bool = False) -> None:
        self.missing += missing
        self.nonfinite += nonfinite
        if values.size == 0:
            return
        s = np.sort(values)
        if exact:
            self.exact_sorted = s
        n = s.size
        mean, var = float(np.mean(s)), float(np.var(s))
        total = self.n + n
        delta = mean - self.mean
        self.m2 += var * n + delta * delta * self.n * n / total
        self.mean += delta * n / total
        self.n = total
        self.low, self.high = min(self.low, float(s[0])), max(self.high, float(s[-1]))
        self.tail_low = np.sort(np.r_[self.tail_low, s[:TAIL_VALUES]])[:TAIL_VALUES]
        self.tail_high = np.sort(np.r_[self.tail_high, s[-TAIL_VALUES:]])[-TAIL_VALUES:]
        if exact:
            return
        if self.distinct is not None:
            vals, counts = _sorted_distinct(s)
            old_vals, old_counts = self.distinct
            merged, inverse = np.unique(np.r_[old_vals, vals], return_inverse=True)
            if merged.size > TRACKED_VALUES:
                self.distinct = None
            else:
                self.distinct = (merged, np.bincount(inverse, np.r_[old_counts, counts]))
        self.sketches.append((sorted_quantiles(s), n))
        if len(self.sketches) > 8:
            self.sketches = [(_merge_sketches(self.sketches), sum(k for _, k in self.sketches))]

    def needs_second_pass(self) -> bool:
        return self.n > 0 and self.exact_sorted is None and not self._few_values()

    def _few_values(self) -> bool:
        return self.distinct is not None and self.distinct[0].size <= EXACT_VALUES

    def start_second_pass(self) -> None:
        sketch = _merge_sketches(self.sketches)
        self.points = np.unique(np.r_[sketch, _edges(self.low, self.high)])
        self.at_or_below = np.zeros(self.points.size + 1, dtype=np.int64)
        self.hist = np.zeros(HIST_BINS, dtype=np.int64)

    def add_second_pass(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        idx = np.searchsorted(self.points, values, side="left")
        self.at_or_below += np.bincount(idx, minlength=self.points.size + 1)
        edges = _edges(self.low, self.high)
        self.hist += np.histogram(values, bins=HIST_BINS, range=(edges[0], edges[-1]))[0]

    def finish(self) -> ColumnProfile:
        if self.exact_sorted is not None:
            n_unique = int(_sorted_distinct(self.exact_sorted)[0].size)
        elif self.distinct is not None:
            n_unique = int(self.distinct[0].size)
        else:
            n_unique = TRACKED_VALUES + 1
        exact_unique = self.exact_sorted is not None or self.distinct is not None
        kind = cols.evidently_kind(self.store, n_unique, self.n)
        prof = ColumnProfile(
            kind=kind, dtype=self.store, count=self.n, missing=self.missing,
            nonfinite=self.nonfinite, n_unique=n_unique, n_unique_exact=exact_unique,
        )  # fmt: skip
        if self.n == 0:
            return prof
        prof.mean, prof.std = self.mean, float(np.sqrt(max(self.m2 / self.n, 0.0)))
        prof.min, prof.max = self.low, self.high
        edges = _edges(self.low, self.high)
        prof.hist_edges = edges.tolist()
        if self.exact_sorted is not None or self._few_values():
            if self.exact_sorted is not None:
                vals, counts = _sorted_distinct(self.exact_sorted)
                sample = self.exact_sorted
            else:
                vals, counts = self.distinct[0], self.distinct[1].astype(np.int64)
                sample = None
            if vals.size <= EXACT_VALUES:
                prof.values, prof.value_counts = vals.tolist(), counts.tolist()
            cum = np.r_[0, np.cumsum(counts)]
            if sample is None:  # quantiles of the sample rebuilt from distinct values
                pos = P_GRID * (self.n - 1)
                lo_i = np.searchsorted(cum[1:], np.floor(pos), side="right")
                hi_i = np.searchsorted(cum[1:], np.minimum(np.floor(pos) + 1, self.n - 1), "right")
                frac = pos - np.floor(pos)
                quant = vals[lo_i] + (vals[hi_i] - vals[lo_i]) * frac
                left = np.searchsorted(vals, edges[:-1], side="left")
                right = np.searchsorted(vals, edges[-1:], side="right")
                hist = np.diff(cum[np.r_[left, right]])
            else:
                quant = sorted_quantiles(sample)
                from .stattests import sorted_histogram

                hist = sorted_histogram(sample, edges)
            prof.quantiles, prof.hist_counts = quant.tolist(), hist.tolist()
        else:  # chunked, many values: exact counts at ~3000 points, CDF inverted to quantiles
            cdf = np.cumsum(self.at_or_below)[:-1] / self.n
            keep = np.r_[True, cdf[1:] > cdf[:-1]]
            quant = np.interp(P_GRID, cdf[keep], self.points[keep])
            quant[0], quant[-1] = self.low, self.high
            prof.quantiles, prof.quantiles_exact = quant.tolist(), False
            prof.hist_counts = self.hist.tolist()
        if prof.values is None:
            prof.tail_low, prof.tail_high = self.tail_low.tolist(), self.tail_high.tolist()
        if kind == CATEGORICAL and prof.values is not None:
            prof.counts = {
                _num_key(v): c for v, c in zip(prof.values, prof.value_counts, strict=True)
            }
        return prof


def _num_key(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _merge_sketches(sketches: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """Quantiles of the union of chunks, from each chunk's quantiles (weighted CDF average)."""
    if len(sketches) == 1:
        return sketches[0][0]
    grid = np.unique(np.concatenate([q for q, _ in sketches]))
    total = sum(n for _, n in sketches)
    cdf = np.zeros(grid.size)
    for q, n in sketches:
        xs, first = np.unique(q, return_index=True)
        cdf += n * np.interp(grid, xs, P_GRID[first], left=0.0, right=1.0)
    cdf /= total
    keep = np.r_[True, cdf[1:] > cdf[:-1]]
    return np.interp(P_GRID, cdf[keep], grid[keep])


class _CountAcc:
    def __init__(self, store: str):
        self.store = store
        self.n = self.missing = 0
        self.counts: Any = None
        self.truncated = False

    def add(self, series: Any) -> None:
        if self.store == "datetime":
            counts = series.dropna().astype("int64").value_counts()
            counts.index = counts.index.map(str)
        else:
            counts = series.value_counts(dropna=True)
            counts.index = [str(v) for v in counts.index]
            counts = counts.groupby(level=0).sum() if not counts.index.is_unique else counts
        self.missing += int(series.size - counts.sum())
        self.n += int(counts.sum())
        self.counts = counts if self.counts is None else self.counts.add(counts, fill_value=0)
        if len(self.counts) > TRACKED_VALUES:
            self.counts = self.counts.nlargest(TRACKED_VALUES // 10)
            self.truncated = True

    def finish(self) -> ColumnProfile:
        counts = self.counts if self.counts is not None else None
        n_unique = 0 if counts is None else int(len(counts))
        kind = cols.evidently_kind(self.store, n_unique, self.n)
        prof = ColumnProfile(
            kind=kind, dtype=self.store, count=self.n, missing=self.missing,
            n_unique=n_unique, n_unique_exact=not self.truncated,
        )  # fmt: skip
        if counts is not None and n_unique:
            top = counts.sort_values(ascending=False, kind="stable").iloc[:TOP_VALUES]
            prof.counts = {str(k): int(v) for k, v in top.items()}
            prof.other_count = int(self.n - top.sum())
        return prof


class _NestedAcc:
    """Structs and lists: counted, not profiled (their values are not hashable, and no engine
    tests them)."""

    def __init__(self, store: str):
        self.store = store
        self.n = self.missing = 0

    def add(self, series: Any) -> None:
        present = int(series.notna().sum())
        self.n += present
        self.missing += int(series.size - present)

    def finish(self) -> ColumnProfile:
        return ColumnProfile(
            kind=cols.UNKNOWN, dtype=self.store, count=self.n, missing=self.missing
        )


def _iter_chunks(path: Path, names: list[str] | None) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=CHUNK_ROWS, columns=names):
            yield batch.to_pandas()
    elif suffix in (".csv", ".txt") or path.name.endswith(".csv.gz"):
        yield from pd.read_csv(path, chunksize=CHUNK_ROWS, usecols=names)
    else:
        raise CellopsUsageError(
            f"cannot read {path}: give a .parquet or .csv file (or a cellops profile .json)"
        )


def file_columns(path: Path) -> list[str]:
    """The column names of a Parquet or CSV file, without reading its rows."""
    import pandas as pd

    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return [str(n) for n in pq.ParquetFile(path).schema_arrow.names]
    return [str(c) for c in pd.read_csv(path, nrows=0).columns]


def _profile_file(path: Path, columns: list[str] | None) -> ReferenceProfile:
    if not path.exists():
        raise CellopsUsageError(f"no such file: {path}")
    available = file_columns(path)
    names = [str(c) for c in columns] if columns is not None else available
    missing = [c for c in names if c not in available]
    if missing:
        raise CellopsUsageError(f"columns not in {path.name}: {', '.join(missing)}")
    accs: dict[str, Any] = {}
    stores: dict[str, set[str]] = {n: set() for n in names}
    rows = 0
    for chunk in _iter_chunks(path, names):
        rows += len(chunk)
        for name in names:
            series = chunk[name]
            store = cols.storage(series)
            if store == "empty":
                accs.setdefault(name, None)
                stores[name].add(store)
                continue
            acc = _accumulator_for(name, store, accs.get(name), stores[name], path)
            accs[name] = acc
            if isinstance(acc, _NumericAcc):
                values, missing_n, nonfinite = cols.finite_values(series)
                acc.add(values, missing_n, nonfinite)
            else:
                acc.add(series)
    if rows == 0:
        raise CellopsUsageError(f"{path} has no rows: nothing to profile")
    second = [n for n, a in accs.items() if isinstance(a, _NumericAcc) and a.needs_second_pass()]
    if second:
        for name in second:
            accs[name].start_second_pass()
        for chunk in _iter_chunks(path, second):
            for name in second:
                values, _, _ = cols.finite_values(chunk[name])
                accs[name].add_second_pass(values)
    profiles = {}
    for name in names:
        acc = accs.get(name)
        if acc is None:  # every chunk all-missing
            profiles[name] = ColumnProfile(kind=cols.UNKNOWN, dtype="empty", missing=rows)
        else:
            acc.missing = rows - acc.n - getattr(acc, "nonfinite", 0)
            profiles[name] = acc.finish()
    return ReferenceProfile(columns=profiles, rows=rows)


def _accumulator_for(name: str, store: str, acc: Any, seen: set[str], path: Path) -> Any:
    seen.add(store)
    classes = {cols.storage_class(s) for s in seen if s != "empty"}
    if len(classes) > 1:
        raise CellopsUsageError(
            f"column {name!r} of {path.name} holds {' and '.join(sorted(classes))} values in "
            "different rows; convert it to one type before profiling"
        )
    if acc is None:
        if store == cols.NESTED:
            return _NestedAcc(store)
        return _NumericAcc(store) if store in ("float", "int") else _CountAcc(store)
    if isinstance(acc, _NumericAcc) and store == "float":
        acc.store = "float"  # ints in early chunks, NaN (so floats) later: floats, as pandas
    return acc


__all__ = [
    "CATEGORICAL",
    "NUMERIC",
    "PROFILE_FILE",
    "ColumnProfile",
    "ReferenceProfile",
    "build_profile",
]
